//! The known-hosts file where host keys are pinned on first use, in OpenSSH's format and gcloud's
//! convention: `~/.ssh/google_compute_known_hosts`, one `compute.<instance id> <type> <base64>`
//! line per key, unhashed (`HashKnownHosts=no`), so `ssh -o HostKeyAlias=compute.<id>
//! -o UserKnownHostsFile=…`, gcloud and kube-ha all read and write the same pins.
//!
//! Reading follows OpenSSH's rules for the lines that concern one alias: comma-separated host
//! patterns with `*`/`?` wildcards and `!` negation, case-insensitive; hashed `|1|salt|hash`
//! entries (Debian's default `HashKnownHosts yes` writes those); `@revoked` keys; `@cert-authority`
//! lines ignored (kube-ha accepts no host certificates); unreadable lines skipped, as OpenSSH does.
//! Parsing and editing are pure; [`KnownHosts`] does the file I/O.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use russh::keys::ssh_key::PublicKey;

use super::SshError;

/// What a known-hosts file says about one alias.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    /// Keys accepted for it.
    pub keys: Vec<PublicKey>,
    /// Keys marked `@revoked` (for it or for everyone).
    pub revoked: Vec<PublicKey>,
}

/// OpenSSH's `match_pattern`: `*` any run, `?` any one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => glob(rest, text) || (!text.is_empty() && glob(pattern, &text[1..])),
        (Some((b'?', rest)), Some((_, t))) => glob(rest, t),
        (Some((p, rest)), Some((c, t))) if p.eq_ignore_ascii_case(c) => glob(rest, t),
        _ => false,
    }
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, host))`.
fn hashed_matches(entry: &str, host: &str) -> bool {
    let mut parts = entry.strip_prefix("|1|").unwrap_or_default().split('|');
    let (Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else {
        return false;
    };
    match Hmac::<sha1::Sha1>::new_from_slice(&salt) {
        Ok(mac) => mac.chain_update(host.as_bytes()).verify_slice(&hash).is_ok(),
        Err(_) => false,
    }
}

/// OpenSSH's host-field match: a negated pattern that matches rules the line out, else any
/// positive match counts.
fn hosts_match(field: &str, host: &str) -> bool {
    if field.starts_with("|1|") {
        return hashed_matches(field, host);
    }
    let mut matched = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), host.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), host.as_bytes()),
        }
    }
    matched
}

/// One line's marker, host field and key, if it is a key line.
fn key_line(line: &str) -> Option<(Option<&str>, &str, PublicKey)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let first = fields.next()?;
    let (marker, hosts) = match first.strip_prefix('@') {
        Some(m) => (Some(m), fields.next()?),
        None => (None, first),
    };
    let (key_type, blob) = (fields.next()?, fields.next()?);
    let key = PublicKey::from_openssh(&format!("{key_type} {blob}")).ok()?;
    Some((marker, hosts, key))
}

/// The keys pinned (and revoked) for `alias` in known-hosts `text`.
pub fn pins_for(text: &str, alias: &str) -> Pins {
    let mut pins = Pins::default();
    for (marker, hosts, key) in text.lines().filter_map(key_line) {
        if !hosts_match(hosts, alias) {
            continue;
        }
        match marker {
            None => pins.keys.push(key),
            Some("revoked") => pins.revoked.push(key),
            Some(_) => {}
        }
    }
    pins
}

/// `alias type base64`.
fn pin_line(alias: &str, key: &PublicKey) -> Result<String, SshError> {
    let mut bare = key.clone();
    bare.set_comment("");
    let text = bare
        .to_openssh()
        .map_err(|e| SshError::Key(format!("encoding a host key: {e}")))?;
    Ok(format!("{alias} {}", text.trim_end()))
}

/// `text` with every unmarked line whose host field is exactly `alias` (plain or hashed) replaced
/// by one line per key of `keys`, appended at the end; every other line kept as it was.
pub fn replace_pins(text: &str, alias: &str, keys: &[PublicKey]) -> Result<String, SshError> {
    let mut out = String::with_capacity(text.len() + 128 * keys.len());
    for segment in text.split_inclusive('\n') {
        let ours = matches!(
            key_line(segment),
            Some((None, hosts, _)) if hosts.eq_ignore_ascii_case(alias) || (hosts.starts_with("|1|") && hashed_matches(hosts, alias))
        );
        if !ours {
            out.push_str(segment);
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for key in keys {
        out.push_str(&pin_line(alias, key)?);
        out.push('\n');
    }
    Ok(out)
}

/// A known-hosts file (it need not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// gcloud's file, `$HOME/.ssh/google_compute_known_hosts`; `None` without a home directory.
    pub fn gcloud_default() -> Option<KnownHosts> {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| KnownHosts::new(Path::new(&h).join(".ssh").join("google_compute_known_hosts")))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> SshError {
        SshError::KnownHosts {
            file: self.path.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// The whole file; empty when it does not exist.
    fn read(&self) -> Result<String, SshError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.error("reading", e)),
        }
    }

    /// What the file says about `alias`.
    pub fn pins(&self, alias: &str) -> Result<Pins, SshError> {
        Ok(pins_for(&self.read()?, alias))
    }

    /// The parent directory, made 0700 if it did not exist (as `~/.ssh` is).
    fn ensure_dir(&self) -> Result<(), SshError> {
        use std::os::unix::fs::DirBuilderExt as _;
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.error("creating its directory", e)),
            _ => Ok(()),
        }
    }

    /// Append a pin for `alias` (first use). The file is created 0600 if missing.
    pub fn pin(&self, alias: &str, key: &PublicKey) -> Result<(), SshError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.ensure_dir()?;
        let existing = self.read()?;
        let mut line = String::new();
        if !existing.is_empty() && !existing.ends_with('\n') {
            line.push('\n');
        }
        line.push_str(&pin_line(alias, key)?);
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.error("opening for append", e))?;
        // One write of one short line with O_APPEND: concurrent runs pinning other hosts do not
        // interleave within a line.
        file.write_all(line.as_bytes()).map_err(|e| self.error("appending", e))
    }

    /// Make `keys` the only pins of `alias` (published keys win over old pins, as in gcloud). The
    /// file is rewritten atomically (a temp file renamed over it), other lines unchanged.
    pub fn replace(&self, alias: &str, keys: &[PublicKey]) -> Result<(), SshError> {
        use std::os::unix::fs::PermissionsExt as _;
        self.ensure_dir()?;
        let existing = self.read()?;
        let updated = replace_pins(&existing, alias, keys)?;
        if updated == existing {
            return Ok(());
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| self.error("creating a temp file", e))?;
        temp.write_all(updated.as_bytes())
            .map_err(|e| self.error("writing a temp file", e))?;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(|e| self.error("setting permissions", e))?;
        temp.persist(&self.path).map_err(|e| self.error("replacing", e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fixtures::{ED, ED2, key};

    #[test]
    fn pins_are_found_for_the_alias_the_way_openssh_matches_hosts() {
        // The hashed line is what Debian's ssh wrote for compute.42 (HashKnownHosts yes).
        let hashed = "|1|Pdgv7HtHd21ATbhtpkAihO7wG1E=|CwC90bc2SzLQfzEAM8HxxHPqMS4=";
        let rows: &[(String, &str, usize, usize)] = &[
            (format!("compute.42 {ED}\n"), "compute.42", 1, 0),
            (format!("compute.42 {ED}"), "compute.420", 0, 0),
            (format!("COMPUTE.42 {ED} comment here\n"), "compute.42", 1, 0),
            (format!("10.0.0.1,compute.42\t{ED}\n"), "compute.42", 1, 0),
            (format!("compute.* {ED}\n"), "compute.42", 1, 0),
            (format!("compute.4? {ED}\n"), "compute.42", 1, 0),
            (format!("compute.*,!compute.42 {ED}\n"), "compute.42", 0, 0),
            (format!("{hashed} {ED}\n"), "compute.42", 1, 0),
            (format!("{hashed} {ED}\n"), "compute.43", 0, 0),
            (format!("@revoked * {ED}\n"), "compute.42", 0, 1),
            (format!("@cert-authority compute.42 {ED}\n"), "compute.42", 0, 0),
            (format!("# compute.42 {ED}\n\n   \n"), "compute.42", 0, 0),
            (
                format!("compute.42 ssh-ed25519 not-base64\ncompute.42 {ED2}\ngarbage\n"),
                "compute.42",
                1,
                0,
            ),
        ];
        for (text, alias, keys, revoked) in rows {
            let pins = pins_for(text, alias);
            assert_eq!(
                (pins.keys.len(), pins.revoked.len()),
                (*keys, *revoked),
                "{text:?} for {alias}"
            );
        }
    }

    #[test]
    fn replacing_pins_keeps_other_lines_and_rewrites_only_the_alias() {
        let before = format!("# mine\nother.host {ED}\ncompute.42 {ED}\r\ncompute.42,extra {ED}\nlast {ED}");
        let after = replace_pins(&before, "compute.42", &[key(ED2)]).expect("replace");
        assert_eq!(
            after,
            format!("# mine\nother.host {ED}\ncompute.42,extra {ED}\nlast {ED}\ncompute.42 {ED2}\n")
        );
        assert_eq!(
            pins_for(&after, "compute.42").keys.len(),
            2,
            "a shared line is not ours to drop"
        );
        assert_eq!(
            replace_pins("", "compute.7", &[key(ED)]).expect("replace"),
            format!("compute.7 {ED}\n")
        );
    }

    #[test]
    fn the_file_is_created_private_and_appended_to() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = KnownHosts::new(dir.path().join("ssh").join("known"));
        assert_eq!(file.pins("compute.1").expect("missing file is empty"), Pins::default());
        file.pin("compute.1", &key(&format!("{ED} with a comment")))
            .expect("pin");
        std::fs::write(
            file.path(),
            format!("{}other {ED2}", std::fs::read_to_string(file.path()).expect("read")),
        )
        .expect("write");
        file.pin("compute.2", &key(ED2)).expect("pin");
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert_eq!(text, format!("compute.1 {ED}\nother {ED2}\ncompute.2 {ED2}\n"));
        let mode = std::fs::metadata(file.path()).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("ssh"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        file.replace("compute.1", &[key(ED2)]).expect("replace");
        assert_eq!(file.pins("compute.1").expect("pins").keys, vec![key(ED2)]);
        assert_eq!(file.pins("compute.2").expect("pins").keys, vec![key(ED2)]);
    }
}
