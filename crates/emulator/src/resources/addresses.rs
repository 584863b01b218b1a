//! `addresses` (regional, EXTERNAL or INTERNAL): insert (a fresh IP from the matching range, or
//! the requested `address`), delete (refused while IN_USE). `status`/`users` are maintained by
//! whoever uses the address (instances, forwarding rules) through `add_user`/`remove_user`.
//!
//! Like GCE, reserving the IP an instance already uses as its ephemeral external IP (or as its
//! internal IP) in the same region promotes it: the new address is IN_USE by that instance.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Commit, Effect, IpChoice, address_by_ip, ensure_unused, store_with_ip};
use crate::error::ApiError;
use crate::ips::Range;
use crate::json::{fingerprint, ip_field, object_mut, str_field};
use crate::scope::{Kind, ResourceKey, absolute};
use crate::state::World;

/// The instance of `region` using `ip` as its networkIP (INTERNAL) or natIP (EXTERNAL).
fn instance_using(w: &World, project: &str, region: &str, ip: Ipv4Addr, internal: bool) -> Option<String> {
    let text = ip.to_string();
    w.of_kind(project, Kind::Instance)
        .filter(|(k, _)| k.scope.region() == Some(region))
        .find(|(_, inst)| {
            let nics = inst
                .get("networkInterfaces")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            nics.iter().any(|nic| {
                if internal {
                    str_field(nic, "networkIP") == Some(text.as_str())
                } else {
                    nic.get("accessConfigs")
                        .and_then(Value::as_array)
                        .is_some_and(|acs| acs.iter().any(|ac| str_field(ac, "natIP") == Some(text.as_str())))
                }
            })
        })
        .map(|(k, _)| w.self_link(project, k))
}

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, mut base: Value) -> Result<Commit, ApiError> {
    let region = key.scope.region().unwrap_or_default().to_string();
    let address_type = str_field(&base, "addressType").unwrap_or("EXTERNAL").to_string();
    let internal = match address_type.as_str() {
        "EXTERNAL" => false,
        "INTERNAL" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid value for field 'resource.addressType': '{other}'. Must be EXTERNAL or INTERNAL."
            )));
        }
    };
    let mut initial_users: Vec<String> = Vec::new();
    let choice = match ip_field(&base, "address", "resource.address")? {
        None => IpChoice::Fresh(if internal { Range::Internal } else { Range::External }),
        Some(ip) => {
            let promoted = address_by_ip(w, project, ip)
                .is_none()
                .then(|| instance_using(w, project, &region, ip, internal))
                .flatten();
            match promoted {
                Some(user) => initial_users.push(user),
                None if w.ips.is_used(ip) => {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for field 'resource.address': '{ip}'. The IP address is already being used by another resource."
                    )));
                }
                None => {}
            }
            IpChoice::Given(ip)
        }
    };
    let map = object_mut(&mut base);
    map.insert("addressType".into(), json!(address_type));
    map.entry("ipVersion").or_insert(json!("IPV4"));
    if internal {
        let subnetwork = map
            .get("subnetwork")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("regions/{region}/subnetworks/default"));
        map.insert("subnetwork".into(), json!(absolute(&w.api_base, project, &subnetwork)));
        map.entry("purpose").or_insert(json!("GCE_ENDPOINT"));
    } else {
        map.entry("networkTier").or_insert(json!("PREMIUM"));
    }
    map.insert("labelFingerprint".into(), json!(fingerprint()));
    map.remove("users");
    map.insert(
        "status".into(),
        json!(if initial_users.is_empty() { "RESERVED" } else { "IN_USE" }),
    );
    if !initial_users.is_empty() {
        map.insert("users".into(), json!(initial_users));
    }
    Ok(store_with_ip(w, project, key, base, "address", choice, false))
}

pub(super) fn plan_delete(w: &World, project: &str, key: &ResourceKey, current: &Value) -> Result<Commit, ApiError> {
    ensure_unused(w, project, key, current, "address")?;
    let ip: Option<Ipv4Addr> = str_field(current, "address").and_then(|s| s.parse().ok());
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        w.remove(&project, &key);
        if let Some(ip) = ip {
            w.ips.release(ip);
        }
        Ok(())
    }))
}
