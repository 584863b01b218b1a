//! Table tests of the planners: snapshot fixtures in, step kinds or refusals out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::lock::{Intent, LockRecord, LockState, Owner, Staleness};
use super::snapshot::{AddressObs, ClusterObs, DiskObs, MemberHealth, PoolObs, ReplicaVm, RuleObs, Snapshot};
use super::*;
use crate::config::{MasterOverrides, MasterSettings};
use crate::etcd::{Member, MemberId};
use crate::names::{ClusterNames, EtcdCluster};

const Z_B: &str = "europe-west1-b";
const Z_C: &str = "europe-west1-c";
const Z_D: &str = "europe-west1-d";
const STATIC: Ipv4Addr = Ipv4Addr::new(127, 9, 128, 1);

fn names() -> ClusterNames {
    ClusterNames::from_prefix("k")
}

fn settings() -> MasterSettings {
    MasterSettings::kube_up_defaults(3, "cos-cloud")
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 9, 1, n)
}

/// A cluster of healthy replicas `(suffix or "", zone)`; the first holds the static IP when alone,
/// otherwise the load balancer exists. Member IDs are 1.. in order; the first member leads.
fn cluster(replicas: &[(&str, &str)]) -> Snapshot {
    let n = names();
    let mut s = Snapshot {
        zone_known: true,
        kubeconfig_ok: true,
        ..Default::default()
    };
    s.static_ip = Some(AddressObs {
        name: n.static_ip(),
        ip: STATIC,
        in_use: true,
    });
    s.firewalls = vec![n.firewall_https(), n.firewall_etcd()];
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

fn crash(s: &mut Snapshot, replica_index: usize) {
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

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(Step::kind).collect()
}

fn first_req(zone: &str) -> FirstRequest {
    FirstRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        settings: settings(),
        kubeconfig: "kubeconfig".into(),
    }
}

fn add_req(zone: &str) -> AddRequest {
    AddRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        overrides: MasterOverrides::default(),
        fallback_settings: settings(),
        suffix_candidates: vec!["aaa".into(), "bbb".into()],
    }
}

fn remove_req(zone: &str, name: Option<&str>) -> RemoveRequest {
    RemoveRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        replica_name: name.map(str::to_string),
    }
}

fn stale(intent: Intent) -> LockState {
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
        },
        staleness: Staleness::OwnerGone,
    }
}

fn refusal(r: Result<Plan, crate::error::Refusal>) -> String {
    r.expect_err("should be refused").to_string()
}

#[test]
fn first_up_on_an_empty_project_creates_everything_in_order() {
    let s = Snapshot {
        zone_known: true,
        ..Default::default()
    };
    let plan = plan_first(&s, &first_req(Z_B)).expect("plan");
    assert_eq!(
        kinds(&plan),
        [
            "create_firewall",
            "create_firewall",
            "reserve_static_ip",
            "reserve_internal_ip",
            "create_data_disk",
            "create_replica_vm",
            "wait_etcd_healthy",
            "wait_api",
            "write_kubeconfig"
        ]
    );
    assert!(!plan.resumes);
}

#[test]
fn a_complete_first_master_has_nothing_to_do() {
    let plan = plan_first(&cluster(&[("", Z_B)]), &first_req(Z_B)).expect("plan");
    assert!(plan.is_empty(), "{}", plan.render());
}

#[test]
fn an_interrupted_first_up_is_finished() {
    let mut s = Snapshot {
        zone_known: true,
        ..Default::default()
    };
    s.firewalls = vec![names().firewall_https(), names().firewall_etcd()];
    s.static_ip = Some(AddressObs {
        name: names().static_ip(),
        ip: STATIC,
        in_use: false,
    });
    s.internal_ips.insert(
        "k-master".into(),
        AddressObs {
            name: "k-master-internal".into(),
            ip: ip(1),
            in_use: false,
        },
    );
    s.disks.push(DiskObs {
        name: "k-master-pd".into(),
        zone: Z_B.into(),
        users: vec![],
    });
    let plan = plan_first(&s, &first_req(Z_B)).expect("plan");
    assert_eq!(
        kinds(&plan),
        ["create_replica_vm", "wait_etcd_healthy", "wait_api", "write_kubeconfig"]
    );
    assert!(plan.resumes);
    let err = refusal(plan_first(&s, &first_req(Z_C)));
    assert!(err.contains("KUBE_GCE_ZONE=europe-west1-b"), "{err}");
}

#[test]
fn first_up_on_a_cluster_with_replicas_points_at_replicate() {
    let err = refusal(plan_first(&cluster(&[("", Z_B), ("a1b", Z_C)]), &first_req(Z_B)));
    assert!(err.contains("KUBE_REPLICATE_EXISTING_MASTER=true"), "{err}");
    let err = refusal(plan_first(&cluster(&[("", Z_B)]), &first_req(Z_C)));
    assert!(err.contains("KUBE_REPLICATE_EXISTING_MASTER=true"), "{err}");
}

#[test]
fn the_second_replica_promotes_the_static_ip_to_a_load_balancer_first() {
    let plan = plan_add(&cluster(&[("", Z_B)]), &add_req(Z_C)).expect("plan");
    assert_eq!(
        kinds(&plan),
        [
            "create_target_pool",
            "detach_external_ip",
            "create_forwarding_rule",
            "attach_external_ip",
            "reserve_internal_ip",
            "add_learner",
            "add_learner",
            "create_data_disk",
            "create_replica_vm",
            "promote_learner",
            "promote_learner",
            "wait_api",
            "add_to_pool"
        ]
    );
    assert_eq!(
        plan.intent,
        Intent::AddReplica {
            replica: "k-master-aaa".into(),
            zone: Z_C.into(),
            rolling_back: false
        }
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("less available")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn the_third_replica_leaves_the_load_balancer_alone() {
    let plan = plan_add(&cluster(&[("", Z_B), ("aaa", Z_C)]), &add_req(Z_D)).expect("plan");
    assert_eq!(kinds(&plan)[0], "reserve_internal_ip");
    // "aaa" is taken: the next candidate is used.
    assert_eq!(
        plan.intent,
        Intent::AddReplica {
            replica: "k-master-bbb".into(),
            zone: Z_D.into(),
            rolling_back: false
        }
    );
    assert!(plan.notes.is_empty());
}

#[test]
fn an_add_is_refused_with_zero_steps_when_preconditions_fail() {
    let two = cluster(&[("", Z_B), ("aaa", Z_C)]);
    let err = refusal(plan_add(&two, &add_req("us-central1-b")));
    assert!(err.contains("region") && err.contains("europe-west1"), "{err}");

    let mut crashed = two.clone();
    crash(&mut crashed, 1);
    let err = refusal(plan_add(&crashed, &add_req(Z_D)));
    assert!(
        err.contains("not healthy") && err.contains("KUBE_REPLICA_NAME=k-master-aaa"),
        "{err}"
    );

    let mut learner = two.clone();
    if let Some(m) = learner
        .etcd
        .get_mut(&EtcdCluster::Events)
        .and_then(|o| o.members.as_mut())
    {
        m.push(Member {
            id: MemberId(9),
            name: String::new(),
            peer_urls: vec!["https://127.9.1.9:2381".into()],
            client_urls: vec![],
            is_learner: true,
        });
    }
    let err = refusal(plan_add(&learner, &add_req(Z_D)));
    assert!(err.contains("learner"), "{err}");

    let mut orphan = two.clone();
    orphan.replicas.pop();
    orphan.target_pool = Some(PoolObs {
        instances: vec!["k-master".into()],
    });
    let err = refusal(plan_add(&orphan, &add_req(Z_D)));
    assert!(
        err.contains("orphan") && err.contains("KUBE_REPLICA_NAME=k-master-aaa"),
        "{err}"
    );

    let mut unknown_zone = two.clone();
    unknown_zone.zone_known = false;
    assert!(refusal(plan_add(&unknown_zone, &add_req("europe-west1-z"))).contains("does not exist"));

    let mut locked = two.clone();
    locked.lock = LockState::Held {
        record: LockRecord {
            owner: Owner {
                host: "other".into(),
                pid: 7,
                start_ticks: 1,
            },
            intent: Intent::AddReplica {
                replica: "k-master-zzz".into(),
                zone: Z_D.into(),
                rolling_back: false,
            },
            acquired: 0,
            expires: u64::MAX,
        },
        staleness: Staleness::Live,
    };
    assert!(refusal(plan_add(&locked, &add_req(Z_D))).contains("another kube-ha operation"));

    let err = refusal(plan_add(
        &Snapshot {
            zone_known: true,
            ..Default::default()
        },
        &add_req(Z_D),
    ));
    assert!(err.contains("no replica"), "{err}");
}

#[test]
fn an_add_killed_after_the_learner_join_resumes_with_the_same_name() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C)]);
    let new_ip = ip(9);
    s.internal_ips.insert(
        "k-master-xyz".into(),
        AddressObs {
            name: "k-master-xyz-internal".into(),
            ip: new_ip,
            in_use: false,
        },
    );
    if let Some(m) = s.etcd.get_mut(&EtcdCluster::Main).and_then(|o| o.members.as_mut()) {
        m.push(Member {
            id: MemberId(9),
            name: String::new(),
            peer_urls: vec![EtcdCluster::Main.peer_url(new_ip)],
            client_urls: vec![],
            is_learner: true,
        });
    }
    s.lock = stale(Intent::AddReplica {
        replica: "k-master-xyz".into(),
        zone: Z_D.into(),
        rolling_back: false,
    });
    let plan = plan_add(&s, &add_req(Z_D)).expect("plan");
    assert!(plan.resumes);
    assert_eq!(
        kinds(&plan),
        [
            "add_learner",
            "create_data_disk",
            "create_replica_vm",
            "promote_learner",
            "promote_learner",
            "wait_api",
            "add_to_pool"
        ]
    );
    assert_eq!(
        plan.steps[0],
        Step::AddLearner {
            cluster: EtcdCluster::Events,
            replica: "k-master-xyz".into()
        }
    );
    let err = refusal(plan_add(&s, &add_req(Z_C)));
    assert!(err.contains("KUBE_GCE_ZONE=europe-west1-d"), "{err}");
}

#[test]
fn rolling_back_the_second_replica_restores_the_single_master() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C)]);
    crash(&mut s, 1);
    let plan = plan_rollback_add(&s, &names(), "europe-west1", "k-master-aaa");
    assert_eq!(
        kinds(&plan),
        [
            "remove_from_pool",
            "remove_member",
            "remove_member",
            "delete_vm",
            "delete_disk",
            "release_address",
            "detach_external_ip",
            "delete_forwarding_rule",
            "attach_external_ip",
            "delete_target_pool"
        ]
    );
    assert_eq!(
        plan.steps[1],
        Step::RemoveMember {
            cluster: EtcdCluster::Events,
            replica: "k-master-aaa".into()
        }
    );
}

#[test]
fn removing_from_three_moves_leadership_and_keeps_the_load_balancer() {
    let s = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    let plan = plan_remove(&s, &remove_req(Z_B, None)).expect("plan");
    assert_eq!(
        plan.intent,
        Intent::RemoveReplica {
            replica: "k-master".into(),
            zone: Some(Z_B.into())
        }
    );
    assert_eq!(
        kinds(&plan),
        [
            "remove_from_pool",
            "move_leader_off",
            "remove_member",
            "move_leader_off",
            "remove_member",
            "delete_vm",
            "delete_disk",
            "release_address"
        ]
    );
}

#[test]
fn removing_the_penultimate_replica_gives_the_static_ip_back() {
    let s = cluster(&[("", Z_B), ("aaa", Z_C)]);
    let plan = plan_remove(&s, &remove_req(Z_C, Some("k-master-aaa"))).expect("plan");
    let k = kinds(&plan);
    assert_eq!(
        &k[k.len() - 4..],
        [
            "detach_external_ip",
            "delete_forwarding_rule",
            "attach_external_ip",
            "delete_target_pool"
        ]
    );
    assert!(plan.steps.contains(&Step::AttachExternalIp {
        replica: "k-master".into(),
        zone: Z_B.into(),
        ip: ExternalIp::Static
    }));
}

#[test]
fn removals_that_are_unsafe_or_wrong_are_refused() {
    let three = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    assert!(refusal(plan_remove(&cluster(&[("", Z_B)]), &remove_req(Z_B, None))).contains("last replica"));
    assert!(refusal(plan_remove(&three, &remove_req(Z_B, Some("k-master-zzz")))).contains("no replica named"));
    assert!(
        refusal(plan_remove(&three, &remove_req(Z_B, Some("k-master-aaa"))))
            .contains("set KUBE_GCE_ZONE=europe-west1-c")
    );
    assert!(refusal(plan_remove(&three, &remove_req("europe-west1-z", None))).contains("no replica in"));

    let mut crashed = three.clone();
    crash(&mut crashed, 2);
    let err = refusal(plan_remove(&crashed, &remove_req(Z_C, None)));
    assert!(err.contains("below the quorum"), "{err}");
    // the crashed one itself can go: replace a failed replica
    let plan = plan_remove(&crashed, &remove_req(Z_D, Some("k-master-bbb"))).expect("dead member is removable");
    assert!(kinds(&plan).contains(&"remove_member"));
}

#[test]
fn a_replica_whose_vm_was_deleted_by_hand_is_cleaned_by_name() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    s.replicas.retain(|r| r.name != "k-master-bbb");
    crash(&mut s, 2);
    let plan = plan_remove(&s, &remove_req(Z_D, Some("k-master-bbb"))).expect("plan");
    assert_eq!(
        kinds(&plan),
        [
            "remove_from_pool",
            "remove_member",
            "remove_member",
            "delete_disk",
            "delete_disk",
            "release_address"
        ]
    );
}

#[test]
fn an_interrupted_removal_is_finished_even_when_the_zone_now_selects_another_replica() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_C)]);
    // bbb's VM and members are gone already; its disk and address remain.
    s.replicas.retain(|r| r.name != "k-master-bbb");
    for obs in s.etcd.values_mut() {
        if let Some(m) = obs.members.as_mut() {
            m.retain(|m| m.id != MemberId(3));
        }
    }
    s.target_pool = Some(PoolObs {
        instances: vec!["k-master".into(), "k-master-aaa".into()],
    });
    s.lock = stale(Intent::RemoveReplica {
        replica: "k-master-bbb".into(),
        zone: Some(Z_C.into()),
    });
    let plan = plan_remove(&s, &remove_req(Z_C, None)).expect("plan");
    assert!(plan.resumes);
    assert_eq!(
        plan.intent,
        Intent::RemoveReplica {
            replica: "k-master-bbb".into(),
            zone: Some(Z_C.into())
        }
    );
    assert_eq!(kinds(&plan), ["delete_disk", "delete_disk", "release_address"]);
}

#[test]
fn teardown_only_with_one_replica_and_removes_everything() {
    let err = refusal(plan_teardown(
        &cluster(&[("", Z_B), ("aaa", Z_C)]),
        &TeardownRequest {
            names: names(),
            region: "europe-west1".into(),
        },
    ));
    assert!(
        err.contains("2 replicas remain") && err.contains("KUBE_DELETE_NODES=false"),
        "{err}"
    );
    let plan = plan_teardown(
        &cluster(&[("", Z_B)]),
        &TeardownRequest {
            names: names(),
            region: "europe-west1".into(),
        },
    )
    .expect("plan");
    assert_eq!(
        kinds(&plan),
        [
            "delete_vm",
            "delete_disk",
            "release_address",
            "delete_firewall",
            "delete_firewall",
            "release_address"
        ]
    );
    let empty = plan_teardown(
        &Snapshot::default(),
        &TeardownRequest {
            names: names(),
            region: "europe-west1".into(),
        },
    )
    .expect("plan");
    assert!(empty.is_empty());
}

#[test]
fn every_step_renders_and_serializes() {
    let s = cluster(&[("", Z_B)]);
    let plan = plan_add(&s, &add_req(Z_C)).expect("plan");
    let text = plan.render();
    assert!(
        text.contains("create target pool k-master in europe-west1 with k-master"),
        "{text}"
    );
    let json = serde_json::to_value(&plan).expect("json");
    assert_eq!(json["steps"][0]["action"], "create_target_pool");
    let _ = BTreeMap::<u8, u8>::new();
}
