//! The boot of a master VM as a kube-up master's scripts do it, run inside the VM (on its
//! runtime, so every socket is the VM's) and written as an on-VM agent would be: it reads only
//! the VM's metadata server and the VM's own files, and writes only the VM's files, its processes
//! and its serial console. `configure_helper.rs` holds what the scripts decide; this file does
//! their I/O, in their order:
//!
//! 1. `configure.sh` (`kube-master-installation`): `kube-env` from the metadata server (none:
//!    not a kube master, nothing runs, nothing is logged); `kubelet-config` when kube-env asks
//!    for it and `kube-master-certs`, each waited for forever as configure.sh's `retry-forever`
//!    does. Its downloads and installs are skipped (the sandbox has no release tarballs).
//! 2. `configure-helper.sh` (`kube-master-configuration`), step by step with its `SerialportLog`
//!    records: source both maps; generate tokens; the data disk (`/mnt/disks/master-pd`); the
//!    PKI files under `/etc/srv/kubernetes` and `…/pki`; etcd main and events started with the
//!    flags configure-helper's manifest renders, the member's address found by resolving its
//!    host name in the VM's `/etc/hosts` (GCE's internal DNS here), data in
//!    `/mnt/disks/master-pd/var/etcd/data` and `data-events`; `configure-etcd-params`; then the
//!    API stand-in on `:443`, serving the files the PKI steps wrote and talking to the local
//!    etcd as kube-apiserver's flags say.
//!
//! Anything the scripts would abort on stops the boot where they would (`configure_helper::Abort`):
//! the reason, the step's `ERROR` record and systemd's failure lines go to serial port 3
//! (`console.rs`), where `kube-ha status` reads them, and to the sandbox's log; what the steps
//! before it started (etcd, for an apiserver step) keeps running, as on a VM.
//!
//! A VM booting on a disk whose etcd data dirs exist just restarts etcd with them (etcd ignores
//! `--initial-cluster*` once it has data), as a real VM recreated on its old disk would.

use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use kube_ha_core::etcd::EtcdClient;
use kube_ha_core::names::{self, EtcdCluster};

use super::apiserver::{ApiServer, LocalEtcd};
use super::configure_helper::{self as ch, Abort, ApiServerFiles, EtcdHost, Script, Shell, VmFile};
use super::console::{SerialConsole, StepStatus};
use super::etcd_proc::{EtcdMember, EtcdMemberConfig, create_private_dir};
use super::files::{MASTER_PD, VmFiles};
use super::layout::ZonalKey;
use super::listener::ListenerTask;
use super::metadata;
use super::ns::Namespaces;

/// Timeout of the API stand-in's calls to its local etcd (per call; routes pick shorter ones).
const LOCAL_ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one read of the metadata server may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// configure.sh's `retry-forever` pause between fetches of a missing item.
const RETRY_FOREVER: Duration = Duration::from_secs(2);

/// `prepare-etcd-manifest` retries resolving the host name for this long, once a second.
const RESOLVE_FOR: Duration = Duration::from_secs(300);

/// The etcd members a VM started, shared with its task so a delete can stop them gracefully.
pub type Members = Arc<Mutex<Vec<EtcdMember>>>;

/// What the boot needs from outside the VM.
pub struct BootContext {
    /// project/zone/instance.
    pub key: ZonalKey,
    /// nic0's networkIP (what the VM's etcd members are recorded with).
    pub ip: Ipv4Addr,
    /// The VM's files.
    pub files: VmFiles,
    /// Where `/mnt/disks/master-pd` is in this process's view (the disk's dir, or the VM's own).
    pub master_pd: PathBuf,
    /// Whether a data disk is attached as `master-pd` (`find-master-pd`).
    pub has_disk: bool,
    /// The VM's namespaces (etcd starts inside).
    pub host: Arc<Namespaces>,
    /// Where the started members go.
    pub members: Members,
    /// Serial port 3.
    pub console: Arc<SerialConsole>,
}

/// Why a boot ended before its API served.
enum Stop {
    /// Not a master: nothing (more) runs.
    NotMaster(&'static str),
    /// A script aborted (see the module doc).
    Aborted(Script, Abort),
}

impl From<(Script, Abort)> for Stop {
    fn from((script, abort): (Script, Abort)) -> Self {
        Stop::Aborted(script, abort)
    }
}

/// The sandbox's own failure (a file it could not write, etcd it could not start) inside a step:
/// reported as that step's abort, as a failing command in the script would be.
fn sandbox_failure(step: &'static str, e: anyhow::Error) -> Abort {
    Abort {
        step,
        message: format!("sandbox: {e:#}"),
    }
}

/// The module doc's boot; runs until the VM stops (the API listener lives in this task).
pub async fn run(ctx: BootContext) {
    let started = Instant::now();
    match boot(&ctx).await {
        Ok(api) => {
            let pids: Vec<u32> = ctx
                .members
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(EtcdMember::pid)
                .collect();
            tracing::info!(vm = %ctx.key, etcd_pids = ?pids, "booted in {:?}: etcd started{}", started.elapsed(),
                if api.is_some() { ", API on :443" } else { "" });
            let _api = api;
            std::future::pending::<()>().await;
        }
        Err(Stop::NotMaster(why)) => tracing::debug!(vm = %ctx.key, "not a master ({why}): nothing more runs"),
        Err(Stop::Aborted(script, abort)) => {
            ctx.console.say(script, &abort.message);
            ctx.console.step(script, abort.step, StepStatus::Error);
            ctx.console.unit_failed(script);
            tracing::warn!(vm = %ctx.key, "the boot stopped in {} {}: {}", script.name(), abort.step, abort.message);
            // What the steps before it started (etcd) keeps running.
            std::future::pending::<()>().await;
        }
    }
}

/// An instance attribute from the VM's metadata server (`None`: 404, not set).
async fn attribute(http: &reqwest::Client, key: &str) -> Result<Option<String>> {
    let url = format!(
        "http://{}/computeMetadata/v1/instance/attributes/{key}",
        metadata::ADDRESS
    );
    let reply = http
        .get(&url)
        .header(metadata::FLAVOR, "Google")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    match reply.status().as_u16() {
        200 => Ok(Some(reply.text().await.with_context(|| format!("GET {url}"))?)),
        404 => Ok(None),
        other => bail!("GET {url}: HTTP {other}"),
    }
}

/// configure.sh's `retry-forever`: the item, once it exists (a fetch error is retried too).
async fn wait_for_item(ctx: &BootContext, http: &reqwest::Client, key: &str) -> String {
    let mut said = false;
    loop {
        match attribute(http, key).await {
            Ok(Some(value)) => return value,
            Ok(None) | Err(_) if !said => {
                ctx.console.say(
                    Script::Configure,
                    &format!("Failed to retrieve {key} from metadata server; retrying forever"),
                );
                said = true;
            }
            _ => {}
        }
        tokio::time::sleep(RETRY_FOREVER).await;
    }
}

/// The VM path `path` as this process sees it: the data disk's tree, or the VM's own files.
fn outside(ctx_files: &VmFiles, master_pd: &Path, path: &str) -> PathBuf {
    match path.strip_prefix(MASTER_PD) {
        Some(rest) => master_pd.join(rest.trim_start_matches('/')),
        None => ctx_files.outside(path),
    }
}

/// Write files a step made (`mkdir -p` of their dirs, 0755 under root's umask).
fn write_files(files: &VmFiles, master_pd: &Path, written: &[VmFile]) -> Result<()> {
    for f in written {
        let path = outside(files, master_pd, &f.path);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("mkdir -p {}", dir.display()))?;
        }
        // `rm -f` then a fresh file: the mode of an earlier boot's file does not survive.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, &f.bytes).with_context(|| format!("writing {}", f.path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .with_context(|| format!("chmod {}", f.path))?;
        if let Some(gid) = f.group {
            std::os::unix::fs::chown(&path, None, Some(gid)).with_context(|| format!("chgrp {gid} {}", f.path))?;
        }
    }
    Ok(())
}

/// One `log-wrap`ped step of configure-helper: its records around `body`.
fn step<T>(console: &SerialConsole, name: &'static str, body: impl FnOnce() -> Result<T, Abort>) -> Result<T, Stop> {
    console.step(Script::ConfigureHelper, name, StepStatus::Started);
    let value = body().map_err(|a| Stop::Aborted(Script::ConfigureHelper, a))?;
    console.step(Script::ConfigureHelper, name, StepStatus::Completed);
    Ok(value)
}

/// configure.sh's steps: the maps (and `kubelet-config`), or why this is no master.
async fn configure_sh(ctx: &BootContext) -> Result<(ch::Pairs, ch::Pairs, bool), Stop> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(METADATA_TIMEOUT)
        .build()
        .map_err(|e| (Script::Configure, sandbox_failure("DownloadKubeEnv", e.into())))?;
    // No kube-env at all: not a kube master; a real one would not even run configure.sh.
    let Some(kube_env) = attribute(&http, names::METADATA_KUBE_ENV).await.ok().flatten() else {
        return Err(Stop::NotMaster("no kube-env in metadata"));
    };
    let c = &ctx.console;
    c.unit_starting(Script::Configure);
    c.step(Script::Configure, "DownloadKubeEnv", StepStatus::Started);
    let env =
        ch::parse_map("DownloadKubeEnv", names::METADATA_KUBE_ENV, &kube_env).map_err(|a| (Script::Configure, a))?;
    c.step(Script::Configure, "DownloadKubeEnv", StepStatus::Completed);
    let kubelet_config = ch::needs_kubelet_config(&env);
    if kubelet_config {
        c.step(Script::Configure, "DownloadKubeletConfig", StepStatus::Started);
        wait_for_item(ctx, &http, names::METADATA_KUBELET_CONFIG).await;
        c.step(Script::Configure, "DownloadKubeletConfig", StepStatus::Completed);
    }
    if !ch::is_master(&env) {
        c.say(
            Script::Configure,
            "sandbox: KUBERNETES_MASTER is not 'true': configure-helper takes the node path, which the sandbox does not simulate",
        );
        c.unit_finished(Script::Configure);
        return Err(Stop::NotMaster("KUBERNETES_MASTER is not 'true'"));
    }
    c.step(Script::Configure, "DownloadKubeMasterCerts", StepStatus::Started);
    let certs_text = wait_for_item(ctx, &http, names::METADATA_MASTER_CERTS).await;
    let certs = ch::parse_map("DownloadKubeMasterCerts", names::METADATA_MASTER_CERTS, &certs_text)
        .map_err(|a| (Script::Configure, a))?;
    c.step(Script::Configure, "DownloadKubeMasterCerts", StepStatus::Completed);
    c.say(
        Script::Configure,
        "sandbox: release downloads and installs skipped (no tarballs in the sandbox)",
    );
    c.unit_finished(Script::Configure);
    Ok((env, certs, kubelet_config))
}

async fn boot(ctx: &BootContext) -> Result<Option<ListenerTask>, Stop> {
    let (env, certs, kubelet_config) = configure_sh(ctx).await?;
    let c = ctx.console.clone();
    c.unit_starting(Script::ConfigureHelper);
    c.say(Script::ConfigureHelper, "Start to configure instance for kubernetes");
    c.step(Script::ConfigureHelper, "ConfigureHelperMain", StepStatus::Started);

    // The steps block (files, forks, resolving): off the VM's only runtime thread.
    let (files, master_pd, has_disk, host, members, key, ip) = (
        ctx.files.clone(),
        ctx.master_pd.clone(),
        ctx.has_disk,
        ctx.host.clone(),
        ctx.members.clone(),
        ctx.key.clone(),
        ctx.ip,
    );
    let console = c.clone();
    let api_files = tokio::task::spawn_blocking(move || -> Result<ApiServerFiles, Stop> {
        let c = &*console;
        let mut sh = Shell::default();
        step(c, "SourceKubeEnv", || {
            sh.source("SourceKubeEnv", "/home/kubernetes/kube-env", &env)
        })?;
        if kubelet_config {
            c.say(
                Script::ConfigureHelper,
                "Found Kubelet config file at /home/kubernetes/kubelet-config.yaml",
            );
            ch::kubelet_config_file_arg(&mut sh).map_err(|a| Stop::Aborted(Script::ConfigureHelper, a))?;
        }
        step(c, "SourceKubeMasterCerts", || {
            sh.source("SourceKubeMasterCerts", "/home/kubernetes/kube-master-certs", &certs)
        })?;
        step(c, "VerifyKubeUser", || ch::verify_kube_user(&sh))?;
        step(c, "GenerateTokens", || ch::generate_tokens(&mut sh))?;
        step(c, "MountMasterPD", || {
            ch::mount_master_pd(&mut sh, has_disk)?;
            create_private_dir(&master_pd.join("var/etcd")).map_err(|e| sandbox_failure("MountMasterPD", e))
        })?;
        for (name, make) in [
            (
                "CreateNodePKI",
                ch::create_node_pki as fn(&mut Shell) -> Result<Vec<VmFile>, Abort>,
            ),
            ("CreateMasterPKI", ch::create_master_pki),
        ] {
            step(c, name, || {
                let made = make(&mut sh)?;
                write_files(&files, &master_pd, &made).map_err(|e| sandbox_failure(name, e))
            })?;
        }
        step(c, "CreateMasterKubeletAuth", || ch::create_master_kubelet_auth(&mut sh))?;
        step(c, "CreateMasterEtcdAuth", || {
            let made = ch::create_master_etcd_auth(&sh)?;
            write_files(&files, &master_pd, &made).map_err(|e| sandbox_failure("CreateMasterEtcdAuth", e))
        })?;
        step(c, "CreateMasterEtcdApiserverAuth", || {
            let made = ch::create_master_etcd_apiserver_auth(&mut sh)?;
            write_files(&files, &master_pd, &made).map_err(|e| sandbox_failure("CreateMasterEtcdApiserverAuth", e))
        })?;
        step(c, "ComputeMasterManifestVariables", || {
            ch::compute_master_manifest_variables(&mut sh)
        })?;
        if ch::starts_etcd(&sh) {
            step(c, "StartEtcdServers", || {
                c.say(Script::ConfigureHelper, "Start etcd pods");
                ch::chown_etcd_dir(&sh, has_disk)?;
                let host_name = ch::etcd_host_name(&sh, &key.name);
                let host_ip = resolve(&files, &host_name, c)?;
                let etcd_host = EtcdHost {
                    name: host_name,
                    ip: host_ip,
                };
                let mut started = Vec::new();
                for cluster in EtcdCluster::ALL {
                    let line = ch::prepare_etcd_manifest(&sh, cluster, &etcd_host)?;
                    started.push(
                        start_member(&files, &master_pd, &host, &key, ip, line)
                            .map_err(|e| sandbox_failure("StartEtcdServers", e))?,
                    );
                }
                members.lock().unwrap_or_else(PoisonError::into_inner).extend(started);
                Ok(())
            })?;
        }
        step(c, "StartKubeApiserver", || {
            c.say(Script::ConfigureHelper, "Start kubernetes api-server");
            ch::start_kube_apiserver(&mut sh)
        })
    })
    .await
    .map_err(|e| {
        Stop::Aborted(
            Script::ConfigureHelper,
            sandbox_failure("ConfigureHelperMain", anyhow!("the boot thread panicked: {e}")),
        )
    })??;

    let api = api_server(ctx, &api_files)
        .map_err(|e| Stop::Aborted(Script::ConfigureHelper, sandbox_failure("StartKubeApiserver", e)))?;
    c.say(Script::ConfigureHelper, "Done for the configuration for kubernetes");
    c.step(Script::ConfigureHelper, "ConfigureHelperMain", StepStatus::Completed);
    c.unit_finished(Script::ConfigureHelper);
    Ok(api)
}

/// `prepare-etcd-manifest`'s `gethostbyname(host_name)`: through the VM's `/etc/hosts`, retried
/// once a second for [`RESOLVE_FOR`], each failure printed as its python prints it.
fn resolve(files: &VmFiles, name: &str, console: &SerialConsole) -> Result<Ipv4Addr, Abort> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let hosts = std::fs::read_to_string(files.etc().join("hosts")).unwrap_or_default();
        if let Some(ip) = ch::resolve_in_hosts(&hosts, name) {
            return Ok(ip);
        }
        if !said {
            console.say(
                Script::ConfigureHelper,
                &format!("error: resolving host {name} to IP failed: [Errno -2] Name or service not known"),
            );
            said = true;
        }
        if started.elapsed() > RESOLVE_FOR {
            // The python prints nothing on stdout: host_ip is empty and etcd is told to
            // listen on "https://:2380", which it refuses.
            return Err(Abort {
                step: "StartEtcdServers",
                message: format!("sandbox: {name} never resolved; etcd cannot listen on its peer port"),
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Start one member inside the VM with its rendered command line (its data dir made 0700 on the
/// disk, as etcd wants it).
fn start_member(
    files: &VmFiles,
    master_pd: &Path,
    host: &Namespaces,
    key: &ZonalKey,
    ip: Ipv4Addr,
    line: ch::EtcdCommandLine,
) -> Result<EtcdMember> {
    create_private_dir(&outside(files, master_pd, &line.data_dir))?;
    let log = files.logs().join(format!("etcd-{}.log", line.cluster));
    let config = EtcdMemberConfig::for_vm(line.cluster, &key.name, ip, line.args, log);
    EtcdMember::spawn_in(config, host)
}

/// The API stand-in with kube-apiserver's files: `--tls-cert-file`/`--tls-private-key-file`,
/// `--client-ca-file`, and `--etcd-{ca,cert,key}file` to `https://127.0.0.1:2379`. Without main
/// etcd mTLS there is none (the stand-in's etcd client speaks TLS only; kube-up clusters have it).
fn api_server(ctx: &BootContext, f: &ApiServerFiles) -> Result<Option<ListenerTask>> {
    let Some([etcd_ca, etcd_cert, etcd_key]) = &f.etcd_tls else {
        ctx.console.say(
            Script::ConfigureHelper,
            "sandbox: main etcd has no client mTLS; the API stand-in does not start",
        );
        return Ok(None);
    };
    let read = |path: &str| {
        std::fs::read_to_string(outside(&ctx.files, &ctx.master_pd, path)).with_context(|| format!("reading {path}"))
    };
    let local_etcd = LocalEtcd {
        client: EtcdClient::new(&read(etcd_ca)?, &read(etcd_cert)?, &read(etcd_key)?, LOCAL_ETCD_TIMEOUT)
            .context("the apiserver's etcd client certificate")?,
        endpoint: EtcdCluster::Main.client_url(Ipv4Addr::LOCALHOST),
    };
    let api = ApiServer::new(
        &read(&f.tls_cert)?,
        &read(&f.tls_key)?,
        &read(&f.client_ca)?,
        local_etcd,
    )?;
    Ok(Some(api.listen(Ipv4Addr::UNSPECIFIED, "vm")))
}
