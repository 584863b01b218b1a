//! Issue "first master on the sandbox": `up` creates an HA-compatible cluster with one master for
//! real (real etcd with mutual TLS, the API behind a certificate that verifies), `--dry-run` and a
//! second `up` change nothing, an `up` killed half-way is finished by the next one, and `down`
//! removes every trace.

use kube_ha_testkit as support;

use std::time::Duration;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use kube_ha_core::names::EtcdCluster;
use kube_ha_core::pki::kube_env::{self as ke, KeyValues};
use support::cluster::{PROJECT, Sandbox, handshake};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

fn openssl_verify(dir: &Path, ca_pem: &str, leaf_pem: &str, purpose: &str) -> bool {
    let ca = write(dir, "verify-ca.crt", ca_pem);
    let leaf = write(dir, "verify-leaf.crt", leaf_pem);
    Command::new("openssl")
        .args(["verify", "-CAfile", &ca, "-purpose", purpose, &leaf])
        .output()
        .expect("run openssl")
        .status
        .success()
}

fn sans(pem: &str) -> BTreeSet<String> {
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let cert = der.parse_x509().expect("X.509");
    let mut out = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    out.insert(format!("DNS:{d}"));
                }
                x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                    out.insert(format!("IP:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3])));
                }
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_master_runs_real_etcd_behind_certificates_that_verify() {
    let sb = Sandbox::start(&[]);

    // --dry-run on an empty project prints the plan and changes nothing.
    let dry = sb
        .kube_ha(
            &["up", "--dry-run"],
            &support::cluster::env_example("01-first-master.env"),
        )
        .await;
    dry.expect_code(0);
    assert!(
        dry.stdout
            .contains("create first master VM kubernetes-master in europe-west1-b"),
        "{}",
        dry.stdout
    );
    assert!(sb.emu.mutating_calls().await.is_empty(), "dry run made mutating calls");

    sb.first_master().await.expect_code(0);

    let replicas = sb.replicas().await;
    assert_eq!(replicas.len(), 1);
    let master = &replicas[0];
    assert_eq!(master.name.as_deref(), Some("kubernetes-master"));
    let internal = Sandbox::internal_ip(master);
    let static_ip = sb.static_ip().await;
    assert_eq!(
        Sandbox::external_ip(master),
        Some(static_ip),
        "the first master carries the static IP"
    );

    // etcdctl, the real client, inside the VM with the apiserver's client cert from
    // kube-master-certs (as the boot wrote it): etcd serves clients on the VM's loopback only.
    for cluster in EtcdCluster::ALL {
        let members = support::vm_etcd::member_list(&sb.emu.endpoint, "kubernetes-master", cluster)
            .await
            .expect("etcdctl member list");
        assert_eq!(members.len(), 1, "etcd {cluster}: {members:?}");
        assert_eq!(members[0].name, "etcd-kubernetes-master", "started member");
        let scheme = if cluster == EtcdCluster::Main { "https" } else { "http" };
        assert_eq!(
            members[0].client_urls,
            [format!("{scheme}://127.0.0.1:{}", cluster.client_port())]
        );
        // Advertised by instance name, as configure-helper renders `--initial-advertise-peer-urls`.
        assert_eq!(members[0].peer_urls, [cluster.peer_url_of("kubernetes-master")]);
        // Nothing outside the VM reaches its etcd client port but SSH.
        let direct = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect((internal, cluster.client_port())),
        )
        .await;
        assert!(!matches!(direct, Ok(Ok(_))), "etcd {cluster} answers on {internal}");
    }

    // The API on the static IP, the cluster CA as the only trust root; state goes through etcd.
    let resp = sb
        .api()
        .get(format!("https://{static_ip}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(resp.status().is_success());
    sb.put("answer", "42").await.expect("put");
    assert_eq!(sb.get("answer").await.as_deref(), Some("42"));
    let mode = std::fs::metadata(sb.kubeconfig())
        .expect("kubeconfig")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Every leaf verifies against its CA for its purpose, with exactly SPEC §3's SANs.
    let secrets = sb.secrets().await;
    let (env, certs) = (&secrets.kube_env, &secrets.master_certs);
    let pem = |m: &KeyValues, k: &str| m.pem(k).expect(k);
    let dir = sb.dir.path();
    let checks = [
        (pem(env, ke::CA_CERT), pem(env, ke::MASTER_CERT), vec!["sslserver"]),
        (
            pem(env, ke::ETCD_CA_CERT),
            pem(env, ke::ETCD_PEER_CERT),
            vec!["sslserver", "sslclient"],
        ),
        (
            pem(certs, ke::ETCD_APISERVER_CA_CERT),
            pem(certs, ke::ETCD_APISERVER_SERVER_CERT),
            vec!["sslserver", "sslclient"],
        ),
        (
            pem(certs, ke::ETCD_APISERVER_CA_CERT),
            pem(certs, ke::ETCD_APISERVER_CLIENT_CERT),
            vec!["sslclient"],
        ),
    ];
    for (ca, leaf, purposes) in &checks {
        for p in purposes {
            assert!(openssl_verify(dir, ca, leaf, p), "openssl verify -purpose {p}");
        }
        // ... and against any other CA it fails.
        let wrong = if *ca == pem(env, ke::CA_CERT) {
            pem(env, ke::ETCD_CA_CERT)
        } else {
            pem(env, ke::CA_CERT)
        };
        assert!(
            !openssl_verify(dir, &wrong, leaf, purposes[0]),
            "a leaf must not verify against another CA"
        );
    }
    // The client certificate is for clients only.
    assert!(!openssl_verify(
        dir,
        &pem(certs, ke::ETCD_APISERVER_CA_CERT),
        &pem(certs, ke::ETCD_APISERVER_CLIENT_CERT),
        "sslserver"
    ));
    let want: BTreeSet<String> = [
        format!("IP:{static_ip}"),
        "IP:10.0.0.1".into(),
        "DNS:kubernetes".into(),
        "DNS:kubernetes.default".into(),
        "DNS:kubernetes.default.svc".into(),
        "DNS:kubernetes.default.svc.cluster.local".into(),
        "DNS:kubernetes-master".into(),
        format!("IP:{internal}"),
        "IP:127.0.0.1".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(sans(&pem(env, ke::MASTER_CERT)), want);
    let want_peer: BTreeSet<String> = [
        format!("IP:{internal}"),
        "DNS:kubernetes-master".into(),
        "IP:127.0.0.1".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(sans(&pem(env, ke::ETCD_PEER_CERT)), want_peer);
    // configure-helper's shape (DNS:etcd-<vm>, IP:127.0.0.1), plus the internal IP kube-ha still
    // reaches etcd on.
    let want_server: BTreeSet<String> = [
        "DNS:etcd-kubernetes-master".into(),
        "IP:127.0.0.1".into(),
        format!("IP:{internal}"),
    ]
    .into_iter()
    .collect();
    assert_eq!(sans(&pem(certs, ke::ETCD_APISERVER_SERVER_CERT)), want_server);
    assert!(sans(&pem(certs, ke::ETCD_APISERVER_CLIENT_CERT)).is_empty());

    // A real handshake: the serving cert verifies for its own IPs and not for one it lacks.
    let ca = pem(env, ke::CA_CERT);
    handshake(internal, internal, &ca)
        .await
        .expect("verifies for its internal IP");
    handshake(internal, static_ip, &ca)
        .await
        .expect("verifies for the static IP");
    let other = Ipv4Addr::new(internal.octets()[0], internal.octets()[1], internal.octets()[2], 250);
    let err = handshake(internal, other, &ca)
        .await
        .expect_err("must not verify for an IP it lacks");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A second up changes nothing (its own SSH key comes and goes: it reads etcd over SSH).
    sb.emu.clear_calls().await;
    let again = sb.first_master().await;
    again.expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert!(
        sb.emu.mutating_calls_but_run_keys().await.is_empty(),
        "second up made mutating calls"
    );

    // Teardown: no cluster resource and no etcd process remain.
    sb.kube_ha(&["down"], &support::cluster::env_example("05-teardown.env"))
        .await
        .expect_code(0);
    assert_no_cluster_resources(&sb).await;
    sb.assert_no_etcd_within(Duration::from_secs(10)).await;
}

async fn assert_no_cluster_resources(sb: &Sandbox) {
    let gce = sb.gce().await;
    assert!(sb.replicas().await.is_empty(), "instances remain");
    let disks = gce.all_disks().await.expect("disks");
    assert!(
        disks.is_empty(),
        "disks remain: {:?}",
        disks.iter().map(|d| d.name.clone()).collect::<Vec<_>>()
    );
    let addresses = gce.addresses("europe-west1").await.expect("addresses");
    assert!(
        addresses.is_empty(),
        "addresses remain: {:?}",
        addresses.iter().map(|a| a.name.clone()).collect::<Vec<_>>()
    );
    for fw in ["kubernetes-master-https", "kubernetes-master-etcd"] {
        assert!(gce.firewall(fw).await.expect("get").is_none(), "{fw} remains");
    }
    assert!(
        gce.target_pool("europe-west1", "kubernetes-master")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        gce.forwarding_rule("europe-west1", "kubernetes-master")
            .await
            .expect("get")
            .is_none()
    );
    let _ = PROJECT;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_killed_after_the_disk_and_before_the_vm_is_finished_by_the_next_up() {
    let sb = Sandbox::start(&[]);
    let killed = sb
        .up(
            "01-first-master.env",
            &[("KUBE_HA_FAILPOINT", "after:create_data_disk")],
        )
        .await;
    assert_eq!(killed.code, -1, "killed by SIGKILL:\n{}", killed.stderr);
    let gce = sb.gce().await;
    assert!(
        gce.all_disks()
            .await
            .expect("disks")
            .iter()
            .any(|d| d.name.as_deref() == Some("kubernetes-master-pd"))
    );
    assert!(sb.replicas().await.is_empty(), "the VM must not exist yet");

    let resumed = sb.first_master().await;
    resumed.expect_code(0);
    assert!(resumed.stderr.contains("took over the lock"), "{}", resumed.stderr);

    let names = sb.replica_names().await;
    assert_eq!(names, ["kubernetes-master"]);
    let mut disks: Vec<String> = gce
        .all_disks()
        .await
        .expect("disks")
        .into_iter()
        .filter_map(|d| d.name)
        .collect();
    disks.sort();
    assert_eq!(
        disks,
        ["kubernetes-master", "kubernetes-master-pd"],
        "boot and data disk, no duplicate, no orphan"
    );
    let mut addresses: Vec<String> = gce
        .addresses("europe-west1")
        .await
        .expect("addresses")
        .into_iter()
        .filter_map(|a| a.name)
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["kubernetes-master-internal", "kubernetes-master-ip"]);
    sb.put("after-resume", "yes").await.expect("API works");
    assert_eq!(sb.members(EtcdCluster::Main).await.len(), 1);
    // The lock is released.
    let md = gce.project_metadata().await.expect("metadata");
    assert!(
        md.items
            .iter()
            .all(|i| i.key.as_deref() != Some("kube-ha-lock-kubernetes-master")),
        "lock released"
    );
}
