//! Metadata items (instance `metadata`, project `commonInstanceMetadata`): GCE's limits on keys
//! and values, and which keys a write changes (for the call log's `metadataKeysChanged`).
//!
//! Limits, from GCE's `Metadata` reference: a key matches `[a-zA-Z0-9-_]+` and is under 128
//! bytes; a value is at most 262144 bytes (256 KiB); all keys and values together are at most
//! 512 KiB. A value over its limit is refused as GCE refuses it: HTTP 413, reason
//! `fieldSizeTooLarge`, "Value for field 'metadata.items[N].value' is too large: maximum size
//! 262144 character(s); actual size M." The total is refused the same way for field `metadata`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::ApiError;
use crate::json::str_field;

/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 262_144;
/// Largest sum of every key and value, in bytes.
pub const MAX_TOTAL_BYTES: usize = 524_288;
/// A key must be shorter than this, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// Check GCE's limits on `items` (`{key, value}` objects); `field` is where they are in the
/// request (`metadata` for setMetadata, `resource.metadata` for an insert).
pub fn check_limits(items: &[Value], field: &str) -> Result<(), ApiError> {
    let mut total = 0usize;
    for (i, item) in items.iter().enumerate() {
        let key = str_field(item, "key").unwrap_or_default();
        let key_ok = !key.is_empty()
            && key.len() < MAX_KEY_BYTES
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !key_ok {
            return Err(ApiError::invalid(format!(
                "Invalid value for field '{field}.items[{i}].key': '{key}'. Must be a match of regex '[a-zA-Z0-9-_]{{1,128}}'"
            )));
        }
        let value = str_field(item, "value").unwrap_or_default();
        if value.len() > MAX_VALUE_BYTES {
            return Err(too_large(
                &format!("{field}.items[{i}].value"),
                MAX_VALUE_BYTES,
                value.len(),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_TOTAL_BYTES {
        return Err(too_large(field, MAX_TOTAL_BYTES, total));
    }
    Ok(())
}

fn too_large(field: &str, max: usize, actual: usize) -> ApiError {
    ApiError::FieldSizeTooLarge(format!(
        "Value for field '{field}' is too large: maximum size {max} character(s); actual size {actual}."
    ))
}

/// key → value of a metadata object's `items`.
fn values(metadata: &Value) -> BTreeMap<&str, Option<&str>> {
    metadata
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| Some((str_field(i, "key")?, str_field(i, "value"))))
        .collect()
}

/// The keys a write of `new` over `current` (both metadata objects with `items`) adds, removes
/// or gives another value, sorted.
pub fn keys_changed(current: &Value, new: &Value) -> Vec<String> {
    let (before, after) = (values(current), values(new));
    let keys: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    keys.into_iter()
        .filter(|k| before.get(k) != after.get(k))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_keys_are_the_added_removed_and_rewritten_ones_sorted() {
        let current = json!({"items": [
            {"key": "kube-env", "value": "A"}, {"key": "ssh-keys", "value": "alice"},
            {"key": "user-data", "value": "x"}]});
        let new = json!({"items": [
            {"key": "user-data", "value": "x"}, {"key": "ssh-keys", "value": "alice\nkube-ha"},
            {"key": "b-new", "value": ""}]});
        assert_eq!(keys_changed(&current, &new), ["b-new", "kube-env", "ssh-keys"]);
        assert!(keys_changed(&current, &current).is_empty());
        assert_eq!(keys_changed(&json!({}), &json!({"items": [{"key": "k"}]})), ["k"]);
    }

    #[test]
    fn values_keys_and_totals_over_gce_limits_are_refused() {
        let item = |k: &str, n: usize| json!({"key": k, "value": "v".repeat(n)});
        assert_eq!(check_limits(&[item("kube-env", MAX_VALUE_BYTES)], "metadata"), Ok(()));
        let e = check_limits(&[item("a", 1), item("kube-env", MAX_VALUE_BYTES + 1)], "metadata")
            .expect_err("value too large");
        assert_eq!((e.http_status(), e.reason()), (413, "fieldSizeTooLarge"));
        assert_eq!(
            e.to_string(),
            "Value for field 'metadata.items[1].value' is too large: maximum size 262144 character(s); actual size 262145."
        );
        let three = [item("a", MAX_VALUE_BYTES), item("b", MAX_VALUE_BYTES), item("c", 1)];
        let e = check_limits(&three, "metadata").expect_err("total too large");
        assert!(
            e.to_string().starts_with("Value for field 'metadata' is too large"),
            "{e}"
        );
        for bad in ["", "has space", "dot.ted", &"k".repeat(128)] {
            let e = check_limits(&[item(bad, 1)], "metadata").expect_err(bad);
            assert_eq!(e.http_status(), 400, "{bad}");
        }
    }
}
