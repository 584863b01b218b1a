//! Planning `down`: removing one replica (SPEC §4.3, §4.4) and tearing down a one-replica
//! cluster (§4.5).

use crate::error::Refusal;
use crate::names::{ClusterNames, EtcdCluster};

use super::commands::Commands;
use super::lock::Intent;
use super::quorum::{MemberView, can_remove};
use super::snapshot::{ReplicaVm, Snapshot};
use super::ssh::refuse_without_ssh;
use super::up::{demote_lb, etcd_unread, even_size_warning, removal_steps, without_address};
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
    /// `KUBE_HA_SSH_SOURCE_RANGES` (for the fix when no rule admits tcp:22).
    pub ssh_source_ranges: Vec<String>,
}

/// Input of [`plan_teardown`].
#[derive(Clone, Debug)]
pub struct TeardownRequest {
    /// Resource names.
    pub names: ClusterNames,
    /// `KUBE_DELETE_NODES` was set (else the teardown is kube-down's default, and says so).
    pub delete_nodes_set: bool,
    /// The kubeconfig file this cluster's entries are removed from.
    pub kubeconfig: String,
    /// The name of those entries.
    pub kubeconfig_context: String,
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

/// The victim (SPEC §4.3): its name, its zone when known, and why it was picked when the zone
/// alone chose it among several.
struct Target {
    name: String,
    zone: Option<String>,
    why: Option<String>,
}

/// Pick the victim: `KUBE_REPLICA_NAME`, else the oldest replica in the zone.
fn pick_target(s: &Snapshot, req: &RemoveRequest) -> Result<Target, Refusal> {
    let master = req.names.master_name();
    let cmds = Commands::for_cluster(&req.names);
    let Some(name) = &req.replica_name else {
        let here: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.zone == req.zone).collect();
        let Some(oldest) = here.first() else {
            let hint = match s.replicas.first() {
                Some(r) => format!(
                    "; to remove {}, run {}",
                    r.name,
                    cmds.remove_replica(&r.name, Some(&r.zone))
                ),
                None => String::new(),
            };
            return Err(Refusal::new(format!(
                "cluster {master} has no replica in {} (replicas: {}){hint}",
                req.zone,
                replica_list(s)
            )));
        };
        let why = (here.len() > 1).then(|| {
            let others: Vec<String> = here[1..]
                .iter()
                .map(|r| cmds.remove_replica(&r.name, Some(&r.zone)).to_string())
                .collect();
            format!(
                "{} has {} replicas ({}): removing the oldest, {} (created {}); to remove another instead, run {}",
                req.zone,
                here.len(),
                here.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
                oldest.name,
                oldest.created,
                others.join(" or ")
            )
        });
        return Ok(Target {
            name: oldest.name.clone(),
            zone: Some(oldest.zone.clone()),
            why,
        });
    };
    if let Some(vm) = s.replica(name) {
        if vm.zone != req.zone {
            return Err(Refusal::new(format!(
                "replica {name} is in {}, not {}; remove it with {}",
                vm.zone,
                req.zone,
                cmds.remove_replica(name, Some(&vm.zone))
            )));
        }
        return Ok(Target {
            name: name.clone(),
            zone: Some(vm.zone.clone()),
            why: None,
        });
    }
    // No VM (deleted by hand, or an add that never got that far): known by what is left of it.
    let disk = s.data_disk(&req.names.data_disk(name));
    let known = disk.is_some()
        || s.etcd_pending
        || s.internal_ips.contains_key(name)
        || EtcdCluster::ALL.iter().any(|c| s.member_of(*c, name).is_some());
    if !known {
        return Err(Refusal::new(format!(
            "cluster {master} has no replica named {name} (replicas: {}); check KUBE_REPLICA_NAME (kube-ha status lists them)",
            replica_list(s)
        )));
    }
    if let Some(d) = disk
        && d.zone != req.zone
    {
        return Err(Refusal::new(format!(
            "replica {name} was in {}, not {}; remove it with {}",
            d.zone,
            req.zone,
            cmds.remove_replica(name, Some(&d.zone))
        )));
    }
    Ok(Target {
        name: name.clone(),
        zone: disk.map(|d| d.zone.clone()),
        why: None,
    })
}

/// Plan removing one replica, or finishing an interrupted removal.
pub fn plan_remove(s: &Snapshot, req: &RemoveRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    let cmds = Commands::for_cluster(&req.names);
    let (target, zone, resumes, why) = match s.lock.interrupted() {
        Some(intent @ Intent::RemoveReplica { replica, zone }) => {
            let same = match &req.replica_name {
                Some(n) => n == replica,
                None => zone.as_deref().is_none_or(|z| z == req.zone),
            };
            if !same {
                return Err(finish_interrupted_first(&req.names, intent));
            }
            (replica.clone(), zone.clone(), true, None)
        }
        Some(Intent::AddReplica { replica, zone, .. }) if req.replica_name.as_deref() != Some(replica) => {
            return Err(Refusal::new(format!(
                "an interrupted add of replica {replica} is pending; finish it with {}, or undo it with {}",
                cmds.add_replica(zone),
                cmds.remove_replica(replica, Some(zone))
            )));
        }
        Some(teardown @ Intent::Teardown) => return Err(finish_interrupted_first(&req.names, teardown)),
        _ => {
            let t = pick_target(s, req)?;
            (t.name, t.zone, false, t.why)
        }
    };

    let remaining: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.name != target).collect();
    if remaining.is_empty() && !resumes {
        return Err(Refusal::new(format!(
            "{target} is the last replica; to tear the cluster down, run {}",
            cmds.teardown()
        )));
    }
    if !remaining.is_empty() {
        refuse_without_ssh(s, &req.names, &req.ssh_source_ranges)?;
    }
    let region = s.cluster_region().unwrap_or_else(|| req.region.clone());
    // A removal interrupted while the static IP went back to the last replica (its member is gone
    // already) leaves that replica without an external IP: give it back first, then plan the rest.
    let unaddressed = without_address(s, remaining.iter().copied());
    if resumes
        && !unaddressed.is_empty()
        && etcd_unread(s)
        && let [last] = remaining.as_slice()
    {
        let steps = demote_lb(s, &req.names, &region, last);
        if !steps.is_empty() {
            return Ok(Plan {
                intent: Intent::RemoveReplica { replica: target, zone },
                steps,
                notes: vec![format!(
                    "{} has no external IP to reach etcd over SSH (the interrupted removal was giving it the static \
                     IP): finishing that first, then planning the rest",
                    unaddressed.join(", ")
                )],
                resumes,
                replan: true,
            });
        }
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

    let mut steps = removal_steps(s, &req.names, &target, true);
    if let [last] = remaining.as_slice() {
        steps.extend(demote_lb(s, &req.names, &region, last));
    }
    let mut notes = Vec::new();
    notes.extend(why);
    if s.replica(&target).is_none() {
        notes.push(format!("{target} has no VM; cleaning up what is left of it"));
    }
    let before = s.replicas.len();
    notes.extend(even_size_warning(remaining.len(), before));
    Ok(Plan {
        intent: Intent::RemoveReplica { replica: target, zone },
        steps,
        notes,
        resumes,
        replan: false,
    })
}

/// Plan tearing down the cluster: only when at most one replica is left (SPEC §4.5). The plan's
/// first note lists everything it deletes, so a teardown never happens unannounced (kube-down's
/// bare `down` means teardown, and legacy automation relies on it).
pub fn plan_teardown(s: &Snapshot, req: &TeardownRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    let cmds = Commands::for_cluster(&req.names);
    if s.replicas.len() > 1 {
        let removals: Vec<String> = s
            .replicas
            .iter()
            .skip(1)
            .map(|r| cmds.remove_replica(&r.name, Some(&r.zone)).to_string())
            .collect();
        return Err(Refusal::new(format!(
            "{} replicas remain ({}); remove all but one first: {}",
            s.replicas.len(),
            replica_list(s),
            removals.join(", then ")
        )));
    }
    let names = &req.names;
    // Regional resources go in their own region (addresses are found across regions); the pool
    // and the rule in the cluster's, which its resources tell.
    let region = s.cluster_region();
    let mut steps = Vec::new();
    let mut deletes = Vec::new();
    if s.forwarding_rule.is_some()
        && let Some(region) = &region
    {
        steps.push(Step::DeleteForwardingRule {
            name: names.forwarding_rule().to_string(),
            region: region.clone(),
        });
        deletes.push(format!("forwarding rule {}", names.forwarding_rule()));
    }
    if s.target_pool.is_some()
        && let Some(region) = &region
    {
        steps.push(Step::DeleteTargetPool {
            name: names.target_pool().to_string(),
            region: region.clone(),
        });
        deletes.push(format!("target pool {}", names.target_pool()));
    }
    for vm in &s.replicas {
        steps.push(Step::DeleteVm {
            replica: vm.name.clone(),
            zone: vm.zone.clone(),
        });
        deletes.push(format!("VM {} ({}) with its boot disk", vm.name, vm.zone));
    }
    for d in &s.disks {
        // A boot disk goes with its VM (autoDelete); data disks and leftovers need their own step.
        let boot_of_vm = s.replica(&d.name).is_some();
        if !boot_of_vm {
            steps.push(Step::DeleteDisk {
                name: d.name.clone(),
                zone: d.zone.clone(),
            });
            let what = if names.replica_of_data_disk(&d.name).is_some() {
                "data disk (etcd's data)"
            } else {
                "disk"
            };
            deletes.push(format!("{what} {} ({})", d.name, d.zone));
        }
    }
    for a in s.internal_ips.values() {
        steps.push(Step::ReleaseAddress {
            name: a.name.clone(),
            region: a.region.clone(),
        });
        deletes.push(format!("internal IP {} ({})", a.name, a.ip));
    }
    for fw in &s.firewalls {
        steps.push(Step::DeleteFirewall { name: fw.clone() });
        deletes.push(format!("firewall rule {fw}"));
    }
    if let Some(a) = &s.static_ip {
        steps.push(Step::ReleaseAddress {
            name: a.name.clone(),
            region: a.region.clone(),
        });
        deletes.push(format!("static IP {} ({})", a.name, a.ip));
    }
    if s.kubeconfig_has_entries {
        steps.push(Step::RemoveKubeconfigEntries {
            path: req.kubeconfig.clone(),
            context: req.kubeconfig_context.clone(),
        });
        deletes.push(format!(
            "kubeconfig entries {} in {}",
            req.kubeconfig_context, req.kubeconfig
        ));
    }
    let mut notes = Vec::new();
    if !deletes.is_empty() {
        notes.push(format!(
            "warning: tearing cluster {} down deletes: {}",
            names.master_name(),
            deletes.join(", ")
        ));
        if !req.delete_nodes_set {
            notes.push(format!(
                "KUBE_DELETE_NODES is unset, so down is a teardown (kube-down's meaning); to remove one replica \
                 and keep the cluster, set KUBE_DELETE_NODES=false (e.g. {})",
                match s.replicas.first() {
                    Some(r) => cmds.remove_replica(&r.name, Some(&r.zone)).to_string(),
                    None => cmds.status().to_string(),
                }
            ));
        }
    }
    notes.push("worker nodes are out of scope for kube-ha: there are none to delete".to_string());
    let resumes = matches!(s.lock.interrupted(), Some(Intent::Teardown));
    Ok(Plan {
        intent: Intent::Teardown,
        steps,
        notes,
        resumes,
        replan: false,
    })
}
