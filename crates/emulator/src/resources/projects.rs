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
        "defaultServiceAccount": default_service_account(id),
        "defaultNetworkTier": "PREMIUM",
        "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        "vmDnsSetting": "ZONAL_ONLY",
        "quotas": [],
    })
}

/// The project's Compute Engine default service account (`<number>-compute@…`), which an
/// instance asking for service account `default` gets.
pub(super) fn default_service_account(project_id: u64) -> String {
    format!(
        "{}-compute@developer.gserviceaccount.com",
        project_id % 1_000_000_000_000
    )
}

pub(super) fn plan_set_common_metadata(w: &World, project: &str, metadata: &Value) -> Result<Commit, ApiError> {
    let current = w
        .projects
        .get(project)
        .map(|p| p.metadata.clone())
        .unwrap_or_else(|| json!({}));
    // GCE: "You must always provide an up-to-date fingerprint", even over empty metadata
    check_fingerprint(
        str_field(&current, "fingerprint"),
        str_field(metadata, "fingerprint"),
        true,
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
