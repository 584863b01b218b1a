//! The HTTP surface: the `/compute/v1` routes (paths as the official client builds them, see
//! the crate's `transport.rs`), thin handlers that turn a request into a read or a
//! [`Mutation`], and the control routes of [`super::control`]. `$alt` and `$apiVersion` (and
//! every other unknown query parameter) are ignored.
//!
//! Routes are generic over the collection (`…/zones/{zone}/{collection}/{name}`); the handler
//! checks that the collection exists in that kind of scope (else 404), so `operations` share
//! the same shapes (`get` on an item, `wait` as an action).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::batch;
use super::calls::{CallSeq, record_calls};
use super::catalog;
use super::control;
use super::error::ApiError;
use super::json::{body_object, new_id, now, str_field};
use super::ops::Call;
use super::resources::{self, ListParams, Mutation};
use super::scope::{Kind, ResourceKey, Scope, ScopeType};
use super::state::AppState;

/// The emulator's whole HTTP surface (API, control endpoints, call log middleware, and the batch
/// endpoint, which serves each of its parts through the rest).
pub fn router(state: AppState) -> Router {
    let api = api_router(state);
    let parts = api.clone();
    api.route(
        "/batch/compute/v1",
        post(move |headers: HeaderMap, body: Bytes| batch::serve(parts.clone(), headers, body))
            .layer(DefaultBodyLimit::max(batch::MAX_BODY)),
    )
}

/// Everything but the batch endpoint.
fn api_router(state: AppState) -> Router {
    const P: &str = "/compute/v1/projects/{project}";
    Router::new()
        .route(P, get(project_get))
        .route(&format!("{P}/setCommonInstanceMetadata"), post(project_set_metadata))
        .route(&format!("{P}/zones"), get(zones_list))
        .route(&format!("{P}/zones/{{zone}}"), get(zone_get))
        .route(&format!("{P}/regions"), get(regions_list))
        .route(&format!("{P}/regions/{{region}}"), get(region_get))
        .route(&format!("{P}/aggregated/{{collection}}"), get(aggregated))
        .route(&format!("{P}/global/images"), get(images_list))
        .route(&format!("{P}/global/images/{{image}}"), get(image_get))
        .route(&format!("{P}/global/images/family/{{family}}"), get(image_from_family))
        .route(&format!("{P}/zones/{{zone}}/{{collection}}"), get(list).post(insert))
        .route(
            &format!("{P}/zones/{{zone}}/{{collection}}/{{name}}"),
            get(item_get).delete(item_delete),
        )
        .route(
            &format!("{P}/zones/{{zone}}/{{collection}}/{{name}}/{{action}}"),
            get(item_read_action).post(item_action),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{collection}}"),
            get(list).post(insert),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{collection}}/{{name}}"),
            get(item_get).delete(item_delete),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{collection}}/{{name}}/{{action}}"),
            post(item_action),
        )
        .route(&format!("{P}/global/{{collection}}"), get(list).post(insert))
        .route(
            &format!("{P}/global/{{collection}}/{{name}}"),
            get(item_get).delete(item_delete),
        )
        .route(
            &format!("{P}/global/{{collection}}/{{name}}/{{action}}"),
            post(item_action),
        )
        .merge(control::routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), record_calls))
        .with_state(state)
}

type ApiResult = Result<Json<Value>, ApiError>;
type Params = Path<HashMap<String, String>>;

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path().trim_start_matches("/compute/v1/").to_string())
}

/// The query parameters (repeated names: the last wins).
fn query(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or_default()
}

/// The project and the scope named by the path.
fn location(params: &HashMap<String, String>) -> (String, Scope) {
    let scope = match (params.get("zone"), params.get("region")) {
        (Some(z), _) => Scope::Zone(z.clone()),
        (None, Some(r)) => Scope::Region(r.clone()),
        (None, None) => Scope::Global,
    };
    (param(params, "project").to_string(), scope)
}

/// What a `{collection}` segment names in a scope.
enum Collection {
    Resource(Kind),
    Operations,
}

fn collection(project: &str, scope: &Scope, name: &str) -> Result<Collection, ApiError> {
    scope.ensure_known(project)?;
    if name == "operations" {
        return Ok(Collection::Operations);
    }
    let wanted = match scope {
        Scope::Zone(_) => ScopeType::Zonal,
        Scope::Region(_) => ScopeType::Regional,
        Scope::Global => ScopeType::Global,
    };
    Kind::from_collection(name)
        .filter(|k| k.scope_type() == wanted)
        .map(Collection::Resource)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/{}/{name}", scope.path())))
}

/// A boolean query parameter: `true`/`false` in any case (gcloud sends `True`).
fn bool_param(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid(format!(
            "Invalid value for parameter '{name}': '{value}'."
        ))),
    }
}

fn list_params(q: &HashMap<String, String>) -> Result<ListParams, ApiError> {
    let max_results = match q.get("maxResults") {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::invalid(format!("Invalid value for field 'maxResults': '{s}'.")))?,
        ),
    };
    Ok(ListParams {
        filter: q.get("filter").cloned(),
        max_results,
        page_token: q.get("pageToken").cloned(),
    })
}

fn submit(
    state: &AppState,
    seq: Option<Extension<CallSeq>>,
    method: &Method,
    uri: &Uri,
    project: &str,
    mutation: Mutation,
    q: &HashMap<String, String>,
) -> ApiResult {
    let call = Call {
        method: method.as_str(),
        path: uri.path(),
        seq: seq.map(|Extension(CallSeq(n))| n),
    };
    state
        .submit(call, project, mutation, q.get("requestId").map(String::as_str))
        .map(Json)
}

async fn project_get(State(state): State<AppState>, Path(project): Path<String>) -> ApiResult {
    let mut world = state.world();
    world.project_mut(&project);
    Ok(Json(resources::project_json(&world, &project)))
}

async fn project_set_metadata(
    State(state): State<AppState>,
    seq: Option<Extension<CallSeq>>,
    Path(project): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let q = query(&uri)?;
    let metadata = body_object(&body)?;
    let m = Mutation::SetCommonInstanceMetadata { metadata };
    submit(&state, seq, &method, &uri, &project, m, &q)
}

/// A list document of catalogue entries, with filter and paging.
fn catalogue_list(kind: &str, self_link: String, items: Vec<Value>, uri: &Uri) -> ApiResult {
    let q = query(uri)?;
    let params = list_params(&q)?;
    let filter = super::filter::Filter::parse(params.filter.as_deref().unwrap_or(""))?;
    let items: Vec<Value> = items.into_iter().filter(|v| filter.matches(v)).collect();
    Ok(Json(
        json!({"kind": kind, "id": self_link, "selfLink": self_link, "items": items}),
    ))
}

async fn zones_list(State(state): State<AppState>, Path(project): Path<String>, uri: Uri) -> ApiResult {
    let url = state.world().project_url(&project);
    let items = catalog::zones()
        .filter_map(|(z, _)| catalog::zone_json(&url, &z))
        .collect();
    catalogue_list("compute#zoneList", format!("{url}/zones"), items, &uri)
}

async fn regions_list(State(state): State<AppState>, Path(project): Path<String>, uri: Uri) -> ApiResult {
    let url = state.world().project_url(&project);
    let items = catalog::regions()
        .filter_map(|r| catalog::region_json(&url, r))
        .collect();
    catalogue_list("compute#regionList", format!("{url}/regions"), items, &uri)
}

async fn zone_get(State(state): State<AppState>, Path((project, zone)): Path<(String, String)>) -> ApiResult {
    let url = state.world().project_url(&project);
    catalog::zone_json(&url, &zone)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/zones/{zone}")))
}

async fn region_get(State(state): State<AppState>, Path((project, region)): Path<(String, String)>) -> ApiResult {
    let url = state.world().project_url(&project);
    catalog::region_json(&url, &region)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/regions/{region}")))
}

async fn images_list(State(state): State<AppState>, Path(project): Path<String>, uri: Uri) -> ApiResult {
    let url = state.world().project_url(&project);
    let items = catalog::images(&state.world().api_base, &project);
    catalogue_list("compute#imageList", format!("{url}/global/images"), items, &uri)
}

async fn image_get(State(state): State<AppState>, Path((project, image)): Path<(String, String)>) -> ApiResult {
    catalog::image(&state.world().api_base, &project, &image)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/global/images/{image}")))
}

async fn image_from_family(
    State(state): State<AppState>,
    Path((project, family)): Path<(String, String)>,
) -> ApiResult {
    catalog::image_from_family(&state.world().api_base, &project, &family)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/global/images/family/{family}")))
}

async fn aggregated(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    let params = list_params(&query(&uri)?)?;
    let kind = Kind::from_collection(&name)
        .ok_or_else(|| ApiError::not_found(format!("projects/{project}/aggregated/{name}")))?;
    resources::aggregated(&state.world(), &project, kind, &params).map(Json)
}

async fn list(State(state): State<AppState>, Path(params): Params, uri: Uri) -> ApiResult {
    let (project, scope) = location(&params);
    let q = query(&uri)?;
    match collection(&project, &scope, param(&params, "collection"))? {
        Collection::Resource(kind) => {
            resources::list(&state.world(), &project, kind, &scope, &list_params(&q)?).map(Json)
        }
        Collection::Operations => Err(ApiError::not_found(format!(
            "projects/{project}/{}/operations (listing operations is not emulated)",
            scope.path()
        ))),
    }
}

async fn insert(
    State(state): State<AppState>,
    seq: Option<Extension<CallSeq>>,
    Path(params): Params,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (project, scope) = location(&params);
    let q = query(&uri)?;
    let Collection::Resource(kind) = collection(&project, &scope, param(&params, "collection"))? else {
        return Err(ApiError::not_found(uri.path().to_string()));
    };
    let mut body = body_object(&body)?;
    let name = str_field(&body, "name")
        .ok_or_else(|| ApiError::invalid("Required field 'resource.name' not specified"))?
        .to_string();
    if kind == Kind::Disk
        && let (Some(image), Some(map)) = (q.get("sourceImage"), body.as_object_mut())
    {
        map.insert("sourceImage".into(), json!(image));
    }
    let m = Mutation::Insert {
        key: ResourceKey::new(kind, scope, name),
        body,
        id: new_id(),
        created: now(),
    };
    submit(&state, seq, &method, &uri, &project, m, &q)
}

async fn item_get(State(state): State<AppState>, Path(params): Params) -> ApiResult {
    let (project, scope) = location(&params);
    let name = param(&params, "name");
    match collection(&project, &scope, param(&params, "collection"))? {
        Collection::Resource(kind) => {
            let key = ResourceKey::new(kind, scope, name);
            resources::get(&state.world(), &project, &key).map(Json)
        }
        Collection::Operations => state.get_operation(&project, &scope, name).map(|(op, _)| Json(op)),
    }
}

async fn item_delete(
    State(state): State<AppState>,
    seq: Option<Extension<CallSeq>>,
    Path(params): Params,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let (project, scope) = location(&params);
    let q = query(&uri)?;
    let Collection::Resource(kind) = collection(&project, &scope, param(&params, "collection"))? else {
        return Err(ApiError::not_found(uri.path().to_string()));
    };
    let key = ResourceKey::new(kind, scope, param(&params, "name"));
    submit(&state, seq, &method, &uri, &project, Mutation::Delete { key }, &q)
}

/// Read-only actions on an item: `instances.getGuestAttributes` and
/// `instances.getSerialPortOutput` (`…/serialPort`), answered from the simulated VM
/// ([`crate::Machines::guest_attributes`], [`crate::Machines::serial_port_output`], called
/// without the state lock).
async fn item_read_action(State(state): State<AppState>, Path(params): Params, uri: Uri) -> ApiResult {
    let (project, scope) = location(&params);
    let q = query(&uri)?;
    let name = param(&params, "name");
    let action = param(&params, "action");
    let (Collection::Resource(Kind::Instance), Scope::Zone(zone)) =
        (collection(&project, &scope, param(&params, "collection"))?, &scope)
    else {
        return Err(ApiError::not_found(uri.path().to_string()));
    };
    if action != "getGuestAttributes" && action != "serialPort" {
        return Err(ApiError::not_found(uri.path().to_string()));
    }
    let key = ResourceKey::new(Kind::Instance, scope.clone(), name);
    let self_link = {
        let world = state.world();
        world.require(&project, &key)?;
        format!("{}/{action}", world.self_link(&project, &key))
    };
    if action == "serialPort" {
        let port = resources::serial_port::port(q.get("port").map(String::as_str))?;
        let text = state
            .machines()
            .serial_port_output(&project, zone, name, port)
            .unwrap_or_default();
        return resources::serial_port::reply(&self_link, port, q.get("start").map(String::as_str), &text).map(Json);
    }
    let attributes = state.machines().guest_attributes(&project, zone, name);
    resources::guest_attributes::reply(
        &self_link,
        &key.path(&project),
        q.get("queryPath").map(String::as_str),
        q.get("variableKey").map(String::as_str),
        attributes,
    )
    .map(Json)
}

async fn item_action(
    State(state): State<AppState>,
    seq: Option<Extension<CallSeq>>,
    Path(params): Params,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (project, scope) = location(&params);
    let q = query(&uri)?;
    let name = param(&params, "name");
    let action = param(&params, "action");
    let kind = match collection(&project, &scope, param(&params, "collection"))? {
        Collection::Operations if action == "wait" => {
            return state.wait_operation(&project, &scope, name).await.map(Json);
        }
        Collection::Operations => return Err(ApiError::not_found(uri.path().to_string())),
        Collection::Resource(kind) => kind,
    };
    let key = ResourceKey::new(kind, scope, name);
    let body = body_object(&body)?;
    let required = |param: &str| {
        q.get(param)
            .cloned()
            .ok_or_else(|| ApiError::invalid(format!("Required parameter '{param}' not specified")))
    };
    let m = match (kind, action) {
        (Kind::Instance, "addAccessConfig") => Mutation::AddAccessConfig {
            key,
            nic: required("networkInterface")?,
            config: body,
        },
        (Kind::Instance, "deleteAccessConfig") => Mutation::DeleteAccessConfig {
            key,
            nic: required("networkInterface")?,
            name: required("accessConfig")?,
        },
        (Kind::Instance, "setMetadata") => Mutation::SetMetadata { key, metadata: body },
        (Kind::Instance, "setLabels") => Mutation::SetLabels { key, body },
        (Kind::Instance, "setDiskAutoDelete") => Mutation::SetDiskAutoDelete {
            key,
            device_name: required("deviceName")?,
            auto_delete: bool_param("autoDelete", &required("autoDelete")?)?,
        },
        (Kind::TargetPool, "addInstance") => Mutation::AddPoolInstances {
            key,
            instances: resources::request_instances(&body),
        },
        (Kind::TargetPool, "removeInstance") => Mutation::RemovePoolInstances {
            key,
            instances: resources::request_instances(&body),
        },
        _ => return Err(ApiError::not_found(uri.path().to_string())),
    };
    submit(&state, seq, &method, &uri, &project, m, &q)
}
