//! Host keys the unit tests of this module share (generated once with `ssh-keygen`).

use super::PublicKey;

/// An ed25519 host key.
pub const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICuMP706VdVI1O576fjoo5bGrzK4knlapjF6qzfz2cXk";
/// Another one.
pub const ED2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

/// Parse an OpenSSH public key line.
pub fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).expect("key")
}
