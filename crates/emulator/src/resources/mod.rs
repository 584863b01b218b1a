//! The collections: what each change checks and does ([`Mutation`] → [`plan`] → commit), the
//! reads (`get`, `list`, `aggregatedList`), and helpers the collections share (names,
//! fingerprints, address users, the load-balancer view for the machines).
//!
//! A change is planned against a read-only [`World`]: [`plan`] validates everything GCE would
//! refuse and returns a commit closure that cannot fail on validation any more. The same plan
//! runs when the call arrives (errors become HTTP errors) and again when its operation completes
//! (errors become the operation's `error`), so there is a single place for every rule.

mod addresses;
mod disks;
mod firewalls;
mod forwarding_rules;
pub mod guest_attributes;
mod instances;
mod metadata;
mod projects;
pub mod serial_port;
mod target_pools;

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

pub use forwarding_rules::load_balancers;
pub use projects::project_json;
pub use target_pools::request_instances;

use super::error::ApiError;
use super::filter::Filter;
use super::json::{object_mut, same_fingerprint, str_field};
use super::scope::{Kind, ResourceKey, Scope};
use super::state::World;

/// A change a mutating call asks for.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// `insert` of `key` with the request body; `id` and `created` are fixed when accepted.
    Insert {
        /// The new resource.
        key: ResourceKey,
        /// The request body.
        body: Value,
        /// Its `id`.
        id: u64,
        /// Its `creationTimestamp`.
        created: String,
    },
    /// `delete`.
    Delete {
        /// The resource.
        key: ResourceKey,
    },
    /// `instances.addAccessConfig`.
    AddAccessConfig {
        /// The instance.
        key: ResourceKey,
        /// `networkInterface` query parameter.
        nic: String,
        /// The AccessConfig body.
        config: Value,
    },
    /// `instances.deleteAccessConfig`.
    DeleteAccessConfig {
        /// The instance.
        key: ResourceKey,
        /// `networkInterface` query parameter.
        nic: String,
        /// `accessConfig` query parameter (its name).
        name: String,
    },
    /// `instances.setMetadata`.
    SetMetadata {
        /// The instance.
        key: ResourceKey,
        /// The Metadata body.
        metadata: Value,
    },
    /// `instances.setDiskAutoDelete` (gcloud's `instances delete --delete-disks` calls it first).
    SetDiskAutoDelete {
        /// The instance.
        key: ResourceKey,
        /// `deviceName` query parameter.
        device_name: String,
        /// `autoDelete` query parameter.
        auto_delete: bool,
    },
    /// `instances.setLabels`.
    SetLabels {
        /// The instance.
        key: ResourceKey,
        /// `{labels, labelFingerprint}`.
        body: Value,
    },
    /// `targetPools.addInstance`.
    AddPoolInstances {
        /// The pool.
        key: ResourceKey,
        /// Instance URLs.
        instances: Vec<String>,
    },
    /// `targetPools.removeInstance`.
    RemovePoolInstances {
        /// The pool.
        key: ResourceKey,
        /// Instance URLs.
        instances: Vec<String>,
    },
    /// `projects.setCommonInstanceMetadata`.
    SetCommonInstanceMetadata {
        /// The Metadata body.
        metadata: Value,
    },
}

impl Mutation {
    /// `operationType` of its operation.
    pub fn op_type(&self) -> &'static str {
        match self {
            Mutation::Insert { .. } => "insert",
            Mutation::Delete { .. } => "delete",
            Mutation::AddAccessConfig { .. } => "addAccessConfig",
            Mutation::DeleteAccessConfig { .. } => "deleteAccessConfig",
            Mutation::SetMetadata { .. } => "setMetadata",
            Mutation::SetDiskAutoDelete { .. } => "setDiskAutoDelete",
            Mutation::SetLabels { .. } => "setLabels",
            Mutation::AddPoolInstances { .. } => "addInstance",
            Mutation::RemovePoolInstances { .. } => "removeInstance",
            Mutation::SetCommonInstanceMetadata { .. } => "setCommonInstanceMetadata",
        }
    }

    /// The resource it changes (`None`: the project).
    pub fn target(&self) -> Option<&ResourceKey> {
        match self {
            Mutation::Insert { key, .. }
            | Mutation::Delete { key }
            | Mutation::AddAccessConfig { key, .. }
            | Mutation::DeleteAccessConfig { key, .. }
            | Mutation::SetMetadata { key, .. }
            | Mutation::SetLabels { key, .. }
            | Mutation::SetDiskAutoDelete { key, .. }
            | Mutation::AddPoolInstances { key, .. }
            | Mutation::RemovePoolInstances { key, .. } => Some(key),
            Mutation::SetCommonInstanceMetadata { .. } => None,
        }
    }

    /// The collection of its target (`projects` for project metadata), as latencies name it.
    pub fn collection(&self) -> &'static str {
        self.target().map(|k| k.kind.collection()).unwrap_or("projects")
    }

    /// For a metadata write (`instances.setMetadata`, `projects.setCommonInstanceMetadata`): the
    /// keys it adds, removes or rewrites over the metadata in `w`, sorted. `None` for other calls.
    pub fn metadata_keys_changed(&self, w: &World, project: &str) -> Option<Vec<String>> {
        static NONE: Value = Value::Null;
        let (current, new) = match self {
            Mutation::SetMetadata { key, metadata } => (w.get(project, key).and_then(|i| i.get("metadata")), metadata),
            Mutation::SetCommonInstanceMetadata { metadata } => {
                (w.projects.get(project).map(|p| &p.metadata), metadata)
            }
            _ => return None,
        };
        Some(metadata::keys_changed(current.unwrap_or(&NONE), new))
    }

    /// Names it creates: they conflict from the moment the call is accepted.
    pub fn claims(&self) -> Vec<ResourceKey> {
        match self {
            Mutation::Insert { key, body, .. } => {
                let mut keys = vec![key.clone()];
                if key.kind == Kind::Instance {
                    keys.extend(instances::created_disks(key, body));
                }
                keys
            }
            _ => Vec::new(),
        }
    }

    /// Whether boot faults apply to it.
    pub fn is_instance_insert(&self) -> bool {
        matches!(self, Mutation::Insert { key, .. } if key.kind == Kind::Instance)
    }

    /// `insert projects/p/zones/z/instances/x`.
    pub fn summary(&self, project: &str) -> String {
        match self.target() {
            Some(k) => format!("{} {}", self.op_type(), k.path(project)),
            None => format!("{} projects/{project}", self.op_type()),
        }
    }
}

/// Something the machines hooks must hear about (see [`super::machines::Machines`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// An instance now exists (its full JSON).
    InstanceCreated {
        /// Zone.
        zone: String,
        /// The instance as `get` returns it.
        instance: Value,
    },
    /// An instance is gone.
    InstanceDeleted {
        /// Zone.
        zone: String,
        /// Name.
        name: String,
    },
    /// nic0's external IP changed.
    ExternalIp {
        /// Zone.
        zone: String,
        /// Instance name.
        name: String,
        /// The new IP, if any.
        ip: Option<Ipv4Addr>,
    },
    /// A disk is gone.
    DiskDeleted {
        /// Zone.
        zone: String,
        /// Name.
        name: String,
    },
}

/// Applies a validated change. Allocations that can fail come first, so a failure leaves the
/// world unchanged.
pub type Commit = Box<dyn FnOnce(&mut World, &mut Vec<Effect>) -> Result<(), ApiError>>;

/// Validate a change against the world; the returned closure applies it.
pub fn plan(w: &World, project: &str, m: &Mutation) -> Result<Commit, ApiError> {
    if let Some(key) = m.target() {
        key.scope.ensure_known(project)?;
    }
    match m {
        Mutation::Insert { key, body, id, created } => {
            validate_name(&key.name, "resource.name")?;
            w.ensure_absent(project, key)?;
            let base = new_resource(w, project, key, body, *id, created);
            match key.kind {
                Kind::Instance => instances::plan_insert(w, project, key, base),
                Kind::Disk => disks::plan_insert(w, project, key, base),
                Kind::Address => addresses::plan_insert(w, project, key, base),
                Kind::Firewall => firewalls::plan_insert(w, project, key, base),
                Kind::TargetPool => target_pools::plan_insert(w, project, key, base),
                Kind::ForwardingRule => forwarding_rules::plan_insert(w, project, key, base),
            }
        }
        Mutation::Delete { key } => {
            let current = w.require(project, key)?;
            match key.kind {
                Kind::Instance => instances::plan_delete(w, project, key, current),
                Kind::Disk => disks::plan_delete(w, project, key, current),
                Kind::Address => addresses::plan_delete(w, project, key, current),
                Kind::TargetPool => target_pools::plan_delete(w, project, key),
                Kind::ForwardingRule => forwarding_rules::plan_delete(w, project, key, current),
                Kind::Firewall => Ok(discard(project, key)),
            }
        }
        Mutation::AddAccessConfig { key, nic, config } => {
            instances::plan_add_access_config(w, project, key, nic, config)
        }
        Mutation::DeleteAccessConfig { key, nic, name } => {
            instances::plan_delete_access_config(w, project, key, nic, name)
        }
        Mutation::SetMetadata { key, metadata } => instances::plan_set_metadata(w, project, key, metadata),
        Mutation::SetLabels { key, body } => instances::plan_set_labels(w, project, key, body),
        Mutation::SetDiskAutoDelete {
            key,
            device_name,
            auto_delete,
        } => instances::plan_set_disk_auto_delete(w, project, key, device_name, *auto_delete),
        Mutation::AddPoolInstances { key, instances } => target_pools::plan_add(w, project, key, instances),
        Mutation::RemovePoolInstances { key, instances } => target_pools::plan_remove(w, project, key, instances),
        Mutation::SetCommonInstanceMetadata { metadata } => projects::plan_set_common_metadata(w, project, metadata),
    }
}

/// Validate only (the mutating call's synchronous checks).
pub fn check(w: &World, project: &str, m: &Mutation) -> Result<(), ApiError> {
    plan(w, project, m).map(drop)
}

/// Validate again and apply.
pub fn apply(w: &mut World, project: &str, m: &Mutation, effects: &mut Vec<Effect>) -> Result<(), ApiError> {
    let commit = plan(w, project, m)?;
    commit(w, effects)
}

// ---------------------------------------------------------------------------------------------
// Reads

/// `get` of one resource.
pub fn get(w: &World, project: &str, key: &ResourceKey) -> Result<Value, ApiError> {
    key.scope.ensure_known(project)?;
    w.require(project, key).cloned()
}

/// Query parameters of list calls.
#[derive(Debug, Default)]
pub struct ListParams {
    /// `filter`.
    pub filter: Option<String>,
    /// `maxResults` (default 500).
    pub max_results: Option<usize>,
    /// `pageToken` (an offset, as this emulator issues them).
    pub page_token: Option<String>,
}

fn page(items: Vec<Value>, params: &ListParams) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let start = match params.page_token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("Invalid value for field 'pageToken': '{t}'.")))?,
    };
    let max = params.max_results.unwrap_or(500).clamp(1, 500);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(max).collect();
    let next = (start + max < total).then(|| (start + max).to_string());
    Ok((page, next))
}

fn filtered<'a>(items: impl Iterator<Item = &'a Value>, params: &ListParams) -> Result<Vec<Value>, ApiError> {
    let filter = Filter::parse(params.filter.as_deref().unwrap_or(""))?;
    Ok(items.filter(|v| filter.matches(v)).cloned().collect())
}

/// `list` of a collection in one scope.
pub fn list(w: &World, project: &str, kind: Kind, scope: &Scope, params: &ListParams) -> Result<Value, ApiError> {
    scope.ensure_known(project)?;
    let items = filtered(
        w.of_kind(project, kind)
            .filter(|(k, _)| &k.scope == scope)
            .map(|(_, v)| v),
        params,
    )?;
    let (items, next) = page(items, params)?;
    let mut doc = json!({
        "kind": kind.list_kind(),
        "id": format!("projects/{project}/{}/{}", scope.path(), kind.collection()),
        "selfLink": format!("{}/{}/{}", w.project_url(project), scope.path(), kind.collection()),
    });
    let map = object_mut(&mut doc);
    if !items.is_empty() {
        map.insert("items".into(), Value::Array(items));
    }
    if let Some(t) = next {
        map.insert("nextPageToken".into(), json!(t));
    }
    Ok(doc)
}

/// `aggregatedList`: every zone (or region) of the catalogue as a key, with the scope's items or
/// GCE's "no results" warning.
pub fn aggregated(w: &World, project: &str, kind: Kind, params: &ListParams) -> Result<Value, ApiError> {
    let scopes: Vec<Scope> = match kind.scope_type() {
        super::scope::ScopeType::Zonal => super::catalog::zones().map(|(z, _)| Scope::Zone(z)).collect(),
        super::scope::ScopeType::Regional => super::catalog::regions()
            .map(|r| Scope::Region(r.to_string()))
            .collect(),
        super::scope::ScopeType::Global => vec![Scope::Global],
    };
    let filter = Filter::parse(params.filter.as_deref().unwrap_or(""))?;
    let mut items = Map::new();
    for scope in scopes {
        let found: Vec<Value> = w
            .of_kind(project, kind)
            .filter(|(k, v)| k.scope == scope && filter.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        let entry = if found.is_empty() {
            json!({"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": "There are no results for scope '".to_string() + &scope.path() + "' on this page.",
                "data": [{"key": "scope", "value": scope.path()}],
            }})
        } else {
            json!({ kind.collection(): found })
        };
        items.insert(scope.path(), entry);
    }
    Ok(json!({
        "kind": kind.aggregated_kind(),
        "id": format!("projects/{project}/aggregated/{}", kind.collection()),
        "items": items,
        "selfLink": format!("{}/aggregated/{}", w.project_url(project), kind.collection()),
    }))
}

// ---------------------------------------------------------------------------------------------
// Shared by the collections

/// GCE's name rule: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn validate_name(name: &str, field: &str) -> Result<(), ApiError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last() != Some(&b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        )))
    }
}

/// The request body with the fields every resource has: kind, id, name, creationTimestamp,
/// selfLink, and zone/region URLs.
fn new_resource(w: &World, project: &str, key: &ResourceKey, body: &Value, id: u64, created: &str) -> Value {
    let mut v = body.clone();
    let map = object_mut(&mut v);
    map.insert("kind".into(), json!(key.kind.kind()));
    map.insert("id".into(), json!(id.to_string()));
    map.insert("name".into(), json!(key.name));
    map.insert("creationTimestamp".into(), json!(created));
    map.insert("selfLink".into(), json!(w.self_link(project, key)));
    match &key.scope {
        Scope::Zone(z) => {
            map.insert("zone".into(), json!(format!("{}/zones/{z}", w.project_url(project))));
        }
        Scope::Region(r) => {
            map.insert(
                "region".into(),
                json!(format!("{}/regions/{r}", w.project_url(project))),
            );
        }
        Scope::Global => {}
    }
    v
}

/// The fingerprint rule of metadata and labels: a given fingerprint must equal the current one;
/// a missing one is accepted only while there is nothing to overwrite.
pub fn check_fingerprint(
    current: Option<&str>,
    given: Option<&str>,
    has_content: bool,
    what: &str,
) -> Result<(), ApiError> {
    match given {
        Some(g) if current.is_some_and(|c| same_fingerprint(c, g)) => Ok(()),
        Some(_) => Err(ApiError::ConditionNotMet(format!(
            "Supplied fingerprint does not match current {what} fingerprint."
        ))),
        None if !has_content => Ok(()),
        None => Err(ApiError::ConditionNotMet(format!(
            "Supplied fingerprint is required to update {what}: it does not match the current {what} fingerprint."
        ))),
    }
}

/// `projects/p/…` of a full link (for messages).
pub fn rel_path(w: &World, link: &str) -> String {
    link.strip_prefix(&w.api_base)
        .map(|s| s.trim_start_matches('/').to_string())
        .unwrap_or_else(|| link.to_string())
}

/// The address resource of a project holding `ip`.
pub fn address_by_ip<'a>(w: &'a World, project: &str, ip: Ipv4Addr) -> Option<(&'a ResourceKey, &'a Value)> {
    let text = ip.to_string();
    w.of_kind(project, Kind::Address)
        .find(|(_, a)| str_field(a, "address") == Some(text.as_str()))
}

/// The strings of an array field (`users`, a pool's `instances`).
pub fn string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// The `users` of a resource.
pub fn users(v: &Value) -> Vec<String> {
    string_list(v, "users")
}

/// 400 `resourceInUseByAnotherResource` while `current` has users (`what`: "disk", "address").
fn ensure_unused(w: &World, project: &str, key: &ResourceKey, current: &Value, what: &str) -> Result<(), ApiError> {
    match users(current).first() {
        Some(user) => Err(ApiError::in_use(
            &format!("{what} resource"),
            &key.path(project),
            &rel_path(w, user),
        )),
        None => Ok(()),
    }
}

/// Commit: store `value` as `key`.
fn store(project: &str, key: &ResourceKey, value: Value) -> Commit {
    let (project, key) = (project.to_string(), key.clone());
    Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        w.insert(&project, key, value);
        Ok(())
    })
}

/// Commit: store `value` as `key`, its `field` set to the IP `choice` takes; with `as_user`
/// a static address gets the new resource as its user.
fn store_with_ip(
    w: &World,
    project: &str,
    key: &ResourceKey,
    mut value: Value,
    field: &'static str,
    choice: IpChoice,
    as_user: bool,
) -> Commit {
    let self_link = w.self_link(project, key);
    let (project, key) = (project.to_string(), key.clone());
    Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        let ip = choice.take(w)?;
        if as_user {
            choice.attach(w, &project, &self_link);
        }
        object_mut(&mut value).insert(field.into(), json!(ip.to_string()));
        w.insert(&project, key, value);
        Ok(())
    })
}

/// Commit: remove `key`.
fn discard(project: &str, key: &ResourceKey) -> Commit {
    let (project, key) = (project.to_string(), key.clone());
    Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        w.remove(&project, &key);
        Ok(())
    })
}

/// Set `users`, and for an address its `status` (IN_USE with users, else RESERVED).
fn set_users(w: &mut World, project: &str, key: &ResourceKey, list: Vec<String>) {
    if let Some(v) = w.get_mut(project, key) {
        let map = object_mut(v);
        if key.kind == Kind::Address {
            let status = if list.is_empty() { "RESERVED" } else { "IN_USE" };
            map.insert("status".into(), json!(status));
        }
        super::json::set_or_remove(map, "users", json!(list));
    }
}

/// Add a user link to a resource (an address becomes IN_USE).
pub fn add_user(w: &mut World, project: &str, key: &ResourceKey, user: &str) {
    let mut list = w.get(project, key).map(users).unwrap_or_default();
    if !list.iter().any(|u| u == user) {
        list.push(user.to_string());
    }
    set_users(w, project, key, list);
}

/// Remove a user link (an address without users is RESERVED again).
pub fn remove_user(w: &mut World, project: &str, key: &ResourceKey, user: &str) {
    let mut list = w.get(project, key).map(users).unwrap_or_default();
    list.retain(|u| u != user);
    set_users(w, project, key, list);
}

/// `user` lets go of `ip`: a static address loses the user, anything else returns to the pool.
pub fn release_ip(w: &mut World, project: &str, ip: Ipv4Addr, user: &str) {
    match address_by_ip(w, project, ip).map(|(k, _)| k.clone()) {
        Some(key) => remove_user(w, project, &key, user),
        None => w.ips.release(ip),
    }
}

/// An address (static) or a fresh one from the pool.
#[derive(Debug, Clone)]
pub enum IpChoice {
    /// A reserved address resource (it gets a user).
    Static(Ipv4Addr, ResourceKey),
    /// A caller-chosen IP that is no address resource.
    Given(Ipv4Addr),
    /// A fresh IP from a range.
    Fresh(super::ips::Range),
}

impl IpChoice {
    /// Take the IP: allocate, or claim; the static address's user is added by [`IpChoice::attach`].
    pub fn take(&self, w: &mut World) -> Result<Ipv4Addr, ApiError> {
        match self {
            IpChoice::Static(ip, _) => Ok(*ip),
            IpChoice::Given(ip) => {
                w.ips.claim(*ip);
                Ok(*ip)
            }
            IpChoice::Fresh(range) => w.ips.allocate(*range),
        }
    }

    /// Record `user` on the static address, if any.
    pub fn attach(&self, w: &mut World, project: &str, user: &str) {
        if let IpChoice::Static(_, key) = self {
            add_user(w, project, key, user);
        }
    }
}

/// Validate that `ip` names a RESERVED address of `address_type` in `region` usable by a new user.
pub fn reserved_address(
    w: &World,
    project: &str,
    region: &str,
    ip: Ipv4Addr,
    address_type: &str,
    field: &str,
) -> Result<Option<ResourceKey>, ApiError> {
    let Some((key, address)) = address_by_ip(w, project, ip) else {
        return Ok(None);
    };
    let address_region = key.scope.region().unwrap_or("");
    if address_region != region {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{ip}'. The address '{}' is in region '{address_region}', not in region '{region}'.",
            key.path(project)
        )));
    }
    let kind = str_field(address, "addressType").unwrap_or("EXTERNAL");
    if kind != address_type {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{ip}'. The address '{}' is {kind}, not {address_type}.",
            key.path(project)
        )));
    }
    if let Some(user) = users(address).first() {
        return Err(ApiError::in_use(
            "address resource",
            &key.path(project),
            &rel_path(w, user),
        ));
    }
    Ok(Some(key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_gce_rule() {
        for ok in ["a", "kubernetes-master", "m-x1z", "a1"] {
            assert!(validate_name(ok, "n").is_ok(), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in ["", "A", "1a", "a-", "a_b", too_long.as_str()] {
            assert!(validate_name(bad, "n").is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_guard_content() {
        assert!(check_fingerprint(Some("f"), Some("f"), true, "metadata").is_ok());
        assert!(check_fingerprint(Some("f"), Some("g"), false, "metadata").is_err());
        assert!(check_fingerprint(Some("f"), None, false, "metadata").is_ok());
        let e = check_fingerprint(Some("f"), None, true, "metadata").expect_err("required");
        assert_eq!(e.http_status(), 412);
    }
}
