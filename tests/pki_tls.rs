//! The certificates of SPEC §3, checked by real TLS stacks rather than by reading our own
//! fields back: `openssl verify` with each purpose, rustls' webpki verifiers (server and client),
//! and a mutual-TLS handshake on loopback with tokio-rustls.
//!
//! The property that matters most: a replica's certificate is accepted for that replica's names
//! and addresses only, so replica A's certificate presented as replica B fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kube_ha_core::pki::kube_env::KeyValues;
use kube_ha_core::pki::{
    CertPair, ClusterCas, ReplicaCerts, ReplicaIdentity, issue_admin_client, issue_replica_certs, issue_tool_client,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const MASTER: &str = "kubernetes-master";
const REPLICA_B: &str = "kubernetes-master-b2c";
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(34, 1, 2, 3);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 132, 0, 2);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 132, 0, 3);

/// One cluster's CAs and two replicas' leaves.
struct Cluster {
    cas: ClusterCas,
    a: ReplicaCerts,
    b: ReplicaCerts,
}

fn identity(replica: &str, ip: Ipv4Addr) -> ReplicaIdentity {
    ReplicaIdentity {
        master_name: MASTER.into(),
        replica: replica.into(),
        internal_ip: ip,
        static_ip: STATIC_IP,
        service_ip: Ipv4Addr::new(10, 0, 0, 1),
        dns_domain: "cluster.local".into(),
    }
}

fn cluster() -> Cluster {
    let now = OffsetDateTime::now_utc();
    let cas = ClusterCas::generate("kubernetes", now).expect("cas");
    let a = issue_replica_certs(&cas, &identity(MASTER, IP_A), now).expect("a");
    let b = issue_replica_certs(&cas, &identity(REPLICA_B, IP_B), now).expect("b");
    Cluster { cas, a, b }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("cert pem")
}

fn roots(ca: &CertPair) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    store.add(der(&ca.cert_pem)).expect("root");
    Arc::new(store)
}

fn server_verifier(ca: &CertPair) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("server verifier")
}

fn client_verifier(ca: &CertPair) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("client verifier")
}

/// Does `leaf` verify as a server certificate for `name` under `ca`?
fn serves(ca: &CertPair, leaf: &CertPair, name: &str) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).expect("server name");
    server_verifier(ca)
        .verify_server_cert(&der(&leaf.cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

/// Does `leaf` verify as a client certificate under `ca`?
fn authenticates(ca: &CertPair, leaf: &CertPair) -> Result<(), rustls::Error> {
    client_verifier(ca)
        .verify_client_cert(&der(&leaf.cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `openssl verify -CAfile ca -purpose purpose [extra…] leaf` succeeded?
fn openssl_verify(ca: &Path, purpose: &str, leaf: &Path, extra: &[&str]) -> bool {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .args(["-purpose", purpose])
        .args(extra)
        .arg(leaf)
        .output()
        .expect("run openssl");
    let ok = out.status.success();
    // openssl prints "<file>: OK" on success; make sure exit status and text agree.
    assert_eq!(ok, String::from_utf8_lossy(&out.stdout).contains(": OK"), "{out:?}");
    ok
}

#[test]
fn openssl_verifies_every_leaf_for_its_purpose_and_only_against_its_ca() {
    let c = cluster();
    let now = OffsetDateTime::now_utc();
    let tool = issue_tool_client(&c.cas, now).expect("tool");
    let admin = issue_admin_client(&c.cas, now).expect("admin");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cluster_ca = write(d, "ca.crt", &c.cas.cluster.cert_pem);
    let peer_ca = write(d, "etcd-ca.crt", &c.cas.etcd_peer.cert_pem);
    let client_ca = write(d, "etcd-apiserver-ca.crt", &c.cas.etcd_client.cert_pem);

    // (file, right CA, a wrong CA, passes sslserver, passes sslclient)
    let rows = [
        ("master.crt", &c.a.apiserver, &cluster_ca, &client_ca, true, false),
        ("etcd-peer.crt", &c.a.etcd_peer, &peer_ca, &client_ca, true, true),
        ("etcd-server.crt", &c.a.etcd_server, &client_ca, &peer_ca, true, true),
        ("etcd-client.crt", &c.a.etcd_client, &client_ca, &peer_ca, false, true),
        ("kube-ha.crt", &tool, &client_ca, &cluster_ca, false, true),
        ("kubecfg.crt", &admin, &cluster_ca, &client_ca, false, true),
    ];
    for (file, pair, right, wrong, server, client) in rows {
        let leaf = write(d, file, &pair.cert_pem);
        assert_eq!(
            openssl_verify(right, "sslserver", &leaf, &[]),
            server,
            "{file} sslserver"
        );
        assert_eq!(
            openssl_verify(right, "sslclient", &leaf, &[]),
            client,
            "{file} sslclient"
        );
        let purpose = if server { "sslserver" } else { "sslclient" };
        assert!(!openssl_verify(wrong, purpose, &leaf, &[]), "{file} under the wrong CA");
    }

    // Names: openssl checks SANs too. A's certs are for A's IP, never B's.
    let master_a = write(d, "master-a.crt", &c.a.apiserver.cert_pem);
    let server_a = write(d, "etcd-server-a.crt", &c.a.etcd_server.cert_pem);
    let ip_a = IP_A.to_string();
    let ip_b = IP_B.to_string();
    assert!(openssl_verify(
        &cluster_ca,
        "sslserver",
        &master_a,
        &["-verify_ip", &ip_a]
    ));
    assert!(openssl_verify(
        &cluster_ca,
        "sslserver",
        &master_a,
        &["-verify_ip", "34.1.2.3"]
    ));
    assert!(openssl_verify(
        &cluster_ca,
        "sslserver",
        &master_a,
        &["-verify_hostname", "kubernetes.default.svc.cluster.local"]
    ));
    assert!(!openssl_verify(
        &cluster_ca,
        "sslserver",
        &master_a,
        &["-verify_ip", &ip_b]
    ));
    assert!(openssl_verify(
        &client_ca,
        "sslserver",
        &server_a,
        &["-verify_ip", &ip_a]
    ));
    assert!(!openssl_verify(
        &client_ca,
        "sslserver",
        &server_a,
        &["-verify_ip", &ip_b]
    ));
}

#[test]
fn the_apiserver_cert_verifies_for_its_own_names_only() {
    let c = cluster();
    for name in [
        "34.1.2.3",
        "10.0.0.1",
        "10.132.0.2",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        MASTER,
    ] {
        serves(&c.cas.cluster, &c.a.apiserver, name).unwrap_or_else(|e| panic!("A's apiserver cert for {name}: {e}"));
    }
    // B's cert carries B's internal IP and name; both hold for B, neither for A.
    serves(&c.cas.cluster, &c.b.apiserver, "10.132.0.3").expect("B for its IP");
    serves(&c.cas.cluster, &c.b.apiserver, REPLICA_B).expect("B for its name");
    for name in ["10.132.0.3", REPLICA_B, "kubernetes.default.svc.example.org"] {
        let err = serves(&c.cas.cluster, &c.a.apiserver, name).expect_err(name);
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                    | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })
            ),
            "{name}: {err:?}"
        );
    }
    // Only the cluster CA vouches for apiserver certs.
    assert!(serves(&c.cas.etcd_client, &c.a.apiserver, "34.1.2.3").is_err());
    // And the cert of another cluster with the same names fails against ours.
    let other = cluster();
    assert!(serves(&c.cas.cluster, &other.a.apiserver, "34.1.2.3").is_err());
}

#[test]
fn an_etcd_cert_of_one_replica_fails_as_another() {
    let c = cluster();
    serves(&c.cas.etcd_client, &c.a.etcd_server, "10.132.0.2").expect("A's server for A");
    serves(&c.cas.etcd_client, &c.a.etcd_server, "127.0.0.1").expect("A's server on loopback");
    assert!(serves(&c.cas.etcd_client, &c.a.etcd_server, "10.132.0.3").is_err());
    serves(&c.cas.etcd_client, &c.b.etcd_server, "10.132.0.3").expect("B's server for B");

    serves(&c.cas.etcd_peer, &c.a.etcd_peer, "10.132.0.2").expect("A's peer for A");
    serves(&c.cas.etcd_peer, &c.a.etcd_peer, MASTER).expect("A's peer for its name");
    assert!(serves(&c.cas.etcd_peer, &c.a.etcd_peer, "10.132.0.3").is_err());
    assert!(serves(&c.cas.etcd_peer, &c.a.etcd_peer, REPLICA_B).is_err());
    // The peer CA and the client CA are separate trust domains.
    assert!(serves(&c.cas.etcd_client, &c.a.etcd_peer, "10.132.0.2").is_err());
    assert!(serves(&c.cas.etcd_peer, &c.a.etcd_server, "10.132.0.2").is_err());
}

#[test]
fn client_verifiers_accept_client_certs_of_their_own_ca_only() {
    let c = cluster();
    let now = OffsetDateTime::now_utc();
    let tool = issue_tool_client(&c.cas, now).expect("tool");
    let admin = issue_admin_client(&c.cas, now).expect("admin");
    // etcd's --trusted-ca-file is the etcd client CA.
    authenticates(&c.cas.etcd_client, &c.a.etcd_client).expect("apiserver → etcd");
    authenticates(&c.cas.etcd_client, &tool).expect("kube-ha → etcd");
    assert!(authenticates(&c.cas.etcd_client, &c.a.etcd_peer).is_err());
    assert!(authenticates(&c.cas.etcd_client, &admin).is_err());
    // etcd's --peer-trusted-ca-file is the peer CA; peers authenticate each other with it.
    authenticates(&c.cas.etcd_peer, &c.b.etcd_peer).expect("peer → peer");
    assert!(authenticates(&c.cas.etcd_peer, &tool).is_err());
    // The apiserver serving cert is serverAuth only: no use as a client even under its own CA.
    authenticates(&c.cas.cluster, &admin).expect("admin → apiserver");
    assert!(authenticates(&c.cas.cluster, &c.a.apiserver).is_err());
}

#[test]
fn cas_read_back_from_metadata_sign_leaves_that_verify_against_the_originals() {
    let c = cluster();
    let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
    c.cas.write_metadata(&mut env, &mut master);
    let env = KeyValues::from_yaml(&env.to_yaml()).expect("kube-env yaml");
    let master = KeyValues::from_yaml(&master.to_yaml()).expect("kube-master-certs yaml");
    let read_back = ClusterCas::from_metadata(&env, &master).expect("read back");
    let now = OffsetDateTime::now_utc();
    let third = issue_replica_certs(
        &read_back,
        &identity("kubernetes-master-x9z", Ipv4Addr::new(10, 132, 0, 4)),
        now,
    )
    .expect("issue");
    let tool = issue_tool_client(&read_back, now).expect("tool");
    // Verified against the CA certs the cluster started with, not the read-back copies.
    serves(&c.cas.cluster, &third.apiserver, "10.132.0.4").expect("apiserver");
    serves(&c.cas.cluster, &third.apiserver, "34.1.2.3").expect("apiserver static IP");
    serves(&c.cas.etcd_peer, &third.etcd_peer, "10.132.0.4").expect("peer");
    serves(&c.cas.etcd_client, &third.etcd_server, "10.132.0.4").expect("server");
    authenticates(&c.cas.etcd_client, &third.etcd_client).expect("client");
    authenticates(&c.cas.etcd_client, &tool).expect("tool");
    // The new replica's peer cert is trusted by the first replica's peer CA file: they can join.
    authenticates(&c.cas.etcd_peer, &third.etcd_peer).expect("peer as client");
}

/// A TLS server on loopback that serves `cert` and requires a client cert under `client_ca`.
/// Returns its port and a task giving the server side's handshake outcome.
async fn mtls_server(cert: &CertPair, client_ca: &CertPair) -> (u16, tokio::task::JoinHandle<Result<(), String>>) {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(client_verifier(client_ca))
        .with_single_cert(
            vec![der(&cert.cert_pem)],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key"),
        )
        .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    (port, task)
}

/// Connect to `port`, verify the server as `name` under `server_ca`, present `identity`;
/// send "ping" and expect "pong".
async fn mtls_client(port: u16, server_ca: &CertPair, identity: &CertPair, name: &str) -> Result<(), String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(server_ca))
        .with_client_auth_cert(
            vec![der(&identity.cert_pem)],
            PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("key"),
        )
        .expect("client config");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    if &buf != b"pong" {
        return Err(format!("unexpected reply {buf:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn mutual_tls_handshakes_on_loopback_like_etcd() {
    let c = cluster();
    let tool = issue_tool_client(&c.cas, OffsetDateTime::now_utc()).expect("tool");

    // kube-ha → replica A's etcd, addressed by A's internal IP: both sides accept.
    let (port, server) = mtls_server(&c.a.etcd_server, &c.cas.etcd_client).await;
    mtls_client(port, &c.cas.etcd_client, &tool, "10.132.0.2")
        .await
        .expect("client side");
    server.await.expect("join").expect("server side");

    // A's etcd answering where B's was expected: the client refuses the server.
    let (port, server) = mtls_server(&c.a.etcd_server, &c.cas.etcd_client).await;
    let err = mtls_client(port, &c.cas.etcd_client, &tool, "10.132.0.3")
        .await
        .expect_err("A's cert as B");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(server.await.expect("join").is_err());

    // A client cert from another cluster's etcd client CA: the server refuses the client.
    let other = cluster();
    let foreign = issue_tool_client(&other.cas, OffsetDateTime::now_utc()).expect("foreign");
    let (port, server) = mtls_server(&c.a.etcd_server, &c.cas.etcd_client).await;
    let client = mtls_client(port, &c.cas.etcd_client, &foreign, "10.132.0.2").await;
    let server_err = server.await.expect("join").expect_err("server refuses");
    // Both clusters' CAs are named alike, so webpki finds a candidate issuer and the
    // signature check is what fails (BadSignature); with other names it is UnknownIssuer.
    assert!(
        server_err.contains("BadSignature") || server_err.contains("UnknownIssuer"),
        "{server_err}"
    );
    assert!(client.is_err(), "client sees the refusal");

    // The apiserver serving cert on the static IP, verified with the cluster CA (kubeconfig).
    let admin = issue_admin_client(&c.cas, OffsetDateTime::now_utc()).expect("admin");
    let (port, server) = mtls_server(&c.b.apiserver, &c.cas.cluster).await;
    mtls_client(port, &c.cas.cluster, &admin, "34.1.2.3")
        .await
        .expect("kubectl → apiserver B via static IP");
    server.await.expect("join").expect("server side");
}

/// Run a bash script in `dir` (kube-up's own tools: openssl, gzip, base64, sed).
fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn metadata_made_with_kube_ups_tools_reads_back_and_signs_replicas_that_openssl_verifies() {
    // kube-up.sh's material, made the way it made it: an RSA cluster CA and serving pair
    // (easy-rsa, here with the key in PKCS#1), one ECDSA etcd CA with a SEC1 key (cfssl) that is
    // both the peer and the etcd-apiserver CA; values encoded by `base64 | tr -d '\r\n'`, the
    // etcd CA certificate by `gzip -c | base64`, quoted by `yaml-quote`'s sed, in files shaped as
    // build-linux-kube-env writes them.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    sh(
        d,
        r#"
        q() { openssl "$@" 2>/dev/null; }
        q req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=34.1.2.3@1700000000" \
          -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        q req -newkey rsa:2048 -nodes -keyout master.pk8 -out master.csr -subj "/CN=kubernetes-master"
        q rsa -in master.pk8 -traditional -out master.key
        printf 'subjectAltName=IP:34.1.2.3,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes-master\nextendedKeyUsage=serverAuth\n' > master.ext
        q x509 -req -in master.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out master.crt -days 365 -extfile master.ext
        q ecparam -name prime256v1 -genkey -noout -out etcd-ca-key.pem
        q req -x509 -new -key etcd-ca-key.pem -out etcd-ca.pem -days 3650 -subj "/C=US/L=CA/O=kubernetes.io/CN=Kubernetes" \
          -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
        grep -q 'BEGIN RSA PRIVATE KEY' master.key && grep -q 'BEGIN EC PRIVATE KEY' etcd-ca-key.pem
        b() { base64 < "$1" | tr -d '\r\n'; }
        gz() { gzip -c "$1" | base64 | tr -d '\r\n'; }
        yq() { echo "${@:-}" | sed -e "s/'/''/g;s/^/'/i;s/$/'/i"; }
        cat > kube-env <<KUBE_ENV
CLUSTER_NAME: $(yq kubernetes)
CA_CERT: $(yq "$(b ca.crt)")
# (TODO/cloud-provider-gcp): Need to figure out how to inject this
CUSTOM_NETD_YAML: |

MASTER_CERT: $(yq "$(b master.crt)")
MASTER_KEY: $(yq "$(b master.key)")
ETCD_CA_KEY: $(yq "$(b etcd-ca-key.pem)")
ETCD_CA_CERT: $(yq "$(gz etcd-ca.pem)")
CCM_FEATURE_GATES:  $(yq "AllAlpha,AllBeta")
KUBE_SCHEDULER_RUNASUSER: 2001

KUBE_ENV
        cat > kube-master-certs <<MASTER_CERTS
CA_KEY: $(yq "$(b ca.key)")
ETCD_APISERVER_CA_KEY: $(yq "$(b etcd-ca-key.pem)")
ETCD_APISERVER_CA_CERT: $(yq "$(gz etcd-ca.pem)")
MASTER_CERTS
        "#,
    );
    let read = |name: &str| std::fs::read_to_string(d.join(name)).expect(name);
    let env = KeyValues::from_yaml(&read("kube-env")).expect("kube-up's kube-env");
    let master = KeyValues::from_yaml(&read("kube-master-certs")).expect("kube-up's kube-master-certs");
    let cas = ClusterCas::from_metadata(&env, &master).expect("kube-up's CAs");
    assert!(cas.etcd_cas_shared(), "kube-up's etcd-apiserver CA is its etcd peer CA");

    let id = identity("kubernetes-master-a1b", Ipv4Addr::new(10, 132, 0, 9));
    let leaves = issue_replica_certs(&cas, &id, OffsetDateTime::now_utc()).expect("replica leaves");
    let ca = d.join("ca.crt");
    let etcd_ca = d.join("etcd-ca.pem");
    let master_crt = write(d, "replica-master.crt", &leaves.apiserver.cert_pem);
    assert!(openssl_verify(
        &ca,
        "sslserver",
        &master_crt,
        &["-verify_ip", "10.132.0.9"]
    ));
    assert!(openssl_verify(
        &ca,
        "sslserver",
        &master_crt,
        &["-verify_ip", "34.1.2.3"]
    ));
    for (file, pair, purpose) in [
        ("peer.crt", &leaves.etcd_peer, "sslserver"),
        ("peer-client.crt", &leaves.etcd_peer, "sslclient"),
        ("server.crt", &leaves.etcd_server, "sslserver"),
        ("client.crt", &leaves.etcd_client, "sslclient"),
    ] {
        let leaf = write(d, file, &pair.cert_pem);
        assert!(openssl_verify(&etcd_ca, purpose, &leaf, &[]), "{file} {purpose}");
        assert!(!openssl_verify(&ca, purpose, &leaf, &[]), "{file} under the cluster CA");
    }
    // The replica's serving certificate certifies kube-up's MASTER_KEY: the same public key.
    let pubkey = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf8")
    };
    assert_eq!(
        pubkey(&["x509", "-in", "replica-master.crt", "-noout", "-pubkey"]),
        pubkey(&["pkey", "-in", "master.key", "-pubout"])
    );
    // Written back for a replica, kube-up's shared values stay byte for byte.
    let (mut env2, mut master2) = (env.clone(), master.clone());
    cas.write_metadata(&mut env2, &mut master2);
    assert_eq!((env2, master2), (env, master));
}
