//! Issue "add a replica": learner join on both etcd clusters, the load balancer with static-IP
//! promotion at the second replica, refusals that change nothing, rollback of a replica that
//! never boots, and resumption after SIGKILL at the riskiest points.

use kube_ha_testkit as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kube_ha_core::names::EtcdCluster;
use serde_json::json;
use support::cluster::Sandbox;

const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const D: &str = "europe-west1-d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_three_across_zones_keeps_every_key_and_each_step_is_complete() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put k0");
    let first_static = sb.static_ip().await;

    let run = sb.add(C).await;
    run.expect_code(0);
    assert!(
        run.stderr.contains("less available"),
        "even size is warned about:\n{}",
        run.stderr
    );
    sb.assert_complete(2, &[("k0", "zero")]).await;
    assert_eq!(
        sb.static_ip().await,
        first_static,
        "the same static IP, now on the load balancer"
    );
    assert_status_matches(&sb).await;
    sb.put("k1", "one").await.expect("put k1");

    sb.add(D).await.expect_code(0);
    sb.assert_complete(3, &[("k0", "zero"), ("k1", "one")]).await;
    let zones: Vec<String> = sb
        .replicas()
        .await
        .iter()
        .filter_map(|i| i.zone.as_deref().map(|z| z.rsplit('/').next().unwrap_or(z).to_string()))
        .collect();
    assert_eq!(zones, [B, C, D]);
}

/// kops and Cluster API spread masters over zones; a second replica in a zone while another zone
/// of the region has none is refused (zero mutations) with the zone that has none, and only an
/// explicit `KUBE_HA_ALLOW_SAME_ZONE=true` puts it there (kops' `--master-count` case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_replica_shares_a_zone_with_another_only_when_asked_while_a_zone_has_none() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    sb.add(C).await.expect_code(0);
    sb.emu.clear_calls().await;
    let refused = sb.add(C).await;
    refused.expect_code(2);
    let line = refused.error_lines()[0];
    assert!(line.contains("europe-west1-c already has replica"), "{line}");
    assert!(
        line.contains("KUBE_GCE_ZONE=europe-west1-d KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up"),
        "{line}"
    );
    assert!(line.contains("KUBE_HA_ALLOW_SAME_ZONE=true"), "{line}");
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());
    sb.kube_ha(
        &["up"],
        &[
            ("KUBE_GCE_ZONE", C),
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ("KUBE_HA_ALLOW_SAME_ZONE", "true"),
        ],
    )
    .await
    .expect_code(0);
    sb.assert_complete(3, &[("k0", "zero")]).await;

    // Removing by zone picks the oldest of the two there and says which and why; 3 → 2 is
    // warned about as 1 → 2 is.
    let in_c: Vec<String> = sb.replica_names().await.into_iter().skip(1).collect();
    let run = sb.remove(C, None).await;
    run.expect_code(0);
    assert!(
        run.stderr.contains(&format!(
            "europe-west1-c has 2 replicas ({}, {}): removing the oldest, {}",
            in_c[0], in_c[1], in_c[0]
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("warning: 2 replicas are an even number"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sb.replica_names().await,
        ["kubernetes-master".to_string(), in_c[1].clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_or_wrong_adds_are_refused_with_zero_mutating_calls() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add(C).await.expect_code(0);

    // A zone in another region: a check that needs no etcd, so refused before the run's SSH key
    // is written anywhere.
    sb.emu.clear_calls().await;
    let run = sb.add("us-central1-b").await;
    run.expect_code(2);
    assert!(run.error_lines()[0].contains("europe-west1"), "{}", run.stderr);
    assert!(sb.emu.mutating_calls().await.is_empty(), "not even the run's own key");

    // A learner already present (an add in flight elsewhere), added with etcdctl inside the VM.
    let replicas = sb.replicas().await;
    let first_vm = replicas[0].name.clone().expect("name");
    let stray = format!("https://198.18.{}.250:2380", sb.emu.ip_block);
    let learner = support::sandbox::eventually("a stray learner is added", Duration::from_secs(30), || async {
        support::vm_etcd::add_learner(&sb.emu.endpoint, &first_vm, EtcdCluster::Main, &stray)
            .await
            .ok()
    })
    .await;
    sb.emu.clear_calls().await;
    let members_before = sb.member_ids().await;
    let run = sb.add(D).await;
    run.expect_code(2);
    assert!(run.error_lines()[0].contains("learner"), "{}", run.stderr);
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());
    assert_eq!(sb.member_ids().await, members_before, "no etcd change either");
    let removed = support::vm_etcd::etcdctl(
        &sb.emu.endpoint,
        &first_vm,
        EtcdCluster::Main,
        &["member", "remove", &format!("{:x}", learner.0)],
    )
    .await;
    assert_eq!(removed.code, 0, "remove stray learner: {}", removed.stderr);

    // A second up while one is running: the first waits for a slow VM, the second is refused.
    sb.next_vm_boots(json!({"kind": "boot_delay", "ms": 8000})).await;
    let sb = Arc::new(sb);
    let first = {
        let sb = sb.clone();
        tokio::spawn(async move { sb.add(D).await })
    };
    // Wait until the first has created its VM and is waiting for it (etcd calls only).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sb.replicas().await.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "first up never created its VM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.emu.clear_calls().await;
    let second = sb.add(B).await;
    second.expect_code(2);
    assert!(
        second.error_lines()[0].contains("another kube-ha operation is running"),
        "{}",
        second.stderr
    );
    assert!(
        sb.emu.mutating_calls_but_run_keys().await.is_empty(),
        "the refused up made mutating calls"
    );
    first.await.expect("join").expect_code(0);
    sb.assert_complete(3, &[]).await;

    // A crashed member: no add until it is replaced.
    let victim = sb.replicas().await[1].clone();
    let zone = victim
        .zone
        .as_deref()
        .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
        .expect("zone");
    let (status, _) = sb.emu.crash(&zone, victim.name.as_deref().expect("name")).await;
    assert_eq!(status, 200);
    sb.emu.clear_calls().await;
    let run = sb.add(D).await;
    run.expect_code(2);
    assert!(run.error_lines()[0].contains("not healthy"), "{}", run.stderr);
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());
}

/// Writes through the static IP every 100 ms until stopped; counts failures.
fn writer(
    sb: Arc<Sandbox>,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (api, ip) = (sb.api(), sb.static_ip().await);
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let put = api.put(format!("https://{ip}/kv/w{i}")).body("x").send().await;
            match put {
                Ok(r) if r.status().is_success() => writes.fetch_add(1, Ordering::SeqCst),
                _ => failures.fetch_add(1, Ordering::SeqCst),
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_boots_is_rolled_back_and_writes_keep_succeeding() {
    let sb = Arc::new(Sandbox::start(&[]));
    sb.first_master().await.expect_code(0);
    sb.add(C).await.expect_code(0);
    let inventory = sb.inventory().await;
    let members = sb.member_ids().await;

    let (stop, failures, writes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let w = writer(sb.clone(), stop.clone(), failures.clone(), writes.clone());
    sb.next_vm_boots(json!({"kind": "never_boot"})).await;
    let run = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", D),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_TIMEOUT", "24s"),
            ],
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    w.await.expect("writer");
    run.expect_code(1);
    assert!(run.error_lines()[0].contains("rolled back"), "{}", run.stderr);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "writes failed during the add and its rollback"
    );
    assert!(writes.load(Ordering::SeqCst) > 50, "the writer kept writing");
    assert_eq!(sb.inventory().await, inventory, "GCE resources exactly as before");
    assert_eq!(sb.member_ids().await, members, "etcd members exactly as before");
    sb.assert_complete(2, &[]).await;
    // And the next add works.
    sb.add(D).await.expect_code(0);
    sb.assert_complete(3, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_the_second_replica_also_undoes_the_load_balancer() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    let inventory = sb.inventory().await;
    sb.next_vm_boots(json!({"kind": "never_boot"})).await;
    let run = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", C),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_TIMEOUT", "20s"),
            ],
        )
        .await;
    run.expect_code(1);
    assert_eq!(
        sb.inventory().await,
        inventory,
        "the static IP is back on the first master, no pool, no rule"
    );
    sb.assert_complete(1, &[("k0", "zero")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_killed_right_after_the_learner_join_is_finished_by_the_next_run() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    let killed = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", C),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_FAILPOINT", "after:add_learner"),
            ],
        )
        .await;
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    let learners = sb
        .members(EtcdCluster::Main)
        .await
        .into_iter()
        .filter(|m| m.is_learner)
        .count();
    assert_eq!(learners, 1, "killed with a learner in main");

    let run = sb.add(C).await;
    run.expect_code(0);
    assert!(run.stderr.contains("took over the lock"), "{}", run.stderr);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    // No orphan: exactly two replicas' worth of disks and addresses.
    let inv = sb.inventory().await;
    assert_eq!(inv.iter().filter(|l| l.starts_with("disk ")).count(), 4, "{inv:?}");
    assert_eq!(inv.iter().filter(|l| l.starts_with("address ")).count(), 3, "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_killed_right_after_the_access_config_was_deleted_is_finished_by_the_next_run() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    let killed = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", C),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_FAILPOINT", "after:detach_external_ip"),
            ],
        )
        .await;
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    assert_eq!(
        Sandbox::external_ip(&sb.replicas().await[0]),
        None,
        "killed with the static IP detached"
    );

    sb.add(C).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero")]).await;
}

/// `status --output json` reports what the world holds: the replicas, both member lists with one
/// leader and nobody unhealthy, the pool and rule, and each replica's certificate expiry.
async fn assert_status_matches(sb: &Sandbox) {
    let run = sb
        .kube_ha(&["status", "--output", "json"], &[] as &[(&str, &str)])
        .await;
    run.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let names = sb.replica_names().await;
    let reported: Vec<String> = doc["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(reported, names);
    assert_eq!(doc["static_ip"], sb.static_ip().await.to_string());
    for e in doc["etcd"].as_array().expect("etcd") {
        let members = e["members"].as_array().expect("members");
        assert_eq!(members.len(), names.len(), "{e}");
        assert_eq!(members.iter().filter(|m| m["leader"] == true).count(), 1, "{e}");
        assert!(
            members.iter().all(|m| m["healthy"] == true && m["learner"] == false),
            "{e}"
        );
        let cluster = if e["cluster"] == "main" {
            EtcdCluster::Main
        } else {
            EtcdCluster::Events
        };
        let mut ids: Vec<String> = members
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_string())
            .collect();
        let mut real: Vec<String> = sb.members(cluster).await.iter().map(|m| m.id.to_string()).collect();
        ids.sort();
        real.sort();
        assert_eq!(ids, real, "the member IDs etcd itself reports");
    }
    assert_eq!(
        doc["load_balancer"]["forwarding_rule_ip"],
        sb.static_ip().await.to_string()
    );
    assert_eq!(
        doc["load_balancer"]["pool"].as_array().expect("pool").len(),
        names.len()
    );
    for n in &names {
        let certs: Vec<&serde_json::Value> = doc["certificates"]
            .as_array()
            .expect("certs")
            .iter()
            .filter(|c| c["replica"] == n.as_str())
            .collect();
        assert!(
            certs
                .iter()
                .any(|c| c["kind"] == "apiserver" && c["not_after"].as_str().is_some_and(|t| t.starts_with("20"))),
            "{n}: {certs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_copy_the_existing_masters_settings_not_the_operators_shell() {
    let sb = Sandbox::start(&[]);
    let first = [
        ("MASTER_SIZE", "n1-standard-8"),
        ("MASTER_DISK_SIZE", "50GB"),
        ("MASTER_ROOT_DISK_SIZE", "30GB"),
        ("KUBE_GCE_MASTER_IMAGE", "cos-109-17800-66-0"),
    ];
    sb.up("01-first-master.env", &first).await.expect_code(0);
    // The operator's shell no longer has those settings (kube-up would have used its defaults).
    sb.add(C).await.expect_code(0);
    let gce = sb.gce().await;
    let replica = sb.replicas().await.pop().expect("replica");
    let name = replica.name.clone().expect("name");
    assert!(
        replica
            .machine_type
            .as_deref()
            .is_some_and(|m| m.ends_with("/n1-standard-8")),
        "{:?}",
        replica.machine_type
    );
    let disks = gce.all_disks().await.expect("disks");
    let disk = |n: &str| {
        disks
            .iter()
            .find(|d| d.name.as_deref() == Some(n))
            .cloned()
            .unwrap_or_else(|| panic!("disk {n}"))
    };
    assert_eq!(disk(&format!("{name}-pd")).size_gb, Some(50));
    assert_eq!(disk(&name).size_gb, Some(30));
    assert_eq!(disk(&name).source_image, disk("kubernetes-master").source_image);
    assert!(
        disk(&name)
            .source_image
            .as_deref()
            .is_some_and(|i| i.ends_with("cos-109-17800-66-0"))
    );
}
