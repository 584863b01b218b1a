//! Issue 11, end to end: kube-ha reaches etcd only over SSH to the masters (a VM's etcd serves
//! clients on its own loopback only). What a run writes is observed from the outside: the
//! emulator's call log (`metadataKeysChanged`), the instances' `ssh-keys` bytes through the
//! official client, the known-hosts file, etcd's member lists from `etcdctl` inside the VMs, and
//! exit codes and the `error:` line.

use kube_ha_testkit as support;

use std::time::Duration;

use google_cloud_compute_v1::model;
use kube_ha_core::gce::Gce;
use serde_json::{Value, json};
use support::cluster::{Run, Sandbox};
use support::sandbox::eventually;

const MASTER: &str = "kubernetes-master";
const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const D: &str = "europe-west1-d";

/// Other users' keys, as people write them: a comment, an expiring gcloud entry, no trailing
/// newline. Every run must leave these bytes exactly as they were.
const OTHERS: &str = "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEVyEmiuUgqWGp3wPUg+0h3p7Lrd3RVrqBlfqsrbPSqU alice@laptop\n\
bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjEA0rGNpo9CvpJmhi4cLhUJDO6zyrR9GPbLqAf6LmQ google-ssh {\"userName\":\"bob@example.com\",\"expireOn\":\"2999-01-01T00:00:00+0000\"}";

/// The value of `key` in an instance's metadata, if any.
fn item(i: &model::Instance, key: &str) -> Option<String> {
    i.metadata
        .as_ref()?
        .items
        .iter()
        .find(|it| it.key.as_deref() == Some(key))
        .and_then(|it| it.value.clone())
}

/// `name`'s `ssh-keys` value as GCE stores it.
async fn ssh_keys(gce: &Gce, zone: &str, name: &str) -> Option<String> {
    let i = gce.instance(zone, name).await.expect("get").expect("instance");
    item(&i, "ssh-keys")
}

/// Set one item of an instance's metadata (read-modify-write with the fingerprint).
async fn set_item(gce: &Gce, zone: &str, name: &str, key: &str, value: &str) {
    let i = gce.instance(zone, name).await.expect("get").expect("instance");
    let md = i.metadata.unwrap_or_default();
    let mut items: Vec<model::metadata::Items> = md
        .items
        .into_iter()
        .filter(|it| it.key.as_deref() != Some(key))
        .collect();
    items.push(model::metadata::Items::new().set_key(key).set_value(value));
    let body = model::Metadata::new()
        .set_or_clear_fingerprint(md.fingerprint)
        .set_items(items);
    gce.set_instance_metadata(zone, name, body).await.expect("setMetadata");
}

/// A guest fault on one VM (see the emulator's module doc).
async fn guest_fault(sb: &Sandbox, instance: &str, action: Value) {
    sb.emu.fault(json!({"action": action, "instance": instance})).await;
}

/// The ed25519 host key `ip`'s sshd presents, as `ssh-keyscan` (OpenSSH's) prints it.
async fn keyscan(ip: std::net::Ipv4Addr) -> Option<String> {
    let out = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519"])
        .arg(ip.to_string())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| !l.starts_with('#'))
        .map(|l| l.split_once(' ').map(|x| x.1).unwrap_or(l).to_string())
}

/// Change `instance`'s host keys (guest fault) and wait, bounded, until its sshd presents the
/// new one.
async fn change_host_key(sb: &Sandbox, instance: &str) {
    let vm = sb
        .replicas()
        .await
        .into_iter()
        .find(|r| r.name.as_deref() == Some(instance))
        .expect("instance");
    let ip = Sandbox::external_ip(&vm).expect("external IP");
    let before = eventually("sshd presents a host key", Duration::from_secs(30), || keyscan(ip)).await;
    guest_fault(sb, instance, json!({"kind": "host_key_changed"})).await;
    eventually("sshd presents the new host key", Duration::from_secs(30), || async {
        keyscan(ip).await.filter(|k| *k != before)
    })
    .await;
}

/// The zone of an instance.
fn zone_of(i: &model::Instance) -> String {
    let z = i.zone.as_deref().expect("zone");
    z.rsplit('/').next().unwrap_or(z).to_string()
}

/// Every replica's `ssh-keys`, by name.
async fn all_ssh_keys(sb: &Sandbox) -> Vec<(String, Option<String>)> {
    sb.replicas()
        .await
        .iter()
        .map(|i| (i.name.clone().expect("name"), item(i, "ssh-keys")))
        .collect()
}

/// The only `error:` line of a refused run.
fn only_error(run: &Run) -> &str {
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "exactly one error line:\n{}", run.stderr);
    errors[0]
}

/// Every metadata write of the logged calls, with the keys it changed.
async fn metadata_writes(sb: &Sandbox) -> Vec<Value> {
    sb.emu
        .mutating_calls()
        .await
        .into_iter()
        .filter(|c| c.get("metadataKeysChanged").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_ssh_keys_are_kept_byte_for_byte_by_every_run_and_no_run_key_stays() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let gce = sb.gce().await;
    set_item(gce, B, MASTER, "ssh-keys", OTHERS).await;

    sb.add(C).await.expect_code(0);
    assert_eq!(ssh_keys(gce, B, MASTER).await.as_deref(), Some(OTHERS), "after an add");
    sb.emu.clear_calls().await;
    let status = sb.kube_ha(&["status"], &[("KUBE_GCE_ZONE", B)]).await;
    status.expect_code(0);
    assert_eq!(ssh_keys(gce, B, MASTER).await.as_deref(), Some(OTHERS), "after status");
    // Status's key went in and out again: ssh-keys of instances changed, nothing else did.
    let writes = metadata_writes(&sb).await;
    assert!(!writes.is_empty(), "the key goes into metadata");
    for w in &writes {
        assert!(
            w["path"].as_str().is_some_and(|p| p.ends_with("/setMetadata")),
            "instance metadata only: {w}"
        );
    }
    let removed = sb.remove(C, None).await;
    removed.expect_code(0);
    assert_eq!(
        ssh_keys(gce, B, MASTER).await.as_deref(),
        Some(OTHERS),
        "after a removal"
    );
    for (name, keys) in all_ssh_keys(&sb).await {
        assert!(
            !keys.unwrap_or_default().lines().any(|l| l.starts_with("kube-ha:")),
            "{name} keeps no kube-ha key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_host_key_that_does_not_match_is_refused_before_any_key_is_written() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    // The VM's sshd gets new host keys; its guest attributes keep the ones it published.
    change_host_key(&sb, MASTER).await;
    let before = all_ssh_keys(&sb).await;
    let members = sb.member_ids().await;
    sb.emu.clear_calls().await;

    let run = sb.add(C).await;
    run.expect_code(2);
    let line = only_error(&run);
    assert!(
        line.contains(MASTER) && line.contains("published in its guest attributes"),
        "{line}"
    );
    let calls = sb.emu.mutating_calls().await;
    assert!(
        calls.is_empty(),
        "not even the run's own key: {calls:?}\n{}",
        run.stderr
    );
    assert_eq!(all_ssh_keys(&sb).await, before);
    assert_eq!(sb.member_ids().await, members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_host_key_that_changed_is_refused_naming_the_file_and_the_instance() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let gce = sb.gce().await;
    // As on a kube-up master (COS): nothing published, so the key is pinned on first use.
    set_item(gce, B, MASTER, "enable-guest-attributes", "FALSE").await;
    let known_hosts = sb.dir.path().join("pins");
    let known = known_hosts.to_str().expect("utf-8").to_string();
    let env = [("KUBE_GCE_ZONE", B), ("KUBE_HA_KNOWN_HOSTS", known.as_str())];
    sb.kube_ha(&["status"], &env).await.expect_code(0);
    let id = gce
        .instance(B, MASTER)
        .await
        .expect("get")
        .expect("instance")
        .id
        .expect("id");
    let pins = std::fs::read_to_string(&known_hosts).expect("known-hosts file written");
    assert!(
        pins.lines()
            .any(|l| l.starts_with(&format!("compute.{id} ssh-ed25519 "))),
        "{pins}"
    );

    change_host_key(&sb, MASTER).await;
    let before = all_ssh_keys(&sb).await;
    sb.emu.clear_calls().await;
    let run = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", C),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_KNOWN_HOSTS", known.as_str()),
            ],
        )
        .await;
    run.expect_code(2);
    let line = only_error(&run);
    assert!(
        line.contains(MASTER) && line.contains(&known) && line.contains(&format!("compute.{id}")),
        "{line}"
    );
    let calls = sb.emu.mutating_calls().await;
    assert!(calls.is_empty(), "{calls:?}\n{}", run.stderr);
    assert_eq!(all_ssh_keys(&sb).await, before);
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("pins"),
        pins,
        "the pin stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_its_key_is_in_metadata_leaves_a_key_that_expires_and_the_next_run_removes_it() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let gce = sb.gce().await;
    set_item(gce, B, MASTER, "ssh-keys", OTHERS).await;
    // The guest agent sits on the key, so the run waits for its login with the key in metadata.
    guest_fault(&sb, MASTER, json!({"kind": "ssh_keys_never"})).await;
    let run = sb.spawn(
        &["up"],
        &[
            ("KUBE_GCE_ZONE", C),
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ("KUBE_HA_TIMEOUT", "15s"),
        ],
    );
    let entry = eventually("the run's key is in metadata", Duration::from_secs(60), || async {
        ssh_keys(gce, B, MASTER)
            .await
            .and_then(|k| k.lines().find(|l| l.starts_with("kube-ha:")).map(str::to_string))
    })
    .await;
    run.signal(libc::SIGKILL);
    let killed = run.finish(Duration::from_secs(30)).await;
    assert_ne!(killed.code, 0);
    // The entry is GCE's expiring form, expiring at the killed run's deadline.
    let json_part = entry.split_once(" google-ssh ").expect("google-ssh form").1;
    let meta: Value = serde_json::from_str(json_part).expect("google-ssh JSON");
    assert_eq!(meta["userName"], "kube-ha");
    let expire_on = time::OffsetDateTime::parse(
        meta["expireOn"].as_str().expect("expireOn"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let now = time::OffsetDateTime::now_utc();
    assert!(
        expire_on > now && expire_on < now + Duration::from_secs(30),
        "{expire_on}"
    );
    let left = ssh_keys(gce, B, MASTER).await.expect("ssh-keys");
    assert_eq!(
        left,
        format!("{OTHERS}\n{entry}"),
        "the killed run's entry stays, the rest as it was"
    );

    // Once it has expired, the next run (status reads etcd over SSH too) removes it.
    guest_fault(&sb, MASTER, json!({"kind": "guest_clear"})).await;
    eventually("the killed run's key has expired", Duration::from_secs(40), || async {
        (time::OffsetDateTime::now_utc() > expire_on).then_some(())
    })
    .await;
    sb.kube_ha(&["status"], &[("KUBE_GCE_ZONE", B)]).await.expect_code(0);
    assert_eq!(ssh_keys(gce, B, MASTER).await.as_deref(), Some(OTHERS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_agent_that_applies_keys_late_is_waited_for_and_one_that_never_does_fails_bounded_with_etcd_unchanged()
{
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    guest_fault(&sb, MASTER, json!({"kind": "ssh_keys_late", "ms": 4000})).await;
    let late = sb.add(C).await;
    late.expect_code(0);
    assert!(late.stderr.contains("waiting for the guest agent"), "{}", late.stderr);
    sb.assert_complete(2, &[]).await;
    guest_fault(&sb, MASTER, json!({"kind": "guest_clear"})).await;

    let replicas = sb.replicas().await;
    let other = replicas
        .iter()
        .find(|r| r.name.as_deref() != Some(MASTER))
        .expect("second replica");
    let other_name = other.name.clone().expect("name");
    guest_fault(&sb, &other_name, json!({"kind": "ssh_keys_never"})).await;
    let members = sb.member_ids().await;
    let never = sb
        .kube_ha(
            &["up"],
            &[
                ("KUBE_GCE_ZONE", D),
                ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
                ("KUBE_HA_SSH_KEY_TIMEOUT", "5s"),
            ],
        )
        .await;
    assert_ne!(never.code, 0, "{}", never.stderr);
    let line = only_error(&never);
    assert!(line.contains(&other_name) && line.contains("guest agent"), "{line}");
    assert_eq!(sb.member_ids().await, members, "nothing changed in etcd");
    assert_eq!(sb.replicas().await.len(), 2);
    for (name, keys) in all_ssh_keys(&sb).await {
        assert!(
            !keys.unwrap_or_default().lines().any(|l| l.starts_with("kube-ha:")),
            "{name} keeps no kube-ha key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_rule_admitting_tcp_22_adds_and_removals_are_refused_with_the_command_that_makes_one() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add(C).await.expect_code(0);
    let gce = sb.gce().await;
    let rule = gce
        .firewall("kubernetes-master-ssh")
        .await
        .expect("get")
        .expect("the first up made the ssh rule");
    assert_eq!(rule.source_ranges, ["0.0.0.0/0"]);
    gce.delete_firewall("kubernetes-master-ssh")
        .await
        .expect("delete the rule");
    let before = all_ssh_keys(&sb).await;
    let members = sb.member_ids().await;

    let fix = "gcloud compute firewall-rules create kubernetes-master-ssh --network=default \
               --direction=INGRESS --allow=tcp:22 --target-tags=kubernetes-master --source-ranges=0.0.0.0/0";
    for (what, zone, args) in [
        ("add", D, vec![("KUBE_REPLICATE_EXISTING_MASTER", "true")]),
        ("remove", C, vec![("KUBE_DELETE_NODES", "false")]),
    ] {
        sb.emu.clear_calls().await;
        let mut env = vec![("KUBE_GCE_ZONE", zone)];
        env.extend(args);
        let command = if what == "add" { "up" } else { "down" };
        let run = sb.kube_ha(&[command], &env).await;
        run.expect_code(2);
        let line = only_error(&run);
        assert!(line.contains("tcp:22") && line.ends_with(fix), "{what}: {line}");
        assert!(sb.emu.mutating_calls().await.is_empty(), "{what}: zero mutations");
        assert_eq!(all_ssh_keys(&sb).await, before, "{what}");
    }
    assert_eq!(sb.member_ids().await, members);
    assert_eq!(zone_of(&sb.replicas().await[0]), B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_an_external_ip_is_reached_through_its_internal_ip_only_when_asked() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add(C).await.expect_code(0);
    let second = sb
        .replicas()
        .await
        .into_iter()
        .find(|r| r.name.as_deref() != Some(MASTER))
        .expect("second replica");
    let name = second.name.clone().expect("name");
    sb.gce()
        .await
        .delete_access_config(&zone_of(&second), &name, "nic0", "External NAT")
        .await
        .expect("delete its external IP");

    // From outside the VPC (the default) it cannot be reached: status says so and how to fix it.
    let outside = sb.kube_ha(&["status"], &[("KUBE_GCE_ZONE", B)]).await;
    outside.expect_code(1);
    assert!(
        outside.stdout.contains(&name) && outside.stdout.contains("KUBE_HA_SSH_VIA=internal"),
        "{}",
        outside.stdout
    );
    // From inside (the machine is a host on the VPC), through the internal IPs: healthy.
    let inside = sb
        .kube_ha(&["status"], &[("KUBE_GCE_ZONE", B), ("KUBE_HA_SSH_VIA", "internal")])
        .await;
    inside.expect_code(0);
}
