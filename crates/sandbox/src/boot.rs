//! The boot of a master VM, as configure-helper does it on a kube-up master, run inside the VM
//! (on its runtime, so every socket is the VM's):
//! 1. read `kube-env` and `kube-master-certs` from the VM's metadata server, over HTTP, as an
//!    on-VM agent does (no `kube-env`: not a master, nothing more runs);
//! 2. write the certificates to `/etc/srv/kubernetes` (keys 0600);
//! 3. start etcd main (2379/2380) and events (4002/2381) inside the VM, named `etcd-<vm>`, with
//!    `INITIAL_ETCD_CLUSTER` (written with main's peer port; events uses the same names on 2381)
//!    and `INITIAL_ETCD_CLUSTER_STATE`, data on `/mnt/disks/master-pd` (the data disk); clients
//!    only on the VM's own `127.0.0.1` (main mutual TLS, events plain HTTP: reached over SSH),
//!    peers on the networkIP;
//! 4. serve the API stand-in on the VM's port 443, backed by the local etcd at `127.0.0.1:2379`.
//!
//! A VM booting on a disk whose etcd data dirs exist just restarts etcd with them (etcd ignores
//! `--initial-cluster*` once it has data), as a real VM recreated on its old disk would.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use kube_ha_core::etcd::EtcdClient;
use kube_ha_core::names::{self, EtcdCluster};
use kube_ha_core::pki::kube_env::{self as ke, KeyValues};

use super::apiserver::{ApiServer, LocalEtcd};
use super::etcd_proc::{
    EtcdMember, EtcdMemberConfig, EtcdTlsFiles, InitialClusterState, create_private_dir, initial_cluster,
    parse_initial_cluster, write_file,
};
use super::files::{MASTER_PD, SRV_KUBERNETES, VmFiles};
use super::layout::ZonalKey;
use super::metadata;
use super::ns::Namespaces;

/// Timeout of the API stand-in's calls to its local etcd (per call; routes pick shorter ones).
const LOCAL_ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long reading the metadata server may take at boot.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The etcd members a VM started, shared with its task so a delete can stop them gracefully.
pub type Members = Arc<Mutex<Vec<EtcdMember>>>;

/// What the boot needs from outside the VM.
pub struct BootContext {
    /// project/zone/instance.
    pub key: ZonalKey,
    /// nic0's networkIP.
    pub ip: Ipv4Addr,
    /// The VM's files.
    pub files: VmFiles,
    /// Where `/mnt/disks/master-pd` is in this process's view (the disk's dir, or the VM's own).
    pub master_pd: PathBuf,
    /// The VM's namespaces (etcd starts inside).
    pub host: Arc<Namespaces>,
    /// Where the started members go.
    pub members: Members,
}

/// Steps 1–4 of the module doc; runs until the VM stops (the API listener lives in this task).
pub async fn run(ctx: BootContext) {
    let started = Instant::now();
    match boot(&ctx).await {
        Ok(Some(api)) => {
            let pids: Vec<u32> = ctx
                .members
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(EtcdMember::pid)
                .collect();
            tracing::info!(vm = %ctx.key, etcd_pids = ?pids, "booted in {:?}: etcd started, API on :443", started.elapsed());
            let _api = api;
            std::future::pending::<()>().await;
        }
        Ok(None) => tracing::debug!(vm = %ctx.key, "no kube-env in metadata: not a master, nothing more runs"),
        Err(e) => tracing::warn!(vm = %ctx.key, "boot failed, no master runs: {e:#}"),
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

async fn boot(ctx: &BootContext) -> Result<Option<super::listener::ListenerTask>> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(METADATA_TIMEOUT)
        .build()
        .context("an HTTP client for the metadata server")?;
    let Some(kube_env) = attribute(&http, names::METADATA_KUBE_ENV).await? else {
        return Ok(None);
    };
    let master_certs = attribute(&http, names::METADATA_MASTER_CERTS)
        .await?
        .ok_or_else(|| anyhow!("kube-env is set but kube-master-certs is not"))?;
    let kube_env = KeyValues::from_yaml(&kube_env).context("kube-env")?;
    let master_certs = KeyValues::from_yaml(&master_certs).context("kube-master-certs")?;
    let pems = MasterPems::from_metadata(&kube_env, &master_certs)?;
    let local_etcd = LocalEtcd {
        client: EtcdClient::new(
            &pems.etcd_client_ca,
            &pems.etcd_client_cert,
            &pems.etcd_client_key,
            LOCAL_ETCD_TIMEOUT,
        )
        .context("the apiserver's etcd client certificate")?,
        endpoint: EtcdCluster::Main.client_url(Ipv4Addr::LOCALHOST),
    };
    let api = ApiServer::new(&pems.apiserver_cert, &pems.apiserver_key, &pems.cluster_ca, local_etcd)?;

    // Files and forks block: off the VM's only thread. The members are started in order (main,
    // events); if events cannot start, main is dropped, which kills it.
    let (key, ip, files, master_pd, host, members) = (
        ctx.key.clone(),
        ctx.ip,
        ctx.files.clone(),
        ctx.master_pd.clone(),
        ctx.host.clone(),
        ctx.members.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<()> {
        pems.write(&files.srv_kubernetes())?;
        let tls = EtcdTlsFiles::in_dir(Path::new(SRV_KUBERNETES));
        let etcd_dir = Path::new(MASTER_PD).join("var/etcd");
        let configs = etcd_configs(&key, ip, &kube_env, &tls, &etcd_dir, &files.logs())?;
        let mut started = Vec::new();
        for mut config in configs {
            config.local_clients = true;
            // The data dir as this process sees it (the VM sees the disk at MASTER_PD).
            let outside = master_pd.join("var/etcd").join(config.cluster.data_dir_name());
            create_private_dir(&outside)?;
            started.push(EtcdMember::spawn_in(config, &host)?);
        }
        members.lock().unwrap_or_else(PoisonError::into_inner).extend(started);
        Ok(())
    })
    .await
    .context("the boot thread panicked")??;
    Ok(Some(api.listen(Ipv4Addr::UNSPECIFIED, "vm")))
}

/// The certificates and keys a master VM needs, decoded from its metadata.
struct MasterPems {
    cluster_ca: String,
    apiserver_cert: String,
    apiserver_key: String,
    etcd_peer_ca: String,
    etcd_peer_cert: String,
    etcd_peer_key: String,
    etcd_client_ca: String,
    etcd_server_cert: String,
    etcd_server_key: String,
    etcd_client_cert: String,
    etcd_client_key: String,
}

impl MasterPems {
    fn from_metadata(kube_env: &KeyValues, master_certs: &KeyValues) -> Result<MasterPems> {
        Ok(MasterPems {
            cluster_ca: kube_env.pem(ke::CA_CERT)?,
            apiserver_cert: kube_env.pem(ke::MASTER_CERT)?,
            apiserver_key: kube_env.pem(ke::MASTER_KEY)?,
            etcd_peer_ca: kube_env.pem(ke::ETCD_CA_CERT)?,
            etcd_peer_cert: kube_env.pem(ke::ETCD_PEER_CERT)?,
            etcd_peer_key: kube_env.pem(ke::ETCD_PEER_KEY)?,
            etcd_client_ca: master_certs.pem(ke::ETCD_APISERVER_CA_CERT)?,
            etcd_server_cert: master_certs.pem(ke::ETCD_APISERVER_SERVER_CERT)?,
            etcd_server_key: master_certs.pem(ke::ETCD_APISERVER_SERVER_KEY)?,
            etcd_client_cert: master_certs.pem(ke::ETCD_APISERVER_CLIENT_CERT)?,
            etcd_client_key: master_certs.pem(ke::ETCD_APISERVER_CLIENT_KEY)?,
        })
    }

    /// Write them into `dir` (0700) under configure-helper's names: `ca.crt`, `server.cert`,
    /// `server.key` for the apiserver, [`EtcdTlsFiles`] for etcd. Keys are 0600.
    fn write(&self, dir: &std::path::Path) -> Result<EtcdTlsFiles> {
        create_private_dir(dir)?;
        write_file(&dir.join("ca.crt"), &self.cluster_ca, 0o644)?;
        write_file(&dir.join("server.cert"), &self.apiserver_cert, 0o644)?;
        write_file(&dir.join("server.key"), &self.apiserver_key, 0o600)?;
        let tls = EtcdTlsFiles::in_dir(dir);
        for (path, pem, mode) in [
            (&tls.peer_ca, &self.etcd_peer_ca, 0o644),
            (&tls.peer_cert, &self.etcd_peer_cert, 0o644),
            (&tls.peer_key, &self.etcd_peer_key, 0o600),
            (&tls.client_ca, &self.etcd_client_ca, 0o644),
            (&tls.server_cert, &self.etcd_server_cert, 0o644),
            (&tls.server_key, &self.etcd_server_key, 0o600),
            (&tls.client_cert, &self.etcd_client_cert, 0o644),
            (&tls.client_key, &self.etcd_client_key, 0o600),
        ] {
            write_file(path, pem, mode)?;
        }
        Ok(tls)
    }
}

/// The two etcd members' settings for this VM (see the module doc).
fn etcd_configs(
    key: &ZonalKey,
    ip: Ipv4Addr,
    kube_env: &KeyValues,
    tls: &EtcdTlsFiles,
    etcd_dir: &std::path::Path,
    log_dir: &std::path::Path,
) -> Result<Vec<EtcdMemberConfig>> {
    let members = match kube_env.get(ke::INITIAL_ETCD_CLUSTER).map(str::trim) {
        Some(list) if !list.is_empty() => parse_initial_cluster(list)?,
        // configure-helper's default: just this host.
        _ => vec![(key.name.clone(), ip)],
    };
    let state = InitialClusterState::parse(kube_env.get(ke::INITIAL_ETCD_CLUSTER_STATE).unwrap_or(""))?;
    Ok(EtcdCluster::ALL
        .into_iter()
        .map(|cluster| {
            let mut config = EtcdMemberConfig::new(
                cluster,
                &key.name,
                ip,
                etcd_dir,
                tls.clone(),
                initial_cluster(cluster, &members),
                state,
            );
            config.log_file = log_dir.join(format!("etcd-{cluster}.log"));
            config
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_gets_the_main_list_on_its_own_peer_port() {
        let dir = std::path::Path::new("/s");
        let mut env = KeyValues::default();
        env.set(
            ke::INITIAL_ETCD_CLUSTER,
            "etcd-m=https://127.5.1.1:2380,etcd-m-abc=https://127.5.1.2:2380",
        );
        env.set(ke::INITIAL_ETCD_CLUSTER_STATE, "existing");
        let key = ZonalKey::new("p", "z", "m-abc");
        let ip = Ipv4Addr::new(127, 5, 1, 2);
        let configs =
            etcd_configs(&key, ip, &env, &EtcdTlsFiles::in_dir(dir), dir, &dir.join("logs")).expect("configs");
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0].cluster, EtcdCluster::Main);
        assert_eq!(
            configs[1].initial_cluster,
            "etcd-m=https://127.5.1.1:2381,etcd-m-abc=https://127.5.1.2:2381"
        );
        assert_eq!(configs[1].initial_state, InitialClusterState::Existing);
        assert_eq!(configs[1].data_dir, dir.join("data-events"));
        assert_eq!(configs[1].log_file, dir.join("logs/etcd-events.log"));

        // Unset: configure-helper's default, this host alone, a new cluster.
        let alone =
            etcd_configs(&key, ip, &KeyValues::default(), &EtcdTlsFiles::in_dir(dir), dir, dir).expect("default");
        assert_eq!(alone[0].initial_cluster, "etcd-m-abc=https://127.5.1.2:2380");
        assert_eq!(alone[0].initial_state, InitialClusterState::New);
    }
}
