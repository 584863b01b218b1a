//! Control endpoints under `/_emulator` (not API calls: never logged, never faulted):
//! the call log, the fault queue, operation latencies, a state dump, and crashing a VM. Formats
//! are documented in the module doc of [`crate`].

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::error::ApiError;
use super::faults::{Fault, GuestFaultRequest, Posted};
use super::machines::GuestFault;
use super::scope::{Kind, ResourceKey, Scope};
use super::state::AppState;

/// The `/_emulator` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_emulator/calls", get(calls).delete(clear_calls))
        .route("/_emulator/faults", get(faults).post(add_faults).delete(clear_faults))
        .route("/_emulator/state", get(state_dump))
        .route(
            "/_emulator/latency",
            get(latency).post(set_latency).delete(reset_latency),
        )
        .route("/_emulator/hosts", get(hosts))
        .route("/_emulator/instances/{zone}/{name}/crash", post(crash))
}

async fn calls(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.calls().records()))
}

async fn clear_calls(State(state): State<AppState>) -> StatusCode {
    state.calls().clear();
    StatusCode::NO_CONTENT
}

async fn faults(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.faults().list()))
}

/// Accepts one fault object or an array of them: API faults are queued, guest faults are applied
/// to the simulated VMs at once (all are validated, and guest targets found, before any applies).
async fn add_faults(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(one) => vec![one],
        Err(e) => return Err(ApiError::BadRequest(format!("invalid fault: {e}"))),
    };
    let mut api: Vec<Fault> = Vec::new();
    let mut guest: Vec<GuestTarget> = Vec::new();
    for item in items {
        match Posted::parse(item)? {
            Posted::Api(f) => api.push(f),
            Posted::Guest(g) => guest.push(guest_target(&state, &g)?),
        }
    }
    for GuestTarget {
        project,
        instance,
        fault,
    } in guest
    {
        let target = instance.as_ref().map(|(z, n)| (z.as_str(), n.as_str()));
        if !state.machines().guest_fault(&project, target, fault) {
            return Err(ApiError::BadRequest(
                "guest faults need simulated VMs: start the emulator with --sandbox-dir".into(),
            ));
        }
    }
    let mut queue = state.faults();
    for f in api {
        queue.push(f);
    }
    Ok(Json(json!(queue.list())))
}

/// Where a guest fault applies: a project, and one instance (zone, name) or all of them.
struct GuestTarget {
    project: String,
    instance: Option<(String, String)>,
    fault: GuestFault,
}

/// The project and (zone, name) a guest fault names, looked up among the instances (404 when the
/// instance does not exist).
fn guest_target(state: &AppState, g: &GuestFaultRequest) -> Result<GuestTarget, ApiError> {
    let fault = g.action.fault();
    let Some(name) = &g.instance else {
        // Posted::parse required a project for a project-wide fault
        return Ok(GuestTarget {
            project: g.project.clone().unwrap_or_default(),
            instance: None,
            fault,
        });
    };
    let world = state.world();
    let found = world
        .projects
        .iter()
        .filter(|(p, _)| g.project.as_ref().is_none_or(|want| want == *p))
        .flat_map(|(p, proj)| proj.resources.keys().map(move |k| (p, k)))
        .find(|(_, k)| {
            k.kind == Kind::Instance
                && &k.name == name
                && g.zone.as_ref().is_none_or(|z| k.scope == Scope::Zone(z.clone()))
        })
        .and_then(|(p, k)| match &k.scope {
            Scope::Zone(z) => Some(GuestTarget {
                project: p.clone(),
                instance: Some((z.clone(), k.name.clone())),
                fault,
            }),
            _ => None,
        });
    found.ok_or_else(|| {
        ApiError::not_found(format!(
            "projects/{}/zones/{}/instances/{name}",
            g.project.as_deref().unwrap_or("*"),
            g.zone.as_deref().unwrap_or("*")
        ))
    })
}

/// Where the simulated hosts run ([`crate::Machines::hosts`]), for `kube-ha sandbox exec`.
async fn hosts(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.machines().hosts().map(Json).ok_or_else(|| {
        ApiError::not_found("_emulator/hosts (nothing is simulated: start the emulator with --sandbox-dir)")
    })
}

async fn clear_faults(State(state): State<AppState>) -> StatusCode {
    state.faults().clear();
    StatusCode::NO_CONTENT
}

async fn latency(State(state): State<AppState>) -> Json<Value> {
    Json(state.latency().to_json())
}

/// Merge a latency update (see `latency.rs`); the whole update or nothing.
async fn set_latency(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let update: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid latency update: {e}")))?;
    let mut latency = state.latency();
    latency
        .update(&update)
        .map_err(|e| ApiError::BadRequest(format!("invalid latency update: {e}")))?;
    Ok(Json(latency.to_json()))
}

/// Back to the latencies of the command line.
async fn reset_latency(State(state): State<AppState>) -> Json<Value> {
    let initial = state.initial_latency();
    let doc = initial.to_json();
    *state.latency() = initial;
    Json(doc)
}

async fn state_dump(State(state): State<AppState>) -> Json<Value> {
    Json(state.world().dump())
}

/// Kill the processes of an instance (its GCE record is unchanged). `?project=` picks the
/// project when several have an instance of that zone and name (else the first one).
async fn crash(
    State(state): State<AppState>,
    Path((zone, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let key = ResourceKey::new(Kind::Instance, Scope::Zone(zone.clone()), name.clone());
    let project = {
        let world = state.world();
        world
            .projects
            .iter()
            .filter(|(p, _)| q.get("project").is_none_or(|want| want == *p))
            .find(|(_, proj)| proj.resources.contains_key(&key))
            .map(|(p, _)| p.clone())
    }
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "projects/{}/zones/{zone}/instances/{name}",
            q.get("project").map(String::as_str).unwrap_or("*")
        ))
    })?;
    let crashed = state.machines().crash(&project, &zone, &name);
    Ok(Json(
        json!({"project": project, "zone": zone, "name": name, "crashed": crashed}),
    ))
}
