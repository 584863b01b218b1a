//! Observe: read the world into one [`Snapshot`] (GCE resources, the lock, both etcd member lists
//! with each member's own health, the local kubeconfig). Reads only, except the run's own SSH key
//! in the masters' `ssh-keys` ([`super::access`]): etcd is reached over SSH, so a refusal's only
//! write is that entry, removed before it exits.
//!
//! etcd is asked through each master's own route (its `127.0.0.1`, over its SSH connection). On
//! kube-up masters every member advertises `https://127.0.0.1:2379`, so a client URL says
//! nothing about which member it is: each member is matched to its replica by the snapshot's
//! rule ([`Snapshot::replica_of_member`]) and asked through that replica's route.
//!
//! Everything of the cluster is found wherever it is: instances, disks and addresses by
//! aggregated lists across zones and regions, so the region comes from the cluster's own
//! resources (never from `KUBE_GCE_ZONE`'s default) and `status` sees every leftover.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use futures_util::future::join_all;
use google_cloud_compute_v1::model;

use crate::config::{Config, MasterSettings};
use crate::etcd::MemberId;
use crate::gce::{Gce, last_segment};
use crate::names::{ClusterNames, EtcdCluster};
use crate::plan::Snapshot;
use crate::plan::snapshot::{
    AddressObs, ClusterObs, DiskObs, FirewallRuleObs, MemberHealth, PoolObs, ReplicaVm, RuleObs,
};
use crate::ssh::EtcdRoute;

use super::access::Access;
use super::cluster::ClusterSecrets;
use super::lock::Locker;

/// How long one etcd read may take while observing (a dead member must not stall a refusal).
pub const ETCD_OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);

/// What observing read, beyond the snapshot: raw objects the executor needs again.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The project's metadata as read (its fingerprint takes the lock).
    pub project_metadata: model::Metadata,
    /// Replica instances as GCE returned them (metadata, self links).
    pub instances: Vec<model::Instance>,
    /// The shared secrets, from the first replica that has them.
    pub secrets: Option<ClusterSecrets>,
}

fn ipv4(s: Option<&str>) -> Option<Ipv4Addr> {
    s.and_then(|s| s.parse().ok())
}

/// A replica VM as plain data, with its settings read back from its disks.
fn replica_vm(i: &model::Instance, disks: &[model::Disk], names: &ClusterNames) -> ReplicaVm {
    let name = i.name.clone().unwrap_or_default();
    let zone = last_segment(i.zone.as_deref().unwrap_or_default()).to_string();
    let nic = i.network_interfaces.first();
    let ac = nic.and_then(|n| n.access_configs.first());
    let disk = |n: &str| {
        disks
            .iter()
            .find(|d| d.name.as_deref() == Some(n) && d.zone.as_deref().map(last_segment) == Some(zone.as_str()))
    };
    let boot_name = i
        .disks
        .iter()
        .find(|d| d.boot == Some(true))
        .and_then(|d| d.source.as_deref())
        .map(last_segment)
        .unwrap_or(&name)
        .to_string();
    // Every setting read back, or none: a replica must not copy a value GCE did not report
    // (the planner then says it uses the defaults).
    let size = |gb: Option<i64>| gb.and_then(|g| u64::try_from(g).ok()).filter(|g| *g > 0);
    let settings = (|| {
        let (boot, data) = (disk(&boot_name)?, disk(&names.data_disk(&name))?);
        Some(MasterSettings {
            machine_type: last_segment(i.machine_type.as_deref()?).to_string(),
            disk_type: last_segment(data.r#type.as_deref()?).to_string(),
            disk_size_gb: size(data.size_gb)?,
            root_disk_size_gb: size(boot.size_gb)?,
            source_image: boot.source_image.clone().filter(|s| !s.is_empty())?,
            // GCE omits `preemptible` when false.
            preemptible: i.scheduling.as_ref().and_then(|s| s.preemptible).unwrap_or(false),
        })
    })();
    ReplicaVm {
        name,
        zone,
        status: i
            .status
            .as_ref()
            .and_then(|s| s.name())
            .unwrap_or("UNKNOWN")
            .to_string(),
        internal_ip: ipv4(nic.and_then(|n| n.network_ip.as_deref())),
        external_ip: ipv4(ac.and_then(|a| a.nat_ip.as_deref())),
        access_config: ac.and_then(|a| a.name.clone()),
        created: i.creation_timestamp.clone().unwrap_or_default(),
        self_link: i.self_link.clone().unwrap_or_default(),
        settings,
    }
}

/// A firewall rule as plain data (for the SSH preflight, `plan::ssh`).
fn firewall_rule(f: &model::Firewall) -> FirewallRuleObs {
    let entries = |protocol: Option<&String>, ports: &[String]| {
        (protocol.cloned().unwrap_or_else(|| "all".into()), ports.to_vec())
    };
    FirewallRuleObs {
        name: f.name.clone().unwrap_or_default(),
        network: last_segment(f.network.as_deref().unwrap_or("default")).to_string(),
        ingress: f
            .direction
            .as_ref()
            .and_then(|d| d.name())
            .is_none_or(|d| d == "INGRESS"),
        disabled: f.disabled.unwrap_or(false),
        priority: f.priority.map(i64::from).unwrap_or(1000),
        allowed: f
            .allowed
            .iter()
            .map(|a| entries(a.ip_protocol.as_ref(), &a.ports))
            .collect(),
        denied: f
            .denied
            .iter()
            .map(|d| entries(d.ip_protocol.as_ref(), &d.ports))
            .collect(),
        source_ranges: f.source_ranges.clone(),
        source_tags: f.source_tags.clone(),
        source_service_accounts: f.source_service_accounts.clone(),
        target_tags: f.target_tags.clone(),
        target_service_accounts: f.target_service_accounts.clone(),
    }
}

/// What a new replica's name is derived from: the metadata fingerprint (see `Snapshot::name_seed`).
pub fn name_seed(metadata: &model::Metadata) -> String {
    metadata
        .fingerprint
        .as_ref()
        .map(|f| base64::engine::general_purpose::STANDARD.encode(f))
        .unwrap_or_default()
}

/// Read GCE (and the kubeconfig); etcd is read separately by [`observe_etcd`], and `ops::observe`
/// reads the lock again after both.
pub async fn observe_gce(gce: &Gce, cfg: &Config) -> Result<(Snapshot, Observed)> {
    let names = &cfg.names;
    let (metadata, instances, disks, addresses, zones, firewalls) = tokio::try_join!(
        gce.project_metadata(),
        gce.all_instances(),
        gce.all_disks(),
        gce.all_addresses(),
        gce.zones(),
        gce.all_firewalls(),
    )
    .context("cannot read the project")?;
    let mut instances: Vec<model::Instance> = instances
        .into_iter()
        .filter(|i| i.name.as_deref().is_some_and(|n| names.is_replica(n)))
        .collect();
    instances.sort_by(|a, b| (&a.creation_timestamp, &a.name).cmp(&(&b.creation_timestamp, &b.name)));
    let replicas: Vec<ReplicaVm> = instances.iter().map(|i| replica_vm(i, &disks, names)).collect();

    let cluster_disks: Vec<DiskObs> = disks
        .iter()
        .filter_map(|d| {
            let name = d.name.as_deref()?;
            let ours = names.replica_of_data_disk(name).is_some() || names.is_replica(name);
            ours.then(|| DiskObs {
                name: name.to_string(),
                zone: last_segment(d.zone.as_deref().unwrap_or_default()).to_string(),
                users: d.users.iter().map(|u| last_segment(u).to_string()).collect(),
            })
        })
        .collect();

    let mut snapshot = Snapshot {
        replicas,
        disks: cluster_disks,
        zones: zones.into_iter().collect(),
        name_seed: name_seed(&metadata),
        ..Default::default()
    };
    for a in &addresses {
        let (Some(name), Some(ip), Some(region)) = (
            a.name.as_deref(),
            ipv4(a.address.as_deref()),
            a.region.as_deref().map(last_segment),
        ) else {
            continue;
        };
        let in_use = a.status.as_ref().and_then(|s| s.name()) == Some("IN_USE");
        let obs = AddressObs {
            name: name.to_string(),
            region: region.to_string(),
            ip,
            in_use,
        };
        if name == names.static_ip() {
            snapshot.static_ip = Some(obs);
        } else if let Some(replica) = names.replica_of_internal_ip(name) {
            snapshot.internal_ips.insert(replica, obs);
        }
    }
    snapshot.lock = Locker::new(cfg).state(&metadata)?;
    snapshot.zone_known = snapshot.zones.get(&cfg.zone) == Some(&cfg.region);

    // The load balancer lives in the cluster's region, which its resources tell; without any,
    // the region asked for is the only place a half-made one could be.
    let region = snapshot.cluster_region().unwrap_or_else(|| cfg.region.clone());
    let (pool, rule) = tokio::try_join!(
        gce.target_pool(&region, names.target_pool()),
        gce.forwarding_rule(&region, names.forwarding_rule()),
    )
    .context("cannot read the project")?;
    let own = [names.firewall_https(), names.firewall_etcd(), names.firewall_ssh()];
    snapshot.firewalls = own
        .into_iter()
        .filter(|n| firewalls.iter().any(|f| f.name.as_deref() == Some(n.as_str())))
        .collect();
    snapshot.firewall_rules = firewalls.iter().map(firewall_rule).collect();
    snapshot.masters_network = instances
        .first()
        .and_then(|i| i.network_interfaces.first())
        .and_then(|n| n.network.as_deref())
        .map(|n| last_segment(n).to_string());
    snapshot.target_pool = pool.map(|p| PoolObs {
        instances: p.instances.iter().map(|u| last_segment(u).to_string()).collect(),
    });
    snapshot.forwarding_rule = rule.map(|r| RuleObs {
        ip: r.ip_address.unwrap_or_default(),
    });
    let kubeconfig = super::kubeconfig::inspect(
        &cfg.kubeconfig,
        &names.kubeconfig_context(&cfg.project),
        snapshot.static_ip.as_ref().map(|a| a.ip),
    );
    snapshot.kubeconfig_ok = kubeconfig.complete;
    snapshot.kubeconfig_has_entries = kubeconfig.has_entries;
    snapshot.kubeconfig_error = kubeconfig.error;

    let mut secrets = None;
    for i in &instances {
        if let Some(s) = ClusterSecrets::from_instance(i)? {
            secrets = Some(s);
            break;
        }
    }
    Ok((
        snapshot,
        Observed {
            project_metadata: metadata,
            instances,
            secrets,
        },
    ))
}

/// Read both etcd clusters through the masters' routes (see the module doc). Masters that could
/// not be reached over SSH are in `snapshot.unreachable`; their members count as unhealthy.
pub async fn observe_etcd(access: &Access, snapshot: &mut Snapshot) {
    for cluster in EtcdCluster::ALL {
        let routes: BTreeMap<String, EtcdRoute> = access.routes(cluster).into_iter().collect();
        let obs = observe_cluster(cluster, &routes, snapshot).await;
        snapshot.etcd.insert(cluster, obs);
    }
}

async fn observe_cluster(cluster: EtcdCluster, routes: &BTreeMap<String, EtcdRoute>, s: &Snapshot) -> ClusterObs {
    let mut obs = ClusterObs::default();
    // Oldest replica first: the same member list on every run of the same world.
    let ordered: Vec<(&str, &EtcdRoute)> = s
        .replicas
        .iter()
        .filter_map(|r| routes.get(&r.name).map(|route| (r.name.as_str(), route)))
        .collect();
    let lists = join_all(ordered.iter().map(|(_, r)| async move {
        r.client
            .with_timeout(ETCD_OBSERVE_TIMEOUT)
            .member_list(&r.endpoint)
            .await
    }))
    .await;
    let mut errors: Vec<String> = s
        .unreachable
        .iter()
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    for ((name, _), list) in ordered.iter().zip(lists) {
        match list {
            Ok(members) => {
                obs.members = Some(members);
                break;
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if obs.members.is_none() {
        obs.error = Some(if errors.is_empty() {
            "no replica to ask".into()
        } else {
            errors.join("; ")
        });
        return obs;
    }
    // Ask each member through its own replica's route (a member without client URLs has not
    // started; one without a replica has nothing to reach it through).
    let members = obs.members.clone().unwrap_or_default();
    let unhealthy = |why: String| MemberHealth {
        healthy: false,
        leader: None,
        raft_index: 0,
        error: Some(why),
    };
    let statuses = join_all(members.iter().map(|m| {
        let owner = s.replica_of_member(cluster, m);
        async move {
            if m.client_urls.is_empty() {
                return Err("not started".to_string());
            }
            let Some(owner) = owner else {
                return Err("no replica VM of this member to reach it through".to_string());
            };
            let Some(route) = routes.get(&owner) else {
                let why = s
                    .unreachable
                    .get(&owner)
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| format!("{owner} is not reachable over SSH"));
                return Err(why);
            };
            route
                .client
                .with_timeout(ETCD_OBSERVE_TIMEOUT)
                .status(&route.endpoint)
                .await
                .map_err(|e| e.to_string())
        }
    }))
    .await;
    let mut leaders: BTreeMap<MemberId, usize> = BTreeMap::new();
    for (m, status) in members.iter().zip(statuses) {
        let health = match status {
            Err(why) => unhealthy(why),
            Ok(st) => {
                let healthy = st.errors.is_empty() && st.leader.is_some() && st.member_id == m.id;
                if healthy && let Some(l) = st.leader {
                    *leaders.entry(l).or_default() += 1;
                }
                MemberHealth {
                    healthy,
                    leader: st.leader.map(|l| l.0),
                    raft_index: st.raft_index,
                    error: (!healthy).then(|| {
                        if st.member_id != m.id {
                            format!("its replica's etcd answers as member {}", st.member_id)
                        } else if st.errors.is_empty() {
                            "no leader".to_string()
                        } else {
                            st.errors.join("; ")
                        }
                    }),
                }
            }
        };
        obs.health.insert(m.id, health);
    }
    obs.leader = leaders.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id);
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, kind: Option<&str>, size: Option<i64>) -> model::Disk {
        let mut d = model::Disk::default();
        d.name = Some(name.into());
        d.zone = Some("projects/p/zones/europe-west1-b".into());
        d.r#type = kind.map(|k| format!("projects/p/zones/europe-west1-b/diskTypes/{k}"));
        d.size_gb = size;
        d.source_image = Some("projects/cos-cloud/global/images/cos-1".into());
        d
    }

    fn instance() -> model::Instance {
        let mut i = model::Instance::default();
        i.name = Some("k-master".into());
        i.zone = Some("projects/p/zones/europe-west1-b".into());
        i.machine_type = Some("projects/p/zones/europe-west1-b/machineTypes/n1-standard-8".into());
        i
    }

    #[test]
    fn settings_are_read_back_whole_or_not_at_all() {
        let names = ClusterNames::from_prefix("k");
        let whole = [
            disk("k-master", Some("pd-standard"), Some(30)),
            disk("k-master-pd", Some("pd-balanced"), Some(100)),
        ];
        let s = replica_vm(&instance(), &whole, &names).settings.expect("settings");
        assert_eq!(
            (s.disk_type.as_str(), s.disk_size_gb, s.root_disk_size_gb),
            ("pd-balanced", 100, 30)
        );
        assert_eq!(s.machine_type, "n1-standard-8");
        // GCE omitting the data disk's type or size: nothing is invented.
        for data in [
            disk("k-master-pd", None, Some(100)),
            disk("k-master-pd", Some("pd-ssd"), None),
        ] {
            let disks = [disk("k-master", Some("pd-standard"), Some(30)), data];
            assert_eq!(replica_vm(&instance(), &disks, &names).settings, None);
        }
    }
}
