//! An OpenSSH tunnel to a master VM's own etcd (`ssh -N -L` to its `127.0.0.1:2379`, on a local
//! port, and `:4002`, on a local Unix socket: events etcd is plain HTTP, and kube-ha's client
//! speaks plain HTTP only over a socket that something else protects),
//! for benchmarks and tests that call etcd often or replay kube-up's own etcd calls: a VM's etcd
//! serves clients only on its loopback, and OpenSSH's client (not kube-ha's) is the independent
//! way there. The tunnel's key is a `tester` entry in the instance's `ssh-keys` (another user's,
//! as far as kube-ha is concerned); the host key is not checked (a test harness, not kube-ha).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use google_cloud_compute_v1::model;
use kube_ha_core::etcd::EtcdClient;
use kube_ha_core::gce::Gce;
use kube_ha_core::names::EtcdCluster;

/// The user of the tunnel's key.
pub const TUNNEL_USER: &str = "tester";

/// A running `ssh -N -L … -L …`; killed on drop.
pub struct Tunnel {
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
    main: (EtcdClient, u16),
    events: EtcdClient,
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr").port()
}

/// Add `line` to `name`'s `ssh-keys` (read-modify-write with the fingerprint, retried while
/// someone else writes).
async fn add_key_line(gce: &Gce, zone: &str, name: &str, line: &str) {
    for _ in 0..20 {
        let instance = gce.instance(zone, name).await.expect("get instance").expect("instance");
        let metadata = instance.metadata.unwrap_or_default();
        let mut items: Vec<model::metadata::Items> = Vec::new();
        let mut keys = String::new();
        for item in metadata.items {
            if item.key.as_deref() == Some("ssh-keys") {
                keys = item.value.clone().unwrap_or_default();
            } else {
                items.push(item);
            }
        }
        if !keys.is_empty() && !keys.ends_with('\n') {
            keys.push('\n');
        }
        keys.push_str(line);
        items.push(model::metadata::Items::new().set_key("ssh-keys").set_value(keys));
        let body = model::Metadata::new()
            .set_or_clear_fingerprint(metadata.fingerprint)
            .set_items(items);
        if gce.set_instance_metadata(zone, name, body).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not add the tunnel's key to {name}'s ssh-keys");
}

impl Tunnel {
    /// Open a tunnel to `name` (in `zone`) at `ip` (one of its addresses), and wait (bounded) until
    /// its etcd main answers through it with `etcd`.
    pub async fn open(gce: &Gce, zone: &str, name: &str, ip: Ipv4Addr, etcd: &EtcdClient) -> Tunnel {
        let dir = tempfile::tempdir().expect("tempdir");
        let key: PathBuf = dir.path().join("key");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", TUNNEL_USER, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        add_key_line(gce, zone, name, &format!("{TUNNEL_USER}:{}", public.trim())).await;

        let deadline = Instant::now() + Duration::from_secs(60);
        let events = dir.path().join("events.sock");
        loop {
            let main = free_port();
            let _ = std::fs::remove_file(&events);
            let mut child = tokio::process::Command::new("ssh")
                .arg("-F")
                .arg("/dev/null")
                .arg("-i")
                .arg(&key)
                .args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "ConnectTimeout=5",
                    "-o",
                    "LogLevel=ERROR",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "ExitOnForwardFailure=yes",
                    "-o",
                    "ServerAliveInterval=2",
                    "-N",
                    "-L",
                ])
                .arg(format!(
                    "127.0.0.1:{main}:127.0.0.1:{}",
                    EtcdCluster::Main.client_port()
                ))
                .arg("-L")
                .arg(format!(
                    "{}:127.0.0.1:{}",
                    events.display(),
                    EtcdCluster::Events.client_port()
                ))
                .arg(format!("{TUNNEL_USER}@{ip}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("ssh -L");
            let url = format!("https://127.0.0.1:{main}");
            // Up to 5 s per attempt: the key may not be applied yet (ssh exits), or a port was
            // taken meanwhile (ExitOnForwardFailure).
            let attempt = Instant::now() + Duration::from_secs(5);
            while Instant::now() < attempt {
                if matches!(etcd.health(&url).await, Ok(true)) {
                    let plain = EtcdClient::plain_over_unix_socket(etcd.timeout(), &events).expect("events client");
                    return Tunnel {
                        _dir: dir,
                        _child: child,
                        main: (etcd.clone(), main),
                        events: plain,
                    };
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill().await;
            assert!(Instant::now() < deadline, "no tunnel to {name}'s etcd within 60 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A client and the URL to ask `cluster` through the tunnel with: main on a local port
    /// (`https`: etcd's certificate has `IP:127.0.0.1`), events plain HTTP on the socket.
    pub fn endpoint(&self, cluster: EtcdCluster) -> (EtcdClient, String) {
        match cluster {
            EtcdCluster::Main => (self.main.0.clone(), format!("https://127.0.0.1:{}", self.main.1)),
            EtcdCluster::Events => (
                self.events.clone(),
                format!("http://127.0.0.1:{}", EtcdCluster::Events.client_port()),
            ),
        }
    }
}
