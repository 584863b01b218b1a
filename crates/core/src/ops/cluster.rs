//! The cluster's shared material as stored in instance metadata (SPEC §2): reading the CAs back
//! from an existing replica, and building the kube-env / kube-master-certs of a new one.
//! The builders are pure; only [`ClusterSecrets::from_instance`] looks at a GCE object.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use google_cloud_compute_v1::model;

use crate::etcd::Member;
use crate::names::{self, EtcdCluster};
use crate::pki::kube_env::{self as ke, KeyValues};
use crate::pki::{ClusterCas, ClusterClients, ReplicaCerts};

/// One metadata value of an instance.
pub fn metadata_value<'a>(instance: &'a model::Instance, key: &str) -> Option<&'a str> {
    instance
        .metadata
        .as_ref()?
        .items
        .iter()
        .find(|i| i.key.as_deref() == Some(key))?
        .value
        .as_deref()
}

/// The shared secrets, as read back from an existing replica (never regenerated).
#[derive(Clone, Debug)]
pub struct ClusterSecrets {
    /// That replica's kube-env (its per-replica keys are replaced for a new replica).
    pub kube_env: KeyValues,
    /// That replica's kube-master-certs.
    pub master_certs: KeyValues,
    /// The three CAs.
    pub cas: ClusterCas,
}

impl ClusterSecrets {
    /// Read from an instance's metadata; `None` when it carries no kube-env (not a master).
    pub fn from_instance(instance: &model::Instance) -> Result<Option<ClusterSecrets>> {
        let name = instance.name.as_deref().unwrap_or_default();
        let Some(env) = metadata_value(instance, names::METADATA_KUBE_ENV) else {
            return Ok(None);
        };
        let kube_env = KeyValues::from_yaml(env).with_context(|| format!("kube-env of {name}"))?;
        let master_certs = KeyValues::from_yaml(metadata_value(instance, names::METADATA_MASTER_CERTS).unwrap_or(""))
            .with_context(|| format!("kube-master-certs of {name}"))?;
        let cas = ClusterCas::from_metadata(&kube_env, &master_certs)
            .with_context(|| format!("the CAs in {name}'s metadata"))?;
        Ok(Some(ClusterSecrets {
            kube_env,
            master_certs,
            cas,
        }))
    }
}

/// Cluster-wide settings recorded in the first master's kube-env and inherited by replicas.
#[derive(Clone, Debug)]
pub struct ClusterEnv {
    /// `MASTER_NAME`.
    pub master_name: String,
    /// `MULTIZONE`.
    pub multizone: bool,
    /// `ETCD_QUORUM_READ`.
    pub quorum_read: bool,
    /// The static IP (`KUBERNETES_MASTER_NAME`).
    pub static_ip: Ipv4Addr,
    /// `SERVICE_CLUSTER_IP_RANGE`.
    pub service_cluster_ip_range: String,
    /// `DNS_DOMAIN`.
    pub dns_domain: String,
}

/// `INITIAL_ETCD_CLUSTER` for a replica joining `members` of the main cluster, as configure-helper
/// reads it: the **bare instance names** of exactly the current started members plus the joiner,
/// comma-separated (configure-helper expands each to `etcd-<vm>=https://<vm>:<port>`, 2380 for
/// main and 2381 for events, and etcd refuses a join whose list differs from its membership).
/// A started member not named `etcd-<vm>` cannot be listed: an error, not a guess.
pub fn initial_cluster(members: &[Member], replica: &str) -> Result<String> {
    let main = EtcdCluster::Main;
    let mut names = Vec::new();
    for m in members.iter().filter(|m| m.is_started()) {
        let vm = main.replica_of_member_name(&m.name).with_context(|| {
            format!(
                "etcd member {} is named {:?}, not etcd-<vm>: configure-helper cannot list it in {}",
                m.id,
                m.name,
                ke::INITIAL_ETCD_CLUSTER
            )
        })?;
        if vm != replica {
            names.push(vm.to_string());
        }
    }
    names.push(replica.to_string());
    Ok(names.join(","))
}

/// Metadata (kube-env, kube-master-certs) of the first master: new CAs, the cluster-wide client
/// certificates, its own leaves, and what selects configure-helper's master path. What a real
/// GCE boot needs on top (the release's artifacts and settings) is `bootstrap`'s.
pub fn first_master_metadata(
    env: &ClusterEnv,
    cas: &ClusterCas,
    clients: &ClusterClients,
    certs: &ReplicaCerts,
) -> (KeyValues, KeyValues) {
    let mut kube_env = KeyValues::default();
    let mut master_certs = KeyValues::default();
    kube_env.set(ke::KUBERNETES_MASTER, "true");
    kube_env.set(ke::MASTER_NAME, env.master_name.as_str());
    kube_env.set(ke::MULTIZONE, env.multizone.to_string());
    kube_env.set(ke::ETCD_QUORUM_READ, env.quorum_read.to_string());
    kube_env.set(ke::KUBERNETES_MASTER_NAME, env.static_ip.to_string());
    kube_env.set(ke::SERVICE_CLUSTER_IP_RANGE, env.service_cluster_ip_range.as_str());
    kube_env.set(ke::DNS_DOMAIN, env.dns_domain.as_str());
    cas.write_metadata(&mut kube_env, &mut master_certs);
    clients.write_metadata(&mut kube_env, &mut master_certs);
    for_replica(
        &mut kube_env,
        &mut master_certs,
        &env.master_name,
        certs,
        env.master_name.clone(),
        "new",
    );
    (kube_env, master_certs)
}

/// Metadata of a new replica: the existing master's, with every per-replica key replaced
/// (kube-up rewrote only the etcd peer cert and shared the apiserver cert; each replica here gets
/// its own certificates, SPEC §3, for the cluster's one serving key) and `ETCD_HOSTNAME` dropped
/// (it names the existing master's etcd member: a copy would make the replica claim it). The
/// shared CAs and key are written back in the contract's form and place, so a cluster kube-ha made
/// before the contract (plain-base64 etcd CA certificates, `ETCD_CA_KEY` in kube-master-certs, no
/// `KUBERNETES_MASTER`) gets replicas that configure-helper can boot; values already in that form
/// are kept byte for byte.
pub fn replica_metadata(
    existing: &ClusterSecrets,
    replica: &str,
    certs: &ReplicaCerts,
    initial: String,
) -> (KeyValues, KeyValues) {
    let mut kube_env = existing.kube_env.clone();
    let mut master_certs = existing.master_certs.clone();
    kube_env.remove(ke::ETCD_HOSTNAME);
    kube_env.set(ke::KUBERNETES_MASTER, "true");
    existing.cas.write_metadata(&mut kube_env, &mut master_certs);
    for_replica(&mut kube_env, &mut master_certs, replica, certs, initial, "existing");
    (kube_env, master_certs)
}

fn for_replica(
    kube_env: &mut KeyValues,
    master_certs: &mut KeyValues,
    replica: &str,
    certs: &ReplicaCerts,
    initial: String,
    state: &str,
) {
    kube_env.set(ke::REPLICA_NAME, replica);
    kube_env.set(ke::INITIAL_ETCD_CLUSTER, initial);
    kube_env.set(ke::INITIAL_ETCD_CLUSTER_STATE, state);
    certs.write_metadata(kube_env, master_certs);
}

/// For the crate's tests: the secrets of a first master `kubernetes-master` as `up` makes them
/// (identity of [`crate::pki::test_identity`] with internal IP 10.132.0.2).
#[cfg(test)]
pub(crate) fn test_first_master() -> ClusterSecrets {
    let now = time::OffsetDateTime::now_utc();
    let id = crate::pki::test_identity("kubernetes-master", 2);
    let cas = ClusterCas::generate(&id.master_name, now).expect("cas");
    let certs = crate::pki::issue_replica_certs(&cas, &id, now).expect("certs");
    let clients = crate::pki::issue_cluster_clients(&cas, now).expect("clients");
    let env = ClusterEnv {
        master_name: id.master_name.clone(),
        multizone: true,
        quorum_read: false,
        static_ip: id.static_ip,
        service_cluster_ip_range: "10.0.0.0/16".into(),
        dns_domain: id.dns_domain.clone(),
    };
    let (kube_env, master_certs) = first_master_metadata(&env, &cas, &clients, &certs);
    ClusterSecrets {
        kube_env,
        master_certs,
        cas,
    }
}

#[cfg(test)]
mod tests {
    use super::test_first_master as first_master;
    use super::*;
    use crate::pki::issue_replica_certs;
    use crate::pki::test_identity as identity;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn first_master_and_replica_metadata_meet_the_contract_and_share_the_serving_key() {
        let first = first_master();
        ke::check_vm_metadata(&first.kube_env, &first.master_certs).expect("first master");
        let now = time::OffsetDateTime::now_utc();
        let certs = issue_replica_certs(&first.cas, &identity("kubernetes-master-a1b", 3), now).expect("certs");
        let (env, mc) = replica_metadata(&first, "kubernetes-master-a1b", &certs, "x".into());
        ke::check_vm_metadata(&env, &mc).expect("replica");
        assert_eq!(env.get(ke::MASTER_KEY), first.kube_env.get(ke::MASTER_KEY));
        assert_ne!(env.get(ke::MASTER_CERT), first.kube_env.get(ke::MASTER_CERT));
        assert_ne!(env.get(ke::ETCD_PEER_CERT), first.kube_env.get(ke::ETCD_PEER_CERT));
        assert_eq!(env.get(ke::INITIAL_ETCD_CLUSTER_STATE), Some("existing"));
        // The shared CA values are copied byte for byte.
        for key in [ke::CA_CERT, ke::ETCD_CA_CERT, ke::ETCD_CA_KEY] {
            assert_eq!(env.get(key), first.kube_env.get(key), "{key}");
        }
        for key in [ke::CA_KEY, ke::ETCD_APISERVER_CA_CERT, ke::ETCD_APISERVER_CA_KEY] {
            assert_eq!(mc.get(key), first.master_certs.get(key), "{key}");
        }
    }

    #[test]
    fn a_replica_of_a_cluster_in_the_old_form_gets_the_contract_form() {
        // What kube-ha wrote before the contract: the five etcd certificates as plain base64
        // PEM, ETCD_CA_KEY in kube-master-certs.
        let mut old = first_master();
        for key in ke::GZIPPED {
            for map in [&mut old.kube_env, &mut old.master_certs] {
                if map.get(key).is_some() {
                    let pem = map.pem(key).expect("pem");
                    map.set(key, B64.encode(pem));
                }
            }
        }
        let key = old.kube_env.remove(ke::ETCD_CA_KEY).expect("etcd CA key");
        old.master_certs.set(ke::ETCD_CA_KEY, key);
        assert!(ke::check_vm_metadata(&old.kube_env, &old.master_certs).is_err());
        let read = ClusterCas::from_metadata(&old.kube_env, &old.master_certs).expect("old form reads");
        assert_eq!(read.etcd_peer, old.cas.etcd_peer);

        let now = time::OffsetDateTime::now_utc();
        let certs = issue_replica_certs(&read, &identity("kubernetes-master-a1b", 3), now).expect("certs");
        let (env, mc) = replica_metadata(&old, "kubernetes-master-a1b", &certs, "x".into());
        ke::check_vm_metadata(&env, &mc).expect("contract form");
        assert!(mc.get(ke::ETCD_CA_KEY).is_none() && env.get(ke::ETCD_CA_KEY).is_some());
        assert_eq!(env.pem(ke::ETCD_CA_CERT).expect("pem"), old.cas.etcd_peer.cert_pem);
    }

    fn member(id: u64, name: &str, peer: &str) -> Member {
        Member::voter(id, name, peer)
    }

    #[test]
    fn initial_cluster_is_the_bare_names_of_the_started_members_and_the_joiner() {
        let members = vec![
            // registered by kube-up.sh (by name) and by kube-ha before the contract (by IP)
            member(1, "etcd-k-master", "https://k-master:2380"),
            member(2, "etcd-k-master-x9z", "https://127.9.1.3:2380"),
            // the joiner itself, added as a learner, not started yet (no name)
            member(3, "", "https://k-master-a1b:2380"),
        ];
        assert_eq!(
            initial_cluster(&members, "k-master-a1b").expect("list"),
            "k-master,k-master-x9z,k-master-a1b"
        );
        // A rerun after the joiner started once: listed once.
        let mut again = members.clone();
        again[2].name = "etcd-k-master-a1b".into();
        assert_eq!(
            initial_cluster(&again, "k-master-a1b").expect("list"),
            "k-master,k-master-x9z,k-master-a1b"
        );
        assert_eq!(initial_cluster(&[], "k-master").expect("alone"), "k-master");
        let foreign = vec![member(9, "default", "https://10.0.0.9:2380")];
        let err = initial_cluster(&foreign, "k-master-a1b").expect_err("not etcd-<vm>");
        assert!(err.to_string().contains("not etcd-<vm>"), "{err}");
    }

    #[test]
    fn a_replica_never_inherits_the_existing_masters_etcd_hostname() {
        let mut first = first_master();
        first.kube_env.set(ke::ETCD_HOSTNAME, "kubernetes-master");
        first.kube_env.remove(ke::KUBERNETES_MASTER);
        let now = time::OffsetDateTime::now_utc();
        let certs = issue_replica_certs(&first.cas, &identity("kubernetes-master-a1b", 3), now).expect("certs");
        let (env, _) = replica_metadata(&first, "kubernetes-master-a1b", &certs, "x".into());
        assert_eq!(env.get(ke::ETCD_HOSTNAME), None);
        assert_eq!(env.get(ke::KUBERNETES_MASTER), Some("true"));
    }
}
