//! The per-cluster operation lock and resume record (SPEC §4: "one operation at a time").
//!
//! Held in project metadata under `kube-ha-lock-<MASTER_NAME>` and written with the metadata
//! fingerprint, so two writers cannot both win. The record says who holds it and what they are
//! doing ([`Intent`]): that is the part of a saga log the world cannot tell by itself (which
//! replica name an interrupted add had picked, whether it was rolling back). Everything else is
//! re-observed.
//!
//! Staleness: a lock expires at `acquired + KUBE_HA_TIMEOUT + 1 min`, because its holder gives up
//! by its own deadline. A lock its holder handed over (it failed while acting, or was
//! interrupted by SIGINT/SIGTERM) is free at once, from any host, and keeps its intent. A lock
//! whose holder ran on this host and is provably gone (pid dead, or reused by another process)
//! is stale at once, which is what makes "rerun after SIGKILL" work immediately. Anything kube-ha
//! cannot tell (another host, an unknown host name, no way to read a process's start time)
//! counts as live: failing closed costs a wait, failing open runs two operations at once.

use std::str::FromStr;

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

impl Owner {
    /// The host name recorded when the real one cannot be read: never equal to any host's own
    /// view, so such an owner is never judged gone by a process check.
    pub const UNKNOWN_HOST: &'static str = "unknown-host";

    /// How an operator names this owner (`KUBE_HA_TAKE_OVER_LOCK=<host>:<pid>`).
    pub fn reference(&self) -> OwnerRef {
        OwnerRef {
            host: self.host.clone(),
            pid: self.pid,
        }
    }
}

/// A lock owner as an operator names it: `<host>:<pid>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl std::fmt::Display for OwnerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.pid)
    }
}

impl FromStr for OwnerRef {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (host, pid) = s.rsplit_once(':').ok_or(())?;
        let pid = pid.parse().map_err(|_| ())?;
        if host.is_empty() {
            return Err(());
        }
        Ok(OwnerRef {
            host: host.to_string(),
            pid,
        })
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
    /// Set when the holder handed the lock over (why: the step it was interrupted at, or that
    /// it failed): anyone may resume at once. `expires` is set to the hand-over time too, so an
    /// older kube-ha reads it as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over: Option<String>,
}

impl LockRecord {
    /// Parse the metadata value; a value that is not a lock record is reported, not ignored.
    pub fn parse(value: &str) -> Result<LockRecord, serde_json::Error> {
        serde_json::from_str(value)
    }

    /// The metadata value (an error rather than an empty value, which would read as garbage).
    pub fn to_value(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Why a held lock may be taken over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Its holder may still be working: hands off.
    Live,
    /// Its holder ran on this host and is gone.
    OwnerGone,
    /// Its holder handed it over (interrupted, or failed while acting).
    HandedOver,
    /// The operator declared its holder gone for good (`KUBE_HA_TAKE_OVER_LOCK`).
    TakenOver,
    /// Past its expiry.
    Expired,
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Staleness::Live => "held",
            Staleness::OwnerGone => "its process is gone",
            Staleness::HandedOver => "handed over",
            Staleness::TakenOver => "taken over on request",
            Staleness::Expired => "expired",
        })
    }
}

/// Whether a same-host owner process still runs, as far as this host can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (same pid and start time), or the pid exists and its start time cannot be read.
    Running,
    /// Provably gone: no such process, or the pid now belongs to a process started later.
    Gone,
    /// Cannot tell (no process table to read).
    Unknown,
}

/// Where a lock is judged from: the clock, this host's name (`None` when it cannot be read), and
/// the owner an operator declared gone.
#[derive(Clone, Copy, Debug)]
pub struct Vantage<'a> {
    /// Unix seconds.
    pub now: u64,
    /// This host's name.
    pub host: Option<&'a str>,
    /// `KUBE_HA_TAKE_OVER_LOCK`.
    pub take_over: Option<&'a OwnerRef>,
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

    /// The record, whoever holds it.
    pub fn record(&self) -> Option<&LockRecord> {
        match self {
            LockState::Held { record, .. } => Some(record),
            LockState::Free => None,
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

/// Unix seconds as RFC 3339 (for messages), or "unix time N" if it is out of range.
pub fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {unix}"))
}

/// Classify a record: `alive(owner)` says whether a same-host owner still runs. Only a proof
/// frees a lock: a hand-over, the operator's word, expiry, or a same-host process that is gone.
pub fn staleness(record: &LockRecord, at: Vantage<'_>, alive: impl FnOnce(&Owner) -> Liveness) -> Staleness {
    let same_host = at
        .host
        .is_some_and(|h| h == record.owner.host && h != Owner::UNKNOWN_HOST);
    if record.handed_over.is_some() {
        Staleness::HandedOver
    } else if at.take_over == Some(&record.owner.reference()) {
        Staleness::TakenOver
    } else if at.now >= record.expires {
        Staleness::Expired
    } else if same_host && alive(&record.owner) == Liveness::Gone {
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
            handed_over: None,
        }
    }

    fn at(now: u64, host: Option<&str>) -> Vantage<'_> {
        Vantage {
            now,
            host,
            take_over: None,
        }
    }

    #[test]
    fn a_lock_is_stale_only_when_expired_handed_over_taken_over_or_its_local_owner_is_provably_gone() {
        use Liveness::*;
        let h = Some("h");
        assert_eq!(staleness(&record("h"), at(2000, h), |_| Running), Staleness::Expired);
        assert_eq!(staleness(&record("h"), at(1500, h), |_| Gone), Staleness::OwnerGone);
        assert_eq!(staleness(&record("h"), at(1500, h), |_| Running), Staleness::Live);
        // Cannot tell means live.
        assert_eq!(staleness(&record("h"), at(1500, h), |_| Unknown), Staleness::Live);
        assert_eq!(staleness(&record("h"), at(1500, None), |_| Gone), Staleness::Live);
        let unknown = record(Owner::UNKNOWN_HOST);
        assert_eq!(
            staleness(&unknown, at(1500, Some(Owner::UNKNOWN_HOST)), |_| Gone),
            Staleness::Live
        );
        // Another host's process cannot be checked: only expiry, a hand-over or the operator frees it.
        assert_eq!(staleness(&record("other"), at(1500, h), |_| Gone), Staleness::Live);
        let handed = LockRecord {
            handed_over: Some("interrupted".into()),
            ..record("other")
        };
        assert_eq!(staleness(&handed, at(1500, h), |_| Running), Staleness::HandedOver);
        let named = OwnerRef {
            host: "other".into(),
            pid: 42,
        };
        let take = Vantage {
            take_over: Some(&named),
            ..at(1500, h)
        };
        assert_eq!(staleness(&record("other"), take, |_| Running), Staleness::TakenOver);
        let wrong = OwnerRef {
            host: "other".into(),
            pid: 43,
        };
        let take = Vantage {
            take_over: Some(&wrong),
            ..at(1500, h)
        };
        assert_eq!(staleness(&record("other"), take, |_| Running), Staleness::Live);
    }

    #[test]
    fn record_round_trips_through_metadata_json_and_old_records_still_parse() {
        let r = record("h");
        assert_eq!(LockRecord::parse(&r.to_value().expect("serialise")).expect("parse"), r);
        assert!(LockRecord::parse("garbage").is_err());
        let old =
            r#"{"owner":{"host":"h","pid":1,"start_ticks":2},"intent":{"kind":"teardown"},"acquired":1,"expires":2}"#;
        assert_eq!(LockRecord::parse(old).expect("old record").handed_over, None);
    }

    #[test]
    fn an_owner_is_named_host_colon_pid() {
        let r: OwnerRef = "build-7.example:4242".parse().expect("parse");
        assert_eq!((r.host.as_str(), r.pid), ("build-7.example", 4242));
        assert_eq!(r.to_string(), "build-7.example:4242");
        assert!("nohost".parse::<OwnerRef>().is_err());
        assert!(":12".parse::<OwnerRef>().is_err());
        assert!("h:x".parse::<OwnerRef>().is_err());
    }
}
