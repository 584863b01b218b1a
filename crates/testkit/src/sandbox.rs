//! The sandbox under test: the real `kube-ha emulator` binary with `--sandbox-dir`, driven through
//! kube-ha's own GCE adapter (the official Compute client) to create what `kube-ha up` creates,
//! and observed from outside: `/proc`, the real `etcdctl`, HTTPS with the cluster CA.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use google_cloud_compute_v1::model;
use kube_ha_core::gce::Gce;
use kube_ha_core::names::{self, EtcdCluster};
use kube_ha_core::ops::cluster::{ClusterEnv, ClusterSecrets, first_master_metadata};
use kube_ha_core::pki::kube_env::KeyValues;
use kube_ha_core::pki::{CertPair, ClusterCas, ReplicaCerts, ReplicaIdentity, issue_replica_certs};
use tempfile::TempDir;
use time::OffsetDateTime;

/// The zone every test uses.
pub const ZONE: &str = "europe-west1-b";
/// Its region.
pub const REGION: &str = "europe-west1";
/// The project every test uses (the sandbox's default).
pub const PROJECT: &str = "sandbox";
/// The first master's name.
pub const MASTER: &str = "kubernetes-master";

/// How long anything that involves starting etcd may take on a loaded 2-core machine (a
/// single-member cluster is healthy about 1 s after start).
pub const BOOT_WITHIN: Duration = Duration::from_secs(30);

/// One emulator process with simulated VMs, in its own temp dir and address block.
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its `127.N.0.0/16`.
    pub block: u8,
    /// `--sandbox-dir` (canonical).
    pub dir: PathBuf,
    child: Child,
    _tmp: TempDir,
}

impl Emulator {
    /// Start `kube-ha emulator --listen 127.0.0.1:0 --sandbox-dir <tmp> --op-latency-ms 0 ARGS`
    /// and wait for its two stdout lines.
    pub fn start(args: &[&str]) -> Emulator {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().canonicalize().expect("canonical tempdir");
        let log = std::fs::File::create(dir.join("emulator.log")).expect("log file");
        let mut child = Command::new(crate::kube_ha_bin())
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--op-latency-ms",
                "0",
                "--sandbox-dir",
            ])
            .arg(dir.join("sandbox"))
            .args(args)
            .env("KUBE_HA_LOG", "kube_ha=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the emulator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout for the emulator's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = || rx.recv_timeout(Duration::from_secs(30)).expect("emulator stdout line");
        let first = line();
        let endpoint = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let second = line();
        let block = second
            .strip_prefix("ip block 127.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
        Emulator {
            endpoint,
            block,
            dir: dir.join("sandbox"),
            child,
            _tmp: tmp,
        }
    }

    /// The emulator's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What its VMs run: their holders and every process inside them.
    pub fn children(&self) -> Vec<(u32, String)> {
        crate::hosts::vm_processes(&self.dir)
    }

    /// kube-ha's GCE adapter for [`PROJECT`].
    pub async fn gce(&self) -> Gce {
        Gce::connect(PROJECT, Some(&self.endpoint), Duration::from_secs(30))
            .await
            .expect("connect")
    }

    /// `<sandbox-dir>/vms/<project>/<zone>/<name>`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.dir.join("vms").join(PROJECT).join(ZONE).join(name)
    }

    /// `<sandbox-dir>/disks/<project>/<zone>/<name>`.
    pub fn disk_dir(&self, name: &str) -> PathBuf {
        self.dir.join("disks").join(PROJECT).join(ZONE).join(name)
    }

    /// `POST /_emulator/...` with a JSON body; the reply's JSON.
    pub async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let reply = reqwest::Client::new()
            .post(format!("{}{path}", self.endpoint))
            .json(&body)
            .send()
            .await
            .expect("control call");
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        reply.json().await.expect("control reply")
    }

    /// Send `signal` and wait (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32, within: Duration) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "emulator did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as i32;
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Processes (other than this one) whose command line mentions `path`: pid and command line.
pub fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // A zombie's cmdline reads empty, so exited-but-unreaped processes do not count.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline.trim().to_string()));
        }
    }
    found
}

/// Poll `check` every 50 ms until it returns `Some` or `within` passes (then panic with `what`).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTPS client that trusts only `ca_pem` (what kube-ha and kubectl do).
pub fn api_client(ca_pem: &str) -> reqwest::Client {
    kube_ha_core::ops::api::client(ca_pem, Duration::from_secs(3)).expect("api client")
}

/// `GET https://<ip>/<path>`: status and body, or the error chain.
pub async fn get(client: &reqwest::Client, ip: Ipv4Addr, path: &str) -> Result<(u16, String), String> {
    let reply = client
        .get(format!("https://{ip}/{path}"))
        .send()
        .await
        .map_err(|e| kube_ha_core::error::error_chain(&e))?;
    let status = reply.status().as_u16();
    Ok((status, reply.text().await.unwrap_or_default()))
}

/// Wait until `GET https://<ip>/healthz` is 200.
pub async fn wait_healthz(client: &reqwest::Client, ip: Ipv4Addr) {
    eventually(&format!("https://{ip}/healthz answers 200"), BOOT_WITHIN, || async {
        matches!(get(client, ip, "healthz").await, Ok((200, _))).then_some(())
    })
    .await
}

/// One replica as created in GCE, with its secrets.
pub struct Replica {
    /// VM name.
    pub name: String,
    /// Its reserved internal IP.
    pub internal_ip: Ipv4Addr,
    /// The cluster's static IP.
    pub static_ip: Ipv4Addr,
    /// The cluster CAs.
    pub cas: ClusterCas,
    /// Its leaves.
    pub certs: ReplicaCerts,
    /// The metadata it was created with.
    pub kube_env: KeyValues,
    /// The metadata it was created with.
    pub master_certs: KeyValues,
}

impl Replica {
    /// The secrets a next replica copies (as `ClusterSecrets::from_instance` would read them).
    pub fn secrets(&self) -> ClusterSecrets {
        ClusterSecrets {
            kube_env: self.kube_env.clone(),
            master_certs: self.master_certs.clone(),
            cas: self.cas.clone(),
        }
    }
}

async fn reserve(gce: &Gce, name: &str, kind: model::address::AddressType) -> Ipv4Addr {
    let internal = kind == model::address::AddressType::Internal;
    let mut a = model::Address::default();
    a.name = Some(name.to_string());
    a.address_type = Some(kind);
    if internal {
        a.subnetwork = Some(format!("projects/{PROJECT}/regions/{REGION}/subnetworks/default"));
    }
    gce.insert_address(REGION, a).await.expect("reserve address");
    gce.address(REGION, name)
        .await
        .expect("get address")
        .and_then(|a| a.address)
        .and_then(|ip| ip.parse().ok())
        .expect("address has an IP")
}

/// Reserve the static IP `<master>-ip`.
pub async fn reserve_static_ip(gce: &Gce, master: &str) -> Ipv4Addr {
    reserve(gce, &format!("{master}-ip"), model::address::AddressType::External).await
}

/// Reserve `<replica>-internal` and create `<replica>-pd`.
pub async fn reserve_internal_ip_and_disk(gce: &Gce, replica: &str) -> Ipv4Addr {
    let ip = reserve(
        gce,
        &format!("{replica}-internal"),
        model::address::AddressType::Internal,
    )
    .await;
    let mut d = model::Disk::default();
    d.name = Some(format!("{replica}-pd"));
    d.size_gb = Some(10);
    gce.insert_disk(ZONE, d).await.expect("create data disk");
    ip
}

/// This replica's certificates, as `kube-ha up` issues them.
pub fn issue_certs(cas: &ClusterCas, replica: &str, internal_ip: Ipv4Addr, static_ip: Ipv4Addr) -> ReplicaCerts {
    let id = ReplicaIdentity {
        master_name: MASTER.to_string(),
        replica: replica.to_string(),
        internal_ip,
        static_ip,
        service_ip: Ipv4Addr::new(10, 0, 0, 1),
        dns_domain: "cluster.local".to_string(),
    };
    issue_replica_certs(cas, &id, OffsetDateTime::now_utc()).expect("replica certs")
}

/// Create the instance as `kube-ha up` does: nic0 on `internal_ip` with an access config
/// (`nat_ip`, or ephemeral), a boot disk, `<name>-pd` attached as `master-pd`, the metadata.
pub async fn create_instance(
    gce: &Gce,
    name: &str,
    internal_ip: Ipv4Addr,
    nat_ip: Option<Ipv4Addr>,
    kube_env: &KeyValues,
    master_certs: &KeyValues,
) {
    let settings = kube_ha_core::config::MasterSettings::kube_up_defaults(3, "cos-cloud");
    let inst = kube_ha_core::gce::bodies::replica_instance(&kube_ha_core::gce::bodies::ReplicaInstanceSpec {
        project: PROJECT,
        zone: ZONE,
        name,
        settings: &settings,
        network: "default",
        tag: MASTER,
        internal_ip,
        nat_ip,
        metadata: vec![
            (names::METADATA_KUBE_ENV, kube_env.to_yaml()),
            (names::METADATA_MASTER_CERTS, master_certs.to_yaml()),
            (names::METADATA_CLUSTER_NAME, "kubernetes".to_string()),
        ],
    });
    gce.insert_instance(ZONE, inst).await.expect("create instance");
}

/// kube-ha's firewall rules for the masters (`<master>-https`: tcp:443 from anywhere;
/// `<master>-etcd`: tcp:2380,2381 between masters), as `kube-ha up` creates them: the sandbox
/// enforces them, so without them the static IP and the peers are cut off.
pub async fn create_master_firewalls(gce: &Gce) {
    let names = kube_ha_core::names::ClusterNames::new(MASTER);
    for (name, ports, https) in [
        (names.firewall_https(), vec![names::APISERVER_PORT.to_string()], true),
        (
            names.firewall_etcd(),
            EtcdCluster::ALL.iter().map(|c| c.peer_port().to_string()).collect(),
            false,
        ),
    ] {
        let mut fw = model::Firewall::default();
        fw.name = Some(name);
        fw.network = Some(format!("projects/{}/global/networks/default", gce.project()));
        let mut allowed = model::firewall::Allowed::default();
        allowed.ip_protocol = Some("tcp".into());
        allowed.ports = ports;
        fw.allowed = vec![allowed];
        if https {
            fw.source_ranges = vec!["0.0.0.0/0".into()];
        } else {
            fw.source_tags = vec![MASTER.into()];
        }
        fw.target_tags = vec![MASTER.into()];
        gce.insert_firewall(fw).await.expect("create firewall rule");
    }
}

/// A rule like kube-up's `<network>-default-ssh`: tcp:22 from anywhere, to every instance.
pub async fn allow_ssh(gce: &Gce) {
    let mut fw = model::Firewall::default();
    fw.name = Some("default-default-ssh".into());
    fw.network = Some(format!("projects/{}/global/networks/default", gce.project()));
    let mut allowed = model::firewall::Allowed::default();
    allowed.ip_protocol = Some("tcp".into());
    allowed.ports = vec!["22".into()];
    fw.allowed = vec![allowed];
    fw.source_ranges = vec!["0.0.0.0/0".into()];
    gce.insert_firewall(fw).await.expect("create the ssh firewall rule");
}

/// What `kube-ha up` creates for the first master: firewall rules, static IP, internal IP, data
/// disk, CAs and certs, and the instance carrying the static IP.
pub async fn create_first_master(gce: &Gce) -> Replica {
    create_master_firewalls(gce).await;
    let static_ip = reserve_static_ip(gce, MASTER).await;
    let internal_ip = reserve_internal_ip_and_disk(gce, MASTER).await;
    let cas = ClusterCas::generate(MASTER, OffsetDateTime::now_utc()).expect("CAs");
    let certs = issue_certs(&cas, MASTER, internal_ip, static_ip);
    let env = ClusterEnv {
        master_name: MASTER.to_string(),
        multizone: true,
        quorum_read: true,
        static_ip,
        service_cluster_ip_range: "10.0.0.0/16".to_string(),
        dns_domain: "cluster.local".to_string(),
    };
    let clients = kube_ha_core::pki::issue_cluster_clients(&cas, OffsetDateTime::now_utc()).expect("cluster clients");
    let (kube_env, master_certs) = first_master_metadata(&env, &cas, &clients, &certs);
    create_instance(gce, MASTER, internal_ip, Some(static_ip), &kube_env, &master_certs).await;
    Replica {
        name: MASTER.to_string(),
        internal_ip,
        static_ip,
        cas,
        certs,
        kube_env,
        master_certs,
    }
}

/// nic0's external IP of an instance, as GCE reports it.
pub async fn external_ip(gce: &Gce, name: &str) -> Option<Ipv4Addr> {
    gce.instance(ZONE, name)
        .await
        .expect("get instance")
        .and_then(|i| i.network_interfaces.into_iter().next())
        .and_then(|n| n.access_configs.into_iter().next())
        .and_then(|ac| ac.nat_ip)
        .and_then(|ip| ip.parse().ok())
}

/// Run `ETCDCTL_API=3 etcdctl --endpoints <endpoint> … member list -w json` with `client` (a
/// cert signed by the etcd client CA) and return the `members` array.
pub fn etcdctl_member_list(
    cas: &ClusterCas,
    client: &CertPair,
    endpoint: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map(|()| path)
    };
    let ca = write("ca.crt", &cas.etcd_client.cert_pem).map_err(|e| e.to_string())?;
    let cert = write("client.crt", &client.cert_pem).map_err(|e| e.to_string())?;
    let key = write("client.key", &client.key_pem).map_err(|e| e.to_string())?;
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .arg("--cacert")
        .arg(&ca)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["--command-timeout", "5s", "member", "list", "-w", "json"])
        .output()
        .map_err(|e| format!("etcdctl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default())
}

/// `https://<ip>:<client port>` of `cluster`.
pub fn etcd_endpoint(cluster: EtcdCluster, ip: Ipv4Addr) -> String {
    cluster.client_url(ip)
}
