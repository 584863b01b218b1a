//! Safety of the VM-host sandbox (issue 10): no namespace, link, route or firewall rule outlives
//! it, even when every one of its processes is SIGKILLed at once. The machine's own network is
//! looked at with the machine's tools (`ip netns`, `ip link`, `ip route`, `nft list ruleset`)
//! before, during and after. A file of its own, so no other test of this binary runs a sandbox
//! meanwhile.

use kube_ha_testkit as support;

use std::time::Duration;

use support::hosts::{machine_network, still_running, vm_processes};
use support::sandbox::{Emulator, create_first_master, eventually, processes_mentioning, wait_healthz};

/// The lines of a [`machine_network`] snapshot that belong to block `n` (other engineers'
/// sandboxes may come and go on the same machine meanwhile), plus the parts nothing of any
/// sandbox ever changes (`ip netns`, the machine's nftables ruleset), in full.
fn ours(snapshot: &str, n: u8) -> String {
    let marks = [format!("khvpc{n}"), format!("198.18.{n}."), format!("198.19.{n}.")];
    let mut out = String::new();
    let mut section = "";
    for line in snapshot.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            section = if command.starts_with("ip netns") || command.starts_with("nft") {
                "full"
            } else {
                "filtered"
            };
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if section == "full" || marks.iter().any(|m| line.contains(m.as_str())) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_sandbox_leaves_no_namespace_link_route_or_rule() {
    let before = machine_network();
    let emu = Emulator::start(&[]);
    let n = emu.block;
    let gce = emu.gce().await;
    let m = create_first_master(&gce).await;
    wait_healthz(&support::hosts::admin_client(&m.cas), m.static_ip).await;
    let during = machine_network();
    assert!(
        ours(&during, n).contains(&format!("khvpc{n}")),
        "the sandbox's link is up while it runs:\n{during}"
    );
    // The emulator, the router's and the VM's holders, everything inside the VM: SIGKILL all.
    let mut pids: Vec<u32> = processes_mentioning(&emu.dir).into_iter().map(|(pid, _)| pid).collect();
    pids.push(emu.pid());
    pids.extend(vm_processes(&emu.dir).into_iter().map(|(pid, _)| pid));
    pids.sort_unstable();
    pids.dedup();
    assert!(
        pids.len() >= 5,
        "emulator, router holder, VM holder, its PID 1, etcd: {pids:?}"
    );
    for pid in &pids {
        // SAFETY: kill(2) on pids this sandbox owns, checked just above.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    eventually("every sandbox process is gone", Duration::from_secs(10), || async {
        still_running(&pids).is_empty().then_some(())
    })
    .await;
    // The kernel tears namespaces down asynchronously: a bounded wait, then the same as before.
    let after = eventually(
        "the machine's network is as before",
        Duration::from_secs(15),
        || async {
            let now = machine_network();
            (ours(&now, n) == ours(&before, n)).then_some(now)
        },
    )
    .await;
    assert_eq!(ours(&after, n), ours(&before, n));
    assert!(!after.contains(&format!("khvpc{n}")), "{after}");
    drop(emu);
}
