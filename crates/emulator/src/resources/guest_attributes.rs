//! `instances.getGuestAttributes`: what an instance's guest wrote to its metadata server
//! (`PUT …/instance/guest-attributes/<namespace>/<key>`), as GCE renders it. The values come from
//! the simulated VM ([`crate::Machines::guest_attributes`]); this file only selects and renders.
//!
//! `variableKey=<namespace>/<key>` asks for one value (`variableKey`, `variableValue`);
//! `queryPath` asks for a subtree: `""` or `"/"` everything, `"<namespace>/"` one namespace,
//! `"<namespace>/<key>"` one entry (`queryValue.items`). Nothing there (or nothing simulated,
//! or guest attributes not enabled on the instance) is GCE's 404.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::machines::GuestAttribute;

/// The reply for an instance whose `getGuestAttributes` link is `self_link` and whose
/// relative path is `instance_path` (`projects/p/zones/z/instances/x`, for the 404).
pub fn reply(
    self_link: &str,
    instance_path: &str,
    query_path: Option<&str>,
    variable_key: Option<&str>,
    attributes: Option<Vec<GuestAttribute>>,
) -> Result<Value, ApiError> {
    let attributes = attributes.unwrap_or_default();
    let not_found = |what: &str| ApiError::not_found(format!("{instance_path}/guestAttributes/{what}"));
    if let Some(variable) = variable_key.filter(|v| !v.is_empty()) {
        let (namespace, key) = variable.split_once('/').unwrap_or(("", variable));
        let found = attributes
            .iter()
            .find(|a| a.namespace == namespace && a.key == key)
            .ok_or_else(|| not_found(variable))?;
        return Ok(json!({
            "kind": "compute#guestAttributes",
            "selfLink": format!("{self_link}?variableKey={variable}"),
            "variableKey": variable,
            "variableValue": found.value,
        }));
    }
    let path = query_path.unwrap_or("");
    let trimmed = path.trim_start_matches('/');
    let (namespace, key) = match trimmed.split_once('/') {
        Some((ns, key)) => (ns, key),
        None => (trimmed, ""),
    };
    let items: Vec<Value> = attributes
        .iter()
        .filter(|a| namespace.is_empty() || a.namespace == namespace)
        .filter(|a| key.is_empty() || a.key == key)
        .map(|a| json!({"namespace": a.namespace, "key": a.key, "value": a.value}))
        .collect();
    if items.is_empty() {
        return Err(not_found(path));
    }
    Ok(json!({
        "kind": "compute#guestAttributes",
        "selfLink": format!("{self_link}?queryPath={path}"),
        "queryPath": path,
        "queryValue": {"items": items},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(namespace: &str, key: &str, value: &str) -> GuestAttribute {
        GuestAttribute {
            namespace: namespace.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn some() -> Option<Vec<GuestAttribute>> {
        Some(vec![
            attribute("hostkeys", "ssh-ed25519", "AAAA1"),
            attribute("hostkeys", "ecdsa-sha2-nistp256", "AAAA2"),
            attribute("other", "k", "v"),
        ])
    }

    #[test]
    fn a_query_path_selects_a_namespace_or_one_key() {
        let ns = reply("L", "I", Some("hostkeys/"), None, some()).expect("found");
        assert_eq!(ns["queryPath"], "hostkeys/");
        assert_eq!(ns["queryValue"]["items"].as_array().map(Vec::len), Some(2));
        let one = reply("L", "I", Some("hostkeys/ssh-ed25519"), None, some()).expect("found");
        assert_eq!(one["queryValue"]["items"][0]["value"], "AAAA1");
        let all = reply("L", "I", None, None, some()).expect("found");
        assert_eq!(all["queryValue"]["items"].as_array().map(Vec::len), Some(3));
        let var = reply("L", "I", None, Some("other/k"), some()).expect("found");
        assert_eq!(
            (var["variableKey"].as_str(), var["variableValue"].as_str()),
            (Some("other/k"), Some("v"))
        );
    }

    #[test]
    fn nothing_there_is_a_404() {
        for (path, var, attrs) in [
            (Some("hostkeys/"), None, None),
            (Some("hostkeys/"), None, Some(vec![])),
            (Some("missing/"), None, some()),
            (None, Some("hostkeys/ssh-rsa"), some()),
        ] {
            let e = reply("L", "projects/p/zones/z/instances/x", path, var, attrs).expect_err("404");
            assert_eq!(e.http_status(), 404);
        }
    }
}
