//! Issue 12, items 4 and 5 end to end on the sandbox: a first master made by `kube-ha up` with a
//! release tree (`KUBE_ROOT`) and artifact URLs carries the release bootstrap and kube-up's
//! scopes, and a replica added to it is **a copy of it**: every metadata item but the per-VM ones,
//! its service account and scopes, tags, network interface, machine type, disks and scheduling,
//! compared item by item through the Compute REST API with plain HTTP (nothing of kube-ha's reads
//! them). etcd's own member list, asked with `etcdctl` inside each VM, names every member by its
//! instance name on both clusters.

use kube_ha_testkit as support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube_ha_core::names::EtcdCluster;
use serde_json::Value;
use support::cluster::{PROJECT, Sandbox};
use support::sandbox::eventually;

const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const SERVER_TAR: &str =
    "https://storage.googleapis.com/kubernetes-release/v1.35.0/kubernetes-server-linux-amd64.tar.gz";
const MANIFESTS_TAR: &str = "https://storage.googleapis.com/kubernetes-release/v1.35.0/kubernetes-manifests.tar.gz";
/// kube-up's `--scopes storage-ro,compute-rw,monitoring,logging-write`, as GCE stores them
/// (written out here, not taken from kube-ha).
const KUBE_UP_SCOPES: [&str; 4] = [
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/compute",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/logging.write",
];
/// An operator's key on the first master: copied. kube-ha's own entries are per VM.
const OPERATOR_KEY: &str =
    "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyOperatorKeyOperatorKey0000 alice@laptop";
const KUBE_HA_KEY: &str = "kube-ha:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubeHaKeyKubeHaKeyKubeHaKeyKubeHaKe00 kube-ha";

/// `GET /compute/v1/projects/<project>/<path>` from the emulator, as JSON.
async fn rest(sb: &Sandbox, path: &str) -> Value {
    let url = format!("{}/compute/v1/projects/{PROJECT}/{path}", sb.emu.endpoint);
    let resp = reqwest::get(&url).await.expect("GET");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.expect("JSON")
}

/// The last segment of a resource URL.
fn last(v: &Value) -> &str {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    s.rsplit('/').next().unwrap_or(s)
}

/// An instance's metadata items by key.
fn items(i: &Value) -> BTreeMap<String, String> {
    i["metadata"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|it| {
            (
                it["key"].as_str().expect("key").to_string(),
                it["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `KEY: 'value'` lines of a kube-env, by key (read with plain string functions).
fn kube_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// The boot disk of an instance, as GCE holds it.
async fn boot_disk(sb: &Sandbox, i: &Value) -> Value {
    let source = i["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["boot"] == Value::Bool(true))
        .expect("a boot disk")["source"]
        .clone();
    rest(sb, &format!("zones/{}/disks/{}", last(&i["zone"]), last(&source))).await
}

/// `etcdctl member list -w json` inside `vm`, against its own etcd on loopback.
async fn members_inside(sb: &Sandbox, vm: &str, main: bool) -> Vec<Value> {
    let cluster = if main { EtcdCluster::Main } else { EtcdCluster::Events };
    let doc = eventually(
        &format!("etcdctl member list inside {vm}"),
        Duration::from_secs(120),
        || async {
            match support::vm_etcd::etcdctl_json(&sb.emu.endpoint, vm, cluster, &["member", "list"]).await {
                Ok(doc) => Some(doc),
                Err(e) => {
                    eprintln!("{e}");
                    None
                }
            }
        },
    )
    .await;
    doc["members"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_has_the_first_masters_bootstrap_items_scopes_tags_network_and_disks_item_by_item() {
    let sb = Sandbox::start(&[]);
    let root = support::workspace_root().join("tests/fixtures/kube-root");
    let root = root.to_str().expect("utf-8");
    sb.up(
        "01-first-master.env",
        &[
            ("KUBE_ROOT", root),
            ("SERVER_BINARY_TAR_URL", SERVER_TAR),
            ("KUBE_MANIFESTS_TAR_URL", MANIFESTS_TAR),
        ],
    )
    .await
    .expect_code(0);
    let master = "kubernetes-master";
    let first = rest(&sb, &format!("zones/{B}/instances/{master}")).await;

    // The first master: the release's scripts verbatim, kube-up's scopes.
    let first_items = items(&first);
    let fixture = |f: &str| std::fs::read_to_string(format!("{root}/cluster/gce/gci/{f}")).expect(f);
    assert_eq!(first_items["user-data"], fixture("master.yaml"));
    assert_eq!(first_items["configure-sh"], fixture("configure.sh"));
    for key in [
        "kubelet-config",
        "cluster-name",
        "cluster-location",
        "gci-update-strategy",
    ] {
        assert!(first_items.contains_key(key), "{key} on the first master");
    }
    let scopes: Vec<&str> = first["serviceAccounts"][0]["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(scopes, KUBE_UP_SCOPES);
    let first_env = kube_env(&first_items["kube-env"]);
    assert_eq!(first_env["SERVER_BINARY_TAR_URL"], SERVER_TAR);
    assert_eq!(first_env["KUBE_MANIFESTS_TAR_URL"], MANIFESTS_TAR);

    // An item someone else added, and ssh-keys with an operator's key and kube-ha's own.
    let gce = sb.gce().await;
    let mut md = gce
        .instance(B, master)
        .await
        .expect("get")
        .expect("exists")
        .metadata
        .expect("metadata");
    for (key, value) in [
        ("operator-note", "added by hand".to_string()),
        ("ssh-keys", format!("{OPERATOR_KEY}\n{KUBE_HA_KEY}")),
    ] {
        let mut item = google_cloud_compute_v1::model::metadata::Items::default();
        item.key = Some(key.to_string());
        item.value = Some(value);
        md.items.push(item);
    }
    gce.set_instance_metadata(B, master, md).await.expect("set metadata");
    let first = rest(&sb, &format!("zones/{B}/instances/{master}")).await;
    let first_items = items(&first);

    sb.add(C).await.expect_code(0);
    let names = sb.replica_names().await;
    let replica = names.iter().find(|n| *n != master).expect("the new replica").clone();
    let copy = rest(&sb, &format!("zones/{C}/instances/{replica}")).await;
    let copy_items = items(&copy);

    // Every metadata item but the per-VM ones, verbatim.
    let per_vm = ["kube-env", "kube-master-certs", "ssh-keys"];
    let shared = |m: &BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !per_vm.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(shared(&copy_items), shared(&first_items));
    assert_eq!(
        copy_items["ssh-keys"], OPERATOR_KEY,
        "the operator's key, not kube-ha's"
    );
    // kube-env: the bootstrap keys are the first master's; ETCD_HOSTNAME is never copied.
    let copy_env = kube_env(&copy_items["kube-env"]);
    for key in [
        "SERVER_BINARY_TAR_URL",
        "KUBE_MANIFESTS_TAR_URL",
        "KUBELET_ARGS",
        "SERVICEACCOUNT_ISSUER",
        "CLUSTER_NAME",
        "ENABLE_LEGACY_ABAC",
        "KUBERNETES_MASTER",
        "MULTIZONE",
    ] {
        assert_eq!(copy_env.get(key), first_env.get(key), "{key}");
    }
    assert!(!copy_env.contains_key("ETCD_HOSTNAME"));
    assert_eq!(copy_env["INITIAL_ETCD_CLUSTER_STATE"], "existing");

    // The GCE shape.
    assert_eq!(copy["serviceAccounts"], first["serviceAccounts"]);
    assert_eq!(copy["tags"]["items"], first["tags"]["items"]);
    assert_eq!(copy["canIpForward"], first["canIpForward"]);
    assert_eq!(last(&copy["machineType"]), last(&first["machineType"]));
    assert_eq!(copy["scheduling"]["preemptible"], first["scheduling"]["preemptible"]);
    let (nic, first_nic) = (&copy["networkInterfaces"][0], &first["networkInterfaces"][0]);
    assert_eq!(nic["network"], first_nic["network"]);
    assert_eq!(nic["subnetwork"], first_nic["subnetwork"]);
    assert_eq!(nic["aliasIpRanges"], first_nic["aliasIpRanges"]);
    assert_ne!(nic["networkIP"], first_nic["networkIP"], "its own address");
    let (disk, first_disk) = (boot_disk(&sb, &copy).await, boot_disk(&sb, &first).await);
    assert_eq!(last(&disk["type"]), last(&first_disk["type"]));
    assert_eq!(disk["sizeGb"], first_disk["sizeGb"]);
    assert_eq!(last(&disk["sourceImage"]), last(&first_disk["sourceImage"]));
    let data = rest(&sb, &format!("zones/{C}/disks/{replica}-pd")).await;
    let first_data = rest(&sb, &format!("zones/{B}/disks/{master}-pd")).await;
    assert_eq!(last(&data["type"]), last(&first_data["type"]));
    assert_eq!(data["sizeGb"], first_data["sizeGb"]);

    // etcd's own member lists, from inside each VM: members named etcd-<vm> with peer URLs on
    // the instance names (2380 main, 2381 events).
    for vm in [master, replica.as_str()] {
        for (main, port) in [(true, 2380), (false, 2381)] {
            let members = members_inside(&sb, vm, main).await;
            let mut peers: Vec<(String, Vec<Value>)> = members
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["peerURLs"].as_array().cloned().unwrap_or_default(),
                    )
                })
                .collect();
            peers.sort_by(|a, b| a.0.cmp(&b.0));
            let want: Vec<(String, Vec<Value>)> = {
                let mut w: Vec<(String, Vec<Value>)> = [master, replica.as_str()]
                    .iter()
                    .map(|n| (format!("etcd-{n}"), vec![Value::String(format!("https://{n}:{port}"))]))
                    .collect();
                w.sort_by(|a, b| a.0.cmp(&b.0));
                w
            };
            assert_eq!(peers, want, "inside {vm}, port {port}");
        }
    }
}
