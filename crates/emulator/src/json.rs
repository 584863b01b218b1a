//! Small JSON and formatting helpers shared by the resource handlers: GCE timestamps,
//! fingerprints, int64 fields (sent as strings or numbers, returned as strings), field access.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Now, as GCE writes timestamps (RFC 3339 with milliseconds).
pub fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+00:00");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000+00:00".into())
}

/// A new numeric id, unique in this process: 19 digits like GCE's, from a random start.
pub fn new_id() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU64::new(1_000_000_000_000_000_000 + rand::random::<u64>() % 1_000_000_000_000_000_000))
        .fetch_add(1, Ordering::Relaxed)
}

/// A fresh fingerprint (8 random bytes), like GCE's metadata and label fingerprints. The
/// official client models fingerprints as bytes and (de)serializes them as *URL-safe* padded
/// base64, so that is the alphabet used: the string then round-trips through the client unchanged.
pub fn fingerprint() -> String {
    base64::engine::general_purpose::URL_SAFE.encode(rand::random::<[u8; 8]>())
}

/// Whether two fingerprints are the same bytes, whichever base64 alphabet or padding the caller
/// used (strings that are no base64 at all must be equal as strings).
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    fn decode(s: &str) -> Option<Vec<u8>> {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
            .decode(s)
            .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(s))
            .ok()
    }
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A string field.
pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An int64 field sent as a string (`"20"`) or a number (`20`); `Err` if it is something else.
pub fn int64_field(v: &Value, key: &str, what: &str) -> Result<Option<i64>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid_field(what, &n.to_string())),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| invalid_field(what, s)),
        Some(other) => Err(invalid_field(what, &other.to_string())),
    }
}

/// The request body as a JSON object (an empty body is `{}`).
pub fn body_object(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::BadRequest(
            "Invalid JSON payload received. Expected an object.".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!("Invalid JSON payload received. {e}"))),
    }
}

/// The mutable map of an object value (resources are always objects).
pub fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `Invalid value for field 'resource.x': 'v'.`
pub fn invalid_field(field: &str, value: &str) -> ApiError {
    ApiError::invalid(format!("Invalid value for field '{field}': '{value}'."))
}

/// An IPv4 address field (`natIP`, `networkIP`, `address`, `IPAddress`), if present.
pub fn ip_field(v: &Value, key: &str, what: &str) -> Result<Option<Ipv4Addr>, ApiError> {
    match str_field(v, key) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| invalid_field(what, s)),
    }
}

/// Set `key` to `value` in an object, removing it when the value is null or an empty array.
pub fn set_or_remove(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        map.remove(key);
    } else {
        map.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int64_fields_are_accepted_as_strings_or_numbers() {
        let v = json!({"a": "20", "b": 30, "c": "x", "d": true});
        assert_eq!(int64_field(&v, "a", "a"), Ok(Some(20)));
        assert_eq!(int64_field(&v, "b", "b"), Ok(Some(30)));
        assert_eq!(int64_field(&v, "missing", "m"), Ok(None));
        assert!(int64_field(&v, "c", "c").is_err());
        assert!(int64_field(&v, "d", "d").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_and_fingerprints_change() {
        let t = now();
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok(),
            "{t}"
        );
        assert_ne!(fingerprint(), fingerprint());
        let f = fingerprint();
        assert!(same_fingerprint(&f, &f));
        assert!(same_fingerprint("-_8=", "+/8")); // same bytes, other alphabet and padding
        assert!(!same_fingerprint("AAAA", "AAAB"));
        assert!(!same_fingerprint("not base64!", "not base64?"));
    }

    #[test]
    fn bodies_must_be_objects() {
        assert_eq!(body_object(b"").ok(), Some(json!({})));
        assert!(body_object(b"[1]").is_err());
        assert!(body_object(b"{").is_err());
    }
}
