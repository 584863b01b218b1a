//! HTTP(S) to a master's own `127.0.0.1:<port>` through its [`MasterLink`], for the existing
//! reqwest-based [`EtcdClient`].
//!
//! A [`Forward`] is a Unix socket in a fresh 0700 directory (private to this user) whose every
//! accepted connection becomes one `direct-tcpip` channel to `127.0.0.1:<port>` on the master,
//! spliced both ways. The [`EtcdClient`] is built with reqwest's `unix_socket`: every connection
//! it makes goes to that socket, while the URL (`https://127.0.0.1:2379`) still decides TLS, so
//! the etcd server certificate is verified for `127.0.0.1` exactly as on the master itself.
//!
//! Why a Unix socket and not a `127.0.0.1:0` listener: any local user can connect to a loopback
//! port, and the events etcd (4002) has no authentication at all; a socket in a 0700 directory is
//! reachable only by this user. Why not hyper over the channel directly: reqwest cannot take a
//! caller's stream, and a second HTTP client stack next to reqwest buys nothing the socket does
//! not give. Cost: one local socket hop per connection; reqwest pools connections, so a run's
//! many calls reuse a few channels of the one SSH connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::transport::{Checker, MasterLink};
use super::{LOOPBACK, SshError};
use crate::etcd::EtcdClient;
use crate::pki::CertPair;

/// The mutual-TLS material of the main etcd: the CA that signs its server certificate, and
/// kube-ha's 1-hour client certificate.
#[derive(Clone, Copy, Debug)]
pub struct EtcdTls<'a> {
    /// The etcd CA (PEM).
    pub ca_pem: &'a str,
    /// kube-ha's client certificate and key.
    pub identity: &'a CertPair,
}

/// A private Unix socket forwarding to `127.0.0.1:<port>` on a master. Stops accepting (and
/// removes the socket) when dropped; connections already spliced run until either end closes.
#[derive(Debug)]
pub struct Forward {
    socket: PathBuf,
    port: u16,
    accept: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Forward {
    /// The socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The port on the master.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Open a `direct-tcpip` channel to the master's `127.0.0.1:port`, with the request deadline:
/// `None` when the deadline passed.
async fn raw_channel(
    handle: &client::Handle<Checker>,
    port: u16,
    within: Duration,
) -> Option<Result<russh::Channel<client::Msg>, russh::Error>> {
    tokio::time::timeout(
        within,
        handle.channel_open_direct_tcpip(LOOPBACK, u32::from(port), LOOPBACK, 0),
    )
    .await
    .ok()
}

/// The typed error for a failed channel open.
fn channel_error(instance: &str, port: u16, within: Duration, failure: Option<russh::Error>) -> SshError {
    let reason = match failure {
        None => format!("no answer within {within:?}"),
        Some(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited)) => {
            return SshError::ForwardingRefused {
                instance: instance.to_string(),
                host: LOOPBACK.to_string(),
                port,
            };
        }
        Some(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed)) => {
            "nothing listens there (connect failed)".to_string()
        }
        Some(russh::Error::ChannelOpenFailure(other)) => format!("{other:?}"),
        Some(e) => format!("the SSH connection is gone: {e}"),
    };
    SshError::ChannelOpen {
        instance: instance.to_string(),
        host: LOOPBACK.to_string(),
        port,
        reason,
    }
}

/// Splice one local connection to a fresh channel.
async fn splice(
    handle: Arc<client::Handle<Checker>>,
    instance: String,
    port: u16,
    within: Duration,
    mut local: UnixStream,
) {
    match raw_channel(&handle, port, within).await {
        Some(Ok(channel)) => {
            let mut remote = channel.into_stream();
            if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut remote).await {
                tracing::debug!(%instance, port, error = %e, "forwarded connection ended");
            }
        }
        // Dropping `local` closes it: the HTTP client sees a failed connection, i.e. an
        // unreachable member, and the reason is logged here.
        failed => {
            tracing::warn!(%instance, port, "{}", channel_error(&instance, port, within, failed.and_then(Result::err)))
        }
    }
}

impl MasterLink {
    /// A [`Forward`] to the master's `127.0.0.1:port`. One channel is opened first to learn at
    /// once whether sshd forwards there at all ([`SshError::ForwardingRefused`]); nothing
    /// listening yet (a member still starting) is not an error here, later calls see it.
    pub async fn forward(&self, port: u16) -> Result<Forward, SshError> {
        let instance = self.target().instance.clone();
        let within = self.settings().request_timeout;
        let handle = self.handle();
        if handle.is_closed() {
            return Err(self.unreachable("connection", "the SSH connection has closed"));
        }
        match raw_channel(&handle, port, within).await {
            Some(Ok(probe)) => {
                let _ = tokio::time::timeout(within, probe.close()).await;
            }
            Some(Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed))) => {
                tracing::debug!(%instance, port, "nothing listens yet");
            }
            failed => return Err(channel_error(&instance, port, within, failed.and_then(Result::err))),
        }
        let local_error = |what: &str, e: std::io::Error| SshError::LocalSocket {
            instance: instance.clone(),
            message: format!("{what}: {e}"),
        };
        // tempfile makes the directory 0700: only this user can reach the socket inside.
        let dir = tempfile::Builder::new()
            .prefix("kube-ha-ssh-")
            .tempdir()
            .map_err(|e| local_error("creating a private directory", e))?;
        let socket = dir.path().join(format!("{port}.sock"));
        let listener = UnixListener::bind(&socket).map_err(|e| local_error("binding", e))?;
        let accept = tokio::spawn({
            let instance = instance.clone();
            async move {
                loop {
                    match listener.accept().await {
                        Ok((local, _)) => {
                            tokio::spawn(splice(handle.clone(), instance.clone(), port, within, local));
                        }
                        Err(e) => {
                            tracing::warn!(%instance, port, error = %e, "forward stopped accepting");
                            return;
                        }
                    }
                }
            }
        });
        Ok(Forward {
            socket,
            port,
            accept,
            _dir: dir,
        })
    }

    /// An [`EtcdRoute`] to the master's etcd on `port`: mutual TLS with `tls` (verified for
    /// `127.0.0.1`), or plain HTTP without (kube-up's events etcd on 4002). `timeout` is the
    /// client's per-call deadline.
    pub async fn etcd(&self, port: u16, tls: Option<EtcdTls<'_>>, timeout: Duration) -> Result<EtcdRoute, SshError> {
        let forward = self.forward(port).await?;
        let socket = forward.socket_path();
        let built = match tls {
            Some(t) => {
                EtcdClient::over_unix_socket(t.ca_pem, &t.identity.cert_pem, &t.identity.key_pem, timeout, socket)
            }
            None => EtcdClient::plain_over_unix_socket(timeout, socket),
        };
        let client = built.map_err(|e| SshError::LocalSocket {
            instance: self.target().instance.clone(),
            message: format!("building the etcd client: {e:#}"),
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(EtcdRoute {
            client,
            endpoint: format!("{scheme}://{LOOPBACK}:{port}"),
            forward: Arc::new(forward),
        })
    }
}

/// One etcd endpoint on one master, through its SSH connection: call `client`'s methods with
/// `endpoint`. Clones share the forward; it stops when the last one is dropped.
#[derive(Clone, Debug)]
pub struct EtcdRoute {
    /// The client (its connections all go through the forward).
    pub client: EtcdClient,
    /// `https://127.0.0.1:2379` or `http://127.0.0.1:4002`: the master's own view.
    pub endpoint: String,
    forward: Arc<Forward>,
}

impl EtcdRoute {
    /// The forward behind it.
    pub fn forward(&self) -> &Forward {
        &self.forward
    }
}
