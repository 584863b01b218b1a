//! Table tests of the planners: snapshot fixtures in, step kinds or refusals out.

use super::fixtures::*;
use super::lock::{Intent, LockRecord, LockState, Owner, Staleness};
use super::snapshot::{AddressObs, DiskObs, PoolObs, RuleObs, Snapshot};
use super::*;
use crate::config::MasterOverrides;
use crate::etcd::{Member, MemberId};
use crate::names::EtcdCluster;

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.kind().as_str()).collect()
}

fn first_req(zone: &str) -> FirstRequest {
    FirstRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        settings: settings(),
        kubeconfig: "kubeconfig".into(),
        kubeconfig_context: "p_k".into(),
    }
}

fn add_req(zone: &str) -> AddRequest {
    AddRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        overrides: MasterOverrides::default(),
        fallback_settings: settings(),
        allow_same_zone: false,
        ssh_source_ranges: Vec::new(),
    }
}

fn remove_req(zone: &str, name: Option<&str>) -> RemoveRequest {
    RemoveRequest {
        names: names(),
        zone: zone.into(),
        region: crate::config::region_of_zone(zone).expect("zone"),
        replica_name: name.map(str::to_string),
        ssh_source_ranges: Vec::new(),
    }
}

fn teardown_req() -> TeardownRequest {
    TeardownRequest {
        names: names(),
        delete_nodes_set: true,
        kubeconfig: "kubeconfig".into(),
        kubeconfig_context: "p_k".into(),
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
    s.firewalls = vec![
        names().firewall_https(),
        names().firewall_etcd(),
        names().firewall_ssh(),
    ];
    s.firewall_rules = vec![ssh_rule()];
    s.static_ip = Some(AddressObs {
        name: names().static_ip(),
        region: REGION.into(),
        ip: STATIC,
        in_use: false,
    });
    s.internal_ips.insert(
        "k-master".into(),
        AddressObs {
            name: "k-master-internal".into(),
            region: REGION.into(),
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
    let s = cluster(&[("", Z_B)]);
    let plan = plan_add(&s, &add_req(Z_C)).expect("plan");
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
            replica: pick_replica_name(&s, &names()).expect("name"),
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
fn an_add_stopped_after_the_forwarding_rule_still_gives_the_first_replica_an_external_ip() {
    let mut s = cluster(&[("", Z_B)]);
    // Pool made, static IP detached, rule created; interrupted before the new ephemeral IP.
    s.target_pool = Some(PoolObs {
        instances: vec!["k-master".into()],
    });
    s.forwarding_rule = Some(RuleObs { ip: STATIC.to_string() });
    s.replicas[0].external_ip = None;
    s.replicas[0].access_config = None;
    s.lock = stale(Intent::AddReplica {
        replica: "k-master-xyz".into(),
        zone: Z_C.into(),
        rolling_back: false,
    });
    let plan = plan_add(&s, &add_req(Z_C)).expect("plan");
    assert!(plan.resumes);
    assert_eq!(
        plan.steps[0],
        Step::AttachExternalIp {
            replica: "k-master".into(),
            zone: Z_B.into(),
            ip: ExternalIp::Ephemeral
        },
        "{}",
        plan.render()
    );
}

#[test]
fn the_third_replica_leaves_the_load_balancer_alone() {
    let plan = plan_add(&cluster(&[("", Z_B), ("aaa", Z_C)]), &add_req(Z_D)).expect("plan");
    assert_eq!(kinds(&plan)[0], "reserve_internal_ip");
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
            handed_over: None,
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
            region: REGION.into(),
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
    let plan = plan_rollback_add(&s, &names(), "europe-west1", "k-master-aaa", Z_C);
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
        refusal(plan_remove(&three, &remove_req(Z_B, Some("k-master-aaa")))).contains(
            "KUBE_DELETE_NODES=false KUBE_GCE_ZONE=europe-west1-c KUBE_REPLICA_NAME=k-master-aaa kube-ha down"
        )
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
    let err = refusal(plan_teardown(&cluster(&[("", Z_B), ("aaa", Z_C)]), &teardown_req()));
    assert!(
        err.contains("2 replicas remain") && err.contains("KUBE_DELETE_NODES=false"),
        "{err}"
    );
    let plan = plan_teardown(&cluster(&[("", Z_B)]), &teardown_req()).expect("plan");
    assert_eq!(
        kinds(&plan),
        [
            "delete_vm",
            "delete_disk",
            "release_address",
            "delete_firewall",
            "delete_firewall",
            "delete_firewall",
            "release_address"
        ]
    );
    let empty = plan_teardown(&Snapshot::default(), &teardown_req()).expect("plan");
    assert!(empty.is_empty());
}

/// One value of every step kind; the match is exhaustive, so a new variant must be added here.
fn example(kind: StepKind) -> Step {
    let (name, zone, region, replica) = (
        String::from("n"),
        String::from(Z_B),
        String::from(REGION),
        String::from("r"),
    );
    match kind {
        StepKind::CreateFirewall => Step::CreateFirewall {
            name,
            kind: FirewallKind::Etcd,
        },
        StepKind::DeleteFirewall => Step::DeleteFirewall { name },
        StepKind::ReserveStaticIp => Step::ReserveStaticIp { name, region },
        StepKind::ReserveInternalIp => Step::ReserveInternalIp { name, region, replica },
        StepKind::ReleaseAddress => Step::ReleaseAddress { name, region },
        StepKind::CreateDataDisk => Step::CreateDataDisk {
            name,
            zone,
            disk_type: "pd-ssd".into(),
            size_gb: 20,
        },
        StepKind::DeleteDisk => Step::DeleteDisk { name, zone },
        StepKind::CreateReplicaVm => Step::CreateReplicaVm {
            replica,
            zone,
            first: false,
            settings: settings(),
        },
        StepKind::DeleteVm => Step::DeleteVm { replica, zone },
        StepKind::WaitEtcdHealthy => Step::WaitEtcdHealthy { replica },
        StepKind::WaitApi => Step::WaitApi {
            replica,
            via: ApiVia::StaticIp,
        },
        StepKind::WriteKubeconfig => Step::WriteKubeconfig {
            path: name,
            context: "p_k".into(),
        },
        StepKind::RemoveKubeconfigEntries => Step::RemoveKubeconfigEntries {
            path: name,
            context: "p_k".into(),
        },
        StepKind::CreateTargetPool => Step::CreateTargetPool {
            name,
            region,
            replica,
            zone,
        },
        StepKind::DeleteTargetPool => Step::DeleteTargetPool { name, region },
        StepKind::AddToPool => Step::AddToPool { replica, zone },
        StepKind::RemoveFromPool => Step::RemoveFromPool { replica, zone },
        StepKind::DetachExternalIp => Step::DetachExternalIp {
            replica,
            zone,
            access_config: "External NAT".into(),
        },
        StepKind::AttachExternalIp => Step::AttachExternalIp {
            replica,
            zone,
            ip: ExternalIp::Ephemeral,
        },
        StepKind::CreateForwardingRule => Step::CreateForwardingRule { name, region },
        StepKind::DeleteForwardingRule => Step::DeleteForwardingRule { name, region },
        StepKind::AddLearner => Step::AddLearner {
            cluster: EtcdCluster::Main,
            replica,
        },
        StepKind::PromoteLearner => Step::PromoteLearner {
            cluster: EtcdCluster::Main,
            replica,
        },
        StepKind::MoveLeaderOff => Step::MoveLeaderOff {
            cluster: EtcdCluster::Main,
            replica,
        },
        StepKind::RemoveMember => Step::RemoveMember {
            cluster: EtcdCluster::Events,
            replica,
        },
    }
}

#[test]
fn every_step_kind_is_its_json_action_and_a_valid_failpoint() {
    use strum::IntoEnumIterator as _;
    let mut n = 0;
    for kind in StepKind::iter() {
        let step = example(kind);
        assert_eq!(step.kind(), kind);
        let json = serde_json::to_value(&step).expect("json");
        assert_eq!(json["action"], kind.as_str(), "{step:?}");
        assert!(!step.to_string().is_empty());
        let fp: crate::config::Failpoint = format!("after:{kind}").parse().expect("failpoint");
        assert_eq!(fp, crate::config::Failpoint::After(kind));
        n += 1;
    }
    assert_eq!(n, StepKind::names().len());
}

#[test]
fn firewall_steps_show_the_ports_the_executor_opens() {
    assert_eq!(
        example(StepKind::CreateFirewall).to_string(),
        "create firewall rule n (tcp:2380,2381)"
    );
    let https = Step::CreateFirewall {
        name: "n".into(),
        kind: FirewallKind::Https,
    };
    assert_eq!(
        https.to_string(),
        format!("create firewall rule n (tcp:{})", crate::names::APISERVER_PORT)
    );
}

fn zones(s: &mut Snapshot) {
    for z in [Z_B, Z_C, Z_D] {
        s.zones.insert(z.into(), REGION.into());
    }
    s.zones.insert("us-central1-b".into(), "us-central1".into());
}

#[test]
fn a_second_replica_in_a_zone_is_refused_while_another_zone_has_none() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C)]);
    zones(&mut s);
    let err = refusal(plan_add(&s, &add_req(Z_C)));
    assert!(
        err.contains("zone europe-west1-c already has replica k-master-aaa"),
        "{err}"
    );
    assert!(
        err.contains("KUBE_GCE_ZONE=europe-west1-d KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up"),
        "{err}"
    );
    assert!(err.contains("KUBE_HA_ALLOW_SAME_ZONE=true"), "{err}");
    let allowed = AddRequest {
        allow_same_zone: true,
        ..add_req(Z_C)
    };
    assert!(plan_add(&s, &allowed).is_ok());
    // Once every zone has one, zones are shared without asking (kops' --master-count).
    let mut full = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    zones(&mut full);
    assert!(plan_add(&full, &add_req(Z_C)).is_ok());
}

#[test]
fn a_removal_to_an_even_size_is_warned_about_and_a_zone_pick_says_which_and_why() {
    let s = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_C)]);
    let plan = plan_remove(&s, &remove_req(Z_C, None)).expect("plan");
    assert_eq!(
        plan.intent,
        Intent::RemoveReplica {
            replica: "k-master-aaa".into(),
            zone: Some(Z_C.into())
        }
    );
    let notes = plan.notes.join("\n");
    assert!(notes.contains("removing the oldest, k-master-aaa"), "{notes}");
    assert!(notes.contains("KUBE_REPLICA_NAME=k-master-bbb kube-ha down"), "{notes}");
    assert!(notes.contains("warning: 2 replicas are an even number"), "{notes}");
    let plan = plan_remove(&cluster(&[("", Z_B), ("aaa", Z_C)]), &remove_req(Z_C, None)).expect("plan");
    assert!(plan.notes.iter().all(|n| !n.contains("even")), "{:?}", plan.notes);
}

#[test]
fn a_teardown_lists_everything_it_deletes_and_its_kubeconfig_entries_go_last() {
    let mut s = cluster(&[("", Z_B)]);
    s.kubeconfig_has_entries = true;
    let req = TeardownRequest {
        delete_nodes_set: false,
        ..teardown_req()
    };
    let plan = plan_teardown(&s, &req).expect("plan");
    assert_eq!(kinds(&plan).last(), Some(&"remove_kubeconfig_entries"));
    let first = &plan.notes[0];
    for what in [
        "VM k-master (europe-west1-b)",
        "data disk (etcd's data) k-master-pd",
        "static IP k-master-ip (127.9.128.1)",
        "firewall rule k-master-https",
        "firewall rule k-master-etcd",
        "internal IP k-master-internal",
        "kubeconfig entries p_k",
    ] {
        assert!(first.contains(what), "{first} should list {what}");
    }
    assert!(plan.notes[1].contains("KUBE_DELETE_NODES is unset"), "{:?}", plan.notes);
}

#[test]
fn a_resumed_teardown_releases_addresses_in_their_own_region_without_any_vm_or_disk() {
    // Killed after the disk went: only regional and global resources are left, in europe-west1.
    let mut s = cluster(&[("", Z_B)]);
    s.replicas.clear();
    s.disks.clear();
    s.etcd.clear();
    s.lock = stale(Intent::Teardown);
    assert_eq!(s.cluster_region().as_deref(), Some(REGION));
    let plan = plan_teardown(&s, &teardown_req()).expect("plan");
    assert!(plan.resumes);
    let releases: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| s.kind() == StepKind::ReleaseAddress)
        .collect();
    assert_eq!(releases.len(), 2, "{}", plan.render());
    assert!(
        releases
            .iter()
            .all(|s| matches!(s, Step::ReleaseAddress { region, .. } if region == REGION))
    );
}

#[test]
fn a_rollback_interrupted_after_its_vm_went_keeps_the_intents_zone() {
    let mut s = cluster(&[("", Z_B), ("aaa", Z_C)]);
    crash(&mut s, 1);
    s.replicas.retain(|r| r.name != "k-master-aaa");
    s.lock = stale(Intent::AddReplica {
        replica: "k-master-aaa".into(),
        zone: Z_C.into(),
        rolling_back: true,
    });
    let plan = plan_add(&s, &add_req(Z_C)).expect("finishes the rollback");
    assert_eq!(
        plan.intent,
        Intent::AddReplica {
            replica: "k-master-aaa".into(),
            zone: Z_C.into(),
            rolling_back: true
        }
    );
}

#[test]
fn the_new_replicas_name_is_a_function_of_the_observed_state_and_never_a_leftovers() {
    let mut s = cluster(&[("", Z_B)]);
    s.name_seed = "fingerprint-1".into();
    let a = pick_replica_name(&s, &names()).expect("name");
    assert_eq!(pick_replica_name(&s, &names()).expect("again"), a, "dry run = real run");
    assert!(names().is_replica(&a) && a != "k-master", "{a}");
    // A leftover etcd member of that name (no VM, no disk, no address) makes it taken.
    if let Some(m) = s.etcd.get_mut(&EtcdCluster::Main).and_then(|o| o.members.as_mut()) {
        m.push(Member {
            id: MemberId(77),
            name: EtcdCluster::Main.member_name(&a),
            peer_urls: vec!["https://127.9.1.77:2380".into()],
            client_urls: vec![],
            is_learner: false,
        });
    }
    assert_ne!(pick_replica_name(&s, &names()).expect("other"), a);
    s.name_seed = "fingerprint-2".into();
    assert_ne!(
        pick_replica_name(&cluster(&[("", Z_B)]), &names()).ok(),
        pick_replica_name(&s, &names()).ok()
    );
}

#[test]
fn an_unknown_zone_is_refused_with_the_regions_zones() {
    let mut s = cluster(&[("", Z_B)]);
    zones(&mut s);
    s.zone_known = false;
    let err = refusal(plan_add(&s, &add_req("europe-west1-z")));
    assert!(err.contains("europe-west1-b, europe-west1-c, europe-west1-d"), "{err}");
    assert!(!err.contains("gcloud"), "{err}");
}

/// The `K=V … kube-ha <command>` lines in a message.
fn suggested(message: &str) -> Vec<(Vec<(String, String)>, crate::config::Command)> {
    let words: Vec<&str> = message.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if *w != "kube-ha" {
            continue;
        }
        let command = match words.get(i + 1).map(|c| c.trim_end_matches([',', ';', ')'])) {
            Some("up") => crate::config::Command::Up,
            Some("down") => crate::config::Command::Down,
            Some("status") => crate::config::Command::Status,
            _ => continue,
        };
        let mut env = Vec::new();
        for w in words[..i].iter().rev() {
            match w.split_once('=') {
                Some((k, v)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                    env.push((k.to_string(), v.to_string()))
                }
                _ => break,
            }
        }
        env.reverse();
        out.push((env, command));
    }
    out
}

/// Paste a suggested line into a shell that exports only PROJECT (and, to be hostile, the
/// opposite mode flags): resolve it and plan it against the world it was suggested for.
fn paste(line: &(Vec<(String, String)>, crate::config::Command), s: &Snapshot) -> Result<Plan, String> {
    let mut env: Vec<(String, String)> = vec![
        ("PROJECT".into(), "p-project".into()),
        ("KUBE_GCE_INSTANCE_PREFIX".into(), "k".into()),
        ("KUBE_DELETE_NODES".into(), "false".into()),
        ("KUBE_REPLICATE_EXISTING_MASTER".into(), "true".into()),
    ];
    env.extend(line.0.iter().cloned());
    let raw = crate::config::RawEnv::from_vars(env);
    let cfg = crate::config::Config::resolve(&raw, line.1, crate::config::Flags::default(), || "/s".into())
        .map_err(|r| format!("resolve: {r}"))?;
    let mut s = s.clone();
    // The take-over variable frees the lock it names, as observing would judge it.
    if let (LockState::Held { record, .. }, Some(_)) = (&s.lock, &cfg.take_over_lock) {
        let at = super::lock::Vantage {
            now: 0,
            host: Some("here"),
            take_over: cfg.take_over_lock.as_ref(),
        };
        let staleness = super::lock::staleness(record, at, |_| super::lock::Liveness::Running);
        s.lock = LockState::Held {
            record: record.clone(),
            staleness,
        };
    }
    if line.1 == crate::config::Command::Status {
        return Ok(Plan {
            intent: Intent::Teardown,
            steps: vec![],
            notes: vec![],
            resumes: false,
            replan: false,
        });
    }
    plan_command(&cfg, line.1, &s).map_err(|r| format!("plan: {r}"))
}

#[test]
fn every_command_kube_ha_suggests_works_when_pasted() {
    let mut cases: Vec<(String, Snapshot, String)> = Vec::new();
    let mut add = |what: &str, s: Snapshot, message: String| cases.push((what.to_string(), s, message));

    let mut crashed = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    crash(&mut crashed, 1);
    add(
        "replace an unhealthy member",
        crashed.clone(),
        refusal(plan_add(&crashed, &add_req(Z_D))),
    );

    let mut orphan = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    orphan.replicas.retain(|r| r.name != "k-master-aaa");
    crash(&mut orphan, 1);
    add(
        "remove an orphan member",
        orphan.clone(),
        refusal(plan_add(&orphan, &add_req(Z_D))),
    );

    let three = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
    add(
        "a named replica in another zone",
        three.clone(),
        refusal(plan_remove(&three, &remove_req(Z_B, Some("k-master-aaa")))),
    );
    add(
        "no replica in the zone",
        three.clone(),
        refusal(plan_remove(&three, &remove_req("europe-west1-z", None))),
    );
    add(
        "teardown with replicas left",
        three.clone(),
        refusal(plan_teardown(&three, &teardown_req())),
    );

    let one = cluster(&[("", Z_B)]);
    add(
        "the last replica",
        one.clone(),
        refusal(plan_remove(&one, &remove_req(Z_B, None))),
    );
    add(
        "first up on an existing cluster",
        one.clone(),
        refusal(plan_first(&one, &first_req(Z_C))),
    );

    let mut spread = cluster(&[("", Z_B), ("aaa", Z_C)]);
    zones(&mut spread);
    add("same zone", spread.clone(), refusal(plan_add(&spread, &add_req(Z_C))));

    let mut held = cluster(&[("", Z_B), ("aaa", Z_C)]);
    held.lock = LockState::Held {
        record: LockRecord {
            owner: Owner {
                host: "elsewhere".into(),
                pid: 7,
                start_ticks: 1,
            },
            intent: Intent::RemoveReplica {
                replica: "k-master-aaa".into(),
                zone: Some(Z_C.into()),
            },
            acquired: 0,
            expires: u64::MAX,
            handed_over: None,
        },
        staleness: Staleness::Live,
    };
    add(
        "a lock whose holder is gone",
        held.clone(),
        refusal(plan_add(&held, &add_req(Z_D))),
    );

    for intent in [
        Intent::AddReplica {
            replica: "k-master-xyz".into(),
            zone: Z_D.into(),
            rolling_back: false,
        },
        Intent::RemoveReplica {
            replica: "k-master-aaa".into(),
            zone: Some(Z_C.into()),
        },
    ] {
        let mut s = cluster(&[("", Z_B), ("aaa", Z_C)]);
        s.lock = stale(intent.clone());
        add(
            &format!("interrupted {intent}"),
            s.clone(),
            refusal(plan_first(&s, &first_req(Z_B))),
        );
    }
    let mut interrupted_teardown = cluster(&[("", Z_B)]);
    interrupted_teardown.lock = stale(Intent::Teardown);
    add(
        "interrupted teardown",
        interrupted_teardown.clone(),
        refusal(plan_add(&interrupted_teardown, &add_req(Z_C))),
    );

    for (what, s, message) in &cases {
        let lines = suggested(message);
        assert!(!lines.is_empty(), "{what}: no command in {message:?}");
        // "do X, then Y": each line is pasted into the world the previous one left.
        let mut world = s.clone();
        for line in &lines {
            let plan =
                paste(line, &world).unwrap_or_else(|e| panic!("{what}: {line:?} from {message:?} does not work: {e}"));
            world = after(&world, &plan);
        }
    }
}

/// The world after a removal plan ran (enough of it for the next suggestion to be judged).
fn after(s: &Snapshot, plan: &Plan) -> Snapshot {
    let mut s = s.clone();
    let Intent::RemoveReplica { replica, .. } = &plan.intent else {
        return s;
    };
    let n = names();
    for obs in s.etcd.values_mut() {
        let ip = s
            .replicas
            .iter()
            .find(|r| &r.name == replica)
            .and_then(|r| r.internal_ip);
        if let Some(m) = obs.members.as_mut() {
            m.retain(|m| !ip.is_some_and(|ip| m.peer_urls.iter().any(|u| u.contains(&ip.to_string()))));
        }
    }
    s.replicas.retain(|r| &r.name != replica);
    s.disks.retain(|d| d.name != n.data_disk(replica) && &d.name != replica);
    s.internal_ips.remove(replica);
    if let Some(p) = s.target_pool.as_mut() {
        p.instances.retain(|i| i != replica);
    }
    if let [last] = s.replicas.as_mut_slice() {
        last.external_ip = Some(STATIC);
        s.target_pool = None;
        s.forwarding_rule = None;
    }
    s
}

#[test]
fn a_plan_renders_its_steps_and_serializes_their_actions() {
    let s = cluster(&[("", Z_B)]);
    let plan = plan_add(&s, &add_req(Z_C)).expect("plan");
    let text = plan.render();
    assert!(
        text.contains("create target pool k-master in europe-west1 with k-master"),
        "{text}"
    );
    let json = serde_json::to_value(&plan).expect("json");
    assert_eq!(json["steps"][0]["action"], "create_target_pool");
}

/// The preflight made before the run's SSH key is written (etcd not observed yet) refuses what
/// needs no etcd, and nothing for lack of etcd's view.
#[test]
fn the_preflight_before_ssh_refuses_only_what_needs_no_etcd() {
    let pending = |replicas: &[(&str, &str)]| {
        let mut s = cluster(replicas);
        s.etcd.clear();
        s.etcd_pending = true;
        s
    };
    let one = pending(&[("", Z_B)]);
    assert!(plan_add(&one, &add_req(Z_C)).is_ok());
    assert!(refusal(plan_add(&one, &add_req("us-central1-b"))).contains("europe-west1"));
    let mut no_ssh = one.clone();
    no_ssh.firewall_rules.clear();
    assert!(refusal(plan_add(&no_ssh, &add_req(Z_C))).contains("tcp:22"));
    let two = pending(&[("", Z_B), ("aaa", Z_C)]);
    assert!(plan_remove(&two, &remove_req(Z_C, None)).is_ok());
    assert!(refusal(plan_remove(&one, &remove_req(Z_B, None))).contains("last replica"));
}
