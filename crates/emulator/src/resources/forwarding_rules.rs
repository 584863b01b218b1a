//! `forwardingRules` (regional): insert (the `IPAddress` — an IP or an address URL — must be a
//! RESERVED address of the region, else an ephemeral IP is allocated; `target` must be a target
//! pool of the region), delete (releases the IP). Also the load-balancer view given to the
//! machines hooks: [`load_balancers`].

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Commit, Effect, IpChoice, release_ip, reserved_address, store_with_ip};
use crate::error::ApiError;
use crate::ips::Range;
use crate::json::{fingerprint, invalid_field, object_mut, str_field};
use crate::machines::LbRule;
use crate::scope::{Kind, ResourceKey, parse_link};
use crate::state::World;

/// `443` or `443-444` as an inclusive range.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = s.trim().parse().ok()?;
            (p, p)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// Choose the rule's IP from `IPAddress`.
fn ip_choice(w: &World, project: &str, region: &str, requested: Option<&str>) -> Result<IpChoice, ApiError> {
    const FIELD: &str = "resource.IPAddress";
    let Some(requested) = requested.filter(|s| !s.is_empty()) else {
        return Ok(IpChoice::Fresh(Range::External));
    };
    let ip: Ipv4Addr = match requested.parse() {
        Ok(ip) => ip,
        Err(_) => {
            // an address URL
            let link = parse_link(project, requested)
                .filter(|l| l.project == project)
                .and_then(|l| l.key())
                .filter(|k| k.kind == Kind::Address)
                .ok_or_else(|| invalid_field(FIELD, requested))?;
            let address = w.get(project, &link).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid value for field '{FIELD}': '{requested}'. The resource '{}' was not found",
                    link.path(project)
                ))
            })?;
            str_field(address, "address")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid_field(FIELD, requested))?
        }
    };
    match reserved_address(w, project, region, ip, "EXTERNAL", FIELD)? {
        Some(key) => Ok(IpChoice::Static(ip, key)),
        None => Err(ApiError::invalid(format!(
            "Invalid value for field '{FIELD}': '{requested}'. The IP address is not reserved in region '{region}'."
        ))),
    }
}

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, mut base: Value) -> Result<Commit, ApiError> {
    let region = key.scope.region().unwrap_or_default().to_string();
    let target = str_field(&base, "target").unwrap_or_default().to_string();
    let pool = parse_link(project, &target)
        .filter(|l| l.project == project)
        .and_then(|l| l.key())
        .filter(|k| k.kind == Kind::TargetPool)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value for field 'resource.target': '{target}'. It must be a target pool."
            ))
        })?;
    if w.get(project, &pool).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.target': '{target}'. The resource '{}' was not found",
            pool.path(project)
        )));
    }
    if pool.scope.region() != Some(region.as_str()) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.target': '{target}'. The target pool must be in region '{region}'."
        )));
    }
    let choice = ip_choice(w, project, &region, str_field(&base, "IPAddress"))?;
    let port_range = match str_field(&base, "portRange") {
        None => None,
        Some(s) => {
            let (lo, hi) = parse_port_range(s).ok_or_else(|| invalid_field("resource.portRange", s))?;
            Some(format!("{lo}-{hi}"))
        }
    };
    let target_link = w.self_link(project, &pool);
    let map = object_mut(&mut base);
    map.insert("target".into(), json!(target_link));
    if let Some(range) = port_range {
        map.insert("portRange".into(), json!(range));
    }
    map.entry("IPProtocol").or_insert(json!("TCP"));
    map.entry("loadBalancingScheme").or_insert(json!("EXTERNAL"));
    map.entry("networkTier").or_insert(json!("PREMIUM"));
    map.insert("fingerprint".into(), json!(fingerprint()));
    map.insert("labelFingerprint".into(), json!(fingerprint()));
    Ok(store_with_ip(w, project, key, base, "IPAddress", choice, true))
}

pub(super) fn plan_delete(w: &World, project: &str, key: &ResourceKey, current: &Value) -> Result<Commit, ApiError> {
    let ip: Option<Ipv4Addr> = str_field(current, "IPAddress").and_then(|s| s.parse().ok());
    let self_link = w.self_link(project, key);
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        w.remove(&project, &key);
        if let Some(ip) = ip {
            release_ip(w, &project, ip, &self_link);
        }
        Ok(())
    }))
}

/// Every forwarding rule (all projects) whose target is a target pool: its IP, port range, and
/// the `nic0.networkIP` of each existing member instance. Sorted, so equal sets compare equal.
pub fn load_balancers(w: &World) -> Vec<LbRule> {
    let mut rules = Vec::new();
    for (project, p) in &w.projects {
        for (key, rule) in &p.resources {
            if key.kind != Kind::ForwardingRule {
                continue;
            }
            let Some(ip) = str_field(rule, "IPAddress").and_then(|s| s.parse().ok()) else {
                continue;
            };
            let ports = str_field(rule, "portRange")
                .and_then(parse_port_range)
                .unwrap_or((1, u16::MAX));
            let pool = str_field(rule, "target")
                .and_then(|t| parse_link(project, t))
                .and_then(|l| l.key().map(|k| (l.project, k)))
                .and_then(|(p, k)| w.get(&p, &k));
            let Some(pool) = pool else { continue };
            let mut backends: Vec<Ipv4Addr> = pool
                .get("instances")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|url| parse_link(project, url))
                .filter_map(|l| l.key().map(|k| (l.project, k)))
                .filter_map(|(p, k)| w.get(&p, &k))
                .filter_map(|inst| {
                    inst.get("networkInterfaces")?
                        .get(0)?
                        .get("networkIP")?
                        .as_str()?
                        .parse()
                        .ok()
                })
                .collect();
            backends.sort();
            backends.dedup();
            rules.push(LbRule { ip, ports, backends });
        }
    }
    rules.sort();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_single_ports_and_ranges() {
        assert_eq!(parse_port_range("443"), Some((443, 443)));
        assert_eq!(parse_port_range("80-90"), Some((80, 90)));
        assert_eq!(parse_port_range("90-80"), None);
        assert_eq!(parse_port_range("0"), None);
        assert_eq!(parse_port_range("http"), None);
    }
}
