//! The SSH connection to one master, over russh: [`connect`] (TCP, handshake, host key verified,
//! not yet authenticated) → [`Connection::login`] (bounded retries while the guest agent applies
//! the key) → [`MasterLink`] (authenticated; every etcd call of the run goes through it).
//!
//! Timeouts: the TCP connect, the handshake, each login attempt and each channel open have their
//! own bound ([`SshSettings`]); keepalives find a dead master (no reply to
//! `keepalive@openssh.com`) within `keepalive_interval × (keepalive_max + 1)`, and russh then
//! closes the connection, so pending and later calls fail at once instead of hanging.
//!
//! Why every login retry is a fresh connection: sshd looks the user up once per connection, at
//! the first authentication request. On a master that has never seen kube-ha, the guest agent
//! creates the `kube-ha` account when it applies the key; a connection that asked before that
//! treats the user as invalid for its whole life, so retrying on it can never succeed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use google_cloud_compute_v1::model;
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::PublicKey;

use super::host_keys::{HostKeyVerdict, HostKeys, describe, judge_host_key, preferred_algorithms};
use super::key::RunKey;
use super::{HostKeyMismatch, HostKeySource, SshError};
use crate::names::host_key_alias;

/// Which master to reach, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The instance name (for messages).
    pub instance: String,
    /// The instance id (the known-hosts alias is `compute.<id>`).
    pub instance_id: u64,
    /// Its external (or, inside the VPC, internal) IP and port 22.
    pub address: SocketAddr,
}

/// Which of a master's addresses kube-ha connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshVia {
    /// nic0's external (NAT) IP: runs from outside the VPC (the default).
    External,
    /// nic0's internal IP: runs inside the VPC.
    Internal,
}

impl SshTarget {
    /// The target for an instance as GCE describes it: its name, id, and nic0's external or
    /// internal IP on port 22. `None` when the instance lacks the id or that address (e.g. a
    /// master without an external IP and `External`).
    pub fn of_instance(instance: &model::Instance, via: SshVia) -> Option<SshTarget> {
        let nic0 = instance.network_interfaces.first()?;
        let ip = match via {
            SshVia::External => nic0.access_configs.iter().find_map(|a| a.nat_ip.as_deref())?,
            SshVia::Internal => nic0.network_ip.as_deref()?,
        };
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        Some(SshTarget {
            instance: instance.name.clone()?,
            instance_id: instance.id?,
            address: SocketAddr::from((ip, crate::names::SSH_PORT)),
        })
    }
}

/// Every bound of the SSH path.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// The login user (the `ssh-keys` entry's user).
    pub user: String,
    /// TCP connect.
    pub connect_timeout: Duration,
    /// From TCP connected to host key verified.
    pub handshake_timeout: Duration,
    /// How long logins are retried while the guest agent applies the key (gcloud waits 60 s).
    pub login_within: Duration,
    /// One authentication request, one channel open.
    pub request_timeout: Duration,
    /// Send a keepalive after this long without hearing from the master.
    pub keepalive_interval: Duration,
    /// Close the connection after this many unanswered keepalives.
    pub keepalive_max: usize,
}

impl Default for SshSettings {
    /// Bounds for a master across the internet: a dead one is found in about 6 s.
    fn default() -> Self {
        SshSettings {
            user: crate::names::SSH_USER.to_string(),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            login_within: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(2),
            keepalive_max: 2,
        }
    }
}

/// How many SSH handshakes were started (TCP connected, key exchange begun), shared by every
/// connection of a run: the benchmark's "handshakes per command".
#[derive(Clone, Debug, Default)]
pub struct Handshakes(Arc<AtomicU64>);

impl Handshakes {
    /// The count so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one run knows about one master, shared by its reconnects.
struct Context {
    target: SshTarget,
    host_keys: HostKeys,
    settings: SshSettings,
    handshakes: Handshakes,
    config: Arc<client::Config>,
}

impl Context {
    fn unreachable(&self, what: &'static str, message: impl Into<String>) -> SshError {
        SshError::Unreachable {
            instance: self.target.instance.clone(),
            address: self.target.address,
            what,
            message: message.into(),
        }
    }
}

/// The key the handshake accepted, and why.
type Accepted = Arc<Mutex<Option<(PublicKey, HostKeyVerdict)>>>;

/// russh's callbacks: the host key check.
pub(crate) struct Checker {
    ctx: Arc<Context>,
    accepted: Accepted,
}

impl client::Handler for Checker {
    type Error = SshError;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        let target = &self.ctx.target;
        let known_hosts = &self.ctx.host_keys.known_hosts;
        let published = &self.ctx.host_keys.published;
        let alias = host_key_alias(target.instance_id);
        let mismatch = |against, presented: String, expected| {
            SshError::HostKeyMismatch(Box::new(HostKeyMismatch {
                instance: target.instance.clone(),
                instance_id: target.instance_id,
                alias: alias.clone(),
                file: known_hosts.path().to_path_buf(),
                against,
                presented,
                expected,
            }))
        };
        let presented = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Not offered (no certificate algorithms are advertised), so never expected.
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(mismatch(
                    HostKeySource::Pinned,
                    "a host certificate".into(),
                    vec!["a plain host key".into()],
                ));
            }
        };
        let pins = known_hosts.pins(&alias)?;
        let verdict = judge_host_key(presented, published, &pins)
            .map_err(|(source, expected)| mismatch(source, describe(presented), expected))?;
        match verdict {
            HostKeyVerdict::FirstUse => known_hosts.pin(&alias, presented)?,
            HostKeyVerdict::Published if !pins.keys.iter().any(|k| k.key_data() == presented.key_data()) => {
                known_hosts.replace(&alias, published)?
            }
            _ => {}
        }
        tracing::debug!(instance = %target.instance, key = %describe(presented), ?verdict, "host key accepted");
        *self.accepted.lock().unwrap_or_else(PoisonError::into_inner) = Some((presented.clone(), verdict));
        Ok(true)
    }
}

/// Send a disconnect, bounded: a connection whose TCP writes are stuck (a dead master) must not
/// hold the caller up.
pub(crate) async fn goodbye(handle: &client::Handle<Checker>) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        handle.disconnect(russh::Disconnect::ByApplication, "", "en"),
    )
    .await;
}

/// Whether a russh error during connect means "nothing usable answers there".
fn is_connection_failure(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::IO(_)
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::Version
            | russh::Error::Join(_)
    )
}

/// TCP + handshake with the host key check, each with its deadline.
async fn open(ctx: &Arc<Context>) -> Result<(client::Handle<Checker>, PublicKey, HostKeyVerdict), SshError> {
    let settings = &ctx.settings;
    let tcp = match tokio::time::timeout(
        settings.connect_timeout,
        tokio::net::TcpStream::connect(ctx.target.address),
    )
    .await
    {
        Err(_) => return Err(ctx.unreachable("connect", format!("no answer within {:?}", settings.connect_timeout))),
        Ok(Err(e)) => return Err(ctx.unreachable("connect", e.to_string())),
        Ok(Ok(tcp)) => tcp,
    };
    // Small requests and replies: don't let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    ctx.handshakes.bump();
    let accepted: Accepted = Arc::default();
    let checker = Checker {
        ctx: ctx.clone(),
        accepted: accepted.clone(),
    };
    let handle = match tokio::time::timeout(
        settings.handshake_timeout,
        client::connect_stream(ctx.config.clone(), tcp, checker),
    )
    .await
    {
        Err(_) => {
            return Err(ctx.unreachable(
                "handshake",
                format!("no SSH handshake within {:?}", settings.handshake_timeout),
            ));
        }
        Ok(Err(SshError::Protocol(e))) if is_connection_failure(&e) => {
            return Err(ctx.unreachable("handshake", e.to_string()));
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(handle)) => handle,
    };
    let taken = accepted.lock().unwrap_or_else(PoisonError::into_inner).take();
    match taken {
        Some((key, verdict)) => Ok((handle, key, verdict)),
        // russh returns a handle only after check_server_key said yes.
        None => Err(ctx.unreachable("handshake", "the host key was never checked")),
    }
}

/// Connect to `target` and verify its host key; no authentication yet, so a mismatch is found
/// before the run writes its key anywhere.
pub async fn connect(
    target: SshTarget,
    host_keys: HostKeys,
    settings: SshSettings,
    handshakes: Handshakes,
) -> Result<Connection, SshError> {
    let mut preferred = russh::Preferred::default();
    let known: Vec<PublicKey> = match host_keys.published.is_empty() {
        false => host_keys.published.clone(),
        true => host_keys.known_hosts.pins(&host_key_alias(target.instance_id))?.keys,
    };
    preferred.key = preferred_algorithms(&known).into();
    let config = client::Config {
        preferred,
        keepalive_interval: Some(settings.keepalive_interval),
        keepalive_max: settings.keepalive_max,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    };
    let ctx = Arc::new(Context {
        target,
        host_keys,
        settings,
        handshakes,
        config: Arc::new(config),
    });
    let (handle, host_key, verdict) = open(&ctx).await?;
    Ok(Connection {
        ctx,
        handle,
        host_key,
        verdict,
    })
}

/// A connection whose host key has been verified, not yet authenticated.
pub struct Connection {
    ctx: Arc<Context>,
    handle: client::Handle<Checker>,
    host_key: PublicKey,
    verdict: HostKeyVerdict,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.ctx.target)
            .field("host_key", &describe(&self.host_key))
            .field("verdict", &self.verdict)
            .finish()
    }
}

impl Connection {
    /// The host key the master presented (and that was accepted).
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// Why it was accepted.
    pub fn verdict(&self) -> HostKeyVerdict {
        self.verdict
    }

    /// Close without logging in (e.g. the run was refused after the host key check).
    pub async fn close(self) {
        goodbye(&self.handle).await;
    }

    /// Log in with `key`, retrying with fresh connections (host key verified again each time)
    /// until the master accepts or `login_within` has passed: [`SshError::AuthNeverAccepted`].
    /// A host key mismatch or an unreachable master on a reconnect ends the wait at once.
    pub async fn login(self, key: &RunKey) -> Result<MasterLink, SshError> {
        let ctx = self.ctx;
        let settings = &ctx.settings;
        let started = Instant::now();
        let deadline = started + settings.login_within;
        let mut pause = Duration::from_millis(250);
        let mut attempts = 0u32;
        let mut handle = Some(self.handle);
        loop {
            let mut current = match handle.take() {
                Some(h) => h,
                None => open(&ctx).await?.0,
            };
            attempts += 1;
            let attempt = tokio::time::timeout(
                settings.request_timeout,
                current.authenticate_publickey(settings.user.clone(), key.signer()),
            )
            .await;
            match attempt {
                Ok(Ok(result)) if result.success() => {
                    tracing::debug!(instance = %ctx.target.instance, attempts, elapsed = ?started.elapsed(), "logged in");
                    return Ok(MasterLink {
                        ctx: ctx.clone(),
                        handle: Arc::new(current),
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(instance = %ctx.target.instance, error = %e, "login attempt failed"),
                Err(_) => tracing::debug!(instance = %ctx.target.instance, "login attempt timed out"),
            }
            goodbye(&current).await;
            if attempts == 1 {
                tracing::info!(
                    instance = %ctx.target.instance,
                    within = ?settings.login_within,
                    "waiting for the guest agent to install kube-ha's SSH key"
                );
            }
            if Instant::now() + pause >= deadline {
                return Err(SshError::AuthNeverAccepted {
                    instance: ctx.target.instance.clone(),
                    user: settings.user.clone(),
                    within: settings.login_within,
                    attempts,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// An authenticated SSH connection to one master: the run's only one to it. Cheap to share
/// (`Arc` inside); forwards keep it open while they exist.
#[derive(Clone)]
pub struct MasterLink {
    ctx: Arc<Context>,
    handle: Arc<client::Handle<Checker>>,
}

impl std::fmt::Debug for MasterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterLink")
            .field("target", &self.ctx.target)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl MasterLink {
    /// The master.
    pub fn target(&self) -> &SshTarget {
        &self.ctx.target
    }

    /// Whether the connection has ended (closed, or found dead by keepalives).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Say goodbye. Forwards opened from this link stop working.
    pub async fn close(&self) {
        goodbye(&self.handle).await;
    }

    pub(crate) fn handle(&self) -> Arc<client::Handle<Checker>> {
        self.handle.clone()
    }

    pub(crate) fn settings(&self) -> &SshSettings {
        &self.ctx.settings
    }

    pub(crate) fn unreachable(&self, what: &'static str, message: impl Into<String>) -> SshError {
        self.ctx.unreachable(what, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_nic0s_external_ip_by_default_or_its_internal_ip() {
        let instance = model::Instance::new()
            .set_name("kubernetes-master")
            .set_id(42_u64)
            .set_network_interfaces([model::NetworkInterface::new()
                .set_network_ip("10.128.0.2")
                .set_access_configs([model::AccessConfig::new().set_nat_ip("34.1.2.3")])]);
        let external = SshTarget::of_instance(&instance, SshVia::External).expect("external");
        assert_eq!(
            (
                external.instance.as_str(),
                external.instance_id,
                external.address.to_string()
            ),
            ("kubernetes-master", 42, "34.1.2.3:22".to_string())
        );
        let internal = SshTarget::of_instance(&instance, SshVia::Internal).expect("internal");
        assert_eq!(internal.address.to_string(), "10.128.0.2:22");
        let no_nat = model::Instance::new()
            .set_name("m")
            .set_id(1_u64)
            .set_network_interfaces([model::NetworkInterface::new().set_network_ip("10.128.0.3")]);
        assert_eq!(SshTarget::of_instance(&no_nat, SshVia::External), None);
        assert_eq!(
            SshTarget::of_instance(&model::Instance::new().set_name("m"), SshVia::Internal),
            None
        );
    }
}
