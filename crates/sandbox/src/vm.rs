//! One simulated VM's life as GCE tells it: it boots after its delay (or never), becomes a host
//! (`host.rs`) with its in-process guest services, crashes, is deleted.
//!
//! Each VM is one task ([`run`]) on the sandbox actor's runtime that owns the host and the VM's
//! runtime ([`NetnsRuntime`], a thread inside the VM's network namespace). The actor only sends
//! it [`VmCommand`]s, so everything about one VM happens in order (a delete that arrives while it
//! boots is handled once the host exists, and stops it).
//!
//! On the VM's runtime run, each with sockets of the VM's:
//! - its metadata server on `169.254.169.254:80` (`metadata.rs`), fed by the actor's view;
//! - its guest agent (`guest_agent.rs`);
//! - its sshd acceptor on `:22` (`sshd.rs`);
//! - its boot (`boot.rs`): configure.sh and configure-helper.sh as a kube-up master runs them,
//!   when the metadata says it is a master; their log on its serial port 3 (`console.rs`).
//!
//! Stopping: a crash kills the holder first (every process of the VM dies at once), then the
//! runtime and the link go; a delete or shutdown closes the runtime first (no new request
//! reaches a stopping VM), stops etcd gracefully, then kills the holder. A delete also removes
//! the VM dir (not the disk's).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::future::{BoxFuture, Shared, join_all};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use kube_ha_core::names;
use kube_ha_emulator::Boot;

use super::boot::{self, BootContext, Members};
use super::files::{MASTER_PD, VmFiles};
use super::guest_agent::{self, GuestFaults};
use super::host::{Host, HostSpec};
use super::layout::{Layout, ZonalKey, remove_dir_all_if_present};
use super::metadata::{self, GuestView};
use super::ns::NetnsRuntime;
use super::registry::{HostRecord, Registry};
use super::sshd;
use super::vpc::Vpc;

/// How long a stopped VM's etcd gets to exit after SIGTERM before SIGKILL. A member whose peers
/// are gone spends ~7 s trying to hand over leadership first; a VM being deleted needs none of
/// that, and kube-ha has moved leadership away beforehand when it matters.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Resolves when a VM task (or a disk removal) has finished: every process stopped, every file
/// it was going to remove removed. Cloneable, so several waiters can share it.
pub type Done = Shared<BoxFuture<'static, ()>>;

/// What the sandbox actor tells a VM.
#[derive(Debug)]
pub enum VmCommand {
    /// Kill the VM's processes (SIGKILL) and take it off the network; keep its files. The reply
    /// is sent once they are dead.
    Crash(std::sync::mpsc::Sender<bool>),
    /// The instance was deleted: stop everything, remove the VM dir (not the disk), finish.
    Delete,
    /// The emulator is exiting: stop everything, finish.
    Shutdown,
    /// The VM's firewall chain (an nftables script, `firewall.rs`).
    Firewall(String),
    /// The VM's `/etc/hosts`.
    Hosts(String),
}

/// What the instance JSON says about the VM's hardware.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// nic0's `networkIP`.
    pub internal_ip: Option<Ipv4Addr>,
    /// The disk attached as `master-pd`.
    pub data_disk: Option<ZonalKey>,
}

impl Placement {
    /// Read an instance as the emulator renders it (a `get` reply).
    pub fn from_instance(project: &str, zone: &str, instance: &Value) -> Placement {
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
            internal_ip: instance
                .pointer("/networkInterfaces/0/networkIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
            data_disk,
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
    /// The sandbox's network.
    pub vpc: Arc<Vpc>,
    /// Where the hooks read hosts and guest attributes.
    pub registry: Arc<Registry>,
    /// What its metadata server serves.
    pub view: watch::Receiver<Arc<GuestView>>,
    /// Guest faults in force.
    pub faults: watch::Receiver<GuestFaults>,
    /// Its firewall chain, until a [`VmCommand::Firewall`] says otherwise.
    pub firewall: String,
    /// Its `/etc/hosts`, until a [`VmCommand::Hosts`] says otherwise.
    pub hosts: String,
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
        vpc,
        registry,
        view,
        faults,
        mut firewall,
        mut hosts,
    } = vm;
    let files = VmFiles::new(&layout.vm_dir(&key));
    let mut running: Option<Running> = None;
    let delay = match (boot, placement.internal_ip) {
        (Boot::Normal { delay }, Some(_)) => Some(delay),
        (Boot::Normal { .. }, None) => {
            tracing::warn!(vm = %key, "nic0 has no networkIP: no host");
            None
        }
        (Boot::Never, _) => {
            tracing::info!(vm = %key, "never boots (fault)");
            None
        }
    };
    if let (Some(delay), Some(ip)) = (delay, placement.internal_ip) {
        let ready = async move {
            join_all(after).await;
            tokio::time::sleep(delay).await;
        };
        tokio::pin!(ready);
        let boot_now = loop {
            tokio::select! {
                () = &mut ready => break true,
                command = commands.recv() => match command {
                    Some(VmCommand::Firewall(text)) => firewall = text,
                    Some(VmCommand::Hosts(text)) => hosts = text,
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
            let spec = HostSpec {
                name: key.name.clone(),
                zone: key.zone.clone(),
                project: key.project.clone(),
                ip,
                disk: placement.data_disk.as_ref().map(|d| layout.disk_dir(d)),
                hosts: hosts.clone(),
                firewall: firewall.clone(),
            };
            match start(&key, spec, files.clone(), &vpc, &registry, view.clone(), faults.clone()).await {
                Ok(r) => running = Some(r),
                Err(e) => tracing::warn!(vm = %key, "the host did not start, nothing runs: {e:#}"),
            }
        }
    }
    while let Some(command) = commands.recv().await {
        match command {
            VmCommand::Firewall(text) => {
                if let Some(r) = &running
                    && text != firewall
                {
                    r.load_firewall(&text).await;
                }
                firewall = text;
            }
            VmCommand::Hosts(text) => {
                if running.is_some()
                    && text != hosts
                    && let Err(e) = files.write_hosts(&text)
                {
                    tracing::warn!(vm = %key, "/etc/hosts: {e:#}");
                }
                hosts = text;
            }
            VmCommand::Crash(reply) => {
                if let Some(r) = running.take() {
                    registry.host_down(&key);
                    r.stop(StopHow::Kill, &vpc).await;
                    tracing::info!(vm = %key, "crashed: every process killed, off the network, files kept");
                }
                let _ = reply.send(true);
            }
            VmCommand::Delete => {
                if let Some(r) = running.take() {
                    registry.host_down(&key);
                    r.stop(StopHow::Graceful, &vpc).await;
                }
                registry.forget_guest(&key);
                remove_vm_dir(&layout, &key);
                tracing::info!(vm = %key, "deleted: processes stopped, VM dir removed");
                return;
            }
            VmCommand::Shutdown => break,
        }
    }
    // Shut down, or the actor is gone: stop, keep the files for a look afterwards.
    if let Some(r) = running.take() {
        registry.host_down(&key);
        r.stop(StopHow::Graceful, &vpc).await;
    }
}

fn remove_vm_dir(layout: &Layout, key: &ZonalKey) {
    if let Err(e) = remove_dir_all_if_present(&layout.vm_dir(key)) {
        tracing::warn!(vm = %key, "{e:#}");
    }
}

/// Create the host and start the VM's services on its runtime.
async fn start(
    key: &ZonalKey,
    spec: HostSpec,
    files: VmFiles,
    vpc: &Arc<Vpc>,
    registry: &Arc<Registry>,
    view: watch::Receiver<Arc<GuestView>>,
    faults: watch::Receiver<GuestFaults>,
) -> Result<Running> {
    let (vpc_for_host, files_for_host, name) = (vpc.clone(), files.clone(), key.to_string());
    let master_pd: PathBuf = spec.disk.clone().unwrap_or_else(|| files.outside(MASTER_PD));
    let has_disk = spec.disk.is_some();
    let ip = spec.ip;
    let (host, runtime) = tokio::task::spawn_blocking(move || -> Result<(Host, NetnsRuntime)> {
        let host = Host::create(&spec, &files_for_host, &vpc_for_host)?;
        sshd::write_config(&files_for_host)?;
        let runtime = NetnsRuntime::start(&format!("vm {name}"), host.namespaces())?;
        Ok((host, runtime))
    })
    .await
    .map_err(|e| anyhow!("the host thread panicked: {e}"))??;
    registry.host_up(
        key,
        HostRecord {
            pid: host.pid(),
            netns: host.namespaces().net_inode(),
            internal_ip: ip,
        },
    );
    let guest = registry.guest(key);
    let members: Members = Arc::new(Mutex::new(Vec::new()));
    let rt = runtime.handle();
    let vm_name = key.to_string();
    rt.spawn(async move {
        match tokio::net::TcpListener::bind((metadata::ADDRESS, 80)).await {
            Ok(listener) => {
                if let Err(e) = axum::serve(listener, metadata::router(view, guest)).await {
                    tracing::warn!(vm = %vm_name, "metadata server: {e}");
                }
            }
            Err(e) => tracing::warn!(vm = %vm_name, "metadata server: cannot listen: {e}"),
        }
    });
    rt.spawn(guest_agent::run(files.clone(), key.name.clone(), faults));
    rt.spawn(sshd::serve(
        host.namespaces().clone(),
        files.logs().join("sshd.log"),
        key.to_string(),
    ));
    let console = registry.console(key, files.logs().join("serial-port-3.log"));
    rt.spawn(boot::run(BootContext {
        key: key.clone(),
        ip,
        files,
        master_pd,
        has_disk,
        host: host.namespaces().clone(),
        members: members.clone(),
        console,
    }));
    tracing::info!(vm = %key, %ip, pid = host.pid(), "host up");
    Ok(Running { host, runtime, members })
}

/// A booted VM: its host, its runtime, the etcd members its boot started.
struct Running {
    host: Host,
    runtime: NetnsRuntime,
    members: Members,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopHow {
    /// Services, then etcd (SIGTERM, [`STOP_GRACE`], SIGKILL), then the rest.
    Graceful,
    /// Every process at once (a crash).
    Kill,
}

impl Running {
    async fn load_firewall(&self, script: &str) {
        let ns = self.host.namespaces().clone();
        let script = script.to_string();
        let result = tokio::task::spawn_blocking(move || {
            super::ns::run(Some(&ns), "nft", &["-f", "-"], Some(&script)).context("reloading the VM's firewall")
        })
        .await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("{e:#}"),
            Err(e) => tracing::warn!("firewall: {e}"),
        }
    }

    /// See [`StopHow`] and the module doc.
    async fn stop(self, how: StopHow, vpc: &Arc<Vpc>) {
        let Running {
            mut host,
            runtime,
            members,
        } = self;
        let mut members = std::mem::take(&mut *members.lock().unwrap_or_else(PoisonError::into_inner));
        let mut runtime = Some(runtime);
        if how == StopHow::Graceful {
            if let Some(rt) = runtime.take() {
                rt.stop().await;
            }
            let stops: Vec<_> = members
                .drain(..)
                .map(|member| {
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = member.stop(STOP_GRACE) {
                            tracing::warn!(pid = member.pid(), "stopping etcd: {e:#}");
                        }
                    })
                })
                .collect();
            join_all(stops).await;
        }
        let link = host.link().to_string();
        let vpc = vpc.clone();
        let killed = tokio::task::spawn_blocking(move || {
            host.kill();
            vpc.detach(&link);
            // Dead already; dropping reaps them.
            drop(members);
        });
        let _ = killed.await;
        if let Some(rt) = runtime {
            rt.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placement_reads_nic0_and_the_data_disk() {
        let instance = json!({
            "name": "m",
            "networkInterfaces": [{"name": "nic0", "networkIP": "198.18.1.2",
                "accessConfigs": [{"name": "External NAT", "natIP": "198.19.1.1"}]}],
            "disks": [
                {"deviceName": "persistent-disk-0", "boot": true,
                 "source": "http://127.0.0.1:1/compute/v1/projects/p/zones/z/disks/m"},
                {"deviceName": "master-pd",
                 "source": "http://127.0.0.1:1/compute/v1/projects/p/zones/z/disks/m-pd"}
            ]
        });
        let p = Placement::from_instance("p", "z", &instance);
        assert_eq!(p.internal_ip, Some(Ipv4Addr::new(198, 18, 1, 2)));
        assert_eq!(p.data_disk, Some(ZonalKey::new("p", "z", "m-pd")));

        let bare = Placement::from_instance("p", "z", &json!({"name": "n"}));
        assert!(bare.internal_ip.is_none() && bare.data_disk.is_none());
    }

    #[test]
    fn a_relative_disk_link_keeps_the_instance_scope() {
        assert_eq!(disk_of_source("p", "z", "disks/d"), ZonalKey::new("p", "z", "d"));
        assert_eq!(
            disk_of_source("p", "z", "projects/q/zones/y/disks/d"),
            ZonalKey::new("q", "y", "d")
        );
    }
}
