//! A real emulator process for end-to-end tests: `Emulator::start` runs the built `kube-ha
//! emulator --listen 127.0.0.1:0 …`, reads its endpoint from the first stdout line, and stops it
//! on drop (SIGTERM, then SIGKILL). The control endpoints (`/_emulator/*`) are reached with plain
//! reqwest; the Compute API only through the official clients from [`Emulator::clients`].

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use google_cloud_compute_v1::client::{
    Addresses, Disks, Firewalls, ForwardingRules, GlobalOperations, Instances, Projects, RegionOperations, Regions,
    TargetPools, ZoneOperations, Zones,
};
use serde_json::Value;

/// A running emulator.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// N of its `127.N.0.0/16`.
    pub ip_block: u8,
    http: reqwest::Client,
}

/// The official clients, all pointed at one emulator with anonymous credentials and fast polling.
pub struct Clients {
    pub instances: Instances,
    pub disks: Disks,
    pub addresses: Addresses,
    pub firewalls: Firewalls,
    pub target_pools: TargetPools,
    pub forwarding_rules: ForwardingRules,
    pub zones: Zones,
    pub regions: Regions,
    pub projects: Projects,
    pub zone_operations: ZoneOperations,
    pub region_operations: RegionOperations,
    pub global_operations: GlobalOperations,
}

fn fast_backoff() -> google_cloud_gax::exponential_backoff::ExponentialBackoff {
    google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(20))
        .with_maximum_delay(Duration::from_millis(100))
        .build()
        .expect("valid backoff")
}

macro_rules! client {
    ($ty:ty, $endpoint:expr) => {
        <$ty>::builder()
            .with_endpoint($endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .with_polling_backoff_policy(fast_backoff())
            .with_backoff_policy(fast_backoff())
            .build()
            .await
            .expect(concat!("build ", stringify!($ty), " client"))
    };
}

impl Emulator {
    /// Start `kube-ha emulator --listen 127.0.0.1:0 <extra_args>` and wait for its endpoint.
    pub fn start(extra_args: &[&str]) -> Emulator {
        let mut child = Command::new(crate::kube_ha_bin())
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kube-ha emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first).expect("read endpoint line");
        let endpoint = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let mut second = String::new();
        lines.read_line(&mut second).expect("read ip block line");
        let ip_block = second
            .trim()
            .strip_prefix("ip block 127.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
        // keep draining stdout so the emulator never blocks on a full pipe
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        Emulator {
            child,
            endpoint,
            ip_block,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// The official clients.
    pub async fn clients(&self) -> Clients {
        clients_for(&self.endpoint).await
    }

    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("control endpoint reachable")
            .error_for_status()
            .expect("control endpoint ok")
            .json()
            .await
            .expect("control endpoint JSON")
    }

    /// Every logged API call.
    pub async fn calls(&self) -> Vec<Value> {
        match self.get_json("/_emulator/calls").await {
            Value::Array(calls) => calls,
            other => panic!("calls is not an array: {other}"),
        }
    }

    /// The logged calls marked mutating.
    pub async fn mutating_calls(&self) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["mutating"] == Value::Bool(true))
            .collect()
    }

    /// The logged mutating calls, except instance `setMetadata` calls that changed nothing but
    /// `ssh-keys` (or nothing at all): a kube-ha run's only allowed write before it acts is its
    /// own `ssh-keys` entry, put in and taken out again. Pair it with a byte-for-byte check of
    /// `ssh-keys` where the entry itself matters.
    pub async fn mutating_calls_but_run_keys(&self) -> Vec<Value> {
        self.mutating_calls()
            .await
            .into_iter()
            .filter(|c| {
                let set_metadata =
                    c["method"] == "POST" && c["path"].as_str().is_some_and(|p| p.ends_with("/setMetadata"));
                let only_ssh_keys = c["metadataKeysChanged"]
                    .as_array()
                    .is_some_and(|k| k.iter().all(|k| k == "ssh-keys"));
                !(set_metadata && only_ssh_keys)
            })
            .collect()
    }

    /// Forget the logged calls.
    pub async fn clear_calls(&self) {
        self.http
            .delete(self.url("/_emulator/calls"))
            .send()
            .await
            .expect("clear calls")
            .error_for_status()
            .expect("clear calls ok");
    }

    /// Inject a fault (see the emulator module doc for the format).
    pub async fn fault(&self, fault: Value) {
        self.http
            .post(self.url("/_emulator/faults"))
            .json(&fault)
            .send()
            .await
            .expect("post fault")
            .error_for_status()
            .expect("fault accepted");
    }

    /// The pending faults.
    pub async fn faults(&self) -> Value {
        self.get_json("/_emulator/faults").await
    }

    /// Merge a latency update (`{"defaultMs": N, "methods": {"instances.insert": MS}}`, see the
    /// emulator module doc); the latencies now.
    pub async fn set_latency(&self, update: Value) -> Value {
        self.http
            .post(self.url("/_emulator/latency"))
            .json(&update)
            .send()
            .await
            .expect("post latency")
            .error_for_status()
            .expect("latency accepted")
            .json()
            .await
            .expect("latency JSON")
    }

    /// The logged `setMetadata`/`setCommonInstanceMetadata` calls' `metadataKeysChanged`, in order.
    pub async fn metadata_keys_changed(&self) -> Vec<Vec<String>> {
        self.calls()
            .await
            .into_iter()
            .filter_map(|c| serde_json::from_value(c.get("metadataKeysChanged")?.clone()).ok())
            .collect()
    }

    /// The state dump.
    pub async fn state(&self) -> Value {
        self.get_json("/_emulator/state").await
    }

    /// Crash a VM; returns the HTTP status and body.
    pub async fn crash(&self, zone: &str, name: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/_emulator/instances/{zone}/{name}/crash")))
            .send()
            .await
            .expect("crash endpoint reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The official clients for the emulator at `endpoint` (anonymous credentials, fast polling).
pub async fn clients_for(endpoint: &str) -> Clients {
    let e = endpoint;
    Clients {
        instances: client!(Instances, e),
        disks: client!(Disks, e),
        addresses: client!(Addresses, e),
        firewalls: client!(Firewalls, e),
        target_pools: client!(TargetPools, e),
        forwarding_rules: client!(ForwardingRules, e),
        zones: client!(Zones, e),
        regions: client!(Regions, e),
        projects: client!(Projects, e),
        zone_operations: client!(ZoneOperations, e),
        region_operations: client!(RegionOperations, e),
        global_operations: client!(GlobalOperations, e),
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
