//! Certificate profiles (SPEC §3) with rcgen, ECDSA P-256. (Interface; bodies land with the PKI work.)

use std::net::Ipv4Addr;

use anyhow::Result;
use time::OffsetDateTime;

use super::kube_env::KeyValues;

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    /// `-----BEGIN CERTIFICATE-----` …
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8) …
    pub key_pem: String,
}

/// The three CAs, made once by the first `up` and never regenerated.
#[derive(Clone, Debug)]
pub struct ClusterCas {
    /// Cluster CA (`CA_CERT`/`CA_KEY`): signs apiserver serving certs and the admin cert.
    pub cluster: CertPair,
    /// etcd peer CA (`ETCD_CA_CERT`/`ETCD_CA_KEY`).
    pub etcd_peer: CertPair,
    /// etcd client CA (`ETCD_APISERVER_CA_CERT`/`_KEY`): signs etcd server and client certs.
    pub etcd_client: CertPair,
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

impl ClusterCas {
    /// Fresh CAs (10 years).
    pub fn generate(_cluster_name: &str, _now: OffsetDateTime) -> Result<ClusterCas> {
        todo!("pki")
    }
    /// Read the CAs back from a replica's metadata.
    pub fn from_metadata(_kube_env: &KeyValues, _master_certs: &KeyValues) -> Result<ClusterCas> {
        todo!("pki")
    }
    /// Store the CAs: certs in kube-env / kube-master-certs as SPEC §2, keys in kube-master-certs.
    pub fn write_metadata(&self, _kube_env: &mut KeyValues, _master_certs: &mut KeyValues) {
        todo!("pki")
    }
}

impl ReplicaCerts {
    /// Store a replica's leaves into its metadata maps.
    pub fn write_metadata(&self, _kube_env: &mut KeyValues, _master_certs: &mut KeyValues) {
        todo!("pki")
    }
    /// Read a replica's leaves back.
    pub fn from_metadata(_kube_env: &KeyValues, _master_certs: &KeyValues) -> Result<ReplicaCerts> {
        todo!("pki")
    }
}

/// Issue a replica's leaves, signed by the cluster CAs (SPEC §3 table).
pub fn issue_replica_certs(_cas: &ClusterCas, _id: &ReplicaIdentity, _now: OffsetDateTime) -> Result<ReplicaCerts> {
    todo!("pki")
}

/// kube-ha's own etcd client certificate: 1 hour, clientAuth, signed by the etcd client CA.
pub fn issue_tool_client(_cas: &ClusterCas, _now: OffsetDateTime) -> Result<CertPair> {
    todo!("pki")
}

/// The admin client certificate of the kubeconfig (cluster CA, `O=system:masters`).
pub fn issue_admin_client(_cas: &ClusterCas, _now: OffsetDateTime) -> Result<CertPair> {
    todo!("pki")
}

/// A certificate's notAfter.
pub fn not_after(_cert_pem: &str) -> Result<OffsetDateTime> {
    todo!("pki")
}
