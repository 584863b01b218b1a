//! The environment-variable table (SPEC §1.1): the one place that names every variable kube-ha
//! reads, its default and what it means. `--help`, the README table and the typo warnings are all
//! generated from [`ENV_VARS`]; `RawEnv`'s fields are checked against it by a test.

/// One environment variable of the contract.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The variable's name, exactly as operators set it.
    pub name: &'static str,
    /// The default, as shown to people (not parsed).
    pub default: &'static str,
    /// What it means, one sentence.
    pub doc: &'static str,
}

const fn var(name: &'static str, default: &'static str, doc: &'static str) -> EnvVar {
    EnvVar { name, default, doc }
}

/// Every variable kube-ha reads, in the order `--help` and the README show them.
pub const ENV_VARS: &[EnvVar] = &[
    var(
        "KUBE_GCE_ZONE",
        "us-central1-b",
        "zone of the replica to add or remove; REGION is the zone minus its last -x",
    ),
    var(
        "PROJECT",
        "$CLOUDSDK_CORE_PROJECT, else error",
        "GCE project (sandbox: sandbox)",
    ),
    var(
        "CLOUDSDK_CORE_PROJECT",
        "unset",
        "GCE project when PROJECT is unset (gcloud's setting)",
    ),
    var(
        "KUBE_GCE_INSTANCE_PREFIX",
        "kubernetes",
        "MASTER_NAME = ${prefix}-master; every resource name derives from it",
    ),
    var(
        "KUBE_REPLICATE_EXISTING_MASTER",
        "unset",
        "true: up adds one replica in KUBE_GCE_ZONE to an existing cluster",
    ),
    var(
        "KUBE_DELETE_NODES",
        "true",
        "false: down removes one replica and keeps the cluster; true: down tears the cluster down (only when one replica is left)",
    ),
    var(
        "KUBE_REPLICA_NAME",
        "unset",
        "replica to remove; else the replica in KUBE_GCE_ZONE (oldest if several)",
    ),
    var(
        "MULTIZONE",
        "unset",
        "recorded in kube-env on the first up; inherited by replicas",
    ),
    var(
        "ENABLE_ETCD_QUORUM_READ",
        "false",
        "recorded as ETCD_QUORUM_READ in kube-env",
    ),
    var(
        "ENABLE_ETCD_QUORUM_READS",
        "false",
        "plural spelling of ENABLE_ETCD_QUORUM_READ (the upstream doc used it)",
    ),
    var(
        "KUBE_USE_EXISTING_MASTER",
        "unset",
        "true (worker-node creation) is not supported: refused, no change",
    ),
    var(
        "NUM_NODES",
        "3",
        "sizes the first master as kube-up did (machine type, disk sizes)",
    ),
    var(
        "MASTER_SIZE",
        "n1-standard-<by NUM_NODES>",
        "machine type of the first master; replicas copy the existing master's",
    ),
    var(
        "MASTER_DISK_TYPE",
        "pd-ssd",
        "data disk type of the first master; replicas copy the existing master's",
    ),
    var(
        "MASTER_DISK_SIZE",
        "20GB (by NUM_NODES)",
        "data disk size of the first master; replicas copy the existing master's",
    ),
    var(
        "MASTER_ROOT_DISK_SIZE",
        "20GB (by NUM_NODES)",
        "boot disk size of the first master; replicas copy the existing master's",
    ),
    var(
        "KUBE_GCE_MASTER_IMAGE",
        "family cos-109-lts",
        "boot image of the first master; replicas copy the existing master's",
    ),
    var("KUBE_GCE_MASTER_PROJECT", "cos-cloud", "project of the boot image"),
    var(
        "PREEMPTIBLE_MASTER",
        "false",
        "true: preemptible master VMs; replicas copy the existing master's",
    ),
    var(
        "KUBE_GCE_NETWORK",
        "default",
        "VPC network of the masters and firewall rules",
    ),
    var(
        "SERVICE_CLUSTER_IP_RANGE",
        "10.0.0.0/16",
        "its first address + 1 goes into the serving-certificate SANs",
    ),
    var("DNS_DOMAIN", "cluster.local", "SAN kubernetes.default.svc.<domain>"),
    var(
        "KUBECONFIG",
        "./kubeconfig",
        "where up writes the admin kubeconfig (mode 0600)",
    ),
    var(
        "KUBE_HA_COMPUTE_ENDPOINT",
        "unset (real GCE)",
        "base URL of a Compute API (the emulator); anonymous credentials are used with it",
    ),
    var(
        "KUBE_HA_SANDBOX",
        "unset",
        "1 or a directory: use the local sandbox, starting it in the background if needed",
    ),
    var(
        "KUBE_HA_TIMEOUT",
        "30m",
        "overall deadline of one command (e.g. 90s, 10m, 1h)",
    ),
    var("KUBE_HA_DRY_RUN", "false", "true: same as --dry-run"),
    var("KUBE_HA_OUTPUT", "text", "json: same as --output json"),
    var(
        "KUBE_HA_LOG",
        "unset",
        "diagnostics to stderr, an env-filter such as debug or kube_ha=trace",
    ),
    var(
        "KUBE_HA_FAILPOINT",
        "unset",
        "testing: before:<step> or after:<step> kills kube-ha there with SIGKILL (step kinds as in --dry-run --output json); repeat runs every step twice",
    ),
];

/// Is `name` one of [`ENV_VARS`]?
pub fn is_known(name: &str) -> bool {
    ENV_VARS.iter().any(|v| v.name == name)
}

/// The table for `--help`: aligned plain text.
pub fn help_text() -> String {
    let width = ENV_VARS.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment (kube-up compatible):\n");
    for v in ENV_VARS {
        out.push_str(&format!("  {:width$}  {} [default: {}]\n", v.name, v.doc, v.default));
    }
    out
}

/// The table for the README (GitHub markdown); a test keeps the README equal to it.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in ENV_VARS {
        out.push_str(&format!("| `{}` | {} | {} |\n", v.name, v.default, v.doc));
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
}
