//! Simulated master VMs end to end (SPEC §6): the real emulator binary with `--sandbox-dir`,
//! driven through the official Compute client to create what `kube-ha up` creates, observed with
//! the real `etcdctl`, HTTPS that trusts only the cluster CA, and `/proc`.
//!
//! Each test runs its own emulator, hence its own address block and VPC, so they run in parallel.

use kube_ha_testkit as support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use google_cloud_compute_v1::model;
use kube_ha_core::etcd::Member;
use kube_ha_core::names::EtcdCluster;
use kube_ha_core::ops::cluster::{initial_cluster, replica_metadata};
use kube_ha_core::pki::{ClusterCas, issue_tool_client};
use support::hosts::{admin_client, still_running, vm_etcd};
use support::sandbox::*;
use time::OffsetDateTime;

/// The etcdctl view of one cluster inside `vm` (its own loopback, the only place its etcd serves
/// clients): (name, isLearner) of every member.
async fn started_members(emu: &Emulator, vm: &str, cluster: EtcdCluster) -> Vec<(String, bool)> {
    support::vm_etcd::member_list(&emu.endpoint, vm, cluster)
        .await
        .expect("etcdctl member list")
        .into_iter()
        .map(|m| (m.name, m.is_learner))
        .collect()
}

async fn put(client: &reqwest::Client, ip: Ipv4Addr, key: &str, value: &str) -> u16 {
    client
        .put(format!("https://{ip}/kv/{key}"))
        .body(value.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn tcp_refused(ip: Ipv4Addr) -> bool {
    tokio::net::TcpStream::connect((ip, 443)).await.is_err()
}

/// An emulator with the first master created and its API healthy on the internal IP, and a
/// client that trusts only the cluster CA.
async fn booted_master() -> (Emulator, kube_ha_core::gce::Gce, Replica, reqwest::Client) {
    let emu = Emulator::start(&[]);
    let gce = emu.gce().await;
    let m = create_first_master(&gce).await;
    let api = admin_client(&m.cas);
    wait_healthz(&api, m.internal_ip).await;
    (emu, gce, m, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_boots_like_configure_helper_and_follows_its_gce_record() {
    let emu = Emulator::start(&[]);
    let gce = emu.gce().await;
    let t0 = Instant::now();
    let m = create_first_master(&gce).await;
    let created = t0.elapsed();
    let api = admin_client(&m.cas);
    wait_healthz(&api, m.static_ip).await;
    eprintln!(
        "measured: instance insert took {created:?}; insert to /healthz 200 on the static IP: {:?}",
        t0.elapsed()
    );

    // etcd: one started voting member per cluster, named as configure-helper names it, seen by
    // the real etcdctl with a client cert from the etcd client CA (mutual TLS).
    for cluster in EtcdCluster::ALL {
        assert_eq!(
            started_members(&emu, MASTER, cluster).await,
            vec![("etcd-kubernetes-master".to_string(), false)],
            "{cluster}"
        );
    }
    // A client cert from another CA is refused by etcd (the files put into the VM's /etc).
    let stranger = ClusterCas::generate("stranger", OffsetDateTime::now_utc()).expect("CAs");
    let stranger_cert = issue_tool_client(&stranger, OffsetDateTime::now_utc()).expect("cert");
    let dir = emu.vm_dir(MASTER).join("etc/stranger");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("client.crt"), &stranger_cert.cert_pem).expect("cert");
    std::fs::write(dir.join("client.key"), &stranger_cert.key_pem).expect("key");
    let refused = support::hosts::sandbox_exec(
        &emu.endpoint,
        Some(MASTER),
        &[
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            "--command-timeout",
            "5s",
            "--endpoints",
            "https://127.0.0.1:2379",
            "--cacert",
            "/etc/srv/kubernetes/pki/etcd-apiserver-ca.crt",
            "--cert",
            "/etc/stranger/client.crt",
            "--key",
            "/etc/stranger/client.key",
            "member",
            "list",
        ],
    )
    .await;
    assert_ne!(refused.code, 0, "a client cert from another CA was accepted");

    // Files: certificates where configure-helper writes them, with its modes (write-pki-data's
    // umask 077; the etcd functions' default umask, which kube-up's etcd calls without sudo
    // relied on), etcd data on the disk.
    let srv = emu.vm_dir(MASTER).join("etc/srv/kubernetes");
    for (file, want) in [
        ("pki/apiserver.key", 0o600),
        ("pki/serviceaccount.key", 0o600),
        ("pki/ca-certificates.crt", 0o600),
        ("pki/apiserver-client.key", 0o600),
        ("etcd-peer.key", 0o644),
        ("etcd-ca.crt", 0o644),
        ("pki/etcd-apiserver-server.key", 0o644),
        ("pki/etcd-apiserver-client.key", 0o644),
    ] {
        let mode = std::fs::metadata(srv.join(file)).expect(file).permissions().mode() & 0o777;
        assert_eq!(mode, want, "{file}");
    }
    let etcd_data = emu.disk_dir(&format!("{MASTER}-pd")).join("var/etcd");
    assert!(etcd_data.join("data/member").is_dir(), "main data on the disk");
    assert!(etcd_data.join("data-events/member").is_dir(), "events data on the disk");
    assert_eq!(vm_etcd(&emu.dir).len(), 2, "main and events etcd");

    // The API: the VM's own cert verifies against the cluster CA on the static and internal IPs,
    // and not against another CA.
    wait_healthz(&api, m.internal_ip).await;
    let other = api_client(&stranger.cluster.cert_pem);
    let refused = get(&other, m.static_ip, "healthz").await;
    assert!(refused.is_err(), "a client trusting another CA got {refused:?}");
    assert_eq!(put(&api, m.static_ip, "registry/a", "one").await, 200);
    assert_eq!(
        get(&api, m.internal_ip, "kv/registry/a").await,
        Ok((200, "one".to_string()))
    );
    assert_eq!(
        get(&api, m.static_ip, "kv/registry/missing").await.map(|r| r.0),
        Ok(404)
    );

    // The external IP follows the access config (1:1 NAT in the sandbox's router).
    gce.delete_access_config(ZONE, MASTER, "nic0", "External NAT")
        .await
        .expect("delete access config");
    eventually("the static IP stops answering", Duration::from_secs(5), || async {
        tcp_refused(m.static_ip).await.then_some(())
    })
    .await;
    gce.add_access_config(ZONE, MASTER, "nic0", "External NAT", None)
        .await
        .expect("add ephemeral access config");
    let ephemeral = external_ip(&gce, MASTER).await.expect("an ephemeral IP");
    assert_ne!(ephemeral, m.static_ip);
    // The ephemeral IP is not in the certificate (as on GCE): reach it under a name that is.
    let by_name = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(m.cas.cluster.cert_pem.as_bytes()).expect("ca")])
        .resolve("kubernetes", (ephemeral, 443).into())
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    eventually("the ephemeral IP serves the API", Duration::from_secs(10), || async {
        let reply = by_name.get("https://kubernetes/healthz").send().await.ok()?;
        (reply.status() == 200).then_some(())
    })
    .await;

    // The static IP on a forwarding rule: a proxy to the pool's instances.
    let mut pool = model::TargetPool::default();
    pool.name = Some(MASTER.into());
    pool.instances = vec![gce.instance_url(ZONE, MASTER)];
    gce.insert_target_pool(REGION, pool).await.expect("target pool");
    let mut rule = model::ForwardingRule::default();
    rule.name = Some(MASTER.into());
    rule.ip_address = Some(m.static_ip.to_string());
    rule.ip_protocol = Some(model::forwarding_rule::IPProtocol::Tcp);
    rule.port_range = Some("443-443".into());
    rule.target = Some(format!("projects/{PROJECT}/regions/{REGION}/targetPools/{MASTER}"));
    gce.insert_forwarding_rule(REGION, rule).await.expect("forwarding rule");
    wait_healthz(&api, m.static_ip).await;
    assert_eq!(
        get(&api, m.static_ip, "kv/registry/a").await,
        Ok((200, "one".to_string()))
    );

    // Crash: every process of the VM is killed, nothing answers, the files stay; the GCE record
    // stays RUNNING.
    let pids: Vec<u32> = emu.children().into_iter().map(|(pid, _)| pid).collect();
    assert!(pids.len() >= 3, "holder, its PID 1, two etcd: {pids:?}");
    let reply = emu
        .control(
            &format!("/_emulator/instances/{ZONE}/{MASTER}/crash"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(reply["crashed"], true);
    // The crash call returns once the processes are dead.
    assert_eq!(
        still_running(&pids),
        Vec::<u32>::new(),
        "processes left after the crash"
    );
    assert!(get(&api, m.internal_ip, "healthz").await.is_err());
    assert!(
        get(&api, m.static_ip, "healthz").await.is_err(),
        "the LB found a backend"
    );
    assert!(
        emu.vm_dir(MASTER).join("etc/srv/kubernetes").is_dir(),
        "a crash keeps the files"
    );
    let unknown = emu
        .control(
            &format!("/_emulator/instances/{ZONE}/{MASTER}/crash"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(unknown["crashed"], true, "a crashed VM is still a known VM");

    // Delete: VM dir gone, disk dir kept until the disk goes.
    gce.delete_forwarding_rule(REGION, MASTER).await.expect("delete rule");
    gce.delete_target_pool(REGION, MASTER).await.expect("delete pool");
    gce.delete_instance(ZONE, MASTER).await.expect("delete instance");
    eventually("the VM dir is removed", Duration::from_secs(10), || async {
        (!emu.vm_dir(MASTER).exists()).then_some(())
    })
    .await;
    assert!(etcd_data.join("data/member").is_dir(), "the disk outlives the VM");
    gce.delete_disk(ZONE, &format!("{MASTER}-pd"))
        .await
        .expect("delete disk");
    eventually("the disk dir is removed", Duration::from_secs(10), || async {
        (!emu.disk_dir(&format!("{MASTER}-pd")).exists()).then_some(())
    })
    .await;
    assert_eq!(emu.children(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_recreated_on_its_disk_restarts_etcd_with_its_data() {
    let (emu, gce, m, api) = booted_master().await;
    assert_eq!(put(&api, m.internal_ip, "survives", "yes").await, 200);
    let before = vm_etcd(&emu.dir);

    gce.delete_instance(ZONE, MASTER).await.expect("delete instance");
    create_instance(
        &gce,
        MASTER,
        m.internal_ip,
        Some(m.static_ip),
        &m.kube_env,
        &m.master_certs,
    )
    .await;
    wait_healthz(&api, m.static_ip).await;
    assert_eq!(
        get(&api, m.internal_ip, "kv/survives").await,
        Ok((200, "yes".to_string()))
    );
    let after = vm_etcd(&emu.dir);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "etcd was not restarted: {before:?} {after:?}"
    );
    for cluster in EtcdCluster::ALL {
        assert_eq!(
            started_members(&emu, MASTER, cluster).await.len(),
            1,
            "the restarted {cluster} member is the same single member"
        );
    }
}

/// `etcdctl … <args>` inside `vm`, retried while etcd says "not yet" (learner catching up,
/// reconfiguration settling); its JSON.
async fn until_etcd_agrees(emu: &Emulator, vm: &str, cluster: EtcdCluster, args: &[&str]) -> serde_json::Value {
    let what = format!("etcdctl {args:?} in {vm}");
    let deadline = Instant::now() + BOOT_WITHIN;
    loop {
        match support::vm_etcd::etcdctl_json(&emu.endpoint, vm, cluster, args).await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_joins_as_a_learner_and_becomes_a_voter() {
    let (emu, gce, first, api) = booted_master().await;
    assert_eq!(put(&api, first.internal_ip, "before-join", "kept").await, 200);

    // kube-ha's add-replica steps 2-5, by hand.
    let replica = format!("{MASTER}-a1b");
    let ip = reserve_internal_ip_and_disk(&gce, &replica).await;
    let mut members: Vec<Member> = Vec::new();
    let mut learners = Vec::new();
    for cluster in EtcdCluster::ALL {
        // By instance name, as kube-up.sh registered peers and configure-helper advertises them.
        let peer = cluster.peer_url_of(&replica);
        let added = until_etcd_agrees(
            &emu,
            MASTER,
            cluster,
            &["member", "add", "learner", "--learner", "--peer-urls", &peer],
        )
        .await;
        let id = added["member"]["ID"].as_u64().expect("learner ID");
        learners.push((cluster, id));
        if cluster == EtcdCluster::Main {
            members = support::vm_etcd::member_list(&emu.endpoint, MASTER, cluster)
                .await
                .expect("member list");
        }
    }
    let certs = issue_certs(&first.cas, &replica, ip, first.static_ip);
    let (kube_env, master_certs) = replica_metadata(
        &first.secrets(),
        &replica,
        &certs,
        initial_cluster(&members, &replica).expect("INITIAL_ETCD_CLUSTER"),
    );
    let t0 = Instant::now();
    create_instance(&gce, &replica, ip, None, &kube_env, &master_certs).await;
    for (cluster, id) in &learners {
        // Until the learner is a voter, by etcd's member list: a promote that etcdctl timed out
        // on may have been applied, and the next one then says "can only promote a learner".
        eventually(
            &format!("learner {id:x} promoted on {cluster}"),
            BOOT_WITHIN,
            || async {
                let _ = support::vm_etcd::etcdctl(
                    &emu.endpoint,
                    MASTER,
                    *cluster,
                    &["member", "promote", &format!("{id:x}")],
                )
                .await;
                let members = support::vm_etcd::member_list(&emu.endpoint, MASTER, *cluster)
                    .await
                    .ok()?;
                members.iter().any(|m| m.id.0 == *id && !m.is_learner).then_some(())
            },
        )
        .await;
    }
    eprintln!("measured: replica insert to both learners promoted: {:?}", t0.elapsed());

    for cluster in EtcdCluster::ALL {
        let mut seen = started_members(&emu, &replica, cluster).await;
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("etcd-kubernetes-master".to_string(), false),
                (format!("etcd-{replica}"), false)
            ],
            "{cluster}"
        );
    }
    // The replica's API serves its own cert on its internal IP, and reads what the first wrote.
    wait_healthz(&api, ip).await;
    assert_eq!(get(&api, ip, "kv/before-join").await, Ok((200, "kept".to_string())));
    assert_eq!(put(&api, ip, "after-join", "both").await, 200);
    assert_eq!(
        get(&api, first.internal_ip, "kv/after-join").await,
        Ok((200, "both".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_do_not_boot_run_nothing() {
    let emu = Emulator::start(&[]);
    let gce = emu.gce().await;
    emu.control(
        "/_emulator/faults",
        serde_json::json!({"action": {"kind": "never_boot"}}),
    )
    .await;
    let m = create_first_master(&gce).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emu.children(), vec![]);
    assert!(tcp_refused(m.internal_ip).await);
    let reply = emu
        .control(
            &format!("/_emulator/instances/{ZONE}/{MASTER}/crash"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(reply["crashed"], true);
    gce.delete_instance(ZONE, MASTER).await.expect("delete");
    let reply = reqwest::Client::new()
        .post(format!("{}/_emulator/instances/{ZONE}/{MASTER}/crash", emu.endpoint))
        .send()
        .await
        .expect("crash call");
    assert_eq!(reply.status(), 404, "crash of a deleted instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_etcd_and_sigkill_leaves_none_either() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let (mut emu, _gce, m, _api) = booted_master().await;
        assert_eq!(vm_etcd(&emu.dir).len(), 2);
        let pids: Vec<u32> = emu.children().into_iter().map(|(pid, _)| pid).collect();
        let t0 = Instant::now();
        let status = emu.signal_and_wait(signal, Duration::from_secs(30));
        if signal == libc::SIGTERM {
            assert!(status.success(), "emulator exit on SIGTERM: {status:?}");
            // Shutdown stopped them before the emulator exited.
            assert_eq!(still_running(&pids), Vec::<u32>::new());
        }
        eventually(
            "no VM process outlives the emulator",
            Duration::from_secs(5),
            || async { still_running(&pids).is_empty().then_some(()) },
        )
        .await;
        eprintln!("measured: signal {signal} to no etcd left: {:?}", t0.elapsed());
        // The sandbox's network went with it (once the routes are gone, the address would go to
        // the machine's default route: nothing of the sandbox can answer there).
        let vpc = format!("198.18.{}.0/24", m.internal_ip.octets()[2]);
        eventually("the sandbox's routes are gone", Duration::from_secs(10), || async {
            (!support::hosts::machine_network().contains(&vpc)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_deleted_during_its_boot_delay_never_starts_etcd() {
    let emu = Emulator::start(&["--boot-delay-ms", "1500"]);
    let gce = emu.gce().await;
    let m = create_first_master(&gce).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.children(), vec![], "booted before its delay");
    gce.delete_instance(ZONE, MASTER).await.expect("delete");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(emu.children(), vec![], "booted after being deleted");
    assert!(tcp_refused(m.internal_ip).await);
    assert!(!emu.vm_dir(MASTER).exists());
}
