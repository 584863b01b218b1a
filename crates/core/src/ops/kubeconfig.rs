//! The admin kubeconfig `up` writes (SPEC §4.1): server `https://<static IP>`, the cluster CA,
//! an admin client certificate; mode 0600, written atomically (temp file + rename).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::pki::CertPair;

/// Does the kubeconfig at `path` exist and point at `https://<ip>`?
pub fn points_at(path: &Path, ip: Ipv4Addr) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains(&format!("server: https://{ip}\n")))
}

/// The kubeconfig text.
pub fn render(context: &str, ip: Ipv4Addr, ca_pem: &str, admin: &CertPair) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: https://{ip}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {context}-admin\n  user:\n    client-certificate-data: {cert}\n    \
         client-key-data: {key}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}-admin\n\
         current-context: {context}\n",
        ca = B64.encode(ca_pem),
        cert = B64.encode(&admin.cert_pem),
        key = B64.encode(&admin.key_pem),
    )
}

/// Write `text` to `path` with mode 0600, atomically.
pub fn write(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("kubeconfig"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
