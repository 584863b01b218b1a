//! SSH to the masters (SPEC §5, reference/access-path.md): on every kube-up master etcd listens
//! only on the VM's own `127.0.0.1` (main 2379 with mutual TLS, events 4002 plain HTTP), so kube-ha
//! reaches it the way kube-up did, over SSH, without gcloud.
//!
//! # Expected flow (one run)
//! 1. [`RunKey::generate`]: one ed25519 key per run, in memory only.
//! 2. Read-only checks that need no SSH: [`check_os_login`] on the instance and project metadata,
//!    [`published_host_keys`] from the instance's guest attributes.
//! 3. [`connect`]: TCP, SSH handshake, host key verified ([`HostKeys`]: published keys when there
//!    are any, else the pin under `compute.<instance id>` in the known-hosts file, else pinned now).
//!    The host key check is part of the handshake and comes **before** authentication, so a
//!    mismatch is found before the run has written anything.
//! 4. [`install_run_key`]: our `ssh-keys` entry into the instance's metadata (read-modify-write
//!    with the fingerprint, 412 retried; other lines kept byte for byte).
//! 5. [`Connection::login`]: authenticate, retried with fresh connections within a bound while
//!    the guest agent applies the key → a [`MasterLink`].
//! 6. [`MasterLink::etcd`]: a [`EtcdRoute`] per etcd port: the existing [`crate::etcd::EtcdClient`]
//!    over a private Unix socket whose every connection is a `direct-tcpip` channel to the
//!    master's `127.0.0.1:<port>`. One SSH connection per master serves every call.
//! 7. [`remove_run_key`] when the run ends (it also drops expired `kube-ha:` entries that killed
//!    runs left behind; `expireOn` is the backstop when even that never happens).
//!
//! # Layout
//! `key` (the run key and its metadata line), `ssh_keys` (pure editing of the `ssh-keys` value),
//! `rules` (pure: which metadata level counts, OS Login, guest attributes), `known_hosts` (pure
//! parsing and editing, plus the file), `host_keys` (the verdict: published, pinned, first use),
//! `metadata` (the GCE read-modify-write), `transport` (russh: connect, login, keepalives,
//! timeouts), `tunnel` (the Unix-socket forwards and the etcd routes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(test)]
mod fixtures;
mod host_keys;
mod key;
mod known_hosts;
mod metadata;
mod rules;
mod ssh_keys;
mod transport;
mod tunnel;

pub use host_keys::{HostKeySource, HostKeyVerdict, HostKeys, judge_host_key, parse_published_host_keys};
pub use key::RunKey;
pub use known_hosts::{KnownHosts, Pins, pins_for, replace_pins};
pub use metadata::{install_run_key, published_host_keys, remove_run_key};
pub use rules::{
    authorized_lines, check_os_login, go_bool, guest_attributes_enabled, metadata_value, os_login_enabled,
};
pub use ssh_keys::{Expiry, KeyEntry, MAX_VALUE_BYTES, SshKeysEdit, parse_entry, with_entry, without_entry};
pub use transport::{Connection, Handshakes, MasterLink, SshSettings, SshTarget, SshVia, connect};
pub use tunnel::{EtcdRoute, EtcdTls, Forward};

/// An SSH public key (host keys, the run key's public half): russh's `ssh-key` type.
pub use russh::keys::ssh_key::PublicKey;

/// Where the master's etcd listens, as seen from the master itself.
pub const LOOPBACK: &str = "127.0.0.1";

/// Which metadata level set OS Login (the instance's value wins over the project's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataLevel {
    /// The instance's own metadata.
    Instance,
    /// The project's common instance metadata.
    Project,
}

impl std::fmt::Display for MetadataLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetadataLevel::Instance => "instance",
            MetadataLevel::Project => "project",
        })
    }
}

/// A host key that matches neither the published keys nor the pins ([`SshError::HostKeyMismatch`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the SSH host key of instance {instance} (id {instance_id}) is {presented}, which does not match {}",
    match against {
        HostKeySource::Published => format!(
            "the host keys it published in its guest attributes ({}); someone may be intercepting the connection",
            expected.join(", ")
        ),
        HostKeySource::Pinned => format!(
            "the key pinned for {alias} in {} ({}); if the instance's host key changed on purpose, remove the pin with `ssh-keygen -R {alias} -f {}`",
            file.display(), expected.join(", "), file.display()
        ),
    }
)]
pub struct HostKeyMismatch {
    /// The instance name.
    pub instance: String,
    /// The instance id.
    pub instance_id: u64,
    /// `compute.<instance id>`.
    pub alias: String,
    /// The known-hosts file.
    pub file: PathBuf,
    /// Which source the presented key contradicts.
    pub against: HostKeySource,
    /// The presented key's fingerprint (`SHA256:…`, with its algorithm).
    pub presented: String,
    /// The fingerprints it was expected to match.
    pub expected: Vec<String>,
}

/// What can go wrong reaching a master over SSH, typed where callers branch.
///
/// [`SshError::is_unreachable`] is the class that counts as an unreachable etcd member (quorum
/// projection, preflight and rollback decide as for any dead member); [`SshError::HostKeyMismatch`]
/// and [`SshError::OsLogin`] are refusals (exit 2) the caller words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection was refused or timed out, the handshake did not finish in time, or an
    /// established connection died (keepalives unanswered).
    #[error("{instance} ({address}): unreachable over SSH: {what}: {message}")]
    Unreachable {
        /// The instance name.
        instance: String,
        /// Where we connected.
        address: SocketAddr,
        /// The phase (`connect`, `handshake`, `connection`).
        what: &'static str,
        /// What happened.
        message: String,
    },
    /// The host key the master presented is not the one published in its guest attributes or
    /// pinned in the known-hosts file. Never retried, never accepted.
    #[error(transparent)]
    HostKeyMismatch(Box<HostKeyMismatch>),
    /// The login never succeeded within the bound: the guest agent did not apply the key.
    #[error(
        "{instance}: the SSH login as {user} was refused for {within:?} ({attempts} attempts): the guest agent did not install the key from the instance's ssh-keys metadata"
    )]
    AuthNeverAccepted {
        /// The instance name.
        instance: String,
        /// The login user.
        user: String,
        /// The bound.
        within: Duration,
        /// How many logins were tried.
        attempts: u32,
    },
    /// sshd refused a `direct-tcpip` channel ("administratively prohibited": `AllowTcpForwarding`
    /// or `PermitOpen`).
    #[error("{instance}: sshd refused to forward to {host}:{port} (administratively prohibited)")]
    ForwardingRefused {
        /// The instance name.
        instance: String,
        /// The target host on the master.
        host: String,
        /// The target port.
        port: u16,
    },
    /// A channel could not be opened for another reason (nothing listens there, sshd out of
    /// resources, no answer in time).
    #[error("{instance}: cannot open a channel to {host}:{port}: {reason}")]
    ChannelOpen {
        /// The instance name.
        instance: String,
        /// The target host on the master.
        host: String,
        /// The target port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// OS Login is on for the instance: the guest agent ignores `ssh-keys`.
    #[error(
        "OS Login is enabled for instance {instance} ({METADATA}=TRUE in its {level} metadata); kube-ha does not support OS Login yet: set {METADATA}=FALSE in the instance's metadata (`gcloud compute instances add-metadata {instance} --zone {zone} --metadata {METADATA}=FALSE`)",
        METADATA = crate::names::METADATA_ENABLE_OSLOGIN
    )]
    OsLogin {
        /// The instance name.
        instance: String,
        /// Its zone.
        zone: String,
        /// Which metadata level decided.
        level: MetadataLevel,
    },
    /// Adding our entry would make the `ssh-keys` value larger than GCE accepts.
    #[error(
        "{instance}: the ssh-keys metadata value would be {bytes} bytes with kube-ha's entry, over GCE's limit of {limit}; remove stale keys from it"
    )]
    SshKeysTooLarge {
        /// The instance name.
        instance: String,
        /// The size it would have.
        bytes: usize,
        /// GCE's limit.
        limit: usize,
    },
    /// The known-hosts file could not be read or written.
    #[error("known-hosts file {}: {message}", file.display())]
    KnownHosts {
        /// The file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
    /// The Unix socket for a forward could not be made.
    #[error("local socket for {instance}: {message}")]
    LocalSocket {
        /// The instance name.
        instance: String,
        /// What failed.
        message: String,
    },
    /// The run key's metadata entry could not be written out.
    #[error("the run's SSH key: {0}")]
    Key(String),
    /// A Compute Engine call failed.
    #[error(transparent)]
    Gce(#[from] crate::gce::GceError),
    /// Anything else the SSH library reported.
    #[error("SSH: {0}")]
    Protocol(#[from] russh::Error),
}

impl SshError {
    /// Does this mean "the member behind this master is unreachable" (rather than a refusal or
    /// a bug)? A master that refuses SSH, or whose guest agent never applies the key, cannot be
    /// told apart from a dead one by etcd's peers either.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::AuthNeverAccepted { .. } | SshError::ChannelOpen { .. }
        )
    }
}
