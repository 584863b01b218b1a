//! The sandbox boot refuses, visibly, what configure-helper would abort on (issue 12 item 6): VMs
//! with metadata kube-up's scripts would die on stop in the step the scripts would die in, say
//! why on their serial port 3 (the boot log a kube-up master forwards there), read back through
//! the official Compute client, and `kube-ha status` names the replica, the step and the reason.
//! Metadata a boot accepts, and its etcd, are in `sandbox_vm.rs` and `kube_env_contract.rs`.

use kube_ha_testkit as support;

use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine as _;
use google_cloud_compute_v1::model;
use kube_ha_core::config::MasterSettings;
use kube_ha_core::gce::bodies;
use kube_ha_core::names;
use kube_ha_core::pki::kube_env::{self as ke, KeyValues};
use support::cluster::Sandbox;
use support::sandbox::eventually;

const REGION: &str = "europe-west1";
const ZONE: &str = "europe-west1-b";

/// Create replica VM `name` (its internal address and data disk first, as kube-ha does) with
/// these maps.
async fn create_vm(sb: &Sandbox, name: &str, kube_env: &KeyValues, master_certs: &KeyValues) {
    let gce = sb.gce().await;
    let mut a = model::Address::default();
    a.name = Some(format!("{name}-internal"));
    a.address_type = Some(model::address::AddressType::Internal);
    gce.insert_address(REGION, a).await.expect("reserve");
    let ip: Ipv4Addr = gce
        .address(REGION, &format!("{name}-internal"))
        .await
        .expect("get")
        .and_then(|a| a.address)
        .and_then(|ip| ip.parse().ok())
        .expect("an internal IP");
    let mut d = model::Disk::default();
    d.name = Some(format!("{name}-pd"));
    d.size_gb = Some(10);
    gce.insert_disk(ZONE, d).await.expect("disk");
    let settings = MasterSettings::kube_up_defaults(3, "cos-cloud");
    let inst = bodies::replica_instance(&bodies::ReplicaInstanceSpec {
        project: gce.project(),
        zone: ZONE,
        name,
        settings: &settings,
        network: "default",
        tag: "kubernetes-master",
        internal_ip: ip,
        nat_ip: None,
        metadata: vec![
            (names::METADATA_KUBE_ENV, kube_env.to_yaml()),
            (names::METADATA_MASTER_CERTS, master_certs.to_yaml()),
        ],
    });
    gce.insert_instance(ZONE, inst).await.expect("create instance");
}

/// (VM, what is wrong, how to break the first master's maps, step, words of the reason)
type Case = (
    &'static str,
    &'static str,
    fn(&mut KeyValues, &mut KeyValues),
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_configure_helper_would_abort_on_stops_the_boot_in_its_step_and_status_says_why() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let first = sb.secrets().await;
    let cases: [Case; 4] = [
        (
            "kubernetes-master-b01",
            "a plain base64 etcd peer certificate (kube-ha's form before the contract)",
            |e, _| {
                let pem = e.pem(ke::ETCD_PEER_CERT).expect("pem");
                e.set(
                    ke::ETCD_PEER_CERT,
                    base64::engine::general_purpose::STANDARD.encode(pem),
                );
            },
            "CreateMasterEtcdAuth",
            "gzip: stdin: not in gzip format",
        ),
        (
            "kubernetes-master-b02",
            "a key in both maps",
            |e, c| c.set(ke::DNS_DOMAIN, e.get(ke::DNS_DOMAIN).unwrap_or_default().to_string()),
            "SourceKubeMasterCerts",
            "DNS_DOMAIN: readonly variable",
        ),
        (
            "kubernetes-master-b03",
            "no KUBEAPISERVER_CERT",
            |_, c| {
                c.remove(ke::KUBEAPISERVER_CERT);
            },
            "CreateMasterPKI",
            "KUBEAPISERVER_CERT: unbound variable",
        ),
        (
            "kubernetes-master-b04",
            "five of the six etcd-apiserver keys",
            |e, c| {
                c.set(ke::ETCD_APISERVER_CA_KEY, "");
                // A cluster of its own, so its etcd can start and be seen to keep running.
                e.set(ke::INITIAL_ETCD_CLUSTER, "kubernetes-master-b04");
            },
            "StartKubeApiserver",
            "ERROR: Some of ETCD_APISERVER_CA_KEY",
        ),
    ];
    for (vm, _, change, _, _) in &cases {
        let (mut env, mut certs) = (first.kube_env.clone(), first.master_certs.clone());
        change(&mut env, &mut certs);
        create_vm(&sb, vm, &env, &certs).await;
    }

    let gce = sb.gce().await;
    for (vm, what, _, step, reason) in &cases {
        let log = eventually(
            &format!("{vm} logs its failed boot"),
            Duration::from_secs(30),
            || async {
                let log = gce
                    .serial_port_output(ZONE, vm, i32::from(names::BOOT_LOG_SERIAL_PORT))
                    .await
                    .expect("getSerialPortOutput")
                    .unwrap_or_default();
                log.contains("Failed to start kube-master-configuration.service")
                    .then_some(log)
            },
        )
        .await;
        // The scripts' own words, then the step's ERROR record, then systemd's.
        let error_record = format!("\"step_name\":\"{step}\",\"status\":\"ERROR\"");
        let at_reason = log
            .find(reason)
            .unwrap_or_else(|| panic!("{what}: {reason:?} in\n{log}"));
        let at_record = log
            .find(&error_record)
            .unwrap_or_else(|| panic!("{what}: {error_record} in\n{log}"));
        assert!(
            at_reason < at_record,
            "{what}: the reason comes before the record\n{log}"
        );
        assert!(
            !log.contains("Finished kube-master-configuration.service"),
            "{what}\n{log}"
        );
    }
    // Only the apiserver step's failure leaves etcd running (the steps before it started it), as
    // on a VM: its members are in the sandbox's process list, those of the others are not.
    let etcd = support::hosts::vm_etcd(&sb.dir.path().join("vms"));
    let of_b04 = etcd
        .iter()
        .filter(|(_, cmd)| cmd.contains("--name etcd-kubernetes-master-b04 "))
        .count();
    assert_eq!((etcd.len(), of_b04), (4, 2), "{etcd:?}");

    let status = sb
        .kube_ha(&["status", "--output", "json"], &[] as &[(&str, &str)])
        .await;
    status.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    for (vm, what, _, step, reason) in &cases {
        let row = report["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .find(|r| r["name"] == *vm)
            .unwrap_or_else(|| panic!("{vm} in {report}"));
        assert_eq!(row["boot"]["step"], *step, "{what}: {row}");
        assert!(
            row["boot"]["reason"].as_str().is_some_and(|r| r.contains(reason)),
            "{what}: {row}"
        );
        let problem = format!("replica {vm}: its boot stopped in configure-helper.sh step {step}");
        assert!(
            report["verdict"]["problems"]
                .as_array()
                .expect("problems")
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.starts_with(&problem))),
            "{what}: {problem} in {}",
            report["verdict"]
        );
    }
    // The healthy first master has no boot note.
    assert!(report["replicas"][0]["boot"].is_null(), "{}", report["replicas"][0]);
    let text = sb.kube_ha(&["status"], &[] as &[(&str, &str)]).await;
    assert!(
        text.stdout.contains(
            "its boot stopped in configure-helper.sh step CreateMasterEtcdAuth: gzip: stdin: not in gzip format"
        ),
        "{}",
        text.stdout
    );
}
