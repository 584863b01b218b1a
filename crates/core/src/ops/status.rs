//! `status`: what exists and how healthy it is, as a table for people or one JSON document for
//! scripts. Built from the same snapshot the planners use, so what status shows is what `up` and
//! `down` decide on.
//!
//! It starts with one verdict line ([`Verdict`]: healthy, degraded or quorum lost; voters;
//! failures tolerated; zones) and ends in the exit code: 0 healthy, 1 degraded, quorum lost,
//! locked or with leftovers, 2 when the project has nothing of the cluster at all.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::error::{NotHealthy, Refusal};
use crate::names::{self, EtcdCluster};
use crate::pki::kube_env::{self as ke, KeyValues};
use crate::plan::Snapshot;
use crate::plan::commands::Commands;
use crate::plan::lock::{self as plan_lock, LockState, Staleness};
use crate::plan::quorum::quorum;

use super::boot_log::BootFailure;
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
    /// Why its boot stopped (its serial console's boot log), when it did.
    boot: Option<BootFailure>,
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

/// The overall state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Everything as it should be, nothing in flight, nothing left over.
    Healthy,
    /// Working, but something needs attention (see the problems).
    Degraded,
    /// An etcd cluster has fewer healthy voters than its quorum: writes fail.
    QuorumLost,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::QuorumLost => "quorum lost",
        })
    }
}

/// Voters of one etcd cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Voters {
    /// Which cluster.
    pub cluster: EtcdCluster,
    /// Healthy voting members.
    pub healthy: usize,
    /// Voting members.
    pub voting: usize,
    /// How many more voters may fail before writes stop.
    pub tolerates: usize,
}

/// The verdict: one line that says whether the cluster is fine, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Overall.
    pub health: Health,
    /// Per etcd cluster (empty when no member list could be read).
    pub voters: Vec<Voters>,
    /// Failures tolerated (the least of both clusters).
    pub tolerates: usize,
    /// Zones with a replica.
    pub zones: Vec<String>,
    /// What needs attention, one sentence each.
    pub problems: Vec<String>,
    /// The verdict as one line.
    pub line: String,
}

/// Judge a snapshot (pure): quorum from both member lists, and every problem an operator should
/// know about, including boots that stopped, the lock and leftovers.
pub fn verdict(
    s: &Snapshot,
    leftovers: &[String],
    lock_problem: Option<String>,
    boots: &BTreeMap<String, BootFailure>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut health = Health::Healthy;
    let mut voters = Vec::new();
    if s.replicas.is_empty() {
        problems.push("no replica VM exists".to_string());
    }
    for r in s.replicas.iter().filter(|r| r.status != "RUNNING") {
        problems.push(format!("VM {} is {}", r.name, r.status));
    }
    // First: the cause comes before its symptoms (an etcd member that never started).
    for (replica, failure) in boots {
        problems.push(format!("replica {replica}: {failure}"));
    }
    for (cluster, obs) in &s.etcd {
        let Some(members) = &obs.members else {
            health = Health::QuorumLost;
            problems.push(format!(
                "etcd {cluster} member list unreadable ({})",
                obs.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        };
        let voting: Vec<_> = members.iter().filter(|m| !m.is_learner).collect();
        let healthy = voting.iter().filter(|m| obs.is_healthy(m.id)).count();
        let needed = quorum(voting.len());
        if healthy < needed {
            health = Health::QuorumLost;
        }
        voters.push(Voters {
            cluster: *cluster,
            healthy,
            voting: voting.len(),
            tolerates: healthy.saturating_sub(needed),
        });
        for m in members {
            let label = if m.is_started() {
                m.name.clone()
            } else {
                format!("{} (not started)", m.id)
            };
            if m.is_learner {
                problems.push(format!("etcd {cluster} has learner {label}"));
            } else if !obs.is_healthy(m.id) {
                problems.push(format!("etcd {cluster} member {label} is not healthy"));
            }
            if s.replica_of_member(*cluster, m).is_none_or(|r| s.replica(&r).is_none()) {
                problems.push(format!("etcd {cluster} member {label} has no VM"));
            }
        }
        for r in &s.replicas {
            if s.member_of(*cluster, &r.name).is_none() {
                problems.push(format!("replica {} has no etcd {cluster} member", r.name));
            }
        }
    }
    let static_ip = s.static_ip.as_ref().map(|a| a.ip);
    match s.replicas.as_slice() {
        [] => {}
        [one] => {
            if one.external_ip.is_none() || one.external_ip != static_ip {
                problems.push(format!("the static IP is not on {}, the only replica", one.name));
            }
        }
        many => {
            let in_pool = |n: &str| {
                s.target_pool
                    .as_ref()
                    .is_some_and(|p| p.instances.iter().any(|i| i == n))
            };
            if s.forwarding_rule.is_none() {
                problems.push("no forwarding rule carries the static IP".to_string());
            }
            for r in many.iter().filter(|r| !in_pool(&r.name)) {
                problems.push(format!("replica {} is not in the target pool", r.name));
            }
        }
    }
    if !leftovers.is_empty() {
        problems.push(format!("leftovers: {}", leftovers.join(", ")));
    }
    problems.extend(lock_problem);
    if health == Health::Healthy && !problems.is_empty() {
        health = Health::Degraded;
    }
    let mut zones: Vec<String> = s.replicas.iter().map(|r| r.zone.clone()).collect();
    zones.sort();
    zones.dedup();
    let tolerates = voters.iter().map(|v| v.tolerates).min().unwrap_or(0);
    let counts = if voters
        .iter()
        .all(|v| (v.healthy, v.voting) == (voters[0].healthy, voters[0].voting))
        && !voters.is_empty()
    {
        format!("etcd voters {} of {}", voters[0].healthy, voters[0].voting)
    } else {
        let each: Vec<String> = voters
            .iter()
            .map(|v| format!("{} of {} ({})", v.healthy, v.voting, v.cluster))
            .collect();
        format!(
            "etcd voters {}",
            if each.is_empty() {
                "unknown".to_string()
            } else {
                each.join(", ")
            }
        )
    };
    let mut line = format!(
        "{health}: {} replica(s); {counts}; tolerates {tolerates} failure(s); zones: {}",
        s.replicas.len(),
        if zones.is_empty() {
            "none".to_string()
        } else {
            zones.join(", ")
        }
    );
    if let Some(first) = problems.first() {
        line.push_str(&format!("; {first}"));
        if problems.len() > 1 {
            line.push_str(&format!(" (and {} more below)", problems.len() - 1));
        }
    }
    Verdict {
        health,
        voters,
        tolerates,
        zones,
        problems,
        line,
    }
}

/// The lock in words, with the command that comes next.
#[derive(Debug, Serialize)]
struct LockReport {
    /// `free`, `held` or `interrupted`.
    state: &'static str,
    words: String,
    next: Option<String>,
    /// What the verdict says about it.
    #[serde(skip)]
    problem: Option<String>,
}

fn lock_report(cfg: &Config, s: &Snapshot) -> LockReport {
    let cmds = Commands::for_cluster(&cfg.names);
    match &s.lock {
        LockState::Free => LockReport {
            state: "free",
            words: "free: no operation is running".into(),
            next: None,
            problem: None,
        },
        LockState::Held {
            record,
            staleness: Staleness::Live,
        } => LockReport {
            state: "held",
            words: format!(
                "held by {} since {} until {} ({}); wait for it to finish, or if that process is gone for good, take it over",
                record.owner,
                plan_lock::rfc3339(record.acquired),
                plan_lock::rfc3339(record.expires),
                record.intent
            ),
            next: Some(cmds.take_over(&record.owner.reference(), &record.intent).to_string()),
            problem: Some(format!("locked: an operation is running ({})", record.intent)),
        },
        LockState::Held { record, staleness } => LockReport {
            state: "interrupted",
            words: format!(
                "left by an interrupted run ({}, {}; {staleness}{}); finish it",
                record.intent,
                record.owner,
                record
                    .handed_over
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            ),
            next: Some(cmds.resume(&record.intent).to_string()),
            problem: Some(format!("an interrupted operation is pending ({})", record.intent)),
        },
    }
}

/// What is left of the cluster that no complete cluster would have, wherever it is.
fn leftovers(cfg: &Config, s: &Snapshot) -> Vec<String> {
    let names = &cfg.names;
    let mut out = Vec::new();
    for (replica, a) in &s.internal_ips {
        if s.replica(replica).is_none() {
            out.push(format!("address {} ({})", a.name, a.region));
        }
    }
    for d in &s.disks {
        if d.users.is_empty() {
            out.push(format!("disk {} ({})", d.name, d.zone));
        }
    }
    if s.replicas.is_empty() {
        if let Some(a) = &s.static_ip {
            out.push(format!("static IP {} ({}, {})", a.name, a.ip, a.region));
        }
        for fw in &s.firewalls {
            out.push(format!("firewall rule {fw}"));
        }
    }
    if s.replicas.len() < 2 {
        if s.target_pool.is_some() {
            out.push(format!("target pool {}", names.target_pool()));
        }
        if s.forwarding_rule.is_some() {
            out.push(format!("forwarding rule {}", names.forwarding_rule()));
        }
    }
    out
}

/// The status document.
#[derive(Debug, Serialize)]
pub struct Report {
    cluster: String,
    project: String,
    verdict: Verdict,
    static_ip: Option<String>,
    replicas: Vec<ReplicaRow>,
    etcd: Vec<EtcdReport>,
    load_balancer: LbReport,
    certificates: Vec<CertInfo>,
    lock: LockReport,
    leftovers: Vec<String>,
}

impl Report {
    /// Build from a snapshot and the boot failures read from replicas' boot logs; a [`Refusal`]
    /// (exit 2) when the project has nothing of the cluster.
    pub fn new(
        cfg: &Config,
        s: &Snapshot,
        observed: &Observed,
        boots: &BTreeMap<String, BootFailure>,
    ) -> Result<Report, Refusal> {
        if !s.has_anything() {
            return Err(Refusal::new(format!(
                "no cluster {} in project {} (no VM, disk, address, firewall rule or lock of it); create it with {}, \
                 or check PROJECT and KUBE_GCE_INSTANCE_PREFIX",
                cfg.names.master_name(),
                cfg.project,
                Commands::for_cluster(&cfg.names).first_up(&cfg.zone)
            )));
        }
        let replicas = s
            .replicas
            .iter()
            .map(|r| ReplicaRow {
                name: r.name.clone(),
                zone: r.zone.clone(),
                internal_ip: r.internal_ip.map(|i| i.to_string()),
                external_ip: r.external_ip.map(|i| i.to_string()),
                vm_status: r.status.clone(),
                boot: boots.get(&r.name).cloned(),
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
        let lock = lock_report(cfg, s);
        let leftovers = leftovers(cfg, s);
        let verdict = verdict(s, &leftovers, lock.problem.clone(), boots);
        Ok(Report {
            cluster: cfg.names.master_name().to_string(),
            project: cfg.project.clone(),
            verdict,
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
        })
    }

    /// The exit code's meaning: `Ok` when healthy, else [`NotHealthy`] (exit 1).
    pub fn outcome(&self) -> anyhow::Result<()> {
        match self.verdict.health {
            Health::Healthy => Ok(()),
            _ => Err(NotHealthy(self.verdict.line.clone()).into()),
        }
    }

    /// Tables for people.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.verdict.line);
        for p in self.verdict.problems.iter().skip(1) {
            out.push_str(&format!("  also: {p}\n"));
        }
        out.push_str(&format!("\ncluster {} in project {}\n", self.cluster, self.project));
        out.push_str(&format!("static IP: {}\n", self.static_ip.as_deref().unwrap_or("none")));
        out.push_str(&format!("lock: {}\n", self.lock.words));
        if let Some(next) = &self.lock.next {
            out.push_str(&format!("  next: {next}\n"));
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
            if let Some(boot) = &r.boot {
                out.push_str(&format!("  {boot}\n"));
            }
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
                "\nleftovers (of no complete replica): {}\n",
                self.leftovers.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{Z_B, Z_C, Z_D, cluster, crash};

    #[test]
    fn the_verdict_counts_voters_and_failures_tolerated_like_etcd() {
        let v = verdict(
            &cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]),
            &[],
            None,
            &BTreeMap::new(),
        );
        assert_eq!(v.health, Health::Healthy);
        assert_eq!(v.tolerates, 1);
        assert_eq!(
            v.line,
            "healthy: 3 replica(s); etcd voters 3 of 3; tolerates 1 failure(s); zones: europe-west1-b, europe-west1-c, europe-west1-d"
        );
        let mut one_down = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
        crash(&mut one_down, 2);
        let v = verdict(&one_down, &[], None, &BTreeMap::new());
        assert_eq!((v.health, v.tolerates), (Health::Degraded, 0));
        assert!(
            v.line.starts_with("degraded: 3 replica(s); etcd voters 2 of 3"),
            "{}",
            v.line
        );
        let mut lost = cluster(&[("", Z_B), ("aaa", Z_C)]);
        crash(&mut lost, 1);
        assert_eq!(verdict(&lost, &[], None, &BTreeMap::new()).health, Health::QuorumLost);
    }

    #[test]
    fn a_lock_leftovers_a_learner_or_a_half_load_balancer_is_not_healthy() {
        let one = cluster(&[("", Z_B)]);
        let v = verdict(
            &one,
            &["disk k-master-x1y-pd (europe-west1-c)".into()],
            None,
            &BTreeMap::new(),
        );
        assert_eq!(v.health, Health::Degraded);
        assert!(v.line.contains("leftovers: disk k-master-x1y-pd"), "{}", v.line);
        let two = cluster(&[("", Z_B), ("aaa", Z_C)]);
        let v = verdict(
            &two,
            &[],
            Some("locked: an operation is running (x)".into()),
            &BTreeMap::new(),
        );
        assert_eq!(v.health, Health::Degraded);
        let mut no_rule = two.clone();
        no_rule.forwarding_rule = None;
        assert!(
            verdict(&no_rule, &[], None, &BTreeMap::new())
                .problems
                .iter()
                .any(|p| p.contains("forwarding rule"))
        );
        let mut learner = cluster(&[("", Z_B), ("aaa", Z_C), ("bbb", Z_D)]);
        if let Some(m) = learner
            .etcd
            .get_mut(&EtcdCluster::Main)
            .and_then(|o| o.members.as_mut())
        {
            m[2].is_learner = true;
        }
        let v = verdict(&learner, &[], None, &BTreeMap::new());
        assert!(v.problems.iter().any(|p| p.contains("learner")), "{:?}", v.problems);
        assert!(
            v.line.contains("etcd voters 2 of 2 (main), 3 of 3 (events)"),
            "{}",
            v.line
        );
    }

    #[test]
    fn a_boot_that_stopped_is_the_first_problem_named_with_its_step_and_reason() {
        let mut two = cluster(&[("", Z_B), ("aaa", Z_C)]);
        crash(&mut two, 1);
        let boots = BTreeMap::from([(
            "k-master-aaa".to_string(),
            BootFailure {
                script: "configure-helper.sh".into(),
                step: "CreateMasterEtcdAuth".into(),
                reason: "gzip: stdin: not in gzip format".into(),
            },
        )]);
        let v = verdict(&two, &[], None, &boots);
        assert_eq!(
            v.problems[0],
            "replica k-master-aaa: its boot stopped in configure-helper.sh step CreateMasterEtcdAuth: gzip: stdin: not in gzip format"
        );
        assert!(v.line.contains("CreateMasterEtcdAuth"), "{}", v.line);
    }
}
