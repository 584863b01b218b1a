//! Snapshot fixtures shared by the planner tests and the status tests: a cluster of healthy
//! replicas with prefix `k` in europe-west1, and the ways to break it.

use std::net::Ipv4Addr;

use super::lock::{Intent, LockRecord, LockState, Owner, Staleness};
use super::snapshot::{
    AddressObs, ClusterObs, DiskObs, FirewallRuleObs, MemberHealth, PoolObs, ReplicaVm, RuleObs, Snapshot,
};
use crate::config::MasterSettings;
use crate::etcd::{Member, MemberId};
use crate::names::{ClusterNames, EtcdCluster};

pub const Z_B: &str = "europe-west1-b";
pub const Z_C: &str = "europe-west1-c";
pub const Z_D: &str = "europe-west1-d";
pub const REGION: &str = "europe-west1";
pub const STATIC: Ipv4Addr = Ipv4Addr::new(127, 9, 128, 1);

pub fn names() -> ClusterNames {
    ClusterNames::from_prefix("k")
}

pub fn settings() -> MasterSettings {
    MasterSettings::kube_up_defaults(3, "cos-cloud")
}

pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 9, 1, n)
}

/// A cluster of healthy replicas `(suffix or "", zone)`; the first holds the static IP when alone,
/// otherwise the load balancer exists. Member IDs are 1.. in order; the first member leads.
pub fn cluster(replicas: &[(&str, &str)]) -> Snapshot {
    let n = names();
    let mut s = Snapshot {
        zone_known: true,
        kubeconfig_ok: true,
        ..Default::default()
    };
    s.static_ip = Some(AddressObs {
        name: n.static_ip(),
        region: REGION.into(),
        ip: STATIC,
        in_use: true,
    });
    s.firewalls = vec![n.firewall_https(), n.firewall_etcd(), n.firewall_ssh()];
    s.firewall_rules = vec![ssh_rule()];
    let lb = replicas.len() > 1;
    for (i, (suffix, zone)) in replicas.iter().enumerate() {
        let name = if suffix.is_empty() {
            n.master_name().to_string()
        } else {
            n.replica_with_suffix(suffix)
        };
        let internal = ip(i as u8 + 1);
        let external = if !lb && i == 0 {
            STATIC
        } else {
            Ipv4Addr::new(127, 9, 129, i as u8 + 1)
        };
        s.replicas.push(ReplicaVm {
            name: name.clone(),
            zone: zone.to_string(),
            status: "RUNNING".into(),
            internal_ip: Some(internal),
            external_ip: Some(external),
            access_config: Some("External NAT".into()),
            created: format!("2026-01-0{}T00:00:00Z", i + 1),
            self_link: format!("projects/p/zones/{zone}/instances/{name}"),
            settings: Some(settings()),
        });
        s.internal_ips.insert(
            name.clone(),
            AddressObs {
                name: n.internal_ip(&name),
                region: REGION.into(),
                ip: internal,
                in_use: true,
            },
        );
        s.disks.push(DiskObs {
            name: n.data_disk(&name),
            zone: zone.to_string(),
            users: vec![name.clone()],
        });
        s.disks.push(DiskObs {
            name: name.clone(),
            zone: zone.to_string(),
            users: vec![name.clone()],
        });
    }
    if lb {
        s.target_pool = Some(PoolObs {
            instances: s.replicas.iter().map(|r| r.name.clone()).collect(),
        });
        s.forwarding_rule = Some(RuleObs { ip: STATIC.to_string() });
    }
    for cluster in EtcdCluster::ALL {
        let mut obs = ClusterObs::default();
        let mut members = Vec::new();
        for (i, r) in s.replicas.iter().enumerate() {
            let id = MemberId(i as u64 + 1);
            members.push(Member {
                id,
                name: cluster.member_name(&r.name),
                peer_urls: vec![cluster.peer_url(r.internal_ip.expect("ip"))],
                client_urls: vec![cluster.client_url(r.internal_ip.expect("ip"))],
                is_learner: false,
            });
            obs.health.insert(
                id,
                MemberHealth {
                    healthy: true,
                    leader: Some(1),
                    raft_index: 10,
                    error: None,
                },
            );
        }
        obs.members = Some(members);
        obs.leader = Some(MemberId(1));
        s.etcd.insert(cluster, obs);
    }
    s
}

pub fn crash(s: &mut Snapshot, replica_index: usize) {
    for obs in s.etcd.values_mut() {
        let id = MemberId(replica_index as u64 + 1);
        obs.health.insert(
            id,
            MemberHealth {
                healthy: false,
                leader: None,
                raft_index: 0,
                error: Some("connection refused".into()),
            },
        );
    }
}

pub fn stale(intent: Intent) -> LockState {
    LockState::Held {
        record: LockRecord {
            owner: Owner {
                host: "h".into(),
                pid: 1,
                start_ticks: 1,
            },
            intent,
            acquired: 0,
            expires: 1,
            handed_over: None,
        },
        staleness: Staleness::OwnerGone,
    }
}

/// A rule admitting tcp:22 from anywhere to every instance of the network (as kube-up's
/// `<network>-default-ssh`), named as the cluster's own `MASTER_NAME-ssh` (so it is whatever
/// prefix a test's configuration uses).
pub fn ssh_rule() -> FirewallRuleObs {
    FirewallRuleObs {
        name: names().firewall_ssh(),
        network: "default".into(),
        allowed: vec![("tcp".into(), vec!["22".into()])],
        source_ranges: vec!["0.0.0.0/0".into()],
        ..Default::default()
    }
}
