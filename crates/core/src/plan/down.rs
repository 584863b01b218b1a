//! Planning `down`: removing one replica (SPEC §4.3, §4.4) and tearing down a one-replica
//! cluster (§4.5).

use crate::error::Refusal;
use crate::names::{ClusterNames, EtcdCluster};

use super::lock::Intent;
use super::quorum::{MemberView, can_remove};
use super::snapshot::{ReplicaVm, Snapshot};
use super::up::{demote_lb, removal_steps};
use super::{Plan, Step, finish_interrupted_first, refuse_if_locked};

/// Input of [`plan_remove`].
#[derive(Clone, Debug)]
pub struct RemoveRequest {
    /// Resource names.
    pub names: ClusterNames,
    /// `KUBE_GCE_ZONE`.
    pub zone: String,
    /// Its region.
    pub region: String,
    /// `KUBE_REPLICA_NAME`.
    pub replica_name: Option<String>,
}

/// Input of [`plan_teardown`].
#[derive(Clone, Debug)]
pub struct TeardownRequest {
    /// Resource names.
    pub names: ClusterNames,
    /// Region to use when the cluster's own cannot be told.
    pub region: String,
}

fn replica_list(s: &Snapshot) -> String {
    if s.replicas.is_empty() {
        return "none".into();
    }
    s.replicas
        .iter()
        .map(|r| format!("{} in {}", r.name, r.zone))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pick the victim (SPEC §4.3): `KUBE_REPLICA_NAME`, else the oldest replica in the zone.
/// Returns its name and zone (when known).
fn pick_target(s: &Snapshot, req: &RemoveRequest) -> Result<(String, Option<String>), Refusal> {
    let master = req.names.master_name();
    let Some(name) = &req.replica_name else {
        return s
            .replicas
            .iter()
            .find(|r| r.zone == req.zone)
            .map(|r| (r.name.clone(), Some(r.zone.clone())))
            .ok_or_else(|| {
                Refusal::new(format!(
                    "cluster {master} has no replica in {} (replicas: {}); set KUBE_GCE_ZONE or KUBE_REPLICA_NAME",
                    req.zone,
                    replica_list(s)
                ))
            });
    };
    if let Some(vm) = s.replica(name) {
        if vm.zone != req.zone {
            return Err(Refusal::new(format!(
                "replica {name} is in {}, not {}; set KUBE_GCE_ZONE={}",
                vm.zone, req.zone, vm.zone
            )));
        }
        return Ok((name.clone(), Some(vm.zone.clone())));
    }
    // No VM (deleted by hand, or an add that never got that far): known by what is left of it.
    let disk = s.data_disk(&req.names.data_disk(name));
    let known = disk.is_some()
        || s.internal_ips.contains_key(name)
        || EtcdCluster::ALL.iter().any(|c| s.member_of(*c, name).is_some());
    if !known {
        return Err(Refusal::new(format!(
            "cluster {master} has no replica named {name} (replicas: {}); check KUBE_REPLICA_NAME",
            replica_list(s)
        )));
    }
    if let Some(d) = disk
        && d.zone != req.zone
    {
        return Err(Refusal::new(format!(
            "replica {name} was in {}, not {}; set KUBE_GCE_ZONE={}",
            d.zone, req.zone, d.zone
        )));
    }
    Ok((name.clone(), disk.map(|d| d.zone.clone())))
}

/// Plan removing one replica, or finishing an interrupted removal.
pub fn plan_remove(s: &Snapshot, req: &RemoveRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    let (target, zone, resumes) = match s.lock.interrupted() {
        Some(intent @ Intent::RemoveReplica { replica, zone }) => {
            let same = match &req.replica_name {
                Some(n) => n == replica,
                None => zone.as_deref().is_none_or(|z| z == req.zone),
            };
            if !same {
                return Err(finish_interrupted_first(intent));
            }
            (replica.clone(), zone.clone(), true)
        }
        Some(Intent::AddReplica { replica, zone, .. }) if req.replica_name.as_deref() != Some(replica) => {
            return Err(Refusal::new(format!(
                "an interrupted add of replica {replica} is pending; finish it with KUBE_GCE_ZONE={zone} \
                 KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up, or undo it with KUBE_DELETE_NODES=false \
                 KUBE_GCE_ZONE={zone} KUBE_REPLICA_NAME={replica} kube-ha down"
            )));
        }
        Some(teardown @ Intent::Teardown) => return Err(finish_interrupted_first(teardown)),
        _ => {
            let (t, z) = pick_target(s, req)?;
            (t, z, false)
        }
    };

    let remaining: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.name != target).collect();
    if remaining.is_empty() && !resumes {
        return Err(Refusal::new(format!(
            "{target} is the last replica; to tear the cluster down run kube-ha down with KUBE_DELETE_NODES=true (or unset)"
        )));
    }
    for cluster in EtcdCluster::ALL {
        let Some(obs) = s.etcd.get(&cluster) else { continue };
        let Some(members) = &obs.members else {
            if remaining.is_empty() {
                continue;
            }
            return Err(Refusal::new(format!(
                "cannot read the etcd {cluster} member list ({}); quorum may be lost: see kube-ha status",
                obs.error.clone().unwrap_or_else(|| "no replica answered".into())
            )));
        };
        let Some(victim) = s.member_of(cluster, &target) else {
            continue;
        };
        let views: Vec<MemberView> = members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                healthy: obs.is_healthy(m.id),
                learner: m.is_learner,
            })
            .collect();
        if let Err(e) = can_remove(&views, victim.id) {
            return Err(Refusal::new(format!("cannot remove {target} from etcd {cluster}: {e}")));
        }
    }

    let region = s.cluster_region().unwrap_or_else(|| req.region.clone());
    let mut steps = removal_steps(s, &req.names, &region, &target, true);
    if let [last] = remaining.as_slice() {
        steps.extend(demote_lb(s, &req.names, &region, last));
    }
    let mut notes = Vec::new();
    if s.replica(&target).is_none() {
        notes.push(format!("{target} has no VM; cleaning up what is left of it"));
    }
    Ok(Plan {
        intent: Intent::RemoveReplica { replica: target, zone },
        steps,
        notes,
        resumes,
    })
}

/// Plan tearing down the cluster: only when at most one replica is left (SPEC §4.5).
pub fn plan_teardown(s: &Snapshot, req: &TeardownRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    if s.replicas.len() > 1 {
        return Err(Refusal::new(format!(
            "{} replicas remain ({}); remove them with KUBE_DELETE_NODES=false kube-ha down first",
            s.replicas.len(),
            replica_list(s)
        )));
    }
    let names = &req.names;
    let region = s.cluster_region().unwrap_or_else(|| req.region.clone());
    let mut steps = Vec::new();
    if s.forwarding_rule.is_some() {
        steps.push(Step::DeleteForwardingRule {
            name: names.forwarding_rule().to_string(),
            region: region.clone(),
        });
    }
    if s.target_pool.is_some() {
        steps.push(Step::DeleteTargetPool {
            name: names.target_pool().to_string(),
            region: region.clone(),
        });
    }
    for vm in &s.replicas {
        steps.push(Step::DeleteVm {
            replica: vm.name.clone(),
            zone: vm.zone.clone(),
        });
    }
    for d in &s.disks {
        // A boot disk goes with its VM (autoDelete); data disks and leftovers need their own step.
        let boot_of_vm = s.replica(&d.name).is_some();
        if !boot_of_vm {
            steps.push(Step::DeleteDisk {
                name: d.name.clone(),
                zone: d.zone.clone(),
            });
        }
    }
    for name in s.internal_ips.keys() {
        steps.push(Step::ReleaseAddress {
            name: names.internal_ip(name),
            region: region.clone(),
        });
    }
    for fw in &s.firewalls {
        steps.push(Step::DeleteFirewall { name: fw.clone() });
    }
    if s.static_ip.is_some() {
        steps.push(Step::ReleaseAddress {
            name: names.static_ip(),
            region: region.clone(),
        });
    }
    let notes = vec!["worker nodes are out of scope for kube-ha: there are none to delete".to_string()];
    let resumes = matches!(s.lock.interrupted(), Some(Intent::Teardown));
    Ok(Plan {
        intent: Intent::Teardown,
        steps,
        notes,
        resumes,
    })
}
