//! Every invocation of SPEC §1, from its `env-examples/` file, in the order an operator would run
//! them, on one sandbox: first master, add, dry run, status, remove in a zone, remove by name,
//! teardown.

use kube_ha_testkit as support;

use support::cluster::{Sandbox, env_example};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_invocations_work_as_written() {
    let sb = Sandbox::start(&[]);
    sb.kube_ha(&["up"], &env_example("01-first-master.env"))
        .await
        .expect_code(0);
    sb.kube_ha(&["up"], &env_example("02-add-replica.env"))
        .await
        .expect_code(0);
    sb.assert_complete(2, &[]).await;

    sb.emu.clear_calls().await;
    let dry = sb.kube_ha(&["up"], &env_example("07-dry-run.env")).await;
    dry.expect_code(0);
    assert!(dry.stdout.contains("europe-west1-d"), "{}", dry.stdout);
    assert!(
        sb.emu.mutating_calls_but_run_keys().await.is_empty(),
        "KUBE_HA_DRY_RUN=true changed something"
    );

    let status = sb.kube_ha(&["status"], &env_example("06-status.env")).await;
    status.expect_code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("KUBE_HA_OUTPUT=json prints one JSON document");
    assert_eq!(doc["replicas"].as_array().map(Vec::len), Some(2));

    sb.add("europe-west1-d").await.expect_code(0);
    sb.kube_ha(&["down"], &env_example("03-remove-replica-in-zone.env"))
        .await
        .expect_code(0);
    sb.assert_complete(2, &[]).await;
    assert!(
        !sb.replicas()
            .await
            .iter()
            .any(|r| r.zone.as_deref().is_some_and(|z| z.ends_with("europe-west1-c")))
    );

    sb.kube_ha(&["down"], &env_example("04-remove-named-replica.env"))
        .await
        .expect_code(0);
    sb.assert_complete(1, &[]).await;
    assert!(
        !sb.replica_names().await.contains(&"kubernetes-master".to_string()),
        "the first master itself can be removed"
    );

    sb.kube_ha(&["down"], &env_example("05-teardown.env"))
        .await
        .expect_code(0);
    assert!(sb.inventory().await.is_empty(), "{:?}", sb.inventory().await);
}
