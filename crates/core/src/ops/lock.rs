//! Taking, updating and releasing the operation lock in project metadata (record format and
//! staleness rules: `plan::lock`). Every write carries the fingerprint that was read, so of two
//! concurrent writers exactly one wins; the loser sees `Precondition` and re-observes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use google_cloud_compute_v1::model;

use crate::gce::{Gce, GceError};
use crate::plan::lock::{Intent, LockRecord, LockState, Owner, staleness};

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process as a lock owner.
pub fn me() -> Owner {
    let pid = std::process::id();
    Owner {
        host: hostname(),
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
    }
}

/// Is a same-host owner still running (same pid and same start time)?
pub fn owner_alive(owner: &Owner) -> bool {
    start_ticks(owner.pid).is_some_and(|t| t == owner.start_ticks)
}

/// Read the lock state out of project metadata.
pub fn lock_state(metadata: &model::Metadata, key: &str) -> Result<LockState> {
    let Some(value) = metadata
        .items
        .iter()
        .find(|i| i.key.as_deref() == Some(key))
        .and_then(|i| i.value.clone())
    else {
        return Ok(LockState::Free);
    };
    let record = LockRecord::parse(&value)
        .with_context(|| format!("project metadata {key} is not a kube-ha lock record; remove it by hand"))?;
    let staleness = staleness(&record, now_unix(), &hostname(), owner_alive);
    Ok(LockState::Held { record, staleness })
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

/// Take the lock with the fingerprint of `observed` (the metadata the plan was made from).
pub async fn acquire(
    gce: &Gce,
    observed: &model::Metadata,
    key: &str,
    intent: &Intent,
    timeout: Duration,
) -> Result<Acquired> {
    let now = now_unix();
    let record = LockRecord {
        owner: me(),
        intent: intent.clone(),
        acquired: now,
        expires: now + timeout.as_secs() + 60,
    };
    match gce
        .set_project_metadata(with_item(observed, key, Some(record.to_value())))
        .await
    {
        Ok(()) => Ok(Acquired::Yes),
        Err(GceError::Precondition { .. }) => Ok(Acquired::Raced),
        Err(e) => Err(e).context("cannot take the operation lock"),
    }
}

/// Rewrite our record (new intent, or `expires` = now to hand it over), read-modify-write.
async fn rewrite(gce: &Gce, key: &str, f: impl Fn(Option<LockRecord>) -> Result<Option<LockRecord>>) -> Result<()> {
    for _ in 0..5 {
        let metadata = gce.project_metadata().await.context("cannot read project metadata")?;
        let current = match lock_state(&metadata, key)? {
            LockState::Free => None,
            LockState::Held { record, .. } => Some(record),
        };
        if let Some(r) = &current
            && r.owner != me()
        {
            bail!(
                "the operation lock was taken over by {} ({}); stopping",
                r.owner,
                r.intent
            );
        }
        let value = f(current)?.map(|r| r.to_value());
        match gce.set_project_metadata(with_item(&metadata, key, value)).await {
            Ok(()) => return Ok(()),
            Err(GceError::Precondition { .. }) => continue, // another key changed: read again
            Err(e) => return Err(e).context("cannot update the operation lock"),
        }
    }
    bail!("project metadata keeps changing; cannot update the operation lock")
}

/// Record a new intent (e.g. that an add is now rolling back).
pub async fn set_intent(gce: &Gce, key: &str, intent: &Intent) -> Result<()> {
    rewrite(gce, key, |r| {
        Ok(r.map(|mut r| {
            r.intent = intent.clone();
            r
        }))
    })
    .await
}

/// Release the lock: the operation is complete.
pub async fn release(gce: &Gce, key: &str) -> Result<()> {
    rewrite(gce, key, |_| Ok(None)).await
}

/// Keep the intent but let anyone resume at once (the command failed while acting).
pub async fn hand_over(gce: &Gce, key: &str) -> Result<()> {
    rewrite(gce, key, |r| {
        Ok(r.map(|mut r| {
            r.expires = now_unix();
            r
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = me();
        assert!(me.start_ticks > 0);
        assert!(owner_alive(&me));
        assert!(!owner_alive(&Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        }));
        assert!(!owner_alive(&Owner {
            pid: u32::MAX - 1,
            ..me
        }));
    }
}
