//! Long-running operations: every mutating call becomes an [`Operation`] that goes
//! PENDING → RUNNING → DONE, and its effect is applied when it becomes DONE.
//!
//! Expected flow of a mutating call ([`AppState::submit`]):
//! 1. a repeated `requestId` returns the operation it created the first time (no second effect);
//! 2. the change is validated against the current state: what GCE reports synchronously
//!    (404, 409, 400, 412) is returned as an HTTP error, nothing recorded;
//! 3. faults for operations are taken (delay, operation error, stall, boot mode);
//! 4. the operation is recorded RUNNING and the names it creates are claimed (they conflict
//!    from now on); the response shows it PENDING;
//! 5. after the operation's latency (`--op-latency-ms`, or `--op-latency` for its collection or
//!    method, see `latency.rs`) plus any delay fault (at once when that is zero, and then the
//!    response already says DONE) the change is validated again and applied — a failure found
//!    now ends the operation DONE with `error` — the machines hooks are told, and waiters wake.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::error::{ApiError, http_reason_phrase};
use super::faults::{OpFailure, OpOutcome};
use super::json::{new_id, now};
use super::machines::Boot;
use super::resources::{self, Effect, Mutation};
use super::scope::{Kind, Scope};
use super::state::{AppState, World};

/// The error an operation ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// `error.errors[0].code` (e.g. `RESOURCE_NOT_FOUND`, `QUOTA_EXCEEDED`).
    pub code: String,
    /// `error.errors[0].message`.
    pub message: String,
    /// `httpErrorStatusCode`.
    pub http_status: u16,
}

impl From<ApiError> for OpError {
    fn from(e: ApiError) -> Self {
        OpError {
            code: e.operation_code(),
            message: e.to_string(),
            http_status: e.http_status(),
        }
    }
}

impl From<OpFailure> for OpError {
    fn from(f: OpFailure) -> Self {
        OpError {
            code: f.code,
            message: f.message,
            http_status: f.http_status,
        }
    }
}

/// One operation record.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `operation-<ms>-<hex>`.
    pub name: String,
    id: u64,
    /// Where it is found (`zones/z/operations/…` etc.).
    pub scope: Scope,
    op_type: &'static str,
    target_link: String,
    target_id: Option<u64>,
    done: bool,
    insert_time: String,
    end_time: Option<String>,
    error: Option<OpError>,
    /// What it changes, for `/_emulator/state`.
    description: String,
}

impl Operation {
    /// Whether it is DONE.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A short description for the state dump.
    pub fn summary(&self) -> Value {
        json!({"name": self.name, "operationType": self.op_type, "scope": self.scope.path(),
               "change": self.description, "targetLink": self.target_link})
    }

    /// The JSON GCE returns; `first_response` renders a RUNNING operation as PENDING (the
    /// mutating call's own response).
    pub fn render(&self, project_url: &str, first_response: bool) -> Value {
        let status = match (self.done, first_response) {
            (true, _) => "DONE",
            (false, true) => "PENDING",
            (false, false) => "RUNNING",
        };
        let mut op = json!({
            "kind": "compute#operation",
            "id": self.id.to_string(),
            "name": self.name,
            "operationType": self.op_type,
            "targetLink": self.target_link,
            "status": status,
            "progress": if self.done { 100 } else { 0 },
            "insertTime": self.insert_time,
            "user": "emulator@kube-ha.local",
            "selfLink": format!("{project_url}/{}/operations/{}", self.scope.path(), self.name),
        });
        let Some(map) = op.as_object_mut() else {
            return op;
        };
        if let Some(id) = self.target_id {
            map.insert("targetId".into(), json!(id.to_string()));
        }
        if status != "PENDING" {
            map.insert("startTime".into(), json!(self.insert_time));
        }
        if let Some(end) = &self.end_time {
            map.insert("endTime".into(), json!(end));
        }
        match &self.scope {
            Scope::Zone(z) => {
                map.insert("zone".into(), json!(format!("{project_url}/zones/{z}")));
            }
            Scope::Region(r) => {
                map.insert("region".into(), json!(format!("{project_url}/regions/{r}")));
            }
            Scope::Global => {}
        }
        if let Some(e) = &self.error {
            map.insert(
                "error".into(),
                json!({"errors": [{"code": e.code, "message": e.message}]}),
            );
            map.insert("httpErrorStatusCode".into(), json!(e.http_status));
            map.insert("httpErrorMessage".into(), json!(http_reason_phrase(e.http_status)));
        }
        op
    }
}

/// The identity of the call being served, for fault matching.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Its sequence number in the call log, if it was logged.
    pub seq: Option<u64>,
}

/// An accepted change waiting for its operation to complete.
struct Completion {
    project: String,
    op_name: String,
    mutation: Mutation,
    boot: Boot,
    outcome: OpOutcome,
    /// The call's record in the log (for `metadataKeysChanged`).
    call_seq: Option<u64>,
}

impl AppState {
    /// Accept a mutating call (see the module doc); returns the operation JSON.
    pub(crate) fn submit(
        &self,
        call: Call<'_>,
        project: &str,
        mutation: Mutation,
        request_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut world = self.world();
        let project_url = world.project_url(project);
        let proj = world.project_mut(project);
        if let Some(op) = request_id
            .and_then(|rid| proj.request_ids.get(rid))
            .and_then(|name| proj.operations.get(name))
        {
            return Ok(op.render(&project_url, false));
        }
        resources::check(&world, project, &mutation)?;
        let faults = self
            .faults()
            .take_for_operation(call.method, call.path, mutation.is_instance_insert());
        let target_key = mutation.target();
        let target_link = match target_key {
            Some(k) => world.self_link(project, k),
            None => project_url.clone(),
        };
        let target_id = match &mutation {
            Mutation::Insert { id, .. } => Some(*id),
            _ => target_key
                .and_then(|k| world.get(project, k))
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
        };
        let id = new_id();
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let op = Operation {
            name: format!("operation-{millis}-{id:x}"),
            id,
            scope: target_key.map(|k| k.scope.clone()).unwrap_or(Scope::Global),
            op_type: mutation.op_type(),
            target_link,
            target_id,
            done: false,
            insert_time: now(),
            end_time: None,
            error: None,
            description: mutation.summary(project),
        };
        let op_name = op.name.clone();
        let proj = world.project_mut(project);
        for claim in mutation.claims() {
            proj.pending.insert(claim);
        }
        if let Some(rid) = request_id {
            proj.request_ids.insert(rid.to_string(), op_name.clone());
        }
        let first = op.render(&project_url, true);
        proj.operations.insert(op_name.clone(), op);

        let delay = self.latency().of(mutation.collection(), mutation.op_type()) + faults.delay;
        let job = Completion {
            project: project.to_string(),
            op_name,
            mutation,
            boot: faults.boot.unwrap_or(Boot::Normal {
                delay: self.settings().boot_delay,
            }),
            outcome: faults.outcome,
            call_seq: call.seq,
        };
        if job.outcome == OpOutcome::Stall {
            return Ok(first);
        }
        if delay.is_zero() {
            let done = self.complete(&mut world, job);
            drop(world);
            self.notify_op_done();
            return Ok(done);
        }
        drop(world);
        let state = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut world = state.world();
            state.complete(&mut world, job);
            drop(world);
            state.notify_op_done();
        });
        Ok(first)
    }

    /// Apply (or fail) an operation's change and mark it DONE; returns the operation JSON.
    fn complete(&self, world: &mut World, job: Completion) -> Value {
        let Completion {
            project,
            op_name,
            mutation,
            boot,
            outcome,
            call_seq,
        } = job;
        let proj = world.project_mut(&project);
        for claim in mutation.claims() {
            proj.pending.remove(&claim);
        }
        let mut effects = Vec::new();
        // the items are replaced whole, so the difference to what is there now is the change
        let metadata_keys = mutation.metadata_keys_changed(world, &project);
        let result: Result<(), OpError> = match outcome {
            OpOutcome::Fail(f) => Err(f.into()),
            // a stalled operation is never completed; `Stall` only keeps the match total
            OpOutcome::Apply | OpOutcome::Stall => {
                resources::apply(world, &project, &mutation, &mut effects).map_err(OpError::from)
            }
        };
        if let (Ok(()), Some(seq), Some(keys)) = (&result, call_seq, metadata_keys) {
            self.calls().set_metadata_keys(seq, keys);
        }
        self.tell_machines(world, &project, effects, boot);
        if result.is_ok() {
            self.tell_machines_changed(world, &project, &mutation);
        }
        let project_url = world.project_url(&project);
        let proj = world.project_mut(&project);
        match proj.operations.get_mut(&op_name) {
            Some(op) => {
                op.done = true;
                op.end_time = Some(now());
                op.error = result.err();
                op.render(&project_url, false)
            }
            None => json!({"name": op_name, "status": "DONE"}),
        }
    }

    /// The hooks for changed records (after the change is applied): an instance's new JSON, the
    /// project's metadata, the project's firewall list. Inserts and deletes of instances have
    /// hooks of their own ([`Effect`]s).
    fn tell_machines_changed(&self, world: &World, project: &str, mutation: &Mutation) {
        let m = self.machines();
        match mutation {
            Mutation::SetMetadata { key, .. }
            | Mutation::SetLabels { key, .. }
            | Mutation::AddAccessConfig { key, .. }
            | Mutation::DeleteAccessConfig { key, .. } => {
                if let (Scope::Zone(zone), Some(instance)) = (&key.scope, world.get(project, key)) {
                    m.instance_changed(project, zone, instance);
                }
            }
            Mutation::SetCommonInstanceMetadata { .. } => {
                if let Some(p) = world.projects.get(project) {
                    m.project_metadata_changed(project, &p.metadata);
                }
            }
            Mutation::Insert { key, .. } | Mutation::Delete { key } if key.kind == Kind::Firewall => {
                let firewalls: Vec<Value> = world.of_kind(project, Kind::Firewall).map(|(_, v)| v.clone()).collect();
                m.firewalls_changed(project, &firewalls);
            }
            _ => {}
        }
    }

    /// Run the hooks for applied effects, then the load-balancer hook if the LB set changed.
    fn tell_machines(&self, world: &mut World, project: &str, effects: Vec<Effect>, boot: Boot) {
        let m = self.machines();
        for effect in effects {
            match effect {
                Effect::InstanceCreated { zone, instance } => m.instance_created(project, &zone, &instance, boot),
                Effect::InstanceDeleted { zone, name } => m.instance_deleted(project, &zone, &name),
                Effect::ExternalIp { zone, name, ip } => m.external_ip_changed(project, &zone, &name, ip),
                Effect::DiskDeleted { zone, name } => m.disk_deleted(project, &zone, &name),
            }
        }
        let rules = resources::load_balancers(world);
        if rules != world.last_lb {
            world.last_lb = rules.clone();
            m.load_balancers_changed(rules);
        }
    }

    /// `operations.get` in a scope.
    pub(crate) fn get_operation(&self, project: &str, scope: &Scope, name: &str) -> Result<(Value, bool), ApiError> {
        let world = self.world();
        world
            .projects
            .get(project)
            .and_then(|p| p.operations.get(name))
            .filter(|op| &op.scope == scope)
            .map(|op| (op.render(&world.project_url(project), false), op.done))
            .ok_or_else(|| ApiError::not_found(format!("projects/{project}/{}/operations/{name}", scope.path())))
    }

    /// `operations.wait`: the operation once DONE, or as it is after the wait limit.
    pub(crate) async fn wait_operation(&self, project: &str, scope: &Scope, name: &str) -> Result<Value, ApiError> {
        let (mut done_rx, mut shutdown_rx) = self.watch_ops();
        let deadline = Instant::now() + self.settings().wait_limit;
        loop {
            let (op, done) = self.get_operation(project, scope, name)?;
            if done || *shutdown_rx.borrow() || Instant::now() >= deadline {
                return Ok(op);
            }
            tokio::select! {
                r = done_rx.changed() => if r.is_err() { return Ok(op) },
                r = shutdown_rx.changed() => if r.is_err() { return Ok(op) },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
