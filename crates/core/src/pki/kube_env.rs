//! `kube-env` and `kube-master-certs`: the YAML maps of strings kube-up stored in instance
//! metadata (SPEC §2), and their keys. PEM values are stored base64-encoded, as kube-up did.
//!
//! Parsed and written as YAML (serde_yaml_ng), never edited line by line: kube-up's `grep -v` on
//! `KEY: 'value'` lines could drop a value that merely contained a key's name.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// kube-env: cluster CA certificate (PEM, base64).
pub const CA_CERT: &str = "CA_CERT";
/// kube-env: this replica's apiserver serving certificate.
pub const MASTER_CERT: &str = "MASTER_CERT";
/// kube-env: its key.
pub const MASTER_KEY: &str = "MASTER_KEY";
/// kube-env: etcd peer CA certificate.
pub const ETCD_CA_CERT: &str = "ETCD_CA_CERT";
/// kube-env: this replica's etcd peer certificate.
pub const ETCD_PEER_CERT: &str = "ETCD_PEER_CERT";
/// kube-env: its key.
pub const ETCD_PEER_KEY: &str = "ETCD_PEER_KEY";
/// kube-env: `etcd-<vm>=https://<ip>:2380,…` for this replica's first start.
pub const INITIAL_ETCD_CLUSTER: &str = "INITIAL_ETCD_CLUSTER";
/// kube-env: `new` for the first master, `existing` for a replica.
pub const INITIAL_ETCD_CLUSTER_STATE: &str = "INITIAL_ETCD_CLUSTER_STATE";
/// kube-env: `MULTIZONE` as given to the first `up`.
pub const MULTIZONE: &str = "MULTIZONE";
/// kube-env: quorum reads.
pub const ETCD_QUORUM_READ: &str = "ETCD_QUORUM_READ";
/// kube-env: the cluster's static IP (what nodes and kubeconfigs use).
pub const KUBERNETES_MASTER_NAME: &str = "KUBERNETES_MASTER_NAME";
/// kube-env: service range.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "SERVICE_CLUSTER_IP_RANGE";
/// kube-env: cluster DNS domain.
pub const DNS_DOMAIN: &str = "DNS_DOMAIN";
/// kube-env: `MASTER_NAME`.
pub const MASTER_NAME: &str = "MASTER_NAME";
/// kube-env: the replica's own VM name.
pub const REPLICA_NAME: &str = "REPLICA_NAME";

/// kube-master-certs: cluster CA key.
pub const CA_KEY: &str = "CA_KEY";
/// kube-master-certs: etcd peer CA key.
pub const ETCD_CA_KEY: &str = "ETCD_CA_KEY";
/// kube-master-certs: etcd client CA certificate (kube-up's `ETCD_APISERVER_CA`).
pub const ETCD_APISERVER_CA_CERT: &str = "ETCD_APISERVER_CA_CERT";
/// kube-master-certs: etcd client CA key.
pub const ETCD_APISERVER_CA_KEY: &str = "ETCD_APISERVER_CA_KEY";
/// kube-master-certs: this replica's etcd server certificate (main and events).
pub const ETCD_APISERVER_SERVER_CERT: &str = "ETCD_APISERVER_SERVER_CERT";
/// kube-master-certs: its key.
pub const ETCD_APISERVER_SERVER_KEY: &str = "ETCD_APISERVER_SERVER_KEY";
/// kube-master-certs: this replica's apiserver → etcd client certificate.
pub const ETCD_APISERVER_CLIENT_CERT: &str = "ETCD_APISERVER_CLIENT_CERT";
/// kube-master-certs: its key.
pub const ETCD_APISERVER_CLIENT_KEY: &str = "ETCD_APISERVER_CLIENT_KEY";

/// A YAML map of strings (kube-env or kube-master-certs), ordered for stable output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValues(pub BTreeMap<String, String>);

impl KeyValues {
    /// Parse YAML; every value must be a scalar (numbers and booleans are kept as text).
    pub fn from_yaml(text: &str) -> Result<Self> {
        let raw: BTreeMap<String, serde_yaml_ng::Value> = serde_yaml_ng::from_str(text).context("not a YAML map")?;
        let mut map = BTreeMap::new();
        for (k, v) in raw {
            let s = match v {
                serde_yaml_ng::Value::String(s) => s,
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::Null => String::new(),
                _ => return Err(anyhow!("value of {k} is not a string")),
            };
            map.insert(k, s);
        }
        Ok(KeyValues(map))
    }

    /// Render as YAML with every value quoted as a string.
    pub fn to_yaml(&self) -> String {
        // serde_yaml_ng quotes strings that would otherwise read back as another type.
        serde_yaml_ng::to_string(&self.0).unwrap_or_default()
    }

    /// A plain value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A plain value that must be present.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| anyhow!("{key} is missing"))
    }

    /// Set a plain value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }

    /// A base64-encoded PEM value, decoded.
    pub fn pem(&self, key: &str) -> Result<String> {
        let b = B64
            .decode(self.require(key)?.trim())
            .with_context(|| format!("{key} is not base64"))?;
        String::from_utf8(b).with_context(|| format!("{key} is not PEM text"))
    }

    /// Store a PEM value base64-encoded.
    pub fn set_pem(&mut self, key: &str, pem: &str) {
        self.set(key, B64.encode(pem.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_strings_that_look_like_other_types() {
        let mut kv = KeyValues::default();
        kv.set(MULTIZONE, "true");
        kv.set("NUM", "0012");
        kv.set("EMPTY", "");
        kv.set("COLON", "a: b # c");
        kv.set(
            INITIAL_ETCD_CLUSTER,
            "etcd-m=https://127.0.0.1:2380,etcd-m-a1b=https://127.0.0.2:2380",
        );
        kv.set_pem(
            CA_CERT,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let back = KeyValues::from_yaml(&kv.to_yaml()).expect("parse");
        assert_eq!(back, kv);
        assert_eq!(
            back.pem(CA_CERT).expect("pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        );
    }

    #[test]
    fn reads_kube_up_style_single_quoted_values() {
        let kv = KeyValues::from_yaml("ENABLE_X: 'true'\nNUM_NODES: 3\nMULTIZONE: true\n").expect("parse");
        assert_eq!(kv.get("ENABLE_X"), Some("true"));
        assert_eq!(kv.get("NUM_NODES"), Some("3"));
        assert_eq!(kv.get(MULTIZONE), Some("true"));
        assert!(kv.require("MISSING").is_err());
    }
}
