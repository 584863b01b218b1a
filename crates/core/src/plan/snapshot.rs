//! The observed world as plain data: one [`Snapshot`] per command, read before planning.
//!
//! Everything the planner and preflight decide on is here, so they are pure functions with
//! table tests; `ops::observe` is the only code that fills it in (from GCE, etcd and the local
//! kubeconfig).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::MasterSettings;
use crate::etcd::{Member, MemberId};
use crate::names::EtcdCluster;

use super::lock::{Intent, LockState};

/// A master replica VM (an instance whose name matches the anchored replica regexp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaVm {
    /// VM name.
    pub name: String,
    /// Zone.
    pub zone: String,
    /// GCE status (`RUNNING`, …).
    pub status: String,
    /// nic0's networkIP.
    pub internal_ip: Option<Ipv4Addr>,
    /// nic0's external IP, if it has an access config.
    pub external_ip: Option<Ipv4Addr>,
    /// Name of nic0's access config.
    pub access_config: Option<String>,
    /// `creationTimestamp` (RFC 3339 sorts as text).
    pub created: String,
    /// Full URL.
    pub self_link: String,
    /// Its settings as far as they can be read back (machine type, disks, image).
    #[serde(skip)]
    pub settings: Option<MasterSettings>,
}

/// A named regional address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressObs {
    /// Address name.
    pub name: String,
    /// Its region, as found (addresses are listed across regions).
    pub region: String,
    /// The IP.
    pub ip: Ipv4Addr,
    /// `IN_USE`.
    pub in_use: bool,
}

/// A disk that belongs to the cluster (`<replica>-pd`, or a replica's leftover boot disk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskObs {
    /// Disk name.
    pub name: String,
    /// Zone.
    pub zone: String,
    /// Attached to these instances (names).
    pub users: Vec<String>,
}

/// The target pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolObs {
    /// Names of the instances in it.
    pub instances: Vec<String>,
}

/// The forwarding rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleObs {
    /// Its IP.
    pub ip: String,
}

/// A firewall rule of the project, as far as the SSH preflight reads it (any rule counts, not
/// only the cluster's: kube-up's `<network>-default-ssh` admits tcp:22 to every instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FirewallRuleObs {
    /// Rule name.
    pub name: String,
    /// Its network (the last part of the URL).
    pub network: String,
    /// `direction` is INGRESS (GCE's default).
    pub ingress: bool,
    /// `disabled`.
    pub disabled: bool,
    /// `priority` (GCE's default 1000; lower wins, a deny wins a tie).
    pub priority: i64,
    /// `allowed`: (IP protocol, ports; no ports = every port).
    pub allowed: Vec<(String, Vec<String>)>,
    /// `denied`, in the same form.
    pub denied: Vec<(String, Vec<String>)>,
    /// `sourceRanges`.
    pub source_ranges: Vec<String>,
    /// `sourceTags`.
    pub source_tags: Vec<String>,
    /// `sourceServiceAccounts`.
    pub source_service_accounts: Vec<String>,
    /// `targetTags` (none: every instance of the network, unless service accounts are named).
    pub target_tags: Vec<String>,
    /// `targetServiceAccounts`.
    pub target_service_accounts: Vec<String>,
}

impl Default for FirewallRuleObs {
    fn default() -> Self {
        FirewallRuleObs {
            name: String::new(),
            network: "default".into(),
            ingress: true,
            disabled: false,
            priority: 1000,
            allowed: Vec::new(),
            denied: Vec::new(),
            source_ranges: Vec::new(),
            source_tags: Vec::new(),
            source_service_accounts: Vec::new(),
            target_tags: Vec::new(),
            target_service_accounts: Vec::new(),
        }
    }
}

/// Why a replica's etcd could not be reached over SSH while observing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum SshReach {
    /// It has no address to connect to (no external IP while running from outside the VPC, e.g.
    /// an add interrupted between taking the static IP off it and giving it a new one).
    NoAddress(String),
    /// Connecting, the handshake, the login or the forwarding failed.
    Failed(String),
}

impl std::fmt::Display for SshReach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshReach::NoAddress(why) | SshReach::Failed(why) => f.write_str(why),
        }
    }
}

/// What one member's own endpoint said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberHealth {
    /// It answered `status` with no errors and knows a leader.
    pub healthy: bool,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its raft index (catch-up progress).
    pub raft_index: u64,
    /// Why it is not healthy.
    pub error: Option<String>,
}

/// One etcd cluster as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterObs {
    /// The member list, from the first member that answered; `None` when none did.
    pub members: Option<Vec<Member>>,
    /// Health per member, from the member's own endpoint.
    pub health: BTreeMap<MemberId, MemberHealth>,
    /// The leader, as the healthy members agree.
    pub leader: Option<MemberId>,
    /// Why the member list could not be read.
    pub error: Option<String>,
}

impl ClusterObs {
    /// Is this member healthy?
    pub fn is_healthy(&self, id: MemberId) -> bool {
        self.health.get(&id).is_some_and(|h| h.healthy)
    }
}

/// Everything one command knows about the world.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Replica VMs, oldest first.
    pub replicas: Vec<ReplicaVm>,
    /// The cluster static IP, if reserved.
    pub static_ip: Option<AddressObs>,
    /// Reserved `<replica>-internal` addresses, by replica name.
    pub internal_ips: BTreeMap<String, AddressObs>,
    /// Disks that belong to replicas: data disks `<replica>-pd` and boot disks named like a replica.
    pub disks: Vec<DiskObs>,
    /// Which of the cluster's own firewall rules exist (`-https`, `-etcd`, `-ssh`).
    pub firewalls: Vec<String>,
    /// Every firewall rule of the project (the SSH preflight: does one admit tcp:22?).
    pub firewall_rules: Vec<FirewallRuleObs>,
    /// The masters' network, as their first replica's nic0 names it.
    pub masters_network: Option<String>,
    /// Replicas whose etcd kube-ha could not reach over SSH while observing, and why.
    pub unreachable: BTreeMap<String, SshReach>,
    /// etcd has not been observed yet: a plan of this snapshot is the preflight made before the
    /// run's SSH key is written (every check that needs no etcd), and refuses nothing for lack
    /// of etcd's view.
    pub etcd_pending: bool,
    /// The target pool.
    pub target_pool: Option<PoolObs>,
    /// The forwarding rule.
    pub forwarding_rule: Option<RuleObs>,
    /// The operation lock.
    pub lock: LockState,
    /// Both etcd clusters (empty when there is no replica or no way in).
    pub etcd: BTreeMap<EtcdCluster, ClusterObs>,
    /// The zone asked for exists in the project's catalogue.
    pub zone_known: bool,
    /// The project's zones, with their regions.
    pub zones: BTreeMap<String, String>,
    /// What the new replica's name is derived from: the project metadata fingerprint as read,
    /// which every kube-ha operation changes (it writes the lock), so a dry run and the run
    /// after it pick the same name and a later add never reuses a removed replica's.
    pub name_seed: String,
    /// The kubeconfig has this cluster's entries, pointing at the static IP.
    pub kubeconfig_ok: bool,
    /// The kubeconfig has any of this cluster's entries (a teardown removes them).
    pub kubeconfig_has_entries: bool,
    /// Why the kubeconfig file exists but cannot be merged into (not YAML, not a kubeconfig).
    pub kubeconfig_error: Option<String>,
}

impl Snapshot {
    /// A replica VM by name.
    pub fn replica(&self, name: &str) -> Option<&ReplicaVm> {
        self.replicas.iter().find(|r| r.name == name)
    }

    /// The data disk of a replica.
    pub fn data_disk(&self, disk_name: &str) -> Option<&DiskObs> {
        self.disks.iter().find(|d| d.name == disk_name)
    }

    /// The region the cluster lives in, from the cluster itself: its replicas, else its disks,
    /// else its addresses (static IP, internal IPs), else the zone its interrupted operation
    /// recorded. Never a default: a resumed teardown that guessed the region would report done
    /// with the static IP still reserved elsewhere.
    pub fn cluster_region(&self) -> Option<String> {
        let zonal = self
            .replicas
            .first()
            .map(|r| r.zone.as_str())
            .or_else(|| self.disks.first().map(|d| d.zone.as_str()))
            .and_then(crate::config::region_of_zone);
        let regional = || {
            self.static_ip
                .iter()
                .chain(self.internal_ips.values())
                .next()
                .map(|a| a.region.clone())
        };
        let intended = || {
            let zone = match self.lock.record()?.intent.clone() {
                Intent::FirstMaster { zone } | Intent::AddReplica { zone, .. } => Some(zone),
                Intent::RemoveReplica { zone, .. } => zone,
                Intent::Teardown => None,
            }?;
            crate::config::region_of_zone(&zone)
        };
        zonal.or_else(regional).or_else(intended)
    }

    /// The project's zones in `region`, sorted.
    pub fn zones_of(&self, region: &str) -> Vec<&str> {
        self.zones
            .iter()
            .filter(|(_, r)| *r == region)
            .map(|(z, _)| z.as_str())
            .collect()
    }

    /// Is anything of the cluster left under `name` (a VM, disk, address or etcd member)? A new
    /// replica never takes such a name.
    pub fn name_in_use(&self, name: &str, names: &crate::names::ClusterNames) -> bool {
        self.replica(name).is_some()
            || self.internal_ips.contains_key(name)
            || self.data_disk(&names.data_disk(name)).is_some()
            || self.data_disk(name).is_some()
            || self
                .etcd
                .iter()
                .any(|(c, obs)| obs.members.iter().flatten().any(|m| m.name == c.member_name(name)))
    }

    /// Has the project anything of this cluster at all (any VM, disk, address, firewall rule,
    /// load balancer part or lock)?
    pub fn has_anything(&self) -> bool {
        !self.replicas.is_empty()
            || !self.disks.is_empty()
            || self.static_ip.is_some()
            || !self.internal_ips.is_empty()
            || !self.firewalls.is_empty()
            || self.target_pool.is_some()
            || self.forwarding_rule.is_some()
            || self.lock != LockState::Free
    }

    /// The member of `replica` in `cluster` ([`find_member`]).
    pub fn member_of(&self, cluster: EtcdCluster, replica: &str) -> Option<&Member> {
        let members = self.etcd.get(&cluster)?.members.as_ref()?;
        find_member(cluster, members, replica, self.replica_ip(replica))
    }

    /// A replica's internal IP: from its VM, else from its reserved address.
    pub fn replica_ip(&self, replica: &str) -> Option<Ipv4Addr> {
        self.replica(replica)
            .and_then(|r| r.internal_ip)
            .or_else(|| self.internal_ips.get(replica).map(|a| a.ip))
    }

    /// The replica (a VM, or a reserved internal address) a member belongs to, if any, by the
    /// rule of [`find_member`].
    pub fn replica_of_member(&self, cluster: EtcdCluster, member: &Member) -> Option<String> {
        let candidates: Vec<&String> = self
            .replicas
            .iter()
            .map(|r| &r.name)
            .chain(self.internal_ips.keys())
            .collect();
        let by_url = candidates
            .iter()
            .find(|name| peer_url_is(cluster, member, name, self.replica_ip(name)));
        by_url
            .or_else(|| {
                candidates
                    .iter()
                    .find(|name| cluster.replica_of_member_name(&member.name) == Some(name.as_str()))
            })
            .map(|name| name.to_string())
    }
}

/// Whether one of `member`'s peer URLs is `replica`'s: its host is the VM's instance name
/// (`https://<vm>:<port>`: configure-helper's advertised URL, kube-up's registration, kube-ha's
/// now) or its internal IP (`https://<ip>:<port>`: kube-ha's registration before the VM contract).
fn peer_url_is(cluster: EtcdCluster, member: &Member, replica: &str, ip: Option<Ipv4Addr>) -> bool {
    member
        .peer_urls
        .iter()
        .filter_map(|u| cluster.peer_url_host(u))
        .any(|host| host == replica || ip.is_some_and(|ip| host.parse::<Ipv4Addr>().ok() == Some(ip)))
}

/// The member of `replica` (internal IP `ip`, if known) among `members` of `cluster` — the one
/// rule that ties members to VMs, for clusters made by kube-up.sh, by kube-ha before the VM
/// contract and by kube-ha now: a member whose peer URL names the VM or its IP, else one whose
/// name is `etcd-<vm>` (a peer URL can be missing or stale; a member added but never started has
/// no name, so its URL is all there is).
pub fn find_member<'a>(
    cluster: EtcdCluster,
    members: &'a [Member],
    replica: &str,
    ip: Option<Ipv4Addr>,
) -> Option<&'a Member> {
    members
        .iter()
        .find(|m| peer_url_is(cluster, m, replica, ip))
        .or_else(|| {
            members
                .iter()
                .find(|m| cluster.replica_of_member_name(&m.name) == Some(replica))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, peer: &str) -> Member {
        Member::voter(id, name, peer)
    }

    #[test]
    fn a_member_is_a_replicas_by_its_peer_url_name_or_ip_else_by_its_name() {
        let ip = Some(Ipv4Addr::new(10, 0, 0, 3));
        let main = EtcdCluster::Main;
        // (what, the members, which one is kubernetes-master-a1b's)
        let rows: &[(&str, Vec<Member>, Option<u64>)] = &[
            (
                "kube-up.sh and kube-ha now: by instance name",
                vec![member(
                    1,
                    "etcd-kubernetes-master-a1b",
                    "https://kubernetes-master-a1b:2380",
                )],
                Some(1),
            ),
            (
                "kube-ha before the contract: by internal IP",
                vec![member(2, "etcd-kubernetes-master-a1b", "https://10.0.0.3:2380")],
                Some(2),
            ),
            (
                "added, never started: its URL is all there is",
                vec![member(3, "", "https://kubernetes-master-a1b:2380")],
                Some(3),
            ),
            (
                "a URL wins over a name",
                vec![
                    member(4, "etcd-kubernetes-master-a1b", "https://10.0.0.9:2380"),
                    member(5, "", "https://10.0.0.3:2380"),
                ],
                Some(5),
            ),
            (
                "a name when no URL says so",
                vec![member(6, "etcd-kubernetes-master-a1b", "https://10.0.0.9:2380")],
                Some(6),
            ),
            (
                "another VM's member",
                vec![member(7, "etcd-kubernetes-master", "https://kubernetes-master:2380")],
                None,
            ),
            (
                "events' port is not main's",
                vec![member(8, "", "https://kubernetes-master-a1b:2381")],
                None,
            ),
        ];
        for (what, members, want) in rows {
            let got = find_member(main, members, "kubernetes-master-a1b", ip).map(|m| m.id.0);
            assert_eq!(got, *want, "{what}");
        }
    }
}
