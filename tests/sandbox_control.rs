//! `kube-ha sandbox start|stop|env` as an operator runs them (SPEC §6): the real binary with
//! `KUBE_HA_SANDBOX=<dir>`, a VM booted through the started emulator, and `/proc` as the judge
//! that `stop` leaves nothing behind.

use kube_ha_testkit as support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kube_ha_core::gce::Gce;
use support::hosts::vm_etcd;
use support::sandbox::{api_client, create_first_master, processes_mentioning, wait_healthz};

fn sandbox(dir: &Path, action: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-ha"))
        .args(["sandbox", action])
        .env("KUBE_HA_SANDBOX", dir)
        .env_remove("KUBE_HA_COMPUTE_ENDPOINT")
        .output()
        .expect("run kube-ha sandbox");
    assert!(
        out.status.success(),
        "sandbox {action}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_env_and_stop_leave_no_process_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().canonicalize().expect("canonical").join("state");

    let t0 = Instant::now();
    let first = sandbox(&dir, "start");
    eprintln!("measured: sandbox start took {:?}", t0.elapsed());
    assert!(
        text(&first.stderr).contains("sandbox started"),
        "{}",
        text(&first.stderr)
    );
    let pid: u32 = std::fs::read_to_string(dir.join("emulator.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let endpoint = std::fs::read_to_string(dir.join("endpoint")).expect("endpoint file");
    let endpoint = endpoint.trim();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let second = sandbox(&dir, "start");
    assert!(
        text(&second.stderr).contains("already running"),
        "{}",
        text(&second.stderr)
    );
    let same_pid = std::fs::read_to_string(dir.join("emulator.pid")).expect("pid file");
    assert_eq!(
        same_pid.trim(),
        pid.to_string(),
        "a second start started another emulator"
    );

    let env = sandbox(&dir, "env");
    assert_eq!(
        text(&env.stdout),
        format!("export KUBE_HA_COMPUTE_ENDPOINT={endpoint}\nexport PROJECT=sandbox\n")
    );

    // A master VM through the started sandbox, so stop has etcd processes to stop.
    let gce = Gce::connect("sandbox", Some(endpoint), Duration::from_secs(30))
        .await
        .expect("connect");
    let m = create_first_master(&gce).await;
    wait_healthz(&api_client(&m.cas.cluster.cert_pem), m.static_ip).await;
    assert_eq!(vm_etcd(&dir).len(), 2, "main and events etcd of the VM");
    let network = support::hosts::machine_network();
    assert!(network.contains("khvpc"), "the sandbox's link is up: {network}");

    let t0 = Instant::now();
    let stopped = sandbox(&dir, "stop");
    eprintln!("measured: sandbox stop (one VM) took {:?}", t0.elapsed());
    assert!(
        text(&stopped.stderr).contains("sandbox stopped"),
        "{}",
        text(&stopped.stderr)
    );
    assert_eq!(processes_mentioning(&dir), vec![], "processes left by sandbox stop");
    assert_eq!(vm_etcd(&dir), vec![], "etcd left by sandbox stop");
    assert!(!dir.join("emulator.pid").exists() && !dir.join("endpoint").exists());
    assert!(dir.join("emulator.log").exists(), "the log is kept");

    let again = sandbox(&dir, "stop");
    assert!(text(&again.stderr).contains("not running"), "{}", text(&again.stderr));

    // env starts it when needed; clean up after.
    let env = sandbox(&dir, "env");
    assert!(text(&env.stdout).starts_with("export KUBE_HA_COMPUTE_ENDPOINT=http://"));
    sandbox(&dir, "stop");
    assert_eq!(processes_mentioning(&dir), vec![]);
}

#[test]
fn a_stale_pid_file_does_not_stop_a_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().canonicalize().expect("canonical").join("state");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A pid that is certainly not an emulator for this dir: this test process.
    std::fs::write(dir.join("emulator.pid"), format!("{}\n", std::process::id())).expect("write");
    std::fs::write(dir.join("endpoint"), "http://127.0.0.1:1\n").expect("write");
    let started = sandbox(&dir, "start");
    assert!(
        text(&started.stderr).contains("sandbox started"),
        "{}",
        text(&started.stderr)
    );
    sandbox(&dir, "stop");
    assert_eq!(processes_mentioning(&dir), vec![]);
}
