//! Planning: a [`Snapshot`] of the world plus a request → a [`Plan`] of idempotent [`Step`]s, or
//! a [`Refusal`]. Pure functions, no I/O: what `--dry-run` prints is exactly what would run.
//!
//! Every step is "make X exist" or "make X gone", so running a plan twice, or a plan computed
//! after an interrupted run, converges (the kube-rs reconciler discipline). Values only known
//! while acting (IPs just reserved, fresh keys) are resolved by the executor, not stored here.

pub mod commands;
mod down;
pub mod leader;
pub mod lock;
pub mod quorum;
pub mod snapshot;
pub mod ssh;
mod up;

use serde::Serialize;

pub use down::{RemoveRequest, TeardownRequest, plan_remove, plan_teardown};
pub use snapshot::Snapshot;
pub use up::{AddRequest, FirstRequest, pick_replica_name, plan_add, plan_first, plan_rollback_add};

use crate::config::{Command, Config, MasterSettings};
use crate::error::Refusal;
use crate::names::{self, ClusterNames, EtcdCluster};
use commands::Commands;
use lock::Intent;

/// Which external IP to attach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalIp {
    /// The cluster static IP.
    Static,
    /// A new ephemeral IP.
    Ephemeral,
}

/// Where to check the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiVia {
    /// `https://<static IP>` (one replica, or through the load balancer).
    StaticIp,
    /// `https://127.0.0.1` on the replica itself, through its SSH connection (its serving
    /// certificate has `IP:127.0.0.1`): nothing outside the VPC reaches an internal IP.
    Loopback,
}

/// Which firewall rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallKind {
    /// The API port (`names::APISERVER_PORT`) to the master tag.
    Https,
    /// The etcd peer ports between masters.
    Etcd,
    /// SSH (tcp:22) to the master tag from `KUBE_HA_SSH_SOURCE_RANGES`: how kube-ha reaches etcd.
    Ssh,
}

/// One idempotent step: "make X exist" or "make X gone". Each says what counts as already done,
/// which is what lets a rerun (or steno's `repeat` mode) run it again safely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(StepKind),
    derive(strum::EnumIter, strum::EnumString, strum::IntoStaticStr, strum::VariantNames, Hash),
    strum(serialize_all = "snake_case"),
    allow(missing_docs),
    doc = "The kind of a [`Step`], named as `--dry-run --output json` names it (`action`) and as `KUBE_HA_FAILPOINT` takes it."
)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    /// Create a firewall rule; "already exists" is done.
    CreateFirewall {
        /// Rule name.
        name: String,
        /// Which of the cluster's rules.
        kind: FirewallKind,
    },
    /// Delete a firewall rule; "not found" is done.
    DeleteFirewall {
        /// Rule name.
        name: String,
    },
    /// Reserve the cluster's regional external static IP; "already exists" is done.
    ReserveStaticIp {
        /// Address name.
        name: String,
        /// Its region.
        region: String,
    },
    /// Reserve a replica's internal IP before its VM, so its certificates are known in advance;
    /// "already exists" is done.
    ReserveInternalIp {
        /// Address name.
        name: String,
        /// Its region.
        region: String,
        /// The replica it is for.
        replica: String,
    },
    /// Release a regional address; "not found" is done.
    ReleaseAddress {
        /// Address name.
        name: String,
        /// Its region (the address's own, as observed).
        region: String,
    },
    /// Create a replica's data disk; "already exists" is done.
    CreateDataDisk {
        /// Disk name.
        name: String,
        /// Its zone.
        zone: String,
        /// Disk type.
        disk_type: String,
        /// Size in GB.
        size_gb: u64,
    },
    /// Delete a disk; "not found" is done.
    DeleteDisk {
        /// Disk name.
        name: String,
        /// Its zone.
        zone: String,
    },
    /// Create a replica VM; its metadata (certificates, kube-env) is made when the step runs. An
    /// existing VM of that name is done.
    CreateReplicaVm {
        /// VM name.
        replica: String,
        /// Its zone.
        zone: String,
        /// The cluster's first master (makes the CAs) rather than a replica (copies them).
        first: bool,
        /// Machine type, disks, image.
        settings: MasterSettings,
    },
    /// Delete a replica VM (its boot disk goes with it); "not found" is done.
    DeleteVm {
        /// VM name.
        replica: String,
        /// Its zone.
        zone: String,
    },
    /// Wait until the replica's etcd (main and events) answers healthy; waits change nothing.
    WaitEtcdHealthy {
        /// The replica.
        replica: String,
    },
    /// Wait until an API answers with a certificate that verifies against the cluster CA.
    WaitApi {
        /// The replica.
        replica: String,
        /// Where to ask.
        via: ApiVia,
    },
    /// Merge this cluster's cluster, user and context into the kubeconfig, keeping every other
    /// entry; rewriting them is harmless.
    WriteKubeconfig {
        /// The kubeconfig file.
        path: String,
        /// The name of the cluster, user and context (`${PROJECT}_${KUBE_GCE_INSTANCE_PREFIX}`).
        context: String,
    },
    /// Remove this cluster's cluster, user and context from the kubeconfig (teardown); entries
    /// already gone are done.
    RemoveKubeconfigEntries {
        /// The kubeconfig file.
        path: String,
        /// The name of the cluster, user and context.
        context: String,
    },
    /// Create the target pool with its first replica; an existing pool gets that replica added.
    CreateTargetPool {
        /// Pool name.
        name: String,
        /// Its region.
        region: String,
        /// The replica it starts with.
        replica: String,
        /// That replica's zone.
        zone: String,
    },
    /// Delete the target pool; "not found" is done.
    DeleteTargetPool {
        /// Pool name.
        name: String,
        /// Its region.
        region: String,
    },
    /// Add a replica to the target pool; already in it is done.
    AddToPool {
        /// The replica.
        replica: String,
        /// Its zone.
        zone: String,
    },
    /// Remove a replica from the target pool; not in it is done.
    RemoveFromPool {
        /// The replica.
        replica: String,
        /// Its zone.
        zone: String,
    },
    /// Delete a replica's access config (its external IP); none left, or no VM, is done.
    DetachExternalIp {
        /// The replica.
        replica: String,
        /// Its zone.
        zone: String,
        /// The access config's name.
        access_config: String,
    },
    /// Give a replica an external IP (the static one, or a new ephemeral one); the right one
    /// already attached is done.
    AttachExternalIp {
        /// The replica.
        replica: String,
        /// Its zone.
        zone: String,
        /// Which IP.
        ip: ExternalIp,
    },
    /// Create the forwarding rule on the static IP; "already exists" is done.
    CreateForwardingRule {
        /// Rule name.
        name: String,
        /// Its region.
        region: String,
    },
    /// Delete the forwarding rule; "not found" is done.
    DeleteForwardingRule {
        /// Rule name.
        name: String,
        /// Its region.
        region: String,
    },
    /// Add the replica as a learner (non-voting, so quorum does not change); a member with its
    /// peer URL already there is done.
    AddLearner {
        /// Which etcd cluster.
        cluster: EtcdCluster,
        /// The replica.
        replica: String,
    },
    /// Wait until the learner has caught up, then promote it (etcd refuses until it is in sync);
    /// a voting member is done.
    PromoteLearner {
        /// Which etcd cluster.
        cluster: EtcdCluster,
        /// The replica.
        replica: String,
    },
    /// If the replica's member leads `cluster`, hand leadership to a healthy voting member; not
    /// leading is done.
    MoveLeaderOff {
        /// Which etcd cluster.
        cluster: EtcdCluster,
        /// The replica.
        replica: String,
    },
    /// Remove the replica's member (by peer URL or name); no such member is done.
    RemoveMember {
        /// Which etcd cluster.
        cluster: EtcdCluster,
        /// The replica.
        replica: String,
    },
}

impl StepKind {
    /// Every kind's name, in declaration order.
    pub fn names() -> &'static [&'static str] {
        <StepKind as strum::VariantNames>::VARIANTS
    }

    /// This kind's name (`create_data_disk`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Step {
    /// The step's kind (derived from the variant; the same name serde gives `action`).
    pub fn kind(&self) -> StepKind {
        self.into()
    }

    /// Does this step change anything (as opposed to waiting or writing a local file)?
    pub fn mutates_cluster(&self) -> bool {
        !matches!(
            self,
            Step::WaitEtcdHealthy { .. }
                | Step::WaitApi { .. }
                | Step::WriteKubeconfig { .. }
                | Step::RemoveKubeconfigEntries { .. }
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateFirewall {
                name,
                kind: FirewallKind::Https,
            } => write!(f, "create firewall rule {name} (tcp:{})", names::APISERVER_PORT),
            Step::CreateFirewall {
                name,
                kind: FirewallKind::Etcd,
            } => write!(
                f,
                "create firewall rule {name} (tcp:{})",
                EtcdCluster::ALL.map(|c| c.peer_port().to_string()).join(",")
            ),
            Step::CreateFirewall {
                name,
                kind: FirewallKind::Ssh,
            } => write!(f, "create firewall rule {name} (tcp:{})", names::SSH_PORT),
            Step::DeleteFirewall { name } => write!(f, "delete firewall rule {name}"),
            Step::ReserveStaticIp { name, region } => write!(f, "reserve static IP {name} in {region}"),
            Step::ReserveInternalIp { name, region, .. } => write!(f, "reserve internal IP {name} in {region}"),
            Step::ReleaseAddress { name, region } => write!(f, "release address {name} in {region}"),
            Step::CreateDataDisk {
                name,
                zone,
                disk_type,
                size_gb,
            } => {
                write!(f, "create data disk {name} ({disk_type}, {size_gb} GB) in {zone}")
            }
            Step::DeleteDisk { name, zone } => write!(f, "delete disk {name} in {zone}"),
            Step::CreateReplicaVm {
                replica,
                zone,
                first,
                settings,
            } => write!(
                f,
                "create {} VM {replica} in {zone} ({}, own certificates)",
                if *first { "first master" } else { "replica" },
                settings.machine_type
            ),
            Step::DeleteVm { replica, zone } => write!(f, "delete VM {replica} in {zone}"),
            Step::WaitEtcdHealthy { replica } => write!(f, "wait until etcd (main and events) on {replica} is healthy"),
            Step::WaitApi {
                replica,
                via: ApiVia::StaticIp,
            } => {
                write!(
                    f,
                    "wait until the API answers on the static IP (TLS verified) [{replica}]"
                )
            }
            Step::WaitApi {
                replica,
                via: ApiVia::Loopback,
            } => {
                write!(
                    f,
                    "wait until {replica}'s API answers on its own 127.0.0.1, over SSH (TLS verified)"
                )
            }
            Step::WriteKubeconfig { path, context } => {
                write!(f, "merge cluster, user and context {context} into kubeconfig {path}")
            }
            Step::RemoveKubeconfigEntries { path, context } => {
                write!(f, "remove cluster, user and context {context} from kubeconfig {path}")
            }
            Step::CreateTargetPool {
                name, region, replica, ..
            } => {
                write!(f, "create target pool {name} in {region} with {replica}")
            }
            Step::DeleteTargetPool { name, region } => write!(f, "delete target pool {name} in {region}"),
            Step::AddToPool { replica, .. } => write!(f, "add {replica} to the target pool"),
            Step::RemoveFromPool { replica, .. } => write!(f, "remove {replica} from the target pool"),
            Step::DetachExternalIp { replica, .. } => write!(f, "detach the external IP of {replica}"),
            Step::AttachExternalIp {
                replica,
                ip: ExternalIp::Static,
                ..
            } => write!(f, "attach the static IP to {replica}"),
            Step::AttachExternalIp {
                replica,
                ip: ExternalIp::Ephemeral,
                ..
            } => {
                write!(f, "attach a new ephemeral external IP to {replica}")
            }
            Step::CreateForwardingRule { name, region } => {
                write!(
                    f,
                    "create forwarding rule {name} in {region} on the static IP (tcp:{})",
                    names::APISERVER_PORT
                )
            }
            Step::DeleteForwardingRule { name, region } => write!(f, "delete forwarding rule {name} in {region}"),
            Step::AddLearner { cluster, replica } => write!(f, "add {replica} as a learner to etcd {cluster}"),
            Step::PromoteLearner { cluster, replica } => {
                write!(
                    f,
                    "wait until {replica} has caught up on etcd {cluster}, then promote it to voting"
                )
            }
            Step::MoveLeaderOff { cluster, replica } => {
                write!(f, "move etcd {cluster} leadership off {replica} if it leads")
            }
            Step::RemoveMember { cluster, replica } => write!(f, "remove {replica}'s member from etcd {cluster}"),
        }
    }
}

/// What a command will do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The operation, recorded in the lock so a rerun can resume it.
    pub intent: Intent,
    /// Steps in order; empty when there is nothing to do.
    pub steps: Vec<Step>,
    /// Things worth saying (warnings, what was found).
    pub notes: Vec<String>,
    /// This plan resumes an interrupted operation.
    pub resumes: bool,
    /// These steps come first and the rest cannot be planned yet: after them, observe again and
    /// plan the rest (an interrupted IP move left a master without an address to reach its etcd).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replan: bool,
}

impl Plan {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Human-readable plan, one numbered line per step.
    pub fn render(&self) -> String {
        let mut out = format!(
            "plan: {}{}\n",
            self.intent,
            if self.resumes {
                " (resuming an interrupted run)"
            } else {
                ""
            }
        );
        for note in &self.notes {
            out.push_str(&format!("  {}\n", note_line(note)));
        }
        if self.steps.is_empty() {
            out.push_str("  nothing to do\n");
        }
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("  {:>2}. {s}\n", i + 1));
        }
        if self.replan {
            out.push_str("  then: observe again and plan the rest\n");
        }
        out
    }
}

/// The one-line refusal that points at the command that finishes an interrupted operation.
fn finish_interrupted_first(names: &ClusterNames, intent: &Intent) -> Refusal {
    let resume = Commands::for_cluster(names).resume(intent);
    Refusal::new(match intent {
        Intent::FirstMaster { zone } => {
            format!("an interrupted first up in {zone} is pending; finish it with {resume}")
        }
        Intent::AddReplica { replica, zone, .. } => {
            format!("an interrupted add of replica {replica} in {zone} is pending; finish it with {resume}")
        }
        Intent::RemoveReplica { replica, .. } => {
            format!("an interrupted removal of replica {replica} is pending; finish it with {resume}")
        }
        Intent::Teardown => format!("an interrupted teardown is pending; finish it with {resume}"),
    })
}

/// A note as printed: warnings carry their own `warning:` prefix.
pub fn note_line(note: &str) -> String {
    if note.starts_with("warning: ") {
        note.to_string()
    } else {
        format!("note: {note}")
    }
}

/// Refuse while another operation holds the lock (all planners start here). The way out, if the
/// holder is gone for good, is a kube-ha command that takes the lock over and finishes the
/// holder's operation (it works in the sandbox too, where gcloud is not set up).
fn refuse_if_locked(s: &Snapshot, names: &ClusterNames) -> Result<(), Refusal> {
    if let Some(r) = s.lock.live() {
        return Err(Refusal::new(format!(
            "another kube-ha operation is running ({}, held by {} until {}); wait for it to finish, or if that \
             process is gone for good, take its lock over and finish its operation with {}",
            r.intent,
            r.owner,
            lock::rfc3339(r.expires),
            Commands::for_cluster(names).take_over(&r.owner.reference(), &r.intent)
        )));
    }
    Ok(())
}

/// The plan of `up` or `down` for a resolved config and an observed world: the one dispatch the
/// ops and the checks of suggested command lines share. `status` plans nothing.
pub fn plan_command(cfg: &Config, command: Command, s: &Snapshot) -> Result<Plan, Refusal> {
    let kubeconfig = cfg.kubeconfig.display().to_string();
    let kubeconfig_context = cfg.names.kubeconfig_context(&cfg.project);
    match command {
        Command::Up if cfg.replicate => plan_add(
            s,
            &AddRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                overrides: cfg.master.clone(),
                fallback_settings: cfg.first_master_settings(),
                allow_same_zone: cfg.allow_same_zone,
                ssh_source_ranges: cfg.ssh_source_ranges.clone(),
            },
        ),
        Command::Up => plan_first(
            s,
            &FirstRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                settings: cfg.first_master_settings(),
                kubeconfig,
                kubeconfig_context,
            },
        ),
        Command::Down if cfg.delete_nodes => plan_teardown(
            s,
            &TeardownRequest {
                names: cfg.names.clone(),
                delete_nodes_set: cfg.delete_nodes_set,
                kubeconfig,
                kubeconfig_context,
            },
        ),
        Command::Down => plan_remove(
            s,
            &RemoveRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                replica_name: cfg.replica_name.clone(),
                ssh_source_ranges: cfg.ssh_source_ranges.clone(),
            },
        ),
        Command::Status => Err(Refusal::new("kube-ha status changes nothing; it has no plan")),
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
