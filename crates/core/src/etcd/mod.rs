//! etcd access (SPEC §5): the v3 JSON gateway over reqwest with mutual TLS. Every call has a
//! timeout, because a member remove without quorum hangs forever otherwise.
//!
//! This file holds the types callers branch on; [`EtcdClient`] (in `client.rs`) makes the calls.

use std::time::Duration;

mod client;

pub use client::*;

/// An etcd member ID. etcd's JSON carries it as a decimal string; people see it in hex, as etcdctl shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl MemberId {
    /// Parse the hex form etcdctl prints (and [`Display`](std::fmt::Display) writes).
    pub fn from_hex(text: &str) -> Option<MemberId> {
        u64::from_str_radix(text.trim(), 16).ok().map(MemberId)
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One member as `member/list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member ID.
    pub id: MemberId,
    /// `etcd-<vm>`; empty for a member that was added but has not started.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until started.
    pub client_urls: Vec<String>,
    /// A learner (non-voting).
    pub is_learner: bool,
}

impl Member {
    /// Whether the member has started at least once: etcd fills in the name when a member first
    /// publishes itself, so an added-but-never-started member has none (etcdctl's rule too).
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }

    /// A started voting member with one peer URL: the fixture of the table tests that match
    /// members to replicas.
    #[cfg(test)]
    pub(crate) fn voter(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: vec![],
            is_learner: false,
        }
    }
}

/// `maintenance/status` of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The member that answered.
    pub member_id: MemberId,
    /// The leader it knows of; `None` without quorum.
    pub leader: Option<MemberId>,
    /// Raft index.
    pub raft_index: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Whether the answering member is a learner.
    pub is_learner: bool,
    /// Errors it reports (e.g. `etcdserver: no leader`).
    pub errors: Vec<String>,
}

/// What can go wrong talking to etcd, typed where callers branch.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Promote refused: the learner is not caught up yet (retry).
    #[error("learner is not in sync with the leader yet")]
    NotInSync,
    /// Promote refused: the member is already a voting member (nothing to retry).
    #[error("member is not a learner")]
    NotALearner,
    /// The call needs a voting member (e.g. a linearizable read sent to a learner).
    #[error("not supported by a learner member")]
    NotSupportedForLearner,
    /// No such member.
    #[error("member not found")]
    MemberNotFound,
    /// The peer URL already belongs to a member.
    #[error("peer URL already exists")]
    PeerUrlExists,
    /// etcd refused a reconfiguration because it would lose quorum or is unhealthy.
    ///
    /// Also transient: with `--strict-reconfig-check`, etcd 3.4 refuses any add (learners too)
    /// until the answering member has been connected to every voting peer for 5 s
    /// (`HealthInterval`), and a remove until enough peers have been; so a change made right
    /// after a promote or a restart gets this for up to ~5 s. Retry for a bounded time when
    /// every member is otherwise known healthy.
    #[error("etcd refused: unhealthy cluster")]
    UnhealthyCluster,
    /// A second learner.
    #[error("etcd refused: too many learner members")]
    TooManyLearners,
    /// strict-reconfig-check: not enough started members.
    #[error("etcd refused: not enough started members")]
    NotEnoughStartedMembers,
    /// A leader-only call sent to a follower.
    #[error("not the leader")]
    NotLeader,
    /// Leadership cannot go to that member.
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// No answer in time.
    #[error("{endpoint}: no answer within {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The timeout.
        after: Duration,
    },
    /// Could not connect or TLS failed.
    #[error("{endpoint}: {message}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// Any other error reply.
    #[error("{endpoint}: etcd error {http_status}: {message}")]
    Api {
        /// The endpoint.
        endpoint: String,
        /// HTTP status.
        http_status: u16,
        /// etcd's message.
        message: String,
    },
}
