//! OpenSSH's own sshd on every VM's port 22: an acceptor in the VM's network namespace starts one
//! `sshd -i -e -f /etc/ssh/sshd_config` per connection, inside the VM's namespaces, with the
//! socket as its stdin and stdout (inetd mode: no long-lived daemon, so neither `MaxStartups`
//! nor `PerSourcePenalties` can drop a test's connection). sshd reads the VM's own
//! `/etc/passwd`, the keys the guest agent wrote and the host keys it made; forwarding reaches
//! the VM's own loopback.
//!
//! The configuration ([`config`]): public keys only, no root login, no PAM, `StrictModes` (the
//! agent writes homes and keys with the right owners and modes), `AllowTcpForwarding local` with
//! `PermitOpen` limited to the VM's etcd (`127.0.0.1:2379`, `:4002`) and API (`127.0.0.1:443`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use super::files::{SSHD_CONFIG, VmFiles};
use super::ns::{self, Namespaces};

/// Debian's sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The VM's sshd configuration.
pub fn config(penalties_known: bool) -> String {
    let mut text = String::from(
        "# kube-ha sandbox: one sshd -i per connection (see crates/sandbox/src/sshd.rs)\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         HostKey /etc/ssh/ssh_host_ecdsa_key\n\
         AuthorizedKeysFile .ssh/authorized_keys\n\
         StrictModes yes\n\
         UsePAM no\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         AllowTcpForwarding local\n\
         PermitOpen 127.0.0.1:2379 127.0.0.1:4002 127.0.0.1:443\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         UseDNS no\n\
         PrintMotd no\n\
         LogLevel VERBOSE\n",
    );
    if penalties_known {
        text.push_str("PerSourcePenalties no\n");
    }
    text
}

/// Whether this machine's sshd knows `PerSourcePenalties` (OpenSSH 9.8 and later).
pub fn knows_penalties() -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| {
        // `sshd -V` prints e.g. "OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL …" on stderr, exit 0.
        let out = Command::new(SSHD).arg("-V").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("OpenSSH_"))
            .and_then(|v| {
                let mut parts = v.split(|c: char| !c.is_ascii_digit());
                Some((parts.next()?.parse::<u32>().ok()?, parts.next()?.parse::<u32>().ok()?))
            });
        version.is_some_and(|v| v >= (9, 8))
    })
}

/// Write the VM's `/etc/ssh/sshd_config`.
pub fn write_config(files: &VmFiles) -> Result<()> {
    super::files::replace_file(&files.outside(SSHD_CONFIG), &config(knows_penalties()), 0o644)
}

/// Accept on the VM's `0.0.0.0:22` (call on the VM's runtime) and start one sshd per connection.
pub async fn serve(host: Arc<Namespaces>, log: PathBuf, vm: String) {
    let listener = match TcpListener::bind(("0.0.0.0", 22)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(vm, "sshd: cannot listen on :22: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(vm, "sshd: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (host, log, vm) = (host.clone(), log.clone(), vm.clone());
        // Forking is a round trip to the spawner thread: not on this runtime's only thread.
        let started = tokio::task::spawn_blocking(move || start(stream, &host, &log)).await;
        match started {
            Ok(Ok(child)) => {
                tokio::spawn(async move {
                    let _ = ns::wait_child(child).await;
                });
            }
            Ok(Err(e)) => tracing::warn!(vm, "sshd: {e:#}"),
            Err(e) => tracing::warn!(vm, "sshd: {e}"),
        }
    }
}

/// One `sshd -i` on `stream`.
fn start(stream: tokio::net::TcpStream, host: &Namespaces, log: &std::path::Path) -> Result<std::process::Child> {
    let stream = stream.into_std().context("the connection")?;
    // sshd expects a blocking socket.
    stream.set_nonblocking(false).context("the connection")?;
    let socket = OwnedFd::from(stream);
    let out = socket.try_clone().context("duplicating the connection")?;
    let log = ns::append_log(log)?;
    let mut command = Command::new(SSHD);
    command
        .args(["-i", "-e", "-f", SSHD_CONFIG])
        .stdin(Stdio::from(socket))
        .stdout(Stdio::from(out))
        .stderr(log);
    ns::spawn_in(command, host).context("starting sshd -i")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_is_key_only_and_forwards_only_to_the_vms_services() {
        let text = config(false);
        for line in [
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            "AllowTcpForwarding local",
            "PermitOpen 127.0.0.1:2379 127.0.0.1:4002 127.0.0.1:443",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}");
        }
        assert!(!text.contains("PerSourcePenalties"));
        assert!(config(true).contains("PerSourcePenalties no"));
    }
}
