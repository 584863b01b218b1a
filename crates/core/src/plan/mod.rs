//! Planning: a [`Snapshot`] of the world plus a request → a [`Plan`] of idempotent [`Step`]s, or
//! a [`Refusal`]. Pure functions, no I/O: what `--dry-run` prints is exactly what would run.
//!
//! Every step is "make X exist" or "make X gone", so running a plan twice, or a plan computed
//! after an interrupted run, converges (the kube-rs reconciler discipline). Values only known
//! while acting (IPs just reserved, fresh keys) are resolved by the executor, not stored here.

mod down;
pub mod lock;
pub mod quorum;
pub mod snapshot;
mod up;

use serde::Serialize;

pub use down::{RemoveRequest, TeardownRequest, plan_remove, plan_teardown};
pub use snapshot::Snapshot;
pub use up::{AddRequest, FirstRequest, plan_add, plan_first, plan_rollback_add};

use crate::config::MasterSettings;
use crate::error::Refusal;
use crate::names::EtcdCluster;
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
    /// `https://<replica internal IP>`.
    InternalIp,
}

/// Which firewall rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallKind {
    /// tcp:443 to the master tag.
    Https,
    /// tcp:2380,2381 between masters.
    Etcd,
}

/// One idempotent step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Step {
    CreateFirewall {
        name: String,
        kind: FirewallKind,
    },
    DeleteFirewall {
        name: String,
    },
    ReserveStaticIp {
        name: String,
        region: String,
    },
    ReserveInternalIp {
        name: String,
        region: String,
        replica: String,
    },
    ReleaseAddress {
        name: String,
        region: String,
    },
    CreateDataDisk {
        name: String,
        zone: String,
        disk_type: String,
        size_gb: u64,
    },
    DeleteDisk {
        name: String,
        zone: String,
    },
    /// Create a replica VM; its metadata (certificates, kube-env) is made when the step runs.
    CreateReplicaVm {
        replica: String,
        zone: String,
        first: bool,
        settings: MasterSettings,
    },
    DeleteVm {
        replica: String,
        zone: String,
    },
    WaitEtcdHealthy {
        replica: String,
    },
    WaitApi {
        replica: String,
        via: ApiVia,
    },
    WriteKubeconfig {
        path: String,
    },
    CreateTargetPool {
        name: String,
        region: String,
        replica: String,
        zone: String,
    },
    DeleteTargetPool {
        name: String,
        region: String,
    },
    AddToPool {
        replica: String,
        zone: String,
    },
    RemoveFromPool {
        replica: String,
        zone: String,
    },
    DetachExternalIp {
        replica: String,
        zone: String,
        access_config: String,
    },
    AttachExternalIp {
        replica: String,
        zone: String,
        ip: ExternalIp,
    },
    CreateForwardingRule {
        name: String,
        region: String,
    },
    DeleteForwardingRule {
        name: String,
        region: String,
    },
    AddLearner {
        cluster: EtcdCluster,
        replica: String,
    },
    /// Wait until the learner has caught up, then promote it (etcd refuses until it is in sync).
    PromoteLearner {
        cluster: EtcdCluster,
        replica: String,
    },
    /// If the replica's member leads `cluster`, hand leadership to a healthy voting member.
    MoveLeaderOff {
        cluster: EtcdCluster,
        replica: String,
    },
    RemoveMember {
        cluster: EtcdCluster,
        replica: String,
    },
}

impl Step {
    /// A short machine name of the step's kind (`create_disk`), used by failpoints.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::CreateFirewall { .. } => "create_firewall",
            Step::DeleteFirewall { .. } => "delete_firewall",
            Step::ReserveStaticIp { .. } => "reserve_static_ip",
            Step::ReserveInternalIp { .. } => "reserve_internal_ip",
            Step::ReleaseAddress { .. } => "release_address",
            Step::CreateDataDisk { .. } => "create_data_disk",
            Step::DeleteDisk { .. } => "delete_disk",
            Step::CreateReplicaVm { .. } => "create_replica_vm",
            Step::DeleteVm { .. } => "delete_vm",
            Step::WaitEtcdHealthy { .. } => "wait_etcd_healthy",
            Step::WaitApi { .. } => "wait_api",
            Step::WriteKubeconfig { .. } => "write_kubeconfig",
            Step::CreateTargetPool { .. } => "create_target_pool",
            Step::DeleteTargetPool { .. } => "delete_target_pool",
            Step::AddToPool { .. } => "add_to_pool",
            Step::RemoveFromPool { .. } => "remove_from_pool",
            Step::DetachExternalIp { .. } => "detach_external_ip",
            Step::AttachExternalIp { .. } => "attach_external_ip",
            Step::CreateForwardingRule { .. } => "create_forwarding_rule",
            Step::DeleteForwardingRule { .. } => "delete_forwarding_rule",
            Step::AddLearner { .. } => "add_learner",
            Step::PromoteLearner { .. } => "promote_learner",
            Step::MoveLeaderOff { .. } => "move_leader_off",
            Step::RemoveMember { .. } => "remove_member",
        }
    }

    /// Does this step change anything (as opposed to waiting or writing a local file)?
    pub fn mutates_cluster(&self) -> bool {
        !matches!(
            self,
            Step::WaitEtcdHealthy { .. } | Step::WaitApi { .. } | Step::WriteKubeconfig { .. }
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateFirewall {
                name,
                kind: FirewallKind::Https,
            } => write!(f, "create firewall rule {name} (tcp:443)"),
            Step::CreateFirewall {
                name,
                kind: FirewallKind::Etcd,
            } => write!(f, "create firewall rule {name} (tcp:2380,2381)"),
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
                via: ApiVia::InternalIp,
            } => {
                write!(
                    f,
                    "wait until {replica}'s API answers on its internal IP (TLS verified)"
                )
            }
            Step::WriteKubeconfig { path } => write!(f, "write kubeconfig {path}"),
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
                    "create forwarding rule {name} in {region} on the static IP (tcp:443)"
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
        out
    }
}

/// The one-line refusal that points at the command that finishes an interrupted operation.
fn finish_interrupted_first(intent: &Intent) -> Refusal {
    Refusal::new(match intent {
        Intent::FirstMaster { zone } => {
            format!("an interrupted first up in {zone} is pending; finish it with KUBE_GCE_ZONE={zone} kube-ha up")
        }
        Intent::AddReplica { replica, zone, .. } => format!(
            "an interrupted add of replica {replica} in {zone} is pending; finish it with \
             KUBE_GCE_ZONE={zone} KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up"
        ),
        Intent::RemoveReplica { replica, .. } => format!(
            "an interrupted removal of replica {replica} is pending; finish it with \
             KUBE_DELETE_NODES=false KUBE_REPLICA_NAME={replica} kube-ha down"
        ),
        Intent::Teardown => "an interrupted teardown is pending; finish it with kube-ha down".to_string(),
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

/// Refuse while another operation holds the lock (all planners start here).
fn refuse_if_locked(s: &Snapshot, names: &crate::names::ClusterNames) -> Result<(), Refusal> {
    if let Some(r) = s.lock.live() {
        let until = time::OffsetDateTime::from_unix_timestamp(i64::try_from(r.expires).unwrap_or(i64::MAX))
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| format!("unix time {}", r.expires));
        return Err(Refusal::new(format!(
            "another kube-ha operation is running ({}, held by {} until {until}); wait for it to finish, or if \
             that process is gone for good, remove the lock with `gcloud compute project-info remove-metadata \
             --keys={}` and rerun",
            r.intent,
            r.owner,
            names.lock_key()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
