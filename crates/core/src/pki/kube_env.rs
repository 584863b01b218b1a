//! `kube-env` and `kube-master-certs` exactly as the release's own on-VM scripts read them
//! (SPEC §2; `reference/configure-helper-contract.md` §1, §7, §9): every key name kube-ha uses,
//! how each value is encoded, the text form, and the checks a pair of maps must pass before a VM
//! gets them.
//!
//! # Text form
//! One line per key, `KEY: 'value'`, keys sorted, the value quoted as kube-up's `yaml-quote` does
//! (single quotes, a `'` doubled). kube-up's own tooling reads these files line by line
//! (`grep KEY | sed "s/^.*: '//"`), and configure.sh turns them into `readonly KEY=…` with PyYAML's
//! `BaseLoader`, under which every scalar is a string. [`KeyValues::from_yaml`] reads with those
//! semantics through a real YAML parser, so it also reads what kube-up.sh itself wrote (comments,
//! unquoted run-as ids, the empty `CUSTOM_*_YAML: |` blocks) and what kube-ha wrote before this
//! form (serde's mixed quoting). A value that cannot be written as one `'…'` line (a line break, a
//! control character) is written double-quoted so nothing is lost, and [`check_vm_metadata`]
//! refuses to give it to a VM.
//!
//! # Certificate encoding: decided by the key, here and nowhere else
//! Values are single-line base64 of PEM. **Only** the five etcd certificates of [`GZIPPED`] are
//! base64 of *gzip* of PEM: configure-helper pipes them through `gunzip` (and aborts under
//! `errexit` on anything else), while it `base64 --decode`s every other certificate and every key
//! straight into a file. [`KeyValues::pem`] and [`KeyValues::set_pem`] apply that rule by key
//! name. Reading also accepts the form kube-ha wrote before (those five as plain base64 PEM,
//! told apart by the gzip magic after base64), so clusters it made then stay readable; writing
//! always uses the contract form.
//!
//! # Placement
//! kube-up keeps the etcd peer CA key (`ETCD_CA_KEY`) in kube-env and the etcd-apiserver CA key
//! in kube-master-certs (contract §1a). kube-ha once put `ETCD_CA_KEY` in kube-master-certs: it
//! is read from either and written to kube-env ([`ETCD_CA_KEY_OLD_HOME`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::names;

// ----- kube-env keys -----------------------------------------------------------------------

/// kube-env: cluster CA certificate (base64 PEM).
pub const CA_CERT: &str = "CA_CERT";
/// kube-env: this replica's apiserver serving certificate (base64 PEM). Its key is the cluster's.
pub const MASTER_CERT: &str = "MASTER_CERT";
/// kube-env: the apiserver serving key, **shared by every replica**: configure-helper also uses it
/// as the service-account signing and verification key (`SERVICEACCOUNT_KEY` defaults to it).
pub const MASTER_KEY: &str = "MASTER_KEY";
/// kube-env: etcd peer CA certificate (base64 gzip PEM).
pub const ETCD_CA_CERT: &str = "ETCD_CA_CERT";
/// kube-env: etcd peer CA key (base64 PEM): kube-up signs replica peer certificates with it.
pub const ETCD_CA_KEY: &str = "ETCD_CA_KEY";
/// kube-env: this replica's etcd peer certificate (base64 gzip PEM).
pub const ETCD_PEER_CERT: &str = "ETCD_PEER_CERT";
/// kube-env: its key (base64 PEM).
pub const ETCD_PEER_KEY: &str = "ETCD_PEER_KEY";
/// kube-env: the etcd members this replica starts with.
pub const INITIAL_ETCD_CLUSTER: &str = "INITIAL_ETCD_CLUSTER";
/// kube-env: `new` for the first master, `existing` for a replica.
pub const INITIAL_ETCD_CLUSTER_STATE: &str = "INITIAL_ETCD_CLUSTER_STATE";
/// kube-env: the etcd member's host name, when not the VM's own. Per VM: never copied.
pub const ETCD_HOSTNAME: &str = "ETCD_HOSTNAME";
/// kube-env: `MULTIZONE` as given to the first `up`.
pub const MULTIZONE: &str = "MULTIZONE";
/// kube-env: quorum reads.
pub const ETCD_QUORUM_READ: &str = "ETCD_QUORUM_READ";
/// kube-env: the address nodes and kubeconfigs use (kube-up: the cluster's static IP).
pub const KUBERNETES_MASTER_NAME: &str = "KUBERNETES_MASTER_NAME";
/// kube-env: service range.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "SERVICE_CLUSTER_IP_RANGE";
/// kube-env: cluster DNS domain.
pub const DNS_DOMAIN: &str = "DNS_DOMAIN";
/// kube-env: `MASTER_NAME` (kube-ha's own record).
pub const MASTER_NAME: &str = "MASTER_NAME";
/// kube-env: the replica's own VM name (kube-ha's own record).
pub const REPLICA_NAME: &str = "REPLICA_NAME";
/// kube-env: `'true'` selects configure-helper's master path.
pub const KUBERNETES_MASTER: &str = "KUBERNETES_MASTER";
/// kube-env: cluster name (kube-up: the instance prefix).
pub const CLUSTER_NAME: &str = "CLUSTER_NAME";
/// kube-env: `KUBE_GCE_INSTANCE_PREFIX`.
pub const INSTANCE_PREFIX: &str = "INSTANCE_PREFIX";
/// kube-env: prefix of worker node names (`/etc/gce.conf`).
pub const NODE_INSTANCE_PREFIX: &str = "NODE_INSTANCE_PREFIX";
/// kube-env: network tags of worker nodes (`/etc/gce.conf`).
pub const NODE_TAGS: &str = "NODE_TAGS";
/// kube-env: network of the cluster (`/etc/gce.conf`).
pub const NODE_NETWORK: &str = "NODE_NETWORK";
/// kube-env: subnetwork of the cluster (`/etc/gce.conf`).
pub const NODE_SUBNETWORK: &str = "NODE_SUBNETWORK";
/// kube-env: GCE project (`/etc/gce.conf`).
pub const PROJECT_ID: &str = "PROJECT_ID";
/// kube-env: project of the network (`/etc/gce.conf`).
pub const NETWORK_PROJECT_ID: &str = "NETWORK_PROJECT_ID";
/// kube-env: the first master's zone.
pub const ZONE: &str = "ZONE";
/// kube-env: the cluster's region.
pub const REGION: &str = "REGION";
/// kube-env: comma-separated URLs of the server binary tarball.
pub const SERVER_BINARY_TAR_URL: &str = "SERVER_BINARY_TAR_URL";
/// kube-env: its sha512 (or sha1); empty makes configure.sh fetch `<url>.sha512`.
pub const SERVER_BINARY_TAR_HASH: &str = "SERVER_BINARY_TAR_HASH";
/// kube-env: comma-separated URLs of the manifests tarball.
pub const KUBE_MANIFESTS_TAR_URL: &str = "KUBE_MANIFESTS_TAR_URL";
/// kube-env: its sha512 (or sha1).
pub const KUBE_MANIFESTS_TAR_HASH: &str = "KUBE_MANIFESTS_TAR_HASH";
/// kube-env: the master kubelet's flags.
pub const KUBELET_ARGS: &str = "KUBELET_ARGS";
/// kube-env: `'true'`: configure.sh waits for the `kubelet-config` metadata item.
pub const REQUIRE_METADATA_KUBELET_CONFIG_FILE: &str = "REQUIRE_METADATA_KUBELET_CONFIG_FILE";
/// kube-env: flexvolume plugin directory (also in `KUBELET_ARGS`).
pub const VOLUME_PLUGIN_DIR: &str = "VOLUME_PLUGIN_DIR";
/// kube-env: `--service-account-issuer`.
pub const SERVICEACCOUNT_ISSUER: &str = "SERVICEACCOUNT_ISSUER";
/// kube-env: anything but `'false'` (absence included) turns ABAC on.
pub const ENABLE_LEGACY_ABAC: &str = "ENABLE_LEGACY_ABAC";
/// kube-env: `--advertise-address` of kube-apiserver.
pub const MASTER_ADVERTISE_ADDRESS: &str = "MASTER_ADVERTISE_ADDRESS";
/// kube-env: where the master kubelet registers (makes the master a Node).
pub const KUBELET_APISERVER: &str = "KUBELET_APISERVER";
/// kube-env: the master kubelet's client certificate (base64 PEM).
pub const KUBELET_CERT: &str = "KUBELET_CERT";
/// kube-env: its key.
pub const KUBELET_KEY: &str = "KUBELET_KEY";
/// kube-env: CNI plugins download base URL.
pub const CNI_STORAGE_URL_BASE: &str = "CNI_STORAGE_URL_BASE";
/// kube-env: CNI plugins tarball name prefix.
pub const CNI_TAR_PREFIX: &str = "CNI_TAR_PREFIX";
/// kube-env: whether the kubelet uses the out-of-tree GCP credential provider.
pub const ENABLE_AUTH_PROVIDER_GCP: &str = "ENABLE_AUTH_PROVIDER_GCP";
/// kube-env: where configure.sh downloads auth-provider-gcp from.
pub const AUTH_PROVIDER_GCP_STORAGE_PATH: &str = "AUTH_PROVIDER_GCP_STORAGE_PATH";
/// kube-env: auth-provider-gcp version.
pub const AUTH_PROVIDER_GCP_VERSION: &str = "AUTH_PROVIDER_GCP_VERSION";
/// kube-env: directory of the auth-provider-gcp binary.
pub const AUTH_PROVIDER_GCP_LINUX_BIN_DIR: &str = "AUTH_PROVIDER_GCP_LINUX_BIN_DIR";
/// kube-env: the kubelet's credential-provider config file.
pub const AUTH_PROVIDER_GCP_LINUX_CONF_FILE: &str = "AUTH_PROVIDER_GCP_LINUX_CONF_FILE";
/// kube-env: `kubenet` (kube-up's default) or `cni`.
pub const NETWORK_PROVIDER: &str = "NETWORK_PROVIDER";
/// kube-env: cloud provider flag of kubelet, KCM and apiserver.
pub const CLOUD_PROVIDER_FLAG: &str = "CLOUD_PROVIDER_FLAG";
/// kube-env: feature gates of the CCM (needed by nounset whenever `FEATURE_GATES` is set).
pub const CCM_FEATURE_GATES: &str = "CCM_FEATURE_GATES";
/// kube-env: storage backend of kube-apiserver.
pub const STORAGE_BACKEND: &str = "STORAGE_BACKEND";
/// kube-env: pod range.
pub const CLUSTER_IP_RANGE: &str = "CLUSTER_IP_RANGE";
/// kube-env: the cluster DNS service IP (also in `kubelet-config`).
pub const DNS_SERVER_IP: &str = "DNS_SERVER_IP";
/// kube-env: the controllers kube-controller-manager runs.
pub const RUN_CONTROLLERS: &str = "RUN_CONTROLLERS";
/// kube-env: whether the controller manager allocates pod CIDRs to nodes.
pub const ALLOCATE_NODE_CIDRS: &str = "ALLOCATE_NODE_CIDRS";
/// kube-env: number of worker nodes (sizes components).
pub const NUM_NODES: &str = "NUM_NODES";
/// kube-env: whether pod IPs come from alias ranges.
pub const ENABLE_IP_ALIASES: &str = "ENABLE_IP_ALIASES";
/// kube-env: KCM's `--cidr-allocator-type` (needed when `ENABLE_IP_ALIASES` is `true`).
pub const NODE_IPAM_MODE: &str = "NODE_IPAM_MODE";

// ----- kube-master-certs keys --------------------------------------------------------------

/// kube-master-certs: cluster CA key (KCM signs node CSRs with it).
pub const CA_KEY: &str = "CA_KEY";
/// kube-master-certs: etcd-apiserver CA certificate (base64 gzip PEM). In clusters made by
/// kube-up.sh it is the etcd peer CA.
pub const ETCD_APISERVER_CA_CERT: &str = "ETCD_APISERVER_CA_CERT";
/// kube-master-certs: etcd-apiserver CA key.
pub const ETCD_APISERVER_CA_KEY: &str = "ETCD_APISERVER_CA_KEY";
/// kube-master-certs: this replica's etcd server certificate (base64 gzip PEM).
pub const ETCD_APISERVER_SERVER_CERT: &str = "ETCD_APISERVER_SERVER_CERT";
/// kube-master-certs: its key.
pub const ETCD_APISERVER_SERVER_KEY: &str = "ETCD_APISERVER_SERVER_KEY";
/// kube-master-certs: this replica's apiserver → etcd client certificate (base64 gzip PEM).
pub const ETCD_APISERVER_CLIENT_CERT: &str = "ETCD_APISERVER_CLIENT_CERT";
/// kube-master-certs: its key.
pub const ETCD_APISERVER_CLIENT_KEY: &str = "ETCD_APISERVER_CLIENT_KEY";
/// kube-master-certs: kube-apiserver's client certificate towards kubelets.
pub const KUBEAPISERVER_CERT: &str = "KUBEAPISERVER_CERT";
/// kube-master-certs: its key.
pub const KUBEAPISERVER_KEY: &str = "KUBEAPISERVER_KEY";
/// kube-master-certs: the aggregator's request-header CA.
pub const REQUESTHEADER_CA_CERT: &str = "REQUESTHEADER_CA_CERT";
/// kube-master-certs: the aggregator proxy's client certificate.
pub const PROXY_CLIENT_CERT: &str = "PROXY_CLIENT_CERT";
/// kube-master-certs: its key.
pub const PROXY_CLIENT_KEY: &str = "PROXY_CLIENT_KEY";

/// The five certificates stored base64(gzip(PEM)); every other value is base64(PEM).
pub const GZIPPED: [&str; 5] = [
    ETCD_CA_CERT,
    ETCD_PEER_CERT,
    ETCD_APISERVER_CA_CERT,
    ETCD_APISERVER_SERVER_CERT,
    ETCD_APISERVER_CLIENT_CERT,
];

/// The map kube-ha once kept `ETCD_CA_KEY` in; it now lives in kube-env, as kube-up has it.
pub const ETCD_CA_KEY_OLD_HOME: Map = Map::MasterCerts;

/// GCE's limit on one metadata value (each of kube-env and kube-master-certs is one value).
pub const METADATA_VALUE_LIMIT: usize = 262_144;

/// Largest decompressed certificate accepted from metadata: a PEM chain is a few KB; this bounds
/// what a hostile gzip value could make us allocate.
const GUNZIP_LIMIT: u64 = 1 << 20;

/// Whether the value under `key` is base64(gzip(PEM)) (else base64(PEM)).
pub fn is_gzipped(key: &str) -> bool {
    GZIPPED.contains(&key)
}

/// Which of the two metadata maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Map {
    /// `kube-env`.
    KubeEnv,
    /// `kube-master-certs`.
    MasterCerts,
}

impl fmt::Display for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Map::KubeEnv => names::METADATA_KUBE_ENV,
            Map::MasterCerts => names::METADATA_MASTER_CERTS,
        })
    }
}

/// A map of strings (kube-env or kube-master-certs), ordered for stable output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValues(pub BTreeMap<String, String>);

impl KeyValues {
    /// Parse with PyYAML `BaseLoader` semantics: a map whose every value is a string (`3` is
    /// `"3"`, `~` is `"~"`, an empty value is `""`); comments, quoting styles and block scalars as
    /// YAML has them. A key given twice is an error (the line-based kube-up tools and PyYAML would
    /// disagree on which one counts).
    pub fn from_yaml(text: &str) -> Result<Self> {
        let Pairs(pairs) = serde_yaml_ng::from_str(text).context("not a YAML map of strings")?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                bail!("{k} is given twice");
            }
        }
        Ok(KeyValues(map))
    }

    /// Render one line per key, `KEY: 'value'`, sorted by key (see the module doc).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.0 {
            if is_identifier(k) {
                out.push_str(k);
            } else {
                out.push_str(&quote(k));
            }
            out.push_str(": ");
            out.push_str(&quote(v));
            out.push('\n');
        }
        out
    }

    /// A plain value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A plain value that must be present.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| anyhow!("{key} is missing"))
    }

    /// Set a plain value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }

    /// Remove a key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// A certificate or key, decoded as the key's encoding says ([`is_gzipped`]). One of the
    /// five gzip'd certificates stored as plain base64 PEM (kube-ha's form before the contract) is
    /// accepted; gzip under any other key is an error, since configure-helper would write the
    /// compressed bytes into the file.
    pub fn pem(&self, key: &str) -> Result<String> {
        let raw = B64
            .decode(self.require(key)?.trim())
            .with_context(|| format!("{key} is not base64"))?;
        let bytes = match (is_gzipped(key), is_gzip(&raw)) {
            (true, true) => gunzip(&raw).with_context(|| format!("{key} is not valid gzip"))?,
            (true, false) => raw,
            (false, true) => bail!("{key} is gzip-compressed, but configure-helper reads it as plain base64 PEM"),
            (false, false) => raw,
        };
        String::from_utf8(bytes).with_context(|| format!("{key} is not PEM text"))
    }

    /// Store a certificate or key in the encoding its key calls for (always the contract form).
    pub fn set_pem(&mut self, key: &str, pem: &str) {
        let bytes = if is_gzipped(key) {
            gzip(pem.as_bytes())
        } else {
            pem.as_bytes().to_vec()
        };
        self.set(key, B64.encode(bytes));
    }

    /// [`KeyValues::set_pem`], unless the value already holds exactly `pem` in the contract
    /// encoding: copied values (e.g. a CA written by kube-up.sh) stay byte for byte as they were.
    pub fn ensure_pem(&mut self, key: &str, pem: &str) {
        if !self.holds_in_contract_form(key, pem) {
            self.set_pem(key, pem);
        }
    }

    fn holds_in_contract_form(&self, key: &str, pem: &str) -> bool {
        let Some(raw) = self.get(key).and_then(|v| B64.decode(v.trim()).ok()) else {
            return false;
        };
        is_gzip(&raw) == is_gzipped(key) && self.pem(key).is_ok_and(|p| p == pem)
    }
}

/// Read `ETCD_CA_KEY` from kube-env, else from where kube-ha once kept it
/// ([`ETCD_CA_KEY_OLD_HOME`]). Writers put it in kube-env and drop the old copy.
pub fn etcd_ca_key(kube_env: &KeyValues, master_certs: &KeyValues) -> Result<String> {
    match (kube_env.get(ETCD_CA_KEY), master_certs.get(ETCD_CA_KEY)) {
        (Some(_), _) => kube_env.pem(ETCD_CA_KEY),
        (None, Some(_)) => master_certs
            .pem(ETCD_CA_KEY)
            .with_context(|| format!("in {ETCD_CA_KEY_OLD_HOME}")),
        (None, None) => bail!("{ETCD_CA_KEY} is missing"),
    }
}

/// The keys of kube-env that boot breaks without on real GCE (contract §7a: expanded unguarded
/// under `nounset`, or fetched forever). The sandbox boots without most of them; a first `up`
/// against GCE needs them all.
pub const REQUIRED_FOR_BOOT: [(Map, &str); 12] = [
    (Map::KubeEnv, KUBERNETES_MASTER),
    (Map::KubeEnv, SERVER_BINARY_TAR_URL),
    (Map::KubeEnv, KUBE_MANIFESTS_TAR_URL),
    (Map::KubeEnv, CA_CERT),
    (Map::KubeEnv, MASTER_CERT),
    (Map::KubeEnv, MASTER_KEY),
    (Map::KubeEnv, KUBELET_ARGS),
    (Map::KubeEnv, SERVICEACCOUNT_ISSUER),
    (Map::KubeEnv, CNI_STORAGE_URL_BASE),
    (Map::KubeEnv, CNI_TAR_PREFIX),
    (Map::MasterCerts, KUBEAPISERVER_CERT),
    (Map::MasterCerts, KUBEAPISERVER_KEY),
];

/// The keys of [`REQUIRED_FOR_BOOT`] missing or empty, in that order.
pub fn missing_for_boot(kube_env: &KeyValues, master_certs: &KeyValues) -> Vec<&'static str> {
    REQUIRED_FOR_BOOT
        .iter()
        .filter(|(map, key)| {
            let kv = match map {
                Map::KubeEnv => kube_env,
                Map::MasterCerts => master_certs,
            };
            kv.get(key).is_none_or(str::is_empty)
        })
        .map(|(_, key)| *key)
        .collect()
}

// ----- checks before a VM gets the maps -----------------------------------------------------

/// One way a pair of maps would break configure-helper's boot (contract §9).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Both files are sourced into one shell with every key `readonly`.
    #[error(
        "{key} is in both kube-env and kube-master-certs (configure-helper makes every key readonly, so the second aborts the boot)"
    )]
    InBothMaps {
        /// The key.
        key: String,
    },
    /// The key is not a bash identifier, so `readonly KEY=…` fails.
    #[error("{map} key {key:?} is not a shell variable name")]
    NotAnIdentifier {
        /// Where.
        map: Map,
        /// The key.
        key: String,
    },
    /// configure-helper assigns this variable itself; a readonly one aborts the boot.
    #[error("{map} sets {key}, which configure-helper assigns itself ({why})")]
    Reserved {
        /// Where.
        map: Map,
        /// The key.
        key: String,
        /// Why and when configure-helper assigns it.
        why: &'static str,
    },
    /// Part of a group configure-helper needs whole.
    #[error("{group}: {} set but {} missing or empty ({why})", present.join(", "), missing.join(", "))]
    IncompleteGroup {
        /// The group.
        group: &'static str,
        /// The keys of it that are set.
        present: Vec<String>,
        /// The keys of it that are missing.
        missing: Vec<String>,
        /// What configure-helper does with a partial group.
        why: &'static str,
    },
    /// The value cannot be one `KEY: 'value'` line.
    #[error("{map} value of {key} is not one printable line (kube-up's scripts read these files line by line)")]
    NotOneLine {
        /// Where.
        map: Map,
        /// The key.
        key: String,
    },
    /// A certificate or key in the wrong encoding for its key.
    #[error("{map} value of {key}: {detail}")]
    Encoding {
        /// Where.
        map: Map,
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// Over GCE's limit for one metadata value.
    #[error(
        "{map} is {bytes} bytes, over GCE's limit of {limit} bytes for one metadata value (largest key: {largest})"
    )]
    TooLarge {
        /// Which map.
        map: Map,
        /// Its rendered size.
        bytes: usize,
        /// GCE's limit.
        limit: usize,
        /// Its largest key, to say what to shrink.
        largest: String,
    },
}

/// Every violation found in a pair of maps meant for one VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the metadata would not boot through configure-helper: {}", .violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ContractError {
    /// What is wrong, in a stable order.
    pub violations: Vec<Violation>,
}

/// Names configure-helper (cloud-provider-gcp 2e30d050c) assigns after sourcing both files, with
/// why. `*_CERT_PATH` and `*_KEY_PATH` are handled by suffix in [`reserved_because`].
const RESERVED: &[(&str, &str)] = &[
    ("KUBE_CONTROLLER_MANAGER_TOKEN", "generated at boot"),
    ("CLOUD_CONTROLLER_MANAGER_TOKEN", "generated at boot"),
    ("KUBE_SCHEDULER_TOKEN", "generated at boot"),
    ("KUBE_CLUSTER_AUTOSCALER_TOKEN", "generated at boot"),
    ("GCE_GLBC_TOKEN", "generated at boot with glbc"),
    ("ADDON_MANAGER_TOKEN", "generated at boot"),
    ("PDCSI_CONTROLLER_TOKEN", "generated at boot"),
    ("KUBE_BOOTSTRAP_TOKEN", "generated at boot"),
    ("KONNECTIVITY_SERVER_TOKEN", "generated at boot with konnectivity"),
    ("MONITORING_TOKEN", "generated at boot with the monitoring token"),
    (
        "REGISTER_MASTER_KUBELET",
        "set when KUBELET_APISERVER, KUBELET_CERT and KUBELET_KEY are",
    ),
    ("DOCKER_REGISTRY", "derived from KUBE_DOCKER_REGISTRY; set that instead"),
    (
        "KUBELET_CONFIG_FILE_ARG",
        "derived from the kubelet-config metadata item",
    ),
    ("MASTER_PD_DEVICE", "found at boot"),
    ("CLOUD_CONFIG_OPT", "derived from /etc/gce.conf"),
    ("CLOUD_CONFIG_VOLUME", "derived from /etc/gce.conf"),
    ("CLOUD_CONFIG_MOUNT", "derived from /etc/gce.conf"),
    ("FLEXVOLUME_HOSTPATH_MOUNT", "derived from VOLUME_PLUGIN_DIR"),
    ("FLEXVOLUME_HOSTPATH_VOLUME", "derived from VOLUME_PLUGIN_DIR"),
    ("INSECURE_PORT_MAPPING", "derived at boot"),
    ("CONTAINERIZED_MOUNTER_ROOTFS", "derived at boot"),
    ("BASE_ADDON_DIR", "derived at boot"),
    ("BASE_DNS_DIR", "derived at boot"),
    ("NEW_DNS_DIR", "derived at boot"),
    ("CGROUP_CONFIG", "detected at boot"),
];

/// Overrides configure-helper fills in when they are empty: fine as a complete non-empty set,
/// fatal as `''` or half a pair (the fallback assignment hits a readonly variable).
const OVERRIDES: &[&[&str]] = &[
    &["APISERVER_SERVER_CERT", "APISERVER_SERVER_KEY"],
    &["APISERVER_CLIENT_CERT", "APISERVER_CLIENT_KEY"],
    &["SERVICEACCOUNT_CERT", "SERVICEACCOUNT_KEY"],
    &["CA_CERT_BUNDLE"],
];

/// When a rule applies.
enum When {
    /// Always.
    Always,
    /// When every one of these keys is non-empty.
    Set(&'static [&'static str]),
    /// When this key has this value.
    Equals(&'static str, &'static str),
}

/// A group configure-helper needs whole.
struct Group {
    name: &'static str,
    when: When,
    /// With [`When::Always`]: all of these non-empty, or none. Otherwise: all needed.
    keys: &'static [&'static str],
    /// Whether an empty value satisfies the need (nounset only asks that the variable exists).
    empty_ok: bool,
    why: &'static str,
}

/// The all-or-none and "X needs Y" groups of contract §1a and §7a.
const GROUPS: &[Group] = &[
    Group {
        name: "etcd-apiserver TLS",
        when: When::Always,
        keys: &[
            ETCD_APISERVER_CA_KEY,
            ETCD_APISERVER_CA_CERT,
            ETCD_APISERVER_SERVER_KEY,
            ETCD_APISERVER_SERVER_CERT,
            ETCD_APISERVER_CLIENT_KEY,
            ETCD_APISERVER_CLIENT_CERT,
        ],
        empty_ok: false,
        why: "configure-etcd-params exits 1 unless all six or none are given",
    },
    Group {
        name: "etcd peer TLS",
        when: When::Always,
        keys: &[ETCD_CA_CERT, ETCD_PEER_KEY, ETCD_PEER_CERT],
        empty_ok: false,
        why: "with a partial set etcd peers fall back to plain http and never reach https:// peer URLs",
    },
    Group {
        name: "aggregator",
        when: When::Set(&[REQUESTHEADER_CA_CERT]),
        keys: &[PROXY_CLIENT_CERT, PROXY_CLIENT_KEY],
        empty_ok: false,
        why: "create-master-pki writes them whenever REQUESTHEADER_CA_CERT is set",
    },
    Group {
        name: "konnectivity server",
        when: When::Set(&["KONNECTIVITY_SERVER_CA_CERT"]),
        keys: &[
            "KONNECTIVITY_SERVER_KEY",
            "KONNECTIVITY_SERVER_CERT",
            "KONNECTIVITY_SERVER_CLIENT_KEY",
            "KONNECTIVITY_SERVER_CLIENT_CERT",
        ],
        empty_ok: false,
        why: "create-master-pki writes them whenever KONNECTIVITY_SERVER_CA_CERT is set",
    },
    Group {
        name: "konnectivity agent",
        when: When::Set(&["KONNECTIVITY_AGENT_CA_CERT"]),
        keys: &[
            "KONNECTIVITY_AGENT_CA_KEY",
            "KONNECTIVITY_AGENT_KEY",
            "KONNECTIVITY_AGENT_CERT",
        ],
        empty_ok: false,
        why: "create-master-pki writes them whenever KONNECTIVITY_AGENT_CA_CERT is set",
    },
    Group {
        name: "cloud-pvl-admission",
        when: When::Set(&["CLOUD_PVL_ADMISSION_CA_CERT"]),
        keys: &["CLOUD_PVL_ADMISSION_KEY", "CLOUD_PVL_ADMISSION_CERT"],
        empty_ok: false,
        why: "create-master-pki writes them whenever CLOUD_PVL_ADMISSION_CA_CERT is set",
    },
    Group {
        name: "CCM feature gates",
        when: When::Set(&["FEATURE_GATES"]),
        keys: &[CCM_FEATURE_GATES],
        empty_ok: true,
        why: "the CCM manifest expands it under nounset whenever FEATURE_GATES is set",
    },
    Group {
        name: "IP aliases",
        when: When::Equals(ENABLE_IP_ALIASES, "true"),
        keys: &[NODE_IPAM_MODE],
        empty_ok: false,
        why: "the controller manager gets --cidr-allocator-type from it",
    },
    Group {
        name: "controller-manager run-as",
        when: When::Set(&[
            "KUBE_CONTROLLER_MANAGER_RUNASUSER",
            "KUBE_CONTROLLER_MANAGER_RUNASGROUP",
        ]),
        keys: &["KUBE_PKI_READERS_GROUP"],
        empty_ok: false,
        why: "its manifest gets supplementalGroups from it",
    },
    Group {
        name: "cloud-controller-manager run-as",
        when: When::Set(&[
            "CLOUD_CONTROLLER_MANAGER_RUNASUSER",
            "CLOUD_CONTROLLER_MANAGER_RUNASGROUP",
        ]),
        keys: &["KUBE_PKI_READERS_GROUP"],
        empty_ok: false,
        why: "its manifest gets supplementalGroups from it",
    },
    Group {
        name: "cluster-autoscaler run-as",
        when: When::Set(&["CLUSTER_AUTOSCALER_RUNASUSER", "CLUSTER_AUTOSCALER_RUNASGROUP"]),
        keys: &["KUBE_PKI_READERS_GROUP"],
        empty_ok: false,
        why: "its manifest gets supplementalGroups from it",
    },
    Group {
        name: "konnectivity run-as",
        when: When::Set(&[
            "KONNECTIVITY_SERVER_RUNASUSER",
            "KONNECTIVITY_SERVER_RUNASGROUP",
            "KONNECTIVITY_SERVER_SOCKET_WRITER_GROUP",
        ]),
        keys: &["KUBE_PKI_READERS_GROUP"],
        empty_ok: false,
        why: "its manifest gets supplementalGroups from it",
    },
];

/// Check the kube-env and kube-master-certs a VM will get against what configure-helper and
/// kube-up's scripts accept (contract §9): no key in both maps, no key configure-helper assigns
/// itself (its generated tokens, the `*_CERT_PATH`/`*_KEY_PATH` of the files it writes, the
/// overrides it fills in when empty, …), bash identifiers only, groups complete, one printable line per value, certificates in
/// their key's encoding, and each map within GCE's metadata value limit (which bounds every
/// single value too). The caller turns the error into a refusal.
pub fn check_vm_metadata(kube_env: &KeyValues, master_certs: &KeyValues) -> Result<(), ContractError> {
    let mut violations = Vec::new();
    let maps = [(Map::KubeEnv, kube_env), (Map::MasterCerts, master_certs)];
    for key in kube_env.0.keys().filter(|k| master_certs.0.contains_key(*k)) {
        violations.push(Violation::InBothMaps { key: key.clone() });
    }
    let merged: BTreeMap<&str, &str> = maps
        .iter()
        .flat_map(|(_, kv)| kv.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    for (map, kv) in maps {
        for (key, value) in &kv.0 {
            if !is_identifier(key) {
                violations.push(Violation::NotAnIdentifier { map, key: key.clone() });
            }
            if let Some(why) = reserved_because(key, &merged) {
                violations.push(Violation::Reserved {
                    map,
                    key: key.clone(),
                    why,
                });
            }
            if !is_one_line(value) {
                violations.push(Violation::NotOneLine { map, key: key.clone() });
            } else if let Some(detail) = encoding_problem(key, value) {
                violations.push(Violation::Encoding {
                    map,
                    key: key.clone(),
                    detail,
                });
            }
        }
        let bytes = kv.to_yaml().len();
        if bytes > METADATA_VALUE_LIMIT {
            let largest =
                kv.0.iter()
                    .max_by_key(|(_, v)| v.len())
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
            violations.push(Violation::TooLarge {
                map,
                bytes,
                limit: METADATA_VALUE_LIMIT,
                largest,
            });
        }
    }
    violations.extend(group_violations(&merged));
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ContractError { violations })
    }
}

/// Why configure-helper would assign `key` after sourcing it, if it would.
fn reserved_because(key: &str, merged: &BTreeMap<&str, &str>) -> Option<&'static str> {
    // Not every *_PATH: kube-up's own kube-env has AUTH_PROVIDER_GCP_STORAGE_PATH and
    // NODE_PROBLEM_DETECTOR_RELEASE_PATH. configure-helper assigns the path of each certificate
    // and key it writes, and every one of those ends so.
    if key.ends_with("_CERT_PATH") || key.ends_with("_KEY_PATH") {
        return Some("the path of every certificate and key is set at boot");
    }
    if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Some(why);
    }
    if let Some(set) = OVERRIDES.iter().find(|set| set.contains(&key)) {
        let complete = set.iter().all(|k| merged.get(k).is_some_and(|v| !v.is_empty()));
        if !complete {
            return Some("filled in when empty or half given; give a complete non-empty override or none");
        }
    }
    if key == "RUNTIME_CONFIG" && merged.get("ENABLE_APISERVER_DYNAMIC_AUDIT") == Some(&"true") {
        return Some("extended at boot when ENABLE_APISERVER_DYNAMIC_AUDIT is true");
    }
    None
}

fn group_violations(merged: &BTreeMap<&str, &str>) -> Vec<Violation> {
    let non_empty = |k: &str| merged.get(k).is_some_and(|v| !v.is_empty());
    let mut out = Vec::new();
    for g in GROUPS {
        let (present, missing): (Vec<&str>, Vec<&str>) = match g.when {
            When::Always => g.keys.iter().partition(|k| non_empty(k)),
            When::Set(trigger) if trigger.iter().all(|k| non_empty(k)) => {
                let (have, lack) = g.keys.iter().partition(|k| {
                    if g.empty_ok {
                        merged.contains_key(*k)
                    } else {
                        non_empty(k)
                    }
                });
                let mut present: Vec<&str> = trigger.to_vec();
                present.extend::<Vec<&str>>(have);
                (present, lack)
            }
            When::Equals(k, v) if merged.get(k) == Some(&v) => {
                let (have, lack) = g.keys.iter().partition(|k| non_empty(k));
                let mut present = vec![k];
                present.extend::<Vec<&str>>(have);
                (present, lack)
            }
            _ => continue,
        };
        let partial = match g.when {
            When::Always => !present.is_empty() && !missing.is_empty(),
            _ => !missing.is_empty(),
        };
        if partial {
            out.push(Violation::IncompleteGroup {
                group: g.name,
                present: present.iter().map(|k| k.to_string()).collect(),
                missing: missing.iter().map(|k| k.to_string()).collect(),
                why: g.why,
            });
        }
    }
    out
}

/// What is wrong with the encoding of a certificate or key value, if anything. Values that are
/// not certificates or keys (by name) are not looked at.
fn encoding_problem(key: &str, value: &str) -> Option<String> {
    let holds_pem = is_gzipped(key) || key.ends_with("_CERT") || key.ends_with("_KEY") || key == "CA_CERT_BUNDLE";
    if !holds_pem || value.is_empty() {
        return None;
    }
    let Ok(raw) = B64.decode(value) else {
        return Some("not single-line base64".to_string());
    };
    match (is_gzipped(key), is_gzip(&raw)) {
        (true, false) => Some("must be base64 of gzip'd PEM (configure-helper gunzips it)".to_string()),
        (false, true) => Some("must be base64 of plain PEM, not gzip (configure-helper writes it as is)".to_string()),
        (true, true) => match gunzip(&raw) {
            Ok(pem) if looks_like_pem(&pem) => None,
            _ => Some("does not gunzip to PEM".to_string()),
        },
        (false, false) => (!looks_like_pem(&raw)).then(|| "does not decode to PEM".to_string()),
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| s.trim_start().starts_with("-----BEGIN "))
}

/// A bash variable name.
pub fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Whether a value can be written as one single-quoted YAML line that PyYAML reads back as is:
/// YAML-printable characters only, and none of YAML 1.1's line breaks.
fn is_one_line(value: &str) -> bool {
    value.chars().all(|c| match c {
        '\t' => true,
        '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => false,
        c => is_yaml_printable(c),
    })
}

fn is_yaml_printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// kube-up's `yaml-quote` (`'…'` with `'` doubled); double-quoted with escapes for what a
/// single-quoted line cannot hold, so the text still parses back to the same string.
fn quote(value: &str) -> String {
    if is_one_line(value) {
        return format!("'{}'", value.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_yaml_printable(c) => out.push(c),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(GUNZIP_LIMIT + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > GUNZIP_LIMIT {
        bail!("decompresses to more than {GUNZIP_LIMIT} bytes");
    }
    Ok(out)
}

/// A YAML map read as ordered (key, string) pairs, duplicates kept, so [`KeyValues::from_yaml`]
/// can refuse them (serde's maps silently keep the last).
struct Pairs(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_unit<E>(self) -> std::result::Result<Pairs, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = m.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    #[test]
    fn round_trips_strings_that_look_like_other_types() {
        let mut kv = KeyValues::default();
        for (k, v) in [
            (MULTIZONE, "true"),
            ("NUM", "0012"),
            ("EMPTY", ""),
            ("COLON", "a: b # c"),
            ("QUOTE", "it's 'quoted'"),
            ("TILDE", "~"),
            ("SPACES", "  padded  "),
            ("TAB", "a\tb"),
            ("UNICODE", "zöne ✓"),
            ("NEWLINE", "two\nlines"),
            ("CONTROL", "bell\u{7}"),
            (INITIAL_ETCD_CLUSTER, "kubernetes-master,kubernetes-master-a1b"),
        ] {
            kv.set(k, v);
        }
        kv.set_pem(CA_CERT, PEM);
        kv.set_pem(ETCD_CA_CERT, PEM);
        let back = KeyValues::from_yaml(&kv.to_yaml()).expect("parse");
        assert_eq!(back, kv);
        assert_eq!(back.pem(CA_CERT).expect("pem"), PEM);
        assert_eq!(back.pem(ETCD_CA_CERT).expect("pem"), PEM);
    }

    #[test]
    fn renders_one_kube_up_quoted_line_per_key_in_key_order() {
        let mut kv = KeyValues::default();
        kv.set("B", "it's");
        kv.set("A", "");
        kv.set(KUBERNETES_MASTER, "true");
        assert_eq!(kv.to_yaml(), "A: ''\nB: 'it''s'\nKUBERNETES_MASTER: 'true'\n");
    }

    #[test]
    fn reads_what_kube_up_sh_wrote_with_base_loader_semantics() {
        // Shapes from cpg util.sh build-linux-kube-env: comments, the double space after
        // CCM_FEATURE_GATES, unquoted run-as ids, empty literal blocks, a trailing blank line.
        let text = "CLUSTER_NAME: 'kubernetes'\n\
                    # (TODO/cloud-provider-gcp): Need to figure out how to inject this\n\
                    ENABLE_PDCSI_DRIVER: ''\n\
                    CUSTOM_INGRESS_YAML: |\n\n\
                    ENABLE_NODE_JOURNAL: 'false'\n\
                    CCM_FEATURE_GATES:  'APIPriorityAndFairness,AllAlpha'\n\
                    KUBE_SCHEDULER_RUNASUSER: 2001\n\
                    KUBELET_ARGS: '--v=2 --cloud-provider=external'\n\
                    NAME_WITH_QUOTE: 'it''s'\n\
                    \n";
        let kv = KeyValues::from_yaml(text).expect("parse");
        assert_eq!(kv.get(CLUSTER_NAME), Some("kubernetes"));
        assert_eq!(kv.get("ENABLE_PDCSI_DRIVER"), Some(""));
        assert_eq!(kv.get("CUSTOM_INGRESS_YAML"), Some(""));
        assert_eq!(kv.get("ENABLE_NODE_JOURNAL"), Some("false"));
        assert_eq!(kv.get(CCM_FEATURE_GATES), Some("APIPriorityAndFairness,AllAlpha"));
        assert_eq!(kv.get("KUBE_SCHEDULER_RUNASUSER"), Some("2001"));
        assert_eq!(kv.get("NAME_WITH_QUOTE"), Some("it's"));
        assert_eq!(kv.0.len(), 8);
    }

    #[test]
    fn reads_what_kube_ha_wrote_before_the_contract_form() {
        // serde_yaml_ng's output: plain where safe, quoted where a plain scalar would change type.
        let text = "CA_CERT: LS0t\nMULTIZONE: 'true'\nNUM: '0012'\nEMPTY: ''\nDNS_DOMAIN: cluster.local\n";
        let kv = KeyValues::from_yaml(text).expect("parse");
        assert_eq!(kv.get(MULTIZONE), Some("true"));
        assert_eq!(kv.get("NUM"), Some("0012"));
        assert_eq!(kv.get("EMPTY"), Some(""));
        assert_eq!(kv.get(DNS_DOMAIN), Some("cluster.local"));
    }

    #[test]
    fn refuses_what_is_not_a_map_of_strings() {
        for bad in [
            "A: 1\nA: 2\n",
            "- a\n- b\n",
            "A: [1]\n",
            "A: {b: c}\n",
            "A: 'unterminated\n",
        ] {
            assert!(KeyValues::from_yaml(bad).is_err(), "{bad:?}");
        }
        assert_eq!(KeyValues::from_yaml("").expect("empty"), KeyValues::default());
        assert_eq!(
            KeyValues::from_yaml("# only a comment\n").expect("comment"),
            KeyValues::default()
        );
    }

    #[test]
    fn only_the_five_etcd_certificates_are_gzipped() {
        let all_pem_keys = [
            CA_CERT,
            CA_KEY,
            MASTER_CERT,
            MASTER_KEY,
            ETCD_CA_CERT,
            ETCD_CA_KEY,
            ETCD_PEER_CERT,
            ETCD_PEER_KEY,
            ETCD_APISERVER_CA_CERT,
            ETCD_APISERVER_CA_KEY,
            ETCD_APISERVER_SERVER_CERT,
            ETCD_APISERVER_SERVER_KEY,
            ETCD_APISERVER_CLIENT_CERT,
            ETCD_APISERVER_CLIENT_KEY,
            KUBEAPISERVER_CERT,
            KUBEAPISERVER_KEY,
            KUBELET_CERT,
            KUBELET_KEY,
        ];
        for key in all_pem_keys {
            let mut kv = KeyValues::default();
            kv.set_pem(key, PEM);
            let raw = B64.decode(kv.require(key).expect("set")).expect("base64");
            let want_gzip = matches!(
                key,
                "ETCD_CA_CERT"
                    | "ETCD_PEER_CERT"
                    | "ETCD_APISERVER_CA_CERT"
                    | "ETCD_APISERVER_SERVER_CERT"
                    | "ETCD_APISERVER_CLIENT_CERT"
            );
            assert_eq!(is_gzip(&raw), want_gzip, "{key}");
            assert!(!kv.require(key).expect("set").contains('\n'), "{key}: one line");
            assert_eq!(kv.pem(key).expect("decode"), PEM, "{key}");
        }
    }

    #[test]
    fn reads_the_five_as_plain_base64_as_kube_ha_wrote_them_before() {
        let mut kv = KeyValues::default();
        for key in GZIPPED {
            kv.set(key, B64.encode(PEM));
            assert_eq!(kv.pem(key).expect("old form"), PEM, "{key}");
        }
    }

    #[test]
    fn gzip_under_any_other_key_is_an_error_not_a_silent_gunzip() {
        let mut kv = KeyValues::default();
        kv.set(CA_CERT, B64.encode(gzip(PEM.as_bytes())));
        let err = kv.pem(CA_CERT).expect_err("gzip'd CA_CERT");
        assert!(err.to_string().contains("gzip"), "{err}");
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let mut kv = KeyValues::default();
        kv.set(ETCD_CA_CERT, B64.encode(gzip(&vec![b'A'; (GUNZIP_LIMIT + 1) as usize])));
        assert!(kv.pem(ETCD_CA_CERT).is_err());
    }

    #[test]
    fn ensure_pem_keeps_bytes_already_in_contract_form_and_rewrites_the_old_form() {
        let mut kv = KeyValues::default();
        // kube-up's gzip has another header (name, mtime) than ours: same PEM, other bytes.
        let mut foreign = flate2::GzBuilder::new()
            .filename("ca.pem")
            .mtime(1_700_000_000)
            .write(Vec::new(), flate2::Compression::default());
        foreign.write_all(PEM.as_bytes()).expect("gzip");
        let foreign = B64.encode(foreign.finish().expect("gzip"));
        kv.set(ETCD_CA_CERT, foreign.clone());
        kv.ensure_pem(ETCD_CA_CERT, PEM);
        assert_eq!(kv.get(ETCD_CA_CERT), Some(foreign.as_str()), "kept verbatim");

        kv.set(ETCD_APISERVER_CA_CERT, B64.encode(PEM));
        kv.ensure_pem(ETCD_APISERVER_CA_CERT, PEM);
        let raw = B64
            .decode(kv.require(ETCD_APISERVER_CA_CERT).expect("set"))
            .expect("b64");
        assert!(is_gzip(&raw), "old plain form rewritten gzip'd");

        kv.ensure_pem(CA_CERT, PEM);
        assert_eq!(kv.pem(CA_CERT).expect("set"), PEM);
    }

    #[test]
    fn etcd_ca_key_is_read_from_kube_env_else_from_its_old_home() {
        let (mut env, mut certs) = (KeyValues::default(), KeyValues::default());
        certs.set_pem(ETCD_CA_KEY, KEY_PEM);
        assert_eq!(etcd_ca_key(&env, &certs).expect("old home"), KEY_PEM);
        let newer = "-----BEGIN PRIVATE KEY-----\nNEW\n-----END PRIVATE KEY-----\n";
        env.set_pem(ETCD_CA_KEY, newer);
        assert_eq!(etcd_ca_key(&env, &certs).expect("kube-env first"), newer);
        assert!(etcd_ca_key(&KeyValues::default(), &KeyValues::default()).is_err());
    }

    /// A pair of maps that passes: what a kube-ha replica carries.
    fn valid() -> (KeyValues, KeyValues) {
        let (mut env, mut certs) = (KeyValues::default(), KeyValues::default());
        for key in [
            CA_CERT,
            MASTER_CERT,
            MASTER_KEY,
            ETCD_CA_CERT,
            ETCD_CA_KEY,
            ETCD_PEER_CERT,
            ETCD_PEER_KEY,
        ] {
            env.set_pem(key, if key.ends_with("_KEY") { KEY_PEM } else { PEM });
        }
        for key in [
            CA_KEY,
            ETCD_APISERVER_CA_CERT,
            ETCD_APISERVER_CA_KEY,
            ETCD_APISERVER_SERVER_CERT,
            ETCD_APISERVER_SERVER_KEY,
            ETCD_APISERVER_CLIENT_CERT,
            ETCD_APISERVER_CLIENT_KEY,
        ] {
            certs.set_pem(key, if key.ends_with("_KEY") { KEY_PEM } else { PEM });
        }
        env.set(INITIAL_ETCD_CLUSTER, "kubernetes-master");
        env.set(INITIAL_ETCD_CLUSTER_STATE, "new");
        (env, certs)
    }

    fn violations(env: &KeyValues, certs: &KeyValues) -> Vec<String> {
        match check_vm_metadata(env, certs) {
            Ok(()) => Vec::new(),
            Err(e) => e.violations.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn check_vm_metadata_accepts_a_complete_pair() {
        let (env, certs) = valid();
        assert_eq!(violations(&env, &certs), Vec::<String>::new());
        // kube-up's unused keys are '' and count as absent for all-or-none groups.
        let (mut env, mut certs) = valid();
        for key in GROUPS[0].keys {
            certs.set(key, "");
        }
        env.set(REQUESTHEADER_CA_CERT, "");
        assert_eq!(violations(&env, &certs), Vec::<String>::new());
    }

    /// (what is changed, the violation it must produce)
    type Row = (&'static str, fn(&mut KeyValues, &mut KeyValues), &'static str);

    #[test]
    fn check_vm_metadata_refuses_what_breaks_configure_helper() {
        let rows: &[Row] = &[
            (
                "a key in both maps",
                |_, c| c.set(INITIAL_ETCD_CLUSTER, "x"),
                "INITIAL_ETCD_CLUSTER is in both",
            ),
            (
                "a generated token",
                |e, _| e.set("KUBE_SCHEDULER_TOKEN", "t"),
                "sets KUBE_SCHEDULER_TOKEN",
            ),
            ("a *_CERT_PATH", |_, c| c.set("CA_CERT_PATH", "/x"), "sets CA_CERT_PATH"),
            (
                "a *_KEY_PATH",
                |e, _| e.set("ETCD_APISERVER_CA_KEY_PATH", "/x"),
                "sets ETCD_APISERVER_CA_KEY_PATH",
            ),
            (
                "REGISTER_MASTER_KUBELET",
                |e, _| e.set("REGISTER_MASTER_KUBELET", "true"),
                "sets REGISTER_MASTER_KUBELET",
            ),
            (
                "DOCKER_REGISTRY",
                |e, _| e.set("DOCKER_REGISTRY", "r"),
                "sets DOCKER_REGISTRY",
            ),
            (
                "KUBELET_CONFIG_FILE_ARG",
                |e, _| e.set("KUBELET_CONFIG_FILE_ARG", "x"),
                "sets KUBELET_CONFIG_FILE_ARG",
            ),
            (
                "an empty CA_CERT_BUNDLE",
                |e, _| e.set("CA_CERT_BUNDLE", ""),
                "sets CA_CERT_BUNDLE",
            ),
            (
                "half a service-account pair",
                |e, _| e.set_pem("SERVICEACCOUNT_KEY", KEY_PEM),
                "sets SERVICEACCOUNT_KEY",
            ),
            (
                "an empty serving override",
                |e, _| {
                    e.set("APISERVER_SERVER_CERT", "");
                    e.set("APISERVER_SERVER_KEY", "");
                },
                "sets APISERVER_SERVER_CERT",
            ),
            (
                "half a client override",
                |_, c| c.set_pem("APISERVER_CLIENT_CERT", PEM),
                "sets APISERVER_CLIENT_CERT",
            ),
            (
                "RUNTIME_CONFIG with dynamic audit",
                |e, _| {
                    e.set("ENABLE_APISERVER_DYNAMIC_AUDIT", "true");
                    e.set("RUNTIME_CONFIG", "x");
                },
                "sets RUNTIME_CONFIG",
            ),
            (
                "a key that is no identifier",
                |e, _| e.set("KUBE-ENV", "x"),
                "\"KUBE-ENV\" is not a shell variable name",
            ),
            (
                "a key starting with a digit",
                |e, _| e.set("1A", "x"),
                "\"1A\" is not a shell variable name",
            ),
            (
                "five of six etcd-apiserver keys",
                |_, c| {
                    c.remove(ETCD_APISERVER_CA_KEY);
                },
                "etcd-apiserver TLS: ",
            ),
            (
                "an empty one of six",
                |_, c| c.set(ETCD_APISERVER_CLIENT_KEY, ""),
                "missing or empty",
            ),
            (
                "peer TLS without its key",
                |e, _| {
                    e.remove(ETCD_PEER_KEY);
                },
                "etcd peer TLS: ETCD_CA_CERT, ETCD_PEER_CERT set but ETCD_PEER_KEY",
            ),
            (
                "a request-header CA alone",
                |_, c| c.set_pem(REQUESTHEADER_CA_CERT, PEM),
                "aggregator: REQUESTHEADER_CA_CERT set but PROXY_CLIENT_CERT, PROXY_CLIENT_KEY",
            ),
            (
                "a konnectivity CA alone",
                |_, c| c.set_pem("KONNECTIVITY_SERVER_CA_CERT", PEM),
                "konnectivity server:",
            ),
            (
                "FEATURE_GATES without CCM_FEATURE_GATES",
                |e, _| e.set("FEATURE_GATES", "A=true"),
                "CCM feature gates",
            ),
            (
                "IP aliases without NODE_IPAM_MODE",
                |e, _| e.set(ENABLE_IP_ALIASES, "true"),
                "IP aliases",
            ),
            (
                "a KCM run-as without the PKI readers group",
                |e, _| {
                    e.set("KUBE_CONTROLLER_MANAGER_RUNASUSER", "2003");
                    e.set("KUBE_CONTROLLER_MANAGER_RUNASGROUP", "2003");
                },
                "KUBE_PKI_READERS_GROUP",
            ),
            (
                "a line break",
                |e, _| e.set("NOTE", "a\nb"),
                "NOTE is not one printable line",
            ),
            (
                "a plain etcd certificate",
                |e, _| e.set(ETCD_PEER_CERT, B64.encode(PEM)),
                "ETCD_PEER_CERT: must be base64 of gzip",
            ),
            (
                "a gzip'd other certificate",
                |e, _| e.set(CA_CERT, B64.encode(gzip(PEM.as_bytes()))),
                "CA_CERT: must be base64 of plain PEM",
            ),
            (
                "a key that is no base64",
                |e, _| e.set(MASTER_KEY, "not base64!"),
                "MASTER_KEY: not single-line base64",
            ),
            (
                "a certificate that is no PEM",
                |e, _| e.set(CA_CERT, B64.encode("hello")),
                "CA_CERT: does not decode to PEM",
            ),
            (
                "a map over 256 KiB",
                |e, _| e.set("BIG", "x".repeat(METADATA_VALUE_LIMIT)),
                "kube-env is 26",
            ),
        ];
        for (what, change, want) in rows {
            let (mut env, mut certs) = valid();
            change(&mut env, &mut certs);
            let got = violations(&env, &certs);
            assert!(
                got.iter().any(|v| v.contains(want)),
                "{what}: want {want:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn complete_overrides_and_satisfied_groups_pass() {
        let (mut env, mut certs) = valid();
        env.set_pem("SERVICEACCOUNT_CERT", PEM);
        env.set_pem("SERVICEACCOUNT_KEY", KEY_PEM);
        env.set_pem("CA_CERT_BUNDLE", PEM);
        env.set("FEATURE_GATES", "A=true");
        env.set(CCM_FEATURE_GATES, "");
        env.set(ENABLE_IP_ALIASES, "true");
        env.set(NODE_IPAM_MODE, "CloudAllocator");
        env.set("RUNTIME_CONFIG", "api/all=true");
        // kube-up's own *_PATH keys are not configure-helper's.
        env.set(
            AUTH_PROVIDER_GCP_STORAGE_PATH,
            "https://storage.googleapis.com/gke-release/auth-provider-gcp",
        );
        env.set("NODE_PROBLEM_DETECTOR_RELEASE_PATH", "");
        certs.set_pem(REQUESTHEADER_CA_CERT, PEM);
        certs.set_pem(PROXY_CLIENT_CERT, PEM);
        certs.set_pem(PROXY_CLIENT_KEY, KEY_PEM);
        assert_eq!(violations(&env, &certs), Vec::<String>::new());
    }

    #[test]
    fn the_refusal_names_every_violation_in_one_line() {
        let (mut env, mut certs) = valid();
        env.set("KUBE_SCHEDULER_TOKEN", "t");
        certs.set(MULTIZONE, "true");
        env.set(MULTIZONE, "true");
        let err = check_vm_metadata(&env, &certs).expect_err("two violations");
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("KUBE_SCHEDULER_TOKEN") && line.contains("MULTIZONE is in both"),
            "{line}"
        );
    }

    #[test]
    fn missing_for_boot_names_what_a_real_gce_boot_needs() {
        let (env, certs) = valid();
        let missing = missing_for_boot(&env, &certs);
        assert!(
            missing.contains(&KUBELET_ARGS) && missing.contains(&KUBEAPISERVER_CERT),
            "{missing:?}"
        );
        assert!(!missing.contains(&CA_CERT), "{missing:?}");
    }

    #[test]
    fn identifiers_are_bash_variable_names() {
        for ok in ["A", "_A", "a_b1", "KUBE_ENV"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "Ä"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
