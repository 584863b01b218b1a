//! `status`: what exists and how healthy it is, as a table for people or one JSON document for
//! scripts. Built from the same snapshot the planners use, so what status shows is what `up` and
//! `down` decide on.

use serde::Serialize;

use crate::config::Config;
use crate::names::{self, EtcdCluster};
use crate::pki::kube_env::{self as ke, KeyValues};
use crate::plan::Snapshot;
use crate::plan::lock::LockState;

use super::cluster::metadata_value;
use super::observe::Observed;

/// One certificate of one replica.
#[derive(Clone, Debug, Serialize)]
pub struct CertInfo {
    /// Replica.
    pub replica: String,
    /// What it is (apiserver, etcd-peer, …).
    pub kind: &'static str,
    /// Metadata key.
    pub key: &'static str,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<time::OffsetDateTime>,
}

/// Every replica's certificates, read from instance metadata.
pub fn certificates(instances: &[google_cloud_compute_v1::model::Instance]) -> Vec<CertInfo> {
    let mut out = Vec::new();
    for i in instances {
        let replica = i.name.clone().unwrap_or_default();
        let env = metadata_value(i, names::METADATA_KUBE_ENV)
            .and_then(|t| KeyValues::from_yaml(t).ok())
            .unwrap_or_default();
        let certs = metadata_value(i, names::METADATA_MASTER_CERTS)
            .and_then(|t| KeyValues::from_yaml(t).ok())
            .unwrap_or_default();
        for (kind, key, map) in [
            ("apiserver", ke::MASTER_CERT, &env),
            ("etcd-peer", ke::ETCD_PEER_CERT, &env),
            ("etcd-server", ke::ETCD_APISERVER_SERVER_CERT, &certs),
            ("etcd-client", ke::ETCD_APISERVER_CLIENT_CERT, &certs),
            ("cluster-ca", ke::CA_CERT, &env),
        ] {
            if map.get(key).is_none() {
                continue;
            }
            let not_after = map.pem(key).ok().and_then(|pem| crate::pki::not_after(&pem).ok());
            out.push(CertInfo {
                replica: replica.clone(),
                kind,
                key,
                not_after,
            });
        }
    }
    out
}

#[derive(Debug, Serialize)]
struct ReplicaRow {
    name: String,
    zone: String,
    internal_ip: Option<String>,
    external_ip: Option<String>,
    vm_status: String,
}

#[derive(Debug, Serialize)]
struct MemberRow {
    id: String,
    name: String,
    peer_url: String,
    replica: Option<String>,
    leader: bool,
    learner: bool,
    healthy: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct EtcdReport {
    cluster: EtcdCluster,
    members: Vec<MemberRow>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LbReport {
    forwarding_rule_ip: Option<String>,
    pool: Option<Vec<String>>,
}

/// The status document.
#[derive(Debug, Serialize)]
pub struct Report {
    cluster: String,
    project: String,
    static_ip: Option<String>,
    replicas: Vec<ReplicaRow>,
    etcd: Vec<EtcdReport>,
    load_balancer: LbReport,
    certificates: Vec<CertInfo>,
    lock: Option<String>,
    leftovers: Vec<String>,
}

impl Report {
    /// Build from a snapshot.
    pub fn new(cfg: &Config, s: &Snapshot, observed: &Observed) -> Report {
        let replicas = s
            .replicas
            .iter()
            .map(|r| ReplicaRow {
                name: r.name.clone(),
                zone: r.zone.clone(),
                internal_ip: r.internal_ip.map(|i| i.to_string()),
                external_ip: r.external_ip.map(|i| i.to_string()),
                vm_status: r.status.clone(),
            })
            .collect();
        let etcd = s
            .etcd
            .iter()
            .map(|(cluster, obs)| EtcdReport {
                cluster: *cluster,
                error: obs.error.clone(),
                members: obs
                    .members
                    .iter()
                    .flatten()
                    .map(|m| MemberRow {
                        id: m.id.to_string(),
                        name: m.name.clone(),
                        peer_url: m.peer_urls.join(","),
                        replica: s.replica_of_member(*cluster, m),
                        leader: obs.leader == Some(m.id),
                        learner: m.is_learner,
                        healthy: obs.is_healthy(m.id),
                        error: obs.health.get(&m.id).and_then(|h| h.error.clone()),
                    })
                    .collect(),
            })
            .collect();
        let lock = match &s.lock {
            LockState::Free => None,
            LockState::Held { record, staleness } => {
                Some(format!("{} ({}, {staleness:?})", record.intent, record.owner))
            }
        };
        let mut leftovers = Vec::new();
        for (replica, a) in &s.internal_ips {
            if s.replica(replica).is_none() {
                leftovers.push(format!("address {}", a.name));
            }
        }
        for d in &s.disks {
            if d.users.is_empty() {
                leftovers.push(format!("disk {} ({})", d.name, d.zone));
            }
        }
        Report {
            cluster: cfg.names.master_name().to_string(),
            project: cfg.project.clone(),
            static_ip: s.static_ip.as_ref().map(|a| a.ip.to_string()),
            replicas,
            etcd,
            load_balancer: LbReport {
                forwarding_rule_ip: s.forwarding_rule.as_ref().map(|r| r.ip.clone()),
                pool: s.target_pool.as_ref().map(|p| p.instances.clone()),
            },
            certificates: certificates(&observed.instances),
            lock,
            leftovers,
        }
    }

    /// Tables for people.
    pub fn render(&self) -> String {
        let mut out = format!("cluster {} in project {}\n", self.cluster, self.project);
        out.push_str(&format!("static IP: {}\n", self.static_ip.as_deref().unwrap_or("none")));
        if let Some(l) = &self.lock {
            out.push_str(&format!("lock: {l}\n"));
        }
        out.push_str("\nREPLICA                          ZONE              INTERNAL IP      EXTERNAL IP      VM\n");
        for r in &self.replicas {
            out.push_str(&format!(
                "{:<32} {:<17} {:<16} {:<16} {}\n",
                r.name,
                r.zone,
                r.internal_ip.as_deref().unwrap_or("-"),
                r.external_ip.as_deref().unwrap_or("-"),
                r.vm_status
            ));
        }
        for e in &self.etcd {
            out.push_str(&format!("\netcd {}:\n", e.cluster));
            if let Some(err) = &e.error {
                out.push_str(&format!("  member list unavailable: {err}\n"));
            }
            out.push_str(
                "  ID                NAME                             PEER URL                    ROLE      HEALTH\n",
            );
            for m in &e.members {
                let role = if m.leader {
                    "leader"
                } else if m.learner {
                    "learner"
                } else {
                    "follower"
                };
                let health = if m.healthy {
                    "healthy".to_string()
                } else {
                    format!("UNHEALTHY ({})", m.error.as_deref().unwrap_or("?"))
                };
                let name = if m.name.is_empty() { "(not started)" } else { &m.name };
                out.push_str(&format!(
                    "  {:<17} {:<32} {:<27} {:<9} {health}\n",
                    m.id, name, m.peer_url, role
                ));
            }
        }
        out.push_str(&format!(
            "\nload balancer: {}\n",
            match (&self.load_balancer.forwarding_rule_ip, &self.load_balancer.pool) {
                (None, None) => "none (one replica holds the static IP)".to_string(),
                (ip, pool) => format!(
                    "forwarding rule {} -> pool [{}]",
                    ip.as_deref().unwrap_or("missing"),
                    pool.as_ref().map(|p| p.join(", ")).unwrap_or_else(|| "missing".into())
                ),
            }
        ));
        out.push_str("\nCERTIFICATE                                              EXPIRES\n");
        for c in &self.certificates {
            let at = c
                .not_after
                .map(|t| t.date().to_string())
                .unwrap_or_else(|| "unreadable".into());
            out.push_str(&format!("{:<56} {at}\n", format!("{} {}", c.replica, c.kind)));
        }
        if !self.leftovers.is_empty() {
            out.push_str(&format!(
                "\nleftovers (not attached to a replica): {}\n",
                self.leftovers.join(", ")
            ));
        }
        out
    }
}
