//! Issue 12, stage "the pure core of the VM contract", end to end on the sandbox: the kube-env
//! and kube-master-certs of every replica, taken from the emulator through the Compute client,
//! read **the way the release's own scripts read them** and by nothing of kube-ha's: `grep` for
//! kube-up's one-line form, configure.sh's PyYAML `BaseLoader` → `readonly KEY=…` conversion
//! sourced into one `errexit nounset pipefail` shell as configure-helper does (a key in both maps
//! aborts it), configure-helper's own `base64 --decode | gunzip` pipelines, and the real
//! `openssl` for reading, verifying, SANs and public keys.

use kube_ha_testkit as support;

use std::path::Path;
use std::process::Command;

use google_cloud_compute_v1::model;
use kube_ha_core::bootstrap::{self, ReleaseScripts};
use kube_ha_core::names;
use kube_ha_core::ops::cluster::{ClusterEnv, first_master_metadata};
use kube_ha_core::pki::{ClusterCas, issue_cluster_clients};
use support::cluster::Sandbox;
use time::OffsetDateTime;

const C: &str = "europe-west1-c";

/// Names configure-helper assigns after sourcing both maps (cloud-provider-gcp 2e30d050c
/// `main`, `create-master-pki`, `create-master-etcd-apiserver-auth`, `prepare-kube-proxy-…`),
/// written out here rather than taken from kube-ha.
const ASSIGNED_BY_CONFIGURE_HELPER: &[&str] = &[
    "KUBE_CONTROLLER_MANAGER_TOKEN",
    "CLOUD_CONTROLLER_MANAGER_TOKEN",
    "KUBE_SCHEDULER_TOKEN",
    "KUBE_CLUSTER_AUTOSCALER_TOKEN",
    "ADDON_MANAGER_TOKEN",
    "PDCSI_CONTROLLER_TOKEN",
    "KUBE_BOOTSTRAP_TOKEN",
    "REGISTER_MASTER_KUBELET",
    "DOCKER_REGISTRY",
    "KUBELET_CONFIG_FILE_ARG",
    "APISERVER_SERVER_CERT",
    "APISERVER_SERVER_KEY",
    "APISERVER_CLIENT_CERT",
    "APISERVER_CLIENT_KEY",
    "SERVICEACCOUNT_CERT",
    "SERVICEACCOUNT_KEY",
    "CA_CERT_BUNDLE",
    "CA_CERT_PATH",
    "CA_KEY_PATH",
    "CA_CERT_BUNDLE_PATH",
    "APISERVER_SERVER_CERT_PATH",
    "APISERVER_SERVER_KEY_PATH",
    "SERVICEACCOUNT_CERT_PATH",
    "SERVICEACCOUNT_KEY_PATH",
    "ETCD_APISERVER_CA_CERT_PATH",
    "ETCD_APISERVER_CA_KEY_PATH",
    "ETCD_APISERVER_SERVER_CERT_PATH",
    "ETCD_APISERVER_SERVER_KEY_PATH",
    "ETCD_APISERVER_CLIENT_CERT_PATH",
    "ETCD_APISERVER_CLIENT_KEY_PATH",
];

/// The checks, as one bash script run in a directory holding `kube-env` and `kube-master-certs`
/// as the metadata server serves them. Leaves `sa.pub`, `peer-san.txt` and the decoded files.
const CONFIGURE_HELPER_READS: &str = r#"
set -o errexit -o nounset -o pipefail

# kube-up's own tools parse these files line by line: every line is KEY: 'value'.
for f in kube-env kube-master-certs; do
  if grep -vnE "^[A-Z_][A-Z0-9_]*: '.*'$" "$f"; then echo "$f: a line not in KEY: 'value' form" >&2; exit 1; fi
  dups=$(cut -d: -f1 "$f" | sort | uniq -d)
  [ -z "$dups" ] || { echo "$f: duplicate keys: $dups" >&2; exit 1; }
done

# configure.sh's conversion (download-kube-env / download-kube-master-certs), with shlex.quote,
# which pipes.quote is, as pipes is gone from Python 3.13.
for f in kube-env kube-master-certs; do
  python3 -c '
import shlex,sys,yaml
items = yaml.load(sys.stdin, Loader=yaml.BaseLoader).items()
for k, v in items:
    print("readonly {var}={value}".format(var=k, value=shlex.quote(str(v))))
' < "$f" > "$f.sh"
done

# configure-helper sources both into one shell: a key in both maps aborts here.
source kube-env.sh
source kube-master-certs.sh

# Nothing configure-helper assigns later may be readonly.
for name in $ASSIGNED; do
  if ! ( eval "$name=assigned" ) 2>/dev/null; then echo "$name is set in metadata" >&2; exit 1; fi
done

# create-master-etcd-auth and create-master-etcd-apiserver-auth, verbatim pipelines.
echo "${ETCD_CA_CERT}" | base64 --decode | gunzip > etcd-ca.crt
echo "${ETCD_PEER_KEY}" | base64 --decode > etcd-peer.key
echo "${ETCD_PEER_CERT}" | base64 --decode | gunzip > etcd-peer.crt
echo "${ETCD_APISERVER_CA_KEY}" | base64 --decode > etcd-apiserver-ca.key
echo "${ETCD_APISERVER_CA_CERT}" | base64 --decode | gunzip > etcd-apiserver-ca.crt
echo "${ETCD_APISERVER_SERVER_KEY}" | base64 --decode > etcd-apiserver-server.key
echo "${ETCD_APISERVER_SERVER_CERT}" | base64 --decode | gunzip > etcd-apiserver-server.crt
echo "${ETCD_APISERVER_CLIENT_KEY}" | base64 --decode > etcd-apiserver-client.key
echo "${ETCD_APISERVER_CLIENT_CERT}" | base64 --decode | gunzip > etcd-apiserver-client.crt
# create-master-pki (write-pki-data is base64 --decode).
echo "${CA_CERT}" | base64 --decode > ca.crt
echo "${CA_KEY}" | base64 --decode > ca.key
echo "${MASTER_CERT}" | base64 --decode > apiserver.crt
echo "${MASTER_KEY}" | base64 --decode > apiserver.key
# kube-up signs replica peer certificates with ETCD_CA_KEY, which it reads from kube-env.
grep -q '^ETCD_CA_KEY: ' kube-env
echo "${ETCD_CA_KEY}" | base64 --decode > etcd-ca.key

# Every other certificate and key is plain base64 PEM.
gzipped=" ETCD_CA_CERT ETCD_PEER_CERT ETCD_APISERVER_CA_CERT ETCD_APISERVER_SERVER_CERT ETCD_APISERVER_CLIENT_CERT "
for key in $(sed -n 's/^readonly \([A-Z0-9_]*\)=.*/\1/p' kube-env.sh kube-master-certs.sh | grep -E '_(CERT|KEY)$'); do
  case "$gzipped" in *" $key "*) continue ;; esac
  value="${!key}"
  [ -n "$value" ] || continue
  head=$(echo "$value" | base64 --decode | head -c 11)
  [ "$head" = "-----BEGIN " ] || { echo "$key is not base64 PEM" >&2; exit 1; }
done

# openssl reads every certificate and verifies each leaf against its CA.
for f in etcd-ca.crt etcd-peer.crt etcd-apiserver-ca.crt etcd-apiserver-server.crt etcd-apiserver-client.crt ca.crt apiserver.crt; do
  openssl x509 -in "$f" -noout
done
for f in etcd-peer.key etcd-apiserver-server.key etcd-apiserver-client.key etcd-ca.key etcd-apiserver-ca.key ca.key apiserver.key; do
  openssl pkey -in "$f" -noout
done
openssl verify -CAfile etcd-ca.crt -purpose sslserver etcd-peer.crt
openssl verify -CAfile etcd-ca.crt -purpose sslclient etcd-peer.crt
openssl verify -CAfile etcd-apiserver-ca.crt -purpose sslserver etcd-apiserver-server.crt
openssl verify -CAfile etcd-apiserver-ca.crt -purpose sslclient etcd-apiserver-client.crt
openssl verify -CAfile ca.crt -purpose sslserver apiserver.crt
openssl x509 -in etcd-peer.crt -noout -ext subjectAltName > peer-san.txt
openssl x509 -in etcd-apiserver-server.crt -noout -subject -nameopt RFC2253 -ext subjectAltName > server-san.txt
# The service-account key (MASTER_KEY, SERVICEACCOUNT_KEY's fallback) and the key the serving
# certificate certifies are one.
openssl pkey -in apiserver.key -pubout > sa.pub
openssl x509 -in apiserver.crt -noout -pubkey > apiserver.pub
cmp sa.pub apiserver.pub
"#;

/// A metadata item's value.
fn item<'a>(i: &'a model::Instance, key: &str) -> &'a str {
    i.metadata
        .as_ref()
        .and_then(|m| m.items.iter().find(|it| it.key.as_deref() == Some(key)))
        .and_then(|it| it.value.as_deref())
        .unwrap_or_else(|| panic!("{key} missing on {:?}", i.name))
}

/// What the checks leave behind for one VM.
struct Read {
    service_account_pubkey: String,
    peer_san: String,
    server_san: String,
    peer_cert: String,
}

/// Run [`CONFIGURE_HELPER_READS`] on one VM's two maps.
fn read_as_configure_helper(dir: &Path, kube_env: &str, master_certs: &str) -> Read {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("kube-env"), kube_env).expect("write");
    std::fs::write(dir.join("kube-master-certs"), master_certs).expect("write");
    let out = Command::new("bash")
        .args(["-c", CONFIGURE_HELPER_READS])
        .env("ASSIGNED", ASSIGNED_BY_CONFIGURE_HELPER.join(" "))
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
    Read {
        service_account_pubkey: read("sa.pub"),
        peer_san: read("peer-san.txt"),
        server_san: read("server-san.txt"),
        peer_cert: read("etcd-peer.crt"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_metadata_reads_as_configure_helper_reads_it_with_one_service_account_key() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add(C).await.expect_code(0);
    let replicas = sb.replicas().await;
    assert_eq!(replicas.len(), 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut reads = Vec::new();
    for vm in &replicas {
        let name = vm.name.as_deref().expect("name");
        eprintln!(
            "measured: {name}: kube-env {} bytes, kube-master-certs {} bytes (GCE allows 262144 each)",
            item(vm, names::METADATA_KUBE_ENV).len(),
            item(vm, names::METADATA_MASTER_CERTS).len()
        );
        let read = read_as_configure_helper(
            &dir.path().join(name),
            item(vm, names::METADATA_KUBE_ENV),
            item(vm, names::METADATA_MASTER_CERTS),
        );
        // The peer certificate is for this VM by name and on its loopback (openssl's words).
        assert!(
            read.peer_san.contains(&format!("DNS:{name}")),
            "{name}: {}",
            read.peer_san
        );
        assert!(
            read.peer_san.contains("IP Address:127.0.0.1"),
            "{name}: {}",
            read.peer_san
        );
        assert!(
            read.server_san.contains(&format!("CN=etcd-{name}")),
            "{name}: {}",
            read.server_san
        );
        assert!(
            read.server_san.contains(&format!("DNS:etcd-{name}")),
            "{name}: {}",
            read.server_san
        );
        reads.push(read);
    }
    // One service-account key for the cluster; a peer certificate per replica.
    assert_eq!(reads[0].service_account_pubkey, reads[1].service_account_pubkey);
    assert_ne!(reads[0].peer_cert, reads[1].peer_cert);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_master_with_the_bootstrap_of_a_release_tree_boots_and_carries_every_item() {
    use support::sandbox::*;
    let emu = Emulator::start(&[]);
    let gce = emu.gce().await;
    let static_ip = reserve_static_ip(&gce, MASTER).await;
    let internal_ip = reserve_internal_ip_and_disk(&gce, MASTER).await;
    let now = OffsetDateTime::now_utc();
    let cas = ClusterCas::generate(MASTER, now).expect("CAs");
    let certs = issue_certs(&cas, MASTER, internal_ip, static_ip);
    let cluster = ClusterEnv {
        master_name: MASTER.to_string(),
        multizone: true,
        quorum_read: false,
        static_ip,
        service_cluster_ip_range: "10.0.0.0/16".to_string(),
        dns_domain: "cluster.local".to_string(),
    };
    let clients = issue_cluster_clients(&cas, now).expect("cluster clients");
    let (mut kube_env, master_certs) = first_master_metadata(&cluster, &cas, &clients, &certs);
    let root = support::workspace_root().join("tests/fixtures/kube-root");
    let scripts = ReleaseScripts::read(&root).expect("fixture tree");
    let input = support::kube_up::bootstrap_input(PROJECT, static_ip);
    let boot = bootstrap::first_master_bootstrap(&input, &scripts).expect("bootstrap");
    boot.apply(&mut kube_env).expect("apply");
    let mut metadata = boot.metadata_items(&kube_env, &master_certs).expect("items");
    eprintln!(
        "measured: bootstrapped first master: {} metadata bytes in all (GCE allows 524288); kube-env {} keys",
        metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        kube_env.0.len()
    );
    metadata.push((names::METADATA_CLUSTER_NAME, "kubernetes".to_string()));

    let settings = kube_ha_core::config::MasterSettings::kube_up_defaults(3, "cos-cloud");
    let inst = kube_ha_core::gce::bodies::replica_instance(&kube_ha_core::gce::bodies::ReplicaInstanceSpec {
        project: PROJECT,
        zone: ZONE,
        name: MASTER,
        settings: &settings,
        network: "default",
        tag: MASTER,
        internal_ip,
        nat_ip: Some(static_ip),
        metadata,
    });
    // Its firewall rules, as `kube-ha up` makes them: the sandbox enforces them like GCE.
    create_master_firewalls(&gce).await;
    gce.insert_instance(ZONE, inst).await.expect("create instance");

    // The sandbox boots it (its boot ignores user-data and configure-sh) …
    wait_healthz(&api_client(&cas.cluster.cert_pem), static_ip).await;
    // … and GCE holds every bootstrap item verbatim, read back through the Compute client.
    let vm = gce.instance(ZONE, MASTER).await.expect("get").expect("exists");
    let fixture = |f: &str| std::fs::read_to_string(root.join("cluster/gce/gci").join(f)).expect(f);
    assert_eq!(item(&vm, names::METADATA_USER_DATA), fixture("master.yaml"));
    assert_eq!(item(&vm, names::METADATA_CONFIGURE_SH), fixture("configure.sh"));
    assert_eq!(item(&vm, names::METADATA_CLUSTER_LOCATION), ZONE);
    assert_eq!(item(&vm, names::METADATA_GCI_UPDATE_STRATEGY), "update_disabled");
    let kubelet_config = item(&vm, names::METADATA_KUBELET_CONFIG);
    for line in ["kind: KubeletConfiguration", "staticPodPath: /etc/kubernetes/manifests"] {
        assert!(kubelet_config.lines().any(|l| l == line), "{line} in {kubelet_config}");
    }

    // Its maps read as configure-helper reads them, with the boot keys of contract §7a.
    let env_text = item(&vm, names::METADATA_KUBE_ENV);
    let dir = tempfile::tempdir().expect("tempdir");
    read_as_configure_helper(
        &dir.path().join(MASTER),
        env_text,
        item(&vm, names::METADATA_MASTER_CERTS),
    );
    for line in [
        "KUBERNETES_MASTER: 'true'",
        "ENABLE_LEGACY_ABAC: 'false'",
        "SERVICEACCOUNT_ISSUER: 'https://kubernetes.io/kubernetes'",
        &format!("MASTER_ADVERTISE_ADDRESS: '{static_ip}'"),
        "INITIAL_ETCD_CLUSTER_STATE: 'new'",
    ] {
        assert!(env_text.lines().any(|l| l == line), "{line} in kube-env");
    }
    for key in [
        "KUBELET_ARGS",
        "SERVER_BINARY_TAR_URL",
        "KUBE_MANIFESTS_TAR_URL",
        "CNI_TAR_PREFIX",
    ] {
        assert!(
            env_text.lines().any(|l| l.starts_with(&format!("{key}: '"))),
            "{key} in kube-env"
        );
    }
}
