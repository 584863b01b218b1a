//! Editing an `ssh-keys` metadata value, pure: add the run's entry, remove it, and drop expired
//! `kube-ha:` entries that killed runs left behind. Everything else is kept **byte for byte**:
//! comments, blank lines, legacy forms, options, `\r\n` line ends, and whether the value ends
//! with a newline.
//!
//! The value is newline-separated, as the guest agent splits it (`strings.Split(v, "\n")`), so a
//! `\r` before a `\n` belongs to its line. An entry is `user:[options] <type> <base64> [comment]`;
//! a `google-ssh {"userName":…,"expireOn":…}` comment makes it expire (the agent accepts RFC 3339
//! and Go's `2006-01-02T15:04:05-0700`; an unreadable time makes the agent reject the line, and
//! kube-ha leaves such lines alone: only an entry that has provably expired is anyone's to drop).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// GCE's limit on one metadata value (Compute `Metadata`: "must be less than or equal to 262144 bytes").
pub const MAX_VALUE_BYTES: usize = 262_144;

/// When an entry stops being installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No `google-ssh` comment: never.
    Never,
    /// `expireOn`.
    At(OffsetDateTime),
    /// A `google-ssh` comment without a readable `expireOn`: the guest agent rejects the line.
    Invalid,
}

/// One entry of an `ssh-keys` value, as the guest agent reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry<'a> {
    /// Text before the first `:`.
    pub user: &'a str,
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub key_type: &'a str,
    /// The base64 key blob.
    pub blob: &'a str,
    /// Its expiry.
    pub expiry: Expiry,
}

impl KeyEntry<'_> {
    /// Has it expired at `now`? (`Never` and `Invalid` never have.)
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        matches!(self.expiry, Expiry::At(t) if t <= now)
    }
}

/// The result of an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshKeysEdit {
    /// The new value.
    pub value: String,
    /// Whether it differs from the old one (no write is needed otherwise).
    pub changed: bool,
    /// How many expired entries of the user were dropped.
    pub dropped_expired: usize,
}

/// Whether a token names an SSH public key algorithm (so options before it can be skipped).
fn is_key_type(token: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"]
        .iter()
        .any(|p| token.starts_with(p))
}

/// Parse one line (its `\r`, if any, is ignored). `None` for anything that is not a key entry
/// (blank lines, comments, lines without `user:`).
pub fn parse_entry(line: &str) -> Option<KeyEntry<'_>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (user, rest) = line.split_once(':')?;
    if user.is_empty() || user.chars().any(char::is_whitespace) {
        return None;
    }
    let mut tokens = rest.split_whitespace();
    let key_type = tokens.by_ref().find(|t| is_key_type(t))?;
    let blob = tokens.next()?;
    // The comment is everything after the blob, as written (the blob is a subslice of `rest`).
    let blob_end = blob.as_ptr() as usize - rest.as_ptr() as usize + blob.len();
    let after_blob = rest.get(blob_end..).unwrap_or_default().trim();
    let expiry = match after_blob.strip_prefix("google-ssh") {
        None => Expiry::Never,
        Some(json) => google_ssh_expiry(json.trim()),
    };
    Some(KeyEntry {
        user,
        key_type,
        blob,
        expiry,
    })
}

/// `expireOn` of a `google-ssh` JSON comment. Field names match case-insensitively, as Go's
/// `encoding/json` does for the agent's struct.
fn google_ssh_expiry(json: &str) -> Expiry {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Expiry::Invalid;
    };
    let Some(serde_json::Value::String(text)) = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("expireOn"))
        .map(|(_, v)| v)
    else {
        return Expiry::Invalid;
    };
    parse_expire_on(text).map(Expiry::At).unwrap_or(Expiry::Invalid)
}

/// RFC 3339, or Go's `2006-01-02T15:04:05-0700` (what gcloud writes: `+0000`).
fn parse_expire_on(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let go_layout = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]",
    )
    .ok()?;
    OffsetDateTime::parse(text, &go_layout).ok()
}

/// The value's lines, each with its `\n` (the last may have none).
fn segments(value: &str) -> Vec<&str> {
    value.split_inclusive('\n').collect()
}

/// Join kept lines so the result ends with a newline exactly when `original` did: a line removed
/// from the end must not leave its separator behind, so that add-then-remove gives the original
/// back byte for byte.
fn join(original: &str, kept: &[&str]) -> String {
    let mut out: String = kept.concat();
    if !original.is_empty() && !original.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// `value` with `line` (the entry of `user` whose key blob is `blob`) appended, unless an entry
/// with that blob is there already, and with `user`'s expired entries dropped.
/// `Err(bytes)` when the result would exceed [`MAX_VALUE_BYTES`].
pub fn with_entry(value: &str, user: &str, blob: &str, line: &str, now: OffsetDateTime) -> Result<SshKeysEdit, usize> {
    let mut dropped = 0;
    let mut present = false;
    let kept: Vec<&str> = segments(value)
        .into_iter()
        .filter(|seg| match parse_entry(seg.trim_end_matches('\n')) {
            Some(e) if e.user == user && e.blob == blob => {
                present = true;
                true
            }
            Some(e) if e.user == user && e.expired(now) => {
                dropped += 1;
                false
            }
            _ => true,
        })
        .collect();
    let mut out = join(value, &kept);
    if !present {
        if out.is_empty() {
            out.push_str(line);
        } else if out.ends_with('\n') {
            out.push_str(line);
            out.push('\n');
        } else {
            out.push('\n');
            out.push_str(line);
        }
    }
    if out.len() > MAX_VALUE_BYTES {
        return Err(out.len());
    }
    Ok(SshKeysEdit {
        changed: out != value,
        value: out,
        dropped_expired: dropped,
    })
}

/// `value` without `user`'s entry for `blob` and without `user`'s expired entries.
pub fn without_entry(value: &str, user: &str, blob: &str, now: OffsetDateTime) -> SshKeysEdit {
    let mut dropped = 0;
    let kept: Vec<&str> = segments(value)
        .into_iter()
        .filter(|seg| match parse_entry(seg.trim_end_matches('\n')) {
            Some(e) if e.user == user && e.blob == blob => false,
            Some(e) if e.user == user && e.expired(now) => {
                dropped += 1;
                false
            }
            _ => true,
        })
        .collect();
    let out = join(value, &kept);
    SshKeysEdit {
        changed: out != value,
        value: out,
        dropped_expired: dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"kube-ha:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOURS google-ssh {"userName":"kube-ha","expireOn":"2030-01-01T00:00:00Z"}"#;
    const BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOURS";
    const STALE: &str = r#"kube-ha:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISTALE google-ssh {"userName":"kube-ha","expireOn":"2020-01-01T00:00:00+0000"}"#;
    const ALICE: &str = "alice:ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCalice alice@laptop";

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-01T00:00:00Z", &Rfc3339).expect("time")
    }

    #[test]
    fn entries_parse_as_the_guest_agent_reads_them() {
        let t = |s: &str| OffsetDateTime::parse(s, &Rfc3339).expect("time");
        type Parsed = Option<(&'static str, &'static str, &'static str, Expiry)>;
        let rows: &[(&str, Parsed)] = &[
            (
                "alice:ssh-rsa AAAA alice",
                Some(("alice", "ssh-rsa", "AAAA", Expiry::Never)),
            ),
            ("alice:ssh-rsa AAAA", Some(("alice", "ssh-rsa", "AAAA", Expiry::Never))),
            (
                r#"bob:no-pty,from="10.0.0.1" ssh-ed25519 BBBB bob"#,
                Some(("bob", "ssh-ed25519", "BBBB", Expiry::Never)),
            ),
            (
                r#"c:ecdsa-sha2-nistp256 CCCC google-ssh {"userName":"c@x.com","expireOn":"2027-01-02T03:04:05Z"}"#,
                Some((
                    "c",
                    "ecdsa-sha2-nistp256",
                    "CCCC",
                    Expiry::At(t("2027-01-02T03:04:05Z")),
                )),
            ),
            (
                r#"d:ssh-ed25519 DDDD google-ssh {"userName":"d","expireOn":"2027-01-02T03:04:05+0100"}"#,
                Some(("d", "ssh-ed25519", "DDDD", Expiry::At(t("2027-01-02T02:04:05Z")))),
            ),
            (
                r#"e:ssh-ed25519 EEEE google-ssh {"username":"e","EXPIREON":"2027-01-02T03:04:05.5-02:00"}"#,
                Some(("e", "ssh-ed25519", "EEEE", Expiry::At(t("2027-01-02T05:04:05.5Z")))),
            ),
            (
                "f:ssh-ed25519 FFFF google-ssh",
                Some(("f", "ssh-ed25519", "FFFF", Expiry::Invalid)),
            ),
            (
                r#"g:ssh-ed25519 GGGG google-ssh {"userName":"g","expireOn":"tomorrow"}"#,
                Some(("g", "ssh-ed25519", "GGGG", Expiry::Invalid)),
            ),
            (
                r#"h:ssh-ed25519 HHHH google-ssh {"userName":"h"}"#,
                Some(("h", "ssh-ed25519", "HHHH", Expiry::Invalid)),
            ),
            (
                "i:ssh-ed25519 IIII\r",
                Some(("i", "ssh-ed25519", "IIII", Expiry::Never)),
            ),
            ("# a comment", None),
            ("", None),
            ("   ", None),
            ("ssh-rsa AAAA no-user", None),
            ("j:not-a-key", None),
            ("bad user:ssh-rsa AAAA", None),
        ];
        for (line, want) in rows {
            let got = parse_entry(line).map(|e| (e.user, e.key_type, e.blob, e.expiry));
            assert_eq!(got, want.clone(), "{line:?}");
        }
    }

    #[test]
    fn adding_then_removing_our_entry_gives_every_value_back_byte_for_byte() {
        let values = [
            "",
            ALICE,
            &format!("{ALICE}\n"),
            &format!("{ALICE}\r\n"),
            &format!("# keep me\n\n{ALICE}\r\nlegacy-user:ssh-dss AAAAB3NzaC1kc3M= old\n   \n"),
            &format!("{ALICE}\nnot a key at all\nkube-ha:ssh-ed25519 HANDWRITTEN no-expiry"),
            &format!(
                "x:ssh-ed25519 XXXX google-ssh {{\"userName\":\"x\",\"expireOn\":\"2020-01-01T00:00:00Z\"}}\n{ALICE}"
            ),
        ];
        for before in values {
            let added = with_entry(before, "kube-ha", BLOB, OURS, now()).expect("fits");
            assert!(added.changed);
            assert!(added.value.contains(OURS), "{:?}", added.value);
            assert_eq!(added.value.ends_with('\n'), before.ends_with('\n'), "{before:?}");
            assert!(
                added.value.starts_with(before.trim_end_matches('\n')),
                "{before:?} → {:?}",
                added.value
            );
            let again = with_entry(&added.value, "kube-ha", BLOB, OURS, now()).expect("fits");
            assert!(!again.changed, "adding twice writes once: {before:?}");
            let removed = without_entry(&added.value, "kube-ha", BLOB, now());
            assert_eq!(removed.value, before, "round trip of {before:?}");
            assert_eq!(removed.dropped_expired, 0);
        }
    }

    #[test]
    fn expired_entries_of_killed_runs_go_and_nobody_elses_do() {
        let before = format!(
            "{ALICE}\n{STALE}\nkube-ha:ssh-ed25519 INVALID google-ssh {{\"expireOn\":\"soon\"}}\nalice:ssh-ed25519 OLD google-ssh {{\"userName\":\"alice\",\"expireOn\":\"2020-01-01T00:00:00Z\"}}\n"
        );
        let added = with_entry(&before, "kube-ha", BLOB, OURS, now()).expect("fits");
        assert_eq!(added.dropped_expired, 1);
        assert_eq!(
            added.value,
            format!(
                "{ALICE}\nkube-ha:ssh-ed25519 INVALID google-ssh {{\"expireOn\":\"soon\"}}\nalice:ssh-ed25519 OLD google-ssh {{\"userName\":\"alice\",\"expireOn\":\"2020-01-01T00:00:00Z\"}}\n{OURS}\n"
            ),
            "a stale kube-ha entry goes; an unreadable one and other users' expired ones stay"
        );
        let cleaned = without_entry(&format!("{ALICE}\n{STALE}"), "kube-ha", BLOB, now());
        assert_eq!((cleaned.value.as_str(), cleaned.dropped_expired), (ALICE, 1));
        let untouched = without_entry(ALICE, "kube-ha", BLOB, now());
        assert!(!untouched.changed);
    }

    #[test]
    fn a_value_over_gces_limit_is_refused_with_its_size() {
        let big = format!("{ALICE} {}", "x".repeat(MAX_VALUE_BYTES - ALICE.len() - 10));
        match with_entry(&big, "kube-ha", BLOB, OURS, now()) {
            Err(bytes) => assert_eq!(bytes, big.len() + 1 + OURS.len()),
            Ok(e) => panic!("accepted {} bytes", e.value.len()),
        }
        let exact = "y".repeat(MAX_VALUE_BYTES - OURS.len() - 1);
        assert_eq!(
            with_entry(&exact, "kube-ha", BLOB, OURS, now()).map(|e| e.value.len()),
            Ok(MAX_VALUE_BYTES)
        );
    }
}
