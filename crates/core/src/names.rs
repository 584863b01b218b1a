//! Every resource name, metadata key and port kube-ha uses: SPEC §2 in one place.
//!
//! Names derive from `MASTER_NAME` (`${KUBE_GCE_INSTANCE_PREFIX}-master`) exactly as kube-up
//! derived them, except the replica regexp, which is anchored at both ends (kube-up's prefix match
//! counted unrelated VMs such as `kubernetes-master-big-1` as replicas).

use std::net::Ipv4Addr;

/// kube-apiserver's HTTPS port, on every replica and on the load balancer.
pub const APISERVER_PORT: u16 = 443;

/// Length of the random suffix of a replica name (`MASTER_NAME-xyz`).
pub const REPLICA_SUFFIX_LEN: usize = 3;

/// Longest GCE resource name (RFC 1035 label).
pub const GCE_NAME_MAX: usize = 63;

/// Instance metadata key holding the master's environment (YAML map of strings).
pub const METADATA_KUBE_ENV: &str = "kube-env";
/// Instance metadata key holding the CA keys and etcd apiserver certificates.
pub const METADATA_MASTER_CERTS: &str = "kube-master-certs";
/// Instance metadata key holding the cluster name.
pub const METADATA_CLUSTER_NAME: &str = "cluster-name";
/// Instance metadata key holding cloud-init's config (the release's `master.yaml`).
pub const METADATA_USER_DATA: &str = "user-data";
/// Instance metadata key holding the release's `configure.sh`.
pub const METADATA_CONFIGURE_SH: &str = "configure-sh";
/// Instance metadata key holding the master's KubeletConfiguration.
pub const METADATA_KUBELET_CONFIG: &str = "kubelet-config";
/// Instance metadata key holding the first master's zone.
pub const METADATA_CLUSTER_LOCATION: &str = "cluster-location";
/// Instance metadata key holding COS's update strategy.
pub const METADATA_GCI_UPDATE_STRATEGY: &str = "gci-update-strategy";

/// The serial port a kube-up master's boot log goes to: `master.yaml`'s
/// `kube-bootstrap-logs-forwarder` copies the journal of configure.sh and configure-helper.sh to
/// `/dev/ttyS2`, read back with `instances.getSerialPortOutput?port=3`.
pub const BOOT_LOG_SERIAL_PORT: u8 = 3;

/// The prefix of configure-helper's record of each boot step in that log (`log-proto`).
pub const BOOT_STEP_RECORD: &str = "[cloud.kubernetes.monitoring.proto.SerialportLog]";

/// Device name under which the data disk is attached (configure-helper mounts it by this name).
pub const DATA_DISK_DEVICE: &str = "master-pd";

// ---- SSH to the masters (SPEC §5; reference/access-path.md §1) ----

/// The account kube-ha logs in as on a master, and the user of its `ssh-keys` entry (the guest
/// agent creates the account from that entry).
pub const SSH_USER: &str = "kube-ha";
/// The port sshd listens on, on every master.
pub const SSH_PORT: u16 = 22;
/// Instance or project metadata key holding `user:key` lines the guest agent installs.
pub const METADATA_SSH_KEYS: &str = "ssh-keys";
/// The legacy form of [`METADATA_SSH_KEYS`]; on an instance it also blocks project keys.
pub const METADATA_SSH_KEYS_LEGACY: &str = "sshKeys";
/// Instance metadata key: when true, project `ssh-keys` are not installed on that instance.
pub const METADATA_BLOCK_PROJECT_SSH_KEYS: &str = "block-project-ssh-keys";
/// Instance or project metadata key: when true, the guest agent ignores `ssh-keys` (OS Login).
pub const METADATA_ENABLE_OSLOGIN: &str = "enable-oslogin";
/// Instance or project metadata key: when true, the guest may publish guest attributes (host keys).
pub const METADATA_ENABLE_GUEST_ATTRIBUTES: &str = "enable-guest-attributes";
/// The guest-attribute namespace (and `getGuestAttributes` query path) of SSH host keys.
pub const GUEST_ATTRIBUTES_HOSTKEYS: &str = "hostkeys/";

/// The known-hosts alias of an instance, as gcloud writes it (`HostKeyAlias=compute.<id>`): keyed
/// by instance id, so a VM recreated under the same name is a new host.
pub fn host_key_alias(instance_id: u64) -> String {
    format!("compute.{instance_id}")
}

/// One of the two etcd clusters every replica runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdCluster {
    /// The main cluster: client 2379, peer 2380.
    Main,
    /// The events cluster: client 4002, peer 2381.
    Events,
}

impl EtcdCluster {
    /// Both clusters, main first (membership changes go main then events).
    pub const ALL: [EtcdCluster; 2] = [EtcdCluster::Main, EtcdCluster::Events];

    /// Client port (kube-up's `port`).
    pub fn client_port(self) -> u16 {
        match self {
            EtcdCluster::Main => 2379,
            EtcdCluster::Events => 4002,
        }
    }

    /// Peer port (kube-up's `server_port`), opened between masters by `MASTER_NAME-etcd`.
    pub fn peer_port(self) -> u16 {
        match self {
            EtcdCluster::Main => 2380,
            EtcdCluster::Events => 2381,
        }
    }

    /// Member name as configure-helper set it: `etcd-<vm>`, the same in both clusters.
    pub fn member_name(self, replica: &str) -> String {
        format!("etcd-{replica}")
    }

    /// The VM a member name (`etcd-<vm>`) stands for.
    pub fn replica_of_member_name(self, member: &str) -> Option<&str> {
        member.strip_prefix("etcd-").filter(|r| !r.is_empty())
    }

    /// `https://<ip>:<peer port>`: how kube-ha registered peers before the VM contract.
    pub fn peer_url(self, ip: Ipv4Addr) -> String {
        format!("https://{ip}:{}", self.peer_port())
    }

    /// `https://<vm>:<peer port>`: how configure-helper advertises a member and kube-up
    /// registers one (the instance name, resolved by the VPC's DNS).
    pub fn peer_url_of(self, replica: &str) -> String {
        format!("https://{replica}:{}", self.peer_port())
    }

    /// The host of one of this cluster's peer URLs (`<scheme>://<host>:<peer port>`): an
    /// instance name or an IP, as written; `None` for another port or no URL at all.
    pub fn peer_url_host(self, url: &str) -> Option<&str> {
        let (_, rest) = url.split_once("://")?;
        let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
        (port.parse::<u16>().ok()? == self.peer_port() && !host.is_empty()).then_some(host)
    }

    /// `https://<ip>:<client port>`.
    pub fn client_url(self, ip: Ipv4Addr) -> String {
        format!("https://{ip}:{}", self.client_port())
    }

    /// Directory name of this cluster's data under the data disk (as configure-helper).
    pub fn data_dir_name(self) -> &'static str {
        match self {
            EtcdCluster::Main => "data",
            EtcdCluster::Events => "data-events",
        }
    }
}

impl std::fmt::Display for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EtcdCluster::Main => "main",
            EtcdCluster::Events => "events",
        })
    }
}

/// Names of one cluster's resources, all derived from `MASTER_NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNames {
    master_name: String,
}

impl ClusterNames {
    /// Names for the cluster whose first replica is `master_name`.
    pub fn new(master_name: impl Into<String>) -> Self {
        ClusterNames {
            master_name: master_name.into(),
        }
    }

    /// `MASTER_NAME` for an instance prefix (kube-up's config-default assigned it unconditionally).
    pub fn from_prefix(prefix: &str) -> Self {
        Self::new(format!("{prefix}-master"))
    }

    /// `MASTER_NAME`: the first replica's VM name and the root of every other name.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// `KUBE_GCE_INSTANCE_PREFIX`: `MASTER_NAME` without its `-master` (the cluster's name in
    /// kube-up's `cluster-name` metadata and kubeconfig context).
    pub fn prefix(&self) -> &str {
        self.master_name.strip_suffix("-master").unwrap_or(&self.master_name)
    }

    /// The name of this cluster's cluster, user and context in a kubeconfig:
    /// `${PROJECT}_${KUBE_GCE_INSTANCE_PREFIX}`, as kube-up's `create-kubeconfig` named them.
    pub fn kubeconfig_context(&self, project: &str) -> String {
        format!("{project}_{}", self.prefix())
    }

    /// Network tag carried by every replica (kube-up's `MASTER_TAG`).
    pub fn tag(&self) -> &str {
        &self.master_name
    }

    /// The cluster's regional external static IP.
    pub fn static_ip(&self) -> String {
        format!("{}-ip", self.master_name)
    }

    /// `MASTER_NAME-https` firewall rule (tcp:443 to the master tag).
    pub fn firewall_https(&self) -> String {
        format!("{}-https", self.master_name)
    }

    /// `MASTER_NAME-etcd` firewall rule (tcp:2380,2381 between masters).
    pub fn firewall_etcd(&self) -> String {
        format!("{}-etcd", self.master_name)
    }

    /// `MASTER_NAME-ssh` firewall rule (tcp:22 to the master tag): how kube-ha reaches etcd
    /// (SPEC §5). The first `up` creates it unless another rule admits tcp:22 already.
    pub fn firewall_ssh(&self) -> String {
        format!("{}-ssh", self.master_name)
    }

    /// Regional target pool of the load balancer.
    pub fn target_pool(&self) -> &str {
        &self.master_name
    }

    /// Regional forwarding rule carrying the static IP once there are two replicas.
    pub fn forwarding_rule(&self) -> &str {
        &self.master_name
    }

    /// `<replica>-internal`: the replica's reserved internal address.
    pub fn internal_ip(&self, replica: &str) -> String {
        format!("{replica}-internal")
    }

    /// `<replica>-pd`: the replica's data disk.
    pub fn data_disk(&self, replica: &str) -> String {
        Self::data_disk_of(replica)
    }

    /// [`ClusterNames::data_disk`] where only the replica's name is at hand (a request body).
    pub fn data_disk_of(replica: &str) -> String {
        format!("{replica}-pd")
    }

    /// Replica name for a suffix (`MASTER_NAME-xyz`).
    pub fn replica_with_suffix(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.master_name)
    }

    /// Project metadata key of this cluster's operation lock (and its resume record).
    pub fn lock_key(&self) -> String {
        format!("kube-ha-lock-{}", self.master_name)
    }

    /// `^MASTER_NAME(-[a-z0-9]{3})?$`, without a regex engine.
    pub fn is_replica(&self, name: &str) -> bool {
        match name.strip_prefix(self.master_name.as_str()) {
            Some("") => true,
            Some(rest) => match rest.strip_prefix('-') {
                Some(suffix) => is_replica_suffix(suffix),
                None => false,
            },
            None => false,
        }
    }

    /// The replica an internal address (`<replica>-internal`) belongs to.
    pub fn replica_of_internal_ip(&self, address: &str) -> Option<String> {
        address
            .strip_suffix("-internal")
            .filter(|r| self.is_replica(r))
            .map(str::to_string)
    }

    /// The replica a data disk (`<replica>-pd`) belongs to.
    pub fn replica_of_data_disk(&self, disk: &str) -> Option<String> {
        disk.strip_suffix("-pd")
            .filter(|r| self.is_replica(r))
            .map(str::to_string)
    }

    /// The longest name kube-ha derives (`MASTER_NAME-xyz-internal`), for validation.
    pub fn longest_derived_name(&self) -> String {
        self.internal_ip(&self.replica_with_suffix(&"x".repeat(REPLICA_SUFFIX_LEN)))
    }
}

/// Candidate suffixes for a new replica's name, derived from `seed` alone (FNV-1a, so the same
/// on every build): the same observed cluster gives the same name, which is what lets
/// `--dry-run` name the replica the real run will make. The planner takes the first unused one.
pub fn replica_suffixes(seed: &str) -> impl Iterator<Item = String> + '_ {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0u32..64).map(move |attempt| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes().chain(attempt.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (0..REPLICA_SUFFIX_LEN)
            .map(|i| ALPHABET[((h >> (i * 12)) % 36) as usize] as char)
            .collect()
    })
}

/// `[a-z0-9]{3}`.
pub fn is_replica_suffix(s: &str) -> bool {
    s.len() == REPLICA_SUFFIX_LEN && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A valid GCE resource name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn is_gce_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= GCE_NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_regexp_is_anchored_at_both_ends() {
        let n = ClusterNames::from_prefix("kubernetes");
        for (name, want) in [
            ("kubernetes-master", true),
            ("kubernetes-master-a1b", true),
            ("kubernetes-master-000", true),
            ("kubernetes-master-a1", false),
            ("kubernetes-master-a1bc", false),
            ("kubernetes-master-A1b", false),
            ("kubernetes-master-big-1", false),
            ("kubernetes-master-ip", false),
            ("kubernetes-master-a1b-pd", false),
            ("xkubernetes-master", false),
            ("kubernetes-masterx", false),
            ("kubernetes-minion-a1b", false),
        ] {
            assert_eq!(n.is_replica(name), want, "{name}");
        }
    }

    #[test]
    fn derived_names_follow_kube_up() {
        let n = ClusterNames::from_prefix("e2e");
        assert_eq!(n.master_name(), "e2e-master");
        assert_eq!(n.static_ip(), "e2e-master-ip");
        assert_eq!(n.firewall_https(), "e2e-master-https");
        assert_eq!(n.firewall_etcd(), "e2e-master-etcd");
        assert_eq!(n.data_disk("e2e-master-x1y"), "e2e-master-x1y-pd");
        assert_eq!(n.internal_ip("e2e-master"), "e2e-master-internal");
        assert_eq!(
            n.replica_of_internal_ip("e2e-master-x1y-internal").as_deref(),
            Some("e2e-master-x1y")
        );
        assert_eq!(n.replica_of_internal_ip("e2e-master-ip"), None);
        assert_eq!(n.replica_of_data_disk("e2e-master-pd").as_deref(), Some("e2e-master"));
        assert_eq!(n.longest_derived_name(), "e2e-master-xxx-internal");
    }

    #[test]
    fn replica_suffixes_are_a_pure_function_of_the_seed() {
        let a: Vec<String> = replica_suffixes("fp-1").take(5).collect();
        assert_eq!(a, replica_suffixes("fp-1").take(5).collect::<Vec<_>>());
        assert_ne!(a, replica_suffixes("fp-2").take(5).collect::<Vec<_>>());
        assert!(a.iter().all(|s| is_replica_suffix(s)), "{a:?}");
        let mut unique = a.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), a.len());
    }

    #[test]
    fn the_kubeconfig_context_is_project_underscore_prefix_as_kube_up_named_it() {
        let n = ClusterNames::from_prefix("e2e");
        assert_eq!(n.prefix(), "e2e");
        assert_eq!(n.kubeconfig_context("my-project"), "my-project_e2e");
    }

    #[test]
    fn ports_and_peer_urls() {
        let ip = Ipv4Addr::new(127, 9, 1, 4);
        assert_eq!(EtcdCluster::Main.peer_url(ip), "https://127.9.1.4:2380");
        assert_eq!(EtcdCluster::Events.peer_url(ip), "https://127.9.1.4:2381");
        assert_eq!(EtcdCluster::Main.client_url(ip), "https://127.9.1.4:2379");
        assert_eq!(EtcdCluster::Events.client_url(ip), "https://127.9.1.4:4002");
        assert_eq!(EtcdCluster::Events.member_name("m"), "etcd-m");
        assert_eq!(EtcdCluster::Main.replica_of_member_name("etcd-m"), Some("m"));
        assert_eq!(EtcdCluster::Main.replica_of_member_name("m"), None);
        assert_eq!(EtcdCluster::Main.replica_of_member_name("etcd-"), None);
        assert_eq!(EtcdCluster::Events.peer_url_of("m-a1b"), "https://m-a1b:2381");
    }

    #[test]
    fn a_peer_url_names_its_host_on_its_clusters_peer_port_only() {
        for (cluster, url, want) in [
            (
                EtcdCluster::Main,
                "https://kubernetes-master:2380",
                Some("kubernetes-master"),
            ),
            (EtcdCluster::Main, "https://10.0.0.2:2380", Some("10.0.0.2")),
            (EtcdCluster::Events, "http://m:2381/", Some("m")),
            (EtcdCluster::Events, "https://m:2380", None),
            (EtcdCluster::Main, "https://:2380", None),
            (EtcdCluster::Main, "m:2380", None),
            (EtcdCluster::Main, "https://m", None),
        ] {
            assert_eq!(cluster.peer_url_host(url), want, "{url}");
        }
    }

    #[test]
    fn gce_name_syntax() {
        assert!(is_gce_name("a"));
        assert!(is_gce_name("kubernetes-master-a1b"));
        assert!(!is_gce_name(""));
        assert!(!is_gce_name("1abc"));
        assert!(!is_gce_name("abc-"));
        assert!(!is_gce_name("Abc"));
        assert!(!is_gce_name("a_b"));
        assert!(!is_gce_name(&"a".repeat(64)));
        assert!(is_gce_name(&"a".repeat(63)));
    }
}
