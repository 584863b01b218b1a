//! `targetPools` (regional): insert, delete (refused while a forwarding rule targets it),
//! addInstance and removeInstance. Members are instance URLs; an added instance must exist in a
//! zone of the pool's region. Like GCE, deleting an instance leaves its URL in the pool (the
//! load-balancer view simply skips it); removing such a stale URL works.

use serde_json::{Value, json};

use super::{Commit, Effect, discard, rel_path, store, string_list};
use crate::error::ApiError;
use crate::json::{invalid_field, object_mut, set_or_remove, str_field};
use crate::scope::{Kind, ResourceKey, parse_link};
use crate::state::World;

/// (project, key) of an instance URL.
fn instance_ref(project: &str, url: &str) -> Option<(String, ResourceKey)> {
    let link = parse_link(project, url)?;
    let key = link.key().filter(|k| k.kind == Kind::Instance)?;
    Some((link.project, key))
}

/// Validate an instance to add to a pool of `region`; returns its full URL.
fn member_to_add(w: &World, project: &str, region: &str, url: &str, field: &str) -> Result<String, ApiError> {
    let (p, key) = instance_ref(project, url).ok_or_else(|| invalid_field(field, url))?;
    if w.get(&p, &key).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{url}'. The resource '{}' was not found",
            key.path(&p)
        )));
    }
    if key.scope.region() != Some(region) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{url}'. The instance must be in a zone of region '{region}'."
        )));
    }
    Ok(w.self_link(&p, &key))
}

/// The member URLs of a pool.
fn members(pool: &Value) -> Vec<String> {
    string_list(pool, "instances")
}

/// Instance URLs of a request body (`instances: [{instance: URL}]`).
pub fn request_instances(body: &Value) -> Vec<String> {
    body.get("instances")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => str_field(other, "instance").unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn region_of(key: &ResourceKey) -> String {
    key.scope.region().unwrap_or_default().to_string()
}

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, mut base: Value) -> Result<Commit, ApiError> {
    let region = region_of(key);
    let mut links: Vec<String> = Vec::new();
    for (i, url) in members(&base).iter().enumerate() {
        let link = member_to_add(w, project, &region, url, &format!("resource.instances[{i}]"))?;
        if !links.contains(&link) {
            links.push(link);
        }
    }
    let map = object_mut(&mut base);
    set_or_remove(map, "instances", json!(links));
    map.entry("sessionAffinity").or_insert(json!("NONE"));
    Ok(store(project, key, base))
}

pub(super) fn plan_delete(w: &World, project: &str, key: &ResourceKey) -> Result<Commit, ApiError> {
    let user = w
        .of_kind(project, Kind::ForwardingRule)
        .find(|(_, fr)| {
            str_field(fr, "target")
                .and_then(|t| parse_link(project, t))
                .and_then(|l| l.key().map(|k| (l.project, k)))
                == Some((project.to_string(), key.clone()))
        })
        .map(|(k, _)| k.path(project));
    if let Some(user) = user {
        return Err(ApiError::in_use("target pool resource", &key.path(project), &user));
    }
    Ok(discard(project, key))
}

fn require_instances(urls: &[String]) -> Result<(), ApiError> {
    if urls.is_empty() || urls.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource.instances': at least one instance URL is required.",
        ));
    }
    Ok(())
}

/// Commit: the pool's members become `links`.
fn set_members(project: &str, key: &ResourceKey, links: Vec<String>) -> Commit {
    let (project, key) = (project.to_string(), key.clone());
    Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        if let Some(pool) = w.get_mut(&project, &key) {
            set_or_remove(object_mut(pool), "instances", json!(links));
        }
        Ok(())
    })
}

pub(super) fn plan_add(w: &World, project: &str, key: &ResourceKey, urls: &[String]) -> Result<Commit, ApiError> {
    require_instances(urls)?;
    let pool = w.require(project, key)?;
    let region = region_of(key);
    let mut links = members(pool);
    for (i, url) in urls.iter().enumerate() {
        let link = member_to_add(w, project, &region, url, &format!("resource.instances[{i}]"))?;
        if links.contains(&link) {
            return Err(ApiError::invalid(format!(
                "The resource '{}' is already a member of '{}'",
                rel_path(w, &link),
                key.path(project)
            )));
        }
        links.push(link);
    }
    Ok(set_members(project, key, links))
}

pub(super) fn plan_remove(w: &World, project: &str, key: &ResourceKey, urls: &[String]) -> Result<Commit, ApiError> {
    require_instances(urls)?;
    let pool = w.require(project, key)?;
    let mut links = members(pool);
    for (i, url) in urls.iter().enumerate() {
        let wanted =
            instance_ref(project, url).ok_or_else(|| invalid_field(&format!("resource.instances[{i}]"), url))?;
        let before = links.len();
        links.retain(|m| instance_ref(project, m).as_ref() != Some(&wanted));
        if links.len() == before {
            return Err(ApiError::invalid(format!(
                "The resource '{}' is not a member of '{}'",
                wanted.1.path(&wanted.0),
                key.path(project)
            )));
        }
    }
    Ok(set_members(project, key, links))
}
