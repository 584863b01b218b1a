//! One simulated master VM: boot it like the on-VM agent (configure-helper) would, then follow
//! what happens to it in GCE (its external IP moves, it crashes, it is deleted).
//!
//! Each VM is one task ([`run`]) that owns everything the VM runs: its two etcd members and its
//! API listeners. The sandbox actor only sends it [`VmCommand`]s, so everything about one VM
//! happens in order (a delete that arrives while it boots is handled once the processes exist,
//! and stops them).
//!
//! Boot, as configure-helper did it, with the sandbox's explicit IPs instead of GCE DNS:
//! 1. read `kube-env` and `kube-master-certs` from the instance's metadata (PEMs are base64);
//! 2. write the certificates under `<vm dir>/pki` (keys 0600);
//! 3. start etcd main (2379/2380) and events (4002/2381) bound to nic0's `networkIP`, named
//!    `etcd-<vm>`, with `INITIAL_ETCD_CLUSTER` (written with main's peer port; events uses the
//!    same names on 2381) and `INITIAL_ETCD_CLUSTER_STATE`, data on the `master-pd` disk;
//! 4. serve the API stand-in on `<internal IP>:443` and on the external IP (nic0's access
//!    config), if any.
//!
//! A VM booting on a disk whose etcd data dirs exist just restarts etcd with them (etcd ignores
//! `--initial-cluster*` once it has data), as a real VM recreated on its old disk would.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::future::{BoxFuture, Shared, join_all};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use kube_ha_core::etcd::EtcdClient;
use kube_ha_core::names::{self, EtcdCluster};
use kube_ha_core::pki::kube_env::{self as ke, KeyValues};
use kube_ha_emulator::Boot;

use super::apiserver::{ApiServer, LocalEtcd};
use super::etcd_proc::{
    EtcdMember, EtcdMemberConfig, EtcdTlsFiles, InitialClusterState, create_private_dir, initial_cluster,
    parse_initial_cluster, write_file,
};
use super::layout::{Layout, ZonalKey, remove_dir_all_if_present};
use super::listener::ListenerTask;

/// How long a stopped VM's etcd gets to exit after SIGTERM before SIGKILL. A member whose peers
/// are gone spends ~7 s trying to hand over leadership first; a VM being deleted needs none of
/// that, and kube-ha has moved leadership away beforehand when it matters.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Timeout of the API stand-in's calls to its local etcd (per call; routes pick shorter ones).
const LOCAL_ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves when a VM task (or a disk removal) has finished: every process stopped, every file
/// it was going to remove removed. Cloneable, so several waiters can share it.
pub type Done = Shared<BoxFuture<'static, ()>>;

/// What the sandbox actor tells a VM.
#[derive(Debug)]
pub enum VmCommand {
    /// nic0's external IP changed.
    ExternalIp(Option<Ipv4Addr>),
    /// Kill the VM's processes (SIGKILL) and close its listeners; keep its files. The reply is
    /// sent once they are dead.
    Crash(std::sync::mpsc::Sender<bool>),
    /// The instance was deleted: stop everything, remove the VM dir (not the disk), finish.
    Delete,
    /// The emulator is exiting: stop everything, finish.
    Shutdown,
}

/// What the instance JSON says about the VM's hardware and metadata: what boot needs.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// nic0's `networkIP`.
    pub internal_ip: Option<Ipv4Addr>,
    /// nic0's first access config's `natIP`.
    pub external_ip: Option<Ipv4Addr>,
    /// The disk attached as `master-pd`.
    pub data_disk: Option<ZonalKey>,
    /// Metadata `kube-env` (YAML); a VM without it is not a master and runs nothing.
    pub kube_env: Option<String>,
    /// Metadata `kube-master-certs` (YAML).
    pub master_certs: Option<String>,
}

impl Placement {
    /// Read an instance as the emulator renders it (a `get` reply).
    pub fn from_instance(project: &str, zone: &str, instance: &Value) -> Placement {
        let nic0 = instance.get("networkInterfaces").and_then(|n| n.get(0));
        let ip_at = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| s.parse::<Ipv4Addr>().ok());
        let metadata = |key: &str| {
            instance
                .pointer("/metadata/items")
                .and_then(Value::as_array)?
                .iter()
                .find(|item| item.get("key").and_then(Value::as_str) == Some(key))?
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let data_disk = instance
            .get("disks")
            .and_then(Value::as_array)
            .and_then(|disks| {
                disks
                    .iter()
                    .find(|d| d.get("deviceName").and_then(Value::as_str) == Some(names::DATA_DISK_DEVICE))
            })
            .and_then(|d| d.get("source").and_then(Value::as_str))
            .map(|source| disk_of_source(project, zone, source));
        Placement {
            internal_ip: ip_at(nic0.and_then(|n| n.get("networkIP"))),
            external_ip: ip_at(nic0.and_then(|n| n.pointer("/accessConfigs/0/natIP"))),
            data_disk,
            kube_env: metadata(names::METADATA_KUBE_ENV),
            master_certs: metadata(names::METADATA_MASTER_CERTS),
        }
    }
}

/// The disk a `source` link names: `…/projects/<p>/zones/<z>/disks/<name>`, any prefix; parts it
/// does not name default to the instance's own project and zone.
fn disk_of_source(project: &str, zone: &str, source: &str) -> ZonalKey {
    let parts: Vec<&str> = source.split('/').collect();
    let after = |label: &str| parts.windows(2).rev().find(|w| w[0] == label).map(|w| w[1].to_string());
    ZonalKey {
        project: after("projects").unwrap_or_else(|| project.to_string()),
        zone: after("zones").unwrap_or_else(|| zone.to_string()),
        name: parts.last().copied().unwrap_or_default().to_string(),
    }
}

/// Everything a VM task starts from.
pub struct Vm {
    /// project/zone/instance.
    pub key: ZonalKey,
    /// Where files go.
    pub layout: Layout,
    /// From the instance JSON.
    pub placement: Placement,
    /// When (whether) to boot.
    pub boot: Boot,
    /// Earlier VMs of this name or on this disk, and removals of this disk, still finishing:
    /// boot waits for them, so two etcd never share a data dir and an old VM's cleanup never
    /// removes the new one's files.
    pub after: Vec<Done>,
}

/// The VM's task: boot (unless told otherwise first), then follow commands until deleted or
/// shut down. See the module doc.
pub async fn run(vm: Vm, mut commands: UnboundedReceiver<VmCommand>) {
    let Vm {
        key,
        layout,
        placement,
        boot,
        after,
    } = vm;
    let mut external_ip = placement.external_ip;
    let mut running: Option<Running> = None;
    let delay = match boot {
        Boot::Normal { delay } if placement.kube_env.is_some() => Some(delay),
        Boot::Normal { .. } => {
            tracing::debug!(vm = %key, "no kube-env in metadata: not a master, nothing runs");
            None
        }
        Boot::Never => {
            tracing::info!(vm = %key, "never boots (fault)");
            None
        }
    };
    if let Some(delay) = delay {
        let ready = async move {
            join_all(after).await;
            tokio::time::sleep(delay).await;
        };
        tokio::pin!(ready);
        let boot_now = loop {
            tokio::select! {
                () = &mut ready => break true,
                command = commands.recv() => match command {
                    Some(VmCommand::ExternalIp(ip)) => external_ip = ip,
                    Some(VmCommand::Crash(reply)) => {
                        // A VM that fails before it has booted stays failed.
                        let _ = reply.send(true);
                        break false;
                    }
                    Some(VmCommand::Delete) => {
                        remove_vm_dir(&layout, &key);
                        return;
                    }
                    Some(VmCommand::Shutdown) | None => return,
                },
            }
        };
        if boot_now {
            let started = Instant::now();
            match boot_master(&key, &layout, &placement, external_ip).await {
                Ok(r) => {
                    tracing::info!(
                        vm = %key,
                        etcd_pids = ?r.pids(),
                        "booted in {:?}: etcd started, API on {}:443{}",
                        started.elapsed(),
                        r.internal_ip,
                        external_ip.map(|ip| format!(" and {ip}:443")).unwrap_or_default()
                    );
                    running = Some(r);
                }
                Err(e) => tracing::warn!(vm = %key, "boot failed, nothing runs: {e:#}"),
            }
        }
    }
    while let Some(command) = commands.recv().await {
        match command {
            VmCommand::ExternalIp(ip) => {
                // A VM that is down has no listener to move; a later boot is not possible.
                if let Some(r) = running.as_mut() {
                    r.set_external_ip(ip).await;
                }
            }
            VmCommand::Crash(reply) => {
                if let Some(r) = running.take() {
                    r.stop(StopHow::Kill).await;
                    tracing::info!(vm = %key, "crashed: etcd killed, API closed, files kept");
                }
                let _ = reply.send(true);
            }
            VmCommand::Delete => {
                if let Some(r) = running.take() {
                    r.stop(StopHow::Graceful).await;
                }
                remove_vm_dir(&layout, &key);
                tracing::info!(vm = %key, "deleted: processes stopped, VM dir removed");
                return;
            }
            VmCommand::Shutdown => break,
        }
    }
    // Shut down, or the actor is gone: stop, keep the files for a look afterwards.
    if let Some(r) = running.take() {
        r.stop(StopHow::Graceful).await;
    }
}

fn remove_vm_dir(layout: &Layout, key: &ZonalKey) {
    if let Err(e) = remove_dir_all_if_present(&layout.vm_dir(key)) {
        tracing::warn!(vm = %key, "{e:#}");
    }
}

/// A booted VM's processes and listeners.
struct Running {
    internal_ip: Ipv4Addr,
    etcd: Vec<EtcdMember>,
    api: ApiServer,
    internal: ListenerTask,
    external: Option<ListenerTask>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopHow {
    /// SIGTERM, [`STOP_GRACE`], SIGKILL.
    Graceful,
    /// SIGKILL at once (a crash).
    Kill,
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        self.etcd.iter().map(EtcdMember::pid).collect()
    }

    /// Follow the access config: close the old external listener, open one on the new IP.
    async fn set_external_ip(&mut self, ip: Option<Ipv4Addr>) {
        if let Some(old) = self.external.take() {
            old.close().await;
        }
        self.external = ip
            .filter(|ip| *ip != self.internal_ip)
            .map(|ip| self.api.listen(ip, "external"));
    }

    /// Listeners first (no new request reaches a stopping VM), then etcd, every member at once.
    async fn stop(self, how: StopHow) {
        let Running {
            etcd,
            internal,
            external,
            ..
        } = self;
        internal.close().await;
        if let Some(external) = external {
            external.close().await;
        }
        let stops = etcd.into_iter().map(|member| {
            tokio::task::spawn_blocking(move || {
                let result = match how {
                    StopHow::Graceful => member.stop(STOP_GRACE),
                    StopHow::Kill => member.kill(),
                };
                if let Err(e) = result {
                    tracing::warn!(pid = member.pid(), "stopping etcd: {e:#}");
                }
            })
        });
        join_all(stops).await;
    }
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

/// Steps 1–4 of the module doc.
async fn boot_master(
    key: &ZonalKey,
    layout: &Layout,
    placement: &Placement,
    external_ip: Option<Ipv4Addr>,
) -> Result<Running> {
    let kube_env = KeyValues::from_yaml(placement.kube_env.as_deref().unwrap_or_default()).context("kube-env")?;
    let master_certs =
        KeyValues::from_yaml(placement.master_certs.as_deref().unwrap_or_default()).context("kube-master-certs")?;
    let pems = MasterPems::from_metadata(&kube_env, &master_certs)?;
    let ip = placement.internal_ip.ok_or_else(|| anyhow!("nic0 has no networkIP"))?;
    let vm_dir = layout.vm_dir(key);
    let etcd_dir: PathBuf = match &placement.data_disk {
        Some(disk) => layout.etcd_dir(disk),
        None => {
            tracing::warn!(vm = %key, "no disk attached as {}: etcd data lives and dies with the VM", names::DATA_DISK_DEVICE);
            vm_dir.join("var/etcd")
        }
    };
    let local_etcd = LocalEtcd {
        client: EtcdClient::new(
            &pems.etcd_client_ca,
            &pems.etcd_client_cert,
            &pems.etcd_client_key,
            LOCAL_ETCD_TIMEOUT,
        )
        .context("the apiserver's etcd client certificate")?,
        endpoint: EtcdCluster::Main.client_url(ip),
    };
    let api = ApiServer::new(&pems.apiserver_cert, &pems.apiserver_key, local_etcd)?;

    // Files and forks block: off the async threads. The members are started in order (main,
    // events); if events cannot start, main is dropped, which kills it.
    let key_owned = key.clone();
    let etcd = tokio::task::spawn_blocking(move || -> Result<Vec<EtcdMember>> {
        let tls = pems.write(&vm_dir.join("pki"))?;
        let configs = etcd_configs(&key_owned, ip, &kube_env, &tls, &etcd_dir, &vm_dir.join("logs"))?;
        configs.into_iter().map(EtcdMember::spawn).collect()
    })
    .await
    .context("the boot thread panicked")??;

    let internal = api.listen(ip, "internal");
    let external = external_ip.filter(|e| *e != ip).map(|e| api.listen(e, "external"));
    Ok(Running {
        internal_ip: ip,
        etcd,
        api,
        internal,
        external,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placement_reads_nic0_the_data_disk_and_metadata() {
        let instance = json!({
            "name": "m",
            "networkInterfaces": [{"name": "nic0", "networkIP": "127.5.1.1",
                "accessConfigs": [{"name": "External NAT", "natIP": "127.5.128.1"}]}],
            "disks": [
                {"deviceName": "persistent-disk-0", "boot": true,
                 "source": "http://127.0.0.1:1/compute/v1/projects/p/zones/z/disks/m"},
                {"deviceName": "master-pd",
                 "source": "http://127.0.0.1:1/compute/v1/projects/p/zones/z/disks/m-pd"}
            ],
            "metadata": {"items": [{"key": "kube-env", "value": "A: b\n"}, {"key": "cluster-name", "value": "k"}]}
        });
        let p = Placement::from_instance("p", "z", &instance);
        assert_eq!(p.internal_ip, Some(Ipv4Addr::new(127, 5, 1, 1)));
        assert_eq!(p.external_ip, Some(Ipv4Addr::new(127, 5, 128, 1)));
        assert_eq!(p.data_disk, Some(ZonalKey::new("p", "z", "m-pd")));
        assert_eq!(p.kube_env.as_deref(), Some("A: b\n"));
        assert_eq!(p.master_certs, None);

        let bare = Placement::from_instance("p", "z", &json!({"name": "n"}));
        assert!(bare.internal_ip.is_none() && bare.data_disk.is_none() && bare.kube_env.is_none());
    }

    #[test]
    fn a_relative_disk_link_keeps_the_instance_scope() {
        assert_eq!(disk_of_source("p", "z", "disks/d"), ZonalKey::new("p", "z", "d"));
        assert_eq!(
            disk_of_source("p", "z", "projects/q/zones/y/disks/d"),
            ZonalKey::new("q", "y", "d")
        );
    }

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
