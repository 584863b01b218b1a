//! A sandbox for end-to-end scenarios: one emulator with simulated master VMs (real etcd, real
//! TLS) in a temp dir, the `kube-ha` binary run against it exactly as operators run it (env vars),
//! and observers that look at the world the way an operator or a client would: GCE resources
//! through the official client, etcd member lists from `etcdctl` inside the VMs, the API through HTTPS
//! with the cluster CA as the only trust root.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use google_cloud_compute_v1::model;
use kube_ha_core::etcd::{Member, MemberId};
use kube_ha_core::gce::Gce;
use kube_ha_core::names::{ClusterNames, EtcdCluster};
use kube_ha_core::ops::cluster::ClusterSecrets;
use serde_json::Value;

use super::emulator::Emulator;

/// The project every scenario uses.
pub const PROJECT: &str = "kube-ha-test";

/// One `kube-ha` invocation's result.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Run {
    /// Panic with the output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The stderr lines that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("error:")).collect()
    }
}

/// An emulator with a sandbox dir, plus where kube-ha keeps its kubeconfig.
pub struct Sandbox {
    /// The emulator process.
    pub emu: Emulator,
    /// Temp dir (sandbox files, kubeconfig).
    pub dir: tempfile::TempDir,
    /// The Compute clients, built once (building them is the slow part of every observation).
    gce: tokio::sync::OnceCell<Gce>,
}

/// The environment of an `env-examples/` file.
pub fn env_example(name: &str) -> Vec<(String, String)> {
    let path = crate::workspace_root().join("env-examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

impl Sandbox {
    /// Start an emulator whose instances boot as simulated masters.
    pub fn start(extra_args: &[&str]) -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let vms = dir.path().join("vms");
        let vms = vms.to_str().expect("utf-8 path").to_string();
        let mut args = vec!["--sandbox-dir", vms.as_str()];
        args.extend_from_slice(extra_args);
        let emu = Emulator::start(&args);
        Sandbox {
            emu,
            dir,
            gce: tokio::sync::OnceCell::new(),
        }
    }

    /// Make the next instance insert boot abnormally (`{"kind": "never_boot"}`,
    /// `{"kind": "boot_delay", "ms": N}`), through the emulator's fault endpoint.
    pub async fn next_vm_boots(&self, action: Value) {
        self.emu
            .fault(serde_json::json!({"method": "POST", "path_contains": "/instances", "action": action}))
            .await;
    }

    /// Where `up` writes the kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `kube-ha <args>` with a clean environment (this sandbox's endpoint, project, kubeconfig and
    /// a 120 s timeout) plus `env`, not started yet.
    pub fn command<K: AsRef<str>, V: AsRef<str>>(&self, args: &[&str], env: &[(K, V)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::kube_ha_bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KUBE_HA_COMPUTE_ENDPOINT", &self.emu.endpoint)
            .env("PROJECT", PROJECT)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBE_HA_TIMEOUT", "120s");
        for (k, v) in env {
            cmd.env(k.as_ref(), v.as_ref());
        }
        cmd
    }

    /// Start `kube-ha <args>` (as [`Sandbox::command`]) and follow its stderr line by line.
    pub fn spawn<K: AsRef<str>, V: AsRef<str>>(&self, args: &[&str], env: &[(K, V)]) -> Spawned {
        Spawned::start(self.command(args, env))
    }

    /// The lock record of the cluster in project metadata, as GCE holds it.
    pub async fn lock_record(&self) -> Option<kube_ha_core::plan::lock::LockRecord> {
        let md = self.gce().await.project_metadata().await.expect("project metadata");
        let key = ClusterNames::from_prefix("kubernetes").lock_key();
        md.items
            .iter()
            .find(|i| i.key.as_deref() == Some(key.as_str()))
            .and_then(|i| i.value.as_deref())
            .map(|v| kube_ha_core::plan::lock::LockRecord::parse(v).expect("a lock record"))
    }

    /// Names of every address of the project, in every region.
    pub async fn all_address_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .gce()
            .await
            .all_addresses()
            .await
            .expect("aggregated addresses")
            .into_iter()
            .filter_map(|a| a.name)
            .collect();
        names.sort();
        names
    }

    /// Run `kube-ha <args>` with a clean environment plus `env`.
    pub async fn kube_ha<K: AsRef<str>, V: AsRef<str>>(&self, args: &[&str], env: &[(K, V)]) -> Run {
        let mut cmd = self.command(args, env);
        let out = cmd.output().await.expect("run kube-ha");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `up` with an env-examples file plus overrides.
    pub async fn up(&self, example: &str, extra: &[(&str, &str)]) -> Run {
        let mut env = env_example(example);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.kube_ha(&["up"], &env).await
    }

    /// The first master in europe-west1-b, as the SPEC's first invocation.
    pub async fn first_master(&self) -> Run {
        self.up("01-first-master.env", &[]).await
    }

    /// Add a replica in `zone`.
    pub async fn add(&self, zone: &str) -> Run {
        self.kube_ha(
            &["up"],
            &[("KUBE_GCE_ZONE", zone), ("KUBE_REPLICATE_EXISTING_MASTER", "true")],
        )
        .await
    }

    /// Remove a replica (by name when given) in `zone`.
    pub async fn remove(&self, zone: &str, name: Option<&str>) -> Run {
        let mut env = vec![("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", zone)];
        if let Some(n) = name {
            env.push(("KUBE_REPLICA_NAME", n));
        }
        self.kube_ha(&["down"], &env).await
    }

    /// The tool's own Compute adapter, pointed at this emulator (reads only, in tests).
    pub async fn gce(&self) -> &Gce {
        self.gce
            .get_or_init(|| async {
                Gce::connect(PROJECT, Some(&self.emu.endpoint), Duration::from_secs(30))
                    .await
                    .expect("gce")
            })
            .await
    }

    /// Replica instances, oldest first.
    pub async fn replicas(&self) -> Vec<model::Instance> {
        let names = ClusterNames::from_prefix("kubernetes");
        let mut v: Vec<model::Instance> = self
            .gce()
            .await
            .all_instances()
            .await
            .expect("list instances")
            .into_iter()
            .filter(|i| i.name.as_deref().is_some_and(|n| names.is_replica(n)))
            .collect();
        v.sort_by(|a, b| (&a.creation_timestamp, &a.name).cmp(&(&b.creation_timestamp, &b.name)));
        v
    }

    /// Names of the replica instances.
    pub async fn replica_names(&self) -> Vec<String> {
        self.replicas().await.into_iter().filter_map(|i| i.name).collect()
    }

    /// The cluster static IP.
    pub async fn static_ip(&self) -> Ipv4Addr {
        let a = self
            .gce()
            .await
            .address("europe-west1", "kubernetes-master-ip")
            .await
            .expect("get")
            .expect("static IP exists");
        a.address.expect("address").parse().expect("IPv4")
    }

    /// The shared secrets, from the first replica's metadata.
    pub async fn secrets(&self) -> ClusterSecrets {
        for i in self.replicas().await {
            if let Some(s) = ClusterSecrets::from_instance(&i).expect("metadata") {
                return s;
            }
        }
        panic!("no replica carries kube-env")
    }

    /// An etcd client with a tool certificate (signed by the etcd client CA in metadata), for
    /// the URLs of a [`Sandbox::tunnel`].
    pub async fn etcd(&self) -> kube_ha_core::etcd::EtcdClient {
        kube_ha_core::ops::execute::etcd_client(&self.secrets().await.cas, Duration::from_secs(5)).expect("etcd client")
    }

    /// An OpenSSH tunnel to `replica`'s own etcd, through its internal IP (as from inside the
    /// VPC: an external IP an operation moves would cut it): for callers that replay kube-up's
    /// etcd calls or call etcd often (benchmarks). Needs a rule admitting tcp:22 (the first `up`
    /// makes one).
    pub async fn tunnel(&self, replica: &model::Instance) -> crate::tunnel::Tunnel {
        let name = replica.name.clone().expect("name");
        let zone = replica
            .zone
            .as_deref()
            .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
            .expect("zone");
        let ip = Self::internal_ip(replica);
        let etcd = self.etcd().await;
        crate::tunnel::Tunnel::open(self.gce().await, &zone, &name, ip, &etcd).await
    }

    /// Internal IP of an instance.
    pub fn internal_ip(i: &model::Instance) -> Ipv4Addr {
        i.network_interfaces[0]
            .network_ip
            .as_deref()
            .expect("networkIP")
            .parse()
            .expect("IPv4")
    }

    /// External IP of an instance (its access config), if any.
    pub fn external_ip(i: &model::Instance) -> Option<Ipv4Addr> {
        i.network_interfaces[0]
            .access_configs
            .first()
            .and_then(|a| a.nat_ip.as_deref())
            .map(|s| s.parse().expect("IPv4"))
    }

    /// The member list of `cluster`, asked of the first replica that answers, by `etcdctl`
    /// inside it (a VM's etcd serves clients only on its own loopback).
    pub async fn members(&self, cluster: EtcdCluster) -> Vec<Member> {
        let mut errors = Vec::new();
        for i in self.replicas().await {
            let name = i.name.clone().unwrap_or_default();
            match crate::vm_etcd::member_list(&self.emu.endpoint, &name, cluster).await {
                Ok(m) => return m,
                Err(e) => errors.push(e),
            }
        }
        panic!("no replica answered member list on etcd {cluster}: {errors:?}")
    }

    /// `(member ID, leader)` of `replica`'s own `cluster` member, by `etcdctl` inside it.
    pub async fn etcd_status(&self, replica: &str, cluster: EtcdCluster) -> (MemberId, Option<MemberId>) {
        crate::vm_etcd::status(&self.emu.endpoint, replica, cluster)
            .await
            .unwrap_or_else(|e| panic!("etcd {cluster} status in {replica}: {e}"))
    }

    /// An HTTPS client as the kubeconfig kube-ha wrote describes it: trusting only the cluster
    /// CA, presenting the admin client certificate.
    pub fn api(&self) -> reqwest::Client {
        let text = std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig");
        let field = |name: &str| {
            use base64::Engine as _;
            let b64 = text
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in kubeconfig"));
            base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
        };
        let ca = field("certificate-authority-data: ");
        let mut identity = field("client-certificate-data: ");
        identity.extend(field("client-key-data: "));
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("PEM")])
            .identity(reqwest::Identity::from_pem(&identity).expect("admin identity"))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }

    /// `PUT https://<static IP>/kv/<key>`.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), String> {
        let ip = self.static_ip().await;
        let r = self
            .api()
            .put(format!("https://{ip}/kv/{key}"))
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", r.status()))
        }
    }

    /// `GET https://<static IP>/kv/<key>`. A connection that fails is retried for a few seconds:
    /// right after an operation moved the static IP, the sandbox's router may still be catching
    /// up (GCE takes its time too), which is not what the callers assert on.
    pub async fn get(&self, key: &str) -> Option<String> {
        let ip = self.static_ip().await;
        let api = self.api();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let r = loop {
            match api.get(format!("https://{ip}/kv/{key}")).send().await {
                Ok(r) => break r,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("GET /kv/{key}: {e:?}"),
            }
        };
        if r.status().as_u16() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "GET /kv/{key}: {}", r.status());
        Some(r.text().await.expect("body"))
    }

    /// The emulator's state dump for this project.
    pub async fn state(&self) -> Value {
        let s = self.emu.state().await;
        s["projects"][PROJECT].clone()
    }

    /// Assert that every etcd process of this sandbox is gone within `within`. A VM's processes
    /// stop after its delete operation is DONE (the emulator's hooks are asynchronous; a VM gets
    /// a 2 s grace to stop), so "none left" is checked with a bound, not at one instant.
    pub async fn assert_no_etcd_within(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.etcd_pids().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.etcd_pids().is_empty(),
            "etcd processes remain: {:?}",
            self.etcd_pids()
        );
    }

    /// Pids of the etcd processes running in this sandbox's VMs.
    pub fn etcd_pids(&self) -> Vec<u32> {
        crate::hosts::vm_etcd(self.dir.path())
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Pids of live processes named `comm` whose command line mentions `path`.
pub fn processes_mentioning(path: &Path, comm: &str) -> Vec<u32> {
    let needle = path.to_string_lossy().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if name.trim() != comm || zombie {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A real TLS handshake to `addr:443` that verifies the server for `name` against `ca_pem`.
pub async fn handshake(addr: Ipv4Addr, name: Ipv4Addr, ca_pem: &str) -> Result<(), String> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let (_, der) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots
        .add(rustls_pki_types::CertificateDer::from(der.contents))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect((addr, 443))
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls_pki_types::ServerName::IpAddress(std::net::IpAddr::V4(name).into());
    connector
        .connect(server_name, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Sandbox {
    /// Everything the cluster owns in GCE, as comparable lines (names, IPs, statuses, pool
    /// members, which IP each VM carries). Equal inventories mean "exactly as before".
    pub async fn inventory(&self) -> std::collections::BTreeSet<String> {
        let gce = self.gce().await;
        let mut out = std::collections::BTreeSet::new();
        for i in self.replicas().await {
            let name = i.name.clone().unwrap_or_default();
            out.insert(format!(
                "instance {name} internal={} external={:?}",
                Self::internal_ip(&i),
                Self::external_ip(&i)
            ));
        }
        for d in gce.all_disks().await.expect("disks") {
            out.insert(format!("disk {} users={:?}", d.name.unwrap_or_default(), d.users.len()));
        }
        for a in gce.addresses("europe-west1").await.expect("addresses") {
            out.insert(format!(
                "address {}={} {:?}",
                a.name.unwrap_or_default(),
                a.address.unwrap_or_default(),
                a.status.as_ref().and_then(|s| s.name().map(str::to_string))
            ));
        }
        for fw in ["kubernetes-master-https", "kubernetes-master-etcd"] {
            if gce.firewall(fw).await.expect("firewall").is_some() {
                out.insert(format!("firewall {fw}"));
            }
        }
        if let Some(p) = gce
            .target_pool("europe-west1", "kubernetes-master")
            .await
            .expect("pool")
        {
            let mut members: Vec<String> = p
                .instances
                .iter()
                .map(|u| u.rsplit('/').next().unwrap_or_default().to_string())
                .collect();
            members.sort();
            out.insert(format!("pool {members:?}"));
        }
        if let Some(r) = gce
            .forwarding_rule("europe-west1", "kubernetes-master")
            .await
            .expect("rule")
        {
            out.insert(format!("forwarding rule {}", r.ip_address.unwrap_or_default()));
        }
        out
    }

    /// Member IDs of both clusters (to compare before/after).
    pub async fn member_ids(&self) -> Vec<(EtcdCluster, Vec<u64>)> {
        let mut out = Vec::new();
        for c in EtcdCluster::ALL {
            let mut ids: Vec<u64> = self.members(c).await.iter().map(|m| m.id.0).collect();
            ids.sort_unstable();
            out.push((c, ids));
        }
        out
    }

    /// Assert the cluster is complete with `n` replicas (SPEC §4.2 "after each step"): both
    /// member lists equal the replica set (all started, voting, none learner); with two or more,
    /// the pool holds every replica, the forwarding rule carries the static IP and the first
    /// replica has another external IP; with one, the static IP is on its access config; every
    /// key in `keys` reads back through the static IP; every replica's serving cert verifies for
    /// the static IP and its own internal IP, and not for another replica's.
    pub async fn assert_complete(&self, n: usize, keys: &[(&str, &str)]) {
        let replicas = self.replicas().await;
        assert_eq!(replicas.len(), n, "replicas");
        let static_ip = self.static_ip().await;
        for cluster in EtcdCluster::ALL {
            let members = self.members(cluster).await;
            assert_eq!(members.len(), n, "etcd {cluster} members: {members:?}");
            for m in &members {
                assert!(
                    !m.name.is_empty() && !m.is_learner,
                    "etcd {cluster}: {m:?} must be started and voting"
                );
            }
            // Each replica has its own member, by the one rule kube-ha matches with (peer URL by
            // instance name or internal IP, else member name).
            let owned: std::collections::BTreeSet<u64> = replicas
                .iter()
                .map(|r| {
                    let name = r.name.as_deref().unwrap_or_default();
                    kube_ha_core::plan::snapshot::find_member(cluster, &members, name, Some(Self::internal_ip(r)))
                        .unwrap_or_else(|| panic!("etcd {cluster}: no member of {name} in {members:?}"))
                        .id
                        .0
                })
                .collect();
            assert_eq!(
                owned.len(),
                n,
                "etcd {cluster} peers are the replicas, one each: {members:?}"
            );
        }
        let gce = self.gce().await;
        let pool = gce
            .target_pool("europe-west1", "kubernetes-master")
            .await
            .expect("pool");
        let rule = gce
            .forwarding_rule("europe-west1", "kubernetes-master")
            .await
            .expect("rule");
        if n >= 2 {
            let pool = pool.expect("target pool exists");
            let mut in_pool: Vec<String> = pool
                .instances
                .iter()
                .map(|u| u.rsplit('/').next().unwrap_or_default().to_string())
                .collect();
            in_pool.sort();
            let mut names: Vec<String> = replicas.iter().filter_map(|r| r.name.clone()).collect();
            names.sort();
            assert_eq!(in_pool, names, "pool holds every replica");
            assert_eq!(
                rule.expect("forwarding rule exists").ip_address.as_deref(),
                Some(static_ip.to_string().as_str())
            );
            for r in &replicas {
                let ext = Self::external_ip(r);
                assert!(
                    ext.is_some() && ext != Some(static_ip),
                    "{:?} has its own external IP",
                    r.name
                );
            }
        } else {
            assert!(pool.is_none() && rule.is_none(), "no load balancer with one replica");
            assert_eq!(
                Self::external_ip(&replicas[0]),
                Some(static_ip),
                "the static IP is back on the last replica"
            );
        }
        for (k, v) in keys {
            assert_eq!(self.get(k).await.as_deref(), Some(*v), "key {k} survived");
        }
        let ca = self.secrets().await.cas.cluster.cert_pem;
        for (i, r) in replicas.iter().enumerate() {
            let ip = Self::internal_ip(r);
            handshake(ip, ip, &ca)
                .await
                .unwrap_or_else(|e| panic!("{:?} for its internal IP: {e}", r.name));
            handshake(ip, static_ip, &ca)
                .await
                .unwrap_or_else(|e| panic!("{:?} for the static IP: {e}", r.name));
            if let Some(other) = replicas.get((i + 1) % replicas.len()).filter(|_| replicas.len() > 1) {
                let other_ip = Self::internal_ip(other);
                assert!(
                    handshake(ip, other_ip, &ca).await.is_err(),
                    "{:?}'s cert must not verify for {other_ip}",
                    r.name
                );
            }
        }
    }
}

/// A running `kube-ha` whose stderr is read as it comes (to act at a given step), to be signalled
/// like an operator's Ctrl-C, and finished into a [`Run`].
pub struct Spawned {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: Vec<String>,
    stdout: tokio::task::JoinHandle<String>,
}

impl Spawned {
    fn start(mut cmd: tokio::process::Command) -> Spawned {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kube-ha");
        let err = child.stderr.take().expect("stderr");
        let mut out = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(err).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text).await;
            text
        });
        Spawned {
            child,
            lines,
            stderr: Vec::new(),
            stdout,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Wait (bounded) for a stderr line that satisfies `want`; `None` if the process ended first.
    pub async fn wait_for_line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.stderr.push(line.clone());
                    if want(&line) {
                        return Some(line);
                    }
                }
                Ok(None) => return None,
                Err(_) => panic!(
                    "no such stderr line within {within:?}; so far:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// Send `signal` (e.g. `libc::SIGINT`).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, signal) };
    }

    /// Has it exited?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait (bounded) for it to exit and collect its output.
    pub async fn finish(mut self, within: Duration) -> Run {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("kube-ha did not exit within {within:?}:\n{}", self.stderr.join("\n")))
            .expect("wait");
        while let Some(line) = self.lines.recv().await {
            self.stderr.push(line);
        }
        let stdout = self.stdout.await.unwrap_or_default();
        let mut stderr = self.stderr.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}
