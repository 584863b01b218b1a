//! [`RunKey`]: the one ed25519 key a run logs in with. It is made in memory from 32 random bytes
//! and never written anywhere but the instance's `ssh-keys` metadata (public half only), in the
//! form GCE's guest agent and gcloud use for expiring keys:
//! `kube-ha:ssh-ed25519 AAAA… google-ssh {"userName":"kube-ha","expireOn":"<RFC 3339>"}`.
//!
//! Why from a seed: russh pins its own `rand` (0.10) and `ssh-key` versions; handing it our
//! `rand` (0.9) RNG would not type-check across versions, and 32 bytes from the OS RNG are all an
//! ed25519 key is.

use std::sync::Arc;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::SshError;

/// The run's key pair and the metadata entry that authorizes it until `expire_on`.
#[derive(Clone)]
pub struct RunKey {
    private: Arc<PrivateKey>,
    user: String,
    expire_on: OffsetDateTime,
}

/// Never prints the private half.
impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunKey")
            .field("user", &self.user)
            .field("fingerprint", &self.fingerprint())
            .field("expire_on", &self.expire_on)
            .finish()
    }
}

impl RunKey {
    /// A fresh key for `user`, valid (in metadata) until `expire_on`, truncated to whole seconds
    /// so the entry's `expireOn` has no fraction.
    pub fn generate(user: &str, expire_on: OffsetDateTime) -> RunKey {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(user, expire_on, &seed)
    }

    /// The key from a given seed (tests want stable keys; [`RunKey::generate`] is the product).
    pub fn from_seed(user: &str, expire_on: OffsetDateTime, seed: &[u8; 32]) -> RunKey {
        let private = PrivateKey::from(Ed25519Keypair::from_seed(seed));
        RunKey {
            private: Arc::new(private),
            user: user.to_string(),
            expire_on: expire_on.replace_nanosecond(0).unwrap_or(expire_on),
        }
    }

    /// The login user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// When the entry expires.
    pub fn expire_on(&self) -> OffsetDateTime {
        self.expire_on
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.private.public_key().key_data().clone(), "")
    }

    /// The public key's base64 blob, which identifies our entry in `ssh-keys`.
    pub fn blob(&self) -> String {
        self.public_openssh()
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// `ssh-ed25519 AAAA…` (no comment).
    fn public_openssh(&self) -> String {
        // Encoding an ed25519 public key cannot fail; an empty string would only make the entry
        // unusable (the login then fails within its bound), never a wrong key.
        self.public_key().to_openssh().unwrap_or_default()
    }

    /// `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        self.private.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The `ssh-keys` line: `<user>:ssh-ed25519 AAAA… google-ssh {"userName":"<user>","expireOn":"<RFC 3339>"}`.
    /// The JSON has no spaces (gcloud: the Console's key editor rejects them).
    pub fn metadata_line(&self) -> Result<String, SshError> {
        #[derive(serde::Serialize)]
        struct GoogleSsh<'a> {
            #[serde(rename = "userName")]
            user_name: &'a str,
            #[serde(rename = "expireOn")]
            expire_on: String,
        }
        let expire_on = self
            .expire_on
            .format(&Rfc3339)
            .map_err(|e| SshError::Key(format!("formatting expireOn: {e}")))?;
        let json = serde_json::to_string(&GoogleSsh {
            user_name: &self.user,
            expire_on,
        })
        .map_err(|e| SshError::Key(format!("encoding the google-ssh comment: {e}")))?;
        Ok(format!("{}:{} google-ssh {json}", self.user, self.public_openssh()))
    }

    /// What russh signs with.
    pub(crate) fn signer(&self) -> PrivateKeyWithHashAlg {
        PrivateKeyWithHashAlg::new(self.private.clone(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::{Expiry, parse_entry};

    #[test]
    fn the_metadata_line_is_the_expiring_form_gcloud_writes_and_the_guest_agent_reads() {
        let expire =
            OffsetDateTime::from_unix_timestamp(1_796_000_000).expect("time") + time::Duration::milliseconds(250);
        let key = RunKey::from_seed("kube-ha", expire, &[7; 32]);
        let line = key.metadata_line().expect("line");
        let (head, json) = line.split_once(" google-ssh ").expect("google-ssh comment");
        assert!(head.starts_with("kube-ha:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{head}");
        assert_eq!(head.split(' ').count(), 2, "no comment before google-ssh: {head}");
        assert_eq!(json, r#"{"userName":"kube-ha","expireOn":"2026-11-30T00:53:20Z"}"#);
        assert!(!json.contains(' '));
        let entry = parse_entry(&line).expect("parses");
        assert_eq!(entry.user, "kube-ha");
        assert_eq!(entry.blob, key.blob());
        assert_eq!(entry.expiry, Expiry::At(key.expire_on()));
    }

    #[test]
    fn keys_are_fresh_per_run_and_debug_hides_the_private_half() {
        let now = OffsetDateTime::now_utc();
        let (a, b) = (RunKey::generate("kube-ha", now), RunKey::generate("kube-ha", now));
        assert_ne!(a.blob(), b.blob());
        let shown = format!("{a:?}");
        assert!(shown.contains("SHA256:") && !shown.contains("PRIVATE"), "{shown}");
    }
}
