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
use super::faults::Fault;
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

/// Accepts one fault object or an array of them.
async fn add_faults(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let parsed: Vec<Fault> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items.into_iter().map(serde_json::from_value).collect::<Result<_, _>>(),
        Ok(one) => serde_json::from_value(one).map(|f| vec![f]),
        Err(e) => Err(e),
    }
    .map_err(|e| ApiError::BadRequest(format!("invalid fault: {e}")))?;
    for f in &parsed {
        f.validate()?;
    }
    let mut queue = state.faults();
    for f in parsed {
        queue.push(f);
    }
    Ok(Json(json!(queue.list())))
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
