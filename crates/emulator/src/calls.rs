//! The API call log (`/_emulator/calls`) and the middleware in front of every `/compute/v1`
//! call: it records the call in arrival order, applies `http_error` faults and response delays,
//! and fills in the status when the response is ready.
//!
//! A record is `{"method","path","query","status","mutating"}` (the query percent-decoded, so
//! `$alt=json&accessConfig=External NAT`); `status` is `null` while the call
//! is in flight (e.g. an operation `wait`). `mutating` is true for every POST/PUT/PATCH/DELETE
//! except operations `wait`, whether or not it succeeded: a test that wants "zero mutations" wants
//! zero attempts.
//!
//! A metadata write (`instances.setMetadata`, `projects.setCommonInstanceMetadata`) also has
//! `"metadataKeysChanged": ["ssh-keys"]`: the keys its operation added, removed or gave another
//! value, sorted, filled in when the operation is DONE without error (so `[]` while it runs, and
//! for good when it was refused, faulted, repeated by `requestId` or wrote the same items). A test
//! can then prove that a refused run wrote nothing but its own `ssh-keys` entry.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::state::AppState;

/// One logged API call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query string, percent-decoded ("" when none).
    pub query: String,
    /// HTTP status of the response (`None` while in flight).
    pub status: Option<u16>,
    /// Whether the call asked for a change.
    pub mutating: bool,
    /// For `instances.setMetadata` and `projects.setCommonInstanceMetadata`: the metadata keys
    /// the call changed (added, removed or given another value), sorted, once its operation is
    /// DONE without error; `[]` until then and when it changed nothing. Absent for other calls.
    #[serde(rename = "metadataKeysChanged", skip_serializing_if = "Option::is_none")]
    pub metadata_keys_changed: Option<Vec<String>>,
    #[serde(skip)]
    seq: u64,
}

/// The log.
#[derive(Debug, Default)]
pub struct CallLog {
    records: Vec<CallRecord>,
    next_seq: u64,
}

impl CallLog {
    /// Record the arrival of a call; returns its sequence number.
    pub fn begin(&mut self, method: &str, path: &str, query: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.push(CallRecord {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            status: None,
            mutating: is_mutating(method, path),
            metadata_keys_changed: writes_metadata(method, path).then(Vec::new),
            seq,
        });
        seq
    }

    /// Record the status of call `seq` (a no-op when the log was cleared meanwhile).
    pub fn finish(&mut self, seq: u64, status: u16) {
        if let Ok(i) = self.records.binary_search_by_key(&seq, |r| r.seq) {
            self.records[i].status = Some(status);
        }
    }

    /// Record the metadata keys call `seq` changed (a no-op when the log was cleared meanwhile).
    pub fn set_metadata_keys(&mut self, seq: u64, keys: Vec<String>) {
        if let Ok(i) = self.records.binary_search_by_key(&seq, |r| r.seq)
            && let Some(logged) = self.records[i].metadata_keys_changed.as_mut()
        {
            *logged = keys;
        }
    }

    /// Every call since the last clear.
    pub fn records(&self) -> &[CallRecord] {
        &self.records
    }

    /// Forget every call.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

/// The log's sequence number of the call being served, put in its request's extensions by the
/// middleware, so the operation it creates can add to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSeq(pub u64);

/// Whether a call is `instances.setMetadata` or `projects.setCommonInstanceMetadata`.
pub fn writes_metadata(method: &str, path: &str) -> bool {
    method.eq_ignore_ascii_case("POST")
        && path.starts_with("/compute/")
        && (path.ends_with("/setMetadata") || path.ends_with("/setCommonInstanceMetadata"))
}

/// Whether a call asks for a change: POST/PUT/PATCH/DELETE, except operations `wait`.
pub fn is_mutating(method: &str, path: &str) -> bool {
    let changing = ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method));
    let op_wait = path.contains("/operations/") && path.ends_with("/wait");
    changing && !op_wait
}

/// A query string with `%XX` and `+` decoded (for reading, not for re-parsing).
pub fn decode_query(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware (see the module doc). Control endpoints pass through unrecorded.
pub async fn record_calls(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if !path.starts_with("/compute/") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let query = decode_query(request.uri().query().unwrap_or(""));
    let seq = state.calls().begin(method.as_str(), &path, &query);
    request.extensions_mut().insert(CallSeq(seq));
    let injected = state.faults().take_http_error(method.as_str(), &path);
    let response = match injected {
        Some(error) => error.into_response(),
        None => {
            // A delay fault on a call that creates an operation delays the operation instead;
            // that is taken by the operation machinery (ops.rs).
            if !is_mutating(method.as_str(), &path) {
                let delay = state.faults().take_delay(method.as_str(), &path);
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
            next.run(request).await
        }
    };
    state.calls().finish(seq, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_waits_and_reads_are_not_mutations() {
        assert!(is_mutating("POST", "/compute/v1/projects/p/zones/z/instances"));
        assert!(is_mutating("DELETE", "/compute/v1/projects/p/global/firewalls/f"));
        assert!(!is_mutating("GET", "/compute/v1/projects/p/zones/z/instances"));
        assert!(!is_mutating(
            "POST",
            "/compute/v1/projects/p/zones/z/operations/op-1/wait"
        ));
        // an instance that happens to be named "wait" is still mutated
        assert!(is_mutating("DELETE", "/compute/v1/projects/p/zones/z/instances/wait"));
    }

    #[test]
    fn queries_are_logged_decoded() {
        assert_eq!(
            decode_query("accessConfig=External+NAT&networkInterface=nic0&%24alt=json"),
            "accessConfig=External NAT&networkInterface=nic0&$alt=json"
        );
        assert_eq!(decode_query("a=%2"), "a=%2");
        assert_eq!(decode_query("a=%zz%41"), "a=%zzA");
        assert_eq!(decode_query(""), "");
    }

    #[test]
    fn statuses_fill_in_by_sequence_and_survive_a_clear() {
        let mut log = CallLog::default();
        let a = log.begin("GET", "/a", "");
        let b = log.begin("POST", "/b", "requestId=1");
        log.finish(b, 200);
        assert_eq!(log.records()[0].status, None);
        assert_eq!(log.records()[1].status, Some(200));
        log.clear();
        log.finish(a, 404);
        assert!(log.records().is_empty());
    }
}
