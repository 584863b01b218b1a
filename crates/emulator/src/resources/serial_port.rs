//! `instances.getSerialPortOutput`: what an instance wrote to one of its four serial ports, as GCE
//! renders it. The text comes from the simulated VM ([`crate::Machines::serial_port_output`]);
//! this file only slices and renders.
//!
//! As GCE: `port` is 1–4 (default 1); `start` is the byte offset to read from (default 0; a
//! negative value counts from the end); the reply says where the returned `contents` start and
//! where the next read should (`next`). A port nothing was written to is empty, not an error.
//! kube-up's masters forward their bootstrap log (configure.sh, configure-helper.sh) to port 3
//! (`master.yaml`'s `kube-bootstrap-logs-forwarder`), which is what `kube-ha status` reads.

use serde_json::{Value, json};

use crate::error::ApiError;

/// GCE's serial ports.
pub const PORTS: std::ops::RangeInclusive<u8> = 1..=4;

/// The `port` query parameter, checked.
pub fn port(raw: Option<&str>) -> Result<u8, ApiError> {
    let Some(raw) = raw else { return Ok(1) };
    raw.parse::<u8>()
        .ok()
        .filter(|p| PORTS.contains(p))
        .ok_or_else(|| ApiError::invalid(format!("Invalid value for field 'port': '{raw}'. Must be 1 to 4.")))
}

/// The reply for `text` (the whole output so far) read from `start`.
pub fn reply(self_link: &str, port: u8, start: Option<&str>, text: &str) -> Result<Value, ApiError> {
    let len = i64::try_from(text.len()).unwrap_or(i64::MAX);
    let start = match start {
        None => 0,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::invalid(format!("Invalid value for field 'start': '{s}'.")))?,
    };
    let from = if start < 0 {
        (len + start).max(0)
    } else {
        start.min(len)
    };
    // Never cut a UTF-8 sequence: move back to a character boundary.
    let mut at = usize::try_from(from).unwrap_or(0);
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    Ok(json!({
        "kind": "compute#serialPortOutput",
        "selfLink": format!("{self_link}?port={port}"),
        "contents": &text[at..],
        "start": at.to_string(),
        "next": len.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_from_a_byte_offset_and_says_where_to_read_next() {
        let all = reply("l", 3, None, "abcdef").expect("reply");
        assert_eq!(
            (all["contents"].as_str(), all["next"].as_str()),
            (Some("abcdef"), Some("6"))
        );
        let tail = reply("l", 3, Some("4"), "abcdef").expect("reply");
        assert_eq!(
            (tail["contents"].as_str(), tail["start"].as_str()),
            (Some("ef"), Some("4"))
        );
        let last = reply("l", 3, Some("-2"), "abcdef").expect("reply");
        assert_eq!(last["contents"].as_str(), Some("ef"));
        let past = reply("l", 3, Some("99"), "abcdef").expect("reply");
        assert_eq!(
            (past["contents"].as_str(), past["start"].as_str()),
            (Some(""), Some("6"))
        );
        assert!(reply("l", 3, Some("x"), "").is_err());
    }

    #[test]
    fn only_ports_one_to_four_exist() {
        assert_eq!(port(None).expect("default"), 1);
        assert_eq!(port(Some("3")).expect("3"), 3);
        for bad in ["0", "5", "x"] {
            assert!(port(Some(bad)).is_err(), "{bad}");
        }
    }
}
