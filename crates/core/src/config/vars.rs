//! The environment-variable table (SPEC §1.1): the one place that names every variable kube-ha
//! reads, with its default, its parser and what it means (ripgrep's flag table). `--help`,
//! `kube-ha help env --all`, the README table and the typo check are all generated from
//! [`ENV_VARS`]; [`Config::resolve`](super::Config::resolve) reads each variable through its
//! [`Var`] entry, so a default exists exactly once: as the text in this table, parsed by the
//! variable's own parser when the variable is unset.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Refusal;
use crate::names::{self, ClusterNames};
use crate::plan::lock::OwnerRef;

use super::{Failpoint, OutputFormat, RawEnv, SandboxChoice};
use crate::ssh::SshVia;

/// Who a variable is for: `--help` shows the operator's; the testing ones only with
/// `kube-ha help env --all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Operators and their automation.
    Operator,
    /// Tests and crash drills; never needed to operate a cluster.
    Testing,
}

/// What an unset variable means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// This value, parsed exactly like one the operator set: the only place the default lives.
    Value(&'static str),
    /// kube-ha works the value out as described (e.g. from `NUM_NODES`, or from the existing master).
    Derived(&'static str),
    /// Not given: off, or absent.
    Unset,
}

/// What a set-but-blank value (`VAR=`) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blank {
    /// The same as unset (kube-up's booleans: only `true` and `false` meant anything).
    Unset,
    /// A mistake, refused: kube-up would have used the empty string and failed later, far from the cause.
    Refused,
}

/// One variable's description: what the tables and the typo check need.
#[derive(Clone, Copy, Debug)]
pub struct EnvVar {
    /// The variable's name, exactly as operators set it.
    pub name: &'static str,
    /// What unset means.
    pub fallback: Fallback,
    /// What it means, one sentence.
    pub doc: &'static str,
    /// Who it is for.
    pub audience: Audience,
    /// What a blank value means.
    pub blank: Blank,
}

impl EnvVar {
    /// The default as shown to people.
    pub fn default_text(&self) -> &'static str {
        match self.fallback {
            Fallback::Value(v) | Fallback::Derived(v) => v,
            Fallback::Unset => "unset",
        }
    }
}

/// A variable with its parser: how `resolve` reads it.
#[derive(Clone, Copy)]
pub struct Var<T: 'static> {
    /// Its table entry.
    pub info: EnvVar,
    /// Parses a trimmed, non-blank value; the error completes "`NAME="value"` …" and says what to do.
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Var<T> {
    /// The name.
    pub const fn name(&self) -> &'static str {
        self.info.name
    }

    /// The value the operator set, parsed; `None` when unset (or blank, for [`Blank::Unset`]).
    pub fn set(&self, env: &RawEnv) -> Result<Option<T>, Refusal> {
        let Some(raw) = env.get(self.info.name) else {
            return Ok(None);
        };
        let value = raw.trim();
        if value.is_empty() {
            return match self.info.blank {
                Blank::Unset => Ok(None),
                Blank::Refused => Err(Refusal::new(format!(
                    "{} is set but empty; unset it or give it a value",
                    self.info.name
                ))),
            };
        }
        (self.parse)(value)
            .map(Some)
            .map_err(|why| Refusal::new(format!("{}={value:?} {why}", self.info.name)))
    }

    /// The default value ([`Fallback::Value`] parsed); `None` for derived or unset defaults. A
    /// test parses every `Value` default, so `None` here never hides a broken default.
    pub fn default_value(&self) -> Option<T> {
        match self.info.fallback {
            Fallback::Value(v) => (self.parse)(v).ok(),
            Fallback::Derived(_) | Fallback::Unset => None,
        }
    }

    /// The value set, else the default value.
    pub fn or_default(&self, env: &RawEnv) -> Result<T, Refusal> {
        match self.set(env)? {
            Some(v) => Ok(v),
            None => self
                .default_value()
                .ok_or_else(|| Refusal::new(format!("{} must be set", self.info.name))),
        }
    }

    /// Parse a value as kube-ha would read it from the environment (for checks of our own lines).
    pub fn parse(&self, value: &str) -> Result<T, String> {
        (self.parse)(value.trim())
    }
}

const fn operator<T>(
    name: &'static str,
    fallback: Fallback,
    doc: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Var<T> {
    Var {
        info: EnvVar {
            name,
            fallback,
            doc,
            audience: Audience::Operator,
            blank: Blank::Refused,
        },
        parse,
    }
}

const fn testing<T>(
    name: &'static str,
    fallback: Fallback,
    doc: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Var<T> {
    let mut v = operator(name, fallback, doc, parse);
    v.info.audience = Audience::Testing;
    v.info.blank = Blank::Unset;
    v
}

/// A boolean: kube-up compared with `== "true"` / `!= "false"`, so only those two words had a
/// meaning; anything else (`yes please`, `True`) is refused rather than guessed. Blank is unset.
const fn boolean(name: &'static str, fallback: Fallback, doc: &'static str) -> Var<bool> {
    let mut v = operator(name, fallback, doc, parse_bool);
    v.info.blank = Blank::Unset;
    v
}

use Fallback::{Derived, Unset, Value};

/// The data disk type of a first master when `MASTER_DISK_TYPE` is unset (kube-up's).
pub const DEFAULT_DISK_TYPE: &str = "pd-ssd";
/// The boot image project when `KUBE_GCE_MASTER_PROJECT` is unset (kube-up's).
pub const DEFAULT_IMAGE_PROJECT: &str = "cos-cloud";
/// The boot image family when `KUBE_GCE_MASTER_IMAGE` is unset.
pub const DEFAULT_IMAGE_FAMILY: &str = "cos-109-lts";

/// `KUBE_GCE_ZONE`.
pub const KUBE_GCE_ZONE: Var<String> = operator(
    "KUBE_GCE_ZONE",
    Value("us-central1-b"),
    "zone of the replica to add or remove; REGION is the zone minus its last -x",
    parse_zone,
);
/// `PROJECT`.
pub const PROJECT: Var<String> = operator(
    "PROJECT",
    Derived("$CLOUDSDK_CORE_PROJECT, else error"),
    "GCE project (sandbox: sandbox)",
    parse_project,
);
/// `CLOUDSDK_CORE_PROJECT`.
pub const CLOUDSDK_CORE_PROJECT: Var<String> = operator(
    "CLOUDSDK_CORE_PROJECT",
    Unset,
    "GCE project when PROJECT is unset (gcloud's setting)",
    parse_project,
);
/// `KUBE_GCE_INSTANCE_PREFIX`.
pub const KUBE_GCE_INSTANCE_PREFIX: Var<ClusterNames> = operator(
    "KUBE_GCE_INSTANCE_PREFIX",
    Value("kubernetes"),
    "MASTER_NAME = ${prefix}-master; every resource name derives from it",
    parse_prefix,
);
/// `KUBE_REPLICATE_EXISTING_MASTER`.
pub const KUBE_REPLICATE_EXISTING_MASTER: Var<bool> = boolean(
    "KUBE_REPLICATE_EXISTING_MASTER",
    Value("false"),
    "true: up adds one replica in KUBE_GCE_ZONE to an existing cluster",
);
/// `KUBE_DELETE_NODES`.
pub const KUBE_DELETE_NODES: Var<bool> = boolean(
    "KUBE_DELETE_NODES",
    Value("true"),
    "false: down removes one replica and keeps the cluster; true: down tears the cluster down (only when one replica is left)",
);
/// `KUBE_REPLICA_NAME` (syntax only here; whether it names a replica of this cluster is checked
/// against the prefix by `resolve`).
pub const KUBE_REPLICA_NAME: Var<String> = operator(
    "KUBE_REPLICA_NAME",
    Unset,
    "replica to remove; else the replica in KUBE_GCE_ZONE (oldest if several)",
    parse_instance_name,
);
/// `MULTIZONE`.
pub const MULTIZONE: Var<bool> = boolean(
    "MULTIZONE",
    Value("false"),
    "recorded in kube-env on the first up; inherited by replicas",
);
/// `ENABLE_ETCD_QUORUM_READ`.
pub const ENABLE_ETCD_QUORUM_READ: Var<bool> = boolean(
    "ENABLE_ETCD_QUORUM_READ",
    Value("false"),
    "recorded as ETCD_QUORUM_READ in kube-env",
);
/// `ENABLE_ETCD_QUORUM_READS`.
pub const ENABLE_ETCD_QUORUM_READS: Var<bool> = boolean(
    "ENABLE_ETCD_QUORUM_READS",
    Value("false"),
    "plural spelling of ENABLE_ETCD_QUORUM_READ (the upstream doc used it)",
);
/// `KUBE_USE_EXISTING_MASTER`.
pub const KUBE_USE_EXISTING_MASTER: Var<bool> = boolean(
    "KUBE_USE_EXISTING_MASTER",
    Value("false"),
    "true (worker-node creation) is not supported: refused, no change",
);
/// `NUM_NODES`.
pub const NUM_NODES: Var<u32> = operator(
    "NUM_NODES",
    Value("3"),
    "sizes the first master as kube-up did (machine type, disk sizes)",
    parse_num_nodes,
);
/// `MASTER_SIZE`.
pub const MASTER_SIZE: Var<String> = operator(
    "MASTER_SIZE",
    Derived("n1-standard-<by NUM_NODES>"),
    "machine type of the first master; replicas copy the existing master's",
    |v| gce_name(v, "n1-standard-2"),
);
/// `MASTER_DISK_TYPE`.
pub const MASTER_DISK_TYPE: Var<String> = operator(
    "MASTER_DISK_TYPE",
    Value(DEFAULT_DISK_TYPE),
    "data disk type of the first master; replicas copy the existing master's",
    |v| gce_name(v, "pd-ssd"),
);
/// `MASTER_DISK_SIZE`.
pub const MASTER_DISK_SIZE: Var<u64> = operator(
    "MASTER_DISK_SIZE",
    Derived("20GB (by NUM_NODES)"),
    "data disk size of the first master; replicas copy the existing master's",
    parse_disk_size,
);
/// `MASTER_ROOT_DISK_SIZE`.
pub const MASTER_ROOT_DISK_SIZE: Var<u64> = operator(
    "MASTER_ROOT_DISK_SIZE",
    Derived("20GB (by NUM_NODES)"),
    "boot disk size of the first master; replicas copy the existing master's",
    parse_disk_size,
);
/// `KUBE_GCE_MASTER_IMAGE`.
pub const KUBE_GCE_MASTER_IMAGE: Var<String> = operator(
    "KUBE_GCE_MASTER_IMAGE",
    Derived("family cos-109-lts"),
    "boot image of the first master; replicas copy the existing master's",
    |v| gce_name(v, "cos-109-17800-66-0"),
);
/// `KUBE_GCE_MASTER_PROJECT`.
pub const KUBE_GCE_MASTER_PROJECT: Var<String> = operator(
    "KUBE_GCE_MASTER_PROJECT",
    Value(DEFAULT_IMAGE_PROJECT),
    "project of the boot image",
    parse_project,
);
/// `PREEMPTIBLE_MASTER`.
pub const PREEMPTIBLE_MASTER: Var<bool> = boolean(
    "PREEMPTIBLE_MASTER",
    Value("false"),
    "true: preemptible master VMs; replicas copy the existing master's",
);
/// `KUBE_GCE_NETWORK`.
pub const KUBE_GCE_NETWORK: Var<String> = operator(
    "KUBE_GCE_NETWORK",
    Value("default"),
    "VPC network of the masters and firewall rules",
    |v| gce_name(v, "default"),
);
/// `SERVICE_CLUSTER_IP_RANGE`.
pub const SERVICE_CLUSTER_IP_RANGE: Var<String> = operator(
    "SERVICE_CLUSTER_IP_RANGE",
    Value("10.0.0.0/16"),
    "its first address + 1 goes into the serving-certificate SANs",
    parse_service_range,
);
/// `DNS_DOMAIN`.
pub const DNS_DOMAIN: Var<String> = operator(
    "DNS_DOMAIN",
    Value("cluster.local"),
    "SAN kubernetes.default.svc.<domain>",
    parse_dns_domain,
);
/// `KUBECONFIG`: the file up merges the cluster into (the first of a colon-separated list, as kubectl writes).
pub const KUBECONFIG: Var<PathBuf> = operator(
    "KUBECONFIG",
    Value("kubeconfig"),
    "kubeconfig up merges this cluster's entries into (the first file of a colon-separated list; new files get mode 0600); a teardown removes them",
    parse_kubeconfig,
);
/// `KUBE_ROOT`: the release tree a first master's `user-data` and `configure-sh` come from.
pub const KUBE_ROOT: Var<PathBuf> = operator(
    "KUBE_ROOT",
    Unset,
    "a Kubernetes release tree that still has cluster/gce/gci (1.35 or older): a first master's user-data and configure-sh (required on GCE; the sandbox boots without)",
    |v| Ok(PathBuf::from(v)),
);
/// `SERVER_BINARY_TAR_URL`.
pub const SERVER_BINARY_TAR_URL: Var<String> = operator(
    "SERVER_BINARY_TAR_URL",
    Unset,
    "http(s) URL(s), comma-separated, of the kubernetes-server tarball a first master's configure.sh downloads (required on GCE)",
    |v| Ok(v.to_string()),
);
/// `SERVER_BINARY_TAR_HASH`.
pub const SERVER_BINARY_TAR_HASH: Var<String> = operator(
    "SERVER_BINARY_TAR_HASH",
    Derived("unset: configure.sh fetches <url>.sha512"),
    "sha512 (or sha1) hex of the server tarball",
    |v| Ok(v.to_string()),
);
/// `KUBE_MANIFESTS_TAR_URL`.
pub const KUBE_MANIFESTS_TAR_URL: Var<String> = operator(
    "KUBE_MANIFESTS_TAR_URL",
    Unset,
    "http(s) URL(s), comma-separated, of the kubernetes-manifests tarball a first master's configure.sh downloads (required on GCE)",
    |v| Ok(v.to_string()),
);
/// `KUBE_MANIFESTS_TAR_HASH`.
pub const KUBE_MANIFESTS_TAR_HASH: Var<String> = operator(
    "KUBE_MANIFESTS_TAR_HASH",
    Derived("unset: configure.sh fetches <url>.sha512"),
    "sha512 (or sha1) hex of the manifests tarball",
    |v| Ok(v.to_string()),
);
/// `KUBE_HA_COMPUTE_ENDPOINT`.
pub const KUBE_HA_COMPUTE_ENDPOINT: Var<String> = operator(
    "KUBE_HA_COMPUTE_ENDPOINT",
    Derived("unset (real GCE)"),
    "base URL of a Compute API (the emulator); anonymous credentials are used with it",
    parse_url,
);
/// `KUBE_HA_SANDBOX`.
pub const KUBE_HA_SANDBOX: Var<SandboxChoice> = {
    let mut v = operator(
        "KUBE_HA_SANDBOX",
        Unset,
        "1 or a directory: use the local sandbox, starting it in the background if needed",
        parse_sandbox,
    );
    v.info.blank = Blank::Unset;
    v
};
/// `KUBE_HA_TIMEOUT`.
pub const KUBE_HA_TIMEOUT: Var<Duration> = operator(
    "KUBE_HA_TIMEOUT",
    Value("30m"),
    "overall deadline of one command (e.g. 90s, 10m, 1h)",
    parse_timeout,
);
/// `KUBE_HA_DRY_RUN`.
pub const KUBE_HA_DRY_RUN: Var<bool> = boolean("KUBE_HA_DRY_RUN", Value("false"), "true: same as --dry-run");
/// `KUBE_HA_OUTPUT`.
pub const KUBE_HA_OUTPUT: Var<OutputFormat> = operator(
    "KUBE_HA_OUTPUT",
    Value("text"),
    "json: same as --output json",
    parse_output,
);
/// `KUBE_HA_LOG`.
pub const KUBE_HA_LOG: Var<String> = {
    let mut v = operator(
        "KUBE_HA_LOG",
        Unset,
        "diagnostics to stderr, an env-filter such as debug or kube_ha=trace",
        |v| Ok(v.to_string()),
    );
    v.info.blank = Blank::Unset;
    v
};
/// `KUBE_HA_ALLOW_UNKNOWN_VARS`.
pub const KUBE_HA_ALLOW_UNKNOWN_VARS: Var<bool> = boolean(
    "KUBE_HA_ALLOW_UNKNOWN_VARS",
    Value("false"),
    "true: up and down only warn about a variable one edit away from a known one (else they refuse: KUBE_DELETE_NODE=false must not mean a teardown)",
);
/// `KUBE_HA_ALLOW_SAME_ZONE`.
pub const KUBE_HA_ALLOW_SAME_ZONE: Var<bool> = boolean(
    "KUBE_HA_ALLOW_SAME_ZONE",
    Value("false"),
    "true: up may add a replica to a zone that has one while another zone of the region has none",
);
/// `KUBE_HA_TAKE_OVER_LOCK`.
pub const KUBE_HA_TAKE_OVER_LOCK: Var<OwnerRef> = operator(
    "KUBE_HA_TAKE_OVER_LOCK",
    Unset,
    "<host>:<pid> of a lock holder that is gone for good: take its lock over and resume its operation",
    parse_owner,
);
/// `KUBE_HA_SSH_VIA` (SPEC §5: etcd is reached over SSH to each master).
pub const KUBE_HA_SSH_VIA: Var<SshVia> = operator(
    "KUBE_HA_SSH_VIA",
    Value("external"),
    "which IP of each master kube-ha reaches over SSH (port 22) for etcd and the API: external (runs from outside the VPC) or internal (runs inside the VPC)",
    parse_ssh_via,
);
/// `KUBE_HA_KNOWN_HOSTS`.
pub const KUBE_HA_KNOWN_HOSTS: Var<PathBuf> = operator(
    "KUBE_HA_KNOWN_HOSTS",
    Derived("~/.ssh/google_compute_known_hosts (gcloud's)"),
    "known-hosts file where masters' SSH host keys are pinned on first use (alias compute.<instance id>) when they publish none in guest attributes; a key that differs is refused",
    |v| Ok(PathBuf::from(v)),
);
/// `KUBE_HA_SSH_SOURCE_RANGES`.
pub const KUBE_HA_SSH_SOURCE_RANGES: Var<Vec<String>> = operator(
    "KUBE_HA_SSH_SOURCE_RANGES",
    Value("0.0.0.0/0"),
    "comma-separated source ranges of the MASTER_NAME-ssh rule (tcp:22 to the masters) the first up creates; 0.0.0.0/0 is what kube-up's <network>-default-ssh allowed; must include where kube-ha runs (IAP users add 35.235.240.0/20)",
    parse_source_ranges,
);
/// `KUBE_HA_SSH_KEY_TIMEOUT`.
pub const KUBE_HA_SSH_KEY_TIMEOUT: Var<Duration> = operator(
    "KUBE_HA_SSH_KEY_TIMEOUT",
    Value("60s"),
    "how long to wait for a master's guest agent to install kube-ha's SSH key from its ssh-keys metadata (gcloud waits 60s)",
    parse_timeout,
);
/// `KUBE_HA_FAILPOINT`.
pub const KUBE_HA_FAILPOINT: Var<Failpoint> = testing(
    "KUBE_HA_FAILPOINT",
    Unset,
    "before:<step> or after:<step> kills kube-ha there with SIGKILL (step kinds as in --dry-run --output json); repeat runs every step twice",
    parse_failpoint,
);
/// `KUBE_HA_LOCK_HOST`.
pub const KUBE_HA_LOCK_HOST: Var<String> = testing(
    "KUBE_HA_LOCK_HOST",
    Derived("gethostname(2)"),
    "the host name kube-ha records in, and compares with, the lock owner (act as another host)",
    parse_host,
);
/// `KUBE_HA_ETCD_BINARY` (read by the sandbox's simulated VMs, listed so it is known).
pub const KUBE_HA_ETCD_BINARY: Var<PathBuf> = testing(
    "KUBE_HA_ETCD_BINARY",
    Value("etcd"),
    "the etcd binary the sandbox's simulated masters run",
    |v| Ok(PathBuf::from(v)),
);

/// Every variable kube-ha reads, in the order `--help` and the README show them.
pub const ENV_VARS: &[EnvVar] = &[
    KUBE_GCE_ZONE.info,
    PROJECT.info,
    CLOUDSDK_CORE_PROJECT.info,
    KUBE_GCE_INSTANCE_PREFIX.info,
    KUBE_REPLICATE_EXISTING_MASTER.info,
    KUBE_DELETE_NODES.info,
    KUBE_REPLICA_NAME.info,
    MULTIZONE.info,
    ENABLE_ETCD_QUORUM_READ.info,
    ENABLE_ETCD_QUORUM_READS.info,
    KUBE_USE_EXISTING_MASTER.info,
    NUM_NODES.info,
    MASTER_SIZE.info,
    MASTER_DISK_TYPE.info,
    MASTER_DISK_SIZE.info,
    MASTER_ROOT_DISK_SIZE.info,
    KUBE_GCE_MASTER_IMAGE.info,
    KUBE_GCE_MASTER_PROJECT.info,
    PREEMPTIBLE_MASTER.info,
    KUBE_GCE_NETWORK.info,
    SERVICE_CLUSTER_IP_RANGE.info,
    DNS_DOMAIN.info,
    KUBECONFIG.info,
    KUBE_ROOT.info,
    SERVER_BINARY_TAR_URL.info,
    SERVER_BINARY_TAR_HASH.info,
    KUBE_MANIFESTS_TAR_URL.info,
    KUBE_MANIFESTS_TAR_HASH.info,
    KUBE_HA_COMPUTE_ENDPOINT.info,
    KUBE_HA_SANDBOX.info,
    KUBE_HA_TIMEOUT.info,
    KUBE_HA_DRY_RUN.info,
    KUBE_HA_OUTPUT.info,
    KUBE_HA_LOG.info,
    KUBE_HA_ALLOW_UNKNOWN_VARS.info,
    KUBE_HA_ALLOW_SAME_ZONE.info,
    KUBE_HA_TAKE_OVER_LOCK.info,
    KUBE_HA_SSH_VIA.info,
    KUBE_HA_KNOWN_HOSTS.info,
    KUBE_HA_SSH_SOURCE_RANGES.info,
    KUBE_HA_SSH_KEY_TIMEOUT.info,
    KUBE_HA_FAILPOINT.info,
    KUBE_HA_LOCK_HOST.info,
    KUBE_HA_ETCD_BINARY.info,
];

// ---- parsers: each gets a trimmed, non-blank value ----

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not a boolean; set it to true or false".into()),
    }
}

fn parse_zone(v: &str) -> Result<String, String> {
    super::region_of_zone(v)
        .map(|_| v.to_string())
        .ok_or_else(|| "is not a zone name; set it to a zone such as europe-west1-b".into())
}

fn parse_project(v: &str) -> Result<String, String> {
    if super::is_project_id(v) {
        Ok(v.to_string())
    } else {
        Err("is not a GCE project id (6-30 characters: lowercase letters, digits, hyphens), e.g. my-project".into())
    }
}

fn parse_prefix(v: &str) -> Result<ClusterNames, String> {
    let names = ClusterNames::from_prefix(v);
    if names::is_gce_name(names.master_name()) && names::is_gce_name(&names.longest_derived_name()) {
        Ok(names)
    } else {
        Err(format!(
            "cannot make GCE names (lowercase letters, digits and hyphens, starting with a letter, at most {} characters)",
            names::GCE_NAME_MAX - (names.longest_derived_name().len() - v.len())
        ))
    }
}

fn parse_instance_name(v: &str) -> Result<String, String> {
    if names::is_gce_name(v) {
        Ok(v.to_string())
    } else {
        Err("cannot be a GCE instance name; name a replica as kube-ha status lists it".into())
    }
}

fn parse_num_nodes(v: &str) -> Result<u32, String> {
    v.parse()
        .map_err(|_| "is not a whole number; set it to the number of worker nodes, e.g. 3".into())
}

fn gce_name(v: &str, example: &str) -> Result<String, String> {
    if names::is_gce_name(v) {
        Ok(v.to_string())
    } else {
        Err(format!("is not a valid GCE name; set it to e.g. {example}"))
    }
}

fn parse_disk_size(v: &str) -> Result<u64, String> {
    super::parse_disk_size_gb(v).ok_or_else(|| "is not a disk size; set it to a whole number of GB, e.g. 20GB".into())
}

fn parse_service_range(v: &str) -> Result<String, String> {
    super::service_ip(v)
        .map(|_| v.to_string())
        .ok_or_else(|| "is not an IPv4 CIDR with room for a service IP; set it to e.g. 10.0.0.0/16".into())
}

fn parse_dns_domain(v: &str) -> Result<String, String> {
    if super::is_dns_name(v) {
        Ok(v.to_string())
    } else {
        Err("is not a DNS domain; set it to e.g. cluster.local".into())
    }
}

fn parse_kubeconfig(v: &str) -> Result<PathBuf, String> {
    v.split(':')
        .map(str::trim)
        .find(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "names no file; set it to a path such as ~/.kube/config".into())
}

fn parse_url(v: &str) -> Result<String, String> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err("is not an http(s) URL; set it to e.g. http://127.0.0.1:8089".into())
    }
}

fn parse_sandbox(v: &str) -> Result<SandboxChoice, String> {
    Ok(match v {
        "0" | "false" => SandboxChoice::Off,
        "1" | "true" => SandboxChoice::DefaultDir,
        dir => SandboxChoice::Dir(PathBuf::from(dir)),
    })
}

fn parse_timeout(v: &str) -> Result<Duration, String> {
    super::parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "is not a duration; set it to e.g. 90s, 10m or 1h".into())
}

fn parse_output(v: &str) -> Result<OutputFormat, String> {
    match v {
        "text" => Ok(OutputFormat::Text),
        "json" => Ok(OutputFormat::Json),
        _ => Err("is not an output format; set it to text or json".into()),
    }
}

fn parse_owner(v: &str) -> Result<OwnerRef, String> {
    v.parse()
        .map_err(|_| "is not a lock owner; set it to <host>:<pid> as the refusal or kube-ha status names it".into())
}

fn parse_ssh_via(v: &str) -> Result<SshVia, String> {
    match v {
        "external" => Ok(SshVia::External),
        "internal" => Ok(SshVia::Internal),
        _ => Err("is not a way to reach the masters; set it to external or internal".into()),
    }
}

/// `a.b.c.d/n` (or a bare address), IPv4, as GCE's `sourceRanges` take them.
fn is_ipv4_range(v: &str) -> bool {
    let (ip, prefix) = v.split_once('/').unwrap_or((v, "32"));
    ip.parse::<std::net::Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
}

fn parse_source_ranges(v: &str) -> Result<Vec<String>, String> {
    let ranges: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    match ranges.iter().find(|r| !is_ipv4_range(r)) {
        None if !ranges.is_empty() => Ok(ranges),
        _ => Err(
            "is not a comma-separated list of IPv4 ranges; set it to e.g. 0.0.0.0/0 or 203.0.113.0/24,35.235.240.0/20"
                .into(),
        ),
    }
}

fn parse_failpoint(v: &str) -> Result<Failpoint, String> {
    v.parse()
}

fn parse_host(v: &str) -> Result<String, String> {
    if v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        Ok(v.to_string())
    } else {
        Err("is not a host name (letters, digits, '-' and '.')".into())
    }
}

// ---- what the table is used for ----

/// Is `name` one of [`ENV_VARS`]?
pub fn is_known(name: &str) -> bool {
    lookup(name).is_some()
}

/// The table entry of `name`.
pub fn lookup(name: &str) -> Option<&'static EnvVar> {
    ENV_VARS.iter().find(|v| v.name == name)
}

/// The table for `--help` (the operator's variables) or `kube-ha help env --all` (every one):
/// aligned plain text.
pub fn help_text(all: bool) -> String {
    let shown: Vec<&EnvVar> = ENV_VARS
        .iter()
        .filter(|v| all || v.audience == Audience::Operator)
        .collect();
    let width = shown.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment (kube-up compatible):\n");
    for v in &shown {
        let testing = if v.audience == Audience::Testing {
            "(testing only) "
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:width$}  {testing}{} [default: {}]\n",
            v.name,
            v.doc,
            v.default_text()
        ));
    }
    if !all {
        out.push_str("\nTesting-only variables: kube-ha help env --all\n");
    }
    out
}

/// The table for the README (GitHub markdown); a test keeps the README equal to it.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in ENV_VARS {
        let doc = match v.audience {
            Audience::Operator => v.doc.to_string(),
            Audience::Testing => format!("*testing only (hidden from `--help`)*: {}", v.doc),
        };
        out.push_str(&format!("| `{}` | {} | {doc} |\n", v.name, v.default_text()));
    }
    out
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), so that
/// `KUBE_GCE_ZOEN` is one edit from `KUBE_GCE_ZONE`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The known variable an unknown name is probably a typo of.
pub fn near_miss(name: &str) -> Option<&'static str> {
    if is_known(name) || name.len() < 5 {
        return None;
    }
    let limit = if name.len() < 10 { 1 } else { 2 };
    ENV_VARS
        .iter()
        .map(|v| (edit_distance(name, v.name), v.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_named_and_unrelated_names_are_not() {
        assert_eq!(near_miss("KUBE_GCE_ZOEN"), Some("KUBE_GCE_ZONE"));
        assert_eq!(near_miss("KUBE_GCE_ZONES"), Some("KUBE_GCE_ZONE"));
        assert_eq!(
            near_miss("KUBE_REPLICATE_EXISTING_MASTERS"),
            Some("KUBE_REPLICATE_EXISTING_MASTER")
        );
        assert_eq!(near_miss("KUBE_DELETE_NODE"), Some("KUBE_DELETE_NODES"));
        assert_eq!(near_miss("MULTI_ZONE"), Some("MULTIZONE"));
        assert_eq!(near_miss("KUBE_HA_FAILPONT"), Some("KUBE_HA_FAILPOINT"));
        assert_eq!(near_miss("KUBE_GCE_ZONE"), None);
        assert_eq!(near_miss("HOSTNAME"), None);
        assert_eq!(near_miss("PATH"), None);
        assert_eq!(near_miss("XDG_STATE_HOME"), None);
        assert_eq!(near_miss("CARGO_PKG_NAME"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ENV_VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENV_VARS.len());
    }

    /// A default lives only as its table text, so every one must parse with its own parser.
    #[test]
    fn every_default_value_parses_with_its_own_parser() {
        fn check<T>(v: &Var<T>) {
            if let Fallback::Value(text) = v.info.fallback {
                assert!(v.parse(text).is_ok(), "{}'s default {text:?} does not parse", v.name());
                assert!(v.default_value().is_some(), "{}", v.name());
            }
        }
        check(&KUBE_GCE_ZONE);
        check(&KUBE_GCE_INSTANCE_PREFIX);
        check(&KUBE_REPLICATE_EXISTING_MASTER);
        check(&KUBE_DELETE_NODES);
        check(&MULTIZONE);
        check(&ENABLE_ETCD_QUORUM_READ);
        check(&ENABLE_ETCD_QUORUM_READS);
        check(&KUBE_USE_EXISTING_MASTER);
        check(&NUM_NODES);
        check(&MASTER_DISK_TYPE);
        check(&KUBE_GCE_MASTER_PROJECT);
        check(&PREEMPTIBLE_MASTER);
        check(&KUBE_GCE_NETWORK);
        check(&SERVICE_CLUSTER_IP_RANGE);
        check(&DNS_DOMAIN);
        check(&KUBECONFIG);
        check(&KUBE_HA_TIMEOUT);
        check(&KUBE_HA_DRY_RUN);
        check(&KUBE_HA_OUTPUT);
        check(&KUBE_HA_ALLOW_UNKNOWN_VARS);
        check(&KUBE_HA_ALLOW_SAME_ZONE);
        check(&KUBE_HA_ETCD_BINARY);
        check(&KUBE_HA_SSH_VIA);
        check(&KUBE_HA_SSH_SOURCE_RANGES);
        check(&KUBE_HA_SSH_KEY_TIMEOUT);
        // Every entry with a Value default was checked above.
        let checked = 25;
        let with_values = ENV_VARS
            .iter()
            .filter(|v| matches!(v.fallback, Fallback::Value(_)))
            .count();
        assert_eq!(with_values, checked);
    }

    #[test]
    fn the_image_default_shown_is_the_family_used() {
        assert!(
            KUBE_GCE_MASTER_IMAGE
                .info
                .default_text()
                .ends_with(DEFAULT_IMAGE_FAMILY)
        );
    }

    #[test]
    fn help_hides_the_testing_variables_and_all_shows_them() {
        let operator = help_text(false);
        let all = help_text(true);
        for v in ENV_VARS {
            assert!(all.contains(v.name), "{}", v.name);
            assert_eq!(
                operator.contains(v.name),
                v.audience == Audience::Operator,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn a_colon_separated_kubeconfig_writes_its_first_file() {
        assert_eq!(KUBECONFIG.parse("a:b").ok(), Some(PathBuf::from("a")));
        assert_eq!(KUBECONFIG.parse(":b").ok(), Some(PathBuf::from("b")));
        assert!(KUBECONFIG.parse(":").is_err());
    }
}
