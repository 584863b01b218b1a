//! [`SandboxMachines`]: the emulator's [`Machines`] hooks made real — simulated master VMs
//! (see `vm.rs`) and load-balancer proxies (`proxy.rs`).
//!
//! The hooks are called with the emulator's state lock held and must return at once, so each
//! one only sends a message to one actor task, which owns all sandbox state: the VMs (each a task
//! of its own), the proxies, and what is still being stopped or removed. The actor and
//! everything it starts run on a runtime of their own, on a dedicated thread. That is what lets
//! [`Machines::crash`] and [`Machines::shutdown`] wait for their reply without risking a
//! deadlock on the emulator's runtime (a task woken from a blocked worker cannot run until that
//! worker is free again), so a `crash` call returns only once the VM's etcd is dead, and
//! `shutdown` only once every etcd is gone.
//!
//! # Guarantees
//! - Messages are handled in the order the emulator sent them; per VM, in that order too.
//! - No two etcd processes share a data dir: a VM booting on a disk (or under a name) whose
//!   previous user is still stopping waits for it.
//! - A disk's directory is removed only after every VM that used it has stopped.
//! - No etcd outlives the emulator: `shutdown` stops them, and each was started with
//!   `PR_SET_PDEATHSIG = SIGKILL`, so even a SIGKILLed emulator leaves none.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::FutureExt as _;
use futures_util::future::join_all;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use kube_ha_emulator::{Boot, LbRule, Machines};

use super::layout::{Layout, ZonalKey, remove_dir_all_if_present};
use super::proxy::LoadBalancers;
use super::vm::{self, Done, Placement, Vm, VmCommand};

/// How long `crash` waits for the VM's processes to die (a SIGKILL takes milliseconds).
const CRASH_WITHIN: Duration = Duration::from_secs(10);

/// How long `shutdown` waits for everything to stop: every VM stops at once, each within
/// [`vm::STOP_GRACE`] plus a SIGKILL.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(20);

/// The simulated machines of one emulator. See the module doc.
pub struct SandboxMachines {
    tx: UnboundedSender<Message>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SandboxMachines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxMachines").finish_non_exhaustive()
    }
}

impl SandboxMachines {
    /// Start the sandbox under `dir` (created if missing; what an earlier emulator left in its
    /// `vms/` and `disks/` is removed, see `layout.rs`).
    pub fn new(dir: &Path) -> Result<SandboxMachines> {
        let layout = Layout::create(dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("sandbox-blocking")
            .build()
            .context("cannot start the sandbox runtime")?;
        let (tx, rx) = unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("sandbox".into())
            .spawn(move || {
                runtime.block_on(Actor::new(layout).run(rx));
                // Blocking stops still running past the shutdown bound are abandoned; their etcd
                // dies with the process (PDEATHSIG).
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("cannot start the sandbox thread")?;
        tracing::info!(dir = %dir.display(), "sandbox: simulated VMs enabled");
        Ok(SandboxMachines {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, message: Message) {
        // Fails only once the actor has shut down, when there is nothing left to tell.
        let _ = self.tx.send(message);
    }
}

impl Machines for SandboxMachines {
    fn instance_created(&self, project: &str, zone: &str, instance: &serde_json::Value, boot: Boot) {
        let name = instance
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        self.send(Message::Created {
            key: ZonalKey::new(project, zone, name),
            placement: Placement::from_instance(project, zone, instance),
            boot,
        });
    }

    fn instance_deleted(&self, project: &str, zone: &str, name: &str) {
        self.send(Message::Deleted {
            key: ZonalKey::new(project, zone, name),
        });
    }

    fn external_ip_changed(&self, project: &str, zone: &str, name: &str, ip: Option<Ipv4Addr>) {
        self.send(Message::ExternalIp {
            key: ZonalKey::new(project, zone, name),
            ip,
        });
    }

    fn load_balancers_changed(&self, rules: Vec<LbRule>) {
        self.send(Message::LoadBalancers(rules));
    }

    fn disk_deleted(&self, project: &str, zone: &str, name: &str) {
        self.send(Message::DiskDeleted {
            key: ZonalKey::new(project, zone, name),
        });
    }

    fn crash(&self, project: &str, zone: &str, name: &str) -> bool {
        let (reply, answer) = std::sync::mpsc::channel();
        self.send(Message::Crash {
            key: ZonalKey::new(project, zone, name),
            reply,
        });
        // No answer in time: the VM is still being killed, which is a crash all the same.
        match answer.recv_timeout(CRASH_WITHIN) {
            Ok(known) => known,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => true,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => false,
        }
    }

    fn shutdown(&self) {
        let (reply, answer) = std::sync::mpsc::channel();
        self.send(Message::Shutdown { reply });
        match answer.recv_timeout(SHUTDOWN_WITHIN + Duration::from_secs(5)) {
            Ok(()) => {
                let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(thread) = thread {
                    let _ = thread.join();
                }
            }
            // The actor is gone: an earlier shutdown already stopped everything.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("sandbox: shutdown did not finish in time; remaining etcd die with the emulator");
            }
        }
    }
}

/// What the hooks tell the actor.
enum Message {
    Created {
        key: ZonalKey,
        placement: Placement,
        boot: Boot,
    },
    Deleted {
        key: ZonalKey,
    },
    ExternalIp {
        key: ZonalKey,
        ip: Option<Ipv4Addr>,
    },
    LoadBalancers(Vec<LbRule>),
    DiskDeleted {
        key: ZonalKey,
    },
    Crash {
        key: ZonalKey,
        reply: std::sync::mpsc::Sender<bool>,
    },
    Shutdown {
        reply: std::sync::mpsc::Sender<()>,
    },
}

/// A VM the actor knows: how to reach its task, and when that task is done.
struct VmHandle {
    commands: UnboundedSender<VmCommand>,
    disk: Option<ZonalKey>,
    done: Done,
}

/// A deleted VM whose task is still stopping its processes and removing its files.
struct Stopping {
    vm: ZonalKey,
    disk: Option<ZonalKey>,
    done: Done,
}

/// The owner of all sandbox state (see the module doc).
struct Actor {
    layout: Layout,
    vms: HashMap<ZonalKey, VmHandle>,
    stopping: Vec<Stopping>,
    disk_removals: HashMap<ZonalKey, Done>,
    load_balancers: LoadBalancers,
}

impl Actor {
    fn new(layout: Layout) -> Actor {
        Actor {
            layout,
            vms: HashMap::new(),
            stopping: Vec::new(),
            disk_removals: HashMap::new(),
            load_balancers: LoadBalancers::default(),
        }
    }

    async fn run(mut self, mut messages: UnboundedReceiver<Message>) {
        while let Some(message) = messages.recv().await {
            self.forget_finished();
            match message {
                Message::Created { key, placement, boot } => self.created(key, placement, boot),
                Message::Deleted { key } => self.deleted(&key),
                Message::ExternalIp { key, ip } => {
                    if let Some(vm) = self.vms.get(&key) {
                        let _ = vm.commands.send(VmCommand::ExternalIp(ip));
                    }
                }
                Message::LoadBalancers(rules) => {
                    self.load_balancers.apply(&rules).await;
                    tracing::info!(proxies = ?self.load_balancers.describe(), "load balancers updated");
                }
                Message::DiskDeleted { key } => self.disk_deleted(key),
                Message::Crash { key, reply } => match self.vms.get(&key) {
                    // The VM task replies once its processes are dead.
                    Some(vm) => {
                        if let Err(e) = vm.commands.send(VmCommand::Crash(reply))
                            && let VmCommand::Crash(reply) = e.0
                        {
                            let _ = reply.send(false);
                        }
                    }
                    None => {
                        let _ = reply.send(false);
                    }
                },
                Message::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
        // Every sender is gone without a shutdown (the emulator dropped us): stop all the same.
        self.shutdown().await;
    }

    fn created(&mut self, key: ZonalKey, placement: Placement, boot: Boot) {
        if self.vms.contains_key(&key) {
            // GCE never has two instances of one name; treat a repeat as a replacement.
            self.deleted(&key);
        }
        let disk = placement.data_disk.clone();
        let mut after: Vec<Done> = self
            .stopping
            .iter()
            .filter(|s| s.vm == key || (disk.is_some() && s.disk == disk))
            .map(|s| s.done.clone())
            .collect();
        if let Some(removal) = disk.as_ref().and_then(|d| self.disk_removals.get(d)) {
            after.push(removal.clone());
        }
        let (commands, inbox) = unbounded_channel();
        let task = tokio::spawn(vm::run(
            Vm {
                key: key.clone(),
                layout: self.layout.clone(),
                placement,
                boot,
                after,
            },
            inbox,
        ));
        let done: Done = task.map(|_| ()).boxed().shared();
        self.vms.insert(key, VmHandle { commands, disk, done });
    }

    fn deleted(&mut self, key: &ZonalKey) {
        if let Some(vm) = self.vms.remove(key) {
            let _ = vm.commands.send(VmCommand::Delete);
            self.stopping.push(Stopping {
                vm: key.clone(),
                disk: vm.disk,
                done: vm.done,
            });
        }
    }

    /// Remove the disk's directory once every VM that used it has stopped (GCE refuses to
    /// delete an attached disk, so only deleted VMs can still be using it).
    fn disk_deleted(&mut self, key: ZonalKey) {
        let users: Vec<Done> = self
            .stopping
            .iter()
            .filter(|s| s.disk.as_ref() == Some(&key))
            .map(|s| s.done.clone())
            .collect();
        let dir = self.layout.disk_dir(&key);
        let what = key.clone();
        let removal = tokio::spawn(async move {
            join_all(users).await;
            match remove_dir_all_if_present(&dir) {
                Ok(()) => tracing::info!(disk = %what, "disk deleted: its etcd data is gone"),
                Err(e) => tracing::warn!(disk = %what, "{e:#}"),
            }
        });
        self.disk_removals.insert(key, removal.map(|_| ()).boxed().shared());
    }

    /// Drop the records of stops and removals that have finished.
    fn forget_finished(&mut self) {
        // Polling a clone once tells whether the task has finished (nobody else may poll it).
        self.stopping.retain(|s| s.done.clone().now_or_never().is_none());
        self.disk_removals
            .retain(|_, done| done.clone().now_or_never().is_none());
    }

    async fn shutdown(&mut self) {
        let mut pending: Vec<Done> = Vec::new();
        for (_, vm) in self.vms.drain() {
            let _ = vm.commands.send(VmCommand::Shutdown);
            pending.push(vm.done);
        }
        pending.extend(self.stopping.drain(..).map(|s| s.done));
        pending.extend(self.disk_removals.drain().map(|(_, done)| done));
        self.load_balancers.close_all().await;
        if tokio::time::timeout(SHUTDOWN_WITHIN, join_all(pending)).await.is_err() {
            tracing::warn!("sandbox: some VMs did not stop within {SHUTDOWN_WITHIN:?}");
        }
        tracing::info!("sandbox: every VM stopped");
    }
}
