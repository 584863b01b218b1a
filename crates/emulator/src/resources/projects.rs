//! `projects`: get (with `commonInstanceMetadata`) and setCommonInstanceMetadata (guarded by the
//! metadata fingerprint, which changes on every update).

use serde_json::{Value, json};

use super::{Commit, Effect, check_fingerprint, instances::validated_items};
use crate::error::ApiError;
use crate::json::{fingerprint, str_field};
use crate::state::World;

/// The project resource (`compute#project`); the project must have been touched already.
pub fn project_json(w: &World, project: &str) -> Value {
    let (id, created, metadata) = match w.projects.get(project) {
        Some(p) => (p.id, p.created.clone(), p.metadata.clone()),
        None => (0, String::new(), json!({"kind": "compute#metadata"})),
    };
    json!({
        "kind": "compute#project",
        "id": id.to_string(),
        "name": project,
        "creationTimestamp": created,
        "selfLink": w.project_url(project),
        "commonInstanceMetadata": metadata,
        "defaultServiceAccount": format!("{}-compute@developer.gserviceaccount.com", id % 1_000_000_000_000),
        "defaultNetworkTier": "PREMIUM",
        "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        "vmDnsSetting": "ZONAL_ONLY",
        "quotas": [],
    })
}

pub(super) fn plan_set_common_metadata(w: &World, project: &str, metadata: &Value) -> Result<Commit, ApiError> {
    let current = w
        .projects
        .get(project)
        .map(|p| p.metadata.clone())
        .unwrap_or_else(|| json!({}));
    let has_items = current
        .get("items")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    check_fingerprint(
        str_field(&current, "fingerprint"),
        str_field(metadata, "fingerprint"),
        has_items,
        "metadata",
    )?;
    let items = validated_items(metadata)?;
    let project = project.to_string();
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        w.project_mut(&project).metadata =
            json!({"kind": "compute#metadata", "fingerprint": fingerprint(), "items": items});
        Ok(())
    }))
}
