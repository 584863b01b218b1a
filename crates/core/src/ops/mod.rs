//! The operations: `up`, `down` and `status`, the only code that reaches GCE and etcd.
//!
//! Each is observe → plan → act: read the world into a snapshot, compute a plan with the pure
//! planners (a refusal there has made no mutating call), take the lock with the fingerprint of
//! what was observed (a concurrent writer makes us observe again), run the steps, release the
//! lock. A run that dies leaves its intent in the lock record; the next run of the same command
//! observes the partial work and finishes it.

pub mod api;
pub mod cluster;
pub mod execute;
pub mod kubeconfig;
pub mod lock;
pub mod observe;
pub mod progress;
pub mod status;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use crate::config::{Config, Endpoint, OutputFormat};
use crate::gce::Gce;
use crate::plan::lock::{Intent, LockState};
use crate::plan::{self, Plan, Snapshot};

use execute::{Executor, NeverHealthy, etcd_client};
use observe::{ETCD_OBSERVE_TIMEOUT, Observed, observe_etcd, observe_gce};
use progress::Progress;

/// How many times to observe again when another writer changed project metadata under us.
const LOCK_ATTEMPTS: usize = 3;

/// Certificates closer than this to expiry are warned about by `up`.
const CERT_WARN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Connect to the Compute API the config names. A sandbox endpoint is resolved to its URL by the
/// caller (the binary starts the sandbox; this library does not know how).
pub async fn connect(cfg: &Config) -> Result<Gce> {
    let endpoint = match &cfg.endpoint {
        Endpoint::Google => None,
        Endpoint::Url(u) => Some(u.clone()),
        Endpoint::Sandbox(dir) => {
            return Err(anyhow!(
                "the sandbox under {} was not started; run kube-ha sandbox start",
                dir.display()
            ));
        }
    };
    // Each operation gets the whole command deadline; the executor checks the overall one.
    Gce::connect(&cfg.project, endpoint.as_deref(), cfg.timeout).await
}

/// Observe GCE, then etcd through the CAs found in metadata.
pub async fn observe(cfg: &Config, gce: &Gce) -> Result<(Snapshot, Observed)> {
    let (mut snapshot, observed) = observe_gce(gce, cfg).await?;
    if let Some(secrets) = &observed.secrets {
        let client = etcd_client(&secrets.cas, ETCD_OBSERVE_TIMEOUT)?;
        observe_etcd(&client, &mut snapshot).await;
    }
    Ok((snapshot, observed))
}

fn print_warnings(cfg: &Config, progress: &Progress) {
    for w in &cfg.warnings {
        progress.say(&format!("warning: {w}"));
    }
}

/// Print a plan: to stdout for `--dry-run`, as JSON or text.
fn print_plan(cfg: &Config, plan: &Plan, command: &str) {
    match cfg.output {
        OutputFormat::Json => {
            println!("{}", json!({"command": command, "dry_run": true, "plan": plan}));
        }
        OutputFormat::Text => print!("{}", plan.render()),
    }
}

fn print_result(cfg: &Config, command: &str, plan: &Plan, result: &str, details: serde_json::Value) {
    match cfg.output {
        OutputFormat::Json => {
            println!(
                "{}",
                json!({"command": command, "result": result, "plan": plan, "details": details})
            );
        }
        OutputFormat::Text => {
            println!("{result}");
            if let Some(obj) = details.as_object() {
                for (k, v) in obj {
                    println!(
                        "  {k}: {}",
                        v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
                    );
                }
            }
        }
    }
}

/// Warn about certificates that expire within 30 days (SPEC §3).
fn warn_expiring(observed: &Observed, progress: &Progress) {
    let soon = time::OffsetDateTime::now_utc() + CERT_WARN;
    for cert in status::certificates(&observed.instances) {
        if let Some(at) = cert.not_after.filter(|t| *t < soon) {
            progress.say(&format!(
                "warning: {} certificate {} of {} expires {at}",
                cert.kind, cert.key, cert.replica
            ));
        }
    }
}

/// The command an op runs: which planner, and how it reports.
enum Command {
    Up,
    Down,
}

/// `kube-ha up`: the top-level entry point of the first master and of adding a replica.
pub async fn up(cfg: &Config) -> Result<()> {
    act(cfg, Command::Up).await
}

/// `kube-ha down`: the top-level entry point of removing a replica and of teardown.
pub async fn down(cfg: &Config) -> Result<()> {
    act(cfg, Command::Down).await
}

fn suffix_candidates() -> Vec<String> {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| {
            (0..crate::names::REPLICA_SUFFIX_LEN)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect()
}

fn make_plan(cfg: &Config, command: &Command, s: &Snapshot) -> Result<Plan, crate::error::Refusal> {
    match command {
        Command::Up if cfg.replicate => plan::plan_add(
            s,
            &plan::AddRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                overrides: cfg.master.clone(),
                fallback_settings: cfg.first_master_settings(),
                suffix_candidates: suffix_candidates(),
            },
        ),
        Command::Up => plan::plan_first(
            s,
            &plan::FirstRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                settings: cfg.first_master_settings(),
                kubeconfig: cfg.kubeconfig.display().to_string(),
            },
        ),
        Command::Down if cfg.delete_nodes => plan::plan_teardown(
            s,
            &plan::TeardownRequest {
                names: cfg.names.clone(),
                region: cfg.region.clone(),
            },
        ),
        Command::Down => plan::plan_remove(
            s,
            &plan::RemoveRequest {
                names: cfg.names.clone(),
                zone: cfg.zone.clone(),
                region: cfg.region.clone(),
                replica_name: cfg.replica_name.clone(),
            },
        ),
    }
}

async fn act(cfg: &Config, command: Command) -> Result<()> {
    let name = match command {
        Command::Up => "up",
        Command::Down => "down",
    };
    let started = Instant::now();
    let quiet = Progress::quiet();
    let gce = connect(cfg).await?;
    let key = cfg.names.lock_key();
    for _ in 0..LOCK_ATTEMPTS {
        let (snapshot, observed) = observe(cfg, &gce).await?;
        let plan = make_plan(cfg, &command, &snapshot)?;
        let progress = Progress::new(plan.steps.len());
        let progress = if cfg.output == OutputFormat::Json && cfg.dry_run {
            &quiet
        } else {
            &progress
        };
        print_warnings(cfg, progress);
        if matches!(command, Command::Up) {
            warn_expiring(&observed, progress);
        }
        for note in &plan.notes {
            progress.say(&plan::note_line(note));
        }
        if cfg.dry_run {
            print_plan(cfg, &plan, name);
            return Ok(());
        }
        if plan.is_empty() {
            if snapshot.lock.interrupted().is_some() {
                // The interrupted run had finished its work but not released the lock.
                match lock::acquire(&gce, &observed.project_metadata, &key, &plan.intent, cfg.timeout).await? {
                    lock::Acquired::Yes => lock::release(&gce, &key).await?,
                    lock::Acquired::Raced => continue,
                }
            }
            print_result(cfg, name, &plan, "nothing to do", json!({}));
            return Ok(());
        }
        match lock::acquire(&gce, &observed.project_metadata, &key, &plan.intent, cfg.timeout).await? {
            lock::Acquired::Raced => continue,
            lock::Acquired::Yes => {}
        }
        if let LockState::Held { record, staleness } = &snapshot.lock {
            progress.say(&format!(
                "took over the lock of an interrupted run ({}, {}, {:?}); resuming",
                record.intent, record.owner, staleness
            ));
        }
        progress.say(&format!("{}: {} step(s)", plan.intent, plan.steps.len()));
        let region = snapshot.cluster_region().unwrap_or_else(|| cfg.region.clone());
        let replica_ips = snapshot
            .replicas
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.internal_ip?)))
            .collect();
        let mut exec = Executor::new(
            cfg,
            &gce,
            progress,
            region.clone(),
            started,
            observed.secrets.clone(),
            replica_ips,
        );
        return match exec.run(&plan).await {
            Ok(()) => {
                lock::release(&gce, &key).await?;
                let details = summary(cfg, &gce, &plan).await;
                print_result(cfg, name, &plan, "done", details);
                Ok(())
            }
            Err(e) => match (e.downcast_ref::<NeverHealthy>(), &plan.intent) {
                (Some(never), Intent::AddReplica { replica, zone, .. }) => {
                    let reason = never.to_string();
                    progress.say(&format!("{reason}; rolling back"));
                    rollback_add(cfg, &gce, &mut exec, &region, replica, zone).await?;
                    Err(anyhow!(
                        "{reason}; rolled back, the cluster is as it was before this up"
                    ))
                }
                _ => {
                    if let Err(h) = lock::hand_over(&gce, &key).await {
                        progress.say(&format!("warning: could not hand the lock over: {h:#}"));
                    }
                    Err(e.context(format!("{name} stopped; rerun the same command to resume")))
                }
            },
        };
    }
    Err(anyhow!("project metadata kept changing while taking the lock; rerun"))
}

/// Undo an add whose replica never became healthy; the intent says "rolling back" so an
/// interrupted undo is finished by the next run.
async fn rollback_add(
    cfg: &Config,
    gce: &Gce,
    exec: &mut Executor<'_>,
    region: &str,
    replica: &str,
    zone: &str,
) -> Result<()> {
    let key = cfg.names.lock_key();
    let intent = Intent::AddReplica {
        replica: replica.to_string(),
        zone: zone.to_string(),
        rolling_back: true,
    };
    lock::set_intent(gce, &key, &intent).await?;
    let (snapshot, _) = observe(cfg, gce).await?;
    let plan = plan::plan_rollback_add(&snapshot, &cfg.names, region, replica);
    exec.extend_boot_deadline();
    if let Err(e) = exec.run(&plan).await {
        let _ = lock::hand_over(gce, &key).await;
        return Err(e.context("the rollback stopped; rerun the same command to finish it"));
    }
    lock::release(gce, &key).await
}

/// What to tell the operator after a successful run.
async fn summary(cfg: &Config, gce: &Gce, plan: &Plan) -> serde_json::Value {
    let Ok((snapshot, _)) = observe_gce(gce, cfg).await else {
        return json!({});
    };
    let mut d = serde_json::Map::new();
    d.insert("cluster".into(), json!(cfg.names.master_name()));
    let replicas: Vec<String> = snapshot
        .replicas
        .iter()
        .map(|r| format!("{} ({})", r.name, r.zone))
        .collect();
    let replicas = if replicas.is_empty() {
        "none".to_string()
    } else {
        replicas.join(", ")
    };
    d.insert("replicas".into(), json!(replicas));
    if let Some(ip) = &snapshot.static_ip {
        d.insert("api".into(), json!(format!("https://{}", ip.ip)));
    }
    if let Intent::AddReplica { replica, .. } = &plan.intent {
        d.insert("added".into(), json!(replica));
    }
    if let Intent::RemoveReplica { replica, .. } = &plan.intent {
        d.insert("removed".into(), json!(replica));
    }
    if plan
        .steps
        .iter()
        .any(|s| matches!(s, plan::Step::WriteKubeconfig { .. }))
    {
        d.insert("kubeconfig".into(), json!(cfg.kubeconfig.display().to_string()));
    }
    let moved = plan.steps.iter().find_map(|s| match s {
        plan::Step::AttachExternalIp {
            replica,
            ip: plan::ExternalIp::Ephemeral,
            ..
        } => Some(replica.clone()),
        _ => None,
    });
    if let Some(r) = moved.and_then(|r| snapshot.replica(&r).cloned())
        && let Some(ip) = r.external_ip
    {
        d.insert(format!("{} external IP", r.name), json!(ip.to_string()));
    }
    serde_json::Value::Object(d)
}

/// `kube-ha status`: the top-level entry point of reporting.
pub async fn status(cfg: &Config) -> Result<()> {
    let gce = connect(cfg).await?;
    let (snapshot, observed) = observe(cfg, &gce).await.context("cannot observe the cluster")?;
    let report = status::Report::new(cfg, &snapshot, &observed);
    match cfg.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", report.render()),
    }
    Ok(())
}
