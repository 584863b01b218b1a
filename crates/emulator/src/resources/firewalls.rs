//! `firewalls` (global): insert with GCE's defaults (network, direction, priority); delete is the
//! generic one.

use serde_json::{Value, json};

use super::{Commit, store};
use crate::error::ApiError;
use crate::json::{object_mut, str_field};
use crate::scope::{ResourceKey, absolute};
use crate::state::World;

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, mut base: Value) -> Result<Commit, ApiError> {
    let network = str_field(&base, "network").unwrap_or("global/networks/default");
    let network = absolute(&w.api_base, project, network);
    let map = object_mut(&mut base);
    map.insert("network".into(), json!(network));
    map.entry("direction").or_insert(json!("INGRESS"));
    map.entry("priority").or_insert(json!(1000));
    map.entry("disabled").or_insert(json!(false));
    map.entry("logConfig").or_insert(json!({"enable": false}));
    Ok(store(project, key, base))
}
