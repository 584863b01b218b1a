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

use super::lock::LockState;

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
    /// Which of the two firewall rules exist.
    pub firewalls: Vec<String>,
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
    /// The kubeconfig exists and points at the static IP.
    pub kubeconfig_ok: bool,
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

    /// The region the cluster lives in (of its replicas, else of its leftovers).
    pub fn cluster_region(&self) -> Option<String> {
        self.replicas
            .first()
            .map(|r| r.zone.as_str())
            .or_else(|| self.disks.first().map(|d| d.zone.as_str()))
            .and_then(crate::config::region_of_zone)
    }

    /// The member of `replica` in `cluster`: by peer URL on its internal IP, else by name.
    pub fn member_of(&self, cluster: EtcdCluster, replica: &str) -> Option<&Member> {
        let members = self.etcd.get(&cluster)?.members.as_ref()?;
        let ip = self.replica_ip(replica);
        members
            .iter()
            .find(|m| ip.is_some_and(|ip| m.peer_urls.iter().any(|u| *u == cluster.peer_url(ip))))
            .or_else(|| members.iter().find(|m| m.name == cluster.member_name(replica)))
    }

    /// A replica's internal IP: from its VM, else from its reserved address.
    pub fn replica_ip(&self, replica: &str) -> Option<Ipv4Addr> {
        self.replica(replica)
            .and_then(|r| r.internal_ip)
            .or_else(|| self.internal_ips.get(replica).map(|a| a.ip))
    }

    /// The replica a member belongs to, if any (by peer URL IP, else by name).
    pub fn replica_of_member(&self, cluster: EtcdCluster, member: &Member) -> Option<String> {
        let by_ip = self
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .chain(self.internal_ips.keys().cloned())
            .find(|name| {
                self.replica_ip(name)
                    .is_some_and(|ip| member.peer_urls.iter().any(|u| *u == cluster.peer_url(ip)))
            });
        by_ip.or_else(|| {
            member
                .name
                .strip_prefix("etcd-")
                .filter(|n| self.replica(n).is_some() || self.internal_ips.contains_key(*n))
                .map(str::to_string)
        })
    }
}
