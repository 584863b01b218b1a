//! The admin kubeconfig `up` writes (SPEC §4.1), merged the way kube-up merged it with
//! `kubectl config set-cluster/set-credentials/set-context/use-context`: this cluster's cluster,
//! user and context (all named `${PROJECT}_${KUBE_GCE_INSTANCE_PREFIX}`) are added or replaced,
//! every other entry and setting of the file is kept, and a teardown removes only those three.
//!
//! Writes are atomic (a temp file in the same directory, then rename) and keep the file's mode
//! (a new file gets 0600: it holds an admin key); a symlinked kubeconfig is written through the
//! link. The file is parsed as generic YAML, so fields kube-ha does not know survive untouched.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_yaml_ng::{Mapping, Value};

use crate::pki::CertPair;

/// The three lists a kubeconfig keeps named entries in, with each entry's payload key.
const LISTS: [(&str, &str); 3] = [("clusters", "cluster"), ("users", "user"), ("contexts", "context")];

/// What a kubeconfig file holds of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Its cluster, user and context exist, and the cluster's server is `https://<static IP>`.
    pub complete: bool,
    /// Any of its entries exist.
    pub has_entries: bool,
    /// The file exists but cannot be merged into (unreadable, not YAML, not a kubeconfig).
    pub error: Option<String>,
}

/// Look at the kubeconfig at `path` for the entries named `context`.
pub fn inspect(path: &Path, context: &str, static_ip: Option<Ipv4Addr>) -> Inspection {
    let doc = match read(path) {
        Ok(doc) => doc,
        Err(e) => {
            return Inspection {
                error: Some(format!("{e:#}")),
                ..Default::default()
            };
        }
    };
    let found: Vec<Option<&Value>> = LISTS.iter().map(|(list, _)| entry(&doc, list, context)).collect();
    let server = found[0]
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("server"))
        .and_then(Value::as_str);
    Inspection {
        complete: found.iter().all(Option::is_some)
            && static_ip.is_some_and(|ip| server == Some(format!("https://{ip}").as_str())),
        has_entries: found.iter().any(Option::is_some),
        error: None,
    }
}

/// Add or replace this cluster's cluster, user and context, and make the context current.
pub fn merge(path: &Path, context: &str, ip: Ipv4Addr, ca_pem: &str, admin: &CertPair) -> Result<()> {
    let mut doc = read(path)?;
    let cluster = mapping([
        ("certificate-authority-data", Value::from(B64.encode(ca_pem))),
        ("server", Value::from(format!("https://{ip}"))),
    ]);
    let user = mapping([
        ("client-certificate-data", Value::from(B64.encode(&admin.cert_pem))),
        ("client-key-data", Value::from(B64.encode(&admin.key_pem))),
    ]);
    let ctx = mapping([("cluster", Value::from(context)), ("user", Value::from(context))]);
    for ((list, key), payload) in LISTS.iter().zip([cluster, user, ctx]) {
        upsert(&mut doc, list, context, key, payload)?;
    }
    doc.insert("current-context".into(), Value::from(context));
    write(path, &doc)
}

/// Remove this cluster's entries (teardown); `false` when there were none (or no file).
pub fn remove(path: &Path, context: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read(path)?;
    let mut removed = false;
    for (list, _) in LISTS {
        if let Some(Value::Sequence(items)) = doc.get_mut(list) {
            let before = items.len();
            items.retain(|i| name_of(i) != Some(context));
            removed |= items.len() != before;
        }
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(context) {
        doc.insert("current-context".into(), Value::from(""));
        removed = true;
    }
    if removed {
        write(path, &doc)?;
    }
    Ok(removed)
}

fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

fn name_of(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}

fn entry<'a>(doc: &'a Mapping, list: &str, name: &str) -> Option<&'a Value> {
    doc.get(list)?.as_sequence()?.iter().find(|i| name_of(i) == Some(name))
}

fn upsert(doc: &mut Mapping, list: &str, name: &str, key: &str, payload: Value) -> Result<()> {
    let item = mapping([("name", Value::from(name)), (key, payload)]);
    let items = doc.entry(Value::from(list)).or_insert(Value::Sequence(Vec::new()));
    match items {
        Value::Null => *items = Value::Sequence(vec![item]),
        Value::Sequence(items) => match items.iter().position(|i| name_of(i) == Some(name)) {
            Some(i) => items[i] = item,
            None => items.push(item),
        },
        _ => bail!("its {list} is not a list"),
    }
    Ok(())
}

/// The file as a YAML mapping: an empty kubeconfig when it does not exist or is empty.
fn read(path: &Path) -> Result<Mapping> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if text.trim().is_empty() {
        let mut empty = Mapping::new();
        empty.insert("apiVersion".into(), "v1".into());
        empty.insert("kind".into(), "Config".into());
        empty.insert("preferences".into(), Value::Mapping(Mapping::new()));
        return Ok(empty);
    }
    match serde_yaml_ng::from_str::<Value>(&text).with_context(|| format!("{} is not YAML", path.display()))? {
        Value::Mapping(m) if m.get("kind").is_none_or(|k| k.as_str() == Some("Config")) => Ok(m),
        _ => bail!("{} is not a kubeconfig (kind: Config)", path.display()),
    }
}

/// Where writing `path` really goes: through a symlink to its target.
fn target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Write `doc` to `path` atomically, keeping the file's mode (0600 for a new file).
fn write(path: &Path, doc: &Mapping) -> Result<()> {
    let path = target(path);
    let text = serde_yaml_ng::to_string(doc).context("cannot render the kubeconfig")?;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("kubeconfig"),
        std::process::id()
    ));
    let written = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // The mode the file had (umask does not apply to set_permissions).
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> CertPair {
        CertPair {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        }
    }

    const OTHER: &str = "apiVersion: v1
kind: Config
preferences:
  colors: true
clusters:
- name: other
  cluster:
    server: https://10.9.9.9
users:
- name: other
  user:
    token: secret
contexts:
- name: other
  context:
    cluster: other
    user: other
current-context: other
";

    #[test]
    fn merging_keeps_other_entries_and_replaces_only_ours() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config");
        std::fs::write(&path, OTHER).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let ip = Ipv4Addr::new(127, 9, 0, 1);
        merge(&path, "p_k", ip, "CA", &admin()).expect("merge");
        merge(&path, "p_k", ip, "CA", &admin()).expect("merge again replaces");
        let doc = Value::Mapping(read(&path).expect("read"));
        for (list, _) in LISTS {
            let names: Vec<&str> = doc[list]
                .as_sequence()
                .expect("list")
                .iter()
                .filter_map(name_of)
                .collect();
            assert_eq!(names, ["other", "p_k"], "{list}");
        }
        assert_eq!(doc["current-context"].as_str(), Some("p_k"));
        assert_eq!(
            doc["preferences"]["colors"].as_bool(),
            Some(true),
            "unknown fields survive"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the file's mode is kept");
        assert!(inspect(&path, "p_k", Some(ip)).complete);
        assert!(!inspect(&path, "p_k", Some(Ipv4Addr::new(1, 2, 3, 4))).complete);

        assert!(remove(&path, "p_k").expect("remove"));
        assert!(!remove(&path, "p_k").expect("again"), "nothing left to remove");
        let doc = Value::Mapping(read(&path).expect("read"));
        assert_eq!(doc["clusters"].as_sequence().map(Vec::len), Some(1));
        assert_eq!(doc["current-context"].as_str(), Some(""));
        assert!(!inspect(&path, "p_k", Some(ip)).has_entries);
    }

    #[test]
    fn a_new_file_is_private_and_a_broken_one_is_reported_not_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("new");
        merge(&path, "p_k", Ipv4Addr::LOCALHOST, "CA", &admin()).expect("merge");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let broken = dir.path().join("broken");
        std::fs::write(&broken, "clusters: [unclosed").expect("write");
        assert!(inspect(&broken, "p_k", None).error.is_some());
        assert!(merge(&broken, "p_k", Ipv4Addr::LOCALHOST, "CA", &admin()).is_err());
        assert_eq!(std::fs::read_to_string(&broken).expect("read"), "clusters: [unclosed");
    }

    #[test]
    fn a_symlinked_kubeconfig_is_written_through_the_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let real = dir.path().join("real");
        std::fs::write(&real, OTHER).expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        merge(&link, "p_k", Ipv4Addr::LOCALHOST, "CA", &admin()).expect("merge");
        assert!(std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink());
        assert!(inspect(&real, "p_k", Some(Ipv4Addr::LOCALHOST)).complete);
    }
}
