//! Taking, updating and releasing the operation lock in project metadata (record format and
//! staleness rules: `plan::lock`). Every write carries the fingerprint that was read, so of two
//! concurrent writers exactly one wins; the loser sees `Precondition` and re-observes.
//!
//! The process and host checks behind "is the holder gone?" live here (they read the OS); they
//! answer [`Liveness::Unknown`] whenever they cannot prove anything, and unknown counts as live.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use google_cloud_compute_v1::model;

use crate::config::Config;
use crate::gce::{Gce, GceError};
use crate::plan::lock::{Intent, Liveness, LockRecord, LockState, Owner, OwnerRef, Vantage, staleness};

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This host's name from gethostname(2); `None` when it cannot be read (never a made-up name:
/// two hosts that both said "unknown" would judge each other's processes).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), where procfs
/// exists.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a same-host owner still runs. Only a proof says gone: kill(2) answering ESRCH (no
/// such process), or the pid now belonging to a process started at another time. Anything else
/// (no procfs, a pid kill(2) cannot address) is unknown.
pub fn liveness(owner: &Owner) -> Liveness {
    let Ok(pid) = libc::pid_t::try_from(owner.pid) else {
        return Liveness::Unknown;
    };
    if pid <= 0 {
        return Liveness::Unknown; // kill(0 or negative) would address process groups
    }
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    let errno = if rc == 0 {
        None
    } else {
        std::io::Error::last_os_error().raw_os_error()
    };
    if errno == Some(libc::ESRCH) {
        return Liveness::Gone;
    }
    let exists = rc == 0 || errno == Some(libc::EPERM);
    match start_ticks(owner.pid) {
        Some(t) if owner.start_ticks != 0 && t != owner.start_ticks => Liveness::Gone,
        Some(_) => Liveness::Running,
        // It exists but its start time cannot be read: it may be the holder.
        None if exists => Liveness::Running,
        None => Liveness::Unknown,
    }
}

/// One command's view of the lock: who it is and what the operator declared.
#[derive(Clone, Debug)]
pub struct Locker {
    key: String,
    host: Option<String>,
    me: Owner,
    take_over: Option<OwnerRef>,
    timeout: Duration,
}

impl Locker {
    /// For the cluster of `cfg`: this process as owner (on `KUBE_HA_LOCK_HOST` when set), and
    /// `KUBE_HA_TAKE_OVER_LOCK`.
    pub fn new(cfg: &Config) -> Locker {
        let host = cfg.lock_host.clone().or_else(hostname);
        let pid = std::process::id();
        let me = Owner {
            host: host.clone().unwrap_or_else(|| Owner::UNKNOWN_HOST.to_string()),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        };
        Locker {
            key: cfg.names.lock_key(),
            host,
            me,
            take_over: cfg.take_over_lock.clone(),
            timeout: cfg.timeout,
        }
    }

    /// This process as a lock owner.
    pub fn me(&self) -> &Owner {
        &self.me
    }

    /// Read the lock state out of project metadata.
    pub fn state(&self, metadata: &model::Metadata) -> Result<LockState> {
        let Some(record) = self.record(metadata)? else {
            return Ok(LockState::Free);
        };
        let at = Vantage {
            now: now_unix(),
            host: self.host.as_deref(),
            take_over: self.take_over.as_ref(),
        };
        let staleness = staleness(&record, at, liveness);
        Ok(LockState::Held { record, staleness })
    }

    fn record(&self, metadata: &model::Metadata) -> Result<Option<LockRecord>> {
        let Some(value) = metadata
            .items
            .iter()
            .find(|i| i.key.as_deref() == Some(self.key.as_str()))
            .and_then(|i| i.value.clone())
        else {
            return Ok(None);
        };
        LockRecord::parse(&value).map(Some).with_context(|| {
            format!(
                "project metadata {} is not a kube-ha lock record; remove it by hand",
                self.key
            )
        })
    }

    /// Take the lock with the fingerprint of `observed` (the metadata the plan was made from).
    pub async fn acquire(&self, gce: &Gce, observed: &model::Metadata, intent: &Intent) -> Result<Acquired> {
        let now = now_unix();
        let record = LockRecord {
            owner: self.me.clone(),
            intent: intent.clone(),
            acquired: now,
            expires: now + self.timeout.as_secs() + 60,
            handed_over: None,
        };
        let value = record.to_value().context("cannot write the lock record")?;
        match gce
            .set_project_metadata(with_item(observed, &self.key, Some(value)))
            .await
        {
            Ok(()) => Ok(Acquired::Yes),
            Err(GceError::Precondition { .. }) => Ok(Acquired::Raced),
            Err(e) => Err(e).context("cannot take the operation lock"),
        }
    }

    /// Rewrite our record (new intent, or hand it over), read-modify-write.
    async fn rewrite(&self, gce: &Gce, f: impl Fn(Option<LockRecord>) -> Option<LockRecord>) -> Result<()> {
        for _ in 0..5 {
            let metadata = gce.project_metadata().await.context("cannot read project metadata")?;
            let current = self.record(&metadata)?;
            if let Some(r) = &current
                && r.owner != self.me
            {
                bail!(
                    "the operation lock was taken over by {} ({}); stopping",
                    r.owner,
                    r.intent
                );
            }
            let value = match f(current) {
                Some(r) => Some(r.to_value().context("cannot write the lock record")?),
                None => None,
            };
            match gce.set_project_metadata(with_item(&metadata, &self.key, value)).await {
                Ok(()) => return Ok(()),
                Err(GceError::Precondition { .. }) => continue, // another key changed: read again
                Err(e) => return Err(e).context("cannot update the operation lock"),
            }
        }
        bail!("project metadata keeps changing; cannot update the operation lock")
    }

    /// Record a new intent (e.g. that an add is now rolling back).
    pub async fn set_intent(&self, gce: &Gce, intent: &Intent) -> Result<()> {
        self.rewrite(gce, |r| {
            r.map(|mut r| {
                r.intent = intent.clone();
                r
            })
        })
        .await
    }

    /// Release the lock: the operation is complete.
    pub async fn release(&self, gce: &Gce) -> Result<()> {
        self.rewrite(gce, |_| None).await
    }

    /// Keep the intent but let anyone, on any host, resume at once; `why` says where it stopped.
    pub async fn hand_over(&self, gce: &Gce, why: &str) -> Result<()> {
        self.rewrite(gce, |r| {
            r.map(|mut r| {
                r.expires = now_unix();
                r.handed_over = Some(why.to_string());
                r
            })
        })
        .await
    }
}

fn with_item(metadata: &model::Metadata, key: &str, value: Option<String>) -> model::Metadata {
    let mut m = metadata.clone();
    m.items.retain(|i| i.key.as_deref() != Some(key));
    if let Some(v) = value {
        let mut item = model::metadata::Items::default();
        item.key = Some(key.to_string());
        item.value = Some(v);
        m.items.push(item);
    }
    m
}

/// Outcome of trying to take the lock.
#[derive(Debug)]
pub enum Acquired {
    /// Ours now.
    Yes,
    /// Someone wrote project metadata since it was read: observe again.
    Raced,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname().expect("this host has a name"),
            pid,
            start_ticks: start_ticks(pid).expect("procfs"),
        }
    }

    #[test]
    fn this_process_is_running_and_a_changed_start_time_or_a_dead_pid_is_gone() {
        let me = me();
        assert!(me.start_ticks > 0);
        assert_eq!(liveness(&me), Liveness::Running);
        assert_eq!(
            liveness(&Owner {
                start_ticks: me.start_ticks + 1,
                ..me.clone()
            }),
            Liveness::Gone
        );
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let dead = child.id();
        child.wait().expect("reap");
        assert_eq!(
            liveness(&Owner {
                pid: dead,
                start_ticks: 1,
                ..me.clone()
            }),
            Liveness::Gone
        );
    }

    #[test]
    fn what_cannot_be_checked_is_unknown_not_gone() {
        let me = me();
        // A pid kill(2) cannot address.
        assert_eq!(
            liveness(&Owner {
                pid: u32::MAX - 1,
                ..me.clone()
            }),
            Liveness::Unknown
        );
        assert_eq!(liveness(&Owner { pid: 0, ..me.clone() }), Liveness::Unknown);
        // A record without a start time: the pid exists, so it may be the holder.
        assert_eq!(liveness(&Owner { start_ticks: 0, ..me }), Liveness::Running);
    }

    #[test]
    fn the_host_name_comes_from_gethostname() {
        let name = hostname().expect("a host name");
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("procfs");
        assert_eq!(name, proc.trim());
    }
}
