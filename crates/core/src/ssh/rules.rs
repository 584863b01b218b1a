//! Which metadata counts for SSH logins, pure: the guest agent's rules (guest-agent
//! `metadata/metadata.go`, `non_windows_accounts.go`; reference/access-path.md §1b, §1d).
//!
//! - Keys: the instance's `ssh-keys` and legacy `sshKeys` always; the project's (both forms)
//!   unless the instance sets `block-project-ssh-keys` or has a legacy `sshKeys`.
//! - OS Login: `enable-oslogin` on the instance, else on the project. With it on, the agent
//!   ignores `ssh-keys` entirely, so kube-ha refuses (OS Login support is later).
//! - Guest attributes (published host keys): `enable-guest-attributes`, instance first, as gcloud
//!   decides whether to ask.
//!
//! Booleans are read as Go's `strconv.ParseBool` reads them (`1 t T TRUE true True`, `0 f F FALSE
//! false False`); anything else counts as unset, as in the agent.

use google_cloud_compute_v1::model;

use super::{MetadataLevel, SshError};
use crate::names::{
    METADATA_BLOCK_PROJECT_SSH_KEYS, METADATA_ENABLE_GUEST_ATTRIBUTES, METADATA_ENABLE_OSLOGIN, METADATA_SSH_KEYS,
    METADATA_SSH_KEYS_LEGACY,
};

/// The value of metadata item `key`, if present.
pub fn metadata_value<'a>(metadata: &'a model::Metadata, key: &str) -> Option<&'a str> {
    metadata
        .items
        .iter()
        .find(|i| i.key.as_deref() == Some(key))
        .map(|i| i.value.as_deref().unwrap_or_default())
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn flag(metadata: &model::Metadata, key: &str) -> Option<bool> {
    metadata_value(metadata, key).and_then(go_bool)
}

/// The instance's value of a boolean key when it has a readable one, else the project's.
fn instance_first(instance: &model::Metadata, project: &model::Metadata, key: &str) -> Option<(bool, MetadataLevel)> {
    flag(instance, key)
        .map(|v| (v, MetadataLevel::Instance))
        .or_else(|| flag(project, key).map(|v| (v, MetadataLevel::Project)))
}

/// Whether OS Login decides logins on the instance, and which level said so.
pub fn os_login_enabled(instance: &model::Metadata, project: &model::Metadata) -> Option<MetadataLevel> {
    match instance_first(instance, project, METADATA_ENABLE_OSLOGIN) {
        Some((true, level)) => Some(level),
        _ => None,
    }
}

/// [`SshError::OsLogin`] when OS Login is on for the instance: `ssh-keys` would be ignored.
pub fn check_os_login(
    instance_name: &str,
    zone: &str,
    instance: &model::Metadata,
    project: &model::Metadata,
) -> Result<(), SshError> {
    match os_login_enabled(instance, project) {
        None => Ok(()),
        Some(level) => Err(SshError::OsLogin {
            instance: instance_name.to_string(),
            zone: zone.to_string(),
            level,
        }),
    }
}

/// Whether gcloud would ask for published host keys.
pub fn guest_attributes_enabled(instance: &model::Metadata, project: &model::Metadata) -> bool {
    matches!(
        instance_first(instance, project, METADATA_ENABLE_GUEST_ATTRIBUTES),
        Some((true, _))
    )
}

/// Every `ssh-keys` line the guest agent considers for this instance, in its order: instance
/// `ssh-keys`, instance `sshKeys`, then (unless blocked) project `ssh-keys` and `sshKeys`.
pub fn authorized_lines<'a>(instance: &'a model::Metadata, project: &'a model::Metadata) -> Vec<&'a str> {
    let lines = |md: &'a model::Metadata| {
        [METADATA_SSH_KEYS, METADATA_SSH_KEYS_LEGACY]
            .into_iter()
            .filter_map(move |k| metadata_value(md, k))
            .filter(|v| !v.is_empty())
            .flat_map(|v| v.split('\n'))
    };
    let blocked = flag(instance, METADATA_BLOCK_PROJECT_SSH_KEYS) == Some(true)
        || metadata_value(instance, METADATA_SSH_KEYS_LEGACY).is_some_and(|v| !v.is_empty());
    let mut out: Vec<&str> = lines(instance).collect();
    if !blocked {
        out.extend(lines(project));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(items: &[(&str, &str)]) -> model::Metadata {
        let mut m = model::Metadata::default();
        m.items = items
            .iter()
            .map(|(k, v)| {
                let mut i = model::metadata::Items::default();
                i.key = Some(k.to_string());
                i.value = Some(v.to_string());
                i
            })
            .collect();
        m
    }

    #[test]
    fn os_login_is_decided_by_the_instance_first_then_the_project() {
        use MetadataLevel::*;
        type Items = &'static [(&'static str, &'static str)];
        let rows: &[(Items, Items, Option<MetadataLevel>)] = &[
            (&[], &[], None),
            (&[("enable-oslogin", "TRUE")], &[], Some(Instance)),
            (&[], &[("enable-oslogin", "TRUE")], Some(Project)),
            (&[], &[("enable-oslogin", "true")], Some(Project)),
            (&[], &[("enable-oslogin", "1")], Some(Project)),
            (&[("enable-oslogin", "FALSE")], &[("enable-oslogin", "TRUE")], None),
            (&[("enable-oslogin", "false")], &[("enable-oslogin", "TRUE")], None),
            (
                &[("enable-oslogin", "TRUE")],
                &[("enable-oslogin", "FALSE")],
                Some(Instance),
            ),
            // unreadable counts as unset, so the project decides
            (
                &[("enable-oslogin", "yes")],
                &[("enable-oslogin", "TRUE")],
                Some(Project),
            ),
            (&[("enable-oslogin", "")], &[], None),
        ];
        for (instance, project, want) in rows {
            assert_eq!(
                os_login_enabled(&md(instance), &md(project)),
                *want,
                "{instance:?} / {project:?}"
            );
        }
        let refusal = check_os_login("m", "z", &md(&[]), &md(&[("enable-oslogin", "TRUE")]))
            .expect_err("refused")
            .to_string();
        assert!(
            refusal.starts_with("OS Login is enabled for instance m (enable-oslogin=TRUE in its project metadata); kube-ha does not support OS Login yet"),
            "{refusal}"
        );
    }

    #[test]
    fn instance_keys_always_count_and_project_keys_unless_blocked() {
        let project = md(&[("ssh-keys", "p:ssh-rsa P1\np:ssh-rsa P2"), ("sshKeys", "q:ssh-rsa Q")]);
        type Items = &'static [(&'static str, &'static str)];
        let rows: &[(Items, &[&str])] = &[
            (&[], &["p:ssh-rsa P1", "p:ssh-rsa P2", "q:ssh-rsa Q"]),
            (
                &[("ssh-keys", "i:ssh-rsa I")],
                &["i:ssh-rsa I", "p:ssh-rsa P1", "p:ssh-rsa P2", "q:ssh-rsa Q"],
            ),
            (
                &[("ssh-keys", "i:ssh-rsa I"), ("block-project-ssh-keys", "TRUE")],
                &["i:ssh-rsa I"],
            ),
            (
                &[("ssh-keys", "i:ssh-rsa I"), ("block-project-ssh-keys", "nope")],
                &["i:ssh-rsa I", "p:ssh-rsa P1", "p:ssh-rsa P2", "q:ssh-rsa Q"],
            ),
            (
                &[("ssh-keys", "i:ssh-rsa I"), ("sshKeys", "l:ssh-rsa L")],
                &["i:ssh-rsa I", "l:ssh-rsa L"],
            ),
            (&[("ssh-keys", "")], &["p:ssh-rsa P1", "p:ssh-rsa P2", "q:ssh-rsa Q"]),
        ];
        for (instance, want) in rows {
            let instance = md(instance);
            assert_eq!(authorized_lines(&instance, &project), *want, "{instance:?}");
        }
    }

    #[test]
    fn guest_attributes_count_only_when_enabled_instance_first() {
        assert!(!guest_attributes_enabled(&md(&[]), &md(&[])));
        assert!(guest_attributes_enabled(
            &md(&[]),
            &md(&[("enable-guest-attributes", "TRUE")])
        ));
        assert!(!guest_attributes_enabled(
            &md(&[("enable-guest-attributes", "FALSE")]),
            &md(&[("enable-guest-attributes", "TRUE")])
        ));
        assert!(guest_attributes_enabled(
            &md(&[("enable-guest-attributes", "True")]),
            &md(&[])
        ));
    }
}
