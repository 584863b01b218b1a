//! The kube-apiserver stand-in of a simulated master VM: HTTPS with the VM's own `MASTER_CERT`,
//! talking only to its local etcd member (as every kube-apiserver of a kube-up HA cluster did,
//! `--etcd-servers=https://127.0.0.1:2379`), through the VM's `ETCD_APISERVER_CLIENT_CERT`.
//!
//! Routes:
//! - `GET /healthz`: `200 ok` while the local etcd main member says it is healthy (it has a
//!   leader and can serve), else `503` with the reason, like kube-apiserver's etcd check.
//! - `PUT /kv/<key>` (body = value): stored in etcd main through the local member → `200`.
//! - `GET /kv/<key>`: a linearizable read → `200` with the value, `404` if absent; `503` when
//!   the member cannot serve it (a learner, no quorum, etcd down).
//!
//! So a test can prove state survives a replica change: write through one replica, read back
//! through another or through the load balancer.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use kube_ha_core::etcd::{EtcdClient, EtcdError};
use kube_ha_core::names::APISERVER_PORT;

use super::listener::ListenerTask;

/// How long `/healthz` waits for etcd's answer (kube-apiserver's etcd check uses seconds too).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a key read or write may take (etcd itself gives up on a write without quorum
/// after about 7 s; answering 503 sooner keeps probes snappy).
const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that connects and never finishes the handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The local etcd main member, as this VM's apiserver reaches it.
#[derive(Clone, Debug)]
pub struct LocalEtcd {
    /// Trusts `ETCD_APISERVER_CA_CERT`, presents `ETCD_APISERVER_CLIENT_CERT`.
    pub client: EtcdClient,
    /// `https://<internal IP>:2379`.
    pub endpoint: String,
}

/// One VM's API server: its TLS identity and its routes. Listeners are opened per IP.
#[derive(Clone)]
pub struct ApiServer {
    tls: TlsAcceptor,
    app: Router,
}

impl ApiServer {
    /// A server presenting `cert_pem` (chain, leaf first) with `key_pem`, backed by `etcd`.
    pub fn new(cert_pem: &str, key_pem: &str, etcd: LocalEtcd) -> Result<ApiServer> {
        let tls = TlsAcceptor::from(Arc::new(tls_config(cert_pem, key_pem)?));
        Ok(ApiServer {
            tls,
            app: router(Arc::new(etcd)),
        })
    }

    /// Serve HTTPS on `ip:443` until the returned listener is closed.
    pub fn listen(&self, ip: Ipv4Addr, what: &str) -> ListenerTask {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, APISERVER_PORT));
        let server = self.clone();
        ListenerTask::spawn(addr, format!("{what} apiserver"), move |stream, _| {
            serve_connection(stream, server.tls.clone(), server.app.clone())
        })
    }
}

/// TLS 1.2/1.3 with the VM's serving certificate; no client certificate asked (the stand-in has
/// no authentication, like an anonymous-enabled `/healthz`).
fn tls_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("MASTER_CERT is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("MASTER_KEY is not a PEM key")?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("MASTER_CERT and MASTER_KEY do not make a TLS identity")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS handshake, then HTTP/1.1 until the client or the listener closes.
async fn serve_connection(stream: TcpStream, tls: TlsAcceptor, app: Router) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        // A failed handshake (e.g. a client that does not trust our CA) is the client's business.
        Ok(Err(e)) => {
            tracing::debug!("apiserver: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let service = TowerToHyperService::new(app);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("apiserver: connection ended: {e}");
    }
}

/// The routes (see the module doc).
pub fn router(etcd: Arc<LocalEtcd>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/kv/{*key}", get(kv_get).put(kv_put))
        .with_state(etcd)
}

async fn healthz(State(etcd): State<Arc<LocalEtcd>>) -> Response {
    let client = etcd.client.with_timeout(HEALTH_TIMEOUT);
    match client.health(&etcd.endpoint).await {
        Ok(true) => (StatusCode::OK, "ok").into_response(),
        Ok(false) => unavailable("etcd: local member is not healthy"),
        Err(e) => unavailable(&format!("etcd: {e}")),
    }
}

async fn kv_put(State(etcd): State<Arc<LocalEtcd>>, Path(key): Path<String>, value: Bytes) -> Response {
    let client = etcd.client.with_timeout(KV_TIMEOUT);
    match client.put(&etcd.endpoint, key.as_bytes(), &value).await {
        Ok(()) => (StatusCode::OK, "stored").into_response(),
        Err(e) => etcd_failed(&e),
    }
}

async fn kv_get(State(etcd): State<Arc<LocalEtcd>>, Path(key): Path<String>) -> Response {
    let client = etcd.client.with_timeout(KV_TIMEOUT);
    match client.get(&etcd.endpoint, key.as_bytes()).await {
        Ok(Some(value)) => (StatusCode::OK, value).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("{key}: not found")).into_response(),
        Err(e) => etcd_failed(&e),
    }
}

/// Every etcd failure is "the storage is unavailable" to an API client: a learner cannot serve a
/// linearizable read, a member without quorum cannot serve anything, a dead one does not answer.
fn etcd_failed(e: &EtcdError) -> Response {
    unavailable(&format!("etcd: {e}"))
}

fn unavailable(reason: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, reason.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An etcd endpoint where nothing listens: every call fails at once.
    fn nowhere() -> Arc<LocalEtcd> {
        let now = time::OffsetDateTime::now_utc();
        let cas = kube_ha_core::pki::ClusterCas::generate("t", now).expect("cas");
        let client = EtcdClient::for_tool(&cas, now, Duration::from_secs(1)).expect("client");
        Arc::new(LocalEtcd {
            client,
            endpoint: "https://127.0.0.1:1".into(),
        })
    }

    #[tokio::test]
    async fn without_etcd_the_api_is_unavailable_not_broken() {
        let etcd = nowhere();
        let key = || Path("a/b".to_string());
        assert_eq!(
            healthz(State(etcd.clone())).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            kv_put(State(etcd.clone()), key(), Bytes::from_static(b"v"))
                .await
                .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            kv_get(State(etcd), key()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused() {
        assert!(tls_config("not pem", "not pem").is_err());
    }
}
