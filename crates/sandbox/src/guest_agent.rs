//! The guest agent stand-in of every VM, with GCE's rules (GoogleCloudPlatform/guest-agent, as
//! read in reference/access-path.md §1b). It runs inside the VM (its sockets are the VM's) and
//! talks only to the VM's metadata server, as the real agent does:
//!
//! - it long-polls `computeMetadata/v1/?recursive=true&wait_for_change=true` with a short hang
//!   ([`TICK`]), so a key is installed as soon as it reaches the metadata server and an expired
//!   one is removed within a tick;
//! - keys ([`desired_keys`]): the instance's `ssh-keys` and legacy `sshKeys`, plus the project's
//!   unless the instance has `block-project-ssh-keys` TRUE or a legacy `sshKeys`; a line is
//!   `user:<authorized_keys line>`; a key whose comment is `google-ssh {"userName","expireOn"}`
//!   expires at `expireOn` (RFC 3339 or `…T…-0700`; unparsable: dropped); bad lines are skipped;
//! - accounts ([`apply_accounts`]): a user missing from the VM's own `/etc/passwd` is created
//!   (home under `/home`, not locked: `*` in shadow), and `~/.ssh/authorized_keys` (0700/0600,
//!   owned by the user) gets one `# Added by Google` line per key; keys the agent no longer sees
//!   are removed, lines the user added are kept, the account stays. Users whose home is not the
//!   VM's own `/home` (root, system users) are left alone: their homes are the machine's;
//! - host keys ([`generate_host_keys`]): made at first boot, and published as guest attributes
//!   `hostkeys/<type>` (the metadata server refuses unless `enable-guest-attributes` is TRUE).
//!
//! Faults ([`GuestFaults`]): changes applied late, never applied, host keys regenerated without
//! publishing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::files::{VmFiles, replace_file};
use super::metadata::{self, GuestView};
use super::ns;

/// How often the agent wakes up without a change (expiry is checked then).
pub const TICK: Duration = Duration::from_secs(2);

/// The host key types made at first boot. (GCE's agent also makes RSA; its 3072-bit key costs a
/// noticeable share of a 2-core machine per VM and no client here needs it.)
const HOST_KEY_TYPES: [&str; 2] = ["ed25519", "ecdsa"];

/// The first uid (and gid) of users the agent creates.
const FIRST_UID: u32 = 1000;

/// The marker line before each key the agent manages.
const GOOGLE_MARK: &str = "# Added by Google";

/// Guest faults in force on one VM (set through the emulator's `/_emulator/faults`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestFaults {
    /// Apply `ssh-keys` changes this much later.
    pub late: Option<Duration>,
    /// Do not apply `ssh-keys` changes at all.
    pub never: bool,
    /// Bumped by each "host key changed": the agent regenerates the keys once per bump.
    pub host_key_generation: u64,
}

impl GuestFaults {
    /// Apply one fault.
    pub fn apply(&mut self, fault: kube_ha_emulator::GuestFault) {
        use kube_ha_emulator::GuestFault as F;
        match fault {
            F::SshKeysLate { delay } => self.late = Some(delay),
            F::SshKeysNever => self.never = true,
            F::HostKeyChanged => self.host_key_generation += 1,
            F::Clear => {
                self.late = None;
                self.never = false;
            }
        }
    }
}

fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// user → authorized_keys lines, as the guest agent derives them from metadata (module doc).
pub fn desired_keys(view: &GuestView, now: OffsetDateTime) -> BTreeMap<String, Vec<String>> {
    let instance_keys = view.instance_attribute("ssh-keys");
    let legacy = view.instance_attribute("sshKeys");
    let block = is_true(view.instance_attribute("block-project-ssh-keys")) || legacy.is_some();
    let mut lines: Vec<&str> = Vec::new();
    for value in [instance_keys, legacy].into_iter().flatten() {
        lines.extend(value.split('\n'));
    }
    if !block {
        for value in [view.project_attribute("ssh-keys"), view.project_attribute("sshKeys")]
            .into_iter()
            .flatten()
        {
            lines.extend(value.split('\n'));
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let Some((user, key)) = parse_line(line) else { continue };
        if expired(&key, now) {
            continue;
        }
        let keys = out.entry(user).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    out
}

/// `user:<key line>` → (user, key line); `None` for a line the agent skips.
fn parse_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (user, key) = line.split_once(':')?;
    let key = key.trim();
    if !valid_user(user) || key_blob(key).is_none() {
        return None;
    }
    Some((user.to_string(), key.to_string()))
}

/// A user name the sandbox can create: what `useradd` accepts, without the corner cases.
fn valid_user(user: &str) -> bool {
    let mut chars = user.chars();
    user.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.')
}

/// The key type, blob and comment of an authorized_keys line (options before the type allowed).
fn key_blob(key: &str) -> Option<(&str, &str, String)> {
    let words: Vec<&str> = key.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))?;
    let blob = words.get(at + 1)?;
    Some((words[at], blob, words[at + 2..].join(" ")))
}

/// Whether a key's `google-ssh` expiry has passed or cannot be read (the agent drops both).
fn expired(key: &str, now: OffsetDateTime) -> bool {
    let Some((_, _, comment)) = key_blob(key) else {
        return true;
    };
    let Some(json) = comment.strip_prefix("google-ssh") else {
        return false;
    };
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json.trim()) else {
        return true;
    };
    // Go's JSON decoding matches field names case-insensitively.
    let expire = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("expireOn"))
        .and_then(|(_, v)| v.as_str());
    match expire.and_then(parse_expiry) {
        Some(at) => at <= now,
        None => true,
    }
}

/// RFC 3339, or Go's `2006-01-02T15:04:05-0700`.
fn parse_expiry(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(text, &format).ok()
}

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// The next free id ≥ [`FIRST_UID`] among `used`.
fn next_id(used: &BTreeSet<u32>) -> u32 {
    (FIRST_UID..).find(|id| !used.contains(id)).unwrap_or(FIRST_UID)
}

/// The ids in use in a passwd- or group-style file (third field).
fn ids(text: &str) -> BTreeSet<u32> {
    text.lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect()
}

/// Add `user` to the VM's passwd, group and shadow (as `useradd -m -p '*'` would, with a group of
/// its own); its (uid, gid).
fn add_account(files: &VmFiles, user: &str) -> Result<(u32, u32)> {
    let etc = files.etc();
    let read = |name: &str| fs::read_to_string(etc.join(name)).with_context(|| format!("reading the VM's /etc/{name}"));
    let (passwd, group, shadow) = (read("passwd")?, read("group")?, read("shadow").unwrap_or_default());
    let mut used: BTreeSet<u32> = ids(&passwd);
    used.extend(ids(&group));
    let id = next_id(&used);
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let days = OffsetDateTime::now_utc().unix_timestamp() / 86_400;
    let append = |text: &str, line: String| {
        let mut t = text.to_string();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(&line);
        t
    };
    replace_file(&etc.join("group"), &append(&group, format!("{user}:x:{id}:\n")), 0o644)?;
    replace_file(
        &etc.join("shadow"),
        &append(&shadow, format!("{user}:*:{days}:0:99999:7:::\n")),
        0o640,
    )?;
    replace_file(
        &etc.join("passwd"),
        &append(&passwd, format!("{user}:x:{id}:{id}::/home/{user}:{shell}\n")),
        0o644,
    )?;
    Ok((id, id))
}

/// `authorized_keys` with the Google-managed keys replaced by `keys` (the user's own lines kept).
fn merge_authorized_keys(current: &str, keys: &[String]) -> String {
    let mut out = String::new();
    let mut skip_next = false;
    for line in current.lines() {
        if skip_next {
            skip_next = false;
            continue;
        }
        if line.trim() == GOOGLE_MARK {
            skip_next = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for key in keys {
        out.push_str(GOOGLE_MARK);
        out.push('\n');
        out.push_str(key);
        out.push('\n');
    }
    out
}

/// Make the VM's accounts match `desired` (module doc); `managed` is every user the agent has
/// written keys for, kept across calls. Blocking.
pub fn apply_accounts(
    files: &VmFiles,
    desired: &BTreeMap<String, Vec<String>>,
    managed: &mut BTreeSet<String>,
) -> Result<()> {
    let users: BTreeSet<String> = desired.keys().chain(managed.iter()).cloned().collect();
    for user in users {
        let keys = desired.get(&user).cloned().unwrap_or_default();
        let passwd = fs::read_to_string(files.etc().join("passwd")).context("reading the VM's /etc/passwd")?;
        let entry = parse_passwd(&passwd).into_iter().find(|e| e.name == user);
        let (uid, gid) = match entry {
            Some(e) if e.home == format!("/home/{user}") => (e.uid, e.gid),
            Some(e) => {
                tracing::debug!(user, home = %e.home, "guest agent: not a user of the VM's own /home, left alone");
                continue;
            }
            None if keys.is_empty() => continue,
            None => add_account(files, &user)?,
        };
        let home = files.home().join(&user);
        let ssh = home.join(".ssh");
        for (dir, mode) in [(&home, 0o755), (&ssh, 0o700)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).with_context(|| format!("chown {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
        }
        let path = ssh.join("authorized_keys");
        let current = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let merged = merge_authorized_keys(&current, &keys);
        if merged != current || !path.exists() {
            // Written beside and renamed (as the agent does), owned by the user from the start.
            let tmp = ssh.join("authorized_keys.google");
            replace_file(&tmp, &merged, 0o600)?;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).with_context(|| format!("chown {}", tmp.display()))?;
            fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        }
        if keys.is_empty() {
            managed.remove(&user);
        } else {
            managed.insert(user);
        }
    }
    Ok(())
}

/// Make the VM's SSH host keys (replacing any) in its `/etc/ssh`; their (type, base64 blob) as
/// `hostkeys/<type>` publishes them. Blocking.
pub fn generate_host_keys(files: &VmFiles, hostname: &str) -> Result<Vec<(String, String)>> {
    let mut published = Vec::new();
    for kind in HOST_KEY_TYPES {
        let key = files.ssh().join(format!("ssh_host_{kind}_key"));
        let public = key.with_extension("pub");
        for old in [&key, &public] {
            match fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", old.display())),
            }
        }
        let path = key.to_string_lossy().into_owned();
        let comment = format!("root@{hostname}");
        ns::run(
            None,
            "ssh-keygen",
            &["-q", "-t", kind, "-N", "", "-C", &comment, "-f", &path],
            None,
        )
        .with_context(|| format!("making the {kind} host key"))?;
        let line = fs::read_to_string(&public).with_context(|| format!("reading {}", public.display()))?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(t), Some(blob)) => published.push((t.to_string(), blob.to_string())),
            _ => bail!("{} is not a public key", public.display()),
        }
    }
    Ok(published)
}

/// The agent's view of the metadata server (from inside the VM).
struct MetadataClient {
    http: reqwest::Client,
    base: String,
}

impl MetadataClient {
    fn new() -> Result<MetadataClient> {
        Ok(MetadataClient {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(TICK + Duration::from_secs(10))
                .build()
                .context("the agent's HTTP client")?,
            base: format!("http://{}/computeMetadata/v1", metadata::ADDRESS),
        })
    }

    /// The whole tree (recursive JSON) and its ETag; waits for a change from `etag` up to `hang`.
    async fn poll(&self, etag: Option<&str>, hang: Duration) -> Result<(Value, String)> {
        let mut url = format!("{}/?recursive=true&alt=json", self.base);
        if let Some(tag) = etag {
            url.push_str(&format!(
                "&wait_for_change=true&last_etag={tag}&timeout_sec={}",
                hang.as_secs().max(1)
            ));
        }
        let reply = self
            .http
            .get(url)
            .header(metadata::FLAVOR, "Google")
            .send()
            .await?
            .error_for_status()?;
        let tag = reply
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((reply.json().await?, tag))
    }

    /// `PUT …/instance/guest-attributes/<namespace>/<key>`; false when refused (not enabled).
    async fn put_guest_attribute(&self, namespace: &str, key: &str, value: &str) -> Result<bool> {
        let url = format!("{}/instance/guest-attributes/{namespace}/{key}", self.base);
        let reply = self
            .http
            .put(url)
            .header(metadata::FLAVOR, "Google")
            .body(value.to_string())
            .send()
            .await?;
        Ok(reply.status().is_success())
    }
}

/// The keys desired by a recursive metadata document (the agent reads what the server serves).
fn desired_from_document(doc: &Value, now: OffsetDateTime) -> BTreeMap<String, Vec<String>> {
    let to_items = |attrs: &Value| -> Value {
        let items: Vec<Value> = attrs
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        serde_json::json!({"items": items})
    };
    let view = GuestView {
        instance: serde_json::json!({"metadata": to_items(&doc["instance"]["attributes"])}),
        project_metadata: to_items(&doc["project"]["attributes"]),
        ..GuestView::default()
    };
    desired_keys(&view, now)
}

/// The agent (module doc). Runs until its VM's runtime stops.
pub async fn run(files: VmFiles, hostname: String, mut faults: watch::Receiver<GuestFaults>) {
    let client = match MetadataClient::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(vm = %hostname, "guest agent: {e:#}");
            return;
        }
    };
    // First boot: host keys, published when guest attributes are enabled.
    let keys_files = files.clone();
    let name = hostname.clone();
    match tokio::task::spawn_blocking(move || generate_host_keys(&keys_files, &name)).await {
        Ok(Ok(keys)) => {
            for (kind, blob) in keys {
                match client.put_guest_attribute("hostkeys", &kind, &blob).await {
                    Ok(true) => tracing::debug!(vm = %hostname, kind, "guest agent: host key published"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(vm = %hostname, "guest agent: publishing the host key: {e:#}"),
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(vm = %hostname, "guest agent: host keys: {e:#}"),
        Err(e) => tracing::warn!(vm = %hostname, "guest agent: host keys: {e}"),
    }
    let mut host_key_generation = 0;
    let mut etag: Option<String> = None;
    let mut applied: Option<BTreeMap<String, Vec<String>>> = None;
    let mut managed = BTreeSet::new();
    loop {
        let doc = match client.poll(etag.as_deref(), TICK).await {
            Ok((doc, tag)) => {
                etag = Some(tag);
                doc
            }
            Err(e) => {
                tracing::debug!(vm = %hostname, "guest agent: metadata: {e:#}");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let current = faults.borrow_and_update().clone();
        if current.host_key_generation > host_key_generation {
            host_key_generation = current.host_key_generation;
            let (f, n) = (files.clone(), hostname.clone());
            match tokio::task::spawn_blocking(move || generate_host_keys(&f, &n)).await {
                Ok(Ok(_)) => {
                    tracing::info!(vm = %hostname, "guest agent: host keys regenerated (fault), not published")
                }
                Ok(Err(e)) => tracing::warn!(vm = %hostname, "guest agent: host keys: {e:#}"),
                Err(e) => tracing::warn!(vm = %hostname, "guest agent: host keys: {e}"),
            }
        }
        if current.never {
            continue;
        }
        let mut desired = desired_from_document(&doc, OffsetDateTime::now_utc());
        if applied.as_ref() == Some(&desired) {
            continue;
        }
        if let Some(late) = current.late {
            tokio::time::sleep(late).await;
            if faults.borrow().never {
                continue;
            }
            // What the server says after the delay (a later change may have landed meanwhile).
            if let Ok((doc, tag)) = client.poll(None, TICK).await {
                etag = Some(tag);
                desired = desired_from_document(&doc, OffsetDateTime::now_utc());
            }
        }
        let (f, d) = (files.clone(), desired.clone());
        let mut m = std::mem::take(&mut managed);
        let result = tokio::task::spawn_blocking(move || {
            let r = apply_accounts(&f, &d, &mut m);
            (r, m)
        })
        .await;
        match result {
            Ok((Ok(()), m)) => {
                managed = m;
                tracing::debug!(vm = %hostname, users = ?desired.keys().collect::<Vec<_>>(), "guest agent: accounts updated");
                applied = Some(desired);
            }
            Ok((Err(e), m)) => {
                managed = m;
                tracing::warn!(vm = %hostname, "guest agent: {e:#}");
            }
            Err(e) => tracing::warn!(vm = %hostname, "guest agent: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK";

    fn view(instance: &[(&str, &str)], project: &[(&str, &str)]) -> GuestView {
        let items = |kv: &[(&str, &str)]| json!({"items": kv.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()});
        GuestView {
            instance: json!({"metadata": items(instance)}),
            project_metadata: items(project),
            ..GuestView::default()
        }
    }

    fn users(v: &GuestView) -> Vec<(String, usize)> {
        desired_keys(v, datetime!(2026-12-01 12:00 UTC))
            .into_iter()
            .map(|(u, k)| (u, k.len()))
            .collect()
    }

    #[test]
    fn instance_and_project_keys_merge_unless_blocked() {
        let project = [("ssh-keys", "p:ssh-ed25519 AAAA1 p@x")];
        let both = view(&[("ssh-keys", "i:ssh-ed25519 AAAA2\n\ni:ssh-ed25519 AAAA3")], &project);
        assert_eq!(users(&both), vec![("i".into(), 2), ("p".into(), 1)]);
        let blocked = view(
            &[("ssh-keys", "i:ssh-ed25519 AAAA2"), ("block-project-ssh-keys", "TRUE")],
            &project,
        );
        assert_eq!(users(&blocked), vec![("i".into(), 1)]);
        let legacy = view(&[("sshKeys", "l:ssh-ed25519 AAAA4")], &project);
        assert_eq!(
            users(&legacy),
            vec![("l".into(), 1)],
            "legacy sshKeys blocks project keys"
        );
    }

    #[test]
    fn expiry_follows_google_ssh_and_bad_lines_are_skipped() {
        let line = |json: &str| format!("u:{KEY} google-ssh {json}");
        let cases = [
            (
                line(r#"{"userName":"u","expireOn":"2027-01-01T00:00:00+0000"}"#),
                1,
                "future, Go's -0700 form",
            ),
            (
                line(r#"{"userName":"u","expireOn":"2027-01-01T00:00:00Z"}"#),
                1,
                "future, RFC 3339",
            ),
            (
                line(r#"{"userName":"u","expireOn":"2026-01-01T00:00:00Z"}"#),
                0,
                "expired",
            ),
            (line(r#"{"userName":"u","expireOn":"tomorrow"}"#), 0, "unparsable"),
            (line(r#"{"userName":"u"}"#), 0, "no expiry in a google-ssh comment"),
            (format!("u:{KEY} google-ssh"), 0, "google-ssh without JSON"),
            (format!("u:{KEY} laptop"), 1, "another comment never expires"),
            (format!("u:no-prefix {KEY}"), 1, "options before the key"),
            ("no colon here".to_string(), 0, "no user"),
            (format!("Bad User:{KEY}"), 0, "user with a space"),
            ("u:not-a-key".to_string(), 0, "no key"),
        ];
        for (value, want, why) in cases {
            let v = view(&[("ssh-keys", &value)], &[]);
            let got = desired_keys(&v, datetime!(2026-12-01 12:00 UTC))
                .get("u")
                .map_or(0, Vec::len);
            assert_eq!(got, want, "{why}: {value}");
        }
    }

    #[test]
    fn google_keys_are_replaced_and_the_users_own_kept() {
        let current = format!("ssh-rsa AAAAmine me@laptop\n{GOOGLE_MARK}\n{KEY} old\n");
        let merged = merge_authorized_keys(&current, &[format!("{KEY} new")]);
        assert_eq!(
            merged,
            format!("ssh-rsa AAAAmine me@laptop\n{GOOGLE_MARK}\n{KEY} new\n")
        );
        assert_eq!(merge_authorized_keys(&merged, &[]), "ssh-rsa AAAAmine me@laptop\n");
    }

    #[test]
    fn accounts_are_created_in_the_vms_own_files_and_keys_removed_when_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = VmFiles::new(dir.path());
        fs::create_dir_all(files.etc()).expect("etc");
        fs::create_dir_all(files.home()).expect("home");
        fs::write(
            files.etc().join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(files.etc().join("group"), "root:x:0:\nalice:x:1000:\n").expect("group");
        fs::write(files.etc().join("shadow"), "root:*:1:0:99999:7:::\n").expect("shadow");
        let mut managed = BTreeSet::new();
        let desired: BTreeMap<String, Vec<String>> = [
            ("bob".to_string(), vec![format!("{KEY} bob")]),
            ("root".to_string(), vec![format!("{KEY} root")]),
        ]
        .into();
        apply_accounts(&files, &desired, &mut managed).expect("apply");
        let passwd = fs::read_to_string(files.etc().join("passwd")).expect("passwd");
        assert!(passwd.contains("bob:x:1001:1001::/home/bob:"), "{passwd}");
        let shadow = fs::read_to_string(files.etc().join("shadow")).expect("shadow");
        assert!(shadow.lines().any(|l| l.starts_with("bob:*:")), "not locked: {shadow}");
        let keys = files.home().join("bob/.ssh/authorized_keys");
        assert_eq!(
            fs::read_to_string(&keys).expect("keys"),
            format!("{GOOGLE_MARK}\n{KEY} bob\n")
        );
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&keys), 0o600);
        assert_eq!(mode(&files.home().join("bob/.ssh")), 0o700);
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(fs::metadata(&keys).expect("stat").uid(), 1001);
        assert!(
            !dir.path().join("root").exists(),
            "root's home is the machine's: left alone"
        );
        assert_eq!(managed, ["bob".to_string()].into());

        apply_accounts(&files, &BTreeMap::new(), &mut managed).expect("apply");
        assert_eq!(
            fs::read_to_string(&keys).expect("keys"),
            "",
            "keys no longer in metadata are removed"
        );
        assert!(
            fs::read_to_string(files.etc().join("passwd"))
                .expect("passwd")
                .contains("bob:"),
            "the account stays"
        );
    }
}
