//! `disks` (zonal): insert, delete (refused while attached). [`build`] also makes the boot disks
//! of instance inserts.

use serde_json::{Value, json};

use super::{Commit, Effect, ensure_unused, store};
use crate::error::ApiError;
use crate::json::{fingerprint, int64_field, object_mut, str_field};
use crate::scope::{ResourceKey, Scope, absolute};
use crate::state::World;

/// Size of a disk created without `sizeGb`.
const DEFAULT_SIZE_GB: i64 = 10;

/// The stored disk for `base` (request body plus common fields): size as a string, full type
/// and image URLs, READY.
pub(super) fn build(w: &World, project: &str, key: &ResourceKey, mut base: Value) -> Result<Value, ApiError> {
    let zone = match &key.scope {
        Scope::Zone(z) => z.clone(),
        _ => String::new(),
    };
    let size = int64_field(&base, "sizeGb", "resource.sizeGb")?.unwrap_or(DEFAULT_SIZE_GB);
    if size <= 0 {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.sizeGb': '{size}'. Must be positive."
        )));
    }
    let disk_type = match str_field(&base, "type") {
        None => format!("zones/{zone}/diskTypes/pd-standard"),
        Some(t) if t.contains('/') => t.to_string(),
        Some(t) => format!("zones/{zone}/diskTypes/{t}"),
    };
    let image = str_field(&base, "sourceImage").map(|i| absolute(&w.api_base, project, i));
    let map = object_mut(&mut base);
    map.insert("sizeGb".into(), json!(size.to_string()));
    map.insert("type".into(), json!(absolute(&w.api_base, project, &disk_type)));
    if let Some(image) = image {
        map.insert("sourceImage".into(), json!(image));
    }
    map.insert("status".into(), json!("READY"));
    map.insert("physicalBlockSizeBytes".into(), json!("4096"));
    map.insert("labelFingerprint".into(), json!(fingerprint()));
    map.remove("users");
    Ok(base)
}

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, base: Value) -> Result<Commit, ApiError> {
    Ok(store(project, key, build(w, project, key, base)?))
}

pub(super) fn plan_delete(w: &World, project: &str, key: &ResourceKey, current: &Value) -> Result<Commit, ApiError> {
    ensure_unused(w, project, key, current, "disk")?;
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, effects: &mut Vec<Effect>| {
        w.remove(&project, &key);
        if let Scope::Zone(zone) = &key.scope {
            effects.push(Effect::DiskDeleted {
                zone: zone.clone(),
                name: key.name.clone(),
            });
        }
        Ok(())
    }))
}
