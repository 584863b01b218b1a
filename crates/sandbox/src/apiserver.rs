//! The kube-apiserver stand-in of a simulated master VM: HTTPS on the VM's port 443 with its own
//! `MASTER_CERT`, talking only to its local etcd member (as every kube-apiserver of a kube-up HA
//! cluster did, `--etcd-servers=https://127.0.0.1:2379`, here the VM's own loopback), through the
//! VM's `ETCD_APISERVER_CLIENT_CERT`.
//!
//! Clients authenticate with a certificate signed by the cluster CA (`CA_CERT`, the one in the
//! admin kubeconfig `kube-ha up` writes); TLS asks every client for one and verifies it. Only
//! `/healthz` answers without one (as kube-apiserver's anonymous access limited to health
//! checks: kube-ha's own probe and the load balancer's health check use it); everything else
//! answers `401 Unauthorized` (a Kubernetes `Status`) to a client without a certificate, and a
//! certificate from another CA fails the handshake.
//!
//! Routes:
//! - `GET /healthz`, `/readyz`: `200 ok` while the local etcd main member says it is healthy (it
//!   has a leader and can serve), else `503` with the reason, like kube-apiserver's etcd check;
//!   `GET /livez`: `200 ok` while the process serves;
//! - `GET /version`: kube-apiserver's version document (`major`, `minor`, `gitVersion`, …), so
//!   the real `kubectl version` works;
//! - `PUT /kv/<key>` (body = value): stored in etcd main through the local member → `200`;
//!   `GET /kv/<key>`: a linearizable read → `200` with the value, `404` if absent; `503` when the
//!   member cannot serve it (a learner, no quorum, etcd down).
//!
//! So a test can prove state survives a replica change: write through one replica, read back
//! through another or through the load balancer.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
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

/// The version the stand-in reports (`/version`).
pub const VERSION: (&str, &str, &str) = ("1", "32", "v1.32.0-kube-ha-sandbox");

/// The local etcd main member, as this VM's apiserver reaches it.
#[derive(Clone, Debug)]
pub struct LocalEtcd {
    /// Trusts `ETCD_APISERVER_CA_CERT`, presents `ETCD_APISERVER_CLIENT_CERT`.
    pub client: EtcdClient,
    /// `https://127.0.0.1:2379`, the VM's own loopback.
    pub endpoint: String,
}

/// Whether the connection's client presented a certificate (TLS verified it against the CA).
#[derive(Clone, Copy, Debug)]
struct ClientCert(bool);

/// One VM's API server: its TLS identity and its routes. Listeners are opened per address.
#[derive(Clone)]
pub struct ApiServer {
    tls: TlsAcceptor,
    app: Router,
}

impl ApiServer {
    /// A server presenting `cert_pem` (chain, leaf first) with `key_pem`, accepting client
    /// certificates signed by `client_ca_pem`, backed by `etcd`.
    pub fn new(cert_pem: &str, key_pem: &str, client_ca_pem: &str, etcd: LocalEtcd) -> Result<ApiServer> {
        let tls = TlsAcceptor::from(Arc::new(tls_config(cert_pem, key_pem, client_ca_pem)?));
        Ok(ApiServer {
            tls,
            app: router(Arc::new(etcd)),
        })
    }

    /// Serve HTTPS on `ip:443` (the VM's `0.0.0.0`: every address it has) until the returned
    /// listener is closed. Call on the VM's runtime: the socket is the namespace's.
    pub fn listen(&self, ip: Ipv4Addr, what: &str) -> ListenerTask {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, APISERVER_PORT));
        let server = self.clone();
        ListenerTask::spawn(addr, format!("{what} apiserver"), move |stream, _| {
            serve_connection(stream, server.tls.clone(), server.app.clone())
        })
    }
}

/// TLS 1.2/1.3 with the VM's serving certificate; a client certificate is asked for and, when
/// given, must chain to `client_ca_pem` (see the module doc for what works without one).
fn tls_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("MASTER_CERT is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("MASTER_KEY is not a PEM key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots
            .add(ca.context("CA_CERT is not PEM")?)
            .context("CA_CERT is not a CA certificate")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("the client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("MASTER_CERT and MASTER_KEY do not make a TLS identity")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS handshake, then HTTP/1.1 until the client or the listener closes.
async fn serve_connection(stream: TcpStream, tls: TlsAcceptor, app: Router) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        // A failed handshake (a client that does not trust our CA, or whose certificate is
        // not from the cluster CA) is the client's business.
        Ok(Err(e)) => {
            tracing::debug!("apiserver: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let authenticated = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let service = TowerToHyperService::new(app.layer(Extension(ClientCert(authenticated))));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("apiserver: connection ended: {e}");
    }
}

/// The routes (see the module doc).
pub fn router(etcd: Arc<LocalEtcd>) -> Router {
    let authenticated = Router::new()
        .route("/readyz", get(healthz))
        .route("/livez", get(livez))
        .route("/version", get(version))
        .route("/kv/{*key}", get(kv_get).put(kv_put))
        .route_layer(middleware::from_fn(require_client_cert));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(authenticated)
        .with_state(etcd)
}

/// `401` (kube-apiserver's `Status`) unless the connection presented a client certificate.
async fn require_client_cert(cert: Option<Extension<ClientCert>>, request: Request, next: Next) -> Response {
    match cert {
        Some(Extension(ClientCert(true))) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401
            })),
        )
            .into_response(),
    }
}

async fn healthz(State(etcd): State<Arc<LocalEtcd>>) -> Response {
    let client = etcd.client.with_timeout(HEALTH_TIMEOUT);
    match client.health(&etcd.endpoint).await {
        Ok(true) => (StatusCode::OK, "ok").into_response(),
        Ok(false) => unavailable("etcd: local member is not healthy"),
        Err(e) => unavailable(&format!("etcd: {e}")),
    }
}

async fn livez() -> Response {
    (StatusCode::OK, "ok").into_response()
}

async fn version() -> Json<serde_json::Value> {
    let (major, minor, git) = VERSION;
    Json(serde_json::json!({
        "major": major,
        "minor": minor,
        "gitVersion": git,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-12-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
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
        assert!(tls_config("not pem", "not pem", "not pem").is_err());
    }

    #[tokio::test]
    async fn only_healthz_answers_a_client_without_a_certificate() {
        use tower::ServiceExt as _;
        for (path, cert, want) in [
            ("/version", false, StatusCode::UNAUTHORIZED),
            ("/readyz", false, StatusCode::UNAUTHORIZED),
            ("/kv/a", false, StatusCode::UNAUTHORIZED),
            ("/healthz", false, StatusCode::SERVICE_UNAVAILABLE),
            ("/version", true, StatusCode::OK),
            ("/livez", true, StatusCode::OK),
        ] {
            let app = router(nowhere()).layer(Extension(ClientCert(cert)));
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request");
            let status = app.oneshot(request).await.expect("response").status();
            assert_eq!(status, want, "{path} with a certificate: {cert}");
        }
    }
}
