//! The operations: `up`, `down` and `status`, the only code that reaches GCE and etcd.
//!
//! Each is observe → plan → act: probe the endpoint (a refusal in seconds when nothing answers),
//! read the world into a snapshot, compute a plan with the pure planners (a refusal there has
//! made no mutating call), take the lock with the fingerprint of what was observed (a concurrent
//! writer makes us observe again), run the steps, release the lock.
//!
//! etcd is reached over SSH to each master ([`access`]): the run's own key goes into the
//! masters' `ssh-keys` while it observes, and leaves them on every way out of `up`, `down` and
//! `status` (done, failed, refused, interrupted); after a SIGKILL its `expireOn` is the backstop.
//!
//! # Guarantees
//! - A run that dies leaves its intent in the lock record; the next run of the same command
//!   observes the partial work and finishes it.
//! - A run stopped by SIGINT or SIGTERM stops at a step boundary and hands its lock over (intent
//!   kept, free at once for any host); so does a run that fails while acting.
//! - Every warning is said once; `--dry-run` prints exactly the plan the real run would make.

pub mod access;
pub mod api;
pub mod boot_log;
pub mod cluster;
pub mod execute;
pub mod interrupt;
pub mod kubeconfig;
pub mod lock;
pub mod observe;
pub mod progress;
pub mod reach;
pub mod release;
pub mod status;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use crate::config::{Command, Config, Endpoint, OutputFormat};
use crate::error::Interrupted;
use crate::gce::Gce;
use crate::plan::lock::{Intent, LockState};
use crate::plan::{self, Plan, Snapshot};

use access::Access;
use execute::{Executor, NeverHealthy};
use interrupt::{Interrupt, signal_name};
use lock::{Acquired, Locker};
use observe::{Observed, observe_etcd, observe_gce};
use progress::Progress;

/// How many times to observe again when another writer changed project metadata under us.
const LOCK_ATTEMPTS: usize = 3;

/// Certificates closer than this to expiry are warned about by `up`.
const CERT_WARN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Connect to the Compute API the config names, after one quick probe that it answers (with
/// credentials, for real GCE). A sandbox endpoint is resolved to its URL by the caller (the
/// binary starts the sandbox; this library does not know how).
pub async fn connect(cfg: &Config) -> Result<Gce> {
    reach::probe(cfg).await?;
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

/// Whether `command` plans with etcd's view: everything but a teardown (which deletes the last
/// replica whole and asks etcd nothing), so a teardown needs no SSH.
fn needs_etcd(cfg: &Config, command: Command) -> bool {
    !(command == Command::Down && cfg.delete_nodes)
}

/// Why no SSH can reach the masters at all: no firewall rule admits tcp:22 to them.
fn ssh_blocked(cfg: &Config, s: &Snapshot) -> Option<String> {
    let admitted = plan::ssh::ssh_admitted_by(&s.firewall_rules, s.masters_network.as_deref(), cfg.names.tag());
    admitted.is_none().then(|| {
        format!(
            "no firewall rule admits tcp:{} to the masters (tag {})",
            crate::names::SSH_PORT,
            cfg.names.tag()
        )
    })
}

/// Every check of `up` and `down` that needs no etcd, on what GCE showed (the lock as first
/// read): a refusal here comes before the run's SSH key is written anywhere.
fn preflight_before_ssh(cfg: &Config, command: Command, s: &Snapshot, observed: &Observed) -> Result<()> {
    if command == Command::Status {
        return Ok(());
    }
    let mut early = s.clone();
    early.etcd_pending = true;
    early.lock = Locker::new(cfg).state(&observed.project_metadata)?;
    plan::plan_command(cfg, command, &early)?;
    Ok(())
}

/// Observe GCE, then etcd over SSH through the CAs found in metadata, then the lock once more.
///
/// The lock is read last on purpose: an operation takes its lock before it changes anything, so
/// whatever of a concurrent operation this snapshot saw (say, the learner of another `up`) is
/// covered by a lock this snapshot sees too. Reading the lock first left a window in which a
/// refusal named the other operation's learner as something to remove.
///
/// `before_acting`: the run holds no lock yet, so [`preflight_before_ssh`] runs first; an
/// observation made while acting (a rollback, the rest of a plan) would find its own lock.
pub async fn observe(
    cfg: &Config,
    gce: &Gce,
    access: &mut Access,
    command: Command,
    before_acting: bool,
) -> Result<(Snapshot, Observed)> {
    let (mut snapshot, mut observed) = observe_gce(gce, cfg).await?;
    if needs_etcd(cfg, command)
        && let Some(secrets) = &observed.secrets
    {
        if before_acting {
            preflight_before_ssh(cfg, command, &snapshot, &observed)?;
        }
        access.set_cas(&secrets.cas)?;
        let blocked = ssh_blocked(cfg, &snapshot);
        access
            .prepare(&observed.instances, &observed.project_metadata, blocked.as_deref())
            .await?;
        snapshot.unreachable = access.unreachable();
        observe_etcd(access, &mut snapshot).await;
    }
    let metadata = gce.project_metadata().await.context("cannot read the project")?;
    snapshot.lock = Locker::new(cfg).state(&metadata)?;
    snapshot.name_seed = observe::name_seed(&metadata);
    observed.project_metadata = metadata;
    Ok((snapshot, observed))
}

/// Print a plan on stdout for `--dry-run`, as JSON or text; the plan's notes are printed there
/// and only there.
fn print_plan(cfg: &Config, plan: &Plan, command: Command) {
    match cfg.output {
        OutputFormat::Json => {
            println!(
                "{}",
                json!({"command": command.to_string(), "dry_run": true, "warnings": cfg.warnings, "plan": plan})
            );
        }
        OutputFormat::Text => {
            print!("{}", plan.render());
            println!("dry run: nothing was changed");
        }
    }
}

fn print_result(cfg: &Config, command: Command, plan: &Plan, result: &str, details: serde_json::Value) {
    match cfg.output {
        OutputFormat::Json => {
            println!(
                "{}",
                json!({"command": command.to_string(), "result": result, "plan": plan, "details": details})
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

/// Warnings about certificates that expire within 30 days (SPEC §3).
fn expiring(observed: &Observed) -> Vec<String> {
    let soon = time::OffsetDateTime::now_utc() + CERT_WARN;
    status::certificates(&observed.instances)
        .into_iter()
        .filter_map(|cert| {
            let at = cert.not_after.filter(|t| *t < soon)?;
            Some(format!(
                "warning: {} certificate {} of {} expires {at}",
                cert.kind, cert.key, cert.replica
            ))
        })
        .collect()
}

/// `kube-ha up`: the top-level entry point of the first master and of adding a replica.
pub async fn up(cfg: &Config, interrupt: &Interrupt) -> Result<()> {
    act(cfg, Command::Up, interrupt).await
}

/// `kube-ha down`: the top-level entry point of removing a replica and of teardown.
pub async fn down(cfg: &Config, interrupt: &Interrupt) -> Result<()> {
    act(cfg, Command::Down, interrupt).await
}

/// Prints each line once (a re-observation after a lost lock race plans again).
struct Once<'a> {
    progress: &'a Progress,
    said: BTreeSet<String>,
}

impl Once<'_> {
    fn say(&mut self, line: String) {
        if self.said.insert(line.clone()) {
            self.progress.say(&line);
        }
    }
}

/// How many times a plan may end in "observe again and plan the rest" (`Plan::replan`).
const REPLAN_ROUNDS: usize = 3;

/// `up` and `down`: the run's SSH key leaves the masters on every way out of [`act_with`].
async fn act(cfg: &Config, command: Command, interrupt: &Interrupt) -> Result<()> {
    let started = Instant::now();
    let gce = connect(cfg).await?;
    let json_dry_run = cfg.output == OutputFormat::Json && cfg.dry_run;
    let mut access = Access::new(cfg, &gce, started, !json_dry_run)?;
    let result = act_with(cfg, command, interrupt, &gce, &mut access, started).await;
    access.remove_keys().await;
    result
}

/// Run `plan`, and while it says the rest can only be planned after it, observe again and run
/// the next plan (with the lock state as this run found it: the operation it resumes). Returns
/// the last plan.
async fn run_plans(
    cfg: &Config,
    command: Command,
    gce: &Gce,
    exec: &mut Executor<'_>,
    progress: &Progress,
    found: &LockState,
    mut plan: Plan,
) -> Result<Plan> {
    for _ in 0..REPLAN_ROUNDS {
        exec.run(&plan).await?;
        if !plan.replan {
            return Ok(plan);
        }
        let (mut snapshot, _) = observe(cfg, gce, exec.access(), command, false).await?;
        snapshot.lock = found.clone();
        let next = plan::plan_command(cfg, command, &snapshot)
            .map_err(|r| anyhow!("after finishing the interrupted IP move: {r}"))?;
        for note in &next.notes {
            progress.say(&plan::note_line(note));
        }
        progress.say(&format!("then: {} more step(s)", next.steps.len()));
        exec.set_view(snapshot);
        plan = next;
    }
    Err(anyhow!("the plan kept needing another observation; rerun"))
}

async fn act_with(
    cfg: &Config,
    command: Command,
    interrupt: &Interrupt,
    gce: &Gce,
    access: &mut Access,
    started: Instant,
) -> Result<()> {
    let quiet = Progress::quiet();
    let gce = gce.clone();
    let locker = Locker::new(cfg);
    let loud = Progress::new(0);
    let json_dry_run = cfg.output == OutputFormat::Json && cfg.dry_run;
    let mut once = Once {
        progress: if json_dry_run { &quiet } else { &loud },
        said: BTreeSet::new(),
    };
    for w in &cfg.warnings {
        once.say(format!("warning: {w}"));
    }
    for _ in 0..LOCK_ATTEMPTS {
        let (snapshot, observed) = observe(cfg, &gce, access, command, true).await?;
        if let Some(w) = take_over_missed(cfg, &snapshot) {
            once.say(w);
        }
        let mut plan = plan::plan_command(cfg, command, &snapshot)?;
        let release = release::for_plan(cfg, &plan)?;
        if command == Command::Up {
            plan.notes.extend(expiring(&observed));
        }
        interrupt.check(|| None)?;
        if cfg.dry_run {
            print_plan(cfg, &plan, command);
            return Ok(());
        }
        for note in &plan.notes {
            once.say(plan::note_line(note));
        }
        if plan.is_empty() {
            if snapshot.lock.interrupted().is_some() {
                // The interrupted run had finished its work but not released the lock.
                match locker.acquire(&gce, &observed.project_metadata, &plan.intent).await? {
                    Acquired::Yes => locker.release(&gce).await?,
                    Acquired::Raced => continue,
                }
            }
            print_result(
                cfg,
                command,
                &plan,
                "nothing to do",
                json!({"ssh_handshakes": access.handshakes()}),
            );
            return Ok(());
        }
        match locker.acquire(&gce, &observed.project_metadata, &plan.intent).await? {
            Acquired::Raced => continue,
            Acquired::Yes => {}
        }
        let progress = Progress::new(plan.steps.len());
        if let LockState::Held { record, staleness } = &snapshot.lock {
            let why = record
                .handed_over
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            progress.say(&format!(
                "took over the lock of an interrupted run ({}, {}; {staleness}{why}); resuming",
                record.intent, record.owner
            ));
        }
        progress.say(&format!("{}: {} step(s)", plan.intent, plan.steps.len()));
        let region = snapshot.cluster_region().unwrap_or_else(|| cfg.region.clone());
        let found = snapshot.lock.clone();
        let mut exec = Executor::new(
            cfg,
            &gce,
            &progress,
            region.clone(),
            started,
            observed.secrets.clone(),
            access,
            snapshot,
            interrupt.clone(),
        )
        .with_release(release);
        return match run_plans(cfg, command, &gce, &mut exec, &progress, &found, plan.clone()).await {
            Ok(last) => {
                locker.release(&gce).await?;
                let mut details = summary(cfg, &gce, &last).await;
                if let Some(d) = details.as_object_mut() {
                    d.insert("ssh_handshakes".into(), json!(exec.access().handshakes()));
                }
                print_result(cfg, command, &last, "done", details);
                Ok(())
            }
            Err(e) => match (e.downcast_ref::<NeverHealthy>(), &plan.intent) {
                _ if e.downcast_ref::<Interrupted>().is_some() => {
                    Err(hand_over_interrupted(&gce, &locker, &progress, e).await)
                }
                (Some(never), Intent::AddReplica { replica, zone, .. }) => {
                    let reason = never.to_string();
                    progress.say(&format!("{reason}; rolling back"));
                    rollback_add(cfg, &gce, &locker, &mut exec, &region, replica, zone).await?;
                    Err(anyhow!(
                        "{reason}; rolled back, the cluster is as it was before this up"
                    ))
                }
                _ => {
                    if let Err(h) = locker.hand_over(&gce, "failed while acting").await {
                        progress.say(&format!("warning: could not hand the lock over: {h:#}"));
                    }
                    Err(e.context(format!("{command} stopped; rerun the same command to resume")))
                }
            },
        };
    }
    Err(anyhow!("project metadata kept changing while taking the lock; rerun"))
}

/// `KUBE_HA_TAKE_OVER_LOCK` that names no current holder takes nothing over: say so, so a stale
/// line pasted later is seen to have done nothing.
fn take_over_missed(cfg: &Config, s: &Snapshot) -> Option<String> {
    let named = cfg.take_over_lock.as_ref()?;
    let now = match &s.lock {
        LockState::Held {
            staleness: plan::lock::Staleness::TakenOver,
            ..
        } => return None,
        LockState::Held { record, .. } => format!("held by {}", record.owner),
        LockState::Free => "free".to_string(),
    };
    Some(format!(
        "warning: KUBE_HA_TAKE_OVER_LOCK={named} names no current lock holder (the lock is {now}); nothing was taken over"
    ))
}

/// Hand the lock over after SIGINT/SIGTERM (intent kept, anyone may resume at once) and return
/// the interruption, which becomes exit 130/143.
async fn hand_over_interrupted(gce: &Gce, locker: &Locker, progress: &Progress, e: anyhow::Error) -> anyhow::Error {
    let Some(i) = e.downcast_ref::<Interrupted>().cloned() else {
        return e;
    };
    let why = format!(
        "{} by {}",
        i.to_string().split(';').next().unwrap_or("interrupted"),
        signal_name(i.signal)
    );
    match locker.hand_over(gce, &why).await {
        Ok(()) => progress.say("handed the lock over: any host may resume at once"),
        Err(h) => progress.say(&format!("warning: could not hand the lock over: {h:#}")),
    }
    anyhow::Error::new(i)
}

/// Undo an add whose replica never became healthy; the intent says "rolling back" so an
/// interrupted undo is finished by the next run.
async fn rollback_add(
    cfg: &Config,
    gce: &Gce,
    locker: &Locker,
    exec: &mut Executor<'_>,
    region: &str,
    replica: &str,
    zone: &str,
) -> Result<()> {
    let intent = Intent::AddReplica {
        replica: replica.to_string(),
        zone: zone.to_string(),
        rolling_back: true,
    };
    locker.set_intent(gce, &intent).await?;
    let (snapshot, _) = observe(cfg, gce, exec.access(), Command::Up, false).await?;
    let plan = plan::plan_rollback_add(&snapshot, &cfg.names, region, replica, zone);
    exec.set_view(snapshot);
    exec.extend_boot_deadline();
    if let Err(e) = exec.run(&plan).await {
        if e.downcast_ref::<Interrupted>().is_some() {
            return Err(hand_over_interrupted(gce, locker, &Progress::new(0), e).await);
        }
        let _ = locker.hand_over(gce, "the rollback failed").await;
        return Err(e.context("the rollback stopped; rerun the same command to finish it"));
    }
    locker.release(gce).await
}

/// What to tell the operator after a successful run.
async fn summary(cfg: &Config, gce: &Gce, plan: &Plan) -> serde_json::Value {
    let snapshot = match observe_gce(gce, cfg).await {
        Ok((snapshot, _)) => snapshot,
        Err(e) => return json!({ "summary": format!("unavailable: {e:#}") }),
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

/// `kube-ha status`: the top-level entry point of reporting. Exit 0 healthy; 1 degraded, quorum
/// lost, locked or with leftovers (the verdict is on stdout); 2 when there is no cluster.
pub async fn status(cfg: &Config) -> Result<()> {
    let started = Instant::now();
    let gce = connect(cfg).await?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    let mut access = Access::new(cfg, &gce, started, true)?;
    let seen = observe(cfg, &gce, &mut access, Command::Status, false).await;
    access.remove_keys().await;
    let (snapshot, observed) = seen.context("cannot observe the cluster")?;
    let boots = boot_log::observe(&gce, &snapshot).await;
    let report = status::Report::new(cfg, &snapshot, &observed, &boots)?;
    match cfg.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", report.render()),
    }
    report.outcome()
}
