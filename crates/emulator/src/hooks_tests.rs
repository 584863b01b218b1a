//! In-process tests of the [`Machines`] hooks: an emulator router served on a local port with a
//! recording implementation, checking which hook is called, when (only once the operation is
//! DONE), and with what (boot modes from faults, load-balancer backends, external IPs).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{AppState, Boot, GuestAttribute, GuestFault, LbRule, Machines, Settings, router};

/// One hook call.
#[derive(Debug, Clone, PartialEq)]
enum Hook {
    Created(String, Boot, Option<String>),
    Deleted(String),
    ExternalIp(String, Option<Ipv4Addr>),
    Lb(Vec<LbRule>),
    DiskDeleted(String),
    Crash(String),
    Changed(String, Value),
    ProjectMetadata(Value),
    Firewalls(Vec<String>),
    GuestFault(Option<(String, String)>, GuestFault),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Hook>>);

impl Recorder {
    fn take(&self) -> Vec<Hook> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }
    fn push(&self, h: Hook) {
        self.0.lock().expect("recorder lock").push(h);
    }
}

impl Machines for Recorder {
    fn instance_created(&self, _: &str, _: &str, instance: &Value, boot: Boot) {
        let name = instance["name"].as_str().unwrap_or("?").to_string();
        let ip = instance["networkInterfaces"][0]["networkIP"].as_str().map(String::from);
        self.push(Hook::Created(name, boot, ip));
    }
    fn instance_deleted(&self, _: &str, _: &str, name: &str) {
        self.push(Hook::Deleted(name.into()));
    }
    fn external_ip_changed(&self, _: &str, _: &str, name: &str, ip: Option<Ipv4Addr>) {
        self.push(Hook::ExternalIp(name.into(), ip));
    }
    fn load_balancers_changed(&self, rules: Vec<LbRule>) {
        self.push(Hook::Lb(rules));
    }
    fn disk_deleted(&self, _: &str, _: &str, name: &str) {
        self.push(Hook::DiskDeleted(name.into()));
    }
    fn crash(&self, _: &str, _: &str, name: &str) -> bool {
        self.push(Hook::Crash(name.into()));
        true
    }
    fn shutdown(&self) {}
    fn instance_changed(&self, _: &str, _: &str, instance: &Value) {
        let name = instance["name"].as_str().unwrap_or("?").to_string();
        self.push(Hook::Changed(name, instance["metadata"]["items"].clone()));
    }
    fn project_metadata_changed(&self, _: &str, metadata: &Value) {
        self.push(Hook::ProjectMetadata(metadata["items"].clone()));
    }
    fn firewalls_changed(&self, _: &str, firewalls: &[Value]) {
        let names = firewalls
            .iter()
            .map(|f| f["name"].as_str().unwrap_or("?").to_string())
            .collect();
        self.push(Hook::Firewalls(names));
    }
    fn guest_attributes(&self, _: &str, _: &str, name: &str) -> Option<Vec<GuestAttribute>> {
        (name == "m1").then(|| {
            vec![GuestAttribute {
                namespace: "hostkeys".into(),
                key: "ssh-ed25519".into(),
                value: "AAAAC3".into(),
            }]
        })
    }
    fn serial_port_output(&self, _: &str, _: &str, name: &str, port: u8) -> Option<String> {
        (name == "m1" && port == 3).then(|| "line 1\nline 2\n".to_string())
    }
    fn guest_fault(&self, _: &str, instance: Option<(&str, &str)>, fault: GuestFault) -> bool {
        let instance = instance.map(|(z, n)| (z.to_string(), n.to_string()));
        self.push(Hook::GuestFault(instance, fault));
        true
    }
}

struct Local {
    base: String,
    http: reqwest::Client,
}

impl Local {
    async fn start(latency_ms: u64, recorder: Arc<Recorder>) -> Local {
        Local::start_with(latency_ms, Duration::from_secs(60), recorder).await
    }

    async fn start_with(latency_ms: u64, wait_limit: Duration, recorder: Arc<Recorder>) -> Local {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut settings = Settings::new(base.clone(), 9);
        settings.op_latency = Duration::from_millis(latency_ms);
        settings.boot_delay = Duration::from_millis(7);
        settings.wait_limit = wait_limit;
        let app = router(AppState::new(settings, recorder));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Local {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("reachable");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// POST an API change and wait for its operation (in `scope`, e.g. `zones/z`).
    async fn change(&self, path: &str, body: Value) -> Value {
        let op = self
            .call(
                reqwest::Method::POST,
                &format!("/compute/v1/projects/p/{path}"),
                Some(body),
            )
            .await;
        self.wait(&op).await
    }

    async fn wait(&self, op: &Value) -> Value {
        let link = op["selfLink"].as_str().expect("op selfLink");
        let path = link.strip_prefix(&self.base).expect("our link");
        let done = self.call(reqwest::Method::POST, &format!("{path}/wait"), None).await;
        assert_eq!(done["status"], "DONE", "{done}");
        assert!(done.get("error").is_none(), "{done}");
        done
    }

    async fn delete(&self, path: &str) -> Value {
        let op = self
            .call(reqwest::Method::DELETE, &format!("/compute/v1/projects/p/{path}"), None)
            .await;
        self.wait(&op).await
    }
}

fn vm(name: &str) -> Value {
    json!({"name": name, "machineType": "n1-standard-1",
           "disks": [{"boot": true, "autoDelete": true, "initializeParams": {"diskSizeGb": "10"}}],
           "networkInterfaces": [{"accessConfigs": [{"name": "External NAT"}]}]})
}

#[tokio::test]
async fn hooks_run_when_operations_complete_with_boot_modes_from_faults() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start(100, rec.clone()).await;
    let op = emu
        .call(
            reqwest::Method::POST,
            "/compute/v1/projects/p/zones/us-central1-b/instances",
            Some(vm("m1")),
        )
        .await;
    assert_eq!(op["status"], "PENDING");
    assert!(rec.take().is_empty(), "nothing runs before the operation is DONE");
    emu.wait(&op).await;
    let normal = Boot::Normal {
        delay: Duration::from_millis(7),
    };
    assert_eq!(
        rec.take(),
        [Hook::Created("m1".into(), normal, Some("198.18.9.2".into()))]
    );

    emu.call(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!([{"action": {"kind": "never_boot"}},
                    {"action": {"kind": "boot_delay", "ms": 1234}}])),
    )
    .await;
    emu.change("zones/us-central1-b/instances", vm("m2")).await;
    emu.change("zones/us-central1-b/instances", vm("m3")).await;
    emu.change("zones/us-central1-b/instances", vm("m4")).await;
    let boots: Vec<Boot> = rec
        .take()
        .into_iter()
        .filter_map(|h| match h {
            Hook::Created(_, boot, _) => Some(boot),
            _ => None,
        })
        .collect();
    assert_eq!(
        boots,
        [
            Boot::Never,
            Boot::Normal {
                delay: Duration::from_millis(1234)
            },
            normal
        ]
    );
}

#[tokio::test]
async fn load_balancer_external_ip_delete_and_crash_hooks() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start(0, rec.clone()).await;
    emu.change("zones/us-central1-b/instances", vm("m1")).await;
    emu.change("zones/us-central1-c/instances", vm("m2")).await;
    emu.change("regions/us-central1/addresses", json!({"name": "ip"})).await;
    rec.take();

    let pool = json!({"name": "pool", "instances": ["zones/us-central1-b/instances/m1"]});
    emu.change("regions/us-central1/targetPools", pool).await;
    assert!(rec.take().is_empty(), "a pool without a rule balances nothing");
    let rule = json!({"name": "lb", "IPAddress": "regions/us-central1/addresses/ip",
                      "portRange": "443", "target": "regions/us-central1/targetPools/pool"});
    emu.change("regions/us-central1/forwardingRules", rule).await;
    let lb_ip = Ipv4Addr::new(198, 19, 9, 3);
    let m1 = Ipv4Addr::new(198, 18, 9, 2);
    let m2 = Ipv4Addr::new(198, 18, 9, 3);
    let rule_with = |backends: Vec<Ipv4Addr>| LbRule {
        ip: lb_ip,
        ports: (443, 443),
        backends,
    };
    assert_eq!(rec.take(), [Hook::Lb(vec![rule_with(vec![m1])])]);
    emu.change(
        "regions/us-central1/targetPools/pool/addInstance",
        json!({"instances": [{"instance": "zones/us-central1-c/instances/m2"}]}),
    )
    .await;
    assert_eq!(rec.take(), [Hook::Lb(vec![rule_with(vec![m1, m2])])]);

    let op = emu
        .call(
            reqwest::Method::POST,
            "/compute/v1/projects/p/zones/us-central1-b/instances/m1/deleteAccessConfig?accessConfig=External%20NAT&networkInterface=nic0",
            None,
        )
        .await;
    emu.wait(&op).await;
    let [Hook::ExternalIp(name, None), Hook::Changed(changed, _)] = &rec.take()[..] else {
        panic!("deleteAccessConfig: the external IP, then the instance's new record")
    };
    assert_eq!((name.as_str(), changed.as_str()), ("m1", "m1"));
    let op = emu
        .call(
            reqwest::Method::POST,
            "/compute/v1/projects/p/zones/us-central1-b/instances/m1/addAccessConfig?networkInterface=nic0",
            Some(json!({"name": "External NAT"})),
        )
        .await;
    emu.wait(&op).await;
    assert_eq!(
        rec.take()[0],
        Hook::ExternalIp("m1".into(), Some(Ipv4Addr::new(198, 19, 9, 4)))
    );

    let crashed = emu
        .call(
            reqwest::Method::POST,
            "/_emulator/instances/us-central1-b/m1/crash",
            None,
        )
        .await;
    assert_eq!(crashed["crashed"], true);
    assert_eq!(rec.take(), [Hook::Crash("m1".into())]);

    emu.delete("zones/us-central1-b/instances/m1").await;
    assert_eq!(
        rec.take(),
        [
            Hook::DiskDeleted("m1".into()),
            Hook::Deleted("m1".into()),
            Hook::Lb(vec![rule_with(vec![m2])]),
        ]
    );
    emu.delete("regions/us-central1/forwardingRules/lb").await;
    assert_eq!(rec.take(), [Hook::Lb(vec![])]);
    let state = emu.call(reqwest::Method::GET, "/_emulator/state", None).await;
    assert_eq!(state["ipBlock"], 9);
    assert_eq!(state["loadBalancers"], json!([]));
}

#[tokio::test]
async fn wait_returns_a_stalled_operation_still_running_at_its_limit() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start_with(0, Duration::from_millis(150), rec.clone()).await;
    emu.call(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!({"path_contains": "/instances", "action": {"kind": "stall_operation"}})),
    )
    .await;
    let op = emu
        .call(
            reqwest::Method::POST,
            "/compute/v1/projects/p/zones/us-central1-b/instances",
            Some(vm("m1")),
        )
        .await;
    let link = op["selfLink"].as_str().expect("link").to_string();
    let path = link.strip_prefix(&emu.base).expect("ours");
    let started = std::time::Instant::now();
    let waited = emu.call(reqwest::Method::POST, &format!("{path}/wait"), None).await;
    assert_eq!(waited["status"], "RUNNING");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(rec.take().is_empty(), "a stalled insert never creates the VM");
}

#[tokio::test]
async fn changed_records_reach_the_machines_once_applied() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start(0, rec.clone()).await;
    emu.change("zones/us-central1-b/instances", vm("m1")).await;
    rec.take();

    let instance = emu
        .call(
            reqwest::Method::GET,
            "/compute/v1/projects/p/zones/us-central1-b/instances/m1",
            None,
        )
        .await;
    let fingerprint = instance["metadata"]["fingerprint"].clone();
    emu.change(
        "zones/us-central1-b/instances/m1/setMetadata",
        json!({"fingerprint": fingerprint, "items": [{"key": "ssh-keys", "value": "u:ssh-ed25519 AAAA"}]}),
    )
    .await;
    assert_eq!(
        rec.take(),
        [Hook::Changed(
            "m1".into(),
            json!([{"key": "ssh-keys", "value": "u:ssh-ed25519 AAAA"}])
        )]
    );

    let project = emu.call(reqwest::Method::GET, "/compute/v1/projects/p", None).await;
    let fingerprint = project["commonInstanceMetadata"]["fingerprint"].clone();
    let op = emu
        .call(
            reqwest::Method::POST,
            "/compute/v1/projects/p/setCommonInstanceMetadata",
            Some(json!({"fingerprint": fingerprint, "items": [{"key": "k", "value": "v"}]})),
        )
        .await;
    emu.wait(&op).await;
    assert_eq!(rec.take(), [Hook::ProjectMetadata(json!([{"key": "k", "value": "v"}]))]);

    emu.change(
        "global/firewalls",
        json!({"name": "fw-a", "allowed": [{"IPProtocol": "tcp"}]}),
    )
    .await;
    emu.change(
        "global/firewalls",
        json!({"name": "fw-b", "allowed": [{"IPProtocol": "udp"}]}),
    )
    .await;
    emu.delete("global/firewalls/fw-a").await;
    assert_eq!(
        rec.take(),
        [
            Hook::Firewalls(vec!["fw-a".into()]),
            Hook::Firewalls(vec!["fw-a".into(), "fw-b".into()]),
            Hook::Firewalls(vec!["fw-b".into()]),
        ]
    );
}

#[tokio::test]
async fn serial_port_output_comes_from_the_machines_and_is_read_from_an_offset() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start(0, rec.clone()).await;
    emu.change("zones/us-central1-b/instances", vm("m1")).await;
    let base = "/compute/v1/projects/p/zones/us-central1-b/instances";
    let reply = emu
        .call(reqwest::Method::GET, &format!("{base}/m1/serialPort?port=3"), None)
        .await;
    assert_eq!(reply["kind"], "compute#serialPortOutput");
    assert_eq!(
        (reply["contents"].as_str(), reply["next"].as_str()),
        (Some("line 1\nline 2\n"), Some("14"))
    );
    let tail = emu
        .call(
            reqwest::Method::GET,
            &format!("{base}/m1/serialPort?port=3&start=7"),
            None,
        )
        .await;
    assert_eq!(tail["contents"].as_str(), Some("line 2\n"));
    let console = emu
        .call(reqwest::Method::GET, &format!("{base}/m1/serialPort"), None)
        .await;
    assert_eq!(console["contents"].as_str(), Some(""), "port 1: nothing written");
    for (path, status) in [("m1/serialPort?port=9", 400), ("nope/serialPort?port=3", 404)] {
        let url = format!("{}{base}/{path}", emu.base);
        assert_eq!(
            emu.http.get(url).send().await.expect("reachable").status(),
            status,
            "{path}"
        );
    }
}

#[tokio::test]
async fn guest_attributes_and_guest_faults_go_through_the_machines() {
    let rec = Arc::new(Recorder::default());
    let emu = Local::start(0, rec.clone()).await;
    emu.change("zones/us-central1-b/instances", vm("m1")).await;
    emu.change("zones/us-central1-b/instances", vm("m2")).await;
    rec.take();

    let path = "/compute/v1/projects/p/zones/us-central1-b/instances/m1/getGuestAttributes?queryPath=hostkeys/";
    let reply = emu.call(reqwest::Method::GET, path, None).await;
    assert_eq!(reply["kind"], "compute#guestAttributes");
    assert_eq!(
        reply["queryValue"]["items"],
        json!([{"namespace": "hostkeys", "key": "ssh-ed25519", "value": "AAAAC3"}])
    );
    for (missing, why) in [
        ("m2/getGuestAttributes?queryPath=hostkeys/", "nothing written"),
        ("m1/getGuestAttributes?queryPath=other/", "nothing under that path"),
        ("nope/getGuestAttributes?queryPath=hostkeys/", "no such instance"),
    ] {
        let url = format!(
            "{}/compute/v1/projects/p/zones/us-central1-b/instances/{missing}",
            emu.base
        );
        let status = emu.http.get(url).send().await.expect("reachable").status();
        assert_eq!(status, 404, "{why}");
    }

    emu.call(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(
            json!([{"action": {"kind": "ssh_keys_late", "ms": 5000}, "instance": "m2"},
                    {"action": {"kind": "host_key_changed"}, "project": "p"}]),
        ),
    )
    .await;
    assert_eq!(
        rec.take(),
        [
            Hook::GuestFault(
                Some(("us-central1-b".into(), "m2".into())),
                GuestFault::SshKeysLate {
                    delay: Duration::from_millis(5000)
                }
            ),
            Hook::GuestFault(None, GuestFault::HostKeyChanged),
        ]
    );
    let unknown = emu
        .http
        .post(format!("{}/_emulator/faults", emu.base))
        .json(&json!({"action": {"kind": "guest_clear"}, "instance": "nope"}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(unknown.status(), 404);
    assert!(rec.take().is_empty(), "nothing applied for an unknown instance");
    let faults = emu.call(reqwest::Method::GET, "/_emulator/faults", None).await;
    assert_eq!(faults, json!([]), "guest faults are not queued for API calls");
}
