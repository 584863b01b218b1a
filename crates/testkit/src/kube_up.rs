//! A first master **as kube-up.sh made it**, for the adoption tests (issue 12 item 7): kube-up's
//! own `gcloud compute` command lines in `create-master`'s order (`create-network`'s ssh rule,
//! `${MASTER_NAME}-https`, `${MASTER_NAME}-pd`, `${MASTER_NAME}-etcd`, `${MASTER_NAME}-ip`, then
//! `create-master-instance-internal` with `--address`), run by the real gcloud against the
//! sandbox's emulator, and kube-up's metadata: every `--metadata-from-file` item, a kube-env whose
//! etcd-apiserver CA **is** the etcd peer CA, `INITIAL_ETCD_CLUSTER` the bare instance name, no
//! kube-ha record (`MASTER_NAME`/`REPLICA_NAME`), no kube-ha lock, no `<master>-internal` address
//! (kube-up reserved none outside private clusters; GCE picks nic0's IP).
//!
//! One deviation: kube-up's etcd server certificate names only `etcd-<vm>` and `127.0.0.1`, while
//! the fixture's certificates (issued by kube-ha's `issue_replica_certs`) also name nic0's IP.
//! kube-ha reaches etcd over SSH at `127.0.0.1` and needs no more; the IP is predicted (the
//! emulator hands out its VPC's first address to the first nic, see `kube-ha-emulator`'s `ips`
//! module) and checked once the VM exists.

use std::net::Ipv4Addr;
use std::path::Path;

use kube_ha_core::bootstrap::{self, BootstrapInput, ReleaseArtifacts, ReleaseScripts};
use kube_ha_core::names;
use kube_ha_core::ops::cluster::{ClusterEnv, first_master_metadata};
use kube_ha_core::pki::kube_env as ke;
use kube_ha_core::pki::{ClusterCas, ReplicaIdentity, issue_cluster_clients, issue_replica_certs};
use time::OffsetDateTime;

use super::cluster::{PROJECT, Sandbox};
use super::gcloud::Gcloud;

/// kube-up's `MASTER_NAME` (and `MASTER_TAG`).
pub const MASTER: &str = "kubernetes-master";
/// The zone kube-up created it in.
pub const ZONE: &str = "europe-west1-b";
/// Its region.
pub const REGION: &str = "europe-west1";
/// kube-up's `--scopes` for masters.
pub const SCOPES: &str = "storage-ro,compute-rw,monitoring,logging-write";
/// kube-up's release tarballs (as `upload-tars` rewrote the `gs://` URLs).
pub const SERVER_TAR: &str = "https://storage.googleapis.com/kubernetes-staging-0123456789-eu/kubernetes-devel/kubernetes-server-linux-amd64.tar.gz";
/// kube-up's manifests tarball.
pub const MANIFESTS_TAR: &str =
    "https://storage.googleapis.com/kubernetes-staging-0123456789-eu/kubernetes-devel/kubernetes-manifests.tar.gz";

/// What the replay made.
pub struct KubeUpMaster {
    /// `${MASTER_NAME}-ip`.
    pub static_ip: Ipv4Addr,
    /// nic0's IP, as GCE assigned it.
    pub internal_ip: Ipv4Addr,
    /// The CAs (etcd client CA = etcd peer CA).
    pub cas: ClusterCas,
    /// gcloud, for more of kube-up's command lines.
    pub gcloud: Gcloud,
}

/// Replay kube-up.sh's first master in `sb` (release scripts from `kube_root`).
pub async fn create_first_master(sb: &Sandbox, kube_root: &Path) -> KubeUpMaster {
    let gcloud = Gcloud::new(&sb.emu.endpoint, PROJECT);
    gcloud.ok("gcloud compute firewall-rules create default-default-ssh --network default --source-ranges 0.0.0.0/0 --allow tcp:22");
    gcloud.ok(&format!(
        "gcloud compute firewall-rules create {MASTER}-https --network default --target-tags {MASTER} --allow tcp:443"
    ));
    gcloud.ok(&format!(
        "gcloud compute disks create {MASTER}-pd --zone {ZONE} --type pd-ssd --size 20GB"
    ));
    gcloud.ok(&format!(
        "gcloud compute firewall-rules create {MASTER}-etcd --network default --source-tags {MASTER} \
         --allow tcp:2380,tcp:2381 --target-tags {MASTER}"
    ));
    gcloud.ok(&format!(
        "gcloud compute addresses create {MASTER}-ip --region {REGION} -q"
    ));
    let static_ip: Ipv4Addr = gcloud
        .ok(&format!(
            "gcloud compute addresses describe {MASTER}-ip --region {REGION} --format='value(address)'"
        ))
        .trim()
        .parse()
        .expect("the static IP");
    // 198.19.N.x external → 198.18.N.2, the VPC's first address (see the module doc).
    let [_, _, n, _] = static_ip.octets();
    let internal_ip = Ipv4Addr::new(198, 18, n, 2);

    // create-certs, create-etcd-certs, create-etcd-apiserver-certs (same CA directory).
    let now = OffsetDateTime::now_utc();
    let mut cas = ClusterCas::generate(MASTER, now).expect("CAs");
    cas.etcd_client = cas.etcd_peer.clone();
    let id = ReplicaIdentity {
        master_name: MASTER.to_string(),
        replica: MASTER.to_string(),
        internal_ip,
        static_ip,
        service_ip: Ipv4Addr::new(10, 0, 0, 1),
        dns_domain: "cluster.local".to_string(),
    };
    let certs = issue_replica_certs(&cas, &id, now).expect("certs");
    let clients = issue_cluster_clients(&cas, now).expect("client certs");
    let env = ClusterEnv {
        master_name: MASTER.to_string(),
        multizone: true,
        quorum_read: true,
        static_ip,
        service_cluster_ip_range: "10.0.0.0/16".to_string(),
        dns_domain: "cluster.local".to_string(),
    };
    let (mut kube_env, master_certs) = first_master_metadata(&env, &cas, &clients, &certs);
    // kube-up writes no record of kube-ha's.
    kube_env.remove(ke::MASTER_NAME);
    kube_env.remove(ke::REPLICA_NAME);
    let scripts = ReleaseScripts::read(kube_root).expect("release tree");
    let boot = bootstrap::first_master_bootstrap(&bootstrap_input(PROJECT, static_ip), &scripts).expect("bootstrap");
    boot.apply(&mut kube_env).expect("kube-env");
    let mut items = boot.metadata_items(&kube_env, &master_certs).expect("items");
    items.push((names::METADATA_CLUSTER_NAME, "kubernetes".to_string()));

    // create-master-instance-internal: --metadata-from-file for every item.
    let dir = tempfile::tempdir().expect("KUBE_TEMP");
    let files: Vec<String> = items
        .iter()
        .map(|(key, value)| {
            let path = dir.path().join(format!("{key}.txt"));
            std::fs::write(&path, value).expect("write metadata file");
            format!("{key}={}", path.display())
        })
        .collect();
    gcloud.ok(&format!(
        "gcloud compute instances create {MASTER} --zone {ZONE} --machine-type e2-standard-2 \
         --image-project cos-cloud --image cos-121-17412-1-21 --tags {MASTER} --scopes {SCOPES} \
         --metadata-from-file {files} \
         --disk name={MASTER}-pd,device-name=master-pd,mode=rw,boot=no,auto-delete=no --boot-disk-size 20GB \
         --network default --can-ip-forward --address {static_ip}",
        files = files.join(",")
    ));
    let got = gcloud.ok(&format!(
        "gcloud compute instances describe {MASTER} --zone {ZONE} --format='value(networkInterfaces[0].networkIP)'"
    ));
    assert_eq!(got.trim(), internal_ip.to_string(), "the predicted nic0 IP");
    // create-kubeconfig: context `${PROJECT}_${INSTANCE_PREFIX}`, the cluster CA, kubecfg's
    // system:masters client certificate.
    let admin = kube_ha_core::pki::issue_admin_client(&cas, now).expect("kubecfg certificate");
    kube_ha_core::ops::kubeconfig::merge(
        &sb.kubeconfig(),
        &format!("{PROJECT}_kubernetes"),
        static_ip,
        &cas.cluster.cert_pem,
        &admin,
    )
    .expect("kubeconfig");
    KubeUpMaster {
        static_ip,
        internal_ip,
        cas,
        gcloud,
    }
}

/// kube-up's bootstrap inputs for the first master of the project's cluster (`kubernetes`,
/// 3 nodes, default network in europe-west1-b, kube-up's staging tarballs) in `project`, with
/// the static IP it reserved.
pub fn bootstrap_input(project: &str, static_ip: Ipv4Addr) -> BootstrapInput {
    BootstrapInput {
        instance_prefix: "kubernetes".into(),
        project: project.into(),
        network_project: project.into(),
        zone: ZONE.into(),
        region: REGION.into(),
        network: "default".into(),
        subnetwork: String::new(),
        static_ip,
        num_nodes: 3,
        dns_domain: "cluster.local".into(),
        dns_server_ip: bootstrap::DEFAULT_DNS_SERVER_IP,
        ip_aliases: false,
        artifacts: ReleaseArtifacts {
            server_binary_tar_url: SERVER_TAR.into(),
            server_binary_tar_hash: String::new(),
            kube_manifests_tar_url: MANIFESTS_TAR.into(),
            kube_manifests_tar_hash: String::new(),
        },
    }
}
