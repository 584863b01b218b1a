//! One real etcd member process. A sandbox master VM's members run inside the VM's namespaces
//! with exactly the command line configure-helper's manifest renders there
//! (`configure_helper::prepare_etcd_manifest`, [`EtcdMemberConfig::for_vm`],
//! [`EtcdMember::spawn_in`]); tests that need a real etcd on the machine get the same TLS flags
//! with explicit IPs instead of names, every listener on one IP ([`EtcdMemberConfig::new`],
//! [`EtcdMember::spawn`]).
//!
//! Children die with their parent: every member is started by [`crate::ns`]'s spawner thread with
//! `PR_SET_PDEATHSIG = SIGKILL`, so a test binary or emulator killed by SIGKILL leaves no etcd
//! behind (see that module for why it must be one long-lived thread).
//!
//! The API is synchronous (spawn is a channel round trip; `stop` polls); async callers use
//! [`EtcdMember::wait_exit_async`] or `spawn_blocking` for [`EtcdMember::stop`].

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use kube_ha_core::names::EtcdCluster;
use kube_ha_core::pki::{ClusterCas, ReplicaCerts};

use crate::ns::{self, Namespaces};

/// Environment variable naming the etcd binary (default: `etcd` on `PATH`).
pub const ETCD_BINARY_ENV: &str = "KUBE_HA_ETCD_BINARY";

/// configure-helper's `--quota-backend-bytes` for etcd3: 4 GiB.
pub const QUOTA_BACKEND_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// How often exit is polled while waiting for a member to stop.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialClusterState {
    /// Bootstrap a cluster from the `--initial-cluster` list (first master).
    New,
    /// Join a cluster that already has this member in its member list (replicas).
    Existing,
}

impl InitialClusterState {
    /// The flag value, also kube-env's `INITIAL_ETCD_CLUSTER_STATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            InitialClusterState::New => "new",
            InitialClusterState::Existing => "existing",
        }
    }

    /// Parse kube-env's `INITIAL_ETCD_CLUSTER_STATE` (configure-helper defaulted to `new`).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "" | "new" => Ok(InitialClusterState::New),
            "existing" => Ok(InitialClusterState::Existing),
            other => bail!("INITIAL_ETCD_CLUSTER_STATE must be new or existing, got {other:?}"),
        }
    }
}

/// `etcd-<vm>=https://<ip>:<peer port>,…` for `cluster`: the `--initial-cluster` of members
/// addressed by IP (tests on the machine; a VM's list is rendered from kube-env's bare names).
pub fn initial_cluster(cluster: EtcdCluster, members: &[(String, Ipv4Addr)]) -> String {
    members
        .iter()
        .map(|(replica, ip)| format!("{}={}", cluster.member_name(replica), cluster.peer_url(*ip)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The TLS files of one replica's etcd members, named as configure-helper named them under
/// `/etc/srv/kubernetes` (main and events share them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTlsFiles {
    /// etcd peer CA certificate (`--peer-trusted-ca-file`).
    pub peer_ca: PathBuf,
    /// This replica's peer certificate (`--peer-cert-file`).
    pub peer_cert: PathBuf,
    /// Its key, 0600 (`--peer-key-file`).
    pub peer_key: PathBuf,
    /// etcd client CA certificate (`--trusted-ca-file`).
    pub client_ca: PathBuf,
    /// This replica's etcd server certificate (`--cert-file`).
    pub server_cert: PathBuf,
    /// Its key, 0600 (`--key-file`).
    pub server_key: PathBuf,
    /// The apiserver's client certificate for its local etcd (not an etcd flag; for the
    /// sandbox's apiserver stand-in).
    pub client_cert: PathBuf,
    /// Its key, 0600.
    pub client_key: PathBuf,
}

impl EtcdTlsFiles {
    /// The file names under `dir`, without touching the disk.
    pub fn in_dir(dir: &Path) -> EtcdTlsFiles {
        EtcdTlsFiles {
            peer_ca: dir.join("etcd-ca.crt"),
            peer_cert: dir.join("etcd-peer.crt"),
            peer_key: dir.join("etcd-peer.key"),
            client_ca: dir.join("etcd-apiserver-ca.crt"),
            server_cert: dir.join("etcd-apiserver-server.crt"),
            server_key: dir.join("etcd-apiserver-server.key"),
            client_cert: dir.join("etcd-apiserver-client.crt"),
            client_key: dir.join("etcd-apiserver-client.key"),
        }
    }

    /// Write a replica's etcd certificates and the two CA certificates (never CA keys) into
    /// `dir` (created 0700 if missing). Keys are 0600 from the moment they exist.
    pub fn write(dir: &Path, cas: &ClusterCas, certs: &ReplicaCerts) -> Result<EtcdTlsFiles> {
        create_private_dir(dir)?;
        let files = EtcdTlsFiles::in_dir(dir);
        write_file(&files.peer_ca, &cas.etcd_peer.cert_pem, 0o644)?;
        write_file(&files.peer_cert, &certs.etcd_peer.cert_pem, 0o644)?;
        write_file(&files.peer_key, &certs.etcd_peer.key_pem, 0o600)?;
        write_file(&files.client_ca, &cas.etcd_client.cert_pem, 0o644)?;
        write_file(&files.server_cert, &certs.etcd_server.cert_pem, 0o644)?;
        write_file(&files.server_key, &certs.etcd_server.key_pem, 0o600)?;
        write_file(&files.client_cert, &certs.etcd_client.cert_pem, 0o644)?;
        write_file(&files.client_key, &certs.etcd_client.key_pem, 0o600)?;
        Ok(files)
    }
}

/// Everything one etcd member is started with.
#[derive(Clone, Debug)]
pub struct EtcdMemberConfig {
    /// The etcd binary.
    pub binary: PathBuf,
    /// The replica (VM) name; the member is `etcd-<replica>`.
    pub replica: String,
    /// Main (2379/2380) or events (4002/2381).
    pub cluster: EtcdCluster,
    /// The replica's internal IP: every listener of a test member binds to it.
    pub ip: Ipv4Addr,
    /// `--data-dir` (created 0700).
    pub data_dir: PathBuf,
    /// Certificates and keys.
    pub tls: EtcdTlsFiles,
    /// `--initial-cluster`: every current member plus this one (see [`initial_cluster`]).
    pub initial_cluster: String,
    /// `--initial-cluster-state`.
    pub initial_state: InitialClusterState,
    /// stdout and stderr go here (appended, so a restart keeps the earlier log). Opened by this
    /// process: a path of its view, also for a member inside a VM (whose other paths are the VM's).
    pub log_file: PathBuf,
    /// `--listen-metrics-urls http://<ip>:<port>` (configure-helper used 2382 for main).
    pub metrics_port: Option<u16>,
    /// Anything else (e.g. `--heartbeat-interval`), appended last.
    pub extra_args: Vec<String>,
    /// A VM's member: the command line as rendered, used as it is by [`EtcdMemberConfig::args`].
    pub rendered: Option<Vec<String>>,
}

impl EtcdMemberConfig {
    /// A member of `cluster` for `replica` on `ip`, with its data dir and log under `dir`
    /// (`data`/`data-events` as configure-helper, and `etcd-main.log`/`etcd-events.log`).
    pub fn new(
        cluster: EtcdCluster,
        replica: &str,
        ip: Ipv4Addr,
        dir: &Path,
        tls: EtcdTlsFiles,
        initial_cluster: String,
        initial_state: InitialClusterState,
    ) -> EtcdMemberConfig {
        EtcdMemberConfig {
            binary: default_binary(),
            replica: replica.to_string(),
            cluster,
            ip,
            data_dir: dir.join(cluster.data_dir_name()),
            tls,
            initial_cluster,
            initial_state,
            log_file: dir.join(format!("etcd-{cluster}.log")),
            metrics_port: None,
            extra_args: Vec::new(),
            rendered: None,
        }
    }

    /// A VM's member, started with `args` as configure-helper rendered them (`--name etcd-<vm>`,
    /// data under the VM's data disk …). `ip` is the VM's internal IP (for [`Self::client_url`]
    /// while the VM also serves clients there); `log_file` is a path of this process's view.
    pub fn for_vm(
        cluster: EtcdCluster,
        replica: &str,
        ip: Ipv4Addr,
        args: Vec<String>,
        log_file: PathBuf,
    ) -> EtcdMemberConfig {
        let mut config = EtcdMemberConfig::new(
            cluster,
            replica,
            ip,
            Path::new("/"),
            EtcdTlsFiles::in_dir(Path::new("/")),
            String::new(),
            InitialClusterState::New,
        );
        config.log_file = log_file;
        config.rendered = Some(args);
        config
    }

    /// `https://<ip>:<client port>`: what [`kube_ha_core::etcd::EtcdClient`] calls.
    pub fn client_url(&self) -> String {
        self.cluster.client_url(self.ip)
    }

    /// `https://<ip>:<peer port>`: what `member/add` is given.
    pub fn peer_url(&self) -> String {
        self.cluster.peer_url(self.ip)
    }

    /// The command line, without the binary.
    pub fn args(&self) -> Vec<OsString> {
        if let Some(rendered) = &self.rendered {
            return rendered.iter().map(OsString::from).collect();
        }
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            args.push(format!("--{name}").into());
            args.push(value);
        };
        let peer = self.peer_url();
        let client = self.client_url();
        flag("name", self.cluster.member_name(&self.replica).into());
        flag("data-dir", self.data_dir.clone().into());
        flag("listen-peer-urls", peer.clone().into());
        flag("initial-advertise-peer-urls", peer.into());
        flag("listen-client-urls", client.clone().into());
        flag("advertise-client-urls", client.into());
        flag("initial-cluster", self.initial_cluster.clone().into());
        flag("initial-cluster-state", self.initial_state.as_str().into());
        flag("quota-backend-bytes", QUOTA_BACKEND_BYTES.to_string().into());
        flag("peer-trusted-ca-file", self.tls.peer_ca.clone().into());
        flag("peer-cert-file", self.tls.peer_cert.clone().into());
        flag("peer-key-file", self.tls.peer_key.clone().into());
        flag("trusted-ca-file", self.tls.client_ca.clone().into());
        flag("cert-file", self.tls.server_cert.clone().into());
        flag("key-file", self.tls.server_key.clone().into());
        // zap: 3.4's default capnslog logger prints a deprecation warning on every start.
        flag("logger", "zap".into());
        if let Some(port) = self.metrics_port {
            flag("listen-metrics-urls", format!("http://{}:{port}", self.ip).into());
        }
        args.push("--peer-client-cert-auth".into());
        args.push("--client-cert-auth".into());
        // Refuse membership changes that would lose quorum (default in 3.4; said explicitly).
        args.push("--strict-reconfig-check".into());
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }
}

/// `$KUBE_HA_ETCD_BINARY`, else `etcd` (looked up on `PATH`).
pub fn default_binary() -> PathBuf {
    std::env::var_os(ETCD_BINARY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// A running (or exited) etcd member. Dropping it kills the process.
#[derive(Debug)]
pub struct EtcdMember {
    config: EtcdMemberConfig,
    pid: u32,
    /// Only this struct reaps the child, so while `try_wait` says "running" the pid is still
    /// ours and signalling it cannot hit a recycled pid.
    child: Mutex<Child>,
}

impl EtcdMember {
    /// Start the member in this process's namespaces (its data dir is created 0700). Returns once
    /// the process exists; readiness is the caller's business (e.g.
    /// [`kube_ha_core::etcd::EtcdClient::wait_healthy`]).
    pub fn spawn(config: EtcdMemberConfig) -> Result<EtcdMember> {
        create_private_dir(&config.data_dir)?;
        Self::start(config, ns::spawn)
    }

    /// Start the member inside a VM's namespaces. Its paths (data dir, certificates) are the VM's
    /// view and must exist there already, except `log_file`, which this process opens.
    pub fn spawn_in(config: EtcdMemberConfig, host: &Namespaces) -> Result<EtcdMember> {
        Self::start(config, |command| ns::spawn_in(command, host))
    }

    fn start(config: EtcdMemberConfig, spawn: impl FnOnce(Command) -> io::Result<Child>) -> Result<EtcdMember> {
        if let Some(parent) = config.log_file.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let log = ns::append_log(&config.log_file)?;
        let mut command = Command::new(&config.binary);
        command
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let child = spawn(command).with_context(|| {
            format!(
                "starting {} for {} ({})",
                config.binary.display(),
                config.cluster.member_name(&config.replica),
                config.cluster
            )
        })?;
        tracing::debug!(
            pid = child.id(),
            member = %config.cluster.member_name(&config.replica),
            url = %config.client_url(),
            "etcd started"
        );
        Ok(EtcdMember {
            pid: child.id(),
            config,
            child: Mutex::new(child),
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it was started with.
    pub fn config(&self) -> &EtcdMemberConfig {
        &self.config
    }

    /// `https://<ip>:<client port>`.
    pub fn client_url(&self) -> String {
        self.config.client_url()
    }

    /// `https://<ip>:<peer port>`.
    pub fn peer_url(&self) -> String {
        self.config.peer_url()
    }

    /// The exit status, once it has exited (reaps it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        // An error from waitpid means there is no child left to wait for: treat as gone.
        match child.try_wait() {
            Ok(status) => status,
            Err(_) => Some(ExitStatus::from_raw(0)),
        }
    }

    /// Still running?
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Wait (blocking) up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// [`EtcdMember::wait_exit`] without blocking the async runtime.
    pub async fn wait_exit_async(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`. A leader whose peers are
    /// gone takes about 7 s to honour SIGTERM (it first tries to hand over leadership).
    pub fn stop(&self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.signal_if_running(libc::SIGTERM)? {
            return Ok(status);
        }
        match self.wait_exit(timeout) {
            Some(status) => Ok(status),
            None => self.kill(),
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        // Child::kill is SIGKILL and tolerates an already-exited child.
        child.kill().with_context(|| format!("killing etcd pid {}", self.pid))?;
        child.wait().with_context(|| format!("reaping etcd pid {}", self.pid))
    }

    /// Send `signal` unless it has exited (then return its status).
    fn signal_if_running(&self, signal: libc::c_int) -> Result<Option<ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Some(status));
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill(2) has no memory effects; the pid is our unreaped child (see `child`).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("signalling etcd pid {pid}"));
        }
        Ok(None)
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        // SIGKILL, not SIGTERM: a graceful stop of a leader can take seconds, and a dropped
        // member is one nobody will talk to again.
        let _ = self.kill();
    }
}

/// `mkdir -p` with mode 0700 (etcd warns about anything wider on its data dir; key dirs too).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Write `text` to `path` with `mode`, also when the file already existed with another mode.
pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_configure_helper_with_explicit_ips() {
        let ip = Ipv4Addr::new(127, 9, 1, 2);
        let dir = Path::new("/srv/m");
        let list = initial_cluster(EtcdCluster::Events, &[("kubernetes-master".into(), ip)]);
        let cfg = EtcdMemberConfig::new(
            EtcdCluster::Events,
            "kubernetes-master",
            ip,
            dir,
            EtcdTlsFiles::in_dir(dir),
            list,
            InitialClusterState::New,
        );
        let args: Vec<String> = cfg
            .args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let value = |flag: &str| {
            let at = args.iter().position(|a| a == flag).expect(flag);
            args[at + 1].clone()
        };
        assert_eq!(value("--name"), "etcd-kubernetes-master");
        assert_eq!(value("--data-dir"), "/srv/m/data-events");
        assert_eq!(value("--listen-peer-urls"), "https://127.9.1.2:2381");
        assert_eq!(value("--initial-advertise-peer-urls"), "https://127.9.1.2:2381");
        assert_eq!(value("--listen-client-urls"), "https://127.9.1.2:4002");
        assert_eq!(value("--advertise-client-urls"), "https://127.9.1.2:4002");
        assert_eq!(
            value("--initial-cluster"),
            "etcd-kubernetes-master=https://127.9.1.2:2381"
        );
        assert_eq!(value("--initial-cluster-state"), "new");
        assert_eq!(value("--quota-backend-bytes"), "4294967296");
        assert_eq!(value("--peer-trusted-ca-file"), "/srv/m/etcd-ca.crt");
        assert_eq!(value("--trusted-ca-file"), "/srv/m/etcd-apiserver-ca.crt");
        assert_eq!(value("--cert-file"), "/srv/m/etcd-apiserver-server.crt");
        for flag in [
            "--peer-client-cert-auth",
            "--client-cert-auth",
            "--strict-reconfig-check",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert!(!args.iter().any(|a| a == "--listen-metrics-urls"));
        assert_eq!(cfg.log_file, Path::new("/srv/m/etcd-events.log"));
    }

    #[test]
    fn initial_cluster_lists_members_by_ip_on_each_clusters_peer_port() {
        let members = vec![
            ("kubernetes-master".to_string(), Ipv4Addr::new(127, 9, 1, 1)),
            ("kubernetes-master-a1b".to_string(), Ipv4Addr::new(127, 9, 1, 2)),
        ];
        let main = initial_cluster(EtcdCluster::Main, &members);
        assert_eq!(
            main,
            "etcd-kubernetes-master=https://127.9.1.1:2380,etcd-kubernetes-master-a1b=https://127.9.1.2:2380"
        );
        assert_eq!(
            initial_cluster(EtcdCluster::Events, &members),
            main.replace(":2380", ":2381")
        );
    }

    #[test]
    fn initial_state_parses_kube_env() {
        assert_eq!(
            InitialClusterState::parse("").expect("default"),
            InitialClusterState::New
        );
        assert_eq!(
            InitialClusterState::parse("existing").expect("existing"),
            InitialClusterState::Existing
        );
        assert!(InitialClusterState::parse("old").is_err());
    }

    #[test]
    fn a_missing_binary_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = EtcdMemberConfig::new(
            EtcdCluster::Main,
            "m",
            Ipv4Addr::LOCALHOST,
            dir.path(),
            EtcdTlsFiles::in_dir(dir.path()),
            String::new(),
            InitialClusterState::New,
        );
        cfg.binary = dir.path().join("no-such-etcd");
        assert!(EtcdMember::spawn(cfg).is_err());
    }

    #[test]
    fn a_vm_member_runs_with_the_command_line_as_rendered() {
        let line = vec!["--name".to_string(), "etcd-m".to_string()];
        let cfg = EtcdMemberConfig::for_vm(
            EtcdCluster::Main,
            "m",
            Ipv4Addr::new(198, 18, 3, 2),
            line.clone(),
            PathBuf::from("/l/etcd-main.log"),
        );
        let args: Vec<String> = cfg
            .args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, line);
        assert_eq!(cfg.log_file, Path::new("/l/etcd-main.log"));
    }

    #[test]
    fn tls_keys_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = time::OffsetDateTime::now_utc();
        let cas = ClusterCas::generate("k", now).expect("cas");
        let certs = kube_ha_core::pki::issue_replica_certs(
            &cas,
            &kube_ha_core::pki::ReplicaIdentity {
                master_name: "m".into(),
                replica: "m".into(),
                internal_ip: Ipv4Addr::new(127, 0, 0, 2),
                static_ip: Ipv4Addr::new(127, 0, 0, 3),
                service_ip: Ipv4Addr::new(10, 0, 0, 1),
                dns_domain: "cluster.local".into(),
            },
            now,
        )
        .expect("certs");
        let sub = dir.path().join("pki");
        let files = EtcdTlsFiles::write(&sub, &cas, &certs).expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        for key in [&files.peer_key, &files.server_key, &files.client_key] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        assert_eq!(mode(&files.peer_ca), 0o644);
        assert_eq!(
            fs::read_to_string(&files.client_ca).expect("read"),
            cas.etcd_client.cert_pem
        );
        // Rewriting over a file with a wider mode narrows it.
        fs::set_permissions(&files.server_key, fs::Permissions::from_mode(0o644)).expect("chmod");
        EtcdTlsFiles::write(&sub, &cas, &certs).expect("rewrite");
        assert_eq!(mode(&files.server_key), 0o600);
    }
}
