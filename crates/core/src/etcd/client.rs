//! [`EtcdClient`]: etcd 3.4's v3 JSON gateway (grpc-gateway) over reqwest with mutual TLS.
//!
//! Why the gateway and not gRPC: it needs nothing beyond the HTTPS client the tool already has,
//! and the handful of calls kube-ha makes (membership, status, leadership, one key) are all unary.
//!
//! Wire facts this module depends on (reference/crates-and-etcd-facts.md §D, checked against
//! etcd 3.4.23): every call is `POST /v3/…` with a JSON body except `GET /health`; uint64 fields
//! are JSON strings (numbers are accepted too); fields at their zero value are omitted (`name`,
//! `clientURLs`, `isLearner`, `leader`, `kvs`, `value`); keys and values are base64; an error is
//! `{"error","message","code"}` with the HTTP status mapped from the gRPC code, and is classified
//! here by etcd's message into the typed [`EtcdError`] variants callers branch on.
//!
//! Every call carries a deadline ([`EtcdClient::timeout`]): a member remove without quorum never
//! answers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::error_chain;

use super::{EndpointStatus, EtcdError, Member, MemberId};
use crate::pki::{CertPair, ClusterCas, issue_tool_client};
use time::OffsetDateTime;

/// Per-call deadline unless the caller picks another: generous for a loaded 2-core VM (a healthy
/// member answers in milliseconds; a remove without quorum never does).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`EtcdClient::wait_healthy`] asks.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// A client of any number of etcd endpoints that share one CA and one client identity.
///
/// Cheap to clone (reqwest's client is reference-counted and pools connections).
///
/// Errors without an HTTP reply: [`EtcdError::Unreachable`] when the connection or the TLS
/// handshake failed (refused, reset, certificate rejected either way), [`EtcdError::Timeout`]
/// when the deadline passed first. Connecting counts against the deadline, so an address that
/// drops packets (a stopped VM) is a `Timeout`, while one that refuses (a stopped etcd on a
/// live host) is `Unreachable` at once.
#[derive(Clone, Debug)]
pub struct EtcdClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl EtcdClient {
    /// A client that trusts only `ca_pem` (the etcd client CA: it signs every etcd server
    /// certificate) and presents `cert_pem`/`key_pem`. The platform's roots are deliberately not
    /// trusted, and proxies from the environment are ignored: etcd lives on internal IPs.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str, timeout: Duration) -> Result<Self> {
        let http = Self::tls_builder(ca_pem, cert_pem, key_pem)?
            .build()
            .context("building the etcd HTTPS client")?;
        Ok(EtcdClient { http, timeout })
    }

    /// [`EtcdClient::new`] whose every connection goes to the Unix socket `socket` (an SSH
    /// forward to a master's own etcd port, `ssh::Forward`). The URL still decides TLS: endpoints
    /// are `https://127.0.0.1:2379`, verified for `127.0.0.1` as on the master itself.
    pub fn over_unix_socket(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        timeout: Duration,
        socket: &Path,
    ) -> Result<Self> {
        let http = Self::tls_builder(ca_pem, cert_pem, key_pem)?
            .unix_socket(socket)
            .build()
            .context("building the etcd HTTPS client")?;
        Ok(EtcdClient { http, timeout })
    }

    /// Plain HTTP over the Unix socket `socket`: kube-up's events etcd (`127.0.0.1:4002`) has no
    /// TLS; the SSH connection carrying the socket's channels is what protects it.
    pub fn plain_over_unix_socket(timeout: Duration, socket: &Path) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .unix_socket(socket)
            .build()
            .context("building the etcd HTTP client")?;
        Ok(EtcdClient { http, timeout })
    }

    /// The mutual-TLS client settings shared by the constructors.
    fn tls_builder(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<reqwest::ClientBuilder> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("etcd CA")?;
        let mut identity_pem = String::with_capacity(cert_pem.len() + key_pem.len() + 1);
        identity_pem.push_str(cert_pem);
        if !cert_pem.ends_with('\n') {
            identity_pem.push('\n');
        }
        identity_pem.push_str(key_pem);
        let identity =
            reqwest::Identity::from_pem(identity_pem.as_bytes()).context("etcd client certificate and key")?;
        Ok(reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(identity)
            .https_only(true)
            .no_proxy())
    }

    /// [`EtcdClient::new`] with a [`CertPair`] identity (e.g. from `pki::issue_tool_client`).
    pub fn with_identity(ca_pem: &str, identity: &CertPair, timeout: Duration) -> Result<Self> {
        Self::new(ca_pem, &identity.cert_pem, &identity.key_pem, timeout)
    }

    /// kube-ha's own client (SPEC §3): a fresh 1-hour certificate from the etcd client CA, so no
    /// long-lived operator credential exists. Build one per command run.
    pub fn for_tool(cas: &ClusterCas, now: OffsetDateTime, timeout: Duration) -> Result<Self> {
        let identity = issue_tool_client(cas, now)?;
        Self::with_identity(&cas.etcd_client.cert_pem, &identity, timeout)
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same client (same connections) with another per-call deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        EtcdClient {
            http: self.http.clone(),
            timeout,
        }
    }

    /// `member/list`: every member, started or not, learner or voting. Served from the local
    /// member's view, so it answers even without quorum.
    pub async fn member_list(&self, endpoint: &str) -> Result<Vec<Member>, EtcdError> {
        let reply: MembersReply = self.post(endpoint, "/v3/cluster/member/list", &json!({})).await?;
        Ok(reply.members())
    }

    /// `member/add`: the new member as etcd recorded it (no name until it starts).
    pub async fn member_add(
        &self,
        endpoint: &str,
        peer_urls: &[String],
        is_learner: bool,
    ) -> Result<Member, EtcdError> {
        let reply: MemberAddReply = self
            .post(
                endpoint,
                "/v3/cluster/member/add",
                &json!({ "peerURLs": peer_urls, "isLearner": is_learner }),
            )
            .await?;
        reply.member.map(Member::from).ok_or_else(|| EtcdError::Api {
            endpoint: endpoint.to_string(),
            http_status: 200,
            message: "member/add reply has no member".to_string(),
        })
    }

    /// `member/promote`: learner → voting. [`EtcdError::NotInSync`] until the learner has caught
    /// up (retry); [`EtcdError::NotALearner`] if it already votes. Returns the members after.
    pub async fn member_promote(&self, endpoint: &str, id: MemberId) -> Result<Vec<Member>, EtcdError> {
        let reply: MembersReply = self
            .post(endpoint, "/v3/cluster/member/promote", &id_body("ID", id))
            .await?;
        Ok(reply.members())
    }

    /// `member/remove`. Returns the remaining members. Hangs (until the deadline) without quorum.
    pub async fn member_remove(&self, endpoint: &str, id: MemberId) -> Result<Vec<Member>, EtcdError> {
        let reply: MembersReply = self
            .post(endpoint, "/v3/cluster/member/remove", &id_body("ID", id))
            .await?;
        Ok(reply.members())
    }

    /// `maintenance/status` of the member behind `endpoint`.
    pub async fn status(&self, endpoint: &str) -> Result<EndpointStatus, EtcdError> {
        let reply: StatusReply = self.post(endpoint, "/v3/maintenance/status", &json!({})).await?;
        Ok(reply.into())
    }

    /// `maintenance/transfer-leadership` to `target`. Must be sent to the current leader
    /// ([`EtcdError::NotLeader`] otherwise); a learner or unknown target is
    /// [`EtcdError::BadLeaderTransferee`].
    pub async fn move_leader(&self, leader_endpoint: &str, target: MemberId) -> Result<(), EtcdError> {
        let _: Value = self
            .post(
                leader_endpoint,
                "/v3/maintenance/transfer-leadership",
                &id_body("targetID", target),
            )
            .await?;
        Ok(())
    }

    /// `GET /health`: `Ok(true)` when the member has a leader and can serve; `Ok(false)` when it
    /// answered but is unhealthy (e.g. no quorum, HTTP 503); `Err` when it did not answer.
    pub async fn health(&self, endpoint: &str) -> Result<bool, EtcdError> {
        let (status, body) = self.exchange(endpoint, self.http.get(url(endpoint, "/health"))).await?;
        #[derive(Deserialize)]
        struct Health {
            health: String,
        }
        // The body is read whatever the status: an unhealthy member says so with a 503.
        match serde_json::from_slice::<Health>(&body) {
            Ok(h) => Ok(h.health == "true"),
            Err(_) => Err(api_error(endpoint, status, &body)),
        }
    }

    /// `health`, polled every 100 ms until true or `within` has passed
    /// ([`EtcdError::Timeout`] then).
    pub async fn wait_healthy(&self, endpoint: &str, within: Duration) -> Result<(), EtcdError> {
        let deadline = Instant::now() + within;
        loop {
            // An answer of "false" and no answer at all both mean "not yet" while starting.
            if let Ok(true) = self.health(endpoint).await {
                return Ok(());
            }
            if Instant::now() + HEALTH_POLL > deadline {
                return Err(EtcdError::Timeout {
                    endpoint: endpoint.to_string(),
                    after: within,
                });
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// `kv/put`.
    pub async fn put(&self, endpoint: &str, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let _: Value = self
            .post(
                endpoint,
                "/v3/kv/put",
                &json!({ "key": B64.encode(key), "value": B64.encode(value) }),
            )
            .await?;
        Ok(())
    }

    /// `kv/range` of one key, linearizable (goes through the leader; refused by a learner).
    pub async fn get(&self, endpoint: &str, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        self.range(endpoint, key, false).await
    }

    /// `kv/range` of one key from the member's local state (`serializable`): may be stale, but
    /// answers without a leader and on a learner.
    pub async fn get_serializable(&self, endpoint: &str, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        self.range(endpoint, key, true).await
    }

    async fn range(&self, endpoint: &str, key: &[u8], serializable: bool) -> Result<Option<Vec<u8>>, EtcdError> {
        let reply: RangeReply = self
            .post(
                endpoint,
                "/v3/kv/range",
                &json!({ "key": B64.encode(key), "serializable": serializable }),
            )
            .await?;
        match reply.kvs.into_iter().next() {
            None => Ok(None),
            Some(kv) => B64.decode(kv.value.as_bytes()).map(Some).map_err(|e| EtcdError::Api {
                endpoint: endpoint.to_string(),
                http_status: 200,
                message: format!("kv/range value is not base64: {e}"),
            }),
        }
    }

    /// POST a JSON body, map the reply: 2xx → `T`, anything else → a typed error.
    async fn post<T: DeserializeOwned>(&self, endpoint: &str, path: &str, body: &Value) -> Result<T, EtcdError> {
        let (status, bytes) = self
            .exchange(endpoint, self.http.post(url(endpoint, path)).json(body))
            .await?;
        if !(200..300).contains(&status) {
            return Err(api_error(endpoint, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| EtcdError::Api {
            endpoint: endpoint.to_string(),
            http_status: status,
            message: format!("unreadable reply to {path}: {e}"),
        })
    }

    /// Send with the deadline (which covers connect, TLS, reply and body) and read the whole
    /// reply: its HTTP status and body.
    async fn exchange(&self, endpoint: &str, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), EtcdError> {
        let started = Instant::now();
        let reply = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(endpoint, e))?;
        let status = reply.status().as_u16();
        let url = reply.url().to_string();
        let body = reply.bytes().await.map_err(|e| self.transport_error(endpoint, e))?;
        tracing::debug!(%url, status, elapsed = ?started.elapsed(), "etcd");
        Ok((status, body.to_vec()))
    }

    /// No HTTP reply: a deadline, or connect/TLS/IO failure.
    fn transport_error(&self, endpoint: &str, e: reqwest::Error) -> EtcdError {
        if e.is_timeout() {
            EtcdError::Timeout {
                endpoint: endpoint.to_string(),
                after: self.timeout,
            }
        } else {
            EtcdError::Unreachable {
                endpoint: endpoint.to_string(),
                message: error_chain(&e),
            }
        }
    }
}

/// `endpoint` + `path`, tolerating a trailing slash on the endpoint.
fn url(endpoint: &str, path: &str) -> String {
    format!("{}{path}", endpoint.trim_end_matches('/'))
}

/// `{"<field>": "<decimal id>"}`: IDs go out as strings, as etcd itself writes them, so no JSON
/// reader on the way can round them through a float.
fn id_body(field: &str, id: MemberId) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(field.to_string(), Value::String(id.0.to_string()));
    Value::Object(body)
}

/// A non-2xx reply, classified by etcd's message.
fn api_error(endpoint: &str, http_status: u16, body: &[u8]) -> EtcdError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: String,
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.message.is_empty() => b.message,
        Ok(b) if !b.error.is_empty() => b.error,
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    classify(endpoint, http_status, message)
}

/// etcd's error messages (etcdserver/api/v3rpc/rpctypes) → typed variants. Order matters where one
/// message contains another ("can only promote a learner member" is a prefix of the in-sync one).
fn classify(endpoint: &str, http_status: u16, message: String) -> EtcdError {
    type Variant = fn() -> EtcdError;
    const TABLE: &[(&str, Variant)] = &[
        ("can only promote a learner member which is in sync with leader", || {
            EtcdError::NotInSync
        }),
        ("can only promote a learner member", || EtcdError::NotALearner),
        ("member not found", || EtcdError::MemberNotFound),
        ("Peer URLs already exists", || EtcdError::PeerUrlExists),
        ("unhealthy cluster", || EtcdError::UnhealthyCluster),
        ("too many learner members", || EtcdError::TooManyLearners),
        ("not enough started members", || EtcdError::NotEnoughStartedMembers),
        ("bad leader transferee", || EtcdError::BadLeaderTransferee),
        ("not supported for learner", || EtcdError::NotSupportedForLearner),
        ("not leader", || EtcdError::NotLeader),
    ];
    for (needle, variant) in TABLE {
        if message.contains(needle) {
            return variant();
        }
    }
    EtcdError::Api {
        endpoint: endpoint.to_string(),
        http_status,
        message,
    }
}

/// A uint64 that etcd writes as a string (or, from other writers, as a number).
fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum U64 {
        Text(String),
        Number(u64),
    }
    match U64::deserialize(d)? {
        U64::Number(n) => Ok(n),
        U64::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct MemberJson {
    #[serde(rename = "ID", default, deserialize_with = "de_u64")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

impl From<MemberJson> for Member {
    fn from(m: MemberJson) -> Member {
        Member {
            id: MemberId(m.id),
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

#[derive(Deserialize)]
struct MembersReply {
    #[serde(default)]
    members: Vec<MemberJson>,
}

impl MembersReply {
    fn members(self) -> Vec<Member> {
        self.members.into_iter().map(Member::from).collect()
    }
}

#[derive(Deserialize)]
struct MemberAddReply {
    member: Option<MemberJson>,
}

#[derive(Deserialize, Default)]
struct HeaderJson {
    #[serde(default, deserialize_with = "de_u64")]
    member_id: u64,
}

#[derive(Deserialize)]
struct StatusReply {
    #[serde(default)]
    header: HeaderJson,
    #[serde(default, deserialize_with = "de_u64")]
    leader: u64,
    #[serde(rename = "raftIndex", default, deserialize_with = "de_u64")]
    raft_index: u64,
    #[serde(rename = "raftTerm", default, deserialize_with = "de_u64")]
    raft_term: u64,
    #[serde(rename = "raftAppliedIndex", default, deserialize_with = "de_u64")]
    raft_applied_index: u64,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
    #[serde(default)]
    errors: Vec<String>,
}

impl From<StatusReply> for EndpointStatus {
    fn from(s: StatusReply) -> EndpointStatus {
        EndpointStatus {
            member_id: MemberId(s.header.member_id),
            // etcd omits the field (zero) when there is no leader; 0 is never a member ID.
            leader: (s.leader != 0).then_some(MemberId(s.leader)),
            raft_index: s.raft_index,
            raft_applied_index: s.raft_applied_index,
            raft_term: s.raft_term,
            is_learner: s.is_learner,
            errors: s.errors,
        }
    }
}

#[derive(Deserialize)]
struct RangeReply {
    #[serde(default)]
    kvs: Vec<KvJson>,
}

#[derive(Deserialize)]
struct KvJson {
    /// Omitted when empty.
    #[serde(default)]
    value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_list_with_omitted_zero_fields() {
        // Shapes as etcd 3.4.23 sends them: IDs as strings, an unstarted learner with no name
        // and no client URLs, isLearner only when true.
        let body = r#"{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},"members":[
            {"ID":"6285086003201857503","name":"etcd-m","peerURLs":["https://127.0.0.1:2380"],"clientURLs":["https://127.0.0.1:2379"]},
            {"ID":"6380354036835222170","peerURLs":["https://127.0.0.2:2380"],"isLearner":true},
            {"ID":17,"name":"n"}]}"#;
        let reply: MembersReply = serde_json::from_str(body).expect("parse");
        let members = reply.members();
        assert_eq!(
            members[0],
            Member {
                id: MemberId(6285086003201857503),
                name: "etcd-m".into(),
                peer_urls: vec!["https://127.0.0.1:2380".into()],
                client_urls: vec!["https://127.0.0.1:2379".into()],
                is_learner: false,
            }
        );
        assert!(members[0].is_started());
        assert_eq!(members[1].id, MemberId(6380354036835222170));
        assert!(members[1].is_learner && !members[1].is_started());
        assert!(members[1].client_urls.is_empty());
        assert_eq!(members[2].id, MemberId(17), "numbers are accepted too");
        assert_eq!(format!("{}", members[1].id), "588b923122cb029a");
        assert_eq!(MemberId::from_hex("588b923122cb029a"), Some(members[1].id));
    }

    #[test]
    fn status_without_leader_or_learner_flag() {
        let with_leader = r#"{"header":{"cluster_id":"1","member_id":"6285086003201857503","revision":"1","raft_term":"2"},
            "version":"3.4.23","dbSize":"20480","leader":"6285086003201857503","raftIndex":"11","raftTerm":"2",
            "raftAppliedIndex":"11","dbSizeInUse":"16384"}"#;
        let s: EndpointStatus = serde_json::from_str::<StatusReply>(with_leader).expect("parse").into();
        assert_eq!(s.member_id, MemberId(6285086003201857503));
        assert_eq!(s.leader, Some(s.member_id));
        assert_eq!((s.raft_index, s.raft_applied_index, s.raft_term), (11, 11, 2));
        assert!(!s.is_learner && s.errors.is_empty());

        let no_leader = r#"{"header":{"member_id":"5"},"raftIndex":"3","isLearner":true,
            "errors":["etcdserver: no leader"]}"#;
        let s: EndpointStatus = serde_json::from_str::<StatusReply>(no_leader).expect("parse").into();
        assert_eq!(s.leader, None);
        assert!(s.is_learner);
        assert_eq!(s.errors, ["etcdserver: no leader"]);
    }

    #[test]
    fn ids_go_out_as_strings() {
        assert_eq!(
            id_body("ID", MemberId(u64::MAX)).to_string(),
            r#"{"ID":"18446744073709551615"}"#
        );
        assert_eq!(id_body("targetID", MemberId(1)).to_string(), r#"{"targetID":"1"}"#);
    }

    #[test]
    fn error_bodies_map_to_typed_variants() {
        let cases: &[(u16, &str, &str)] = &[
            (
                412,
                "etcdserver: can only promote a learner member which is in sync with leader",
                "NotInSync",
            ),
            (412, "etcdserver: can only promote a learner member", "NotALearner"),
            (404, "etcdserver: member not found", "MemberNotFound"),
            (412, "etcdserver: Peer URLs already exists", "PeerUrlExists"),
            (503, "etcdserver: unhealthy cluster", "UnhealthyCluster"),
            (
                412,
                "etcdserver: too many learner members in cluster",
                "TooManyLearners",
            ),
            (
                500,
                "etcdserver: re-configuration failed due to not enough started members",
                "NotEnoughStartedMembers",
            ),
            (412, "etcdserver: not leader", "NotLeader"),
            (412, "etcdserver: bad leader transferee", "BadLeaderTransferee"),
            (
                503,
                "etcdserver: rpc not supported for learner",
                "NotSupportedForLearner",
            ),
        ];
        for (status, message, want) in cases {
            let body = json!({"error": message, "message": message, "code": 9}).to_string();
            let got = api_error("https://e:2379", *status, body.as_bytes());
            assert!(format!("{got:?}").starts_with(want), "{message}: {got:?}");
        }
        match api_error(
            "https://e:2379",
            500,
            br#"{"error":"context deadline exceeded","code":2}"#,
        ) {
            EtcdError::Api {
                http_status, message, ..
            } => {
                assert_eq!((http_status, message.as_str()), (500, "context deadline exceeded"));
            }
            other => panic!("{other:?}"),
        }
        match api_error("https://e:2379", 404, b"404 page not found\n") {
            EtcdError::Api { message, .. } => assert_eq!(message, "404 page not found"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn range_reply_with_and_without_value() {
        let r: RangeReply = serde_json::from_str(
            r#"{"header":{},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#,
        )
        .expect("parse");
        assert_eq!(r.kvs[0].value, "YmFy");
        let empty: RangeReply = serde_json::from_str(r#"{"header":{}}"#).expect("parse");
        assert!(empty.kvs.is_empty());
        let empty_value: RangeReply = serde_json::from_str(r#"{"kvs":[{"key":"Zm9v"}],"count":"1"}"#).expect("parse");
        assert_eq!(empty_value.kvs[0].value, "");
    }

    #[test]
    fn rejects_a_bad_identity_without_panicking() {
        assert!(EtcdClient::new("not pem", "x", "y", DEFAULT_TIMEOUT).is_err());
    }
}
