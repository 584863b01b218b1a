//! The environment contract (SPEC §1.1): [`RawEnv`] is the environment as given (the known
//! variables, and the names that look like typos of them), [`Config`] is the validated, resolved
//! settings every op works from.
//!
//! Two stages, as in ripgrep's low/high args: reading never fails on a value, [`Config::resolve`]
//! turns every bad value into one [`Refusal`] line that says what to do. Each variable is read
//! through its entry in [`vars`], which holds its parser and its default; `resolve` is a list of
//! small functions, one per variable or group. Nothing here touches the network; checks that
//! need the project (the zone catalogue, existing replicas) live in the planners.

pub mod vars;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::error::Refusal;
use crate::names::{self, ClusterNames};
use crate::plan::StepKind;
use crate::plan::lock::OwnerRef;

pub use vars::{DEFAULT_DISK_TYPE, DEFAULT_IMAGE_FAMILY, DEFAULT_IMAGE_PROJECT};

/// The command being configured: a few variables only make sense for some commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `kube-ha up`.
    Up,
    /// `kube-ha down`.
    Down,
    /// `kube-ha status`.
    Status,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Up => "up",
            Command::Down => "down",
            Command::Status => "status",
        })
    }
}

/// The environment as given: the value of every variable of [`vars::ENV_VARS`] that is set, and
/// the other names that are one edit away from a known one (`KUBE_DELETE_NODE`). Unset and empty
/// are told apart, because `KUBE_REPLICA_NAME=` is a mistake.
#[derive(Clone, Debug, Default)]
pub struct RawEnv {
    values: BTreeMap<&'static str, String>,
    near_misses: Vec<(String, &'static str)>,
}

impl RawEnv {
    /// Read the variables of the contract out of an environment; other names are ignored except
    /// the likely typos, which are kept for [`Config::resolve`] to refuse or warn about.
    pub fn from_vars<I>(vars: I) -> RawEnv
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut raw = RawEnv::default();
        for (k, v) in vars {
            if let Some(known) = vars::lookup(&k) {
                raw.values.insert(known.name, v);
            } else if let Some(known) = vars::near_miss(&k) {
                raw.near_misses.push((k, known));
            }
        }
        raw.near_misses.sort();
        raw
    }

    /// The process environment (non-UTF-8 values are skipped; they cannot be valid settings).
    pub fn from_process() -> RawEnv {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    /// The value of a known variable, as given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Variables that look like typos of known ones, with the known name.
    pub fn near_misses(&self) -> &[(String, &'static str)] {
        &self.near_misses
    }

    /// One sentence per likely typo: "`KUBE_GCE_ZOEN` is not a kube-ha variable; did you mean …?".
    pub fn typo_notes(&self) -> Vec<String> {
        self.near_misses
            .iter()
            .map(|(n, known)| format!("{n} is not a kube-ha variable; did you mean {known}?"))
            .collect()
    }
}

/// How results are printed on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Tables and sentences for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// What `KUBE_HA_SANDBOX` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxChoice {
    /// Unset, `0` or `false`.
    Off,
    /// `1` or `true`: the default state directory.
    DefaultDir,
    /// A state directory.
    Dir(PathBuf),
}

/// Where the Compute API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Real GCE with Application Default Credentials.
    Google,
    /// An explicit endpoint (the emulator), anonymous credentials.
    Url(String),
    /// The local sandbox under this state directory, started when needed.
    Sandbox(PathBuf),
}

/// `KUBE_HA_FAILPOINT`: where kube-ha kills itself, for crash tests (etcd's gofail), or steno's
/// "run every step twice" mode. Validated against the step kinds, so a typo cannot make a crash
/// test pass without crashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failpoint {
    /// `before:<kind>`: SIGKILL just before the first step of that kind.
    Before(StepKind),
    /// `after:<kind>`: SIGKILL just after the first step of that kind.
    After(StepKind),
    /// `repeat`: every step and every undo runs twice.
    Repeat,
}

impl FromStr for Failpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "repeat" {
            return Ok(Failpoint::Repeat);
        }
        let kinds = || StepKind::names().join(", ");
        let (when, kind) = s.split_once(':').ok_or_else(|| {
            format!(
                "is not a failpoint; set it to before:<step>, after:<step> or repeat (steps: {})",
                kinds()
            )
        })?;
        let kind = StepKind::from_str(kind).map_err(|_| format!("names no step kind; steps: {}", kinds()))?;
        match when {
            "before" => Ok(Failpoint::Before(kind)),
            "after" => Ok(Failpoint::After(kind)),
            _ => Err("is not a failpoint; it starts with before: or after:, or is repeat".into()),
        }
    }
}

/// Master VM settings that were set explicitly. The first master fills the gaps with kube-up's
/// defaults ([`Config::first_master_settings`]); a replica fills them from the existing master.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterOverrides {
    /// `MASTER_SIZE`.
    pub machine_type: Option<String>,
    /// `MASTER_DISK_TYPE`.
    pub disk_type: Option<String>,
    /// `MASTER_DISK_SIZE` in GB.
    pub disk_size_gb: Option<u64>,
    /// `MASTER_ROOT_DISK_SIZE` in GB.
    pub root_disk_size_gb: Option<u64>,
    /// `KUBE_GCE_MASTER_IMAGE`.
    pub image: Option<String>,
    /// `KUBE_GCE_MASTER_PROJECT`.
    pub image_project: Option<String>,
    /// `PREEMPTIBLE_MASTER`.
    pub preemptible: Option<bool>,
}

/// Fully resolved master VM settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasterSettings {
    /// Machine type name, e.g. `n1-standard-1`.
    pub machine_type: String,
    /// Data disk type, e.g. `pd-ssd`.
    pub disk_type: String,
    /// Data disk size in GB.
    pub disk_size_gb: u64,
    /// Boot disk size in GB.
    pub root_disk_size_gb: u64,
    /// Boot image, as a partial URL (`projects/cos-cloud/global/images/family/cos-109-lts`).
    pub source_image: String,
    /// Preemptible VM.
    pub preemptible: bool,
}

/// Command-line flags that have an environment twin (`--dry-run` = `KUBE_HA_DRY_RUN=true`),
/// passed into [`Config::resolve`] so the resolved config is whole.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--output`.
    pub output: Option<OutputFormat>,
}

/// Validated, resolved settings of one invocation.
#[derive(Clone, Debug)]
pub struct Config {
    /// GCE project id.
    pub project: String,
    /// `KUBE_GCE_ZONE`.
    pub zone: String,
    /// The zone's region.
    pub region: String,
    /// Every resource name.
    pub names: ClusterNames,
    /// `KUBE_REPLICATE_EXISTING_MASTER=true`.
    pub replicate: bool,
    /// `KUBE_DELETE_NODES` (default true).
    pub delete_nodes: bool,
    /// `KUBE_DELETE_NODES` was set (a bare `down` means teardown only by kube-up's default).
    pub delete_nodes_set: bool,
    /// `KUBE_REPLICA_NAME`.
    pub replica_name: Option<String>,
    /// `MULTIZONE`.
    pub multizone: bool,
    /// `ENABLE_ETCD_QUORUM_READ(S)`.
    pub quorum_read: bool,
    /// `NUM_NODES`.
    pub num_nodes: u32,
    /// Explicit master VM settings.
    pub master: MasterOverrides,
    /// `KUBE_GCE_NETWORK`.
    pub network: String,
    /// `SERVICE_CLUSTER_IP_RANGE` as given.
    pub service_cluster_ip_range: String,
    /// Its first address + 1: the `kubernetes` service IP.
    pub service_ip: Ipv4Addr,
    /// `DNS_DOMAIN`.
    pub dns_domain: String,
    /// The kubeconfig file `up` merges into (the first of `KUBECONFIG`'s list).
    pub kubeconfig: PathBuf,
    /// Where the Compute API is.
    pub endpoint: Endpoint,
    /// Overall deadline of the command.
    pub timeout: Duration,
    /// `KUBE_HA_DRY_RUN` or `--dry-run`.
    pub dry_run: bool,
    /// `KUBE_HA_OUTPUT` or `--output`.
    pub output: OutputFormat,
    /// `KUBE_HA_ALLOW_SAME_ZONE`.
    pub allow_same_zone: bool,
    /// `KUBE_HA_TAKE_OVER_LOCK`: the owner whose lock the operator declared gone for good.
    pub take_over_lock: Option<OwnerRef>,
    /// `KUBE_HA_LOCK_HOST`: the host name to act as (testing).
    pub lock_host: Option<String>,
    /// `KUBE_HA_FAILPOINT` (testing).
    pub failpoint: Option<Failpoint>,
    /// `KUBE_HA_SSH_VIA`: which IP of each master SSH goes to.
    pub ssh_via: crate::ssh::SshVia,
    /// `KUBE_HA_KNOWN_HOSTS`; `None`: gcloud's `~/.ssh/google_compute_known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// `KUBE_HA_SSH_SOURCE_RANGES`: sources of the `MASTER_NAME-ssh` rule the first up creates.
    pub ssh_source_ranges: Vec<String>,
    /// `KUBE_HA_SSH_KEY_TIMEOUT`: how long the guest agent may take to install the run's key.
    pub ssh_key_timeout: Duration,
    /// Where a first master's bootstrap comes from (`KUBE_ROOT`, the release tarballs).
    pub release: ReleaseSource,
    /// Things worth saying that are not errors (printed once when the command proceeds).
    pub warnings: Vec<String>,
}

/// What a first master's bootstrap is read from (SPEC §8); checked by `ops::release` before acting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseSource {
    /// `KUBE_ROOT`.
    pub kube_root: Option<PathBuf>,
    /// `SERVER_BINARY_TAR_URL`/`_HASH`, `KUBE_MANIFESTS_TAR_URL`/`_HASH` (empty when unset).
    pub artifacts: crate::bootstrap::ReleaseArtifacts,
}

impl ReleaseSource {
    /// Whether the operator set any of it.
    pub fn is_given(&self) -> bool {
        let a = &self.artifacts;
        self.kube_root.is_some()
            || [
                &a.server_binary_tar_url,
                &a.server_binary_tar_hash,
                &a.kube_manifests_tar_url,
                &a.kube_manifests_tar_hash,
            ]
            .iter()
            .any(|v| !v.is_empty())
    }
}

/// kube-up's `get-master-size`: vCPUs by node count (config-common.sh).
pub fn master_vcpus(num_nodes: u32) -> u32 {
    match num_nodes {
        n if n > 3000 => 64,
        n if n > 500 => 32,
        n if n > 250 => 16,
        n if n > 100 => 8,
        n if n > 10 => 4,
        n if n > 5 => 2,
        _ => 1,
    }
}

/// kube-up's `get-master-disk-size` and `get-master-root-disk-size`, in GB.
pub fn master_disk_sizes_gb(num_nodes: u32) -> (u64, u64) {
    match num_nodes {
        n if n > 2000 => (500, 100),
        n if n > 1000 => (100, 50),
        _ => (20, 20),
    }
}

impl MasterSettings {
    /// kube-up's master for `num_nodes` worker nodes (config-default.sh, config-common.sh): the
    /// machine type and disk sizes grow with the cluster, the image is the family's latest.
    pub fn kube_up_defaults(num_nodes: u32, image_project: &str) -> MasterSettings {
        let (disk, root) = master_disk_sizes_gb(num_nodes);
        MasterSettings {
            machine_type: format!("n1-standard-{}", master_vcpus(num_nodes)),
            disk_type: DEFAULT_DISK_TYPE.into(),
            disk_size_gb: disk,
            root_disk_size_gb: root,
            source_image: format!("projects/{image_project}/global/images/family/{DEFAULT_IMAGE_FAMILY}"),
            preemptible: false,
        }
    }
}

impl Config {
    /// Validate and resolve. `sandbox_default_dir` is where `KUBE_HA_SANDBOX=1` puts its state.
    pub fn resolve(
        raw: &RawEnv,
        command: Command,
        flags: Flags,
        sandbox_default_dir: impl FnOnce() -> PathBuf,
    ) -> Result<Config, Refusal> {
        use vars::*;
        let mut warnings = unknown_vars(raw, command)?;
        let zone = KUBE_GCE_ZONE.or_default(raw)?;
        let region =
            region_of_zone(&zone).ok_or_else(|| Refusal::new(format!("KUBE_GCE_ZONE={zone:?} is not a zone")))?;
        let endpoint = endpoint(raw, sandbox_default_dir)?;
        let project = project(raw, &endpoint)?;
        let names = KUBE_GCE_INSTANCE_PREFIX.or_default(raw)?;
        let replicate = KUBE_REPLICATE_EXISTING_MASTER.or_default(raw)?;
        if KUBE_USE_EXISTING_MASTER.or_default(raw)? && command == Command::Up {
            return Err(Refusal::new(
                "KUBE_USE_EXISTING_MASTER=true (creating worker nodes) is not supported by kube-ha, which manages \
                 masters only; unset it, and create nodes with your node tooling",
            ));
        }
        let replica_name = replica_name(raw, &names)?;
        if replica_name.is_some() && command == Command::Up {
            warnings.push("KUBE_REPLICA_NAME is only used by down; up ignores it".to_string());
        }
        if replicate && command == Command::Down {
            warnings.push("KUBE_REPLICATE_EXISTING_MASTER is only used by up; down ignores it".to_string());
        }
        let service_cluster_ip_range = SERVICE_CLUSTER_IP_RANGE.or_default(raw)?;
        let service_ip = service_ip(&service_cluster_ip_range).ok_or_else(|| {
            Refusal::new(format!(
                "SERVICE_CLUSTER_IP_RANGE={service_cluster_ip_range:?} has no service IP"
            ))
        })?;
        Ok(Config {
            project,
            zone,
            region,
            names,
            replicate,
            delete_nodes: KUBE_DELETE_NODES.or_default(raw)?,
            delete_nodes_set: KUBE_DELETE_NODES.set(raw)?.is_some(),
            replica_name,
            multizone: MULTIZONE.or_default(raw)?,
            quorum_read: quorum_read(raw)?,
            num_nodes: NUM_NODES.or_default(raw)?,
            master: master_overrides(raw)?,
            network: KUBE_GCE_NETWORK.or_default(raw)?,
            service_cluster_ip_range,
            service_ip,
            dns_domain: DNS_DOMAIN.or_default(raw)?,
            kubeconfig: KUBECONFIG.or_default(raw)?,
            endpoint,
            timeout: KUBE_HA_TIMEOUT.or_default(raw)?,
            dry_run: flags.dry_run || KUBE_HA_DRY_RUN.or_default(raw)?,
            output: match flags.output {
                Some(o) => o,
                None => KUBE_HA_OUTPUT.or_default(raw)?,
            },
            allow_same_zone: KUBE_HA_ALLOW_SAME_ZONE.or_default(raw)?,
            take_over_lock: KUBE_HA_TAKE_OVER_LOCK.set(raw)?,
            lock_host: KUBE_HA_LOCK_HOST.set(raw)?,
            failpoint: KUBE_HA_FAILPOINT.set(raw)?,
            ssh_via: KUBE_HA_SSH_VIA.or_default(raw)?,
            known_hosts: KUBE_HA_KNOWN_HOSTS.set(raw)?,
            ssh_source_ranges: KUBE_HA_SSH_SOURCE_RANGES.or_default(raw)?,
            ssh_key_timeout: KUBE_HA_SSH_KEY_TIMEOUT.or_default(raw)?,
            release: ReleaseSource {
                kube_root: KUBE_ROOT.set(raw)?,
                artifacts: crate::bootstrap::ReleaseArtifacts {
                    server_binary_tar_url: SERVER_BINARY_TAR_URL.set(raw)?.unwrap_or_default(),
                    server_binary_tar_hash: SERVER_BINARY_TAR_HASH.set(raw)?.unwrap_or_default(),
                    kube_manifests_tar_url: KUBE_MANIFESTS_TAR_URL.set(raw)?.unwrap_or_default(),
                    kube_manifests_tar_hash: KUBE_MANIFESTS_TAR_HASH.set(raw)?.unwrap_or_default(),
                },
            },
            warnings,
        })
    }

    /// The first master's VM settings: explicit values, else kube-up's defaults for `NUM_NODES`.
    pub fn first_master_settings(&self) -> MasterSettings {
        let image_project = self.master.image_project.as_deref().unwrap_or(DEFAULT_IMAGE_PROJECT);
        self.master
            .over(&MasterSettings::kube_up_defaults(self.num_nodes, image_project))
    }

    /// A replica's settings: the existing master's, except what was set explicitly (kube-up took
    /// everything from the operator's shell instead, a known pitfall).
    pub fn replica_settings(&self, existing: &MasterSettings) -> MasterSettings {
        self.master.over(existing)
    }
}

/// Likely typos of known variables. `up` and `down` refuse them (unless
/// `KUBE_HA_ALLOW_UNKNOWN_VARS=true`), because an ignored `KUBE_DELETE_NODE=false` turns a replica
/// removal into a teardown; `status` only warns.
fn unknown_vars(raw: &RawEnv, command: Command) -> Result<Vec<String>, Refusal> {
    let notes = raw.typo_notes();
    if notes.is_empty() || command == Command::Status || vars::KUBE_HA_ALLOW_UNKNOWN_VARS.or_default(raw)? {
        return Ok(notes);
    }
    let typos: Vec<String> = raw
        .near_misses()
        .iter()
        .map(|(n, known)| format!("{n} is not a kube-ha variable (did you mean {known}?)"))
        .collect();
    Err(Refusal::new(format!(
        "{}, and kube-ha would ignore it: fix the name, or set {}=true if it belongs to another tool",
        typos.join("; "),
        vars::KUBE_HA_ALLOW_UNKNOWN_VARS.name()
    )))
}

fn endpoint(raw: &RawEnv, sandbox_default_dir: impl FnOnce() -> PathBuf) -> Result<Endpoint, Refusal> {
    let url = vars::KUBE_HA_COMPUTE_ENDPOINT.set(raw)?;
    let sandbox = vars::KUBE_HA_SANDBOX.set(raw)?.unwrap_or(SandboxChoice::Off);
    Ok(match (url, sandbox) {
        (Some(_), SandboxChoice::DefaultDir | SandboxChoice::Dir(_)) => {
            return Err(Refusal::new(
                "KUBE_HA_COMPUTE_ENDPOINT and KUBE_HA_SANDBOX are both set; unset one of them",
            ));
        }
        (Some(url), SandboxChoice::Off) => Endpoint::Url(url),
        (None, SandboxChoice::Off) => Endpoint::Google,
        (None, SandboxChoice::DefaultDir) => Endpoint::Sandbox(sandbox_default_dir()),
        (None, SandboxChoice::Dir(dir)) => Endpoint::Sandbox(dir),
    })
}

fn project(raw: &RawEnv, endpoint: &Endpoint) -> Result<String, Refusal> {
    match (vars::PROJECT.set(raw)?, vars::CLOUDSDK_CORE_PROJECT.set(raw)?) {
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) if matches!(endpoint, Endpoint::Sandbox(_)) => Ok("sandbox".to_string()),
        (None, None) => Err(Refusal::new(
            "no GCE project: set PROJECT (or CLOUDSDK_CORE_PROJECT, e.g. with gcloud config set project)",
        )),
    }
}

fn replica_name(raw: &RawEnv, names: &ClusterNames) -> Result<Option<String>, Refusal> {
    match vars::KUBE_REPLICA_NAME.set(raw)? {
        Some(n) if !names.is_replica(&n) => Err(Refusal::new(format!(
            "KUBE_REPLICA_NAME={n:?} is not a replica name of this cluster; expected {m} or {m}-xyz (see kube-ha status)",
            m = names.master_name()
        ))),
        other => Ok(other),
    }
}

fn quorum_read(raw: &RawEnv) -> Result<bool, Refusal> {
    use vars::{ENABLE_ETCD_QUORUM_READ, ENABLE_ETCD_QUORUM_READS};
    match (ENABLE_ETCD_QUORUM_READ.set(raw)?, ENABLE_ETCD_QUORUM_READS.set(raw)?) {
        (Some(a), Some(b)) if a != b => Err(Refusal::new(format!(
            "ENABLE_ETCD_QUORUM_READ={a} and ENABLE_ETCD_QUORUM_READS={b} disagree; set only one of them"
        ))),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => ENABLE_ETCD_QUORUM_READ.or_default(raw),
    }
}

fn master_overrides(raw: &RawEnv) -> Result<MasterOverrides, Refusal> {
    use vars::*;
    Ok(MasterOverrides {
        machine_type: MASTER_SIZE.set(raw)?,
        disk_type: MASTER_DISK_TYPE.set(raw)?,
        disk_size_gb: MASTER_DISK_SIZE.set(raw)?,
        root_disk_size_gb: MASTER_ROOT_DISK_SIZE.set(raw)?,
        image: KUBE_GCE_MASTER_IMAGE.set(raw)?,
        image_project: KUBE_GCE_MASTER_PROJECT.set(raw)?,
        preemptible: PREEMPTIBLE_MASTER.set(raw)?,
    })
}

impl MasterOverrides {
    /// `base` with every explicitly set value replacing its counterpart.
    pub fn over(&self, base: &MasterSettings) -> MasterSettings {
        let source_image = match &self.image {
            Some(image) => {
                let project = self.image_project.as_deref().unwrap_or(DEFAULT_IMAGE_PROJECT);
                format!("projects/{project}/global/images/{image}")
            }
            None => base.source_image.clone(),
        };
        MasterSettings {
            machine_type: self.machine_type.clone().unwrap_or_else(|| base.machine_type.clone()),
            disk_type: self.disk_type.clone().unwrap_or_else(|| base.disk_type.clone()),
            disk_size_gb: self.disk_size_gb.unwrap_or(base.disk_size_gb),
            root_disk_size_gb: self.root_disk_size_gb.unwrap_or(base.root_disk_size_gb),
            source_image,
            preemptible: self.preemptible.unwrap_or(base.preemptible),
        }
    }
}

/// `20`, `20GB`, `20G`, `1TB` (gcloud's units; GCE's GB are GiB) → GB.
pub fn parse_disk_size_gb(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.to_ascii_uppercase().as_str() {
        "" | "GB" | "G" | "GIB" => 1,
        "TB" | "T" | "TIB" => 1024,
        _ => return None,
    };
    n.checked_mul(factor).filter(|gb| *gb > 0 && *gb <= 65536)
}

/// `90s`, `10m`, `1h30m`, `500ms` → Duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" | "" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
    }
    Some(total)
}

/// `europe-west1-b` → `europe-west1`; `None` when it is not a zone name
/// (`<area>-<location><digits>-<letter>`).
pub fn region_of_zone(zone: &str) -> Option<String> {
    let parts: Vec<&str> = zone.split('-').collect();
    let [area, location, letter] = parts.as_slice() else {
        return None;
    };
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let loc_letters = location.trim_end_matches(|c: char| c.is_ascii_digit());
    let ok =
        lower(area) && lower(loc_letters) && loc_letters.len() < location.len() && letter.len() == 1 && lower(letter);
    ok.then(|| format!("{area}-{location}"))
}

/// GCE project ids: 6–30 characters, `[a-z][-a-z0-9]*[a-z0-9]`.
pub fn is_project_id(s: &str) -> bool {
    (6..=30).contains(&s.len()) && names::is_gce_name(s)
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The `kubernetes` service IP: the range's network address + 1 (kube-up's `create-certs`).
pub fn service_ip(cidr: &str) -> Option<Ipv4Addr> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(Ipv4Addr::from((u32::from(addr) & mask) + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> RawEnv {
        RawEnv::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn resolve(pairs: &[(&str, &str)], command: Command) -> Result<Config, Refusal> {
        let mut all = pairs.to_vec();
        if !pairs.iter().any(|(k, _)| *k == "PROJECT") {
            all.push(("PROJECT", "my-project"));
        }
        Config::resolve(&env(&all), command, Flags::default(), || PathBuf::from("/tmp/sandbox"))
    }

    #[test]
    fn only_the_tables_variables_are_read_and_their_typos_are_kept() {
        let raw = env(&[
            ("KUBE_GCE_ZONE", "europe-west1-b"),
            ("PATH", "/bin"),
            ("KUBE_GCE_ZOEN", "x"),
        ]);
        assert_eq!(raw.get("KUBE_GCE_ZONE"), Some("europe-west1-b"));
        assert_eq!(raw.get("PATH"), None);
        assert_eq!(raw.near_misses(), [("KUBE_GCE_ZOEN".to_string(), "KUBE_GCE_ZONE")]);
    }

    #[test]
    fn a_variable_one_edit_from_a_known_one_refuses_up_and_down_and_only_warns_status() {
        let typo = [("KUBE_DELETE_NODE", "false")];
        for command in [Command::Up, Command::Down] {
            let err = resolve(&typo, command).expect_err("refused").to_string();
            assert!(err.contains("did you mean KUBE_DELETE_NODES?"), "{err}");
            assert!(err.contains("KUBE_HA_ALLOW_UNKNOWN_VARS=true"), "{err}");
        }
        let c = resolve(&typo, Command::Status).expect("status proceeds");
        assert!(c.warnings.iter().any(|w| w.contains("did you mean KUBE_DELETE_NODES")));
        let c = resolve(&[typo[0], ("KUBE_HA_ALLOW_UNKNOWN_VARS", "true")], Command::Down).expect("override");
        assert!(c.delete_nodes && !c.delete_nodes_set, "the typo is not read");
        assert!(c.warnings.iter().any(|w| w.contains("did you mean KUBE_DELETE_NODES")));
    }

    #[test]
    fn a_failpoint_must_name_a_step_kind() {
        let c = resolve(&[("KUBE_HA_FAILPOINT", "after:create_replica_vm")], Command::Up).expect("ok");
        assert_eq!(c.failpoint, Some(Failpoint::After(StepKind::CreateReplicaVm)));
        let c = resolve(&[("KUBE_HA_FAILPOINT", "repeat")], Command::Up).expect("ok");
        assert_eq!(c.failpoint, Some(Failpoint::Repeat));
        for bad in ["after:create_vmm", "during:create_replica_vm", "kill"] {
            let err = resolve(&[("KUBE_HA_FAILPOINT", bad)], Command::Up)
                .expect_err(bad)
                .to_string();
            assert!(err.starts_with("KUBE_HA_FAILPOINT="), "{err}");
            assert!(err.contains("create_replica_vm") || err.contains("before:"), "{err}");
        }
    }

    #[test]
    fn flags_win_over_their_environment_twins() {
        let raw = env(&[("PROJECT", "my-project"), ("KUBE_HA_OUTPUT", "json")]);
        let flags = Flags {
            dry_run: true,
            output: Some(OutputFormat::Text),
        };
        let c = Config::resolve(&raw, Command::Up, flags, || PathBuf::from("/s")).expect("ok");
        assert!(c.dry_run);
        assert_eq!(c.output, OutputFormat::Text);
    }

    #[test]
    fn spec_invocations_resolve() {
        let c = resolve(
            &[
                ("MULTIZONE", "true"),
                ("KUBE_GCE_ZONE", "europe-west1-b"),
                ("ENABLE_ETCD_QUORUM_READS", "true"),
            ],
            Command::Up,
        )
        .expect("first master");
        assert_eq!(c.region, "europe-west1");
        assert!(c.multizone && c.quorum_read && !c.replicate && c.delete_nodes);
        assert_eq!(c.names.master_name(), "kubernetes-master");
        assert_eq!(c.service_ip, Ipv4Addr::new(10, 0, 0, 1));

        let c = resolve(
            &[
                ("KUBE_GCE_ZONE", "europe-west1-c"),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ],
            Command::Up,
        )
        .expect("add");
        assert!(c.replicate);

        let c = resolve(
            &[
                ("KUBE_DELETE_NODES", "false"),
                ("KUBE_GCE_ZONE", "europe-west1-c"),
                ("KUBE_REPLICA_NAME", "kubernetes-master-a1b"),
            ],
            Command::Down,
        )
        .expect("remove");
        assert!(!c.delete_nodes);
        assert_eq!(c.replica_name.as_deref(), Some("kubernetes-master-a1b"));
    }

    #[test]
    fn bad_values_are_refused_with_one_line_naming_the_variable() {
        for (pairs, command, needle) in [
            (vec![("KUBE_GCE_ZONE", "europe_west1_b")], Command::Up, "KUBE_GCE_ZONE"),
            (vec![("KUBE_GCE_ZONE", "europe-west1")], Command::Up, "KUBE_GCE_ZONE"),
            (
                vec![("KUBE_REPLICATE_EXISTING_MASTER", "yes please")],
                Command::Up,
                "KUBE_REPLICATE_EXISTING_MASTER",
            ),
            (
                vec![("KUBE_USE_EXISTING_MASTER", "true")],
                Command::Up,
                "KUBE_USE_EXISTING_MASTER",
            ),
            (vec![("KUBE_REPLICA_NAME", "")], Command::Down, "KUBE_REPLICA_NAME"),
            (
                vec![("KUBE_REPLICA_NAME", "Kubernetes_Master")],
                Command::Down,
                "cannot be a GCE instance name",
            ),
            (
                vec![("KUBE_REPLICA_NAME", "other-master")],
                Command::Down,
                "not a replica name",
            ),
            (vec![("MASTER_DISK_SIZE", "big")], Command::Up, "MASTER_DISK_SIZE"),
            (vec![("NUM_NODES", "three")], Command::Up, "NUM_NODES"),
            (
                vec![
                    ("ENABLE_ETCD_QUORUM_READ", "true"),
                    ("ENABLE_ETCD_QUORUM_READS", "false"),
                ],
                Command::Up,
                "disagree",
            ),
            (vec![("KUBE_DELETE_NODES", "no")], Command::Down, "KUBE_DELETE_NODES"),
            (
                vec![("SERVICE_CLUSTER_IP_RANGE", "10.0.0.0")],
                Command::Up,
                "SERVICE_CLUSTER_IP_RANGE",
            ),
            (vec![("KUBE_HA_TIMEOUT", "soon")], Command::Up, "KUBE_HA_TIMEOUT"),
            (
                vec![("KUBE_GCE_INSTANCE_PREFIX", "My_Cluster")],
                Command::Up,
                "KUBE_GCE_INSTANCE_PREFIX",
            ),
            (
                vec![("KUBE_GCE_INSTANCE_PREFIX", &"k".repeat(45))],
                Command::Up,
                "KUBE_GCE_INSTANCE_PREFIX",
            ),
            (vec![("PROJECT", "x")], Command::Up, "PROJECT"),
            (vec![("KUBE_HA_OUTPUT", "yaml")], Command::Status, "KUBE_HA_OUTPUT"),
        ] {
            let err = resolve(&pairs, command).expect_err(needle);
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg:?} should mention {needle}");
            assert!(!msg.contains('\n'), "{msg:?} must be one line");
        }
    }

    #[test]
    fn missing_project_is_refused_unless_sandboxed() {
        let resolve = |pairs: &[(&str, &str)]| {
            Config::resolve(&env(pairs), Command::Up, Flags::default(), || PathBuf::from("/s"))
        };
        let err = resolve(&[]).expect_err("no project");
        assert!(err.to_string().contains("PROJECT"));
        let c = resolve(&[("KUBE_HA_SANDBOX", "1")]).expect("sandbox");
        assert_eq!(c.project, "sandbox");
        assert_eq!(c.endpoint, Endpoint::Sandbox(PathBuf::from("/s")));
        let c = resolve(&[("CLOUDSDK_CORE_PROJECT", "gcloud-proj")]).expect("gcloud");
        assert_eq!(c.project, "gcloud-proj");
    }

    #[test]
    fn first_master_is_sized_like_kube_up() {
        let c = resolve(&[("NUM_NODES", "200")], Command::Up).expect("ok");
        let m = c.first_master_settings();
        assert_eq!(m.machine_type, "n1-standard-8");
        assert_eq!((m.disk_size_gb, m.root_disk_size_gb), (20, 20));
        assert_eq!(m.disk_type, "pd-ssd");
        assert_eq!(m.source_image, "projects/cos-cloud/global/images/family/cos-109-lts");
        let c = resolve(&[("NUM_NODES", "1500"), ("MASTER_DISK_SIZE", "1TB")], Command::Up).expect("ok");
        let m = c.first_master_settings();
        assert_eq!((m.disk_size_gb, m.root_disk_size_gb), (1024, 50));
    }

    #[test]
    fn replicas_copy_the_existing_master_unless_set() {
        let existing = MasterSettings {
            machine_type: "n1-standard-8".into(),
            disk_type: "pd-balanced".into(),
            disk_size_gb: 100,
            root_disk_size_gb: 50,
            source_image: "projects/cos-cloud/global/images/cos-1".into(),
            preemptible: false,
        };
        let c = resolve(&[("KUBE_REPLICATE_EXISTING_MASTER", "true")], Command::Up).expect("ok");
        assert_eq!(c.replica_settings(&existing), existing);
        let c = resolve(&[("MASTER_SIZE", "n1-standard-16")], Command::Up).expect("ok");
        assert_eq!(c.replica_settings(&existing).machine_type, "n1-standard-16");
    }

    #[test]
    fn parsers() {
        assert_eq!(region_of_zone("europe-west1-b").as_deref(), Some("europe-west1"));
        assert_eq!(
            region_of_zone("northamerica-northeast1-a").as_deref(),
            Some("northamerica-northeast1")
        );
        assert_eq!(region_of_zone("us-central1"), None);
        assert_eq!(region_of_zone("us-central-b"), None);
        assert_eq!(region_of_zone("US-central1-b"), None);
        assert_eq!(parse_disk_size_gb("20GB"), Some(20));
        assert_eq!(parse_disk_size_gb("2TB"), Some(2048));
        assert_eq!(parse_disk_size_gb("0"), None);
        assert_eq!(parse_disk_size_gb("20MB"), None);
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(service_ip("10.0.0.0/16"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(service_ip("10.96.5.7/12"), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(service_ip("10.0.0.0/31"), None);
    }
}
