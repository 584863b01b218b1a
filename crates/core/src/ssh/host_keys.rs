//! Which host key a master may present, pure: gcloud's rules (reference/access-path.md §1a).
//!
//! 1. Keys the instance published in its guest attributes (`hostkeys/ssh-ed25519`,
//!    `hostkeys/ecdsa-sha2-nistp256`, `hostkeys/ssh-rsa`) decide when there are any: the
//!    presented key must be one of them (they then replace the pins of the alias, as gcloud does).
//! 2. Otherwise the keys pinned for `compute.<instance id>` in the known-hosts file decide.
//! 3. Otherwise this is the first use: the key is accepted and pinned.
//!
//! A revoked key, or one that matches neither, is a mismatch. There is no "accept anything".

use russh::keys::Algorithm;
use russh::keys::ssh_key::{HashAlg, PublicKey};

use super::known_hosts::{KnownHosts, Pins};

/// The guest-attribute keys (under `hostkeys/`) gcloud reads.
pub const PUBLISHED_KEY_TYPES: [&str; 3] = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"];

/// What decides a master's host key.
#[derive(Clone, Debug)]
pub struct HostKeys {
    /// Where pins live.
    pub known_hosts: KnownHosts,
    /// Keys published in guest attributes; empty when none were.
    pub published: Vec<PublicKey>,
}

/// Which source a presented key was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeySource {
    /// The instance's guest attributes.
    Published,
    /// The known-hosts file.
    Pinned,
}

/// Why a presented key was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// It is one of the published keys.
    Published,
    /// It is pinned.
    Pinned,
    /// Nothing was known: accepted and to be pinned now.
    FirstUse,
}

/// `ssh-ed25519 SHA256:…`.
pub fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

fn same(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The verdict on `presented`, or the source it contradicts with the fingerprints it should
/// have matched.
pub fn judge_host_key(
    presented: &PublicKey,
    published: &[PublicKey],
    pins: &Pins,
) -> Result<HostKeyVerdict, (HostKeySource, Vec<String>)> {
    if pins.revoked.iter().any(|k| same(k, presented)) {
        return Err((
            HostKeySource::Pinned,
            vec!["(the presented key is @revoked)".to_string()],
        ));
    }
    if !published.is_empty() {
        return match published.iter().any(|k| same(k, presented)) {
            true => Ok(HostKeyVerdict::Published),
            false => Err((HostKeySource::Published, published.iter().map(describe).collect())),
        };
    }
    if pins.keys.is_empty() {
        return Ok(HostKeyVerdict::FirstUse);
    }
    match pins.keys.iter().any(|k| same(k, presented)) {
        true => Ok(HostKeyVerdict::Pinned),
        false => Err((HostKeySource::Pinned, pins.keys.iter().map(describe).collect())),
    }
}

/// Published keys from `getGuestAttributes(queryPath=hostkeys/)` items `(namespace, key, value)`:
/// only namespace `hostkeys` and the supported types; the value is cut at its first whitespace
/// and must decode to a key of the type it is filed under (gcloud skips anything else).
pub fn parse_published_host_keys<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<PublicKey> {
    items
        .into_iter()
        .filter(|(namespace, key, _)| *namespace == "hostkeys" && PUBLISHED_KEY_TYPES.contains(key))
        .filter_map(|(_, key_type, value)| {
            let blob = value.split_whitespace().next()?;
            let key = PublicKey::from_openssh(&format!("{key_type} {blob}")).ok()?;
            (key.algorithm().as_str() == key_type).then_some(key)
        })
        .collect()
}

/// The host key algorithms to offer, known ones first (OpenSSH orders `HostKeyAlgorithms` the same
/// way), so a host with several keys presents the one that is pinned or published rather than
/// one kube-ha would have to refuse.
pub(crate) fn preferred_algorithms(known: &[PublicKey]) -> Vec<Algorithm> {
    let defaults: &[Algorithm] = &russh::Preferred::DEFAULT.key;
    let is_known = |a: &Algorithm| {
        known.iter().any(|k| match (k.algorithm(), a) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            (ka, a) => ka == *a,
        })
    };
    let mut out: Vec<Algorithm> = defaults.iter().filter(|a| is_known(a)).cloned().collect();
    out.extend(defaults.iter().filter(|a| !is_known(a)).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fixtures::{ED, ED2, key};

    #[test]
    fn published_keys_then_pins_decide_and_nothing_else_is_accepted() {
        let (a, b) = (key(ED), key(ED2));
        let pins = |keys: &[&PublicKey], revoked: &[&PublicKey]| Pins {
            keys: keys.iter().map(|k| (*k).clone()).collect(),
            revoked: revoked.iter().map(|k| (*k).clone()).collect(),
        };
        use HostKeySource as S;
        use HostKeyVerdict as V;
        type Row = (&'static str, Vec<PublicKey>, Pins, Result<V, S>);
        let rows: Vec<Row> = vec![
            ("nothing known: first use", vec![], pins(&[], &[]), Ok(V::FirstUse)),
            ("pinned and presented", vec![], pins(&[&a], &[]), Ok(V::Pinned)),
            ("pinned another key", vec![], pins(&[&b], &[]), Err(S::Pinned)),
            ("one of two pins", vec![], pins(&[&b, &a], &[]), Ok(V::Pinned)),
            (
                "published and presented",
                vec![a.clone()],
                pins(&[], &[]),
                Ok(V::Published),
            ),
            (
                "published another key",
                vec![b.clone()],
                pins(&[], &[]),
                Err(S::Published),
            ),
            (
                "published beats a stale pin",
                vec![a.clone()],
                pins(&[&b], &[]),
                Ok(V::Published),
            ),
            (
                "a pin does not excuse a published mismatch",
                vec![b.clone()],
                pins(&[&a], &[]),
                Err(S::Published),
            ),
            ("revoked", vec![], pins(&[&a], &[&a]), Err(S::Pinned)),
            (
                "revoked though published",
                vec![a.clone()],
                pins(&[], &[&a]),
                Err(S::Pinned),
            ),
        ];
        for (name, published, pins, want) in rows {
            let got = judge_host_key(&a, &published, &pins).map_err(|(s, _)| s);
            assert_eq!(got, want, "{name}");
        }
        let (_, expected) = judge_host_key(&a, &[], &pins(&[&b], &[])).expect_err("mismatch");
        assert_eq!(expected, vec![describe(&b)]);
        assert!(expected[0].starts_with("ssh-ed25519 SHA256:"), "{expected:?}");
    }

    #[test]
    fn published_keys_are_read_as_gcloud_reads_them() {
        let blob = ED.split(' ').nth(1).expect("blob");
        let with_comment = format!("{blob} root@host");
        let items = vec![
            ("hostkeys", "ssh-ed25519", with_comment.as_str()),
            ("hostkeys", "ssh-dss", blob),
            ("other", "ssh-ed25519", blob),
            ("hostkeys", "ssh-rsa", blob),
            ("hostkeys", "ecdsa-sha2-nistp256", "!!not base64"),
        ];
        assert_eq!(parse_published_host_keys(items), vec![key(ED)]);
    }

    #[test]
    fn known_key_types_are_offered_first() {
        let algorithms = preferred_algorithms(&[key(ED)]);
        assert_eq!(algorithms.first(), Some(&Algorithm::Ed25519));
        assert_eq!(algorithms.len(), russh::Preferred::DEFAULT.key.len());
        let rsa = key(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCfgA+97LB7YrZVe8YxLH2AW/2J7XUWXkWT+or2B/CtRKiqJmMTEiJbT2e2MXZyyQ6R1gm6mFQf9wvMep4OXa8/A6DPWmu2wyQTkHAHvWQ2dB3gmgxtysbLoafA9Dh6u+JVgFtiKaH6tVEMTUsC/lrHlv44tz3LCIcIB6I9DxVcWQ==",
        );
        let algorithms = preferred_algorithms(&[rsa]);
        assert!(
            algorithms[..3].iter().all(|a| matches!(a, Algorithm::Rsa { .. })),
            "every RSA signature algorithm first: {algorithms:?}"
        );
    }
}
