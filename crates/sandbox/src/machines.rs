//! [`SandboxMachines`]: the emulator's [`Machines`] hooks made real — VMs that are hosts of their
//! own (`vm.rs`, `host.rs`) on the sandbox's VPC (`vpc.rs`), and load-balancer proxies
//! (`proxy.rs`).
//!
//! The hooks are called with the emulator's state lock held and must return at once, so each
//! one only sends a message to one actor task, which owns all sandbox state: what GCE says about
//! each project (instances, metadata, firewall rules), the VMs (each a task of its own), what is
//! still being stopped or removed, and what the router should do (NAT, load balancers). After
//! every change to a project the actor recomputes, for each of its VMs, what the VM sees: its
//! metadata server's view, its `/etc/hosts`, its firewall chain (sending only what changed).
//! The actor runs on a runtime of its own, on a dedicated thread: that lets [`Machines::crash`],
//! [`Machines::guest_fault`] and [`Machines::shutdown`] wait for their reply without risking a
//! deadlock on the emulator's runtime. [`Machines::guest_attributes`] and [`Machines::hosts`]
//! read the shared [`Registry`] instead.
//!
//! # Guarantees
//! - Messages are handled in the order the emulator sent them; per VM, in that order too.
//! - No two etcd processes share a data dir: a VM booting on a disk (or under a name) whose
//!   previous user is still stopping waits for it.
//! - A disk's directory is removed only after every VM that used it has stopped.
//! - Nothing outlives the emulator: `shutdown` stops every VM, and every holder and process was
//!   started with `PR_SET_PDEATHSIG = SIGKILL` (see `ns.rs`), so even a SIGKILLed emulator leaves
//!   no process, namespace, link, route or rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::FutureExt as _;
use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;

use kube_ha_core::error::Refusal;
use kube_ha_emulator::ips::AddressPlan;
use kube_ha_emulator::{Boot, GuestAttribute, GuestFault, LbRule, Machines};

use super::files::{HostEntry, hosts_file};
use super::firewall::{self, InstanceFacts};
use super::guest_agent::GuestFaults;
use super::layout::{Layout, ZonalKey, remove_dir_all_if_present};
use super::metadata::GuestView;
use super::proxy::LoadBalancers;
use super::registry::Registry;
use super::vm::{self, Done, Placement, Vm, VmCommand};
use super::vpc::Vpc;

/// How long `crash` waits for the VM's processes to die (a SIGKILL takes milliseconds).
const CRASH_WITHIN: Duration = Duration::from_secs(10);

/// How long a guest fault waits for the actor's answer.
const FAULT_WITHIN: Duration = Duration::from_secs(10);

/// How long `shutdown` waits for everything to stop: every VM stops at once, each within
/// [`vm::STOP_GRACE`] plus a SIGKILL.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(20);

/// The simulated machines of one emulator. See the module doc.
pub struct SandboxMachines {
    tx: UnboundedSender<Message>,
    registry: Arc<Registry>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SandboxMachines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxMachines").finish_non_exhaustive()
    }
}

impl SandboxMachines {
    /// Start the sandbox under `dir` (created if missing; what an earlier emulator left in its
    /// `vms/` and `disks/` is removed, see `layout.rs`), with its VPC on `plan`'s addresses.
    /// Refused (a [`Refusal`]) unless this process is root.
    pub fn new(dir: &Path, plan: AddressPlan) -> Result<SandboxMachines> {
        if !super::ns::is_root() {
            return Err(Refusal::new(
                "the sandbox's VMs need root (network namespaces, veth links, nftables): \
                 run the sandbox as root, e.g. sudo -E kube-ha sandbox start",
            )
            .into());
        }
        let layout = Layout::create(dir)?;
        let vpc = Arc::new(Vpc::create(plan, layout.root(), &layout.root().join("vpc.log"))?);
        let registry = Arc::new(Registry::default());
        registry.set_network(vpc.pid(), vpc.namespaces().net_inode());
        let (router_tx, router_rx) = watch::channel(RouterWanted::default());
        vpc.runtime().handle().spawn(run_router(vpc.clone(), router_rx));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("sandbox-blocking")
            .build()
            .context("cannot start the sandbox runtime")?;
        let (tx, rx) = unbounded_channel();
        let actor = Actor::new(layout, vpc, registry.clone(), router_tx);
        let thread = std::thread::Builder::new()
            .name("sandbox".into())
            .spawn(move || {
                runtime.block_on(actor.run(rx));
                // Blocking stops still running past the shutdown bound are abandoned; their
                // processes die with the process (PDEATHSIG).
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("cannot start the sandbox thread")?;
        tracing::info!(dir = %dir.display(), block = plan.block(), "sandbox: VM hosts enabled");
        Ok(SandboxMachines {
            tx,
            registry,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, message: Message) {
        // Fails only once the actor has shut down, when there is nothing left to tell.
        let _ = self.tx.send(message);
    }
}

impl Machines for SandboxMachines {
    fn instance_created(&self, project: &str, zone: &str, instance: &Value, boot: Boot) {
        let name = instance.get("name").and_then(Value::as_str).unwrap_or_default();
        self.send(Message::Created {
            key: ZonalKey::new(project, zone, name),
            instance: instance.clone(),
            boot,
        });
    }

    fn instance_deleted(&self, project: &str, zone: &str, name: &str) {
        self.send(Message::Deleted {
            key: ZonalKey::new(project, zone, name),
        });
    }

    /// [`Machines::instance_changed`] follows with the instance's new record, which is what the
    /// sandbox goes by.
    fn external_ip_changed(&self, _: &str, _: &str, _: &str, _: Option<Ipv4Addr>) {}

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
                tracing::warn!("sandbox: shutdown did not finish in time; what remains dies with the emulator");
            }
        }
    }

    fn instance_changed(&self, project: &str, zone: &str, instance: &Value) {
        let name = instance.get("name").and_then(Value::as_str).unwrap_or_default();
        self.send(Message::Changed {
            key: ZonalKey::new(project, zone, name),
            instance: instance.clone(),
        });
    }

    fn project_metadata_changed(&self, project: &str, metadata: &Value) {
        self.send(Message::ProjectMetadata {
            project: project.to_string(),
            metadata: metadata.clone(),
        });
    }

    fn firewalls_changed(&self, project: &str, firewalls: &[Value]) {
        self.send(Message::Firewalls {
            project: project.to_string(),
            firewalls: firewalls.to_vec(),
        });
    }

    fn guest_attributes(&self, project: &str, zone: &str, name: &str) -> Option<Vec<GuestAttribute>> {
        self.registry.guest_attributes(&ZonalKey::new(project, zone, name))
    }

    fn serial_port_output(&self, project: &str, zone: &str, name: &str, port: u8) -> Option<String> {
        self.registry
            .serial_port_output(&ZonalKey::new(project, zone, name), port)
    }

    fn guest_fault(&self, project: &str, instance: Option<(&str, &str)>, fault: GuestFault) -> bool {
        let (reply, answer) = std::sync::mpsc::channel();
        self.send(Message::GuestFault {
            project: project.to_string(),
            instance: instance.map(|(zone, name)| ZonalKey::new(project, zone, name)),
            fault,
            reply,
        });
        answer.recv_timeout(FAULT_WITHIN).unwrap_or(false)
    }

    fn hosts(&self) -> Option<Value> {
        Some(self.registry.document())
    }
}

/// What the hooks tell the actor.
enum Message {
    Created {
        key: ZonalKey,
        instance: Value,
        boot: Boot,
    },
    Changed {
        key: ZonalKey,
        instance: Value,
    },
    Deleted {
        key: ZonalKey,
    },
    ProjectMetadata {
        project: String,
        metadata: Value,
    },
    Firewalls {
        project: String,
        firewalls: Vec<Value>,
    },
    LoadBalancers(Vec<LbRule>),
    DiskDeleted {
        key: ZonalKey,
    },
    Crash {
        key: ZonalKey,
        reply: std::sync::mpsc::Sender<bool>,
    },
    GuestFault {
        project: String,
        instance: Option<ZonalKey>,
        fault: GuestFault,
        reply: std::sync::mpsc::Sender<bool>,
    },
    Shutdown {
        reply: std::sync::mpsc::Sender<()>,
    },
}

/// What GCE says about one project, as far as its VMs can tell.
#[derive(Debug, Default)]
struct ProjectRecord {
    metadata: Value,
    firewalls: Vec<Value>,
    /// Every instance (booted or not), by (zone, name).
    instances: BTreeMap<(String, String), Value>,
    /// Project-wide guest faults, also for VMs created later.
    faults: GuestFaults,
}

/// A VM the actor knows: how to reach its task, what it was last told, when it is done.
struct VmHandle {
    commands: UnboundedSender<VmCommand>,
    disk: Option<ZonalKey>,
    done: Done,
    view: watch::Sender<Arc<GuestView>>,
    faults: watch::Sender<GuestFaults>,
    firewall: String,
    hosts: String,
}

/// A deleted VM whose task is still stopping its processes and removing its files.
struct Stopping {
    vm: ZonalKey,
    disk: Option<ZonalKey>,
    done: Done,
}

/// What the router should do: 1:1 NAT pairs (external, internal) and load balancers.
#[derive(Clone, Debug, Default, PartialEq)]
struct RouterWanted {
    nat: Vec<(Ipv4Addr, Ipv4Addr)>,
    lb: Vec<LbRule>,
}

/// The owner of all sandbox state (see the module doc).
struct Actor {
    layout: Layout,
    vpc: Arc<Vpc>,
    registry: Arc<Registry>,
    router: watch::Sender<RouterWanted>,
    projects: BTreeMap<String, ProjectRecord>,
    vms: HashMap<ZonalKey, VmHandle>,
    stopping: Vec<Stopping>,
    disk_removals: HashMap<ZonalKey, Done>,
}

impl Actor {
    fn new(layout: Layout, vpc: Arc<Vpc>, registry: Arc<Registry>, router: watch::Sender<RouterWanted>) -> Actor {
        Actor {
            layout,
            vpc,
            registry,
            router,
            projects: BTreeMap::new(),
            vms: HashMap::new(),
            stopping: Vec::new(),
            disk_removals: HashMap::new(),
        }
    }

    async fn run(mut self, mut messages: UnboundedReceiver<Message>) {
        while let Some(message) = messages.recv().await {
            self.forget_finished();
            match message {
                Message::Created { key, instance, boot } => {
                    self.record(&key, Some(instance.clone()));
                    self.created(key.clone(), &instance, boot);
                    self.refresh(&key.project);
                }
                Message::Changed { key, instance } => {
                    self.record(&key, Some(instance));
                    self.refresh(&key.project);
                }
                Message::Deleted { key } => {
                    self.record(&key, None);
                    self.deleted(&key);
                    self.refresh(&key.project);
                }
                Message::ProjectMetadata { project, metadata } => {
                    self.projects.entry(project.clone()).or_default().metadata = metadata;
                    self.refresh(&project);
                }
                Message::Firewalls { project, firewalls } => {
                    self.projects.entry(project.clone()).or_default().firewalls = firewalls;
                    self.refresh(&project);
                }
                Message::LoadBalancers(rules) => {
                    tracing::info!(rules = ?rules, "load balancers changed");
                    self.router.send_modify(|w| w.lb = rules);
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
                Message::GuestFault {
                    project,
                    instance,
                    fault,
                    reply,
                } => {
                    let _ = reply.send(self.guest_fault(&project, instance.as_ref(), fault));
                }
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

    /// Keep (or, with `None`, forget) an instance's record.
    fn record(&mut self, key: &ZonalKey, instance: Option<Value>) {
        let project = self.projects.entry(key.project.clone()).or_default();
        let id = (key.zone.clone(), key.name.clone());
        match instance {
            Some(v) => {
                project.instances.insert(id, v);
            }
            None => {
                project.instances.remove(&id);
            }
        }
    }

    fn created(&mut self, key: ZonalKey, instance: &Value, boot: Boot) {
        if self.vms.contains_key(&key) {
            // GCE never has two instances of one name; treat a repeat as a replacement.
            self.deleted(&key);
        }
        let placement = Placement::from_instance(&key.project, &key.zone, instance);
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
        let project = self.projects.entry(key.project.clone()).or_default();
        let (view, view_rx) = watch::channel(Arc::new(GuestView::default()));
        let (faults, faults_rx) = watch::channel(project.faults.clone());
        let (commands, inbox) = unbounded_channel();
        let mut handle_view = GuestView::default();
        let (firewall, hosts) = self.vm_sees(&key, &mut handle_view);
        view.send_replace(Arc::new(handle_view));
        let task = tokio::spawn(vm::run(
            Vm {
                key: key.clone(),
                layout: self.layout.clone(),
                placement,
                boot,
                after,
                vpc: self.vpc.clone(),
                registry: self.registry.clone(),
                view: view_rx,
                faults: faults_rx,
                firewall: firewall.clone(),
                hosts: hosts.clone(),
            },
            inbox,
        ));
        let done: Done = task.map(|_| ()).boxed().shared();
        self.vms.insert(
            key,
            VmHandle {
                commands,
                disk,
                done,
                view,
                faults,
                firewall,
                hosts,
            },
        );
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

    /// What VM `key` sees now: its metadata view (written into `view`), firewall chain and hosts.
    fn vm_sees(&self, key: &ZonalKey, view: &mut GuestView) -> (String, String) {
        let empty = ProjectRecord::default();
        let project = self.projects.get(&key.project).unwrap_or(&empty);
        let me = project
            .instances
            .get(&(key.zone.clone(), key.name.clone()))
            .cloned()
            .unwrap_or(Value::Null);
        *view = GuestView {
            project: key.project.clone(),
            zone: key.zone.clone(),
            instance: me.clone(),
            project_metadata: project.metadata.clone(),
            gateway: Some(self.vpc.plan().gateway()),
        };
        let facts: Vec<InstanceFacts> = project.instances.values().map(InstanceFacts::from_instance).collect();
        let firewall = firewall::ruleset(&InstanceFacts::from_instance(&me), &facts, &project.firewalls);
        let entries: Vec<HostEntry> = project
            .instances
            .iter()
            .filter_map(|((zone, name), v)| {
                Some(HostEntry {
                    name: name.clone(),
                    zone: zone.clone(),
                    ip: InstanceFacts::from_instance(v).ip?,
                })
            })
            .collect();
        (firewall, hosts_file(&key.zone, &key.project, &entries))
    }

    /// Tell every VM of `project` what changed for it, and the router what its NAT is now.
    fn refresh(&mut self, project: &str) {
        let keys: Vec<ZonalKey> = self.vms.keys().filter(|k| k.project == project).cloned().collect();
        for key in keys {
            let mut view = GuestView::default();
            let (firewall, hosts) = self.vm_sees(&key, &mut view);
            let Some(vm) = self.vms.get_mut(&key) else { continue };
            vm.view.send_if_modified(|current| {
                let changed = **current != view;
                if changed {
                    *current = Arc::new(view);
                }
                changed
            });
            if firewall != vm.firewall {
                let _ = vm.commands.send(VmCommand::Firewall(firewall.clone()));
                vm.firewall = firewall;
            }
            if hosts != vm.hosts {
                let _ = vm.commands.send(VmCommand::Hosts(hosts.clone()));
                vm.hosts = hosts;
            }
        }
        let nat: Vec<(Ipv4Addr, Ipv4Addr)> = self
            .projects
            .values()
            .flat_map(|p| p.instances.values())
            .filter_map(|i| {
                let nic0 = i.pointer("/networkInterfaces/0")?;
                let internal: Ipv4Addr = nic0.get("networkIP")?.as_str()?.parse().ok()?;
                let external: Ipv4Addr = nic0.pointer("/accessConfigs/0/natIP")?.as_str()?.parse().ok()?;
                Some((external, internal))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.router.send_if_modified(|w| {
            let changed = w.nat != nat;
            w.nat = nat;
            changed
        });
    }

    /// Apply a guest fault (see [`Machines::guest_fault`]); false for an unknown instance.
    fn guest_fault(&mut self, project: &str, instance: Option<&ZonalKey>, fault: GuestFault) -> bool {
        match instance {
            Some(key) => match self.vms.get(key) {
                Some(vm) => {
                    vm.faults.send_modify(|f| f.apply(fault));
                    true
                }
                None => false,
            },
            None => {
                self.projects
                    .entry(project.to_string())
                    .or_default()
                    .faults
                    .apply(fault);
                for (_, vm) in self.vms.iter().filter(|(k, _)| k.project == project) {
                    vm.faults.send_modify(|f| f.apply(fault));
                }
                true
            }
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
        if tokio::time::timeout(SHUTDOWN_WITHIN, join_all(pending)).await.is_err() {
            tracing::warn!("sandbox: some VMs did not stop within {SHUTDOWN_WITHIN:?}");
        }
        // The router closes its proxies when its wanted state goes.
        self.router.send_replace(RouterWanted::default());
        tracing::info!("sandbox: every VM stopped");
    }
}

/// The router's side (on the router's runtime, so its proxies' sockets are the router's): make
/// the forwarding-rule addresses, the NAT and the proxies follow what the actor wants, in an
/// order that never leaves a proxy without its address.
async fn run_router(vpc: Arc<Vpc>, mut wanted: watch::Receiver<RouterWanted>) {
    let mut proxies = LoadBalancers::default();
    let mut addresses: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut nat: Option<Vec<(Ipv4Addr, Ipv4Addr)>> = None;
    loop {
        let w = wanted.borrow_and_update().clone();
        let want: BTreeSet<Ipv4Addr> = w.lb.iter().map(|r| r.ip).collect();
        let add: Vec<Ipv4Addr> = want.difference(&addresses).copied().collect();
        let remove: Vec<Ipv4Addr> = addresses.difference(&want).copied().collect();
        let nat_now = (nat.as_ref() != Some(&w.nat)).then(|| w.nat.clone());
        let (v, add_now) = (vpc.clone(), add.clone());
        let applied = tokio::task::spawn_blocking(move || -> Result<()> {
            v.local_addresses(&add_now, &[])?;
            if let Some(pairs) = nat_now {
                v.apply_nat(&pairs)?;
            }
            Ok(())
        })
        .await;
        match applied {
            Ok(Ok(())) => nat = Some(w.nat.clone()),
            Ok(Err(e)) => tracing::warn!("VPC router: {e:#}"),
            Err(e) => tracing::warn!("VPC router: {e}"),
        }
        proxies.apply(&w.lb).await;
        tracing::debug!(proxies = ?proxies.describe(), nat = ?w.nat, "VPC router updated");
        if !remove.is_empty() {
            let v = vpc.clone();
            let _ = tokio::task::spawn_blocking(move || v.local_addresses(&[], &remove)).await;
        }
        addresses = want;
        if wanted.changed().await.is_err() {
            break;
        }
    }
    proxies.close_all().await;
}
