//! Batch requests (`POST /batch/compute/v1`), as Google's APIs take them and gcloud sends them
//! when one command touches several resources (`firewall-rules delete a b`, its follow-up `get`s
//! and operation `wait`s).
//!
//! The request is `multipart/mixed`; each part has `Content-Type: application/http` and a
//! `Content-ID`, and its body is one HTTP request (`DELETE /compute/v1/projects/p/… HTTP/1.1`,
//! headers, a blank line, the body). Each part is served by the emulator's own API router, so it is
//! logged, faulted and answered exactly as the same call made alone. The reply is
//! `multipart/mixed` too: one `application/http` part per request, **in request order**, with
//! `Content-ID: <response-ID>` for a request whose `Content-ID` was `<ID>` and the full HTTP
//! response (status line, headers, body) as its body. A failed part does not fail the batch: the
//! batch is 200 and the part carries the Google error. Like Google, the parts are served
//! concurrently (in no promised order), a batch holds at most [`MAX_PARTS`] parts, and a batch
//! inside a batch is refused (its part is answered 404).
//!
//! Line endings may be CRLF or LF (Python's `email` package, which gcloud uses, writes LF).

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::error::ApiError;

/// GCE's limit of calls in one batch request.
pub const MAX_PARTS: usize = 1000;

/// Largest batch body accepted (1000 parts of a few kilobytes each, or a few big metadata writes).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// Largest response body read back from one part.
const MAX_PART_RESPONSE: usize = 16 * 1024 * 1024;

/// One part of a batch request: its `Content-ID` and the HTTP request it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `Content-ID` header, as sent (`<uuid+1>`), if any.
    pub content_id: Option<String>,
    /// Request method.
    pub method: String,
    /// Path and query (`/compute/v1/…?alt=json`); a full URL is reduced to its path.
    pub target: String,
    /// Headers of the inner request.
    pub headers: Vec<(String, String)>,
    /// Body of the inner request.
    pub body: Vec<u8>,
}

/// Serve a batch request with `api` (the router without the batch route).
pub async fn serve(api: Router, headers: HeaderMap, body: Bytes) -> Response {
    match serve_parts(api, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve_parts(api: Router, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = boundary_of(content_type).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "A batch request must be multipart/mixed with a boundary, not '{content_type}'."
        ))
    })?;
    let parts = parse(body, &boundary)?;
    if parts.len() > MAX_PARTS {
        return Err(ApiError::BadRequest(format!(
            "A batch request may contain at most {MAX_PARTS} calls; this one has {}.",
            parts.len()
        )));
    }
    let mut tasks = Vec::with_capacity(parts.len());
    for part in parts {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let content_id = part.content_id.clone();
            (content_id, answer(api, part).await)
        }));
    }
    let reply_boundary = format!("batch_{:016x}", rand::random::<u64>());
    let mut out = Vec::new();
    for task in tasks {
        let (content_id, rendered) = match task.await {
            Ok(done) => done,
            // a panicking part handler is an emulator bug; answer that part 500, keep the rest
            Err(_) => (
                None,
                render_response(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b""),
            ),
        };
        out.extend_from_slice(format!("--{reply_boundary}\r\nContent-Type: application/http\r\n").as_bytes());
        if let Some(id) = content_id {
            out.extend_from_slice(format!("Content-ID: {}\r\n", response_id(&id)).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rendered);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{reply_boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/mixed; boundary={reply_boundary}");
    let mut response = (StatusCode::OK, out).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}

/// Serve one part through the API router; the rendered HTTP response.
async fn answer(api: Router, part: Part) -> Vec<u8> {
    let request = match build_request(&part) {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::to_vec(&e.body()).unwrap_or_default();
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return render_response(status, &json_headers(), &body);
        }
    };
    let response = match api.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (head, body) = response.into_parts();
    let body = to_bytes(body, MAX_PART_RESPONSE).await.unwrap_or_default();
    render_response(head.status, &head.headers, &body)
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

fn build_request(part: &Part) -> Result<Request<Body>, ApiError> {
    let method = Method::from_bytes(part.method.as_bytes())
        .map_err(|_| ApiError::BadRequest(format!("Invalid method '{}' in a batch part.", part.method)))?;
    if part.target.starts_with("/batch/") {
        return Err(ApiError::not_found(part.target.clone()));
    }
    let mut builder = Request::builder().method(method).uri(part.target.as_str());
    for (name, value) in &part.headers {
        // the body is re-framed here; a stale length or encoding must not confuse the router
        let skip = ["content-length", "transfer-encoding", "host"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !skip {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    builder
        .body(Body::from(part.body.clone()))
        .map_err(|e| ApiError::BadRequest(format!("Invalid request in a batch part: {e}")))
}

/// `HTTP/1.1 200 OK`, the headers (with the length of the body), a blank line, the body.
fn render_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Unknown")
    )
    .into_bytes();
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// `<response-ID>` for a request `Content-ID` of `<ID>` (or `ID`).
fn response_id(request_id: &str) -> String {
    let bare = request_id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<response-{bare}>")
}

/// The `boundary` parameter of a `multipart/mixed` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// Split a `multipart/mixed` body into its parts and parse each one's HTTP request.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, ApiError> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut chunks = split_on(body, &delimiter).into_iter();
    // the preamble before the first delimiter is ignored, as MIME says
    chunks.next();
    let mut parts = Vec::new();
    for chunk in chunks {
        if chunk.starts_with(b"--") {
            break; // the close delimiter
        }
        // the rest of the delimiter line (transport padding), then the part
        let chunk = match find(chunk, b"\n") {
            Some(i) => &chunk[i + 1..],
            None => &[][..],
        };
        // the line break before the next delimiter belongs to the delimiter
        let chunk = strip_one_line_break(chunk);
        parts.push(parse_part(chunk)?);
    }
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "The batch request has no parts (or its boundary does not match).".into(),
        ));
    }
    Ok(parts)
}

fn parse_part(chunk: &[u8]) -> Result<Part, ApiError> {
    let (mime_headers, http) = split_head(chunk);
    let mime_headers = header_lines(mime_headers);
    let content_id = mime_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-id"))
        .map(|(_, v)| v.clone());
    let (head, body) = split_head(http);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().trim();
    let mut words = request_line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(ApiError::BadRequest(format!(
            "A batch part must hold an HTTP request; found '{request_line}'."
        )));
    };
    let headers = header_lines(head.split_once('\n').map(|(_, rest)| rest.as_bytes()).unwrap_or(b""));
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) if n <= body.len() => body[..n].to_vec(),
        _ => trim_line_breaks(body).to_vec(),
    };
    Ok(Part {
        content_id,
        method: method.to_string(),
        target: path_of(target).to_string(),
        headers,
        body,
    })
}

/// The path and query of a request target (an absolute URL is reduced to them).
fn path_of(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => target,
    }
}

/// `Name: value` lines (continuation lines are folded into the previous header).
fn header_lines(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// (head, body) at the first blank line (CRLF CRLF or LF LF); all head when there is none.
fn split_head(bytes: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(bytes, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(bytes, b"\n\n").map(|i| (i, 2));
    let first = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match first {
        Some((i, n)) => (&bytes[..i], &bytes[i + n..]),
        None => (bytes, &[]),
    }
}

fn strip_one_line_break(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes)
}

fn trim_line_breaks(mut bytes: &[u8]) -> &[u8] {
    while let Some(rest) = bytes.strip_suffix(b"\n").or_else(|| bytes.strip_suffix(b"\r")) {
        bytes = rest;
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The pieces between occurrences of `delimiter` (the first piece is what precedes the first one).
fn split_on<'a>(bytes: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(i) = find(rest, delimiter) {
        out.push(&rest[..i]);
        rest = &rest[i + delimiter.len()..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What gcloud (apitools over Python's `email`) sends: LF line endings, quoted boundary.
    const GCLOUD_BODY: &str = "--===============7330845974216740156==\n\
Content-Type: application/http\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: binary\n\
Content-ID: <b29c5de2-0db4-490b-b421-6a51b598bd22+1>\n\
\n\
DELETE /compute/v1/projects/p/global/firewalls/a?alt=json HTTP/1.1\n\
Content-Type: application/json\n\
MIME-Version: 1.0\n\
content-length: 0\n\
Host: 127.0.0.1:9\n\
\n\
\n\
--===============7330845974216740156==\n\
Content-Type: application/http\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: binary\n\
Content-ID: <b29c5de2-0db4-490b-b421-6a51b598bd22+2>\n\
\n\
POST http://127.0.0.1:9/compute/v1/projects/p/global/firewalls?alt=json HTTP/1.1\n\
Content-Type: application/json\n\
content-length: 13\n\
\n\
{\"name\": \"b\"}\n\
--===============7330845974216740156==--";

    #[test]
    fn gcloud_batch_bodies_split_into_http_requests() {
        let ct = "multipart/mixed; boundary=\"===============7330845974216740156==\"";
        let boundary = boundary_of(ct).expect("boundary");
        assert_eq!(boundary, "===============7330845974216740156==");
        let parts = parse(GCLOUD_BODY.as_bytes(), &boundary).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].method, "DELETE");
        assert_eq!(parts[0].target, "/compute/v1/projects/p/global/firewalls/a?alt=json");
        assert_eq!(
            parts[0].content_id.as_deref(),
            Some("<b29c5de2-0db4-490b-b421-6a51b598bd22+1>")
        );
        assert!(parts[0].body.is_empty());
        assert_eq!(parts[1].method, "POST");
        assert_eq!(parts[1].target, "/compute/v1/projects/p/global/firewalls?alt=json");
        assert_eq!(parts[1].body, br#"{"name": "b"}"#);
    }

    #[test]
    fn crlf_bodies_and_bodies_without_length_parse_too() {
        let body = "preamble\r\n--xyz\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\n\
GET /compute/v1/projects/p/zones HTTP/1.1\r\n\r\n\r\n--xyz\r\nContent-Type: application/http\r\n\r\n\
POST /compute/v1/projects/p/global/firewalls HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz--\r\n";
        let parts = parse(body.as_bytes(), "xyz").expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].target, "/compute/v1/projects/p/zones");
        assert_eq!(parts[1].content_id, None);
        assert_eq!(parts[1].body, b"{}");
        assert_eq!(response_id("<1>"), "<response-1>");
    }

    #[test]
    fn malformed_batches_are_refused() {
        assert_eq!(boundary_of("application/json"), None);
        assert_eq!(boundary_of("multipart/mixed"), None);
        assert!(parse(b"no parts here", "xyz").is_err());
        assert!(
            parse(
                b"--xyz\nContent-Type: application/http\n\nnot-a-request\n--xyz--",
                "xyz"
            )
            .is_err()
        );
    }

    #[test]
    fn responses_render_as_http_messages() {
        let r = render_response(StatusCode::NOT_FOUND, &json_headers(), b"{}");
        let text = String::from_utf8(r).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("content-type: application/json\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"), "{text}");
    }
}
