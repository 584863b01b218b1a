//! The emulator's state: [`AppState`] (shared by every handler: settings, the GCE world, the call
//! log, the fault queue, the machines hooks) and the [`World`] behind one mutex — every project's
//! resources, pending names and operations, and the address pool.
//!
//! Resources are stored as the JSON a `get` returns (unknown fields the client sent are kept),
//! keyed by [`ResourceKey`], so lists are ordered by scope then name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::calls::CallLog;
use super::error::ApiError;
use super::faults::FaultQueue;
use super::ips::IpPool;
use super::json::{fingerprint, new_id, now};
use super::latency::{Latencies, MethodLatencies};
use super::machines::{LbRule, Machines};
use super::ops::Operation;
use super::scope::{Kind, ResourceKey};

/// How long `operations/{op}/wait` blocks at most (GCE: about two minutes; shorter here).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Settings of one emulator's state.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://host:port`, the prefix of every `selfLink`.
    pub base_url: String,
    /// N of the block addresses come from (see [`crate::ips::AddressPlan`]).
    pub ip_block: u8,
    /// PENDING → DONE time of each operation (0: applied synchronously, returned DONE), unless
    /// `op_latencies` has one for its collection or method.
    pub op_latency: Duration,
    /// Latencies of some collections or methods (`instances.insert`, `disks`, …).
    pub op_latencies: MethodLatencies,
    /// Boot delay passed to [`Machines::instance_created`] unless a fault says otherwise.
    pub boot_delay: Duration,
    /// Longest block of an operations `wait`.
    pub wait_limit: Duration,
}

impl Settings {
    /// Settings with no latency, no boot delay and the default wait limit.
    pub fn new(base_url: impl Into<String>, ip_block: u8) -> Self {
        Settings {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            ip_block,
            op_latency: Duration::ZERO,
            op_latencies: MethodLatencies::new(),
            boot_delay: Duration::ZERO,
            wait_limit: DEFAULT_WAIT_LIMIT,
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    world: Mutex<World>,
    calls: Mutex<CallLog>,
    faults: Mutex<FaultQueue>,
    /// The operation latencies now (changed by `/_emulator/latency`).
    latency: Mutex<Latencies>,
    machines: Arc<dyn Machines>,
    /// Bumped whenever an operation becomes DONE (wakes `wait`ers).
    ops_done: watch::Sender<u64>,
    /// Set when the server is shutting down (wakes `wait`ers too).
    shutdown: watch::Sender<bool>,
}

/// Lock a mutex, ignoring poisoning: the state stays usable after a panicking handler.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AppState {
    /// A fresh emulator state: no projects, no calls, no faults.
    pub fn new(settings: Settings, machines: Arc<dyn Machines>) -> Self {
        let api_base = format!("{}/compute/v1", settings.base_url);
        let world = World::new(api_base, settings.ip_block);
        let latency = Latencies {
            default: settings.op_latency,
            methods: settings.op_latencies.clone(),
        };
        AppState {
            inner: Arc::new(Inner {
                settings,
                world: Mutex::new(world),
                calls: Mutex::new(CallLog::default()),
                faults: Mutex::new(FaultQueue::default()),
                latency: Mutex::new(latency),
                machines,
                ops_done: watch::channel(0).0,
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Wake every blocked operations `wait` and make new ones return at once.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// The machines hooks.
    pub fn machines(&self) -> &dyn Machines {
        self.inner.machines.as_ref()
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.inner.world)
    }

    pub(crate) fn calls(&self) -> MutexGuard<'_, CallLog> {
        lock(&self.inner.calls)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        lock(&self.inner.faults)
    }

    /// The operation latencies now.
    pub(crate) fn latency(&self) -> MutexGuard<'_, Latencies> {
        lock(&self.inner.latency)
    }

    /// The latencies the emulator started with.
    pub(crate) fn initial_latency(&self) -> Latencies {
        Latencies {
            default: self.inner.settings.op_latency,
            methods: self.inner.settings.op_latencies.clone(),
        }
    }

    pub(crate) fn notify_op_done(&self) {
        self.inner.ops_done.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn watch_ops(&self) -> (watch::Receiver<u64>, watch::Receiver<bool>) {
        (self.inner.ops_done.subscribe(), self.inner.shutdown.subscribe())
    }
}

/// One project's records.
#[derive(Debug)]
pub(crate) struct Project {
    pub id: u64,
    pub created: String,
    /// `commonInstanceMetadata` (`compute#metadata` with `fingerprint` and `items`).
    pub metadata: Value,
    pub resources: BTreeMap<ResourceKey, Value>,
    /// Names claimed by inserts whose operation is not DONE yet (they already conflict).
    pub pending: BTreeSet<ResourceKey>,
    pub operations: BTreeMap<String, Operation>,
    /// requestId → operation name.
    pub request_ids: HashMap<String, String>,
}

/// Every project, the address pool, and what the machines were last told about load balancers.
#[derive(Debug)]
pub(crate) struct World {
    /// `http://host:port/compute/v1`.
    pub api_base: String,
    pub projects: BTreeMap<String, Project>,
    pub ips: IpPool,
    pub last_lb: Vec<LbRule>,
}

impl World {
    fn new(api_base: String, ip_block: u8) -> Self {
        World {
            api_base,
            projects: BTreeMap::new(),
            ips: IpPool::new(ip_block),
            last_lb: Vec::new(),
        }
    }

    /// A project, created empty on first use (any project id is accepted).
    pub fn project_mut(&mut self, name: &str) -> &mut Project {
        if !self.projects.contains_key(name) {
            let id = new_id();
            self.projects.insert(
                name.to_string(),
                Project {
                    id,
                    created: now(),
                    metadata: json!({"kind": "compute#metadata", "fingerprint": fingerprint(), "items": []}),
                    resources: BTreeMap::new(),
                    pending: BTreeSet::new(),
                    operations: BTreeMap::new(),
                    request_ids: HashMap::new(),
                },
            );
        }
        match self.projects.get_mut(name) {
            Some(p) => p,
            None => unreachable!("inserted above"),
        }
    }

    /// A resource.
    pub fn get(&self, project: &str, key: &ResourceKey) -> Option<&Value> {
        self.projects.get(project)?.resources.get(key)
    }

    /// A resource, mutably.
    pub fn get_mut(&mut self, project: &str, key: &ResourceKey) -> Option<&mut Value> {
        self.projects.get_mut(project)?.resources.get_mut(key)
    }

    /// A resource, or 404.
    pub fn require(&self, project: &str, key: &ResourceKey) -> Result<&Value, ApiError> {
        self.get(project, key)
            .ok_or_else(|| ApiError::not_found(key.path(project)))
    }

    /// 409 if the name is taken, by an existing resource or a pending insert.
    pub fn ensure_absent(&self, project: &str, key: &ResourceKey) -> Result<(), ApiError> {
        let taken = self
            .projects
            .get(project)
            .is_some_and(|p| p.resources.contains_key(key) || p.pending.contains(key));
        if taken {
            Err(ApiError::already_exists(key.path(project)))
        } else {
            Ok(())
        }
    }

    /// Store a resource.
    pub fn insert(&mut self, project: &str, key: ResourceKey, value: Value) {
        self.project_mut(project).resources.insert(key, value);
    }

    /// Remove a resource.
    pub fn remove(&mut self, project: &str, key: &ResourceKey) -> Option<Value> {
        self.projects.get_mut(project)?.resources.remove(key)
    }

    /// Every resource of a kind in a project, ordered by scope then name.
    pub fn of_kind<'a>(&'a self, project: &str, kind: Kind) -> impl Iterator<Item = (&'a ResourceKey, &'a Value)> + 'a {
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.resources.iter())
            .filter(move |(k, _)| k.kind == kind)
    }

    /// `<api_base>/projects/<p>`.
    pub fn project_url(&self, project: &str) -> String {
        format!("{}/projects/{project}", self.api_base)
    }

    /// The full `selfLink` of a resource.
    pub fn self_link(&self, project: &str, key: &ResourceKey) -> String {
        format!("{}/{}", self.project_url(project), key.rel())
    }

    /// The `/_emulator/state` document.
    pub fn dump(&self) -> Value {
        let projects: serde_json::Map<String, Value> = self
            .projects
            .iter()
            .map(|(name, p)| {
                let mut doc = serde_json::Map::new();
                doc.insert("commonInstanceMetadata".into(), p.metadata.clone());
                for kind in Kind::ALL {
                    let items: Vec<Value> = p
                        .resources
                        .iter()
                        .filter(|(k, _)| k.kind == kind)
                        .map(|(_, v)| v.clone())
                        .collect();
                    doc.insert(kind.collection().into(), Value::Array(items));
                }
                let pending: Vec<Value> = p
                    .operations
                    .values()
                    .filter(|op| !op.is_done())
                    .map(|op| op.summary())
                    .collect();
                doc.insert("pendingOperations".into(), Value::Array(pending));
                let names: Vec<String> = p.pending.iter().map(|k| k.path(name)).collect();
                doc.insert("pendingNames".into(), json!(names));
                (name.clone(), Value::Object(doc))
            })
            .collect();
        json!({
            "ipBlock": self.ips.block(),
            "loadBalancers": self.last_lb,
            "projects": projects,
        })
    }
}
