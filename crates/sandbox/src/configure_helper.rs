//! What the release's on-VM scripts do with a master's metadata — `configure.sh` (the
//! `kube-master-installation` unit) and `configure-helper.sh` (`kube-master-configuration`) of
//! cloud-provider-gcp 2e30d050c, the last tree that had them (`reference/configure-helper-contract.md`)
//! — as pure functions: the shell both maps are sourced into, the certificate files they write,
//! the two etcd command lines they render, and every point at which they abort. `boot.rs` does the
//! I/O (metadata server, files, processes, the serial console) in configure-helper's order.
//!
//! Written from the scripts, not from kube-ha's rules (`kube_ha_core::pki::kube_env`): the sandbox
//! is the other side of the contract, so a mistake in kube-ha's writer *and* its checker shows up
//! here as a boot that stops. Shared with kube-ha is only the YAML reader (PyYAML `BaseLoader`
//! semantics), which is the library configure.sh uses, not a rule.
//!
//! # Simulated, with configure-helper's aborts
//! - `source` of both maps, every key `readonly`: a key in both, a name that is no shell
//!   identifier, or one of the names main() made readonly before, aborts;
//! - the variables configure-helper assigns itself, in its order (a `readonly` one aborts): the
//!   generated tokens, the `*_PATH` of every file it writes, the fallbacks `CA_CERT_BUNDLE`,
//!   `APISERVER_{SERVER,CLIENT}_*`, `SERVICEACCOUNT_*`, `REGISTER_MASTER_KUBELET`,
//!   `KUBELET_CONFIG_FILE_ARG`, `MASTER_PD_DEVICE`, compute-master-manifest-variables' names,
//!   `RUNTIME_CONFIG` under dynamic audit;
//! - `create-node-pki`, `create-master-pki`, `create-master-etcd-auth`,
//!   `create-master-etcd-apiserver-auth`, with their exact pipelines (`base64 --decode`, plus
//!   `gunzip` for the five etcd certificates: a value that is not gzip aborts), file modes
//!   (`write-pki-data`'s umask 077, or 027 and the readers group) and unguarded expansions
//!   (`nounset`);
//! - `start-etcd-servers`: the `chown` of the data disk's etcd dir, `prepare-etcd-manifest`'s flags;
//! - `configure-etcd-params`: all six etcd-apiserver keys or none, else `exit 1`.
//!
//! # Not simulated
//! The sandbox has no release tarballs, kubelet or control-plane images: configure.sh's downloads
//! (`SERVER_BINARY_TAR_URL`, …), the kubelet (`KUBELET_ARGS`), the rest of kube-apiserver's flags
//! (`SERVICEACCOUNT_ISSUER`, …), the controller manager, scheduler and addons, and the steps after
//! the apiserver. kube-ha checks those keys before it creates a master on GCE
//! (`kube_env::missing_for_boot`), and `tests/kube_env_contract.rs` reads them with the scripts'
//! own pipelines.
//!
//! etcd's client listeners are configure-helper's own, as rendered (`127.0.0.1`, mTLS for main,
//! plain HTTP for events): kube-ha reaches them over SSH to the VM, like kube-up did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use kube_ha_core::names::EtcdCluster;
use kube_ha_core::pki::kube_env::KeyValues;

/// Where configure-helper writes certificates (`/etc/srv/kubernetes`; on GCE a link onto the data
/// disk, here the VM's own directory).
pub const AUTH_DIR: &str = super::files::SRV_KUBERNETES;
/// Its `pki` subdirectory.
pub const PKI_DIR: &str = "/etc/srv/kubernetes/pki";
/// Where the data disk's etcd data lives (the etcd pods' hostPath).
pub const ETCD_DIR: &str = "/mnt/disks/master-pd/var/etcd";

/// The largest certificate gunzip may produce (a hostile value must not fill memory).
const GUNZIP_LIMIT: u64 = 1 << 20;

/// The two units (and scripts) of a kube-up master's boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// `configure.sh`, run by `kube-master-installation.service`: fetches the metadata.
    Configure,
    /// `configure-helper.sh`, run by `kube-master-configuration.service`.
    ConfigureHelper,
}

impl Script {
    /// The script's file name (the journal's identifier).
    pub fn name(self) -> &'static str {
        match self {
            Script::Configure => "configure.sh",
            Script::ConfigureHelper => "configure-helper.sh",
        }
    }

    /// Its systemd unit.
    pub fn unit(self) -> &'static str {
        match self {
            Script::Configure => "kube-master-installation.service",
            Script::ConfigureHelper => "kube-master-configuration.service",
        }
    }

    /// The unit's `Description=` (master.yaml), as systemd prints it.
    pub fn description(self) -> &'static str {
        match self {
            Script::Configure => "Download and install k8s binaries and configurations",
            Script::ConfigureHelper => "Configure kubernetes master",
        }
    }
}

/// Where a script stopped under `errexit`, and what bash (or the command) printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    /// The `log-wrap` step it was in, as its `SerialportLog` line names it.
    pub step: &'static str,
    /// What was printed before the exit.
    pub message: String,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (in {})", self.message, self.step)
    }
}

fn abort(step: &'static str, message: impl Into<String>) -> Abort {
    Abort {
        step,
        message: message.into(),
    }
}

/// One metadata map as configure.sh hands it on: `(KEY, value)` in its order.
pub type Pairs = Vec<(String, String)>;

/// A file `write-pki-data` writes: (its path variable, the variable holding the data, its name
/// under [`PKI_DIR`]).
type PkiFileOf = (&'static str, &'static str, &'static str);

/// configure.sh's conversion of a metadata item (`download-kube-env`, `download-kube-master-certs`):
/// PyYAML `BaseLoader`, every value a string. `what` names the item for the message.
pub fn parse_map(step: &'static str, what: &str, text: &str) -> Result<Pairs, Abort> {
    let map =
        KeyValues::from_yaml(text).map_err(|e| abort(step, format!("{what} is not a YAML map of strings: {e:#}")))?;
    Ok(map.0.into_iter().collect())
}

/// Names main() makes `readonly` before it sources kube-env.
const READONLY_BEFORE_SOURCING: [&str; 4] = [
    "UUID_MNT_PREFIX",
    "UUID_BLOCK_PREFIX",
    "COREDNS_AUTOSCALER",
    "KUBEDNS_AUTOSCALER",
];

/// configure-helper's shell: its variables and which are `readonly`.
#[derive(Clone, Debug)]
pub struct Shell {
    vars: BTreeMap<String, String>,
    readonly: BTreeSet<String>,
}

impl Default for Shell {
    fn default() -> Self {
        Shell {
            vars: BTreeMap::new(),
            readonly: READONLY_BEFORE_SOURCING.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Shell {
    /// `source <file>` of configure.sh's `readonly KEY=value` lines.
    pub fn source(&mut self, step: &'static str, file: &str, pairs: &[(String, String)]) -> Result<(), Abort> {
        for (line, (key, value)) in pairs.iter().enumerate() {
            let line = line + 1;
            if !is_identifier(key) {
                // bash prints the value too; the serial console is no place for a secret.
                return Err(abort(
                    step,
                    format!("{file}: line {line}: readonly: `{key}=…': not a valid identifier"),
                ));
            }
            if self.readonly.contains(key) {
                return Err(abort(step, format!("{file}: line {line}: {key}: readonly variable")));
            }
            self.vars.insert(key.clone(), value.clone());
            self.readonly.insert(key.clone());
        }
        Ok(())
    }

    /// `${NAME:-}`.
    pub fn value(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or("")
    }

    /// `[[ -n "${NAME:-}" ]]`.
    pub fn is_set(&self, name: &str) -> bool {
        !self.value(name).is_empty()
    }

    /// `${NAME}` under `nounset`: set (possibly empty), or the script dies.
    pub fn expand(&self, step: &'static str, name: &str) -> Result<&str, Abort> {
        self.vars
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| abort(step, format!("{name}: unbound variable")))
    }

    /// `NAME=value`: a readonly one kills the script.
    pub fn assign(&mut self, step: &'static str, name: &str, value: impl Into<String>) -> Result<(), Abort> {
        if self.readonly.contains(name) {
            return Err(abort(step, format!("{name}: readonly variable")));
        }
        self.vars.insert(name.to_string(), value.into());
        Ok(())
    }
}

/// One file a script writes, at its path inside the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmFile {
    /// Path inside the VM.
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Mode.
    pub mode: u32,
    /// Group (`chgrp`), when one is set.
    pub group: Option<u32>,
}

/// `echo "${value}" | base64 --decode`: GNU base64 ignores the newline echo adds and fails on
/// anything else that is not base64.
fn base64_decode(step: &'static str, value: &str) -> Result<Vec<u8>, Abort> {
    let cleaned: String = value.chars().filter(|c| *c != '\n').collect();
    B64.decode(cleaned.as_bytes())
        .map_err(|_| abort(step, "base64: invalid input"))
}

/// `| gunzip`: anything that is not gzip is gzip's "not in gzip format" and, under `pipefail`,
/// the end of the script.
fn gunzip(step: &'static str, bytes: &[u8]) -> Result<Vec<u8>, Abort> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(abort(step, "gzip: stdin: not in gzip format"));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(GUNZIP_LIMIT + 1)
        .read_to_end(&mut out)
        .map_err(|e| abort(step, format!("gzip: stdin: {e}")))?;
    if out.len() as u64 > GUNZIP_LIMIT {
        return Err(abort(step, "gzip: stdin: output too large"));
    }
    Ok(out)
}

/// `write-pki-data "${var}" path` (umask 077, or 027 plus `chgrp` of `KUBE_PKI_READERS_GROUP`).
fn write_pki_data(shell: &Shell, step: &'static str, var: &str, path: &str) -> Result<VmFile, Abort> {
    let bytes = base64_decode(step, shell.expand(step, var)?)?;
    let (mode, group) = match shell.value("KUBE_PKI_READERS_GROUP") {
        "" => (0o600, None),
        group => {
            let gid = group
                .parse::<u32>()
                .map_err(|_| abort(step, format!("chgrp: invalid group: '{group}'")))?;
            (0o640, Some(gid))
        }
    };
    Ok(VmFile {
        path: path.to_string(),
        bytes,
        mode,
        group,
    })
}

/// `echo "${var}" | base64 --decode [| gunzip] > path` under the default umask (0644): how the
/// etcd functions write, which kube-up's etcd calls over SSH rely on (they run without sudo).
fn write_plain(shell: &Shell, step: &'static str, var: &str, path: &str, gzipped: bool) -> Result<VmFile, Abort> {
    let raw = base64_decode(step, shell.expand(step, var)?)?;
    let bytes = if gzipped { gunzip(step, &raw)? } else { raw };
    Ok(VmFile {
        path: path.to_string(),
        bytes,
        mode: 0o644,
        group: None,
    })
}

/// A file under [`PKI_DIR`] written by `write-pki-data`, its path variable assigned first.
fn pki(
    shell: &mut Shell,
    step: &'static str,
    files: &mut Vec<VmFile>,
    path_var: &str,
    data_var: &str,
    file: &str,
) -> Result<(), Abort> {
    let path = format!("{PKI_DIR}/{file}");
    shell.assign(step, path_var, path.clone())?;
    files.push(write_pki_data(shell, step, data_var, &path)?);
    Ok(())
}

/// configure.sh wants `kubelet-config` (and waits for it forever) when kube-env says so.
pub fn needs_kubelet_config(kube_env: &[(String, String)]) -> bool {
    kube_env
        .iter()
        .any(|(k, v)| k == "REQUIRE_METADATA_KUBELET_CONFIG_FILE" && v == "true")
}

/// configure.sh fetches `kube-master-certs` (forever) and configure-helper takes the master path
/// only with `KUBERNETES_MASTER: 'true'`.
pub fn is_master(kube_env: &[(String, String)]) -> bool {
    kube_env.iter().any(|(k, v)| k == "KUBERNETES_MASTER" && v == "true")
}

/// Between `SourceKubeEnv` and `SourceKubeMasterCerts`: a `kubelet-config` file was downloaded.
pub fn kubelet_config_file_arg(shell: &mut Shell) -> Result<(), Abort> {
    shell.assign(
        "ConfigureHelperMain",
        "KUBELET_CONFIG_FILE_ARG",
        "--config /home/kubernetes/kubelet-config.yaml",
    )
}

/// `VerifyKubeUser`.
pub fn verify_kube_user(shell: &Shell) -> Result<(), Abort> {
    let user = shell.value("KUBE_USER");
    let ok = user.chars().all(|c| c.is_ascii_alphanumeric() || "-._@".contains(c));
    if !user.is_empty() && !ok {
        return Err(abort("VerifyKubeUser", "Bad KUBE_USER format."));
    }
    Ok(())
}

/// `GenerateTokens`.
pub fn generate_tokens(shell: &mut Shell) -> Result<(), Abort> {
    let step = "GenerateTokens";
    let mut names = vec![
        "KUBE_CONTROLLER_MANAGER_TOKEN",
        "CLOUD_CONTROLLER_MANAGER_TOKEN",
        "KUBE_SCHEDULER_TOKEN",
        "KUBE_CLUSTER_AUTOSCALER_TOKEN",
    ];
    if shell.value("ENABLE_L7_LOADBALANCING") == "glbc" {
        names.push("GCE_GLBC_TOKEN");
    }
    names.extend(["ADDON_MANAGER_TOKEN", "PDCSI_CONTROLLER_TOKEN"]);
    if shell.value("ENABLE_APISERVER_INSECURE_PORT") != "true" {
        names.push("KUBE_BOOTSTRAP_TOKEN");
    }
    if shell.value("PREPARE_KONNECTIVITY_SERVICE") == "true" {
        names.push("KONNECTIVITY_SERVER_TOKEN");
    }
    if shell.value("ENABLE_MONITORING_TOKEN") == "true" {
        names.push("MONITORING_TOKEN");
    }
    for name in names {
        shell.assign(step, name, "generated")?;
    }
    Ok(())
}

/// `MountMasterPD` (`find-master-pd` always sets `MASTER_PD_DEVICE`).
pub fn mount_master_pd(shell: &mut Shell, has_disk: bool) -> Result<(), Abort> {
    let device = if has_disk {
        "/dev/disk/by-id/google-master-pd"
    } else {
        ""
    };
    shell.assign("MountMasterPD", "MASTER_PD_DEVICE", device)
}

/// `CreateNodePKI`.
pub fn create_node_pki(shell: &mut Shell) -> Result<Vec<VmFile>, Abort> {
    let step = "CreateNodePKI";
    let mut files = Vec::new();
    if !shell.is_set("CA_CERT_BUNDLE") {
        let ca = shell.expand(step, "CA_CERT")?.to_string();
        shell.assign(step, "CA_CERT_BUNDLE", ca)?;
    }
    pki(
        shell,
        step,
        &mut files,
        "CA_CERT_BUNDLE_PATH",
        "CA_CERT_BUNDLE",
        "ca-certificates.crt",
    )?;
    if shell.is_set("KUBELET_CERT") && shell.is_set("KUBELET_KEY") {
        pki(
            shell,
            step,
            &mut files,
            "KUBELET_CERT_PATH",
            "KUBELET_CERT",
            "kubelet.crt",
        )?;
        pki(
            shell,
            step,
            &mut files,
            "KUBELET_KEY_PATH",
            "KUBELET_KEY",
            "kubelet.key",
        )?;
    }
    if shell.value("KONNECTIVITY_SERVICE_PROXY_PROTOCOL_MODE") == "http-connect" {
        for (path_var, data_var, file) in [
            (
                "KONNECTIVITY_AGENT_CA_CERT_PATH",
                "KONNECTIVITY_AGENT_CA_CERT",
                "konnectivity-agent/ca.crt",
            ),
            (
                "KONNECTIVITY_AGENT_CLIENT_KEY_PATH",
                "KONNECTIVITY_AGENT_CLIENT_KEY",
                "konnectivity-agent/client.key",
            ),
            (
                "KONNECTIVITY_AGENT_CLIENT_CERT_PATH",
                "KONNECTIVITY_AGENT_CLIENT_CERT",
                "konnectivity-agent/client.crt",
            ),
        ] {
            pki(shell, step, &mut files, path_var, data_var, file)?;
        }
    }
    Ok(files)
}

/// If either of `pair` is empty, assign both from `from` (expanded unguarded).
fn fallback(shell: &mut Shell, step: &'static str, pair: [&str; 2], from: [&str; 2]) -> Result<(), Abort> {
    if !shell.is_set(pair[0]) || !shell.is_set(pair[1]) {
        for (name, source) in pair.into_iter().zip(from) {
            let value = shell.expand(step, source)?.to_string();
            shell.assign(step, name, value)?;
        }
    }
    Ok(())
}

/// `CreateMasterPKI`.
pub fn create_master_pki(shell: &mut Shell) -> Result<Vec<VmFile>, Abort> {
    let step = "CreateMasterPKI";
    let mut files = Vec::new();
    pki(shell, step, &mut files, "CA_CERT_PATH", "CA_CERT", "ca.crt")?;
    if shell.is_set("CA_KEY") {
        pki(shell, step, &mut files, "CA_KEY_PATH", "CA_KEY", "ca.key")?;
    }
    fallback(
        shell,
        step,
        ["APISERVER_SERVER_CERT", "APISERVER_SERVER_KEY"],
        ["MASTER_CERT", "MASTER_KEY"],
    )?;
    pki(
        shell,
        step,
        &mut files,
        "APISERVER_SERVER_CERT_PATH",
        "APISERVER_SERVER_CERT",
        "apiserver.crt",
    )?;
    pki(
        shell,
        step,
        &mut files,
        "APISERVER_SERVER_KEY_PATH",
        "APISERVER_SERVER_KEY",
        "apiserver.key",
    )?;
    fallback(
        shell,
        step,
        ["APISERVER_CLIENT_CERT", "APISERVER_CLIENT_KEY"],
        ["KUBEAPISERVER_CERT", "KUBEAPISERVER_KEY"],
    )?;
    pki(
        shell,
        step,
        &mut files,
        "APISERVER_CLIENT_CERT_PATH",
        "APISERVER_CLIENT_CERT",
        "apiserver-client.crt",
    )?;
    pki(
        shell,
        step,
        &mut files,
        "APISERVER_CLIENT_KEY_PATH",
        "APISERVER_CLIENT_KEY",
        "apiserver-client.key",
    )?;
    fallback(
        shell,
        step,
        ["SERVICEACCOUNT_CERT", "SERVICEACCOUNT_KEY"],
        ["MASTER_CERT", "MASTER_KEY"],
    )?;
    if shell.is_set("OLD_MASTER_CERT") && shell.is_set("OLD_MASTER_KEY") {
        for (path_var, data_var, file) in [
            ("OLD_MASTER_CERT_PATH", "OLD_MASTER_CERT", "oldapiserver.crt"),
            ("OLD_MASTER_KEY_PATH", "OLD_MASTER_KEY", "oldapiserver.key"),
        ] {
            let path = format!("{PKI_DIR}/{file}");
            shell.assign(step, path_var, path.clone())?;
            files.push(write_plain(shell, step, data_var, &path, false)?);
        }
    }
    pki(
        shell,
        step,
        &mut files,
        "SERVICEACCOUNT_CERT_PATH",
        "SERVICEACCOUNT_CERT",
        "serviceaccount.crt",
    )?;
    pki(
        shell,
        step,
        &mut files,
        "SERVICEACCOUNT_KEY_PATH",
        "SERVICEACCOUNT_KEY",
        "serviceaccount.key",
    )?;
    let groups: [(&str, &[PkiFileOf]); 4] = [
        (
            "REQUESTHEADER_CA_CERT",
            &[
                ("REQUESTHEADER_CA_CERT_PATH", "REQUESTHEADER_CA_CERT", "aggr_ca.crt"),
                ("PROXY_CLIENT_KEY_PATH", "PROXY_CLIENT_KEY", "proxy_client.key"),
                ("PROXY_CLIENT_CERT_PATH", "PROXY_CLIENT_CERT", "proxy_client.crt"),
            ],
        ),
        (
            "KONNECTIVITY_SERVER_CA_CERT",
            &[
                (
                    "KONNECTIVITY_SERVER_CA_CERT_PATH",
                    "KONNECTIVITY_SERVER_CA_CERT",
                    "konnectivity-server/ca.crt",
                ),
                (
                    "KONNECTIVITY_SERVER_KEY_PATH",
                    "KONNECTIVITY_SERVER_KEY",
                    "konnectivity-server/server.key",
                ),
                (
                    "KONNECTIVITY_SERVER_CERT_PATH",
                    "KONNECTIVITY_SERVER_CERT",
                    "konnectivity-server/server.crt",
                ),
                (
                    "KONNECTIVITY_SERVER_CLIENT_KEY_PATH",
                    "KONNECTIVITY_SERVER_CLIENT_KEY",
                    "konnectivity-server/client.key",
                ),
                (
                    "KONNECTIVITY_SERVER_CLIENT_CERT_PATH",
                    "KONNECTIVITY_SERVER_CLIENT_CERT",
                    "konnectivity-server/client.crt",
                ),
            ],
        ),
        (
            "KONNECTIVITY_AGENT_CA_CERT",
            &[
                (
                    "KONNECTIVITY_AGENT_CA_KEY_PATH",
                    "KONNECTIVITY_AGENT_CA_KEY",
                    "konnectivity-agent/ca.key",
                ),
                (
                    "KONNECTIVITY_AGENT_CA_CERT_PATH",
                    "KONNECTIVITY_AGENT_CA_CERT",
                    "konnectivity-agent/ca.crt",
                ),
                (
                    "KONNECTIVITY_AGENT_KEY_PATH",
                    "KONNECTIVITY_AGENT_KEY",
                    "konnectivity-agent/server.key",
                ),
                (
                    "KONNECTIVITY_AGENT_CERT_PATH",
                    "KONNECTIVITY_AGENT_CERT",
                    "konnectivity-agent/server.crt",
                ),
            ],
        ),
        (
            "CLOUD_PVL_ADMISSION_CA_CERT",
            &[
                (
                    "CLOUD_PVL_ADMISSION_CA_CERT_PATH",
                    "CLOUD_PVL_ADMISSION_CA_CERT",
                    "cloud-pvl-admission/ca.crt",
                ),
                (
                    "CLOUD_PVL_ADMISSION_KEY_PATH",
                    "CLOUD_PVL_ADMISSION_KEY",
                    "cloud-pvl-admission/server.key",
                ),
                (
                    "CLOUD_PVL_ADMISSION_CERT_PATH",
                    "CLOUD_PVL_ADMISSION_CERT",
                    "cloud-pvl-admission/server.crt",
                ),
            ],
        ),
    ];
    for (trigger, members) in groups {
        if shell.is_set(trigger) {
            for (path_var, data_var, file) in members {
                pki(shell, step, &mut files, path_var, data_var, file)?;
            }
        }
    }
    Ok(files)
}

/// `CreateMasterKubeletAuth`: the master kubelet registers when all three keys are given.
pub fn create_master_kubelet_auth(shell: &mut Shell) -> Result<(), Abort> {
    if ["KUBELET_APISERVER", "KUBELET_CERT", "KUBELET_KEY"]
        .iter()
        .all(|k| shell.is_set(k))
    {
        shell.assign("CreateMasterKubeletAuth", "REGISTER_MASTER_KUBELET", "true")?;
    }
    Ok(())
}

/// `CreateMasterEtcdAuth`: the peer CA and this VM's peer pair, when all three are given (else
/// peers speak plain HTTP).
pub fn create_master_etcd_auth(shell: &Shell) -> Result<Vec<VmFile>, Abort> {
    let step = "CreateMasterEtcdAuth";
    if !peer_tls(shell) {
        return Ok(Vec::new());
    }
    Ok(vec![
        write_plain(shell, step, "ETCD_CA_CERT", &format!("{AUTH_DIR}/etcd-ca.crt"), true)?,
        write_plain(
            shell,
            step,
            "ETCD_PEER_KEY",
            &format!("{AUTH_DIR}/etcd-peer.key"),
            false,
        )?,
        write_plain(
            shell,
            step,
            "ETCD_PEER_CERT",
            &format!("{AUTH_DIR}/etcd-peer.crt"),
            true,
        )?,
    ])
}

fn peer_tls(shell: &Shell) -> bool {
    ["ETCD_CA_CERT", "ETCD_PEER_KEY", "ETCD_PEER_CERT"]
        .iter()
        .all(|k| shell.is_set(k))
}

/// The six etcd-apiserver keys (`configure-etcd-params` and main's client mTLS want all six).
const ETCD_APISERVER_KEYS: [&str; 6] = [
    "ETCD_APISERVER_CA_KEY",
    "ETCD_APISERVER_CA_CERT",
    "ETCD_APISERVER_SERVER_KEY",
    "ETCD_APISERVER_SERVER_CERT",
    "ETCD_APISERVER_CLIENT_KEY",
    "ETCD_APISERVER_CLIENT_CERT",
];

fn client_mtls(shell: &Shell) -> bool {
    ETCD_APISERVER_KEYS.iter().all(|k| shell.is_set(k))
}

/// `CreateMasterEtcdApiserverAuth`: runs when five are given (the CA key is expanded unguarded).
pub fn create_master_etcd_apiserver_auth(shell: &mut Shell) -> Result<Vec<VmFile>, Abort> {
    let step = "CreateMasterEtcdApiserverAuth";
    if !ETCD_APISERVER_KEYS[1..].iter().all(|k| shell.is_set(k)) {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for (path_var, data_var, file, gzipped) in [
        (
            "ETCD_APISERVER_CA_KEY_PATH",
            "ETCD_APISERVER_CA_KEY",
            "etcd-apiserver-ca.key",
            false,
        ),
        (
            "ETCD_APISERVER_CA_CERT_PATH",
            "ETCD_APISERVER_CA_CERT",
            "etcd-apiserver-ca.crt",
            true,
        ),
        (
            "ETCD_APISERVER_SERVER_KEY_PATH",
            "ETCD_APISERVER_SERVER_KEY",
            "etcd-apiserver-server.key",
            false,
        ),
        (
            "ETCD_APISERVER_SERVER_CERT_PATH",
            "ETCD_APISERVER_SERVER_CERT",
            "etcd-apiserver-server.crt",
            true,
        ),
        (
            "ETCD_APISERVER_CLIENT_KEY_PATH",
            "ETCD_APISERVER_CLIENT_KEY",
            "etcd-apiserver-client.key",
            false,
        ),
        (
            "ETCD_APISERVER_CLIENT_CERT_PATH",
            "ETCD_APISERVER_CLIENT_CERT",
            "etcd-apiserver-client.crt",
            true,
        ),
    ] {
        let path = format!("{PKI_DIR}/{file}");
        shell.assign(step, path_var, path.clone())?;
        files.push(write_plain(shell, step, data_var, &path, gzipped)?);
    }
    Ok(files)
}

/// `ComputeMasterManifestVariables`.
pub fn compute_master_manifest_variables(shell: &mut Shell) -> Result<(), Abort> {
    let step = "ComputeMasterManifestVariables";
    for name in [
        "CLOUD_CONFIG_OPT",
        "CLOUD_CONFIG_VOLUME",
        "CLOUD_CONFIG_MOUNT",
        "DOCKER_REGISTRY",
        "FLEXVOLUME_HOSTPATH_MOUNT",
        "FLEXVOLUME_HOSTPATH_VOLUME",
        "INSECURE_PORT_MAPPING",
    ] {
        shell.assign(step, name, "")?;
    }
    Ok(())
}

/// Whether `start-etcd-servers` runs at all (`ETCD_SERVERS` points the apiserver elsewhere).
pub fn starts_etcd(shell: &Shell) -> bool {
    !shell.is_set("ETCD_SERVERS")
}

/// `start-etcd-servers`' `chown -R` of the disk's etcd dir, when run-as ids are set: without the
/// data disk the dir does not exist and the script dies.
pub fn chown_etcd_dir(shell: &Shell, has_disk: bool) -> Result<(), Abort> {
    if shell.is_set("ETCD_RUNASUSER") && shell.is_set("ETCD_RUNASGROUP") && !has_disk {
        return Err(abort(
            "StartEtcdServers",
            format!("chown: cannot access '{ETCD_DIR}': No such file or directory"),
        ));
    }
    Ok(())
}

/// The VM an etcd member runs on, as `prepare-etcd-manifest` finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdHost {
    /// `${ETCD_HOSTNAME:-$(hostname -s)}`.
    pub name: String,
    /// That name resolved (python's `gethostbyname`, i.e. `/etc/hosts` on these VMs).
    pub ip: Ipv4Addr,
}

/// `${ETCD_HOSTNAME:-$(hostname -s)}`.
pub fn etcd_host_name(shell: &Shell, hostname: &str) -> String {
    match shell.value("ETCD_HOSTNAME") {
        "" => hostname.split('.').next().unwrap_or(hostname).to_string(),
        name => name.to_string(),
    }
}

/// One etcd member's command line as the static pod runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdCommandLine {
    /// Main or events.
    pub cluster: EtcdCluster,
    /// `--name`.
    pub name: String,
    /// The flags, in the manifest's order.
    pub args: Vec<String>,
    /// `--data-dir` (inside the VM).
    pub data_dir: String,
}

#[cfg(test)]
impl EtcdCommandLine {
    /// The value of `--flag`.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let at = self.args.iter().position(|a| a == flag)?;
        self.args.get(at + 1).map(String::as_str)
    }
}

/// `prepare-etcd-manifest "" 2379 2380` (main) or `"-events" 4002 2381`, rendered.
pub fn prepare_etcd_manifest(shell: &Shell, cluster: EtcdCluster, host: &EtcdHost) -> Result<EtcdCommandLine, Abort> {
    let step = "StartEtcdServers";
    let (port, server_port) = (cluster.client_port(), cluster.peer_port());
    let main = cluster == EtcdCluster::Main;
    let etcd_protocol = if peer_tls(shell) { "https" } else { "http" };
    let mtls = main && client_mtls(shell);
    let etcd_apiserver_protocol = if mtls { "https" } else { "http" };
    let listen_client_ip = match shell.value("ETCD_LISTEN_CLIENT_IP") {
        "" => "127.0.0.1",
        ip => ip,
    };
    let cluster_state = match shell.value("INITIAL_ETCD_CLUSTER_STATE") {
        "" => "new",
        state => state,
    };
    let list = match shell.value("INITIAL_ETCD_CLUSTER") {
        "" => host.name.as_str(),
        list => list,
    };
    // `for host in $(echo "$list" | tr "," "\n")`: word splitting drops empty entries.
    let initial_cluster: Vec<String> = list
        .split(',')
        .flat_map(str::split_whitespace)
        .map(|h| format!("etcd-{h}={etcd_protocol}://{h}:{server_port}"))
        .collect();
    let name = format!("etcd-{}", host.name);
    let data_dir = format!("{ETCD_DIR}/{}", cluster.data_dir_name());
    let listen_clients = format!("{etcd_apiserver_protocol}://{listen_client_ip}:{port}");
    let advertise_clients = format!("{etcd_apiserver_protocol}://127.0.0.1:{port}");
    let mut args: Vec<String> = Vec::new();
    let mut flag = |f: &str, v: String| {
        args.push(format!("--{f}"));
        args.push(v);
    };
    flag("name", name.clone());
    flag(
        "listen-peer-urls",
        format!("{etcd_protocol}://{}:{server_port}", host.ip),
    );
    flag(
        "initial-advertise-peer-urls",
        format!("{etcd_protocol}://{}:{server_port}", host.name),
    );
    flag("advertise-client-urls", advertise_clients);
    flag("listen-client-urls", listen_clients);
    if shell.value("STORAGE_BACKEND").is_empty() || shell.value("STORAGE_BACKEND") == "etcd3" {
        let quota = match shell.value("ETCD_QUOTA_BACKEND_BYTES") {
            "" => "4294967296",
            q => q,
        };
        flag("quota-backend-bytes", quota.to_string());
    }
    flag("data-dir", data_dir.clone());
    flag("initial-cluster-state", cluster_state.to_string());
    flag("initial-cluster", initial_cluster.join(","));
    // etcd 3.4 logs through capnslog unless told zap; its output goes to the VM's log dir.
    flag("logger", "zap".to_string());
    if peer_tls(shell) {
        flag("peer-trusted-ca-file", format!("{AUTH_DIR}/etcd-ca.crt"));
        flag("peer-cert-file", format!("{AUTH_DIR}/etcd-peer.crt"));
        flag("peer-key-file", format!("{AUTH_DIR}/etcd-peer.key"));
        args.push("--peer-client-cert-auth".to_string());
    }
    if mtls {
        args.push("--client-cert-auth".to_string());
        for (f, var) in [
            ("--trusted-ca-file", "ETCD_APISERVER_CA_CERT_PATH"),
            ("--cert-file", "ETCD_APISERVER_SERVER_CERT_PATH"),
            ("--key-file", "ETCD_APISERVER_SERVER_KEY_PATH"),
        ] {
            args.push(f.to_string());
            args.push(shell.expand(step, var)?.to_string());
        }
    }
    if mtls {
        args.push(format!("--listen-metrics-urls=http://{listen_client_ip}:2382"));
    }
    if shell.is_set("ETCD_PROGRESS_NOTIFY_INTERVAL") {
        args.push(format!(
            "--experimental-watch-progress-notify-interval={}",
            shell.value("ETCD_PROGRESS_NOTIFY_INTERVAL")
        ));
    }
    args.extend(shell.value("ETCD_EXTRA_ARGS").split_whitespace().map(str::to_string));
    Ok(EtcdCommandLine {
        cluster,
        name,
        args,
        data_dir,
    })
}

/// How the apiserver reaches its etcd and which files it serves with, after `configure-etcd-params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServerFiles {
    /// `--client-ca-file`.
    pub client_ca: String,
    /// `--tls-cert-file`.
    pub tls_cert: String,
    /// `--tls-private-key-file`.
    pub tls_key: String,
    /// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`, when main etcd has mutual TLS.
    pub etcd_tls: Option<[String; 3]>,
}

/// `StartKubeApiserver`, as far as the sandbox's stand-in needs it.
pub fn start_kube_apiserver(shell: &mut Shell) -> Result<ApiServerFiles, Abort> {
    let step = "StartKubeApiserver";
    let client_ca = shell.expand(step, "CA_CERT_BUNDLE_PATH")?.to_string();
    let set = ETCD_APISERVER_KEYS.iter().filter(|k| shell.is_set(k)).count();
    let etcd_tls = match set {
        6 => Some([
            shell.expand(step, "ETCD_APISERVER_CA_CERT_PATH")?.to_string(),
            shell.expand(step, "ETCD_APISERVER_CLIENT_CERT_PATH")?.to_string(),
            shell.expand(step, "ETCD_APISERVER_CLIENT_KEY_PATH")?.to_string(),
        ]),
        0 => None,
        _ => {
            return Err(abort(
                step,
                "ERROR: Some of ETCD_APISERVER_CA_KEY, ETCD_APISERVER_CA_CERT, ETCD_APISERVER_SERVER_KEY, \
                 ETCD_APISERVER_SERVER_CERT, ETCD_APISERVER_CLIENT_KEY and ETCD_APISERVER_CLIENT_CERT are missing, \
                 mTLS between etcd server and kube-apiserver cannot be enabled. Please provide all mTLS credential.",
            ));
        }
    };
    let tls_cert = shell.expand(step, "APISERVER_SERVER_CERT_PATH")?.to_string();
    let tls_key = shell.expand(step, "APISERVER_SERVER_KEY_PATH")?.to_string();
    if shell.value("ENABLE_APISERVER_DYNAMIC_AUDIT") == "true" {
        let runtime = format!(
            "{},auditconfiguration.k8s.io/v1alpha1=true",
            shell.expand(step, "RUNTIME_CONFIG")?
        );
        shell.assign(step, "RUNTIME_CONFIG", runtime)?;
    }
    Ok(ApiServerFiles {
        client_ca,
        tls_cert,
        tls_key,
        etcd_tls,
    })
}

/// An address `/etc/hosts` gives `name` (the first line naming it, as glibc's files backend).
pub fn resolve_in_hosts(hosts: &str, name: &str) -> Option<Ipv4Addr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let ip = words.next()?.parse::<Ipv4Addr>().ok()?;
        words.any(|w| w == name).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

    fn gz(text: &str) -> String {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gzip");
        B64.encode(e.finish().expect("gzip"))
    }

    fn plain(text: &str) -> String {
        B64.encode(text)
    }

    /// The two maps of a master kube-up.sh made (the keys the simulated steps read).
    fn kube_up_maps() -> (Pairs, Pairs) {
        let s = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let env = s(&[
            ("KUBERNETES_MASTER", "true".into()),
            ("CA_CERT", plain(PEM)),
            ("MASTER_CERT", plain(PEM)),
            ("MASTER_KEY", plain(PEM)),
            ("KUBELET_APISERVER", "34.1.1.1".into()),
            ("KUBELET_CERT", plain(PEM)),
            ("KUBELET_KEY", plain(PEM)),
            ("ETCD_CA_KEY", plain(PEM)),
            ("ETCD_CA_CERT", gz(PEM)),
            ("ETCD_PEER_KEY", plain(PEM)),
            ("ETCD_PEER_CERT", gz(PEM)),
            ("INITIAL_ETCD_CLUSTER", "kubernetes-master".into()),
            ("ETCD_PROGRESS_NOTIFY_INTERVAL", "5s".into()),
        ]);
        let certs = s(&[
            ("CA_KEY", plain(PEM)),
            ("KUBEAPISERVER_CERT", plain(PEM)),
            ("KUBEAPISERVER_KEY", plain(PEM)),
            ("REQUESTHEADER_CA_CERT", String::new()),
            ("ETCD_APISERVER_CA_KEY", plain(PEM)),
            ("ETCD_APISERVER_CA_CERT", gz(PEM)),
            ("ETCD_APISERVER_SERVER_KEY", plain(PEM)),
            ("ETCD_APISERVER_SERVER_CERT", gz(PEM)),
            ("ETCD_APISERVER_CLIENT_KEY", plain(PEM)),
            ("ETCD_APISERVER_CLIENT_CERT", gz(PEM)),
        ]);
        (env, certs)
    }

    /// Every simulated step in configure-helper's order; the files written and the etcd lines.
    fn run(
        env: &[(String, String)],
        certs: &[(String, String)],
        has_disk: bool,
    ) -> Result<(Vec<VmFile>, Vec<EtcdCommandLine>, ApiServerFiles), Abort> {
        let mut sh = Shell::default();
        sh.source("SourceKubeEnv", "/home/kubernetes/kube-env", env)?;
        sh.source("SourceKubeMasterCerts", "/home/kubernetes/kube-master-certs", certs)?;
        verify_kube_user(&sh)?;
        generate_tokens(&mut sh)?;
        mount_master_pd(&mut sh, has_disk)?;
        let mut files = create_node_pki(&mut sh)?;
        files.extend(create_master_pki(&mut sh)?);
        create_master_kubelet_auth(&mut sh)?;
        files.extend(create_master_etcd_auth(&sh)?);
        files.extend(create_master_etcd_apiserver_auth(&mut sh)?);
        compute_master_manifest_variables(&mut sh)?;
        chown_etcd_dir(&sh, has_disk)?;
        let host = EtcdHost {
            name: "kubernetes-master".into(),
            ip: Ipv4Addr::new(10, 40, 0, 2),
        };
        let etcd = EtcdCluster::ALL
            .iter()
            .map(|c| prepare_etcd_manifest(&sh, *c, &host))
            .collect::<Result<Vec<_>, _>>()?;
        let api = start_kube_apiserver(&mut sh)?;
        Ok((files, etcd, api))
    }

    #[test]
    fn a_kube_up_master_renders_configure_helpers_files_and_etcd_flags() {
        let (env, certs) = kube_up_maps();
        let (files, etcd, api) = run(&env, &certs, true).expect("boots");
        let file = |p: &str| files.iter().find(|f| f.path == p).unwrap_or_else(|| panic!("{p}"));
        for (path, mode) in [
            ("/etc/srv/kubernetes/pki/ca-certificates.crt", 0o600),
            ("/etc/srv/kubernetes/pki/ca.crt", 0o600),
            ("/etc/srv/kubernetes/pki/ca.key", 0o600),
            ("/etc/srv/kubernetes/pki/apiserver.crt", 0o600),
            ("/etc/srv/kubernetes/pki/apiserver-client.key", 0o600),
            ("/etc/srv/kubernetes/pki/serviceaccount.key", 0o600),
            ("/etc/srv/kubernetes/pki/kubelet.crt", 0o600),
            ("/etc/srv/kubernetes/etcd-ca.crt", 0o644),
            ("/etc/srv/kubernetes/etcd-peer.key", 0o644),
            ("/etc/srv/kubernetes/pki/etcd-apiserver-client.crt", 0o644),
        ] {
            assert_eq!(file(path).mode, mode, "{path}");
            assert_eq!(
                file(path).bytes,
                PEM.as_bytes(),
                "{path}: decoded (and gunzipped) to the PEM"
            );
        }
        assert!(
            !files.iter().any(|f| f.path.ends_with("aggr_ca.crt")),
            "'' turns it off"
        );
        let main = &etcd[0];
        for (flag, want) in [
            ("--name", "etcd-kubernetes-master"),
            ("--listen-peer-urls", "https://10.40.0.2:2380"),
            ("--initial-advertise-peer-urls", "https://kubernetes-master:2380"),
            ("--advertise-client-urls", "https://127.0.0.1:2379"),
            ("--listen-client-urls", "https://127.0.0.1:2379"),
            (
                "--initial-cluster",
                "etcd-kubernetes-master=https://kubernetes-master:2380",
            ),
            ("--initial-cluster-state", "new"),
            ("--data-dir", "/mnt/disks/master-pd/var/etcd/data"),
            ("--quota-backend-bytes", "4294967296"),
            ("--trusted-ca-file", "/etc/srv/kubernetes/pki/etcd-apiserver-ca.crt"),
            ("--peer-cert-file", "/etc/srv/kubernetes/etcd-peer.crt"),
        ] {
            assert_eq!(main.flag(flag), Some(want), "main {flag}");
        }
        assert!(
            main.args
                .iter()
                .any(|a| a == "--listen-metrics-urls=http://127.0.0.1:2382")
        );
        assert!(
            main.args
                .iter()
                .any(|a| a == "--experimental-watch-progress-notify-interval=5s")
        );
        let events = &etcd[1];
        for (flag, want) in [
            ("--listen-client-urls", "http://127.0.0.1:4002"),
            ("--advertise-client-urls", "http://127.0.0.1:4002"),
            (
                "--initial-cluster",
                "etcd-kubernetes-master=https://kubernetes-master:2381",
            ),
            ("--data-dir", "/mnt/disks/master-pd/var/etcd/data-events"),
        ] {
            assert_eq!(events.flag(flag), Some(want), "events {flag}");
        }
        assert!(
            !events.args.iter().any(|a| a == "--client-cert-auth"),
            "events clients: plain HTTP"
        );
        assert!(
            events.args.iter().any(|a| a == "--peer-client-cert-auth"),
            "events peers: TLS"
        );
        assert_eq!(api.tls_cert, "/etc/srv/kubernetes/pki/apiserver.crt");
        assert_eq!(api.client_ca, "/etc/srv/kubernetes/pki/ca-certificates.crt");
        assert!(api.etcd_tls.is_some());
    }

    #[test]
    fn a_replica_expands_bare_names_of_initial_etcd_cluster_on_each_clusters_peer_port() {
        let mut sh = Shell::default();
        let (env, certs) = kube_up_maps();
        let env: Vec<_> = env.into_iter().filter(|(k, _)| k != "INITIAL_ETCD_CLUSTER").collect();
        sh.source("SourceKubeEnv", "kube-env", &env).expect("env");
        sh.source("SourceKubeMasterCerts", "kube-master-certs", &certs)
            .expect("certs");
        let mut sh2 = sh.clone();
        sh2.source(
            "x",
            "extra",
            &[
                (
                    "INITIAL_ETCD_CLUSTER".into(),
                    "kubernetes-master,kubernetes-master-a1b".into(),
                ),
                ("INITIAL_ETCD_CLUSTER_STATE".into(), "existing".into()),
            ],
        )
        .expect("extra");
        create_master_etcd_apiserver_auth(&mut sh2).expect("paths");
        let host = EtcdHost {
            name: "kubernetes-master-a1b".into(),
            ip: Ipv4Addr::new(10, 40, 0, 3),
        };
        let events = prepare_etcd_manifest(&sh2, EtcdCluster::Events, &host).expect("events");
        assert_eq!(
            events.flag("--initial-cluster"),
            Some(
                "etcd-kubernetes-master=https://kubernetes-master:2381,etcd-kubernetes-master-a1b=https://kubernetes-master-a1b:2381"
            )
        );
        assert_eq!(events.flag("--initial-cluster-state"), Some("existing"));
        // configure-helper's own listener only: events plain HTTP on the VM's loopback.
        assert_eq!(events.flag("--advertise-client-urls"), Some("http://127.0.0.1:4002"));
        assert_eq!(events.flag("--listen-client-urls"), Some("http://127.0.0.1:4002"));
        assert!(!events.args.iter().any(|a| a == "--client-cert-auth"));
    }

    /// (what is wrong, how to break the maps, the step it stops in, words of the message)
    type Row = (
        &'static str,
        fn(&mut Vec<(String, String)>, &mut Vec<(String, String)>),
        &'static str,
        &'static str,
    );

    fn set(map: &mut Pairs, key: &str, value: String) {
        map.retain(|(k, _)| k != key);
        map.push((key.to_string(), value));
    }

    #[test]
    fn configure_helper_stops_where_the_scripts_abort() {
        let rows: &[Row] = &[
            (
                "a key in both maps",
                |_, c| set(c, "KUBERNETES_MASTER", "true".into()),
                "SourceKubeMasterCerts",
                "KUBERNETES_MASTER: readonly variable",
            ),
            (
                "no identifier",
                |e, _| set(e, "KUBE-ENV", "x".into()),
                "SourceKubeEnv",
                "not a valid identifier",
            ),
            (
                "a readonly of main()",
                |e, _| set(e, "UUID_MNT_PREFIX", "x".into()),
                "SourceKubeEnv",
                "UUID_MNT_PREFIX: readonly variable",
            ),
            (
                "a generated token",
                |e, _| set(e, "KUBE_SCHEDULER_TOKEN", "t".into()),
                "GenerateTokens",
                "KUBE_SCHEDULER_TOKEN: readonly",
            ),
            (
                "a bad KUBE_USER",
                |e, _| set(e, "KUBE_USER", "a b".into()),
                "VerifyKubeUser",
                "Bad KUBE_USER format.",
            ),
            (
                "an empty CA_CERT_BUNDLE",
                |e, _| set(e, "CA_CERT_BUNDLE", String::new()),
                "CreateNodePKI",
                "CA_CERT_BUNDLE: readonly",
            ),
            (
                "no CA_CERT",
                |e, _| e.retain(|(k, _)| k != "CA_CERT"),
                "CreateNodePKI",
                "CA_CERT: unbound variable",
            ),
            (
                "a CA_CERT that is not base64",
                |e, _| set(e, "CA_CERT", "not base64!".into()),
                "CreateNodePKI",
                "base64: invalid input",
            ),
            (
                "no KUBEAPISERVER_CERT",
                |_, c| c.retain(|(k, _)| k != "KUBEAPISERVER_CERT"),
                "CreateMasterPKI",
                "KUBEAPISERVER_CERT: unbound variable",
            ),
            (
                "half a service-account pair",
                |e, _| set(e, "SERVICEACCOUNT_KEY", plain(PEM)),
                "CreateMasterPKI",
                "SERVICEACCOUNT_KEY: readonly",
            ),
            (
                "a request-header CA alone",
                |_, c| set(c, "REQUESTHEADER_CA_CERT", plain(PEM)),
                "CreateMasterPKI",
                "PROXY_CLIENT_KEY: unbound variable",
            ),
            (
                "a *_CERT_PATH",
                |e, _| set(e, "CA_CERT_PATH", "/x".into()),
                "CreateMasterPKI",
                "CA_CERT_PATH: readonly",
            ),
            (
                "REGISTER_MASTER_KUBELET",
                |e, _| set(e, "REGISTER_MASTER_KUBELET", "true".into()),
                "CreateMasterKubeletAuth",
                "REGISTER_MASTER_KUBELET: readonly",
            ),
            (
                "a plain etcd peer certificate",
                |e, _| set(e, "ETCD_PEER_CERT", plain(PEM)),
                "CreateMasterEtcdAuth",
                "gzip: stdin: not in gzip format",
            ),
            (
                "a plain etcd CA certificate",
                |e, _| set(e, "ETCD_CA_CERT", plain(PEM)),
                "CreateMasterEtcdAuth",
                "not in gzip format",
            ),
            (
                "a plain etcd server certificate",
                |_, c| set(c, "ETCD_APISERVER_SERVER_CERT", plain(PEM)),
                "CreateMasterEtcdApiserverAuth",
                "not in gzip format",
            ),
            (
                "five of six, the CA key missing",
                |_, c| c.retain(|(k, _)| k != "ETCD_APISERVER_CA_KEY"),
                "CreateMasterEtcdApiserverAuth",
                "ETCD_APISERVER_CA_KEY: unbound variable",
            ),
            (
                "five of six, the CA key empty",
                |_, c| set(c, "ETCD_APISERVER_CA_KEY", String::new()),
                "StartKubeApiserver",
                "ERROR: Some of ETCD_APISERVER_CA_KEY",
            ),
            (
                "DOCKER_REGISTRY",
                |e, _| set(e, "DOCKER_REGISTRY", "r".into()),
                "ComputeMasterManifestVariables",
                "DOCKER_REGISTRY: readonly",
            ),
            (
                "an etcd path of the script's",
                |c, _| set(c, "ETCD_APISERVER_CA_KEY_PATH", "/x".into()),
                "CreateMasterEtcdApiserverAuth",
                "readonly",
            ),
            (
                "dynamic audit",
                |e, _| set(e, "ENABLE_APISERVER_DYNAMIC_AUDIT", "true".into()),
                "StartKubeApiserver",
                "RUNTIME_CONFIG: unbound variable",
            ),
            (
                "dynamic audit and RUNTIME_CONFIG",
                |e, _| {
                    set(e, "ENABLE_APISERVER_DYNAMIC_AUDIT", "true".into());
                    set(e, "RUNTIME_CONFIG", "x".into());
                },
                "StartKubeApiserver",
                "RUNTIME_CONFIG: readonly",
            ),
            (
                "a readers group that is no group",
                |e, _| set(e, "KUBE_PKI_READERS_GROUP", "pki".into()),
                "CreateNodePKI",
                "chgrp: invalid group",
            ),
        ];
        for (what, change, step, words) in rows {
            let (mut env, mut certs) = kube_up_maps();
            change(&mut env, &mut certs);
            let err = run(&env, &certs, true).expect_err(what);
            assert_eq!(err.step, *step, "{what}: {err}");
            assert!(
                err.message.contains(words),
                "{what}: want {words:?} in {:?}",
                err.message
            );
        }
    }

    #[test]
    fn run_as_ids_without_the_data_disk_stop_etcd() {
        let (mut env, certs) = kube_up_maps();
        env.push(("ETCD_RUNASUSER".into(), "2006".into()));
        env.push(("ETCD_RUNASGROUP".into(), "2006".into()));
        let err = run(&env, &certs, false).expect_err("no disk");
        assert_eq!(err.step, "StartEtcdServers");
        assert!(run(&env, &certs, true).is_ok());
    }

    #[test]
    fn a_readers_group_makes_pki_files_group_readable() {
        let (mut env, certs) = kube_up_maps();
        env.push(("KUBE_PKI_READERS_GROUP".into(), "2005".into()));
        let (files, _, _) = run(&env, &certs, true).expect("boots");
        let ca = files.iter().find(|f| f.path.ends_with("pki/ca.crt")).expect("ca");
        assert_eq!((ca.mode, ca.group), (0o640, Some(2005)));
    }

    #[test]
    fn without_peer_tls_peers_speak_http_and_without_mtls_main_clients_too() {
        let (mut env, mut certs) = kube_up_maps();
        env.retain(|(k, _)| !k.starts_with("ETCD_PEER"));
        certs.retain(|(k, _)| !k.starts_with("ETCD_APISERVER"));
        let (_, etcd, api) = run(&env, &certs, true).expect("boots");
        assert_eq!(etcd[0].flag("--listen-peer-urls"), Some("http://10.40.0.2:2380"));
        assert_eq!(etcd[0].flag("--listen-client-urls"), Some("http://127.0.0.1:2379"));
        assert!(api.etcd_tls.is_none());
    }

    #[test]
    fn paths_are_the_vms_own() {
        assert_eq!(PKI_DIR, format!("{AUTH_DIR}/pki"));
        assert_eq!(ETCD_DIR, format!("{}/var/etcd", super::super::files::MASTER_PD));
    }

    #[test]
    fn names_resolve_through_etc_hosts_first_line_first() {
        let hosts = "127.0.0.1\tlocalhost\n10.0.0.3\tm.z1.c.p.internal m\n10.0.0.4\tm.z2.c.p.internal m # other zone\n";
        assert_eq!(resolve_in_hosts(hosts, "m"), Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            resolve_in_hosts(hosts, "m.z2.c.p.internal"),
            Some(Ipv4Addr::new(10, 0, 0, 4))
        );
        assert_eq!(resolve_in_hosts(hosts, "nope"), None);
        assert_eq!(etcd_host_name(&Shell::default(), "m.z1.c.p.internal"), "m");
    }
}
