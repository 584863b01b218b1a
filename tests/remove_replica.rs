//! Issue "remove and replace replicas": 3 → 2 → 1 with the load balancer demoted at the end,
//! leadership moved before the leader's member goes, quorum-unsafe removals refused, failed
//! replicas replaced, and removals killed at their riskiest points finished by the next run.

use kube_ha_testkit as support;

use std::sync::Arc;
use std::time::Duration;

use kube_ha_core::names::EtcdCluster;
use support::cluster::Sandbox;

const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const D: &str = "europe-west1-d";

async fn three(sb: &Sandbox) {
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    sb.add(C).await.expect_code(0);
    sb.add(D).await.expect_code(0);
}

fn zone_of(i: &google_cloud_compute_v1::model::Instance) -> String {
    let z = i.zone.as_deref().expect("zone");
    z.rsplit('/').next().unwrap_or(z).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_to_two_to_one_gives_the_static_ip_back_and_keeps_every_key() {
    let sb = Sandbox::start(&[]);
    three(&sb).await;
    sb.put("k1", "one").await.expect("put");

    // Wrong targets and a premature teardown are refused, one line, nothing changed.
    let c_name = sb.replicas().await[1].name.clone().expect("name");
    for (env, says) in [
        (
            vec![
                ("KUBE_DELETE_NODES", "false"),
                ("KUBE_GCE_ZONE", C),
                ("KUBE_REPLICA_NAME", "kubernetes-master-zzz"),
            ],
            "no replica named",
        ),
        (
            vec![
                ("KUBE_DELETE_NODES", "false"),
                ("KUBE_GCE_ZONE", B),
                ("KUBE_REPLICA_NAME", c_name.as_str()),
            ],
            "KUBE_GCE_ZONE=europe-west1-c",
        ),
        (
            vec![("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", "europe-west1-x")],
            "no replica in",
        ),
        (vec![("KUBE_GCE_ZONE", B)], "3 replicas remain"),
    ] {
        sb.emu.clear_calls().await;
        let run = sb.kube_ha(&["down"], &env).await;
        run.expect_code(2);
        assert_eq!(run.error_lines().len(), 1, "{}", run.stderr);
        assert!(run.error_lines()[0].contains(says), "{}", run.stderr);
        assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty(), "{env:?}");
    }

    sb.remove(C, None).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero"), ("k1", "one")]).await;
    sb.remove(D, None).await.expect_code(0);
    sb.assert_complete(1, &[("k0", "zero"), ("k1", "one")]).await;
    sb.emu.clear_calls().await;
    let last = sb.remove(B, None).await;
    last.expect_code(2);
    assert!(last.error_lines()[0].contains("last replica"), "{}", last.stderr);
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());
    let resp = sb
        .api()
        .get(format!("https://{}/healthz", sb.static_ip().await))
        .send()
        .await
        .expect("healthz");
    assert!(resp.status().is_success());

    // Teardown of the last replica leaves nothing behind.
    sb.kube_ha(&["down"], &[("KUBE_GCE_ZONE", B)]).await.expect_code(0);
    assert!(sb.inventory().await.is_empty(), "{:?}", sb.inventory().await);
    sb.assert_no_etcd_within(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_moves_leadership_before_its_member_goes() {
    let sb = Arc::new(Sandbox::start(&[]));
    three(&sb).await;
    let replicas = sb.replicas().await;
    let first_vm = replicas[0].name.clone().expect("name");
    let (_, leader) = sb.etcd_status(&first_vm, EtcdCluster::Main).await;
    let leader_id = leader.expect("leader");
    let members = sb.members(EtcdCluster::Main).await;
    let leader = members.iter().find(|m| m.id == leader_id).expect("leader member");
    let victim_name = leader.name.strip_prefix("etcd-").expect("name").to_string();
    let victim = replicas
        .iter()
        .find(|r| r.name.as_deref() == Some(victim_name.as_str()))
        .expect("victim VM")
        .clone();
    let observer = replicas
        .iter()
        .filter_map(|r| r.name.clone())
        .find(|n| *n != victim_name)
        .expect("observer");

    // Watch etcd's own view, inside another replica: (leader, is the victim still a member?),
    // as fast as etcdctl runs there, until the victim's member is gone.
    let samples = {
        let (endpoint, observer) = (sb.emu.endpoint.clone(), observer.clone());
        tokio::spawn(async move {
            support::vm_etcd::sample_leader_while_member(&endpoint, &observer, leader_id, 5000).await
        })
    };
    sb.remove(&zone_of(&victim), Some(&victim_name)).await.expect_code(0);
    let samples = samples.await.expect("observer").expect("samples");
    assert!(
        samples
            .iter()
            .any(|(l, present)| *present && l.is_some() && *l != Some(leader_id)),
        "leadership moved while the old leader was still a member: {samples:?}"
    );
    assert!(
        !samples.iter().any(|(l, present)| !*present && *l == Some(leader_id)),
        "{samples:?}"
    );
    sb.assert_complete(2, &[("k0", "zero")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_blocks_unsafe_removals_and_is_replaced_with_a_new_member_and_new_certs() {
    let sb = Sandbox::start(&[]);
    three(&sb).await;
    let replicas = sb.replicas().await;
    let dead = replicas[2].clone();
    let dead_name = dead.name.clone().expect("name");
    let dead_ids: Vec<u64> = sb
        .members(EtcdCluster::Main)
        .await
        .iter()
        .filter(|m| m.name == format!("etcd-{dead_name}"))
        .map(|m| m.id.0)
        .collect();
    let old_cert = kube_ha_core::ops::cluster::metadata_value(&dead, "kube-env")
        .expect("kube-env")
        .to_string();
    assert_eq!(sb.emu.crash(D, &dead_name).await.0, 200);

    // Removing a healthy replica now would leave 1 healthy of 2: refused, nothing changed.
    sb.emu.clear_calls().await;
    let run = sb.remove(C, None).await;
    run.expect_code(2);
    assert!(run.error_lines()[0].contains("quorum"), "{}", run.stderr);
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());

    // The dead one can go, and `up` in its zone replaces it.
    sb.remove(D, Some(&dead_name)).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    sb.add(D).await.expect_code(0);
    sb.assert_complete(3, &[("k0", "zero")]).await;
    let new = sb
        .replicas()
        .await
        .into_iter()
        .find(|r| zone_of(r) == D)
        .expect("new replica in d");
    let new_name = new.name.clone().expect("name");
    let new_ids: Vec<u64> = sb
        .members(EtcdCluster::Main)
        .await
        .iter()
        .filter(|m| m.name == format!("etcd-{new_name}"))
        .map(|m| m.id.0)
        .collect();
    assert_eq!(new_ids.len(), 1);
    assert!(!dead_ids.contains(&new_ids[0]), "a new member ID");
    let new_env = kube_ha_core::ops::cluster::metadata_value(&new, "kube-env").expect("kube-env");
    let cert = |env: &str| {
        kube_ha_core::pki::kube_env::KeyValues::from_yaml(env)
            .expect("yaml")
            .get("MASTER_CERT")
            .map(str::to_string)
    };
    assert_ne!(cert(new_env), cert(&old_cert), "new certificates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_vm_was_deleted_by_hand_is_cleaned_up_by_name() {
    let sb = Sandbox::start(&[]);
    three(&sb).await;
    let gone = sb.replicas().await[2].name.clone().expect("name");
    sb.gce().await.delete_instance(D, &gone).await.expect("delete by hand");
    assert_eq!(sb.members(EtcdCluster::Main).await.len(), 3, "its member remains");

    sb.remove(D, Some(&gone)).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    let inv = sb.inventory().await;
    assert!(
        !inv.iter().any(|l| l.contains(&gone)),
        "nothing of {gone} remains: {inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_killed_between_member_removal_and_vm_delete_is_finished_by_the_next_run() {
    let sb = Sandbox::start(&[]);
    three(&sb).await;
    let killed = sb
        .kube_ha(
            &["down"],
            &[
                ("KUBE_DELETE_NODES", "false"),
                ("KUBE_GCE_ZONE", C),
                ("KUBE_HA_FAILPOINT", "before:delete_vm"),
            ],
        )
        .await;
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    assert_eq!(sb.replicas().await.len(), 3, "killed before the VM delete");
    assert_eq!(
        sb.members(EtcdCluster::Main).await.len(),
        2,
        "killed after the member removal"
    );

    let run = sb.remove(C, None).await;
    run.expect_code(0);
    assert!(run.stderr.contains("took over the lock"), "{}", run.stderr);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    let inv = sb.inventory().await;
    assert_eq!(
        inv.iter().filter(|l| l.starts_with("disk ")).count(),
        4,
        "no orphan disk: {inv:?}"
    );
    assert_eq!(
        inv.iter().filter(|l| l.starts_with("address ")).count(),
        3,
        "no orphan address: {inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_killed_between_forwarding_rule_delete_and_ip_return_is_finished_by_the_next_run() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put");
    sb.add(C).await.expect_code(0);
    let killed = sb
        .kube_ha(
            &["down"],
            &[
                ("KUBE_DELETE_NODES", "false"),
                ("KUBE_GCE_ZONE", C),
                ("KUBE_HA_FAILPOINT", "after:delete_forwarding_rule"),
            ],
        )
        .await;
    assert_eq!(killed.code, -1, "{}", killed.stderr);

    sb.remove(C, None).await.expect_code(0);
    sb.assert_complete(1, &[("k0", "zero")]).await;
    let inv = sb.inventory().await;
    assert_eq!(inv.iter().filter(|l| l.starts_with("disk ")).count(), 2, "{inv:?}");
}
