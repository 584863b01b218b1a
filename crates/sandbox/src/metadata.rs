//! A VM's GCE metadata server: `http://169.254.169.254/computeMetadata/v1/` (also
//! `metadata.google.internal`, through the VM's `/etc/hosts`), listening on the VM's own `lo`,
//! so it knows which VM asks by construction. It serves live data: the sandbox actor replaces the
//! VM's [`GuestView`] (its instance and project records) whenever the emulator reports a change.
//!
//! As GCE's:
//! - `Metadata-Flavor: Google` is required (403 without, and with `X-Forwarded-For`); replies
//!   carry `Metadata-Flavor: Google` and an `ETag`;
//! - `instance/` (`attributes/*`, `id`, `name`, `zone`, `hostname`, `machine-type`, `tags`,
//!   `network-interfaces/<n>/{ip,gateway,network,mac,access-configs/…}`,
//!   `service-accounts/<default|email>/{email,scopes,aliases,token}`, the token fake) and
//!   `project/` (`project-id`, `attributes/*`); a directory without its trailing slash is a 301;
//! - `?recursive=true` (JSON, GCE's camelCase names; attribute keys verbatim), `?alt=json|text`;
//! - `?wait_for_change=true[&last_etag=…][&timeout_sec=…]` long-polls until the value's ETag
//!   differs from `last_etag` (without one: until the next change), or the timeout (default 60 s)
//!   passes, then answers the current value;
//! - `instance/guest-attributes/<namespace>/<key>`: `PUT` by the VM, `GET`; only when
//!   `enable-guest-attributes` is TRUE (the instance's value overrides the project's), else 403.
//!   The emulator reads them for `instances.getGuestAttributes` ([`GuestAttributes`]).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use kube_ha_emulator::GuestAttribute;

/// The metadata server's address (on each VM's `lo`).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The header every request must carry, with the value `Google`.
pub const FLAVOR: &str = "Metadata-Flavor";

/// `wait_for_change` without `timeout_sec` (GCE's hang timeout).
const DEFAULT_HANG: Duration = Duration::from_secs(60);

/// The longest `timeout_sec` honoured.
const MAX_HANG: Duration = Duration::from_secs(3600);

/// What one VM's metadata server serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestView {
    /// The project id.
    pub project: String,
    /// The instance's zone.
    pub zone: String,
    /// The instance as the emulator renders it.
    pub instance: Value,
    /// The project's `commonInstanceMetadata`.
    pub project_metadata: Value,
    /// The VPC gateway (nic0's `gateway`).
    pub gateway: Option<Ipv4Addr>,
}

impl GuestView {
    /// The instance's metadata item `key`.
    pub fn instance_attribute(&self, key: &str) -> Option<&str> {
        item(&self.instance["metadata"], key)
    }

    /// The project's metadata item `key`.
    pub fn project_attribute(&self, key: &str) -> Option<&str> {
        item(&self.project_metadata, key)
    }

    /// `enable-guest-attributes` as GCE reads it: the instance's value if set, else the
    /// project's; TRUE in any case.
    pub fn guest_attributes_enabled(&self) -> bool {
        self.instance_attribute("enable-guest-attributes")
            .or_else(|| self.project_attribute("enable-guest-attributes"))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

fn item<'a>(metadata: &'a Value, key: &str) -> Option<&'a str> {
    metadata
        .get("items")?
        .as_array()?
        .iter()
        .find(|i| i.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")?
        .as_str()
}

fn items(metadata: &Value) -> Map<String, Value> {
    metadata
        .get("items")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((
                        i.get("key")?.as_str()?.to_string(),
                        i.get("value").cloned().unwrap_or(json!("")),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a VM's guest wrote (shared with the emulator's `getGuestAttributes`).
#[derive(Debug, Default)]
pub struct GuestAttributes(Mutex<BTreeMap<(String, String), String>>);

impl GuestAttributes {
    /// Every entry, ordered by namespace and key.
    pub fn list(&self) -> Vec<GuestAttribute> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((namespace, key), value)| GuestAttribute {
                namespace: namespace.clone(),
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    fn put(&self, namespace: &str, key: &str, value: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.to_string(), key.to_string()), value);
    }
}

/// The server's state.
#[derive(Clone)]
struct Server {
    view: watch::Receiver<Arc<GuestView>>,
    guest: Arc<GuestAttributes>,
}

/// The metadata server's routes (serve them on [`ADDRESS`]`:80` inside the VM).
pub fn router(view: watch::Receiver<Arc<GuestView>>, guest: Arc<GuestAttributes>) -> Router {
    Router::new().fallback(handle).with_state(Server { view, guest })
}

/// The tree a view serves, with GCE's text names (kebab-case); see [`camel`] for JSON.
fn tree(view: &GuestView) -> Value {
    let instance = &view.instance;
    let name = instance["name"].as_str().unwrap_or_default();
    let project = &view.project;
    let zone = &view.zone;
    let nics: Vec<Value> = instance["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|nic| {
            let ip = nic["networkIP"].as_str().unwrap_or_default();
            let mac = ip
                .parse::<Ipv4Addr>()
                .map(|ip| {
                    let o = ip.octets();
                    format!("42:01:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
                })
                .unwrap_or_default();
            let access: Vec<Value> = nic["accessConfigs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|ac| json!({"external-ip": ac["natIP"].as_str().unwrap_or_default(), "type": ac["type"].as_str().unwrap_or("ONE_TO_ONE_NAT")}))
                .collect();
            let network = nic["network"].as_str().unwrap_or("default").rsplit('/').next().unwrap_or("default");
            json!({
                "access-configs": access,
                "gateway": view.gateway.map(|g| g.to_string()).unwrap_or_default(),
                "ip": ip,
                "mac": mac,
                "mtu": 1460,
                "network": format!("projects/{project}/networks/{network}"),
                "subnetmask": "255.255.255.0",
            })
        })
        .collect();
    let mut accounts = Map::new();
    for (i, sa) in instance["serviceAccounts"].as_array().into_iter().flatten().enumerate() {
        let email = sa["email"].as_str().unwrap_or_default();
        let scopes = sa["scopes"].clone();
        let mut aliases = vec![];
        if i == 0 {
            aliases.push(json!("default"));
        }
        let entry = json!({"aliases": aliases, "email": email, "scopes": scopes});
        if i == 0 {
            accounts.insert("default".into(), entry.clone());
        }
        accounts.insert(email.to_string(), entry);
    }
    let machine_type = instance["machineType"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let id: Value = instance["id"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Value::Null, |n| json!(n));
    json!({
        "instance": {
            "attributes": items(&instance["metadata"]),
            "hostname": format!("{name}.{zone}.c.{project}.internal"),
            "id": id,
            "machine-type": format!("projects/{project}/machineTypes/{machine_type}"),
            "name": name,
            "network-interfaces": nics,
            "service-accounts": accounts,
            "tags": instance.pointer("/tags/items").cloned().unwrap_or(json!([])),
            "zone": format!("projects/{project}/zones/{zone}"),
        },
        "project": {
            "attributes": items(&view.project_metadata),
            "project-id": project,
        },
    })
}

/// GCE's JSON names: `network-interfaces` → `networkInterfaces`; keys under `attributes` (and
/// service account emails) stay as they are.
fn camel(value: &Value, verbatim: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = if verbatim { k.clone() } else { camel_case(k) };
                    let inner_verbatim = k == "attributes" || k == "service-accounts";
                    (key, camel(v, inner_verbatim))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| camel(v, false)).collect()),
        other => other.clone(),
    }
}

fn camel_case(kebab: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in kebab.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The node at `parts` (array entries by index).
fn lookup<'a>(root: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    parts.iter().try_fold(root, |node, part| match node {
        Value::Object(map) => map.get(*part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A leaf as text, a directory as its listing (subdirectories with a trailing slash).
fn text(node: &Value) -> String {
    match node {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                if v.is_object() || v.is_array() && k != "tags" && k != "scopes" && k != "aliases" {
                    format!("{k}/\n")
                } else {
                    format!("{k}\n")
                }
            })
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| format!("{s}\n"))
            .collect(),
        Value::Array(items) => (0..items.len()).map(|i| format!("{i}/\n")).collect(),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn etag(body: &str) -> String {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn reply(status: StatusCode, content_type: &'static str, body: String, etag_value: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(FLAVOR, HeaderValue::from_static("Google"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(tag) = etag_value.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(header::ETAG, tag);
    }
    response
}

fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        "text/html; charset=UTF-8",
        "Not Found\n".into(),
        None,
    )
}

/// Why a GET has no value to answer.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    /// 404.
    NotFound,
    /// 301 to this location (a directory asked for without its slash).
    Moved(String),
}

impl Miss {
    fn response(self) -> Response {
        match self {
            Miss::NotFound => not_found(),
            Miss::Moved(location) => {
                let mut r = reply(
                    StatusCode::MOVED_PERMANENTLY,
                    "text/html; charset=UTF-8",
                    String::new(),
                    None,
                );
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
        }
    }

    #[cfg(test)]
    fn status(&self) -> StatusCode {
        match self {
            Miss::NotFound => StatusCode::NOT_FOUND,
            Miss::Moved(_) => StatusCode::MOVED_PERMANENTLY,
        }
    }
}

/// What one GET would answer now: content type and body.
fn answer(
    view: &GuestView,
    parts: &[&str],
    slash: bool,
    q: &BTreeMap<String, String>,
) -> Result<(&'static str, String), Miss> {
    // The token is made on request, not part of the tree.
    if let ["instance", "service-accounts", account, "token"] = parts {
        let known = tree(view)["instance"]["service-accounts"].get(*account).is_some();
        if !known {
            return Err(Miss::NotFound);
        }
        let token = json!({"access_token": "sandbox-fake-token", "expires_in": 3599, "token_type": "Bearer"});
        return Ok(("application/json", token.to_string()));
    }
    let root = tree(view);
    let node = lookup(&root, parts).ok_or(Miss::NotFound)?;
    let is_dir =
        node.is_object() || (node.is_array() && !node.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
    let recursive = q.get("recursive").is_some_and(|v| v == "true");
    if is_dir && !slash && !recursive {
        let mut location = format!("/computeMetadata/v1/{}/", parts.join("/"));
        if let Some(query) = q_string(q) {
            location.push('?');
            location.push_str(&query);
        }
        return Err(Miss::Moved(location));
    }
    let alt = q.get("alt").map(String::as_str);
    let verbatim = matches!(parts.last(), Some(&"attributes") | Some(&"service-accounts"));
    match (recursive && is_dir, alt) {
        (true, Some("text")) => Ok(("application/text", flatten(node, ""))),
        (true, _) => Ok(("application/json", camel(node, verbatim).to_string())),
        (false, Some("json")) => Ok(("application/json", camel(node, verbatim).to_string())),
        (false, _) => Ok(("application/text", text(node))),
    }
}

/// `alt=text` of a recursive directory: `path value` per leaf.
fn flatten(node: &Value, prefix: &str) -> String {
    match node {
        Value::Object(map) => map.iter().map(|(k, v)| flatten(v, &format!("{prefix}{k}/"))).collect(),
        Value::Array(items) if !items.iter().all(Value::is_string) => items
            .iter()
            .enumerate()
            .map(|(i, v)| flatten(v, &format!("{prefix}{i}/")))
            .collect(),
        leaf => format!("{} {}\n", prefix.trim_end_matches('/'), text(leaf).trim_end()),
    }
}

fn q_string(q: &BTreeMap<String, String>) -> Option<String> {
    (!q.is_empty()).then(|| q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

async fn handle(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let flavored = headers.get(FLAVOR).and_then(|v| v.to_str().ok()) == Some("Google");
    if !flavored || headers.contains_key("x-forwarded-for") {
        return reply(
            StatusCode::FORBIDDEN,
            "text/html; charset=UTF-8",
            "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.\n".into(),
            None,
        );
    }
    let path = uri.path();
    if path == "/" || path == "/computeMetadata/" {
        return reply(StatusCode::OK, "application/text", "computeMetadata/\n".into(), None);
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/v1") else {
        return not_found();
    };
    let slash = rest.is_empty() || rest.ends_with('/');
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if let ["instance", "guest-attributes", tail @ ..] = parts.as_slice() {
        return guest_attributes(&server, &method, tail, body);
    }
    if method != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/html; charset=UTF-8",
            String::new(),
            None,
        );
    }
    let wait = q.get("wait_for_change").is_some_and(|v| v == "true");
    let hang = q
        .get("timeout_sec")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_HANG, Duration::from_secs)
        .min(MAX_HANG);
    let deadline = tokio::time::Instant::now() + hang;
    let mut rx = server.view.clone();
    let mut last = q.get("last_etag").cloned();
    let (content_type, body, tag) = loop {
        // Marked seen before it is rendered: a change after this line wakes `changed` below.
        let view = rx.borrow_and_update().clone();
        let (content_type, body) = match answer(&view, &parts, slash, &q) {
            Ok(v) => v,
            Err(miss) => return miss.response(),
        };
        let tag = etag(&body);
        // Without last_etag GCE waits for the next change of the value as it is now.
        let last = last.get_or_insert_with(|| tag.clone());
        if !wait || tag != *last {
            break (content_type, body, tag);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            // Timeout, or the VM is going: answer what there is.
            _ => break (content_type, body, tag),
        }
    };
    reply(StatusCode::OK, content_type, body, Some(&tag))
}

/// `…/instance/guest-attributes/[<namespace>/[<key>]]`.
fn guest_attributes(server: &Server, method: &Method, tail: &[&str], body: Bytes) -> Response {
    if !server.view.borrow().guest_attributes_enabled() {
        return reply(
            StatusCode::FORBIDDEN,
            "text/html; charset=UTF-8",
            "Guest attributes endpoint access is disabled.\n".into(),
            None,
        );
    }
    let entries = server.guest.list();
    match (method, tail) {
        (&Method::PUT, [namespace, key]) => {
            server
                .guest
                .put(namespace, key, String::from_utf8_lossy(&body).into_owned());
            reply(StatusCode::OK, "application/text", String::new(), None)
        }
        (&Method::GET, []) => {
            let namespaces: std::collections::BTreeSet<String> =
                entries.iter().map(|e| format!("{}/\n", e.namespace)).collect();
            reply(
                StatusCode::OK,
                "application/text",
                namespaces.into_iter().collect(),
                None,
            )
        }
        (&Method::GET, [namespace]) => {
            let keys: String = entries
                .iter()
                .filter(|e| e.namespace == *namespace)
                .map(|e| format!("{}\n", e.key))
                .collect();
            if keys.is_empty() {
                not_found()
            } else {
                reply(StatusCode::OK, "application/text", keys, None)
            }
        }
        (&Method::GET, [namespace, key]) => entries
            .into_iter()
            .find(|e| e.namespace == *namespace && e.key == *key)
            .map_or_else(not_found, |e| reply(StatusCode::OK, "application/text", e.value, None)),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> GuestView {
        GuestView {
            project: "p".into(),
            zone: "z".into(),
            instance: json!({
                "name": "m", "id": "123", "machineType": "https://x/zones/z/machineTypes/n1-standard-1",
                "networkInterfaces": [{"network": "https://x/global/networks/default", "networkIP": "198.18.1.2",
                    "accessConfigs": [{"natIP": "198.19.1.1", "type": "ONE_TO_ONE_NAT"}]}],
                "serviceAccounts": [{"email": "sa@p", "scopes": ["https://www.googleapis.com/auth/compute"]}],
                "tags": {"items": ["kubernetes-master"]},
                "metadata": {"items": [{"key": "kube-env", "value": "A: 'b'\n"}, {"key": "enable-guest-attributes", "value": "TRUE"}]}
            }),
            project_metadata: json!({"items": [{"key": "ssh-keys", "value": "u:ssh-ed25519 AAAA"}]}),
            gateway: Some(Ipv4Addr::new(198, 18, 1, 1)),
        }
    }

    fn get(v: &GuestView, path: &str, q: &[(&str, &str)]) -> Result<(&'static str, String), StatusCode> {
        let q: BTreeMap<String, String> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let slash = path.ends_with('/');
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        answer(v, &parts, slash, &q).map_err(|m| m.status())
    }

    #[test]
    fn leaves_directories_and_recursive_json_look_like_gce() {
        let v = view();
        assert_eq!(
            get(&v, "instance/attributes/kube-env", &[]).expect("leaf").1,
            "A: 'b'\n"
        );
        assert_eq!(get(&v, "instance/name", &[]).expect("leaf").1, "m");
        assert_eq!(get(&v, "instance/hostname", &[]).expect("leaf").1, "m.z.c.p.internal");
        assert_eq!(get(&v, "instance/zone", &[]).expect("leaf").1, "projects/p/zones/z");
        assert_eq!(get(&v, "instance/id", &[]).expect("leaf").1, "123");
        assert_eq!(
            get(&v, "instance/network-interfaces/0/access-configs/0/external-ip", &[])
                .expect("leaf")
                .1,
            "198.19.1.1"
        );
        assert_eq!(
            get(&v, "instance/network-interfaces/0/gateway", &[]).expect("leaf").1,
            "198.18.1.1"
        );
        assert_eq!(get(&v, "project/project-id", &[]).expect("leaf").1, "p");
        let listing = get(&v, "instance/", &[]).expect("dir").1;
        assert!(
            listing.contains("attributes/\n") && listing.contains("network-interfaces/\n"),
            "{listing}"
        );
        assert_eq!(get(&v, "instance", &[]).map(|_| ()), Err(StatusCode::MOVED_PERMANENTLY));
        assert_eq!(get(&v, "instance/nope", &[]).map(|_| ()), Err(StatusCode::NOT_FOUND));
        let (ct, json_text) = get(&v, "instance/", &[("recursive", "true")]).expect("recursive");
        assert_eq!(ct, "application/json");
        let doc: Value = serde_json::from_str(&json_text).expect("json");
        assert_eq!(doc["networkInterfaces"][0]["ip"], "198.18.1.2");
        assert_eq!(doc["attributes"]["kube-env"], "A: 'b'\n", "attribute keys verbatim");
        assert_eq!(doc["serviceAccounts"]["default"]["email"], "sa@p");
        assert_eq!(doc["id"], 123);
        assert_eq!(get(&v, "instance/name", &[("alt", "json")]).expect("json").1, "\"m\"");
        let token = get(&v, "instance/service-accounts/default/token", &[])
            .expect("token")
            .1;
        assert!(token.contains("access_token"), "{token}");
        let root: Value = serde_json::from_str(&get(&v, "", &[("recursive", "true")]).expect("root").1).expect("json");
        assert_eq!(root["project"]["attributes"]["ssh-keys"], "u:ssh-ed25519 AAAA");
    }

    #[test]
    fn guest_attributes_follow_the_instance_then_the_project() {
        let mut v = view();
        assert!(v.guest_attributes_enabled());
        v.instance["metadata"]["items"][1]["value"] = json!("false");
        v.project_metadata = json!({"items": [{"key": "enable-guest-attributes", "value": "TRUE"}]});
        assert!(!v.guest_attributes_enabled(), "the instance's value wins");
        v.instance["metadata"]["items"] = json!([]);
        assert!(v.guest_attributes_enabled(), "else the project's");
    }

    #[test]
    fn etags_follow_content() {
        assert_eq!(etag("a"), etag("a"));
        assert_ne!(etag("a"), etag("b"));
    }
}
