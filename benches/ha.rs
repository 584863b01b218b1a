//! SPEC §7 benchmarks: kube-ha against kube-up's behaviour replayed as the baseline, side by side
//! in one run, on the same emulator build and the same real etcd. Each prints its measurements and
//! the ratio. Run: `cargo bench --bench ha [-- outage|writes|leader|scale|access ...]` (all by default).
//!
//! The kube-up baselines replay kube-up's own call order through the same Compute client and
//! etcd API (create-loadbalancer: detach the IP, ephemeral IP back, pool, add instance, forwarding
//! rule; replicate-master: voting member add before the VM; kube-down: member remove without a
//! leader move). Nothing here is a timed assertion: numbers are printed, not checked.

use kube_ha_testkit as support;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use google_cloud_compute_v1::model;
use kube_ha_core::etcd::{EtcdClient, EtcdError};
use kube_ha_core::names::{self, EtcdCluster};
use kube_ha_core::ops::cluster::{initial_cluster, replica_metadata};
use kube_ha_core::pki::{self, ReplicaIdentity};
use serde_json::json;
use support::cluster::Sandbox;
use support::tunnel::Tunnel;

const REGION: &str = "europe-west1";
const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";

/// Outcome of a prober or writer loop: one sample per attempt.
#[derive(Default)]
struct Samples {
    /// (when, ok, latency)
    points: Vec<(Instant, bool, Duration)>,
}

impl Samples {
    fn failures(&self) -> usize {
        self.points.iter().filter(|p| !p.1).count()
    }
    fn total(&self) -> usize {
        self.points.len()
    }
    /// Longest window from a failure after a success to the next success.
    fn longest_outage(&self) -> Duration {
        let (mut longest, mut start) = (Duration::ZERO, None::<Instant>);
        for (t, ok, _) in &self.points {
            match (ok, start) {
                (false, None) => start = Some(*t),
                (true, Some(s)) => {
                    longest = longest.max(t.duration_since(s));
                    start = None;
                }
                _ => {}
            }
        }
        if let (Some(s), Some((t, _, _))) = (start, self.points.last()) {
            longest = longest.max(t.duration_since(s));
        }
        longest
    }
    fn worst_latency(&self) -> Duration {
        self.points.iter().map(|p| p.2).max().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(base: f64, ours: f64) -> String {
    if ours <= 0.0 {
        if base <= 0.0 {
            "1.0x (both zero)".into()
        } else {
            "∞ (kube-ha: zero)".into()
        }
    } else {
        format!("{:.1}x", base / ours)
    }
}

/// Probe `GET https://<ip>/healthz` (cluster CA only) every 10 ms until stopped.
fn prober(client: reqwest::Client, ip: Ipv4Addr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let mut s = Samples::default();
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let ok = matches!(client.get(format!("https://{ip}/healthz")).timeout(Duration::from_millis(500)).send().await, Ok(r) if r.status().is_success());
            s.points.push((t, ok, t.elapsed()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s
    })
}

/// Put a key into etcd every 10 ms through `endpoint` until stopped.
fn writer(etcd: EtcdClient, endpoint: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let mut s = Samples::default();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let t = Instant::now();
            let ok = etcd.put(&endpoint, format!("bench/{i}").as_bytes(), b"v").await.is_ok();
            s.points.push((t, ok, t.elapsed()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s
    })
}

async fn first_master(sb: &Sandbox) {
    let r = sb
        .kube_ha(
            &["up"],
            &[("MULTIZONE", "true"), ("KUBE_GCE_ZONE", B), ("KUBE_HA_TIMEOUT", "10m")],
        )
        .await;
    assert_eq!(r.code, 0, "first master: {}", r.stderr);
}

async fn add(sb: &Sandbox, zone: &str, timeout: &str) -> support::cluster::Run {
    sb.kube_ha(
        &["up"],
        &[
            ("KUBE_GCE_ZONE", zone),
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ("KUBE_HA_TIMEOUT", timeout),
        ],
    )
    .await
}

/// kube-up's create-loadbalancer, in its order (util.sh): the IP comes off the master first.
async fn kube_up_create_loadbalancer(sb: &Sandbox) {
    let gce = sb.gce().await;
    let master = "kubernetes-master";
    let ip = sb.static_ip().await.to_string();
    gce.delete_access_config(B, master, "nic0", "External NAT")
        .await
        .expect("delete-access-config");
    gce.add_access_config(B, master, "nic0", "External NAT", None)
        .await
        .expect("add-access-config");
    let mut pool = model::TargetPool::default();
    pool.name = Some(master.into());
    gce.insert_target_pool(REGION, pool).await.expect("target-pools create");
    gce.add_to_target_pool(REGION, master, &gce.instance_url(B, master))
        .await
        .expect("add-instances");
    let mut rule = model::ForwardingRule::default();
    rule.name = Some(master.into());
    rule.ip_address = Some(ip);
    rule.ip_protocol = Some(model::forwarding_rule::IPProtocol::Tcp);
    rule.port_range = Some("443-443".into());
    rule.target = Some(format!(
        "projects/{}/regions/{REGION}/targetPools/{master}",
        gce.project()
    ));
    gce.insert_forwarding_rule(REGION, rule)
        .await
        .expect("forwarding-rules create");
}

/// §7.1: API outage on the static IP while adding the 2nd replica.
async fn outage() {
    println!("\n## 7.1 API outage on the static IP while adding the 2nd replica (prober every 10 ms, TLS verified)\n");
    println!(
        "| op latency | kube-up order: longest outage | failed probes | kube-ha: longest outage | failed probes | ratio (outage) |"
    );
    println!("|---|---|---|---|---|---|");
    for latency in [0u64, 1000] {
        let lat = latency.to_string();
        let mut results = Vec::new();
        for kube_up in [true, false] {
            let sb = Sandbox::start(&["--op-latency-ms", &lat]);
            first_master(&sb).await;
            let stop = Arc::new(AtomicBool::new(false));
            let p = prober(sb.api(), sb.static_ip().await, stop.clone());
            tokio::time::sleep(Duration::from_millis(200)).await;
            if kube_up {
                kube_up_create_loadbalancer(&sb).await;
            } else {
                let r = add(&sb, C, "10m").await;
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::SeqCst);
            results.push(p.await.expect("prober"));
        }
        let (up, ha) = (&results[0], &results[1]);
        println!(
            "| {} ms | {} | {}/{} | {} | {}/{} | {} |",
            latency,
            ms(up.longest_outage()),
            up.failures(),
            up.total(),
            ms(ha.longest_outage()),
            ha.failures(),
            ha.total(),
            ratio(up.longest_outage().as_secs_f64(), ha.longest_outage().as_secs_f64())
        );
    }
}

/// kube-up's replicate-master for etcd: a *voting* member for the new VM before the VM exists,
/// then disk and VM (metadata built the way kube-ha builds it, so the VM can join).
async fn kube_up_replicate(sb: &Sandbox, tunnel: &Tunnel, replica: &str, zone: &str) {
    let gce = sb.gce().await;
    let etcd = sb.etcd().await;
    let secrets = sb.secrets().await;
    let mut a = model::Address::default();
    a.name = Some(format!("{replica}-internal"));
    a.address_type = Some(model::address::AddressType::Internal);
    gce.insert_address(REGION, a).await.expect("address");
    let ip: Ipv4Addr = gce
        .address(REGION, &format!("{replica}-internal"))
        .await
        .expect("get")
        .expect("exists")
        .address
        .expect("ip")
        .parse()
        .expect("ipv4");
    for cluster in EtcdCluster::ALL {
        let (client, endpoint) = tunnel.endpoint(cluster);
        loop {
            // kube-up's `{"peerURLs":["https://${REPLICA_NAME}:2380"]}`: by instance name.
            match client
                .member_add(&endpoint, &[cluster.peer_url_of(replica)], false)
                .await
            {
                Ok(_) => break,
                Err(EtcdError::UnhealthyCluster) => tokio::time::sleep(Duration::from_millis(200)).await,
                // The events add fails once main has lost quorum: kube-up ignored HTTP errors too.
                Err(_) => break,
            }
        }
    }
    let mut d = model::Disk::default();
    d.name = Some(format!("{replica}-pd"));
    d.size_gb = Some(20);
    gce.insert_disk(zone, d).await.expect("disk");
    let members = etcd
        .member_list(&tunnel.endpoint(EtcdCluster::Main).1)
        .await
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let id = ReplicaIdentity {
        master_name: "kubernetes-master".into(),
        replica: replica.into(),
        internal_ip: ip,
        static_ip: sb.static_ip().await,
        service_ip: Ipv4Addr::new(10, 0, 0, 1),
        dns_domain: "cluster.local".into(),
    };
    let certs = pki::issue_replica_certs(&secrets.cas, &id, now).expect("certs");
    let initial = initial_cluster(&members, replica).expect("INITIAL_ETCD_CLUSTER");
    let (env, mc) = replica_metadata(&secrets, replica, &certs, initial);
    let settings = kube_ha_core::config::MasterSettings::kube_up_defaults(3, "cos-cloud");
    let inst = kube_ha_core::gce::bodies::replica_instance(&kube_ha_core::gce::bodies::ReplicaInstanceSpec {
        project: gce.project(),
        zone,
        name: replica,
        settings: &settings,
        network: "default",
        tag: "kubernetes-master",
        internal_ip: ip,
        nat_ip: None,
        metadata: vec![
            (names::METADATA_KUBE_ENV, env.to_yaml()),
            (names::METADATA_MASTER_CERTS, mc.to_yaml()),
        ],
    });
    gce.insert_instance(zone, inst).await.expect("instance");
}

/// §7.2: etcd write availability during an add whose VM boots in 5 s, and one that never boots.
async fn writes() {
    println!(
        "\n## 7.2 etcd write availability while adding the 2nd replica (a write every 10 ms to the first master)\n"
    );
    println!(
        "| VM | kube-up voting add: failed writes | longest unavailability | kube-ha learner: failed writes | longest unavailability | ratio (failed writes) |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, fault) in [
        ("boots in 5 s", json!({"kind": "boot_delay", "ms": 5000})),
        ("never boots", json!({"kind": "never_boot"})),
    ] {
        let mut results = Vec::new();
        for kube_up in [true, false] {
            let sb = Sandbox::start(&[]);
            first_master(&sb).await;
            let tunnel = sb.tunnel(&sb.replicas().await[0]).await;
            let etcd = sb.etcd().await.with_timeout(Duration::from_secs(1));
            let stop = Arc::new(AtomicBool::new(false));
            let w = writer(etcd, tunnel.endpoint(EtcdCluster::Main).1, stop.clone());
            tokio::time::sleep(Duration::from_millis(300)).await;
            sb.next_vm_boots(fault.clone()).await;
            let started = Instant::now();
            if kube_up {
                kube_up_replicate(&sb, &tunnel, "kubernetes-master-bch", C).await;
                // kube-up then waited for validate-cluster; give it the same 20 s the learner add gets.
                tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
            } else {
                let r = add(&sb, C, "30s").await;
                let want = if label == "never boots" { 1 } else { 0 };
                assert_eq!(r.code, want, "{}", r.stderr);
                tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
            }
            stop.store(true, Ordering::SeqCst);
            results.push(w.await.expect("writer"));
        }
        let (up, ha) = (&results[0], &results[1]);
        println!(
            "| {label} | {}/{} | {} | {}/{} | {} | {} |",
            up.failures(),
            up.total(),
            ms(up.longest_outage()),
            ha.failures(),
            ha.total(),
            ms(ha.longest_outage()),
            ratio(up.failures() as f64, ha.failures() as f64)
        );
    }
}

/// §7.3: worst write latency while removing the replica that leads etcd.
async fn leader() {
    println!(
        "\n## 7.3 worst etcd write latency while removing the etcd leader (a write every 10 ms to another member)\n"
    );
    println!("| without leadership transfer (kube-up) | with transfer (kube-ha) | ratio |");
    println!("|---|---|---|");
    let mut results = Vec::new();
    for kube_up in [true, false] {
        let sb = Sandbox::start(&[]);
        first_master(&sb).await;
        assert_eq!(add(&sb, C, "10m").await.code, 0);
        assert_eq!(add(&sb, "europe-west1-d", "10m").await.code, 0);
        let etcd = sb.etcd().await;
        let replicas = sb.replicas().await;
        let first = sb.tunnel(&replicas[0]).await;
        let any = first.endpoint(EtcdCluster::Main).1;
        let leader_id = etcd.status(&any).await.expect("status").leader.expect("leader");
        let members = etcd.member_list(&any).await.expect("members");
        let leader = members.iter().find(|m| m.id == leader_id).expect("leader member");
        let victim = leader.name.trim_start_matches("etcd-").to_string();
        let victim_vm = replicas
            .iter()
            .find(|r| r.name.as_deref() == Some(victim.as_str()))
            .expect("vm")
            .clone();
        let other = replicas
            .iter()
            .find(|r| r.name.as_deref() != Some(victim.as_str()))
            .expect("other");
        let through_other = sb.tunnel(other).await;
        let endpoint = through_other.endpoint(EtcdCluster::Main).1;
        let stop = Arc::new(AtomicBool::new(false));
        let w = writer(
            etcd.with_timeout(Duration::from_secs(5)),
            endpoint.clone(),
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let zone = victim_vm
            .zone
            .as_deref()
            .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
            .expect("zone");
        if kube_up {
            // kube-down: remove the member through another master, then delete the VM.
            for cluster in EtcdCluster::ALL {
                let (client, ep) = through_other.endpoint(cluster);
                let ms = client.member_list(&ep).await.expect("members");
                if let Some(m) = ms.iter().find(|m| m.name == format!("etcd-{victim}")) {
                    while let Err(EtcdError::UnhealthyCluster) = client.member_remove(&ep, m.id).await {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            sb.gce().await.delete_instance(&zone, &victim).await.expect("delete VM");
        } else {
            let r = sb
                .kube_ha(
                    &["down"],
                    &[
                        ("KUBE_DELETE_NODES", "false"),
                        ("KUBE_GCE_ZONE", zone.as_str()),
                        ("KUBE_REPLICA_NAME", victim.as_str()),
                    ],
                )
                .await;
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::SeqCst);
        results.push(w.await.expect("writer"));
    }
    let (up, ha) = (&results[0], &results[1]);
    println!(
        "| {} (failed {}) | {} (failed {}) | {} |",
        ms(up.worst_latency()),
        up.failures(),
        ms(ha.worst_latency()),
        ha.failures(),
        ratio(up.worst_latency().as_secs_f64(), ha.worst_latency().as_secs_f64())
    );
}

/// `--output json` details of a run, if its stdout is one JSON document.
fn details(run: &support::cluster::Run) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .map(|d| d["details"].clone())
        .unwrap_or_default()
}

/// The median of some durations.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Issue 11: the wall time of an add (2 → 3 replicas) and of its removal (3 → 2), median of
/// three rounds, with the SSH handshakes each command made (`details.ssh_handshakes`).
async fn access() {
    println!("\n## etcd access: wall time of an add (2 → 3 replicas) and a removal (3 → 2), op latency 0\n");
    println!("| command | wall (median of 3) | SSH handshakes per run |");
    println!("|---|---|---|");
    let sb = Sandbox::start(&[]);
    first_master(&sb).await;
    assert_eq!(add(&sb, C, "10m").await.code, 0);
    let d = "europe-west1-d";
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    let (mut add_handshakes, mut remove_handshakes) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let r = sb
            .kube_ha(
                &["up", "--output", "json"],
                &[("KUBE_GCE_ZONE", d), ("KUBE_REPLICATE_EXISTING_MASTER", "true")],
            )
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        adds.push(t.elapsed());
        add_handshakes.push(details(&r)["ssh_handshakes"].clone());
        let t = Instant::now();
        let r = sb
            .kube_ha(
                &["down", "--output", "json"],
                &[("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", d)],
            )
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        removes.push(t.elapsed());
        remove_handshakes.push(details(&r)["ssh_handshakes"].clone());
    }
    let show = |h: &[serde_json::Value]| {
        h.iter()
            .map(|v| if v.is_null() { "–".to_string() } else { v.to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| add | {} | {} |", ms(median(adds)), show(&add_handshakes));
    println!("| remove | {} | {} |", ms(median(removes)), show(&remove_handshakes));
}

/// §7.4: wall time and API calls per `up`/`down` at 1, 3, 5, 7 replicas.
async fn scale() {
    println!("\n## 7.4 wall time and Compute API calls per command (op latency 0)\n");
    println!("| replicas after | up: wall | up: reads | up: mutations | down to n-1: wall | reads | mutations |");
    println!("|---|---|---|---|---|---|---|");
    let sb = Sandbox::start(&[]);
    let zones = ["europe-west1-b", "europe-west1-c", "europe-west1-d"];
    let mut ups = Vec::new();
    for n in 1..=7usize {
        sb.emu.clear_calls().await;
        let t = Instant::now();
        let r = if n == 1 {
            sb.kube_ha(&["up"], &[("KUBE_GCE_ZONE", B)]).await
        } else {
            add(&sb, zones[(n - 1) % 3], "10m").await
        };
        assert_eq!(r.code, 0, "{}", r.stderr);
        let wall = t.elapsed();
        let calls = sb.emu.calls().await;
        let muts = calls.iter().filter(|c| c["mutating"] == true).count();
        ups.push((wall, calls.len() - muts, muts));
    }
    let mut downs = vec![(Duration::ZERO, 0, 0); 8];
    for n in (2..=7usize).rev() {
        let newest = sb.replicas().await.last().cloned().expect("replica");
        let zone = newest
            .zone
            .as_deref()
            .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
            .expect("zone");
        let name = newest.name.clone().expect("name");
        sb.emu.clear_calls().await;
        let t = Instant::now();
        let r = sb
            .kube_ha(
                &["down"],
                &[
                    ("KUBE_DELETE_NODES", "false"),
                    ("KUBE_GCE_ZONE", zone.as_str()),
                    ("KUBE_REPLICA_NAME", name.as_str()),
                ],
            )
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let calls = sb.emu.calls().await;
        let muts = calls.iter().filter(|c| c["mutating"] == true).count();
        downs[n] = (t.elapsed(), calls.len() - muts, muts);
    }
    for n in [1usize, 3, 5, 7] {
        let (w, r, m) = ups[n - 1];
        let (dw, dr, dm) = downs[n];
        if n == 1 {
            println!("| {n} | {} | {r} | {m} | – | – | – |", ms(w));
        } else {
            println!("| {n} | {} | {r} | {m} | {} | {dr} | {dm} |", ms(w), ms(dw));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("# kube-ha benchmarks (SPEC §7); baseline = kube-up's order replayed on the same emulator and etcd");
        if want("outage") {
            outage().await;
        }
        if want("writes") {
            writes().await;
        }
        if want("leader") {
            leader().await;
        }
        if want("scale") {
            scale().await;
        }
        if want("access") {
            access().await;
        }
    });
}
