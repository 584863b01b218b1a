//! The sandbox's VMs as hosts, seen from outside: their namespace holders (`unshare` processes
//! whose command line names the VM's directory), the processes inside their PID namespaces,
//! `kube-ha sandbox exec` (the real binary) to run a command inside one, what the machine's own
//! network looks like (for the leak check), and an API client with the admin certificate.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_ha_core::pki::{ClusterCas, issue_admin_client};
use time::OffsetDateTime;

/// A process: pid and command line (arguments joined by spaces).
pub type Process = (u32, String);

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // A zombie's cmdline reads empty: it holds nothing.
    (!raw.is_empty()).then(|| String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn ns_link(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The VM holders of the sandbox under `dir` (see `kube_ha_sandbox`'s `host.rs`).
pub fn vm_holders(dir: &Path) -> Vec<Process> {
    let needle = dir.to_string_lossy().into_owned();
    all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, cmdline(pid)?)))
        .filter(|(_, cmd)| cmd.starts_with("unshare ") && cmd.contains(" vm-host ") && cmd.contains(&needle))
        .collect()
}

/// Every live process of the sandbox's VMs: their holders and everything in their PID
/// namespaces.
pub fn vm_processes(dir: &Path) -> Vec<Process> {
    let holders = vm_holders(dir);
    let namespaces: BTreeSet<String> = holders
        .iter()
        .filter_map(|(pid, _)| ns_link(*pid, "pid_for_children"))
        .collect();
    let mut found = holders;
    for pid in all_pids() {
        if let (Some(ns), Some(cmd)) = (ns_link(pid, "pid"), cmdline(pid))
            && namespaces.contains(&ns)
        {
            found.push((pid, cmd));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The etcd processes inside the sandbox's VMs.
pub fn vm_etcd(dir: &Path) -> Vec<Process> {
    vm_processes(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.split(' ').next().is_some_and(|argv0| argv0.ends_with("etcd")))
        .collect()
}

/// Which of `pids` still run (zombies do not count).
pub fn still_running(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|pid| cmdline(*pid).is_some()).collect()
}

/// What one `kube-ha sandbox exec` did.
#[derive(Debug)]
pub struct Exec {
    /// Its exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// `KUBE_HA_COMPUTE_ENDPOINT=<endpoint> kube-ha sandbox exec [--vm VM] -- COMMAND…`.
pub async fn sandbox_exec(endpoint: &str, vm: Option<&str>, command: &[&str]) -> Exec {
    let mut cmd = tokio::process::Command::new(crate::kube_ha_bin());
    cmd.args(["sandbox", "exec"]);
    if let Some(vm) = vm {
        cmd.args(["--vm", vm]);
    }
    cmd.arg("--")
        .args(command)
        .env("KUBE_HA_COMPUTE_ENDPOINT", endpoint)
        .env_remove("KUBE_HA_SANDBOX")
        .stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("sandbox exec finished within 60 s")
        .expect("run kube-ha sandbox exec");
    Exec {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The machine's own network, as `ip netns`, `ip link`, `ip route`, `ip -6 route` and `nft list
/// ruleset` print it (interface counters and the like left out, so two snapshots compare).
pub fn machine_network() -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0]).args(&args[1..]).output();
        match out {
            Ok(o) => format!("$ {}\n{}", args.join(" "), String::from_utf8_lossy(&o.stdout)),
            Err(e) => format!("$ {}: {e}\n", args.join(" ")),
        }
    };
    [
        run(&["ip", "netns", "list"]),
        run(&["ip", "-o", "link", "show"]),
        run(&["ip", "route", "show", "table", "all"]),
        run(&["ip", "-6", "route", "show", "table", "all"]),
        run(&["nft", "list", "ruleset"]),
    ]
    .join("")
}

/// An HTTPS client that trusts only the cluster CA and presents an admin client certificate
/// from it (what the kubeconfig `kube-ha up` writes holds).
pub fn admin_client(cas: &ClusterCas) -> reqwest::Client {
    let admin = issue_admin_client(cas, OffsetDateTime::now_utc()).expect("admin certificate");
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", admin.cert_pem, admin.key_pem).as_bytes()).expect("identity");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cas.cluster.cert_pem.as_bytes()).expect("CA")])
        .identity(identity)
        .timeout(Duration::from_secs(5))
        // Every request a new connection: a test asks what answers at an address *now*. A pooled
        // connection keeps going where it went (conntrack keeps an old 1:1 NAT's translation),
        // so a probe on it passes before a new path, such as a load balancer, exists.
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}
