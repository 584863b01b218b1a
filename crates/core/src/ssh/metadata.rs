//! The run key in an instance's `ssh-keys` metadata, through the Compute API: read, edit (pure,
//! `ssh_keys`), write back with the fingerprint it was read with. A 412 means someone else wrote
//! in between: read again and redo the edit, a bounded number of times. `setMetadata` replaces
//! every item, so every other item (`kube-env`, `kube-master-certs`, …) goes back as it was read.
//!
//! Instance level only: it needs no project permission, touches no other VM, and the guest agent
//! always merges instance keys (even with `block-project-ssh-keys`).

use std::time::Duration;

use google_cloud_compute_v1::model;
use russh::keys::ssh_key::PublicKey;
use time::OffsetDateTime;

use super::key::RunKey;
use super::rules::{guest_attributes_enabled, metadata_value};
use super::ssh_keys::{SshKeysEdit, with_entry, without_entry};
use super::{SshError, parse_published_host_keys};
use crate::gce::{Gce, GceError, Outcome};
use crate::names::{GUEST_ATTRIBUTES_HOSTKEYS, METADATA_SSH_KEYS};

/// How many read-modify-write rounds a metadata edit gets before giving up on a busy writer.
const ATTEMPTS: u32 = 6;
/// The pause before the first reread after a 412 (doubled each time).
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// `metadata` with `ssh-keys` set to `value` in place (appended when absent), or removed when
/// `value` is empty (so a value that was absent before the run is absent after it).
fn set_ssh_keys(metadata: &model::Metadata, value: &str) -> model::Metadata {
    let mut out = metadata.clone();
    let at = out
        .items
        .iter()
        .position(|i| i.key.as_deref() == Some(METADATA_SSH_KEYS));
    match (at, value.is_empty()) {
        (Some(i), true) => {
            out.items.remove(i);
        }
        (Some(i), false) => out.items[i].value = Some(value.to_string()),
        (None, true) => {}
        (None, false) => {
            let mut item = model::metadata::Items::default();
            item.key = Some(METADATA_SSH_KEYS.to_string());
            item.value = Some(value.to_string());
            out.items.push(item);
        }
    }
    out
}

/// Read-modify-write of one instance's `ssh-keys`: `edit` gets the current value (empty when
/// absent) and returns the edit; nothing is written when it changes nothing.
async fn edit_ssh_keys(
    gce: &Gce,
    zone: &str,
    instance: &str,
    edit: impl Fn(&str) -> Result<SshKeysEdit, SshError>,
) -> Result<Outcome, SshError> {
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        let Some(found) = gce.instance(zone, instance).await? else {
            return Err(GceError::NotFound {
                what: format!("instance {instance} in {zone}"),
            }
            .into());
        };
        let metadata = found.metadata.unwrap_or_default();
        let current = metadata_value(&metadata, METADATA_SSH_KEYS).unwrap_or_default();
        let edited = edit(current)?;
        if edited.dropped_expired > 0 {
            tracing::info!(%instance, dropped = edited.dropped_expired, "removing expired kube-ha ssh-keys entries");
        }
        if !edited.changed {
            return Ok(Outcome::AlreadyDone);
        }
        match gce
            .set_instance_metadata(zone, instance, set_ssh_keys(&metadata, &edited.value))
            .await
        {
            Ok(()) => return Ok(Outcome::Changed),
            Err(e @ GceError::Precondition { .. }) => {
                tracing::debug!(%instance, attempt, "ssh-keys: metadata changed under us (412), rereading");
                last = Some(e);
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| GceError::Precondition {
            what: format!("set metadata of instance {instance} in {zone}"),
            message: String::new(),
        })
        .into())
}

/// Put the run key's entry into `instance`'s `ssh-keys` (dropping expired `kube-ha` entries on
/// the way). `AlreadyDone` when it is there already (a retried write that had landed).
pub async fn install_run_key(
    gce: &Gce,
    zone: &str,
    instance: &str,
    key: &RunKey,
    now: OffsetDateTime,
) -> Result<Outcome, SshError> {
    let line = key.metadata_line()?;
    let blob = key.blob();
    edit_ssh_keys(gce, zone, instance, |current| {
        with_entry(current, key.user(), &blob, &line, now).map_err(|bytes| SshError::SshKeysTooLarge {
            instance: instance.to_string(),
            bytes,
            limit: super::MAX_VALUE_BYTES,
        })
    })
    .await
}

/// Take the run key's entry out of `instance`'s `ssh-keys`, with any expired `kube-ha` entries.
/// `AlreadyDone` when there was nothing to remove; a deleted instance counts as done.
pub async fn remove_run_key(
    gce: &Gce,
    zone: &str,
    instance: &str,
    key: &RunKey,
    now: OffsetDateTime,
) -> Result<Outcome, SshError> {
    let blob = key.blob();
    match edit_ssh_keys(gce, zone, instance, |current| {
        Ok(without_entry(current, key.user(), &blob, now))
    })
    .await
    {
        Err(SshError::Gce(e)) if e.is_not_found() => Ok(Outcome::AlreadyDone),
        other => other,
    }
}

/// The host keys `instance` published in its guest attributes, asked only when guest attributes
/// are enabled for it (instance metadata first, then the project's), as gcloud does. Empty when
/// there are none.
pub async fn published_host_keys(
    gce: &Gce,
    zone: &str,
    instance: &str,
    instance_metadata: &model::Metadata,
    project_metadata: &model::Metadata,
) -> Result<Vec<PublicKey>, SshError> {
    if !guest_attributes_enabled(instance_metadata, project_metadata) {
        return Ok(Vec::new());
    }
    let Some(attributes) = gce.guest_attributes(zone, instance, GUEST_ATTRIBUTES_HOSTKEYS).await? else {
        return Ok(Vec::new());
    };
    let items = attributes.query_value.map(|v| v.items).unwrap_or_default();
    Ok(parse_published_host_keys(items.iter().map(|i| {
        (
            i.namespace.as_deref().unwrap_or_default(),
            i.key.as_deref().unwrap_or_default(),
            i.value.as_deref().unwrap_or_default(),
        )
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_is_replaced_in_place_added_last_or_dropped_when_empty() {
        let item = |k: &str, v: &str| {
            let mut i = model::metadata::Items::default();
            i.key = Some(k.into());
            i.value = Some(v.into());
            i
        };
        let keys = |m: &model::Metadata| -> Vec<(String, String)> {
            m.items
                .iter()
                .map(|i| (i.key.clone().unwrap_or_default(), i.value.clone().unwrap_or_default()))
                .collect()
        };
        let mut md = model::Metadata::new().set_fingerprint(b"fp".to_vec());
        md.items = vec![item("kube-env", "A: 'b'"), item("ssh-keys", "old"), item("z", "last")];
        let replaced = set_ssh_keys(&md, "new");
        assert_eq!(
            replaced.fingerprint, md.fingerprint,
            "the fingerprint goes back as read"
        );
        assert_eq!(
            keys(&replaced),
            [("kube-env", "A: 'b'"), ("ssh-keys", "new"), ("z", "last")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let dropped = set_ssh_keys(&md, "");
        assert_eq!(keys(&dropped).len(), 2);
        let mut without = md.clone();
        without.items.remove(1);
        assert_eq!(
            keys(&set_ssh_keys(&without, "k")).last(),
            Some(&("ssh-keys".into(), "k".into()))
        );
        assert_eq!(keys(&set_ssh_keys(&without, "")), keys(&without));
    }
}
