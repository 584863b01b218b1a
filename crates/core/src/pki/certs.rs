//! Certificate profiles (SPEC §3) with rcgen, ECDSA P-256 / SHA-256.
//!
//! Inputs → outputs, no I/O: the caller passes `now`, so tests can pin time and every validity
//! window is computed from one clock reading. Fresh keys are the only hidden input.
//!
//! Profiles, in one place so the SPEC table can be checked against the code:
//! - CAs: `CA:TRUE` (critical), keyCertSign + cRLSign + digitalSignature, 10 years.
//! - replica leaves: `CA:FALSE`, digitalSignature + keyEncipherment, AKI, 5 years (kube-up's
//!   cfssl expiry of 43800h), in the shapes configure-helper expects (SPEC §3):
//!
//!   | leaf | CA | CN | SANs | EKU |
//!   |---|---|---|---|---|
//!   | apiserver serving (`MASTER_CERT`) | cluster | `MASTER_NAME` (as kube-up) | static IP, service IP, `kubernetes…`, `MASTER_NAME`, replica, internal IP, `127.0.0.1` | serverAuth |
//!   | etcd peer (`ETCD_PEER_CERT`) | etcd peer | replica | `DNS:<replica>`, `IP:127.0.0.1`, internal IP | server + client |
//!   | etcd server (`ETCD_APISERVER_SERVER_CERT`) | etcd-apiserver | `etcd-<replica>` | `DNS:etcd-<replica>`, `IP:127.0.0.1`, internal IP (¹) | server + client |
//!   | etcd client (`ETCD_APISERVER_CLIENT_CERT`) | etcd-apiserver | `client` (as kube-up) | — | client |
//!
//!   (¹) The internal IP is there only while kube-ha reaches etcd on the internal IP; once it
//!   goes over SSH to the VM's loopback (SPEC §5) it can go, leaving kube-up's exact shape.
//! - **The apiserver serving key is the cluster's, not the replica's.** configure-helper signs and
//!   verifies service-account tokens with `MASTER_KEY` (unless `SERVICEACCOUNT_CERT/KEY` are
//!   given), so a replica with a key of its own would reject every token another replica issued.
//!   Each replica gets its own serving *certificate* (its own SANs) for the shared key:
//!   [`ClusterCas::master_key`] is certified anew, never regenerated. A certificate of replica A
//!   still fails as replica B (its SANs differ), and every replica's metadata yields the same
//!   service-account public key.
//! - cluster-wide clients, shared by every replica: `KUBEAPISERVER_CERT` (CN `kube-apiserver`,
//!   apiserver → kubelet) and `KUBELET_CERT` (CN `kubelet`, `O=system:nodes`, the master kubelet
//!   registering as a Node), as kube-up makes them.
//! - kube-ha's own etcd client cert: 1 hour, so no long-lived operator credential exists.
//! - the admin kubeconfig cert: 1 year, `O=system:masters`.
//!
//! The etcd-apiserver CA: kube-up.sh's `create-etcd-apiserver-certs` reuses the etcd peer CA it
//! just made, so in clusters made by kube-up.sh both are one keypair; reading and signing work
//! either way. A first master made by kube-ha keeps two CAs: a peer certificate (which is also a
//! client certificate, and sits in kube-env) then cannot authenticate to etcd's client port,
//! which holds the data.
//!
//! Every `not_before` is back-dated (1 h; 5 min for the 1-hour tool cert) because a VM whose
//! clock lags the operator's would otherwise reject a certificate issued "in the future".
//! A leaf never outlives its CA: its `not_after` is clamped to the CA's, so a replica added late
//! in a CA's life shows the real expiry in `status` instead of one the chain cannot honour.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::kube_env::{
    self as ke, CA_CERT, CA_KEY, ETCD_APISERVER_CA_CERT, ETCD_APISERVER_CA_KEY, ETCD_APISERVER_CLIENT_CERT,
    ETCD_APISERVER_CLIENT_KEY, ETCD_APISERVER_SERVER_CERT, ETCD_APISERVER_SERVER_KEY, ETCD_CA_CERT, ETCD_CA_KEY,
    ETCD_PEER_CERT, ETCD_PEER_KEY, KUBEAPISERVER_CERT, KUBEAPISERVER_KEY, KUBELET_CERT, KUBELET_KEY, KeyValues,
    MASTER_CERT, MASTER_KEY,
};

/// CA validity: 10 years.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Replica leaf validity: kube-up's cfssl `43800h` (5 years).
pub const REPLICA_CERT_VALIDITY: Duration = Duration::hours(43800);
/// kube-ha's own etcd client certificate: short enough that a leaked one is soon useless.
pub const TOOL_CLIENT_VALIDITY: Duration = Duration::hours(1);
/// Admin kubeconfig certificate: 1 year, as kubeadm and Cluster API do.
pub const ADMIN_CLIENT_VALIDITY: Duration = Duration::days(365);
/// Back-dating of `not_before` for long-lived certs (VM clock skew).
pub const CLOCK_SKEW: Duration = Duration::hours(1);
/// Back-dating of the 1-hour tool cert (an hour of skew would halve its life).
pub const TOOL_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Common name of the cluster CA.
pub const CLUSTER_CA_CN: &str = "kubernetes-ca";
/// Common name of the etcd peer CA.
pub const ETCD_PEER_CA_CN: &str = "etcd-peer-ca";
/// Common name of the etcd client CA (kube-up's `ETCD_APISERVER_CA`).
pub const ETCD_CLIENT_CA_CN: &str = "etcd-client-ca";
/// Common name of the apiserver's client certificate towards kubelets (`KUBEAPISERVER_CERT`).
pub const KUBEAPISERVER_CLIENT_CN: &str = "kube-apiserver";
/// Common name of every replica's apiserver → etcd client certificate (kube-up's cfssl `client`).
pub const ETCD_CLIENT_CN: &str = "client";
/// Common name of the master kubelet's client certificate (`KUBELET_CERT`).
pub const KUBELET_CLIENT_CN: &str = "kubelet";
/// Organization of the kubelet certificate: the group the Node authorizer knows.
pub const KUBELET_CLIENT_ORG: &str = "system:nodes";
/// Common name of kube-ha's own etcd client certificate.
pub const TOOL_CLIENT_CN: &str = "kube-ha";
/// Common name of the admin kubeconfig certificate (kube-up's `kubecfg`).
pub const ADMIN_CLIENT_CN: &str = "kubecfg";
/// Organization of the admin certificate: the group RBAC grants cluster-admin.
pub const ADMIN_CLIENT_ORG: &str = "system:masters";

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    /// `-----BEGIN CERTIFICATE-----` …
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8) …
    pub key_pem: String,
}

/// The cluster's shared signing material, made once by the first `up` and never regenerated:
/// the three CAs and the apiserver serving key (which is also the service-account key).
#[derive(Clone, Debug)]
pub struct ClusterCas {
    /// Cluster CA (`CA_CERT`/`CA_KEY`): signs apiserver serving certs and the admin cert.
    pub cluster: CertPair,
    /// etcd peer CA (`ETCD_CA_CERT`/`ETCD_CA_KEY`).
    pub etcd_peer: CertPair,
    /// etcd client CA (`ETCD_APISERVER_CA_CERT`/`_KEY`): signs etcd server and client certs. The
    /// same keypair as `etcd_peer` in clusters made by kube-up.sh.
    pub etcd_client: CertPair,
    /// `MASTER_KEY` (PEM): every replica's serving certificate certifies this one key, because
    /// configure-helper signs and verifies service-account tokens with it.
    pub master_key: String,
}

/// Client certificates shared by every replica of a cluster (made with its first master).
#[derive(Clone, Debug)]
pub struct ClusterClients {
    /// kube-apiserver → kubelet (`KUBEAPISERVER_CERT`/`_KEY`).
    pub kube_apiserver: CertPair,
    /// The master kubelet registering as a Node (`KUBELET_CERT`/`_KEY`).
    pub kubelet: CertPair,
}

/// Everything that goes into one replica's certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaIdentity {
    /// `MASTER_NAME`.
    pub master_name: String,
    /// This replica's VM name.
    pub replica: String,
    /// Its reserved internal IP.
    pub internal_ip: Ipv4Addr,
    /// The cluster static IP.
    pub static_ip: Ipv4Addr,
    /// The `kubernetes` service IP.
    pub service_ip: Ipv4Addr,
    /// `DNS_DOMAIN`.
    pub dns_domain: String,
}

/// One replica's own leaf certificates.
#[derive(Clone, Debug)]
pub struct ReplicaCerts {
    /// apiserver serving (`MASTER_CERT`/`MASTER_KEY`).
    pub apiserver: CertPair,
    /// etcd peer (`ETCD_PEER_CERT`/`_KEY`).
    pub etcd_peer: CertPair,
    /// etcd server, main and events (`ETCD_APISERVER_SERVER_CERT`/`_KEY`).
    pub etcd_server: CertPair,
    /// apiserver → etcd client (`ETCD_APISERVER_CLIENT_CERT`/`_KEY`).
    pub etcd_client: CertPair,
}

impl CertPair {
    /// This certificate's notAfter.
    pub fn not_after(&self) -> Result<OffsetDateTime> {
        not_after(&self.cert_pem)
    }

    /// Fails unless the key is the private half of the certificate's public key: a mismatched
    /// pair read from metadata would sign certificates that never verify.
    pub fn check_key_matches(&self) -> Result<()> {
        let key = KeyPair::from_pem(&self.key_pem).context("private key is not PKCS#8 PEM")?;
        let der = cert_der(&self.cert_pem)?;
        let (_, cert) = X509Certificate::from_der(&der).context("certificate is not X.509")?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!("private key does not belong to the certificate {}", common_name(&cert));
        }
        Ok(())
    }

    /// Read a pair stored base64 under two keys of a metadata map.
    fn read(kv: &KeyValues, cert_key: &str, key_key: &str) -> Result<CertPair> {
        Ok(CertPair {
            cert_pem: kv.pem(cert_key)?,
            key_pem: kv.pem(key_key)?,
        })
    }

    /// Store a pair under two keys of a metadata map, in their keys' encodings.
    fn write(&self, kv: &mut KeyValues, cert_key: &str, key_key: &str) {
        kv.set_pem(cert_key, &self.cert_pem);
        kv.set_pem(key_key, &self.key_pem);
    }

    /// [`CertPair::write`], keeping values that already hold this pair in the contract encoding.
    fn ensure(&self, kv: &mut KeyValues, cert_key: &str, key_key: &str) {
        kv.ensure_pem(cert_key, &self.cert_pem);
        kv.ensure_pem(key_key, &self.key_pem);
    }
}

impl ClusterCas {
    /// Fresh CAs (10 years) and a fresh serving key. `cluster_name` goes into each CA's `O`, so a
    /// CA found on disk or in a kubeconfig says which cluster it belongs to. The etcd peer and
    /// etcd-apiserver CAs are two keypairs (see the module doc).
    pub fn generate(cluster_name: &str, now: OffsetDateTime) -> Result<ClusterCas> {
        Ok(ClusterCas {
            cluster: self_signed_ca(CLUSTER_CA_CN, cluster_name, now)?,
            etcd_peer: self_signed_ca(ETCD_PEER_CA_CN, cluster_name, now)?,
            etcd_client: self_signed_ca(ETCD_CLIENT_CA_CN, cluster_name, now)?,
            master_key: KeyPair::generate()
                .context("generating the apiserver serving key")?
                .serialize_pem(),
        })
    }

    /// Read the shared material back from a replica's metadata: written by kube-ha (now or before
    /// the contract form) or by kube-up.sh (RSA cluster CA and `MASTER_KEY`, etcd-apiserver CA =
    /// etcd peer CA, `ETCD_CA_KEY` in kube-env). Each key must match its certificate.
    pub fn from_metadata(kube_env: &KeyValues, master_certs: &KeyValues) -> Result<ClusterCas> {
        let cluster = CertPair {
            cert_pem: kube_env.pem(CA_CERT)?,
            key_pem: master_certs.pem(CA_KEY)?,
        };
        let etcd_peer = CertPair {
            cert_pem: kube_env.pem(ETCD_CA_CERT)?,
            key_pem: ke::etcd_ca_key(kube_env, master_certs)?,
        };
        let etcd_client = CertPair::read(master_certs, ETCD_APISERVER_CA_CERT, ETCD_APISERVER_CA_KEY)?;
        for (name, pair) in [
            ("cluster CA", &cluster),
            ("etcd peer CA", &etcd_peer),
            ("etcd client CA", &etcd_client),
        ] {
            pair.check_key_matches()
                .with_context(|| format!("{name} in metadata"))?;
        }
        let master_key = kube_env.pem(MASTER_KEY)?;
        KeyPair::from_pem(&master_key).with_context(|| format!("{MASTER_KEY} is not a private key"))?;
        if kube_env.get(MASTER_CERT).is_some() {
            CertPair {
                cert_pem: kube_env.pem(MASTER_CERT)?,
                key_pem: master_key.clone(),
            }
            .check_key_matches()
            .with_context(|| format!("{MASTER_CERT} and {MASTER_KEY} in metadata"))?;
        }
        Ok(ClusterCas {
            cluster,
            etcd_peer,
            etcd_client,
            master_key,
        })
    }

    /// Store the shared material where the contract has it: `CA_CERT`, `ETCD_CA_CERT`,
    /// `ETCD_CA_KEY` and `MASTER_KEY` in kube-env; `CA_KEY` and `ETCD_APISERVER_CA_*` in
    /// kube-master-certs. Values that already hold the same PEM in the contract encoding are kept
    /// as they are (a replica copies kube-up.sh's bytes); the old form is rewritten, and an
    /// `ETCD_CA_KEY` left in kube-master-certs is dropped there.
    pub fn write_metadata(&self, kube_env: &mut KeyValues, master_certs: &mut KeyValues) {
        kube_env.ensure_pem(CA_CERT, &self.cluster.cert_pem);
        master_certs.ensure_pem(CA_KEY, &self.cluster.key_pem);
        self.etcd_peer.ensure(kube_env, ETCD_CA_CERT, ETCD_CA_KEY);
        if master_certs.remove(ETCD_CA_KEY).is_some() {
            tracing::debug!(
                "{ETCD_CA_KEY} moved from {} to {}",
                ke::Map::MasterCerts,
                ke::Map::KubeEnv
            );
        }
        self.etcd_client
            .ensure(master_certs, ETCD_APISERVER_CA_CERT, ETCD_APISERVER_CA_KEY);
        kube_env.ensure_pem(MASTER_KEY, &self.master_key);
    }

    /// Whether the etcd-apiserver CA is the etcd peer CA (clusters made by kube-up.sh).
    pub fn etcd_cas_shared(&self) -> bool {
        self.etcd_peer.cert_pem == self.etcd_client.cert_pem
    }
}

impl ClusterClients {
    /// Store them in kube-master-certs (`KUBEAPISERVER_*`) and kube-env (`KUBELET_*`), as kube-up.
    pub fn write_metadata(&self, kube_env: &mut KeyValues, master_certs: &mut KeyValues) {
        self.kube_apiserver
            .write(master_certs, KUBEAPISERVER_CERT, KUBEAPISERVER_KEY);
        self.kubelet.write(kube_env, KUBELET_CERT, KUBELET_KEY);
    }
}

impl ReplicaCerts {
    /// Store a replica's leaves into its metadata maps.
    pub fn write_metadata(&self, kube_env: &mut KeyValues, master_certs: &mut KeyValues) {
        self.apiserver.write(kube_env, MASTER_CERT, MASTER_KEY);
        self.etcd_peer.write(kube_env, ETCD_PEER_CERT, ETCD_PEER_KEY);
        self.etcd_server
            .write(master_certs, ETCD_APISERVER_SERVER_CERT, ETCD_APISERVER_SERVER_KEY);
        self.etcd_client
            .write(master_certs, ETCD_APISERVER_CLIENT_CERT, ETCD_APISERVER_CLIENT_KEY);
    }

    /// Read a replica's leaves back.
    pub fn from_metadata(kube_env: &KeyValues, master_certs: &KeyValues) -> Result<ReplicaCerts> {
        Ok(ReplicaCerts {
            apiserver: CertPair::read(kube_env, MASTER_CERT, MASTER_KEY)?,
            etcd_peer: CertPair::read(kube_env, ETCD_PEER_CERT, ETCD_PEER_KEY)?,
            etcd_server: CertPair::read(master_certs, ETCD_APISERVER_SERVER_CERT, ETCD_APISERVER_SERVER_KEY)?,
            etcd_client: CertPair::read(master_certs, ETCD_APISERVER_CLIENT_CERT, ETCD_APISERVER_CLIENT_KEY)?,
        })
    }

    /// Each leaf with the metadata key of its certificate, for `status` (expiry per cert).
    pub fn named(&self) -> [(&'static str, &CertPair); 4] {
        [
            (MASTER_CERT, &self.apiserver),
            (ETCD_PEER_CERT, &self.etcd_peer),
            (ETCD_APISERVER_SERVER_CERT, &self.etcd_server),
            (ETCD_APISERVER_CLIENT_CERT, &self.etcd_client),
        ]
    }
}

/// Issue a replica's leaves, signed by the cluster CAs, in the shapes of the module doc's table.
/// The serving certificate certifies the cluster's [`ClusterCas::master_key`].
pub fn issue_replica_certs(cas: &ClusterCas, id: &ReplicaIdentity, now: OffsetDateTime) -> Result<ReplicaCerts> {
    let window = Window::back_dated(now, CLOCK_SKEW, REPLICA_CERT_VALIDITY);
    let loopback = Ipv4Addr::LOCALHOST;
    let apiserver_sans = [
        San::Ip(id.static_ip),
        San::Ip(id.service_ip),
        San::Dns("kubernetes".to_string()),
        San::Dns("kubernetes.default".to_string()),
        San::Dns("kubernetes.default.svc".to_string()),
        San::Dns(format!("kubernetes.default.svc.{}", id.dns_domain)),
        San::Dns(id.master_name.clone()),
        San::Dns(id.replica.clone()),
        San::Ip(id.internal_ip),
        San::Ip(loopback),
    ];
    let etcd_server = format!("etcd-{}", id.replica);
    let server = [ExtendedKeyUsagePurpose::ServerAuth];
    let both = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let client = [ExtendedKeyUsagePurpose::ClientAuth];
    let master_key =
        KeyPair::from_pem(&cas.master_key).with_context(|| format!("{MASTER_KEY} is not a private key"))?;
    Ok(ReplicaCerts {
        apiserver: CertPair {
            cert_pem: sign_leaf(
                &cas.cluster,
                &master_key,
                &Subject::cn(&id.master_name),
                &apiserver_sans,
                &server,
                window,
            )
            .context("apiserver serving certificate")?,
            key_pem: cas.master_key.clone(),
        },
        etcd_peer: issue_leaf(
            &cas.etcd_peer,
            &Subject::cn(&id.replica),
            &[San::Dns(id.replica.clone()), San::Ip(loopback), San::Ip(id.internal_ip)],
            &both,
            window,
        )
        .context("etcd peer certificate")?,
        etcd_server: issue_leaf(
            &cas.etcd_client,
            &Subject::cn(&etcd_server),
            &[
                San::Dns(etcd_server.clone()),
                San::Ip(loopback),
                San::Ip(id.internal_ip),
            ],
            &both,
            window,
        )
        .context("etcd server certificate")?,
        etcd_client: issue_leaf(&cas.etcd_client, &Subject::cn(ETCD_CLIENT_CN), &[], &client, window)
            .context("etcd client certificate")?,
    })
}

/// The cluster-wide client certificates of a first master (cluster CA, 5 years, clientAuth).
pub fn issue_cluster_clients(cas: &ClusterCas, now: OffsetDateTime) -> Result<ClusterClients> {
    let window = Window::back_dated(now, CLOCK_SKEW, REPLICA_CERT_VALIDITY);
    let client = [ExtendedKeyUsagePurpose::ClientAuth];
    Ok(ClusterClients {
        kube_apiserver: issue_leaf(
            &cas.cluster,
            &Subject::cn(KUBEAPISERVER_CLIENT_CN),
            &[],
            &client,
            window,
        )
        .context("kube-apiserver client certificate")?,
        kubelet: issue_leaf(
            &cas.cluster,
            &Subject {
                cn: KUBELET_CLIENT_CN.to_string(),
                org: Some(KUBELET_CLIENT_ORG.to_string()),
            },
            &[],
            &client,
            window,
        )
        .context("kubelet client certificate")?,
    })
}

/// kube-ha's own etcd client certificate: 1 hour, clientAuth, signed by the etcd client CA.
pub fn issue_tool_client(cas: &ClusterCas, now: OffsetDateTime) -> Result<CertPair> {
    issue_leaf(
        &cas.etcd_client,
        &Subject::cn(TOOL_CLIENT_CN),
        &[],
        &[ExtendedKeyUsagePurpose::ClientAuth],
        Window::back_dated(now, TOOL_CLOCK_SKEW, TOOL_CLIENT_VALIDITY),
    )
    .context("kube-ha etcd client certificate")
}

/// The admin client certificate of the kubeconfig (cluster CA, `O=system:masters`).
pub fn issue_admin_client(cas: &ClusterCas, now: OffsetDateTime) -> Result<CertPair> {
    issue_leaf(
        &cas.cluster,
        &Subject {
            cn: ADMIN_CLIENT_CN.to_string(),
            org: Some(ADMIN_CLIENT_ORG.to_string()),
        },
        &[],
        &[ExtendedKeyUsagePurpose::ClientAuth],
        Window::back_dated(now, CLOCK_SKEW, ADMIN_CLIENT_VALIDITY),
    )
    .context("admin client certificate")
}

/// A certificate's notAfter.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime> {
    let der = cert_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der).context("certificate is not X.509")?;
    Ok(cert.validity().not_after.to_datetime())
}

/// A validity window.
#[derive(Clone, Copy, Debug)]
struct Window {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Window {
    /// `[now - skew, now + validity]`.
    fn back_dated(now: OffsetDateTime, skew: Duration, validity: Duration) -> Window {
        Window {
            not_before: now - skew,
            not_after: now + validity,
        }
    }
}

/// A subject: CN and an optional O.
struct Subject {
    cn: String,
    org: Option<String>,
}

impl Subject {
    fn cn(cn: &str) -> Subject {
        Subject {
            cn: cn.to_string(),
            org: None,
        }
    }

    fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        if let Some(org) = &self.org {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, self.cn.as_str());
        dn
    }
}

/// A subject alternative name, typed so an IP can never end up as a DNS string.
#[derive(Clone, Debug, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(Ipv4Addr),
}

/// rcgen SANs in order, without duplicates (e.g. the first replica's name is `MASTER_NAME`).
fn san_list(sans: &[San]) -> Result<Vec<SanType>> {
    let mut unique: Vec<&San> = Vec::with_capacity(sans.len());
    for san in sans {
        if !unique.contains(&san) {
            unique.push(san);
        }
    }
    unique
        .into_iter()
        .map(|san| match san {
            San::Ip(ip) => Ok(SanType::IpAddress(IpAddr::V4(*ip))),
            San::Dns(name) => Ok(SanType::DnsName(
                name.as_str()
                    .try_into()
                    .with_context(|| format!("{name:?} is not a valid DNS name"))?,
            )),
        })
        .collect()
}

/// A self-signed CA.
fn self_signed_ca(cn: &str, cluster_name: &str, now: OffsetDateTime) -> Result<CertPair> {
    let key = KeyPair::generate().context("generating a CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = Subject {
        cn: cn.to_string(),
        org: (!cluster_name.is_empty()).then(|| cluster_name.to_string()),
    }
    .distinguished_name();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let window = Window::back_dated(now, CLOCK_SKEW, CA_VALIDITY);
    params.not_before = window.not_before;
    params.not_after = window.not_after;
    let cert = params.self_signed(&key).with_context(|| format!("self-signing {cn}"))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A leaf signed by `ca`, with a fresh key.
fn issue_leaf(
    ca: &CertPair,
    subject: &Subject,
    sans: &[San],
    ekus: &[ExtendedKeyUsagePurpose],
    window: Window,
) -> Result<CertPair> {
    let key = KeyPair::generate().context("generating a key")?;
    Ok(CertPair {
        cert_pem: sign_leaf(ca, &key, subject, sans, ekus, window)?,
        key_pem: key.serialize_pem(),
    })
}

/// A leaf certifying `key`'s public key, signed by `ca`; returns the certificate PEM.
fn sign_leaf(
    ca: &CertPair,
    key: &KeyPair,
    subject: &Subject,
    sans: &[San],
    ekus: &[ExtendedKeyUsagePurpose],
    window: Window,
) -> Result<String> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("CA key is not PKCS#8 PEM")?;
    let ca_not_after = not_after(&ca.cert_pem)?;
    if ca_not_after <= window.not_before {
        bail!("the CA expired at {ca_not_after}");
    }
    // Issuer::from_ca_cert_pem takes the CA's subject and its subject key identifier from the
    // certificate, so the leaf's issuer name and AKI match the CA exactly.
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("CA certificate")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name();
    params.subject_alt_names = san_list(sans)?;
    params.extended_key_usages = ekus.to_vec();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.not_before = window.not_before;
    params.not_after = window.not_after.min(ca_not_after);
    let cert = params
        .signed_by(key, &issuer)
        .with_context(|| format!("signing {}", subject.cn))?;
    Ok(cert.pem())
}

/// The DER of the first certificate in a PEM text.
fn cert_der(cert_pem: &str) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    if pem.label != "CERTIFICATE" {
        bail!("PEM block is {:?}, not CERTIFICATE", pem.label);
    }
    Ok(pem.contents)
}

/// A certificate's first CN, for messages.
fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("(no CN)")
        .to_string()
}

/// For the crate's tests: replica `replica` of cluster `kubernetes-master`, internal IP
/// `10.132.0.<last>`, static IP `34.1.2.3`, service IP `10.0.0.1`, `cluster.local`.
#[cfg(test)]
pub(crate) fn test_identity(replica: &str, last: u8) -> ReplicaIdentity {
    ReplicaIdentity {
        master_name: "kubernetes-master".into(),
        replica: replica.into(),
        internal_ip: Ipv4Addr::new(10, 132, 0, last),
        static_ip: Ipv4Addr::new(34, 1, 2, 3),
        service_ip: Ipv4Addr::new(10, 0, 0, 1),
        dns_domain: "cluster.local".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_identity as identity;
    use super::*;
    use std::collections::BTreeSet;
    use x509_parser::extensions::GeneralName;

    fn now() -> OffsetDateTime {
        // 2026-03-01 12:00:00 UTC
        OffsetDateTime::from_unix_timestamp(1_772_366_400).expect("valid timestamp")
    }

    /// What a test wants to know about one certificate, read back with x509-parser.
    #[derive(Debug)]
    struct Parsed {
        subject: String,
        issuer: String,
        sans: BTreeSet<String>,
        san_count: usize,
        server_auth: bool,
        client_auth: bool,
        ca: Option<(bool, bool)>,
        key_cert_sign: bool,
        key_encipherment: bool,
        has_aki: bool,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    }

    fn parse(pem: &str) -> Parsed {
        let der = cert_der(pem).expect("pem");
        let (_, c) = X509Certificate::from_der(&der).expect("x509");
        let mut sans = BTreeSet::new();
        let mut san_count = 0;
        if let Some(ext) = c.subject_alternative_name().expect("san ext") {
            for n in &ext.value.general_names {
                san_count += 1;
                sans.insert(match n {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::IPAddress(b) => {
                        let a: [u8; 4] = (*b).try_into().expect("ipv4");
                        format!("IP:{}", Ipv4Addr::from(a))
                    }
                    other => format!("{other:?}"),
                });
            }
        }
        let eku = c.extended_key_usage().expect("eku ext");
        let ku = c.key_usage().expect("ku ext").expect("key usage present");
        Parsed {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            sans,
            san_count,
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            ca: c.basic_constraints().expect("bc ext").map(|b| (b.value.ca, b.critical)),
            key_cert_sign: ku.value.key_cert_sign(),
            key_encipherment: ku.value.key_encipherment(),
            has_aki: c.iter_extensions().any(|e| {
                matches!(
                    e.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(_)
                )
            }),
            not_before: c.validity().not_before.to_datetime(),
            not_after: c.validity().not_after.to_datetime(),
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cas_are_critical_ca_true_self_signed_for_ten_years() {
        let cas = ClusterCas::generate("kubernetes", now()).expect("cas");
        for (pair, cn) in [
            (&cas.cluster, CLUSTER_CA_CN),
            (&cas.etcd_peer, ETCD_PEER_CA_CN),
            (&cas.etcd_client, ETCD_CLIENT_CA_CN),
        ] {
            let p = parse(&pair.cert_pem);
            assert_eq!(p.subject, format!("O=kubernetes, CN={cn}"));
            assert_eq!(p.issuer, p.subject, "self-signed");
            assert_eq!(p.ca, Some((true, true)), "CA:TRUE critical");
            assert!(p.key_cert_sign);
            assert_eq!(p.not_before, now() - Duration::hours(1));
            assert_eq!(p.not_after, now() + Duration::days(3650));
            assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
    }

    #[test]
    fn replica_leaves_follow_the_spec_table() {
        let cas = ClusterCas::generate("kubernetes", now()).expect("cas");
        let id = identity("kubernetes-master-a1b", 7);
        let certs = issue_replica_certs(&cas, &id, now()).expect("issue");
        let cluster_ca = parse(&cas.cluster.cert_pem).subject;
        let peer_ca = parse(&cas.etcd_peer.cert_pem).subject;
        let client_ca = parse(&cas.etcd_client.cert_pem).subject;

        // (cert, CN, issuer, SANs, serverAuth, clientAuth)
        type Row<'a> = (&'a CertPair, &'a str, &'a str, BTreeSet<String>, bool, bool);
        let rows: [Row<'_>; 4] = [
            (
                &certs.apiserver,
                "CN=kubernetes-master",
                &cluster_ca,
                set(&[
                    "IP:34.1.2.3",
                    "IP:10.0.0.1",
                    "DNS:kubernetes",
                    "DNS:kubernetes.default",
                    "DNS:kubernetes.default.svc",
                    "DNS:kubernetes.default.svc.cluster.local",
                    "DNS:kubernetes-master",
                    "DNS:kubernetes-master-a1b",
                    "IP:10.132.0.7",
                    "IP:127.0.0.1",
                ]),
                true,
                false,
            ),
            (
                &certs.etcd_peer,
                "CN=kubernetes-master-a1b",
                &peer_ca,
                set(&["IP:10.132.0.7", "DNS:kubernetes-master-a1b", "IP:127.0.0.1"]),
                true,
                true,
            ),
            (
                &certs.etcd_server,
                "CN=etcd-kubernetes-master-a1b",
                &client_ca,
                set(&["DNS:etcd-kubernetes-master-a1b", "IP:127.0.0.1", "IP:10.132.0.7"]),
                true,
                true,
            ),
            (&certs.etcd_client, "CN=client", &client_ca, set(&[]), false, true),
        ];
        for (pair, subject, issuer, sans, server_auth, client_auth) in rows {
            let p = parse(&pair.cert_pem);
            assert_eq!(p.subject, subject);
            assert_eq!(&p.issuer, issuer, "{subject}");
            assert_eq!(p.sans, sans, "{subject}");
            assert_eq!(p.san_count, sans.len(), "{subject}: no duplicate SANs");
            assert_eq!(p.server_auth, server_auth, "{subject}");
            assert_eq!(p.client_auth, client_auth, "{subject}");
            assert_eq!(p.ca, Some((false, true)), "{subject}: CA:FALSE");
            assert!(!p.key_cert_sign && p.key_encipherment, "{subject}");
            assert!(p.has_aki, "{subject}");
            assert_eq!(p.not_before, now() - Duration::hours(1));
            assert_eq!(p.not_after, now() + Duration::hours(43800));
            pair.check_key_matches().expect("key matches");
        }
    }

    #[test]
    fn first_replica_lists_its_name_once() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let id = identity("kubernetes-master", 2);
        let certs = issue_replica_certs(&cas, &id, now()).expect("issue");
        let p = parse(&certs.apiserver.cert_pem);
        assert_eq!(p.san_count, 9);
        assert!(p.sans.contains("DNS:kubernetes-master"));
    }

    #[test]
    fn tool_and_admin_clients() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let tool = parse(&issue_tool_client(&cas, now()).expect("tool").cert_pem);
        assert_eq!(tool.subject, "CN=kube-ha");
        assert_eq!(tool.issuer, parse(&cas.etcd_client.cert_pem).subject);
        assert!(tool.client_auth && !tool.server_auth);
        assert_eq!(tool.not_before, now() - Duration::minutes(5));
        assert_eq!(tool.not_after, now() + Duration::hours(1));
        assert!(tool.sans.is_empty());

        let admin = parse(&issue_admin_client(&cas, now()).expect("admin").cert_pem);
        assert_eq!(admin.subject, "O=system:masters, CN=kubecfg");
        assert_eq!(admin.issuer, parse(&cas.cluster.cert_pem).subject);
        assert!(admin.client_auth && !admin.server_auth);
        assert_eq!(admin.not_after, now() + Duration::days(365));
    }

    #[test]
    fn metadata_round_trip_uses_the_spec_keys() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let certs = issue_replica_certs(&cas, &identity("kubernetes-master", 2), now()).expect("issue");
        let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
        cas.write_metadata(&mut env, &mut master);
        certs.write_metadata(&mut env, &mut master);
        let env_keys: Vec<&str> = env.0.keys().map(String::as_str).collect();
        let master_keys: Vec<&str> = master.0.keys().map(String::as_str).collect();
        assert_eq!(
            env_keys,
            [
                CA_CERT,
                ETCD_CA_CERT,
                ETCD_CA_KEY,
                ETCD_PEER_CERT,
                ETCD_PEER_KEY,
                MASTER_CERT,
                MASTER_KEY
            ]
        );
        assert_eq!(
            master_keys,
            [
                CA_KEY,
                ETCD_APISERVER_CA_CERT,
                ETCD_APISERVER_CA_KEY,
                ETCD_APISERVER_CLIENT_CERT,
                ETCD_APISERVER_CLIENT_KEY,
                ETCD_APISERVER_SERVER_CERT,
                ETCD_APISERVER_SERVER_KEY,
            ]
        );
        // Values are base64 of PEM, not PEM (kube-up's convention); the pair passes the contract.
        assert!(!env.require(CA_CERT).expect("ca").contains("BEGIN"));
        ke::check_vm_metadata(&env, &master).expect("contract");

        let env = KeyValues::from_yaml(&env.to_yaml()).expect("yaml");
        let master = KeyValues::from_yaml(&master.to_yaml()).expect("yaml");
        let cas2 = ClusterCas::from_metadata(&env, &master).expect("cas back");
        assert_eq!(cas2.cluster, cas.cluster);
        assert_eq!(cas2.etcd_peer, cas.etcd_peer);
        assert_eq!(cas2.etcd_client, cas.etcd_client);
        let certs2 = ReplicaCerts::from_metadata(&env, &master).expect("certs back");
        assert_eq!(certs2.apiserver, certs.apiserver);
        assert_eq!(certs2.etcd_peer, certs.etcd_peer);
        assert_eq!(certs2.etcd_server, certs.etcd_server);
        assert_eq!(certs2.etcd_client, certs.etcd_client);
    }

    #[test]
    fn from_metadata_refuses_a_key_of_another_ca() {
        let a = ClusterCas::generate("k", now()).expect("a");
        let b = ClusterCas::generate("k", now()).expect("b");
        let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
        a.write_metadata(&mut env, &mut master);
        env.set_pem(ETCD_CA_KEY, &b.etcd_peer.key_pem);
        let err = ClusterCas::from_metadata(&env, &master).expect_err("mismatch");
        assert!(format!("{err:#}").contains("etcd peer CA"), "{err:#}");
        env.set_pem(ETCD_CA_KEY, &a.etcd_peer.key_pem);

        let leaves = issue_replica_certs(&a, &identity("m", 2), now()).expect("issue");
        env.set_pem(MASTER_CERT, &leaves.apiserver.cert_pem);
        env.set_pem(MASTER_KEY, &b.master_key);
        let err = ClusterCas::from_metadata(&env, &master).expect_err("serving key mismatch");
        assert!(format!("{err:#}").contains("MASTER_CERT and MASTER_KEY"), "{err:#}");
        env.set_pem(MASTER_KEY, &a.master_key);

        master.0.remove(CA_KEY);
        let err = ClusterCas::from_metadata(&env, &master).expect_err("missing");
        assert!(format!("{err:#}").contains("CA_KEY is missing"), "{err:#}");
    }

    #[test]
    fn every_replica_certifies_the_clusters_serving_key_with_its_own_sans() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let a = issue_replica_certs(&cas, &identity("kubernetes-master", 2), now()).expect("a");
        let b = issue_replica_certs(&cas, &identity("kubernetes-master-b2c", 3), now()).expect("b");
        assert_eq!(a.apiserver.key_pem, cas.master_key);
        assert_eq!(b.apiserver.key_pem, cas.master_key);
        assert_ne!(a.apiserver.cert_pem, b.apiserver.cert_pem);
        a.apiserver.check_key_matches().expect("a certifies the shared key");
        b.apiserver.check_key_matches().expect("b certifies the shared key");
        assert!(parse(&b.apiserver.cert_pem).sans.contains("IP:10.132.0.3"));
        assert!(!parse(&a.apiserver.cert_pem).sans.contains("IP:10.132.0.3"));
        // Every other leaf has a key of its own.
        assert_ne!(a.etcd_peer.key_pem, b.etcd_peer.key_pem);
        assert_ne!(a.etcd_server.key_pem, b.etcd_server.key_pem);

        // Read back from metadata, the next replica still gets the same key.
        let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
        cas.write_metadata(&mut env, &mut master);
        a.write_metadata(&mut env, &mut master);
        let back = ClusterCas::from_metadata(&env, &master).expect("read back");
        assert_eq!(back.master_key, cas.master_key);
        let c = issue_replica_certs(&back, &identity("kubernetes-master-x9z", 4), now()).expect("c");
        assert_eq!(c.apiserver.key_pem, cas.master_key);
    }

    /// A self-signed RSA CA as easy-rsa makes kube-up's cluster CA.
    fn rsa_ca(cn: &str) -> CertPair {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("rsa key");
        let mut params = CertificateParams::default();
        params.distinguished_name = Subject::cn(cn).distinguished_name();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now() - Duration::days(1);
        params.not_after = now() + Duration::days(3650);
        CertPair {
            cert_pem: params.self_signed(&key).expect("self-sign").pem(),
            key_pem: key.serialize_pem(),
        }
    }

    #[test]
    fn clusters_made_by_kube_up_read_back_with_one_etcd_ca_and_rsa_keys() {
        // kube-up.sh's shape: RSA cluster CA and MASTER_KEY (easy-rsa), one ECDSA etcd CA serving
        // as both the peer and the etcd-apiserver CA (cfssl), ETCD_CA_KEY in kube-env.
        let cluster = rsa_ca("34.1.2.3@1700000000");
        let etcd = self_signed_ca("Kubernetes", "kubernetes.io", now()).expect("etcd CA");
        let master_key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("rsa");
        let master_cert = sign_leaf(
            &cluster,
            &master_key,
            &Subject::cn("kubernetes-master"),
            &[
                San::Ip(Ipv4Addr::new(34, 1, 2, 3)),
                San::Dns("kubernetes-master".into()),
            ],
            &[ExtendedKeyUsagePurpose::ServerAuth],
            Window::back_dated(now(), CLOCK_SKEW, REPLICA_CERT_VALIDITY),
        )
        .expect("kube-up's MASTER_CERT");
        let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
        env.set_pem(CA_CERT, &cluster.cert_pem);
        master.set_pem(CA_KEY, &cluster.key_pem);
        env.set_pem(MASTER_CERT, &master_cert);
        env.set_pem(MASTER_KEY, &master_key.serialize_pem());
        env.set_pem(ETCD_CA_CERT, &etcd.cert_pem);
        env.set_pem(ETCD_CA_KEY, &etcd.key_pem);
        master.set_pem(ETCD_APISERVER_CA_CERT, &etcd.cert_pem);
        master.set_pem(ETCD_APISERVER_CA_KEY, &etcd.key_pem);

        let cas = ClusterCas::from_metadata(&env, &master).expect("kube-up's metadata");
        assert!(cas.etcd_cas_shared());
        let certs = issue_replica_certs(&cas, &identity("kubernetes-master-a1b", 7), now()).expect("sign");
        assert_eq!(
            parse(&certs.apiserver.cert_pem).issuer,
            parse(&cluster.cert_pem).subject
        );
        assert_eq!(certs.apiserver.key_pem, cas.master_key, "kube-up's serving key, kept");
        for leaf in [&certs.etcd_peer, &certs.etcd_server, &certs.etcd_client] {
            assert_eq!(parse(&leaf.cert_pem).issuer, parse(&etcd.cert_pem).subject);
        }

        // Written back, the shared values are kept byte for byte.
        let before = (env.clone(), master.clone());
        cas.write_metadata(&mut env, &mut master);
        assert_eq!((env, master), before);
    }

    #[test]
    fn cluster_clients_are_client_certificates_of_the_cluster_ca() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let clients = issue_cluster_clients(&cas, now()).expect("clients");
        let cluster_ca = parse(&cas.cluster.cert_pem).subject;
        for (pair, subject) in [
            (&clients.kube_apiserver, "CN=kube-apiserver"),
            (&clients.kubelet, "O=system:nodes, CN=kubelet"),
        ] {
            let p = parse(&pair.cert_pem);
            assert_eq!(p.subject, subject);
            assert_eq!(p.issuer, cluster_ca);
            assert!(p.client_auth && !p.server_auth, "{subject}");
            assert!(p.sans.is_empty(), "{subject}");
        }
        let (mut env, mut master) = (KeyValues::default(), KeyValues::default());
        clients.write_metadata(&mut env, &mut master);
        assert_eq!(
            master.pem(KUBEAPISERVER_CERT).expect("cert"),
            clients.kube_apiserver.cert_pem
        );
        assert_eq!(env.pem(KUBELET_KEY).expect("key"), clients.kubelet.key_pem);
    }

    #[test]
    fn leaves_never_outlive_their_ca() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let late = now() + Duration::days(3000);
        let certs = issue_replica_certs(&cas, &identity("m", 2), late).expect("issue");
        assert_eq!(
            not_after(&certs.apiserver.cert_pem).expect("not_after"),
            now() + CA_VALIDITY
        );
        let expired = now() + Duration::days(3700);
        assert!(issue_tool_client(&cas, expired).is_err());
    }

    #[test]
    fn not_after_reads_the_certificate() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        assert_eq!(cas.cluster.not_after().expect("not_after"), now() + CA_VALIDITY);
        assert!(not_after("garbage").is_err());
        assert!(not_after(&cas.cluster.key_pem).is_err());
    }

    #[test]
    fn bad_dns_names_are_errors_not_panics() {
        let cas = ClusterCas::generate("k", now()).expect("cas");
        let mut id = identity("m", 2);
        id.dns_domain = "clüster.local".into();
        assert!(issue_replica_certs(&cas, &id, now()).is_err());
    }
}
