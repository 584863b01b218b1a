//! Planning `up`: the first master (SPEC §4.1), adding a replica (§4.2) with its preflight, and
//! the undo of an add whose VM never became healthy.

use crate::config::{MasterOverrides, MasterSettings};
use crate::error::Refusal;
use crate::names::{ClusterNames, EtcdCluster};

use super::commands::Commands;
use super::lock::Intent;
use super::snapshot::{ReplicaVm, Snapshot, SshReach};
use super::ssh::{refuse_without_ssh, ssh_admitted_by};
use super::{ApiVia, ExternalIp, FirewallKind, Plan, Step, finish_interrupted_first, refuse_if_locked};

/// Input of [`plan_first`].
#[derive(Clone, Debug)]
pub struct FirstRequest {
    /// Resource names.
    pub names: ClusterNames,
    /// `KUBE_GCE_ZONE`.
    pub zone: String,
    /// Its region.
    pub region: String,
    /// The first master's VM settings.
    pub settings: MasterSettings,
    /// Where the kubeconfig goes.
    pub kubeconfig: String,
    /// The name of this cluster's entries in it.
    pub kubeconfig_context: String,
}

/// Input of [`plan_add`].
#[derive(Clone, Debug)]
pub struct AddRequest {
    /// Resource names.
    pub names: ClusterNames,
    /// `KUBE_GCE_ZONE`.
    pub zone: String,
    /// Its region.
    pub region: String,
    /// Explicitly set VM settings (the rest is copied from the existing master).
    pub overrides: MasterOverrides,
    /// Settings to fall back on when the existing master's cannot be read.
    pub fallback_settings: MasterSettings,
    /// `KUBE_HA_ALLOW_SAME_ZONE`: a second replica in a zone while another zone has none.
    pub allow_same_zone: bool,
    /// `KUBE_HA_SSH_SOURCE_RANGES` (for the fix when no rule admits tcp:22).
    pub ssh_source_ranges: Vec<String>,
}

/// The zone a replica is in: its VM's, else its data disk's (a replica whose VM was deleted).
pub(super) fn replica_zone(s: &Snapshot, names: &ClusterNames, replica: &str) -> Option<String> {
    s.replica(replica)
        .map(|r| r.zone.clone())
        .or_else(|| s.data_disk(&names.data_disk(replica)).map(|d| d.zone.clone()))
}

/// The command that removes `replica` (for messages), with its zone so it is not refused again.
fn remove_command(s: &Snapshot, names: &ClusterNames, replica: &str) -> String {
    Commands::for_cluster(names)
        .remove_replica(replica, replica_zone(s, names, replica).as_deref())
        .to_string()
}

/// Plan the first master, or finish an interrupted first `up`.
pub fn plan_first(s: &Snapshot, req: &FirstRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    let master = req.names.master_name();
    let cmds = Commands::for_cluster(&req.names);
    let mut notes = Vec::new();
    if let Some(other @ (Intent::AddReplica { .. } | Intent::RemoveReplica { .. } | Intent::Teardown)) =
        s.lock.interrupted()
    {
        return Err(finish_interrupted_first(&req.names, other));
    }
    let others: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.name != master).collect();
    if !others.is_empty() || s.replicas.len() > 1 {
        return Err(Refusal::new(format!(
            "cluster {master} already has {} replica(s) ({}); to add one, run {}",
            s.replicas.len(),
            s.replicas
                .iter()
                .map(|r| format!("{} in {}", r.name, r.zone))
                .collect::<Vec<_>>()
                .join(", "),
            cmds.add_replica(&req.zone)
        )));
    }
    let vm = s.replica(master);
    if let Some(vm) = vm
        && vm.zone != req.zone
    {
        return Err(Refusal::new(format!(
            "cluster {master} already exists in {}; to add a replica in {}, run {}",
            vm.zone,
            req.zone,
            cmds.add_replica(&req.zone)
        )));
    }
    let disk_name = req.names.data_disk(master);
    if let Some(d) = s.data_disk(&disk_name)
        && d.zone != req.zone
    {
        return Err(Refusal::new(format!(
            "an interrupted first up left disk {disk_name} in {}; finish it with {}, or clean up with {}",
            d.zone,
            cmds.first_up(&d.zone),
            cmds.teardown()
        )));
    }
    if let Some(region) = s.cluster_region()
        && region != req.region
    {
        return Err(Refusal::new(format!(
            "cluster {master} has resources in {region}; set KUBE_GCE_ZONE to a zone of {region}{}",
            zone_list(s, &region)
        )));
    }
    if !s.zone_known {
        return Err(unknown_zone(s, &req.zone, &req.region));
    }
    if let Some(why) = &s.kubeconfig_error {
        return Err(Refusal::new(format!(
            "cannot merge this cluster into the kubeconfig {}: {why}; fix that file, or set KUBECONFIG to another one",
            req.kubeconfig
        )));
    }

    let mut steps = Vec::new();
    for (name, kind) in [
        (req.names.firewall_https(), FirewallKind::Https),
        (req.names.firewall_etcd(), FirewallKind::Etcd),
    ] {
        if !s.firewalls.contains(&name) {
            steps.push(Step::CreateFirewall { name, kind });
        }
    }
    // kube-ha reaches etcd over SSH: the cluster's own tcp:22 rule, unless one admits it already
    // (kube-up's `<network>-default-ssh` does).
    let ssh_rule = req.names.firewall_ssh();
    if !s.firewalls.contains(&ssh_rule)
        && ssh_admitted_by(&s.firewall_rules, s.masters_network.as_deref(), req.names.tag()).is_none()
    {
        steps.push(Step::CreateFirewall {
            name: ssh_rule,
            kind: FirewallKind::Ssh,
        });
    }
    if s.static_ip.is_none() {
        steps.push(Step::ReserveStaticIp {
            name: req.names.static_ip(),
            region: req.region.clone(),
        });
    }
    if !s.internal_ips.contains_key(master) {
        steps.push(Step::ReserveInternalIp {
            name: req.names.internal_ip(master),
            region: req.region.clone(),
            replica: master.to_string(),
        });
    }
    if vm.is_none() {
        if s.data_disk(&disk_name).is_none() {
            steps.push(Step::CreateDataDisk {
                name: disk_name,
                zone: req.zone.clone(),
                disk_type: req.settings.disk_type.clone(),
                size_gb: req.settings.disk_size_gb,
            });
        }
        steps.push(Step::CreateReplicaVm {
            replica: master.to_string(),
            zone: req.zone.clone(),
            first: true,
            settings: req.settings.clone(),
        });
    }
    let healthy = vm.is_some()
        && EtcdCluster::ALL.iter().all(|c| {
            s.member_of(*c, master)
                .is_some_and(|m| s.etcd.get(c).is_some_and(|o| o.is_healthy(m.id)))
        });
    if !healthy || !steps.is_empty() {
        steps.push(Step::WaitEtcdHealthy {
            replica: master.to_string(),
        });
        steps.push(Step::WaitApi {
            replica: master.to_string(),
            via: ApiVia::StaticIp,
        });
    }
    if !s.kubeconfig_ok || !steps.is_empty() {
        steps.push(Step::WriteKubeconfig {
            path: req.kubeconfig.clone(),
            context: req.kubeconfig_context.clone(),
        });
    }
    let resumes = !steps.is_empty() && (vm.is_some() || s.static_ip.is_some() || !s.firewalls.is_empty());
    if steps.is_empty() {
        notes.push(format!("cluster {master} is up in {} with one replica", req.zone));
    }
    Ok(Plan {
        intent: Intent::FirstMaster { zone: req.zone.clone() },
        steps,
        notes,
        resumes,
        replan: false,
    })
}

/// "; its zones: a, b, c" (from the observed catalogue), or nothing when none are known.
fn zone_list(s: &Snapshot, region: &str) -> String {
    let zones = s.zones_of(region);
    if zones.is_empty() {
        String::new()
    } else {
        format!(" ({})", zones.join(", "))
    }
}

fn unknown_zone(s: &Snapshot, zone: &str, region: &str) -> Refusal {
    let known = s.zones_of(region);
    Refusal::new(if known.is_empty() {
        format!("zone {zone} does not exist in this project; set KUBE_GCE_ZONE to a zone of the project")
    } else {
        format!(
            "zone {zone} does not exist in this project; set KUBE_GCE_ZONE to a zone of {region}: {}",
            known.join(", ")
        )
    })
}

/// Everything that must hold before a replica is added (SPEC §4.2), except for `resuming`, the
/// replica an interrupted add was creating.
fn preflight_add(s: &Snapshot, req: &AddRequest, resuming: Option<&str>) -> Result<Vec<String>, Refusal> {
    let master = req.names.master_name();
    let cmds = Commands::for_cluster(&req.names);
    let others: Vec<&ReplicaVm> = s
        .replicas
        .iter()
        .filter(|r| Some(r.name.as_str()) != resuming)
        .collect();
    if others.is_empty() {
        return Err(Refusal::new(format!(
            "cluster {master} has no replica in this project; create it with {} (KUBE_REPLICATE_EXISTING_MASTER=true adds to an existing cluster)",
            cmds.first_up(&req.zone)
        )));
    }
    if let Some(region) = s.cluster_region()
        && region != req.region
    {
        return Err(Refusal::new(format!(
            "zone {} is in region {}, but cluster {master} is in {region}; pick a zone of {region}{}",
            req.zone,
            req.region,
            zone_list(s, &region)
        )));
    }
    if !s.zone_known {
        return Err(unknown_zone(s, &req.zone, &req.region));
    }
    refuse_same_zone(s, req, &others)?;
    refuse_without_ssh(s, &req.names, &req.ssh_source_ranges)?;
    if s.etcd_pending {
        return Ok(Vec::new());
    }
    for cluster in EtcdCluster::ALL {
        let (obs, members) = match s.etcd.get(&cluster) {
            Some(obs) if obs.members.is_some() => (obs, obs.members.as_deref().unwrap_or_default()),
            other => {
                let why = other
                    .and_then(|o| o.error.clone())
                    .unwrap_or_else(|| "no replica answered".into());
                return Err(Refusal::new(format!(
                    "cannot read the etcd {cluster} member list ({why}); see kube-ha status"
                )));
            }
        };
        for m in members {
            let owner = s.replica_of_member(cluster, m);
            if owner.is_some() && owner.as_deref() == resuming {
                continue;
            }
            let label = if m.name.is_empty() {
                format!("{} (peer {})", m.id, m.peer_urls.join(","))
            } else {
                m.name.clone()
            };
            let fix = match &owner {
                Some(r) => remove_command(s, &req.names, r),
                None => format!("etcdctl member remove {} on a healthy master", m.id),
            };
            if m.name.is_empty() || m.is_learner {
                return Err(Refusal::new(format!(
                    "etcd {cluster} has a {} member {label}: an add is in flight or was interrupted; remove it with {fix}",
                    if m.is_learner { "learner" } else { "never-started" }
                )));
            }
            match &owner {
                Some(r) if s.replica(r).is_some() => {}
                _ => {
                    return Err(Refusal::new(format!(
                        "etcd {cluster} member {label} has no VM (an orphan); remove it with {fix}"
                    )));
                }
            }
            if !obs.is_healthy(m.id) {
                let why = obs
                    .health
                    .get(&m.id)
                    .and_then(|h| h.error.clone())
                    .unwrap_or_else(|| "no answer".into());
                let then = owner
                    .as_deref()
                    .and_then(|r| replica_zone(s, &req.names, r))
                    .map(|z| format!(", then {}", cmds.add_replica(&z)))
                    .unwrap_or_default();
                return Err(Refusal::new(format!(
                    "etcd {cluster} member {label} is not healthy ({why}); replace it first: {fix}{then}"
                )));
            }
        }
        for r in &others {
            if s.member_of(cluster, &r.name).is_none() {
                return Err(Refusal::new(format!(
                    "replica {} has no etcd {cluster} member; remove it with {}",
                    r.name,
                    remove_command(s, &req.names, &r.name)
                )));
            }
        }
    }
    let mut notes = Vec::new();
    notes.extend(even_size_warning(others.len() + 1, others.len()));
    Ok(notes)
}

/// The warning for a change that leaves an even number of replicas (`from` → `to`): an etcd of
/// 2n members tolerates no more failures than one of 2n − 1.
pub(super) fn even_size_warning(to: usize, from: usize) -> Option<String> {
    (to >= 2 && to.is_multiple_of(2)).then(|| {
        let tolerated = (to - 1) / 2;
        let next = if to > from {
            "add one more soon"
        } else {
            "add one back or remove one more soon"
        };
        format!(
            "warning: {to} replicas are an even number, and {to} replicas are less available than {}: \
             etcd with {to} members tolerates {tolerated} failure(s), as with {}; {next}",
            to - 1,
            to - 1
        )
    })
}

/// Spread over zones (kops and Cluster API do the same): a second replica in a zone while another
/// zone of the region has none is refused unless `KUBE_HA_ALLOW_SAME_ZONE=true`. Once every zone
/// has one, zones are shared without asking (kops' `--master-count` beyond the zone count).
fn refuse_same_zone(s: &Snapshot, req: &AddRequest, others: &[&ReplicaVm]) -> Result<(), Refusal> {
    let here: Vec<&str> = others
        .iter()
        .filter(|r| r.zone == req.zone)
        .map(|r| r.name.as_str())
        .collect();
    if here.is_empty() || req.allow_same_zone {
        return Ok(());
    }
    let empty: Vec<&str> = s
        .zones_of(&req.region)
        .into_iter()
        .filter(|z| !others.iter().any(|r| r.zone == *z))
        .collect();
    let Some(free) = empty.first() else { return Ok(()) };
    let cmds = Commands::for_cluster(&req.names);
    Err(Refusal::new(format!(
        "zone {} already has replica {}, while {} of {} {} none: a zone outage would take both; add it there with {}, \
         or to put two replicas in {} anyway, run {}",
        req.zone,
        here.join(", "),
        empty.join(", "),
        req.region,
        if empty.len() == 1 { "has" } else { "have" },
        cmds.add_replica(free),
        req.zone,
        cmds.add_replica_same_zone(&req.zone)
    )))
}

/// Steps that put the static IP on a load balancer in front of `first` (SPEC §4.2 step 1): the
/// pool exists with `first` before the IP moves, so the outage is only detach → forwarding rule.
fn promote_to_lb(s: &Snapshot, names: &ClusterNames, region: &str, existing: &[&ReplicaVm]) -> Vec<Step> {
    let mut steps = Vec::new();
    let Some(first) = existing.first() else { return steps };
    let in_pool = |r: &ReplicaVm| s.target_pool.as_ref().is_some_and(|p| p.instances.contains(&r.name));
    match &s.target_pool {
        None => steps.push(Step::CreateTargetPool {
            name: names.target_pool().to_string(),
            region: region.to_string(),
            replica: first.name.clone(),
            zone: first.zone.clone(),
        }),
        Some(_) if !in_pool(first) => steps.push(Step::AddToPool {
            replica: first.name.clone(),
            zone: first.zone.clone(),
        }),
        Some(_) => {}
    }
    for r in existing.iter().skip(1).filter(|r| !in_pool(r)) {
        steps.push(Step::AddToPool {
            replica: r.name.clone(),
            zone: r.zone.clone(),
        });
    }
    let static_ip = s.static_ip.as_ref().map(|a| a.ip);
    let holder = existing
        .iter()
        .find(|r| r.external_ip.is_some() && r.external_ip == static_ip);
    if let Some(h) = holder {
        steps.push(Step::DetachExternalIp {
            replica: h.name.clone(),
            zone: h.zone.clone(),
            access_config: h
                .access_config
                .clone()
                .unwrap_or_else(|| crate::gce::bodies::ACCESS_CONFIG.into()),
        });
    }
    if s.forwarding_rule.is_none() {
        steps.push(Step::CreateForwardingRule {
            name: names.forwarding_rule().to_string(),
            region: region.to_string(),
        });
    }
    for r in existing {
        if r.external_ip.is_none() || holder.is_some_and(|h| h.name == r.name) {
            steps.push(Step::AttachExternalIp {
                replica: r.name.clone(),
                zone: r.zone.clone(),
                ip: ExternalIp::Ephemeral,
            });
        }
    }
    steps
}

/// Steps that take the load balancer away and give the static IP back to `last` (SPEC §4.3).
pub(super) fn demote_lb(s: &Snapshot, names: &ClusterNames, region: &str, last: &ReplicaVm) -> Vec<Step> {
    let mut steps = Vec::new();
    let static_ip = s.static_ip.as_ref().map(|a| a.ip);
    let has_static = last.external_ip.is_some() && last.external_ip == static_ip;
    if !has_static && let (Some(_), Some(ac)) = (last.external_ip, &last.access_config) {
        steps.push(Step::DetachExternalIp {
            replica: last.name.clone(),
            zone: last.zone.clone(),
            access_config: ac.clone(),
        });
    }
    if s.forwarding_rule.is_some() {
        steps.push(Step::DeleteForwardingRule {
            name: names.forwarding_rule().to_string(),
            region: region.to_string(),
        });
    }
    if !has_static {
        steps.push(Step::AttachExternalIp {
            replica: last.name.clone(),
            zone: last.zone.clone(),
            ip: ExternalIp::Static,
        });
    }
    if s.target_pool.is_some() {
        steps.push(Step::DeleteTargetPool {
            name: names.target_pool().to_string(),
            region: region.to_string(),
        });
    }
    steps
}

/// Plan adding one replica in `req.zone`, or finishing an interrupted add.
pub fn plan_add(s: &Snapshot, req: &AddRequest) -> Result<Plan, Refusal> {
    refuse_if_locked(s, &req.names)?;
    let resuming = match s.lock.interrupted() {
        Some(Intent::AddReplica {
            replica,
            zone,
            rolling_back,
        }) if *zone == req.zone => {
            if *rolling_back {
                let mut plan = plan_rollback_add(s, &req.names, &req.region, replica, zone);
                plan.resumes = true;
                plan.notes.push(format!(
                    "finishing the rollback of replica {replica}, which never became healthy"
                ));
                return Ok(plan);
            }
            Some(replica.clone())
        }
        Some(other @ (Intent::AddReplica { .. } | Intent::RemoveReplica { .. } | Intent::Teardown)) => {
            return Err(finish_interrupted_first(&req.names, other));
        }
        Some(Intent::FirstMaster { .. }) | None => None,
    };
    if let Some(replica) = &resuming
        && let Some(plan) = reach_first_add(s, req, replica)?
    {
        return Ok(plan);
    }
    let mut notes = preflight_add(s, req, resuming.as_deref())?;
    let names = &req.names;
    let existing: Vec<&ReplicaVm> = s
        .replicas
        .iter()
        .filter(|r| Some(r.name.as_str()) != resuming.as_deref())
        .collect();

    let mut steps = Vec::new();
    // Planned whatever exists already: each part is made only when missing, and an add stopped
    // between the forwarding rule and the first replica's new external IP has both pool and
    // rule, yet still owes that IP.
    steps.extend(promote_to_lb(s, names, &req.region, &existing));

    let replica = match &resuming {
        Some(r) => r.clone(),
        None => pick_replica_name(s, names)?,
    };
    let settings = existing
        .iter()
        .find_map(|r| r.settings.clone())
        .map(|base| req.overrides.over(&base))
        .unwrap_or_else(|| {
            notes.push("could not read the existing master's settings; using the defaults".into());
            req.fallback_settings.clone()
        });

    if !s.internal_ips.contains_key(&replica) {
        steps.push(Step::ReserveInternalIp {
            name: names.internal_ip(&replica),
            region: req.region.clone(),
            replica: replica.clone(),
        });
    }
    for cluster in EtcdCluster::ALL {
        if s.member_of(cluster, &replica).is_none() {
            steps.push(Step::AddLearner {
                cluster,
                replica: replica.clone(),
            });
        }
    }
    let vm = s.replica(&replica);
    if vm.is_none() {
        let disk = names.data_disk(&replica);
        if s.data_disk(&disk).is_none() {
            steps.push(Step::CreateDataDisk {
                name: disk,
                zone: req.zone.clone(),
                disk_type: settings.disk_type.clone(),
                size_gb: settings.disk_size_gb,
            });
        }
        steps.push(Step::CreateReplicaVm {
            replica: replica.clone(),
            zone: req.zone.clone(),
            first: false,
            settings,
        });
    }
    for cluster in EtcdCluster::ALL {
        let voting = s
            .member_of(cluster, &replica)
            .is_some_and(|m| !m.is_learner && !m.name.is_empty());
        if !voting {
            steps.push(Step::PromoteLearner {
                cluster,
                replica: replica.clone(),
            });
        }
    }
    let in_pool = s.target_pool.as_ref().is_some_and(|p| p.instances.contains(&replica));
    if !in_pool {
        steps.push(Step::WaitApi {
            replica: replica.clone(),
            via: ApiVia::Loopback,
        });
        steps.push(Step::AddToPool {
            replica: replica.clone(),
            zone: req.zone.clone(),
        });
    }
    Ok(Plan {
        intent: Intent::AddReplica {
            replica,
            zone: req.zone.clone(),
            rolling_back: false,
        },
        steps,
        notes,
        resumes: resuming.is_some(),
        replan: false,
    })
}

/// Replicas with no address to reach their etcd over SSH, as a sentence part ("a, b").
pub(super) fn without_address<'a>(s: &Snapshot, replicas: impl IntoIterator<Item = &'a ReplicaVm>) -> Vec<&'a str> {
    replicas
        .into_iter()
        .filter(|r| matches!(s.unreachable.get(&r.name), Some(SshReach::NoAddress(_))))
        .map(|r| r.name.as_str())
        .collect()
}

/// Whether an etcd member list could not be read.
pub(super) fn etcd_unread(s: &Snapshot) -> bool {
    EtcdCluster::ALL
        .iter()
        .any(|c| s.etcd.get(c).is_none_or(|o| o.members.is_none()))
}

/// An add interrupted in the middle of the static IP move (SPEC §4.2 step 1) can leave the
/// existing replica without an external IP, so its etcd cannot be reached over SSH and the
/// preflight cannot be judged. Then the IP move is finished first (those steps need no etcd),
/// and the rest is planned on a fresh observation (`replan`), preflight included.
fn reach_first_add(s: &Snapshot, req: &AddRequest, replica: &str) -> Result<Option<Plan>, Refusal> {
    let existing: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.name != replica).collect();
    let unaddressed = without_address(s, existing.iter().copied());
    if unaddressed.is_empty() || !etcd_unread(s) {
        return Ok(None);
    }
    refuse_without_ssh(s, &req.names, &req.ssh_source_ranges)?;
    let steps = promote_to_lb(s, &req.names, &req.region, &existing);
    if steps.is_empty() {
        return Ok(None);
    }
    Ok(Some(Plan {
        intent: Intent::AddReplica {
            replica: replica.to_string(),
            zone: req.zone.clone(),
            rolling_back: false,
        },
        steps,
        notes: vec![format!(
            "{} {} no external IP to reach etcd over SSH (the interrupted add was moving the static IP): \
             finishing that first, then planning the rest",
            unaddressed.join(", "),
            if unaddressed.len() == 1 { "has" } else { "have" }
        )],
        resumes: true,
        replan: true,
    }))
}

/// The new replica's name: the first candidate derived from the observed state
/// ([`Snapshot::name_seed`]) that nothing of the cluster uses, so `--dry-run` names the replica
/// the real run makes.
pub fn pick_replica_name(s: &Snapshot, names: &ClusterNames) -> Result<String, Refusal> {
    let seed = format!("{}/{}", names.master_name(), s.name_seed);
    crate::names::replica_suffixes(&seed)
        .map(|suffix| names.replica_with_suffix(&suffix))
        .find(|n| !s.name_in_use(n, names))
        .ok_or_else(|| Refusal::new("could not pick an unused replica name; rerun"))
}

/// Undo an add of `replica` in `zone` (its VM never became healthy): whatever exists of it goes,
/// in reverse order of creation, and if it was the 2nd replica the load balancer goes too, so the
/// cluster is exactly as before. Computed from the world, not from a log of what this run did, so
/// it also finishes an undo that was itself interrupted; the zone is the intent's, because the VM
/// that would tell it may be gone already.
pub fn plan_rollback_add(s: &Snapshot, names: &ClusterNames, region: &str, replica: &str, zone: &str) -> Plan {
    let mut steps = removal_steps(s, names, replica, false);
    let remaining: Vec<&ReplicaVm> = s.replicas.iter().filter(|r| r.name != replica).collect();
    if let [last] = remaining.as_slice() {
        steps.extend(demote_lb(s, names, region, last));
    }
    let zone = zone.to_string();
    Plan {
        intent: Intent::AddReplica {
            replica: replica.to_string(),
            zone,
            rolling_back: true,
        },
        steps,
        notes: Vec::new(),
        resumes: false,
        replan: false,
    }
}

/// The steps that make `replica` gone: out of the pool, out of both etcd clusters (leadership
/// moved off first when `move_leader`), VM, disks, internal address.
pub(super) fn removal_steps(s: &Snapshot, names: &ClusterNames, replica: &str, move_leader: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let vm = s.replica(replica);
    if s.target_pool
        .as_ref()
        .is_some_and(|p| p.instances.iter().any(|i| i == replica))
    {
        // The pool names the instance by URL; the zone only matters when its VM is gone.
        let zone = replica_zone(s, names, replica).unwrap_or_default();
        steps.push(Step::RemoveFromPool {
            replica: replica.to_string(),
            zone,
        });
    }
    let clusters: Vec<EtcdCluster> = if move_leader {
        EtcdCluster::ALL.to_vec()
    } else {
        EtcdCluster::ALL.iter().rev().copied().collect()
    };
    for cluster in clusters {
        if let Some(m) = s.member_of(cluster, replica) {
            // A dead member cannot be leader: nothing to hand over.
            let healthy = s.etcd.get(&cluster).is_some_and(|o| o.is_healthy(m.id));
            if move_leader && !m.is_learner && healthy {
                steps.push(Step::MoveLeaderOff {
                    cluster,
                    replica: replica.to_string(),
                });
            }
            steps.push(Step::RemoveMember {
                cluster,
                replica: replica.to_string(),
            });
        }
    }
    if let Some(vm) = vm {
        steps.push(Step::DeleteVm {
            replica: replica.to_string(),
            zone: vm.zone.clone(),
        });
    }
    // The boot disk goes with the VM (autoDelete); only a leftover one needs its own step.
    let leftover_boot = vm.is_none().then(|| replica.to_string());
    for disk in std::iter::once(names.data_disk(replica)).chain(leftover_boot) {
        if let Some(d) = s.data_disk(&disk) {
            steps.push(Step::DeleteDisk {
                name: d.name.clone(),
                zone: d.zone.clone(),
            });
        }
    }
    if let Some(a) = s.internal_ips.get(replica) {
        steps.push(Step::ReleaseAddress {
            name: a.name.clone(),
            region: a.region.clone(),
        });
    }
    steps
}
