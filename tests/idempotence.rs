//! Steno's test mode: with `KUBE_HA_FAILPOINT=repeat` every step, and every undo step of a
//! rollback, runs twice, and kube-ha fails if the second run of a mutating step changes anything.
//! A whole lifecycle under that mode must end exactly where the normal one does.

use kube_ha_testkit as support;

use std::time::Duration;

use serde_json::json;
use support::cluster::Sandbox;

const REPEAT: (&str, &str) = ("KUBE_HA_FAILPOINT", "repeat");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_and_every_undo_can_run_twice() {
    let sb = Sandbox::start(&[]);
    let run = sb.up("01-first-master.env", &[REPEAT]).await;
    run.expect_code(0);
    assert!(run.stderr.contains("repeated: nothing left to do"), "{}", run.stderr);
    sb.put("k0", "zero").await.expect("put");
    for zone in ["europe-west1-c", "europe-west1-d"] {
        sb.kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", zone),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                REPEAT,
            ],
        )
        .await
        .expect_code(0);
    }
    sb.assert_complete(3, &[("k0", "zero")]).await;

    // The undo of a replica that never boots, each undo step twice.
    let before = sb.inventory().await;
    sb.next_vm_boots(json!({"kind": "never_boot"})).await;
    let run = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", "europe-west1-b"),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_TIMEOUT", "20s"),
                REPEAT,
            ],
        )
        .await;
    run.expect_code(1);
    assert!(run.error_lines()[0].contains("rolled back"), "{}", run.stderr);
    assert_eq!(sb.inventory().await, before);

    for zone in ["europe-west1-d", "europe-west1-c"] {
        sb.kube_ha(
            &["down"],
            &[("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", zone), REPEAT],
        )
        .await
        .expect_code(0);
    }
    sb.assert_complete(1, &[("k0", "zero")]).await;
    sb.kube_ha(&["down"], &[("KUBE_GCE_ZONE", "europe-west1-b"), REPEAT])
        .await
        .expect_code(0);
    assert!(sb.inventory().await.is_empty(), "{:?}", sb.inventory().await);
    sb.assert_no_etcd_within(Duration::from_secs(10)).await;
}
