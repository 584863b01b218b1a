//! What a **first master** needs, besides its certificates, to boot on real GCE through the
//! release's own `master.yaml` → `configure.sh` → `configure-helper.sh` (SPEC §8;
//! `reference/configure-helper-contract.md` §6, §7a): a pure builder from a plain input struct,
//! plus one small adapter that reads the two scripts from a `KUBE_ROOT` tree.
//!
//! Replicas need none of this: they copy every metadata item of the existing master (SPEC §2).
//! The sandbox needs none of it either (its boot ignores `user-data`), so tests feed it a tiny
//! fixture tree. Nothing here reads the environment: the caller fills [`BootstrapInput`].
//!
//! # Metadata items
//! | item | content | why |
//! |---|---|---|
//! | `user-data` | `KUBE_ROOT/cluster/gce/gci/master.yaml` verbatim | cloud-init: the `etcd` user, the systemd units that fetch and run `configure-sh` |
//! | `configure-sh` | `KUBE_ROOT/cluster/gce/gci/configure.sh` verbatim | fetched with `curl --fail --retry 600`; must come from the tree that built the tarballs |
//! | `kubelet-config` | [`master_kubelet_config`] | fetched forever; a KubeletConfiguration with `staticPodPath: /etc/kubernetes/manifests` or no static pod starts |
//! | `cluster-location` | the zone | kube-up writes it; replicas copy it |
//! | `gci-update-strategy` | `update_disabled` | kube-up writes it (no COS auto-update under a running master) |
//! | `kube-env`, `kube-master-certs` | the first master's maps (`ops::cluster`) plus [`Bootstrap::kube_env`] | below |
//!
//! Service account `default` with kube-up's scopes `storage-ro,compute-rw,monitoring,logging-write`
//! ([`SERVICE_ACCOUNT_SCOPES`], as the full URLs the Compute API takes): `storage-ro` lets
//! configure.sh fetch private tarballs with a token, `compute-rw` is what the cloud controller
//! manager gets its credentials for.
//!
//! # kube-env keys kube-ha writes for a first master, and why
//! Written by `ops::cluster::first_master_metadata` (every replica rewrites the per-replica ones):
//!
//! | key | value | why |
//! |---|---|---|
//! | `CA_CERT`, `MASTER_CERT`, `MASTER_KEY` | cluster CA; serving cert for the cluster's one key | expanded unguarded (boot breaks); `MASTER_KEY` is also the service-account key |
//! | `ETCD_CA_CERT`, `ETCD_CA_KEY`, `ETCD_PEER_CERT`, `ETCD_PEER_KEY` | etcd peer CA and this VM's peer pair | peer TLS (all three or peers speak http); kube-up keeps the CA key here to sign replicas |
//! | `INITIAL_ETCD_CLUSTER`, `INITIAL_ETCD_CLUSTER_STATE` | its own instance name; `new` | etcd's `--initial-cluster(-state)`: configure-helper expands bare names to `etcd-<vm>=https://<vm>:2380` (`:2381` for events) |
//! | `KUBELET_CERT`, `KUBELET_KEY` | a `system:nodes` client of the cluster CA | the master registers as a Node (with `KUBELET_APISERVER`) |
//! | `KUBERNETES_MASTER_NAME` | the static IP | what nodes and kubeconfigs use (kube-up: the reserved IP) |
//! | `SERVICE_CLUSTER_IP_RANGE`, `DNS_DOMAIN` | as configured | must agree with the serving cert's SANs |
//! | `MULTIZONE`, `ETCD_QUORUM_READ` | as configured | `/etc/gce.conf`; kube-up's HA flags, inherited by replicas |
//! | `MASTER_NAME`, `REPLICA_NAME` | names | kube-ha's own record (configure-helper ignores them) |
//!
//! Written by [`first_master_bootstrap`] (cloud-provider-gcp 1.35 defaults):
//!
//! | key | value | why |
//! |---|---|---|
//! | `SERVER_BINARY_TAR_URL`/`_HASH`, `KUBE_MANIFESTS_TAR_URL`/`_HASH` | from the input | the release artifacts; an empty hash makes configure.sh fetch `<url>.sha512` |
//! | `KUBELET_ARGS` | [`master_kubelet_args`] | expanded unguarded |
//! | `REQUIRE_METADATA_KUBELET_CONFIG_FILE` | `true` | as kube-up: the kubelet runs with `kubelet-config` |
//! | `VOLUME_PLUGIN_DIR` | `/home/kubernetes/flexvolume` | also in `KUBELET_ARGS` |
//! | `SERVICEACCOUNT_ISSUER` | `https://kubernetes.io/<CLUSTER_NAME>` | expanded unguarded |
//! | `ENABLE_LEGACY_ABAC` | `false` | anything else, absence included, turns ABAC on |
//! | `MASTER_ADVERTISE_ADDRESS` | the static IP | `--advertise-address`; in every serving cert's SANs |
//! | `KUBELET_APISERVER` | the static IP | with `KUBELET_CERT`/`_KEY` the master registers as a Node (the HA e2e counts them) |
//! | `CNI_STORAGE_URL_BASE`, `CNI_TAR_PREFIX` | kube-up's | expanded unguarded with kubenet |
//! | `ENABLE_AUTH_PROVIDER_GCP`, `AUTH_PROVIDER_GCP_{STORAGE_PATH,VERSION,LINUX_BIN_DIR,LINUX_CONF_FILE}` | kube-up's | expanded unguarded while the provider is on (kube-up's default) |
//! | `NETWORK_PROVIDER`, `CLOUD_PROVIDER_FLAG`, `RUN_CONTROLLERS`, `CCM_FEATURE_GATES`, `STORAGE_BACKEND` | `kubenet`, `external`, `*,-node-ipam-controller`, kube-up's list, `etcd3` | kube-up's control plane |
//! | `CLUSTER_IP_RANGE`, `ALLOCATE_NODE_CIDRS`, `DNS_SERVER_IP`, `NUM_NODES` | kube-up's by node count; `true`; `10.0.0.10` | pod CIDRs, cluster DNS |
//! | `CLUSTER_NAME`, `INSTANCE_PREFIX`, `NODE_INSTANCE_PREFIX`, `NODE_TAGS`, `PROJECT_ID`, `NETWORK_PROJECT_ID`, `NODE_NETWORK`, `NODE_SUBNETWORK`, `ZONE`, `REGION` | from the input | `/etc/gce.conf` for the cloud controller manager |
//! | `ENABLE_IP_ALIASES`, `NODE_IPAM_MODE` | `true`, `CloudAllocator` (only with IP aliases) | the VM then needs alias ranges instead of `canIpForward` |
//!
//! In kube-master-certs (`ops::cluster`): `CA_KEY`, `ETCD_APISERVER_*`, and `KUBEAPISERVER_CERT`/
//! `_KEY` (create-master-pki expands them unguarded). Not written, deliberately: `KUBE_BEARER_TOKEN` (kube-ha's
//! kubeconfig uses a client certificate), `KUBECFG_*` (configure-helper never reads them), the
//! aggregator, konnectivity and cloud-pvl groups (optional; their absence turns them off), the
//! `*_RUNASUSER` ids (optional; must be consistent if given), `ETCD_HOSTNAME` (per VM).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::names;
use crate::pki::kube_env::{self as ke, KeyValues};

/// `master.yaml` under `KUBE_ROOT`.
pub const MASTER_YAML: &str = "cluster/gce/gci/master.yaml";
/// `configure.sh` under `KUBE_ROOT`.
pub const CONFIGURE_SH: &str = "cluster/gce/gci/configure.sh";

/// The service account kube-up gave masters: the project's default compute account.
pub const SERVICE_ACCOUNT: &str = "default";
/// kube-up's `--scopes storage-ro,compute-rw,monitoring,logging-write`, as gcloud expands them.
pub const SERVICE_ACCOUNT_SCOPES: [&str; 4] = [
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/compute",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/logging.write",
];

/// `gci-update-strategy`: kube-up's `update_disabled`.
pub const GCI_UPDATE_STRATEGY: &str = "update_disabled";

/// kube-up's flexvolume directory.
pub const VOLUME_PLUGIN_DIR: &str = "/home/kubernetes/flexvolume";
/// kube-up's default cluster DNS service IP (`KUBE_DNS_SERVER_IP`).
pub const DEFAULT_DNS_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// CNI plugins download base (config-default.sh).
pub const CNI_STORAGE_URL_BASE: &str = "https://github.com/containernetworking/plugins/releases/download";
/// CNI plugins tarball prefix (config-default.sh).
pub const CNI_TAR_PREFIX: &str = "cni-plugins-linux-amd64-";
/// auth-provider-gcp download base (config-common.sh).
pub const AUTH_PROVIDER_GCP_STORAGE_PATH: &str = "https://storage.googleapis.com/gke-release/auth-provider-gcp";
/// auth-provider-gcp version (config-common.sh).
pub const AUTH_PROVIDER_GCP_VERSION: &str = "v0.0.2-gke.4";
/// Directory of the auth-provider-gcp binary (config-common.sh).
pub const AUTH_PROVIDER_GCP_LINUX_BIN_DIR: &str = "/home/kubernetes/bin";
/// The kubelet's credential-provider config (config-common.sh).
pub const AUTH_PROVIDER_GCP_LINUX_CONF_FILE: &str = "/home/kubernetes/cri-auth-config.yaml";
/// Controllers of kube-controller-manager with an external cloud provider (config-default.sh).
pub const RUN_CONTROLLERS: &str = "*,-node-ipam-controller";
/// The feature gates the CCM understands (config-default.sh).
pub const CCM_FEATURE_GATES: &str = "APIPriorityAndFairness,APIResponseCompression,APIServerIdentity,APIServerTracing,AllAlpha,AllBeta,KMSv2,OpenAPIEnums,OpenAPIV3,ServerSideFieldValidation,StorageVersionAPI,StorageVersionHash";

/// GCE's limit on all metadata items of one instance together (keys and values).
pub const METADATA_TOTAL_LIMIT: usize = 512 * 1024;

/// Why a first master's bootstrap cannot be built. Every variant is a refusal before acting.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// `KUBE_ROOT` lacks the release's GCE scripts (removed upstream after Kubernetes 1.35).
    #[error(
        "KUBE_ROOT={} has no {}: set KUBE_ROOT to a Kubernetes release tree that still has cluster/gce/gci (1.35 or older)",
        root.display(),
        missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingScripts {
        /// The tree.
        root: PathBuf,
        /// What is missing in it.
        missing: Vec<PathBuf>,
    },
    /// A script exists but could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A script is not UTF-8 text (metadata values are strings).
    #[error("{} is not text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Release artifacts missing from the input.
    #[error("a first master on GCE needs {} (the release tarballs configure.sh downloads)", .0.join(", "))]
    MissingArtifacts(Vec<&'static str>),
    /// An artifact setting configure.sh cannot use.
    #[error("{key}={value:?}: {why}")]
    BadArtifact {
        /// Which setting.
        key: &'static str,
        /// Its value.
        value: String,
        /// What configure.sh needs.
        why: &'static str,
    },
    /// The bootstrap and the first master's maps disagree on a key.
    #[error("{key} is {ours:?} in the bootstrap but {theirs:?} in the first master's metadata")]
    Conflict {
        /// The key.
        key: String,
        /// The bootstrap's value.
        ours: String,
        /// The other value.
        theirs: String,
    },
    /// The instance's metadata would exceed GCE's limits.
    #[error("metadata item {item} is {bytes} bytes; GCE allows {limit}")]
    TooLarge {
        /// The item, or `all items` for the total.
        item: String,
        /// Its size.
        bytes: usize,
        /// GCE's limit.
        limit: usize,
    },
}

/// The release's two GCE scripts, as read from `KUBE_ROOT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseScripts {
    /// `cluster/gce/gci/master.yaml` (the `user-data` item).
    pub master_yaml: String,
    /// `cluster/gce/gci/configure.sh` (the `configure-sh` item).
    pub configure_sh: String,
}

impl ReleaseScripts {
    /// Read both from a release tree; every missing file is named at once.
    pub fn read(kube_root: &Path) -> Result<ReleaseScripts, BootstrapError> {
        let paths = [MASTER_YAML, CONFIGURE_SH].map(|p| kube_root.join(p));
        let missing: Vec<PathBuf> = paths.iter().filter(|p| !p.is_file()).cloned().collect();
        if !missing.is_empty() {
            return Err(BootstrapError::MissingScripts {
                root: kube_root.to_path_buf(),
                missing,
            });
        }
        let [master_yaml, configure_sh] = paths;
        Ok(ReleaseScripts {
            master_yaml: read_text(&master_yaml)?,
            configure_sh: read_text(&configure_sh)?,
        })
    }
}

fn read_text(path: &Path) -> Result<String, BootstrapError> {
    let bytes = std::fs::read(path).map_err(|source| BootstrapError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| BootstrapError::NotText {
        path: path.to_path_buf(),
    })
}

/// The release tarballs configure.sh downloads (comma-separated URL lists, kube-up's form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseArtifacts {
    /// `SERVER_BINARY_TAR_URL`.
    pub server_binary_tar_url: String,
    /// `SERVER_BINARY_TAR_HASH` (sha512 or sha1 hex; empty: configure.sh fetches `<url>.sha512`).
    pub server_binary_tar_hash: String,
    /// `KUBE_MANIFESTS_TAR_URL`.
    pub kube_manifests_tar_url: String,
    /// `KUBE_MANIFESTS_TAR_HASH`.
    pub kube_manifests_tar_hash: String,
}

impl ReleaseArtifacts {
    /// Fail closed on what configure.sh would loop on forever or cannot fetch: missing URLs,
    /// URLs curl cannot download, hashes that are neither sha1 nor sha512 hex.
    pub fn check(&self) -> Result<(), BootstrapError> {
        let missing: Vec<&'static str> = [
            (ke::SERVER_BINARY_TAR_URL, &self.server_binary_tar_url),
            (ke::KUBE_MANIFESTS_TAR_URL, &self.kube_manifests_tar_url),
        ]
        .into_iter()
        .filter(|(_, v)| v.trim().is_empty())
        .map(|(k, _)| k)
        .collect();
        if !missing.is_empty() {
            return Err(BootstrapError::MissingArtifacts(missing));
        }
        for (key, urls) in [
            (ke::SERVER_BINARY_TAR_URL, &self.server_binary_tar_url),
            (ke::KUBE_MANIFESTS_TAR_URL, &self.kube_manifests_tar_url),
        ] {
            if !urls
                .split(',')
                .all(|u| u.starts_with("https://") || u.starts_with("http://"))
            {
                return Err(BootstrapError::BadArtifact {
                    key,
                    value: urls.clone(),
                    why: "configure.sh downloads with curl: give http(s) URLs (gs://b/o is https://storage.googleapis.com/b/o)",
                });
            }
            if !urls.split(',').all(|u| u.ends_with(".tar.gz")) {
                return Err(BootstrapError::BadArtifact {
                    key,
                    value: urls.clone(),
                    why: "configure.sh finds the hash at <url with .tar.gz>.sha512: give .tar.gz URLs",
                });
            }
        }
        for (key, hash) in [
            (ke::SERVER_BINARY_TAR_HASH, &self.server_binary_tar_hash),
            (ke::KUBE_MANIFESTS_TAR_HASH, &self.kube_manifests_tar_hash),
        ] {
            let hex = hash.chars().all(|c| c.is_ascii_hexdigit());
            if !hash.is_empty() && !(hex && (hash.len() == 40 || hash.len() == 128)) {
                return Err(BootstrapError::BadArtifact {
                    key,
                    value: hash.clone(),
                    why: "configure.sh checks sha1 or sha512 hex (40 or 128 digits) and retries forever on a mismatch",
                });
            }
        }
        Ok(())
    }
}

/// Everything about the cluster a first master's bootstrap depends on. The wiring fills it from
/// kube-up's environment variables; nothing here reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapInput {
    /// `KUBE_GCE_INSTANCE_PREFIX` (kube-up's `CLUSTER_NAME` defaults to it).
    pub instance_prefix: String,
    /// `PROJECT`.
    pub project: String,
    /// The project owning the network (kube-up's `NETWORK_PROJECT`, by default `PROJECT`).
    pub network_project: String,
    /// The first master's zone.
    pub zone: String,
    /// Its region.
    pub region: String,
    /// `KUBE_GCE_NETWORK`.
    pub network: String,
    /// The subnetwork, empty for an auto-mode network (kube-up's `SUBNETWORK`).
    pub subnetwork: String,
    /// The cluster's static IP.
    pub static_ip: Ipv4Addr,
    /// `NUM_NODES` (sizes the pod range as kube-up did).
    pub num_nodes: u32,
    /// `DNS_DOMAIN`.
    pub dns_domain: String,
    /// Cluster DNS service IP ([`DEFAULT_DNS_SERVER_IP`]).
    pub dns_server_ip: Ipv4Addr,
    /// Pod IPs from alias ranges (kube-up's default on custom networks) rather than routes.
    pub ip_aliases: bool,
    /// The release tarballs.
    pub artifacts: ReleaseArtifacts,
}

impl BootstrapInput {
    /// kube-up's `CLUSTER_NAME`.
    pub fn cluster_name(&self) -> &str {
        &self.instance_prefix
    }
}

/// The first master's bootstrap: kube-env and kube-master-certs keys to add to the maps of
/// `ops::cluster::first_master_metadata`, the other metadata items, and its service account.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// kube-env keys (see the module doc).
    pub kube_env: KeyValues,
    /// `user-data`, `configure-sh`, `kubelet-config`, `cluster-location`, `gci-update-strategy`.
    pub items: Vec<(&'static str, String)>,
    /// The service account's email ([`SERVICE_ACCOUNT`]).
    pub service_account: &'static str,
    /// Its scopes ([`SERVICE_ACCOUNT_SCOPES`]).
    pub scopes: Vec<String>,
}

/// Build the bootstrap of a first master (pure).
pub fn first_master_bootstrap(input: &BootstrapInput, scripts: &ReleaseScripts) -> Result<Bootstrap, BootstrapError> {
    input.artifacts.check()?;
    let static_ip = input.static_ip.to_string();
    let node_prefix = format!("{}-minion", input.instance_prefix);
    let mut env = KeyValues::default();
    let a = &input.artifacts;
    for (key, value) in [
        (ke::CLUSTER_NAME, input.cluster_name().to_string()),
        (ke::INSTANCE_PREFIX, input.instance_prefix.clone()),
        (ke::NODE_INSTANCE_PREFIX, node_prefix.clone()),
        (ke::NODE_TAGS, node_prefix),
        (ke::PROJECT_ID, input.project.clone()),
        (ke::NETWORK_PROJECT_ID, input.network_project.clone()),
        (ke::NODE_NETWORK, input.network.clone()),
        (ke::NODE_SUBNETWORK, input.subnetwork.clone()),
        (ke::ZONE, input.zone.clone()),
        (ke::REGION, input.region.clone()),
        (ke::SERVER_BINARY_TAR_URL, a.server_binary_tar_url.clone()),
        (ke::SERVER_BINARY_TAR_HASH, a.server_binary_tar_hash.clone()),
        (ke::KUBE_MANIFESTS_TAR_URL, a.kube_manifests_tar_url.clone()),
        (ke::KUBE_MANIFESTS_TAR_HASH, a.kube_manifests_tar_hash.clone()),
        (ke::KUBELET_ARGS, master_kubelet_args()),
        (ke::REQUIRE_METADATA_KUBELET_CONFIG_FILE, "true".to_string()),
        (ke::VOLUME_PLUGIN_DIR, VOLUME_PLUGIN_DIR.to_string()),
        (
            ke::SERVICEACCOUNT_ISSUER,
            format!("https://kubernetes.io/{}", input.cluster_name()),
        ),
        (ke::ENABLE_LEGACY_ABAC, "false".to_string()),
        (ke::MASTER_ADVERTISE_ADDRESS, static_ip.clone()),
        (ke::KUBELET_APISERVER, static_ip),
        (ke::CNI_STORAGE_URL_BASE, CNI_STORAGE_URL_BASE.to_string()),
        (ke::CNI_TAR_PREFIX, CNI_TAR_PREFIX.to_string()),
        (ke::ENABLE_AUTH_PROVIDER_GCP, "true".to_string()),
        (
            ke::AUTH_PROVIDER_GCP_STORAGE_PATH,
            AUTH_PROVIDER_GCP_STORAGE_PATH.to_string(),
        ),
        (ke::AUTH_PROVIDER_GCP_VERSION, AUTH_PROVIDER_GCP_VERSION.to_string()),
        (
            ke::AUTH_PROVIDER_GCP_LINUX_BIN_DIR,
            AUTH_PROVIDER_GCP_LINUX_BIN_DIR.to_string(),
        ),
        (
            ke::AUTH_PROVIDER_GCP_LINUX_CONF_FILE,
            AUTH_PROVIDER_GCP_LINUX_CONF_FILE.to_string(),
        ),
        (ke::NETWORK_PROVIDER, "kubenet".to_string()),
        (ke::CLOUD_PROVIDER_FLAG, "external".to_string()),
        (ke::RUN_CONTROLLERS, RUN_CONTROLLERS.to_string()),
        (ke::CCM_FEATURE_GATES, CCM_FEATURE_GATES.to_string()),
        (ke::STORAGE_BACKEND, "etcd3".to_string()),
        (ke::CLUSTER_IP_RANGE, cluster_ip_range(input.num_nodes).to_string()),
        (ke::ALLOCATE_NODE_CIDRS, "true".to_string()),
        (ke::DNS_SERVER_IP, input.dns_server_ip.to_string()),
        (ke::NUM_NODES, input.num_nodes.to_string()),
    ] {
        env.set(key, value);
    }
    if input.ip_aliases {
        env.set(ke::ENABLE_IP_ALIASES, "true");
        env.set(ke::NODE_IPAM_MODE, "CloudAllocator");
    }
    Ok(Bootstrap {
        kube_env: env,
        items: vec![
            (names::METADATA_USER_DATA, scripts.master_yaml.clone()),
            (names::METADATA_CONFIGURE_SH, scripts.configure_sh.clone()),
            (
                names::METADATA_KUBELET_CONFIG,
                master_kubelet_config(input.dns_server_ip, &input.dns_domain),
            ),
            (names::METADATA_CLUSTER_LOCATION, input.zone.clone()),
            (names::METADATA_GCI_UPDATE_STRATEGY, GCI_UPDATE_STRATEGY.to_string()),
        ],
        service_account: SERVICE_ACCOUNT,
        scopes: SERVICE_ACCOUNT_SCOPES.iter().map(|s| s.to_string()).collect(),
    })
}

impl Bootstrap {
    /// Add the bootstrap's keys to the first master's kube-env (all of them go there; its
    /// kube-master-certs is `ops::cluster`'s alone). A key both set to different values is an
    /// error: one fact, one value.
    pub fn apply(&self, kube_env: &mut KeyValues) -> Result<(), BootstrapError> {
        for (key, value) in &self.kube_env.0 {
            match kube_env.get(key) {
                Some(other) if other != value => {
                    return Err(BootstrapError::Conflict {
                        key: key.clone(),
                        ours: value.clone(),
                        theirs: other.to_string(),
                    });
                }
                _ => kube_env.set(key, value.clone()),
            }
        }
        Ok(())
    }

    /// Every metadata item of the first master, rendered, within GCE's limits: the bootstrap
    /// items, then kube-env and kube-master-certs.
    pub fn metadata_items(
        &self,
        kube_env: &KeyValues,
        master_certs: &KeyValues,
    ) -> Result<Vec<(&'static str, String)>, BootstrapError> {
        let mut items = self.items.clone();
        items.push((names::METADATA_KUBE_ENV, kube_env.to_yaml()));
        items.push((names::METADATA_MASTER_CERTS, master_certs.to_yaml()));
        check_sizes(&items)?;
        Ok(items)
    }
}

/// GCE's limits: each value ≤ 256 KiB, all keys and values together ≤ 512 KiB.
pub fn check_sizes(items: &[(&str, String)]) -> Result<(), BootstrapError> {
    for (item, value) in items {
        if value.len() > ke::METADATA_VALUE_LIMIT {
            return Err(BootstrapError::TooLarge {
                item: item.to_string(),
                bytes: value.len(),
                limit: ke::METADATA_VALUE_LIMIT,
            });
        }
    }
    let total: usize = items.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > METADATA_TOTAL_LIMIT {
        return Err(BootstrapError::TooLarge {
            item: "all items".to_string(),
            bytes: total,
            limit: METADATA_TOTAL_LIMIT,
        });
    }
    Ok(())
}

/// kube-up's pod range for `num_nodes` (config-common.sh `get-cluster-ip-range`).
pub fn cluster_ip_range(num_nodes: u32) -> &'static str {
    match num_nodes {
        0..=1000 => "10.64.0.0/14",
        1001..=2000 => "10.64.0.0/13",
        2001..=4000 => "10.64.0.0/12",
        _ => "10.64.0.0/11",
    }
}

/// The master kubelet's flags as kube-up's `construct-linux-kubelet-flags master` renders them
/// with its defaults (external cloud provider, auth-provider-gcp on, `REGISTER_MASTER_KUBELET`
/// true, containerd on COS).
pub fn master_kubelet_args() -> String {
    [
        "--v=2".to_string(),
        "--cloud-provider=external".to_string(),
        "--experimental-mounter-path=/home/kubernetes/containerized_mounter/mounter".to_string(),
        "--cert-dir=/var/lib/kubelet/pki/".to_string(),
        format!("--image-credential-provider-config={AUTH_PROVIDER_GCP_LINUX_CONF_FILE}"),
        format!("--image-credential-provider-bin-dir={AUTH_PROVIDER_GCP_LINUX_BIN_DIR}"),
        "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule".to_string(),
        "--kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig".to_string(),
        format!("--volume-plugin-dir={VOLUME_PLUGIN_DIR}"),
        "--container-runtime-endpoint=unix:///run/containerd/containerd.sock".to_string(),
        "--runtime-cgroups=/system.slice/containerd.service".to_string(),
    ]
    .join(" ")
}

/// The `kubelet-config` item: kube-up's `print-common-kubelet-config` followed by
/// `print-master-kubelet-config` with its defaults (`EVICTION_HARD`, no feature gates, the
/// kubelet registering, so no `podCidr`).
pub fn master_kubelet_config(dns_server_ip: Ipv4Addr, dns_domain: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    format!(
        "kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
cgroupRoot: /
clusterDNS:
  - {dns}
clusterDomain: {domain}
readOnlyPort: 10255
evictionHard:
  memory.available: '250Mi'
  nodefs.available: '10%'
  nodefs.inodesFree: '5%'
enableDebuggingHandlers: false
hairpinMode: none
staticPodPath: /etc/kubernetes/manifests
authentication:
  webhook:
    enabled: false
  anonymous:
    enabled: true
authorization:
  mode: AlwaysAllow
",
        dns = quote(&dns_server_ip.to_string()),
        domain = quote(dns_domain),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/kube-root")
    }

    fn input() -> BootstrapInput {
        BootstrapInput {
            instance_prefix: "kubernetes".into(),
            project: "my-project".into(),
            network_project: "my-project".into(),
            zone: "europe-west1-b".into(),
            region: "europe-west1".into(),
            network: "default".into(),
            subnetwork: String::new(),
            static_ip: Ipv4Addr::new(34, 1, 2, 3),
            num_nodes: 3,
            dns_domain: "cluster.local".into(),
            dns_server_ip: DEFAULT_DNS_SERVER_IP,
            ip_aliases: false,
            artifacts: ReleaseArtifacts {
                server_binary_tar_url: "https://storage.googleapis.com/b/kubernetes-server-linux-amd64.tar.gz".into(),
                server_binary_tar_hash: "a".repeat(128),
                kube_manifests_tar_url: "https://storage.googleapis.com/b/kubernetes-manifests.tar.gz".into(),
                kube_manifests_tar_hash: String::new(),
            },
        }
    }

    #[test]
    fn scripts_are_read_from_the_release_tree() {
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture tree");
        assert!(
            scripts.master_yaml.starts_with("#cloud-config"),
            "{}",
            scripts.master_yaml
        );
        assert!(scripts.configure_sh.starts_with("#!/"), "{}", scripts.configure_sh);
    }

    #[test]
    fn a_tree_without_the_gce_scripts_is_refused_naming_each_missing_file() {
        let dir = tempfile::tempdir().expect("dir");
        let err = ReleaseScripts::read(dir.path()).expect_err("empty tree");
        let line = err.to_string();
        assert!(line.contains(MASTER_YAML) && line.contains(CONFIGURE_SH), "{line}");
        assert!(line.contains("1.35 or older"), "{line}");

        std::fs::create_dir_all(dir.path().join("cluster/gce/gci")).expect("mkdir");
        std::fs::write(dir.path().join(MASTER_YAML), "#cloud-config\n").expect("write");
        let line = ReleaseScripts::read(dir.path()).expect_err("half a tree").to_string();
        assert!(line.contains(CONFIGURE_SH) && !line.contains(MASTER_YAML), "{line}");

        std::fs::write(dir.path().join(CONFIGURE_SH), [0xff, 0xfe]).expect("write");
        assert!(matches!(
            ReleaseScripts::read(dir.path()),
            Err(BootstrapError::NotText { .. })
        ));
    }

    #[test]
    fn the_bootstrap_writes_kube_ups_boot_keys_and_items() {
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture");
        let b = first_master_bootstrap(&input(), &scripts).expect("bootstrap");
        let env = &b.kube_env;
        for (key, want) in [
            (ke::ENABLE_LEGACY_ABAC, "false"),
            (ke::SERVICEACCOUNT_ISSUER, "https://kubernetes.io/kubernetes"),
            (ke::MASTER_ADVERTISE_ADDRESS, "34.1.2.3"),
            (ke::KUBELET_APISERVER, "34.1.2.3"),
            (ke::CNI_TAR_PREFIX, "cni-plugins-linux-amd64-"),
            (ke::AUTH_PROVIDER_GCP_VERSION, "v0.0.2-gke.4"),
            (ke::CLUSTER_IP_RANGE, "10.64.0.0/14"),
            (ke::NODE_INSTANCE_PREFIX, "kubernetes-minion"),
            (ke::KUBE_MANIFESTS_TAR_HASH, ""),
        ] {
            assert_eq!(env.get(key), Some(want), "{key}");
        }
        assert!(
            env.get(ke::ENABLE_IP_ALIASES).is_none(),
            "routes mode, as the VM has canIpForward"
        );
        let args = env.require(ke::KUBELET_ARGS).expect("args");
        for flag in [
            "--cloud-provider=external",
            "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule",
            "--volume-plugin-dir=/home/kubernetes/flexvolume",
        ] {
            assert!(args.contains(flag), "{args}");
        }

        let items: Vec<&str> = b.items.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            items,
            [
                "user-data",
                "configure-sh",
                "kubelet-config",
                "cluster-location",
                "gci-update-strategy"
            ]
        );
        assert_eq!(b.items[0].1, scripts.master_yaml);
        assert_eq!(b.items[1].1, scripts.configure_sh);
        assert_eq!(b.items[3].1, "europe-west1-b");
        assert_eq!(
            b.scopes,
            [
                "https://www.googleapis.com/auth/devstorage.read_only",
                "https://www.googleapis.com/auth/compute",
                "https://www.googleapis.com/auth/monitoring",
                "https://www.googleapis.com/auth/logging.write",
            ]
        );

        let mut with_aliases = input();
        with_aliases.ip_aliases = true;
        let b = first_master_bootstrap(&with_aliases, &scripts).expect("aliases");
        assert_eq!(b.kube_env.get(ke::NODE_IPAM_MODE), Some("CloudAllocator"));
    }

    #[test]
    fn a_bootstrapped_first_master_has_every_boot_key_and_meets_the_contract() {
        let first = crate::ops::cluster::test_first_master();
        let (mut env, mc) = (first.kube_env, first.master_certs);
        assert!(
            !ke::missing_for_boot(&env, &mc).is_empty(),
            "the sandbox's maps lack the bootstrap"
        );
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture");
        let b = first_master_bootstrap(&input(), &scripts).expect("bootstrap");
        b.apply(&mut env).expect("no conflicting key");
        assert_eq!(ke::missing_for_boot(&env, &mc), Vec::<&str>::new());
        ke::check_vm_metadata(&env, &mc).expect("contract");
        b.metadata_items(&env, &mc).expect("within GCE's limits");
    }

    #[test]
    fn the_kubelet_config_is_a_master_kubelet_configuration_with_static_pods() {
        let text = master_kubelet_config(DEFAULT_DNS_SERVER_IP, "cluster.local");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(doc["kind"].as_str(), Some("KubeletConfiguration"));
        assert_eq!(doc["apiVersion"].as_str(), Some("kubelet.config.k8s.io/v1beta1"));
        assert_eq!(doc["staticPodPath"].as_str(), Some("/etc/kubernetes/manifests"));
        assert_eq!(doc["clusterDNS"][0].as_str(), Some("10.0.0.10"));
        assert_eq!(doc["clusterDomain"].as_str(), Some("cluster.local"));
        assert_eq!(doc["authorization"]["mode"].as_str(), Some("AlwaysAllow"));
        assert!(doc.get("podCidr").is_none(), "the master kubelet registers");
    }

    #[test]
    fn artifacts_configure_sh_cannot_use_are_refused() {
        let ok = input().artifacts;
        ok.check().expect("kube-up's form");
        let sha1 = ReleaseArtifacts {
            server_binary_tar_hash: "0".repeat(40),
            ..ok.clone()
        };
        sha1.check().expect("sha1 hex");
        let two_urls = ReleaseArtifacts {
            server_binary_tar_url: format!("{},{}", ok.server_binary_tar_url, ok.server_binary_tar_url),
            ..ok.clone()
        };
        two_urls.check().expect("a comma-separated list");

        let rows: [(ReleaseArtifacts, &str); 6] = [
            (
                ReleaseArtifacts::default(),
                "needs SERVER_BINARY_TAR_URL, KUBE_MANIFESTS_TAR_URL",
            ),
            (
                ReleaseArtifacts {
                    kube_manifests_tar_url: String::new(),
                    ..ok.clone()
                },
                "needs KUBE_MANIFESTS_TAR_URL",
            ),
            (
                ReleaseArtifacts {
                    server_binary_tar_url: "gs://b/kubernetes-server-linux-amd64.tar.gz".into(),
                    ..ok.clone()
                },
                "storage.googleapis.com",
            ),
            (
                ReleaseArtifacts {
                    kube_manifests_tar_url: "https://b/manifests.zip".into(),
                    ..ok.clone()
                },
                ".tar.gz",
            ),
            (
                ReleaseArtifacts {
                    server_binary_tar_hash: "xyz".into(),
                    ..ok.clone()
                },
                "SERVER_BINARY_TAR_HASH",
            ),
            (
                ReleaseArtifacts {
                    kube_manifests_tar_hash: "a".repeat(64),
                    ..ok.clone()
                },
                "40 or 128",
            ),
        ];
        for (artifacts, want) in rows {
            let err = artifacts.check().expect_err(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let mut bad = input();
        bad.artifacts = ReleaseArtifacts::default();
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture");
        assert!(matches!(
            first_master_bootstrap(&bad, &scripts),
            Err(BootstrapError::MissingArtifacts(_))
        ));
    }

    #[test]
    fn apply_adds_keys_and_refuses_a_second_value_for_one() {
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture");
        let b = first_master_bootstrap(&input(), &scripts).expect("bootstrap");
        let mut env = KeyValues::default();
        env.set(ke::DNS_DOMAIN, "cluster.local");
        b.apply(&mut env).expect("apply");
        b.apply(&mut env).expect("idempotent");
        assert_eq!(env.get(ke::KUBELET_ARGS), b.kube_env.get(ke::KUBELET_ARGS));
        env.set(ke::KUBELET_APISERVER, "10.0.0.1");
        assert!(matches!(b.apply(&mut env), Err(BootstrapError::Conflict { .. })));
    }

    #[test]
    fn metadata_over_gces_limits_is_refused() {
        let scripts = ReleaseScripts::read(&fixture_root()).expect("fixture");
        let b = first_master_bootstrap(&input(), &scripts).expect("bootstrap");
        let items = b
            .metadata_items(&b.kube_env, &KeyValues::default())
            .expect("small enough");
        assert_eq!(items.len(), 7);
        let big = "x".repeat(ke::METADATA_VALUE_LIMIT + 1);
        assert!(matches!(
            check_sizes(&[("user-data", big)]),
            Err(BootstrapError::TooLarge { .. })
        ));
        let half = "x".repeat(ke::METADATA_VALUE_LIMIT);
        let err = check_sizes(&[("a", half.clone()), ("b", half)]).expect_err("total");
        assert!(err.to_string().contains("all items"), "{err}");
    }

    #[test]
    fn the_pod_range_grows_with_the_node_count_as_kube_up() {
        for (nodes, want) in [
            (3, "10.64.0.0/14"),
            (1000, "10.64.0.0/14"),
            (1001, "10.64.0.0/13"),
            (2001, "10.64.0.0/12"),
            (4001, "10.64.0.0/11"),
        ] {
            assert_eq!(cluster_ip_range(nodes), want, "{nodes}");
        }
    }
}
