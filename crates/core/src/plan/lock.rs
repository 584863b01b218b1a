//! The per-cluster operation lock and resume record (SPEC §4: "one operation at a time").
//!
//! Held in project metadata under `kube-ha-lock-<MASTER_NAME>` and written with the metadata
//! fingerprint, so two writers cannot both win. The record says who holds it and what they are
//! doing ([`Intent`]): that is the part of a saga log the world cannot tell by itself (which
//! replica name an interrupted add had picked, whether it was rolling back). Everything else is
//! re-observed.
//!
//! Staleness: a lock expires at `acquired + KUBE_HA_TIMEOUT + 1 min`, because its holder gives up
//! by its own deadline. A lock whose holder ran on this host and is gone (pid dead, or reused by
//! another process) is stale at once, which is what makes "rerun after SIGKILL" work immediately.

use serde::{Deserialize, Serialize};

/// What the lock holder is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// Creating the first master.
    FirstMaster {
        /// Its zone.
        zone: String,
    },
    /// Adding a replica.
    AddReplica {
        /// The name it picked.
        replica: String,
        /// Its zone.
        zone: String,
        /// The add failed and is being undone; a rerun finishes the undo.
        #[serde(default)]
        rolling_back: bool,
    },
    /// Removing a replica.
    RemoveReplica {
        /// The victim.
        replica: String,
        /// Its zone, when known.
        zone: Option<String>,
    },
    /// Tearing the cluster down.
    Teardown,
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Intent::FirstMaster { zone } => write!(f, "creating the first master in {zone}"),
            Intent::AddReplica {
                replica,
                zone,
                rolling_back: false,
            } => write!(f, "adding replica {replica} in {zone}"),
            Intent::AddReplica {
                replica,
                zone,
                rolling_back: true,
            } => {
                write!(f, "rolling back the add of replica {replica} in {zone}")
            }
            Intent::RemoveReplica { replica, .. } => write!(f, "removing replica {replica}"),
            Intent::Teardown => write!(f, "tearing the cluster down"),
        }
    }
}

/// Who holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the holder.
    pub start_ticks: u64,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

/// The lock's value in project metadata (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Holder.
    pub owner: Owner,
    /// What it is doing.
    pub intent: Intent,
    /// Unix seconds when taken.
    pub acquired: u64,
    /// Unix seconds after which anyone may take it over.
    pub expires: u64,
}

impl LockRecord {
    /// Parse the metadata value; a value that is not a lock record is reported, not ignored.
    pub fn parse(value: &str) -> Result<LockRecord, serde_json::Error> {
        serde_json::from_str(value)
    }

    /// The metadata value.
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a held lock may be taken over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Its holder may still be working: hands off.
    Live,
    /// Its holder ran on this host and is gone.
    OwnerGone,
    /// Past its expiry.
    Expired,
}

/// The lock as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    #[default]
    Free,
    /// Somebody does (or did).
    Held {
        /// The record.
        record: LockRecord,
        /// Whether it may be taken over.
        staleness: Staleness,
    },
}

impl LockState {
    /// The intent of an interrupted (stale) operation, which a rerun resumes.
    pub fn interrupted(&self) -> Option<&Intent> {
        match self {
            LockState::Held { record, staleness } if *staleness != Staleness::Live => Some(&record.intent),
            _ => None,
        }
    }

    /// The live holder, if any.
    pub fn live(&self) -> Option<&LockRecord> {
        match self {
            LockState::Held {
                record,
                staleness: Staleness::Live,
            } => Some(record),
            _ => None,
        }
    }
}

/// Classify a record: `alive(owner)` says whether a same-host owner still runs.
pub fn staleness(record: &LockRecord, now_unix: u64, this_host: &str, alive: impl FnOnce(&Owner) -> bool) -> Staleness {
    if now_unix >= record.expires {
        Staleness::Expired
    } else if record.owner.host == this_host && !alive(&record.owner) {
        Staleness::OwnerGone
    } else {
        Staleness::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str) -> LockRecord {
        LockRecord {
            owner: Owner {
                host: host.into(),
                pid: 42,
                start_ticks: 7,
            },
            intent: Intent::AddReplica {
                replica: "k-master-a1b".into(),
                zone: "europe-west1-c".into(),
                rolling_back: false,
            },
            acquired: 1000,
            expires: 2000,
        }
    }

    #[test]
    fn a_lock_is_stale_when_expired_or_its_local_owner_is_gone() {
        assert_eq!(staleness(&record("h"), 2000, "h", |_| true), Staleness::Expired);
        assert_eq!(staleness(&record("h"), 1500, "h", |_| false), Staleness::OwnerGone);
        assert_eq!(staleness(&record("h"), 1500, "h", |_| true), Staleness::Live);
        // Another host's process cannot be checked: only expiry frees it.
        assert_eq!(staleness(&record("other"), 1500, "h", |_| false), Staleness::Live);
    }

    #[test]
    fn record_round_trips_through_metadata_json() {
        let r = record("h");
        assert_eq!(LockRecord::parse(&r.to_value()).expect("parse"), r);
        assert!(LockRecord::parse("garbage").is_err());
    }
}
