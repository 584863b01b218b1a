//! The environment contract (SPEC §1.1): [`RawEnv`] is the environment as given (parsed by envy,
//! nothing checked), [`Config`] is the validated, resolved settings every op works from.
//!
//! Two stages, as in ripgrep's low/high args: parsing never fails on a value, validation turns
//! every bad value into one [`Refusal`] line that says what to do. Nothing here touches the
//! network; checks that need the project (the zone catalogue, existing replicas) live in the ops.

pub mod vars;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::names::{self, ClusterNames};

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

/// The environment as given: one optional string per [`vars::ENV_VARS`] entry (a test keeps the
/// two equal). Unset and empty are told apart, because `KUBE_REPLICA_NAME=` is a mistake.
#[derive(Debug, Default, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawEnv {
    pub kube_gce_zone: Option<String>,
    pub project: Option<String>,
    pub cloudsdk_core_project: Option<String>,
    pub kube_gce_instance_prefix: Option<String>,
    pub kube_replicate_existing_master: Option<String>,
    pub kube_delete_nodes: Option<String>,
    pub kube_replica_name: Option<String>,
    pub multizone: Option<String>,
    pub enable_etcd_quorum_read: Option<String>,
    pub enable_etcd_quorum_reads: Option<String>,
    pub kube_use_existing_master: Option<String>,
    pub num_nodes: Option<String>,
    pub master_size: Option<String>,
    pub master_disk_type: Option<String>,
    pub master_disk_size: Option<String>,
    pub master_root_disk_size: Option<String>,
    pub kube_gce_master_image: Option<String>,
    pub kube_gce_master_project: Option<String>,
    pub preemptible_master: Option<String>,
    pub kube_gce_network: Option<String>,
    pub service_cluster_ip_range: Option<String>,
    pub dns_domain: Option<String>,
    pub kubeconfig: Option<String>,
    pub kube_ha_compute_endpoint: Option<String>,
    pub kube_ha_sandbox: Option<String>,
    pub kube_ha_timeout: Option<String>,
    pub kube_ha_dry_run: Option<String>,
    pub kube_ha_output: Option<String>,
    pub kube_ha_log: Option<String>,
    pub kube_ha_failpoint: Option<String>,
}

impl RawEnv {
    /// Parse the variables of the contract out of an environment; other variables are ignored,
    /// except that names one edit away from a known one are reported by [`typo_warnings`].
    pub fn from_vars<I>(vars: I) -> Result<RawEnv, Refusal>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let known = vars.into_iter().filter(|(k, _)| vars::is_known(k));
        envy::from_iter(known).map_err(|e| Refusal::new(format!("cannot read the environment: {e}")))
    }

    /// The process environment (non-UTF-8 values are skipped; they cannot be valid settings).
    pub fn from_process() -> Result<RawEnv, Refusal> {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }
}

/// Warnings for variables that look like typos of known ones (`KUBE_GCE_ZOEN`).
pub fn typo_warnings<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names
        .into_iter()
        .filter_map(|n| {
            let n = n.as_ref();
            vars::near_miss(n).map(|known| format!("{n} is not a kube-ha variable; did you mean {known}?"))
        })
        .collect()
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
    /// Where the kubeconfig goes.
    pub kubeconfig: PathBuf,
    /// Where the Compute API is.
    pub endpoint: Endpoint,
    /// Overall deadline of the command.
    pub timeout: Duration,
    /// `KUBE_HA_DRY_RUN`.
    pub dry_run: bool,
    /// `KUBE_HA_OUTPUT`.
    pub output: OutputFormat,
    /// Things worth saying that are not errors (printed when the command proceeds).
    pub warnings: Vec<String>,
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

/// The default image family when `KUBE_GCE_MASTER_IMAGE` is unset.
pub const DEFAULT_IMAGE_FAMILY: &str = "cos-109-lts";

/// The default image project (`KUBE_GCE_MASTER_PROJECT`).
pub const DEFAULT_IMAGE_PROJECT: &str = "cos-cloud";

impl MasterSettings {
    /// kube-up's master for `num_nodes` worker nodes (config-default.sh, config-common.sh): the
    /// machine type and disk sizes grow with the cluster, the image is the family's latest.
    pub fn kube_up_defaults(num_nodes: u32, image_project: &str) -> MasterSettings {
        let (disk, root) = master_disk_sizes_gb(num_nodes);
        MasterSettings {
            machine_type: format!("n1-standard-{}", master_vcpus(num_nodes)),
            disk_type: "pd-ssd".into(),
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
        sandbox_default_dir: impl FnOnce() -> PathBuf,
    ) -> Result<Config, Refusal> {
        let mut warnings = Vec::new();

        let zone = nonempty("KUBE_GCE_ZONE", raw.kube_gce_zone.as_deref())?
            .unwrap_or("us-central1-b")
            .to_string();
        let region = region_of_zone(&zone).ok_or_else(|| {
            Refusal::new(format!(
                "KUBE_GCE_ZONE={zone:?} is not a zone name; set it to a zone such as europe-west1-b"
            ))
        })?;

        let endpoint = match (
            nonempty("KUBE_HA_COMPUTE_ENDPOINT", raw.kube_ha_compute_endpoint.as_deref())?,
            raw.kube_ha_sandbox.as_deref().map(str::trim),
        ) {
            (Some(_), Some(s)) if !s.is_empty() && s != "0" && s != "false" => {
                return Err(Refusal::new(
                    "KUBE_HA_COMPUTE_ENDPOINT and KUBE_HA_SANDBOX are both set; unset one of them",
                ));
            }
            (Some(url), _) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Refusal::new(format!(
                        "KUBE_HA_COMPUTE_ENDPOINT={url:?} is not an http(s) URL; set it to e.g. http://127.0.0.1:8089"
                    )));
                }
                Endpoint::Url(url.trim_end_matches('/').to_string())
            }
            (None, None) | (None, Some("" | "0" | "false")) => Endpoint::Google,
            (None, Some("1" | "true")) => Endpoint::Sandbox(sandbox_default_dir()),
            (None, Some(dir)) => Endpoint::Sandbox(PathBuf::from(dir)),
        };

        let project = match (
            nonempty("PROJECT", raw.project.as_deref())?,
            nonempty("CLOUDSDK_CORE_PROJECT", raw.cloudsdk_core_project.as_deref())?,
        ) {
            (Some(p), _) | (None, Some(p)) => p.to_string(),
            (None, None) if matches!(endpoint, Endpoint::Sandbox(_)) => "sandbox".to_string(),
            (None, None) => {
                return Err(Refusal::new(
                    "no GCE project: set PROJECT (or CLOUDSDK_CORE_PROJECT, e.g. with gcloud config set project)",
                ));
            }
        };
        if !is_project_id(&project) {
            return Err(Refusal::new(format!(
                "PROJECT={project:?} is not a GCE project id (6-30 characters: lowercase letters, digits, hyphens)"
            )));
        }

        let prefix =
            nonempty("KUBE_GCE_INSTANCE_PREFIX", raw.kube_gce_instance_prefix.as_deref())?.unwrap_or("kubernetes");
        let names = ClusterNames::from_prefix(prefix);
        if !names::is_gce_name(names.master_name()) || !names::is_gce_name(&names.longest_derived_name()) {
            return Err(Refusal::new(format!(
                "KUBE_GCE_INSTANCE_PREFIX={prefix:?} cannot make GCE names (lowercase letters, digits and hyphens, \
                 starting with a letter, at most {} characters)",
                names::GCE_NAME_MAX - (names.longest_derived_name().len() - prefix.len())
            )));
        }

        let replicate = flag(
            "KUBE_REPLICATE_EXISTING_MASTER",
            raw.kube_replicate_existing_master.as_deref(),
        )?
        .unwrap_or(false);
        let delete_nodes = flag("KUBE_DELETE_NODES", raw.kube_delete_nodes.as_deref())?.unwrap_or(true);
        let multizone = flag("MULTIZONE", raw.multizone.as_deref())?.unwrap_or(false);
        let use_existing = flag("KUBE_USE_EXISTING_MASTER", raw.kube_use_existing_master.as_deref())?.unwrap_or(false);
        if use_existing && command == Command::Up {
            return Err(Refusal::new(
                "KUBE_USE_EXISTING_MASTER=true (creating worker nodes) is not supported by kube-ha, which manages \
                 masters only; unset it, and create nodes with your node tooling",
            ));
        }

        let quorum_read = match (
            flag("ENABLE_ETCD_QUORUM_READ", raw.enable_etcd_quorum_read.as_deref())?,
            flag("ENABLE_ETCD_QUORUM_READS", raw.enable_etcd_quorum_reads.as_deref())?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(Refusal::new(format!(
                    "ENABLE_ETCD_QUORUM_READ={a} and ENABLE_ETCD_QUORUM_READS={b} disagree; set only one of them"
                )));
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => false,
        };

        let replica_name = match raw.kube_replica_name.as_deref() {
            None => None,
            Some(n) if n.trim().is_empty() => {
                return Err(Refusal::new(
                    "KUBE_REPLICA_NAME is set but empty; unset it to pick the replica in KUBE_GCE_ZONE, or name a replica",
                ));
            }
            Some(n) if !names.is_replica(n) => {
                let why = if names::is_gce_name(n) {
                    "is not a replica name of this cluster"
                } else {
                    "cannot be a GCE instance name"
                };
                return Err(Refusal::new(format!(
                    "KUBE_REPLICA_NAME={n:?} {why}; expected {m} or {m}-xyz (see kube-ha status)",
                    m = names.master_name()
                )));
            }
            Some(n) => Some(n.to_string()),
        };
        if replica_name.is_some() && command == Command::Up {
            warnings.push("KUBE_REPLICA_NAME is only used by down; up ignores it".to_string());
        }
        if replicate && command == Command::Down {
            warnings.push("KUBE_REPLICATE_EXISTING_MASTER is only used by up; down ignores it".to_string());
        }

        let num_nodes = match nonempty("NUM_NODES", raw.num_nodes.as_deref())? {
            None => 3,
            Some(s) => s.parse::<u32>().map_err(|_| {
                Refusal::new(format!(
                    "NUM_NODES={s:?} is not a whole number; set it to the number of worker nodes, e.g. 3"
                ))
            })?,
        };

        let master = MasterOverrides {
            machine_type: gce_name_var("MASTER_SIZE", raw.master_size.as_deref(), "n1-standard-2")?,
            disk_type: gce_name_var("MASTER_DISK_TYPE", raw.master_disk_type.as_deref(), "pd-ssd")?,
            disk_size_gb: disk_size("MASTER_DISK_SIZE", raw.master_disk_size.as_deref())?,
            root_disk_size_gb: disk_size("MASTER_ROOT_DISK_SIZE", raw.master_root_disk_size.as_deref())?,
            image: gce_name_var(
                "KUBE_GCE_MASTER_IMAGE",
                raw.kube_gce_master_image.as_deref(),
                "cos-109-17800-66-0",
            )?,
            image_project: project_var("KUBE_GCE_MASTER_PROJECT", raw.kube_gce_master_project.as_deref())?,
            preemptible: flag("PREEMPTIBLE_MASTER", raw.preemptible_master.as_deref())?,
        };
        let network = gce_name_var("KUBE_GCE_NETWORK", raw.kube_gce_network.as_deref(), "default")?
            .unwrap_or_else(|| "default".into());

        let service_cluster_ip_range = nonempty("SERVICE_CLUSTER_IP_RANGE", raw.service_cluster_ip_range.as_deref())?
            .unwrap_or("10.0.0.0/16")
            .to_string();
        let service_ip = service_ip(&service_cluster_ip_range).ok_or_else(|| {
            Refusal::new(format!(
                "SERVICE_CLUSTER_IP_RANGE={service_cluster_ip_range:?} is not an IPv4 CIDR with room for a service IP; \
                 set it to e.g. 10.0.0.0/16"
            ))
        })?;

        let dns_domain = nonempty("DNS_DOMAIN", raw.dns_domain.as_deref())?
            .unwrap_or("cluster.local")
            .to_string();
        if !is_dns_name(&dns_domain) {
            return Err(Refusal::new(format!(
                "DNS_DOMAIN={dns_domain:?} is not a DNS domain; set it to e.g. cluster.local"
            )));
        }

        let kubeconfig = PathBuf::from(nonempty("KUBECONFIG", raw.kubeconfig.as_deref())?.unwrap_or("kubeconfig"));

        let timeout = match nonempty("KUBE_HA_TIMEOUT", raw.kube_ha_timeout.as_deref())? {
            None => Duration::from_secs(30 * 60),
            Some(s) => parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| {
                Refusal::new(format!(
                    "KUBE_HA_TIMEOUT={s:?} is not a duration; set it to e.g. 90s, 10m or 1h"
                ))
            })?,
        };

        let dry_run = flag("KUBE_HA_DRY_RUN", raw.kube_ha_dry_run.as_deref())?.unwrap_or(false);
        let output = match nonempty("KUBE_HA_OUTPUT", raw.kube_ha_output.as_deref())? {
            None | Some("text") => OutputFormat::Text,
            Some("json") => OutputFormat::Json,
            Some(o) => {
                return Err(Refusal::new(format!(
                    "KUBE_HA_OUTPUT={o:?} is not an output format; set it to text or json"
                )));
            }
        };

        Ok(Config {
            project,
            zone,
            region,
            names,
            replicate,
            delete_nodes,
            replica_name,
            multizone,
            quorum_read,
            num_nodes,
            master,
            network,
            service_cluster_ip_range,
            service_ip,
            dns_domain,
            kubeconfig,
            endpoint,
            timeout,
            dry_run,
            output,
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

/// `Some(value)` when set and not blank; a set-but-blank value is refused (kube-up would have
/// used the empty string and failed later, far from the cause).
fn nonempty<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, Refusal> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(Refusal::new(format!(
            "{name} is set but empty; unset it or give it a value"
        ))),
        Some(v) => Ok(Some(v.trim())),
    }
}

/// kube-up compared booleans with `== "true"` / `!= "false"`, so only those two words had a
/// meaning; anything else (`yes please`, `True`) is refused rather than guessed.
fn flag(name: &str, value: Option<&str>) -> Result<Option<bool>, Refusal> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(Refusal::new(format!(
            "{name}={v:?} is not a boolean; set it to true or false"
        ))),
    }
}

fn gce_name_var(name: &str, value: Option<&str>, example: &str) -> Result<Option<String>, Refusal> {
    match nonempty(name, value)? {
        None => Ok(None),
        Some(v) if names::is_gce_name(v) => Ok(Some(v.to_string())),
        Some(v) => Err(Refusal::new(format!(
            "{name}={v:?} is not a valid GCE name; set it to e.g. {example}"
        ))),
    }
}

fn project_var(name: &str, value: Option<&str>) -> Result<Option<String>, Refusal> {
    match nonempty(name, value)? {
        None => Ok(None),
        Some(v) if is_project_id(v) => Ok(Some(v.to_string())),
        Some(v) => Err(Refusal::new(format!(
            "{name}={v:?} is not a GCE project id; set it to e.g. cos-cloud"
        ))),
    }
}

fn disk_size(name: &str, value: Option<&str>) -> Result<Option<u64>, Refusal> {
    match nonempty(name, value)? {
        None => Ok(None),
        Some(v) => parse_disk_size_gb(v).map(Some).ok_or_else(|| {
            Refusal::new(format!(
                "{name}={v:?} is not a disk size; set it to a whole number of GB, e.g. 20GB"
            ))
        }),
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

fn is_dns_name(s: &str) -> bool {
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
        RawEnv::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("parse")
    }

    fn resolve(pairs: &[(&str, &str)], command: Command) -> Result<Config, Refusal> {
        let mut all = pairs.to_vec();
        if !pairs.iter().any(|(k, _)| *k == "PROJECT") {
            all.push(("PROJECT", "my-project"));
        }
        Config::resolve(&env(&all), command, || PathBuf::from("/tmp/sandbox"))
    }

    #[test]
    fn raw_env_fields_are_exactly_the_table() {
        let value = serde_json::to_value(RawEnv::default()).expect("serialize");
        let mut fields: Vec<String> = value
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.to_uppercase())
            .collect();
        let mut table: Vec<String> = vars::ENV_VARS.iter().map(|v| v.name.to_string()).collect();
        fields.sort();
        table.sort();
        assert_eq!(fields, table);
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
        let err = Config::resolve(&env(&[]), Command::Up, || PathBuf::from("/s")).expect_err("no project");
        assert!(err.to_string().contains("PROJECT"));
        let c =
            Config::resolve(&env(&[("KUBE_HA_SANDBOX", "1")]), Command::Up, || PathBuf::from("/s")).expect("sandbox");
        assert_eq!(c.project, "sandbox");
        assert_eq!(c.endpoint, Endpoint::Sandbox(PathBuf::from("/s")));
        let c = Config::resolve(&env(&[("CLOUDSDK_CORE_PROJECT", "gcloud-proj")]), Command::Up, || {
            PathBuf::from("/s")
        })
        .expect("gcloud");
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

    #[test]
    fn typo_warning_names_the_known_variable() {
        let w = typo_warnings(["KUBE_GCE_ZOEN", "PATH", "KUBE_GCE_ZONE"]);
        assert_eq!(
            w,
            vec!["KUBE_GCE_ZOEN is not a kube-ha variable; did you mean KUBE_GCE_ZONE?".to_string()]
        );
    }
}
