//! Issue 12 item 7: a cluster **made by kube-up.sh** (`kube_ha_testkit::kube_up`: its command
//! lines in its order through the real gcloud, its metadata, etcd-apiserver CA = etcd peer CA,
//! bare-name peers, no kube-ha lock or records) is managed by kube-ha as it is, with no
//! conversion step: `status` reports it, it grows to three replicas across zones, a crashed
//! replica is replaced, it shrinks back to one and is torn down; a key written before the first
//! add is read back at the end. Observed through the emulator's REST API and etcd itself.

use kube_ha_testkit as support;

use kube_ha_core::names::EtcdCluster;
use support::cluster::Sandbox;
use support::kube_up::{self, MASTER};
use support::sandbox::{api_client, wait_healthz};

const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const D: &str = "europe-west1-d";

fn zone_of(i: &google_cloud_compute_v1::model::Instance) -> String {
    let z = i.zone.as_deref().unwrap_or_default();
    z.rsplit('/').next().unwrap_or(z).to_string()
}

/// Every member of both clusters is registered on its instance name (`https://<vm>:2380` and
/// `:2381`), as kube-up registered and configure-helper advertises.
async fn assert_peers_by_name(sb: &Sandbox) {
    let names = sb.replica_names().await;
    for cluster in EtcdCluster::ALL {
        let mut peers: Vec<Vec<String>> = sb.members(cluster).await.into_iter().map(|m| m.peer_urls).collect();
        peers.sort();
        let mut want: Vec<Vec<String>> = names.iter().map(|n| vec![cluster.peer_url_of(n)]).collect();
        want.sort();
        assert_eq!(peers, want, "etcd {cluster} peer URLs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_made_by_kube_up_grows_heals_shrinks_and_goes_with_no_conversion_and_keeps_its_keys() {
    let sb = Sandbox::start(&[]);
    let root = support::workspace_root().join("tests/fixtures/kube-root");
    let made = kube_up::create_first_master(&sb, &root).await;
    wait_healthz(&api_client(&made.cas.cluster.cert_pem), made.static_ip).await;
    assert!(sb.lock_record().await.is_none(), "kube-up leaves no kube-ha lock");
    sb.put("k0", "zero").await.expect("put k0 into kube-up's etcd");

    // status reads it as it is.
    let status = sb.kube_ha(&["status"], &[("KUBE_GCE_ZONE", B)]).await;
    status.expect_code(0);
    assert!(status.stdout.contains(MASTER), "{}", status.stdout);

    // Grow to three across zones.
    sb.add(C).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    sb.add(D).await.expect_code(0);
    sb.assert_complete(3, &[("k0", "zero")]).await;
    let zones: Vec<String> = sb.replicas().await.iter().map(zone_of).collect();
    assert_eq!(zones, [B, C, D]);
    assert_peers_by_name(&sb).await;
    sb.put("k1", "one").await.expect("put k1");

    // A crashed replica is removed by name and replaced in its zone.
    let dead = sb
        .replicas()
        .await
        .into_iter()
        .find(|r| zone_of(r) == D)
        .and_then(|r| r.name)
        .expect("the replica in d");
    assert_eq!(sb.emu.crash(D, &dead).await.0, 200);
    sb.remove(D, Some(&dead)).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero"), ("k1", "one")]).await;
    sb.add(D).await.expect_code(0);
    sb.assert_complete(3, &[("k0", "zero"), ("k1", "one")]).await;
    assert!(!sb.replica_names().await.contains(&dead), "a new VM replaced {dead}");
    assert_peers_by_name(&sb).await;

    let status = sb.kube_ha(&["status"], &[("KUBE_GCE_ZONE", B)]).await;
    status.expect_code(0);

    // Shrink to one: kube-up's own master is the one left.
    sb.remove(D, None).await.expect_code(0);
    sb.remove(C, None).await.expect_code(0);
    sb.assert_complete(1, &[("k0", "zero"), ("k1", "one")]).await;
    assert_eq!(sb.replica_names().await, [MASTER.to_string()]);
    assert_eq!(
        sb.get("k0").await.as_deref(),
        Some("zero"),
        "the key written before the first add"
    );

    // Teardown: nothing of the cluster is left.
    sb.kube_ha(&["down"], &[("KUBE_GCE_ZONE", B)]).await.expect_code(0);
    let left = sb.inventory().await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `etcdctl member list -w json` / `member update` inside `vm` on its own loopback etcd.
async fn etcdctl_inside(sb: &Sandbox, vm: &str, cluster: EtcdCluster, args: &[&str]) -> serde_json::Value {
    support::vm_etcd::etcdctl_json(&sb.emu.endpoint, vm, cluster, args)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What kube-ha wrote before the contract, on a running master: its member registered by IP
/// (`https://<internal IP>:2380`), the five etcd certificates as plain base64 PEM, `ETCD_CA_KEY`
/// in kube-master-certs, kube-ha's own `MASTER_NAME`/`REPLICA_NAME` records. kube-ha reads it and
/// grows and shrinks it with no conversion step; the new replica gets the contract's form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_kube_has_form_before_the_contract_is_read_grown_and_shrunk() {
    use base64::Engine as _;
    use kube_ha_core::pki::kube_env::{self as ke, KeyValues};
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.put("k0", "zero").await.expect("put k0");
    let gce = sb.gce().await;
    let first = gce.instance(B, MASTER).await.expect("get").expect("exists");
    let ip = Sandbox::internal_ip(&first);

    // Its members, registered by IP.
    for cluster in EtcdCluster::ALL {
        let list = etcdctl_inside(&sb, MASTER, cluster, &["member", "list"]).await;
        let id = list["members"][0]["ID"].as_u64().expect("member ID");
        let by_ip = cluster.peer_url(ip);
        etcdctl_inside(
            &sb,
            MASTER,
            cluster,
            &["member", "update", &format!("{id:x}"), &format!("--peer-urls={by_ip}")],
        )
        .await;
        let list = etcdctl_inside(&sb, MASTER, cluster, &["member", "list"]).await;
        assert_eq!(list["members"][0]["peerURLs"][0], by_ip.as_str());
    }
    // Its metadata, in the old encoding.
    let mut md = first.metadata.clone().expect("metadata");
    let value = |key: &str| {
        md.items
            .iter()
            .find(|i| i.key.as_deref() == Some(key))
            .and_then(|i| i.value.clone())
            .expect(key)
    };
    let mut env = KeyValues::from_yaml(&value("kube-env")).expect("kube-env");
    let mut certs = KeyValues::from_yaml(&value("kube-master-certs")).expect("certs");
    for key in ke::GZIPPED {
        for map in [&mut env, &mut certs] {
            if map.get(key).is_some() {
                let pem = map.pem(key).expect("pem");
                map.set(key, base64::engine::general_purpose::STANDARD.encode(pem));
            }
        }
    }
    let ca_key = env.remove(ke::ETCD_CA_KEY).expect("ETCD_CA_KEY");
    certs.set(ke::ETCD_CA_KEY, ca_key);
    for item in md.items.iter_mut() {
        match item.key.as_deref() {
            Some("kube-env") => item.value = Some(env.to_yaml()),
            Some("kube-master-certs") => item.value = Some(certs.to_yaml()),
            _ => {}
        }
    }
    gce.set_instance_metadata(B, MASTER, md).await.expect("old form");

    sb.add(C).await.expect_code(0);
    sb.assert_complete(2, &[("k0", "zero")]).await;
    let replica = sb
        .replica_names()
        .await
        .into_iter()
        .find(|n| n != MASTER)
        .expect("the new replica");
    // The copy is in the contract's form (configure-helper's gunzip pipelines read it).
    let copy = gce.instance(C, &replica).await.expect("get").expect("exists");
    let item = |i: &google_cloud_compute_v1::model::Instance, key: &str| {
        KeyValues::from_yaml(kube_ha_core::ops::cluster::metadata_value(i, key).expect(key)).expect(key)
    };
    let old = gce.instance(B, MASTER).await.expect("get").expect("exists");
    assert!(ke::check_vm_metadata(&item(&old, "kube-env"), &item(&old, "kube-master-certs")).is_err());
    ke::check_vm_metadata(&item(&copy, "kube-env"), &item(&copy, "kube-master-certs")).expect("contract form");
    // The old member keeps its IP registration; the new one is registered by name.
    for cluster in EtcdCluster::ALL {
        let mut peers: Vec<String> = sb
            .members(cluster)
            .await
            .into_iter()
            .flat_map(|m| m.peer_urls)
            .collect();
        peers.sort();
        let mut want = vec![cluster.peer_url(ip), cluster.peer_url_of(&replica)];
        want.sort();
        assert_eq!(peers, want, "etcd {cluster}");
    }
    sb.remove(C, None).await.expect_code(0);
    sb.assert_complete(1, &[("k0", "zero")]).await;
}
