//! The sandbox's VMs as hosts (SPEC §6, issue 10), through real clients only: `kube-ha sandbox
//! exec` running the machine's `etcdctl`, `curl`, `getent` inside a VM, OpenSSH's `ssh` from the
//! machine, the official Compute client's `getGuestAttributes`, the real `kubectl` with the
//! kubeconfig `kube-ha up` writes, and kube-ha's own etcd client.
//!
//! Each test runs its own emulator (its own address block and VPC), so they run in parallel.

use kube_ha_testkit as support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use google_cloud_compute_v1::model;
use google_cloud_lro::Poller as _;
use kube_ha_core::names::{ClusterNames, EtcdCluster};
use serde_json::{Value, json};
use support::cluster::Sandbox;
use support::emulator::{Clients, clients_for};
use support::hosts::{Exec, sandbox_exec};
use support::sandbox::{
    BOOT_WITHIN, Emulator, MASTER, PROJECT, Replica, ZONE, allow_ssh, create_first_master, eventually,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `sandbox exec`, retried while the VM's host is still coming up (exec refuses a VM that does
/// not run yet).
async fn exec_when_up(endpoint: &str, vm: &str, command: &[&str]) -> Exec {
    eventually(&format!("{vm} runs `{}`", command.join(" ")), BOOT_WITHIN, || async {
        let run = sandbox_exec(endpoint, Some(vm), command).await;
        (run.code == 0).then_some(run)
    })
    .await
}

/// `curl -sf -H 'Metadata-Flavor: Google' [extra…] <url>` inside the VM, as an on-VM agent asks its
/// metadata server.
async fn metadata_get(endpoint: &str, vm: &str, extra: &[&str], url: &str) -> Exec {
    let mut command = vec!["curl", "-sf", "-H", "Metadata-Flavor: Google"];
    command.extend_from_slice(extra);
    command.push(url);
    sandbox_exec(endpoint, Some(vm), &command).await
}

/// Set one item of an instance's metadata (read-modify-write with the fingerprint), through the
/// official client.
async fn set_item(c: &Clients, project: &str, zone: &str, name: &str, key: &str, value: &str) {
    let instance = c
        .instances
        .get()
        .set_project(project)
        .set_zone(zone)
        .set_instance(name)
        .send()
        .await
        .expect("get instance");
    let metadata = instance.metadata.expect("metadata");
    let mut items: Vec<model::metadata::Items> = metadata
        .items
        .into_iter()
        .filter(|i| i.key.as_deref() != Some(key))
        .collect();
    items.push(model::metadata::Items::new().set_key(key).set_value(value));
    let body = model::Metadata::new()
        .set_or_clear_fingerprint(metadata.fingerprint)
        .set_items(items);
    let op = c
        .instances
        .set_metadata()
        .set_project(project)
        .set_zone(zone)
        .set_instance(name)
        .set_body(body)
        .poller()
        .until_done()
        .await
        .expect("setMetadata");
    assert!(op.error.is_none(), "{op:?}");
}

/// A fresh ed25519 key pair in `dir`: the private key's path and the public key line.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}

/// The machine's OpenSSH client: `ssh -i key user@ip [extra…] command`, non-interactive. Without
/// `known_hosts`, any host key is accepted.
async fn ssh(
    key: &Path,
    user: &str,
    ip: Ipv4Addr,
    known_hosts: Option<&Path>,
    extra: &[&str],
    command: &str,
) -> Output {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-F").arg("/dev/null").arg("-i").arg(key).args([
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
    ]);
    match known_hosts {
        Some(file) => {
            cmd.args(["-o", "StrictHostKeyChecking=yes", "-o"])
                .arg(format!("UserKnownHostsFile={}", file.display()))
                .args(["-o", "HostKeyAlgorithms=ssh-ed25519"]);
        }
        None => {
            cmd.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]);
        }
    }
    cmd.args(extra)
        .arg(format!("{user}@{ip}"))
        .arg(command)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("ssh finished within 30 s")
        .expect("run ssh")
}

/// Poll (bounded) until `ssh` as `user` with `key` succeeds.
async fn logs_in_within(key: &Path, user: &str, ip: Ipv4Addr, within: Duration, when: &str) {
    eventually(&format!("ssh {user}@{ip} logs in {when}"), within, || async {
        ssh(key, user, ip, None, &[], "true")
            .await
            .status
            .success()
            .then_some(())
    })
    .await
}

/// `instances.getGuestAttributes(queryPath=hostkeys/)` of the master, through the official client.
async fn host_keys(c: &Clients) -> Result<model::GuestAttributes, google_cloud_gax::error::Error> {
    c.instances
        .get_guest_attributes()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance(MASTER)
        .set_query_path("hostkeys/")
        .send()
        .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ssh-keys` line of GCE's expiring form, as gcloud writes it (`expire_on` in whole seconds).
fn expiring_key(user: &str, public: &str, expire_on: OffsetDateTime) -> String {
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    let at = expire_on.format(&Rfc3339).expect("RFC 3339");
    format!(
        "{user}:{} google-ssh {}",
        key.join(" "),
        json!({"userName": user, "expireOn": at})
    )
}

/// The first master through the raw steps (firewall rules as kube-up, static IP on its access
/// config), with `sshd` reachable (a tcp:22 rule).
async fn master_with_ssh(emu: &Emulator) -> (kube_ha_core::gce::Gce, Replica, Clients) {
    let gce = emu.gce().await;
    let m = create_first_master(&gce).await;
    allow_ssh(&gce).await;
    let clients = clients_for(&emu.endpoint).await;
    (gce, m, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_serve_their_own_loopback_etcd_and_resolve_each_other_by_name() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add("europe-west1-c").await.expect_code(0);
    let replicas = sb.replicas().await;
    assert_eq!(replicas.len(), 2);
    let members = sb.members(EtcdCluster::Main).await;
    for vm in &replicas {
        let name = vm.name.clone().expect("name");
        // The machine's etcdctl inside the VM, with the VM's own etcd client certificate.
        let status = exec_when_up(
            &sb.emu.endpoint,
            &name,
            &[
                "env",
                "ETCDCTL_API=3",
                "etcdctl",
                "--endpoints",
                "https://127.0.0.1:2379",
                "--cacert",
                "/etc/srv/kubernetes/pki/etcd-apiserver-ca.crt",
                "--cert",
                "/etc/srv/kubernetes/pki/etcd-apiserver-client.crt",
                "--key",
                "/etc/srv/kubernetes/pki/etcd-apiserver-client.key",
                "endpoint",
                "status",
                "-w",
                "json",
            ],
        )
        .await;
        let doc: Value = serde_json::from_str(&status.stdout).expect("etcdctl JSON");
        let id = doc[0]["Status"]["header"]["member_id"].as_u64().expect("member id");
        let member = members.iter().find(|m| m.id.0 == id).expect("a member of the cluster");
        assert_eq!(
            member.name,
            EtcdCluster::Main.member_name(&name),
            "127.0.0.1:2379 inside {name} is {name}'s own etcd"
        );
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let (a_name, b_name) = (a.name.clone().expect("name"), b.name.clone().expect("name"));
    let b_zone = b
        .zone
        .as_deref()
        .and_then(|z| z.rsplit('/').next())
        .expect("zone")
        .to_string();
    for lookup in [
        b_name.clone(),
        format!("{b_name}.{b_zone}.c.{}.internal", support::cluster::PROJECT),
    ] {
        let resolved = sandbox_exec(&sb.emu.endpoint, Some(&a_name), &["getent", "hosts", &lookup]).await;
        assert_eq!(resolved.code, 0, "{resolved:?}");
        assert_eq!(
            resolved.stdout.split_whitespace().next(),
            Some(Sandbox::internal_ip(b).to_string().as_str()),
            "{lookup} from {a_name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_server_wants_the_flavor_header_and_serves_the_instances_kube_env() {
    let emu = Emulator::start(&[]);
    let (_gce, _m, c) = master_with_ssh(&emu).await;
    let url = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/kube-env";
    let refused = exec_when_up(
        &emu.endpoint,
        MASTER,
        &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
    )
    .await;
    assert_eq!(refused.stdout, "403", "without Metadata-Flavor");
    let served = metadata_get(&emu.endpoint, MASTER, &[], url).await;
    assert_eq!(served.code, 0, "{served:?}");
    let instance = c
        .instances
        .get()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance(MASTER)
        .send()
        .await
        .expect("get");
    let kube_env = instance
        .metadata
        .and_then(|m| m.items.into_iter().find(|i| i.key.as_deref() == Some("kube-env")))
        .and_then(|i| i.value)
        .expect("kube-env in GCE");
    assert_eq!(served.stdout, kube_env, "the instance's kube-env, as GCE has it");
    let id = metadata_get(
        &emu.endpoint,
        MASTER,
        &[],
        "http://169.254.169.254/computeMetadata/v1/instance/id",
    )
    .await;
    assert_eq!(Some(id.stdout), instance.id.map(|n| n.to_string()), "its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_change_returns_when_set_metadata_lands() {
    let emu = Emulator::start(&[]);
    let (_gce, _m, c) = master_with_ssh(&emu).await;
    let url = "http://169.254.169.254/computeMetadata/v1/instance/attributes/?recursive=true";
    exec_when_up(&emu.endpoint, MASTER, &["true"]).await;
    let first = metadata_get(&emu.endpoint, MASTER, &["-D", "-"], url).await;
    let etag = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("etag: ").or_else(|| l.strip_prefix("ETag: ")))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("no ETag in {}", first.stdout));
    let waiting_url = format!("{url}&wait_for_change=true&last_etag={etag}&timeout_sec=120");
    let endpoint = emu.endpoint.clone();
    let waiter = tokio::spawn(async move { metadata_get(&endpoint, MASTER, &[], &waiting_url).await });
    set_item(&c, PROJECT, ZONE, MASTER, "probe", "landed").await;
    let changed = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the wait returned well before its 120 s timeout")
        .expect("waiter");
    assert_eq!(changed.code, 0, "{changed:?}");
    let doc: Value = serde_json::from_str(&changed.stdout).expect("JSON");
    assert_eq!(doc["probe"], "landed", "the new value, not the old one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_logs_in_with_a_metadata_key_forwards_to_the_vms_loopback_and_is_refused_after_expire_on() {
    let emu = Emulator::start(&[]);
    let (_gce, m, c) = master_with_ssh(&emu).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = key_pair(dir.path(), "tester");
    // Whole seconds, as it is written: the comparison below must use the instant in metadata.
    let expire_on = (OffsetDateTime::now_utc() + Duration::from_secs(25))
        .replace_nanosecond(0)
        .expect("whole seconds");
    set_item(
        &c,
        PROJECT,
        ZONE,
        MASTER,
        "ssh-keys",
        &expiring_key("tester", &public, expire_on),
    )
    .await;

    let login = eventually("ssh logs in with the key from metadata", BOOT_WITHIN, || async {
        let out = ssh(&key, "tester", m.static_ip, None, &[], "hostname; id -un").await;
        out.status.success().then_some(out)
    })
    .await;
    assert_eq!(text(&login.stdout), format!("{MASTER}\ntester\n"));

    // A tunnel to the VM's own 127.0.0.1:2379, verified by etcd's certificate (SAN 127.0.0.1).
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut tunnel = tokio::process::Command::new("ssh")
        .arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ExitOnForwardFailure=yes", "-N", "-L"])
        .arg(format!("127.0.0.1:{port}:127.0.0.1:2379"))
        .arg(format!("tester@{}", m.static_ip))
        .kill_on_drop(true)
        .spawn()
        .expect("ssh -L");
    let etcd = kube_ha_core::etcd::EtcdClient::for_tool(&m.cas, OffsetDateTime::now_utc(), Duration::from_secs(3))
        .expect("client");
    let through = format!("https://127.0.0.1:{port}");
    eventually("etcd answers through the tunnel", Duration::from_secs(15), || async {
        matches!(etcd.health(&through).await, Ok(true)).then_some(())
    })
    .await;
    let _ = tunnel.kill().await;

    // Without enable-guest-attributes, the VM published no host keys.
    let published = host_keys(&c).await;
    assert_eq!(published.expect_err("nothing published").http_status_code(), Some(404));

    // sshd's own refusal (a connection that fails under load is not one).
    let refused = eventually(
        "sshd refuses the key after its expireOn",
        Duration::from_secs(60),
        || async {
            let out = ssh(&key, "tester", m.static_ip, None, &[], "true").await;
            (!out.status.success() && text(&out.stderr).contains("Permission denied")).then_some(out)
        },
    )
    .await;
    assert!(
        OffsetDateTime::now_utc() >= expire_on,
        "refused before the key expired: {}",
        text(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_key_sshd_presents_is_the_one_in_guest_attributes_until_it_changes() {
    let emu = Emulator::start(&[]);
    let gce = emu.gce().await;
    // Guest attributes must be on before the first boot (the agent publishes host keys then).
    let mut metadata = gce.project_metadata().await.expect("project metadata");
    metadata.items.push(
        model::metadata::Items::new()
            .set_key("enable-guest-attributes")
            .set_value("TRUE"),
    );
    gce.set_project_metadata(metadata)
        .await
        .expect("setCommonInstanceMetadata");
    let (_gce, m, c) = master_with_ssh(&emu).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = key_pair(dir.path(), "tester");
    set_item(&c, PROJECT, ZONE, MASTER, "ssh-keys", &format!("tester:{public}")).await;

    let published = eventually("host keys in guest attributes", BOOT_WITHIN, || async {
        let reply = host_keys(&c).await.ok()?;
        let items = reply.query_value?.items;
        items
            .into_iter()
            .find(|i| i.namespace.as_deref() == Some("hostkeys") && i.key.as_deref() == Some("ssh-ed25519"))?
            .value
    })
    .await;
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{} ssh-ed25519 {published}\n", m.static_ip)).expect("known_hosts");
    let strict = eventually("ssh with the published host key pinned", BOOT_WITHIN, || async {
        let out = ssh(&key, "tester", m.static_ip, Some(&known_hosts), &[], "hostname").await;
        out.status.success().then_some(out)
    })
    .await;
    assert_eq!(text(&strict.stdout), format!("{MASTER}\n"));

    // The host key changes (guest fault); guest attributes keep the first one, as on GCE.
    emu.control(
        "/_emulator/faults",
        json!({"action": {"kind": "host_key_changed"}, "instance": MASTER}),
    )
    .await;
    let mismatch = eventually("the changed host key is refused", Duration::from_secs(30), || async {
        let out = ssh(&key, "tester", m.static_ip, Some(&known_hosts), &[], "true").await;
        (!out.status.success() && text(&out.stderr).contains("Host key verification failed")).then_some(out)
    })
    .await;
    assert!(
        text(&mismatch.stderr).contains("Host key verification failed"),
        "{}",
        text(&mismatch.stderr)
    );
}

/// `kubectl` with `kubeconfig` (its cache in `home`).
async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "10s"])
        .args(args)
        .env("HOME", home)
        .output()
        .await
        .expect("run kubectl")
}

/// `kubeconfig` with its user's client certificate and key replaced by `credentials` (lines).
fn with_credentials(kubeconfig: &str, credentials: &str) -> String {
    let mut out = String::new();
    for line in kubeconfig.lines() {
        if line.contains("client-certificate-data:") {
            out.push_str(credentials);
        } else if !line.contains("client-key-data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_version_works_with_the_kubeconfig_up_writes_and_fails_without_a_client_certificate() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let home = tempfile::tempdir().expect("home");
    let version = kubectl(&sb.kubeconfig(), home.path(), &["version", "-o", "json"]).await;
    assert!(version.status.success(), "{}", text(&version.stderr));
    let doc: Value = serde_json::from_slice(&version.stdout).expect("JSON");
    assert_eq!(doc["serverVersion"]["gitVersion"], kube_ha_sandbox::APISERVER_VERSION.2);
    let readyz = kubectl(&sb.kubeconfig(), home.path(), &["get", "--raw", "/readyz"]).await;
    assert_eq!(text(&readyz.stdout), "ok", "{}", text(&readyz.stderr));

    // The same kubeconfig with a bearer token where the certificate was (with no credentials at
    // all kubectl would prompt for a password instead of asking the server).
    let full = std::fs::read_to_string(sb.kubeconfig()).expect("kubeconfig");
    let without = home.path().join("anonymous.kubeconfig");
    std::fs::write(&without, with_credentials(&full, "    token: no-client-certificate\n")).expect("write");
    let refused = kubectl(&without, home.path(), &["version", "-o", "json"]).await;
    assert!(
        !refused.status.success(),
        "kubectl version without a client certificate succeeded"
    );
    // kubectl's words for a 401.
    assert!(
        text(&refused.stderr).contains("You must be logged in"),
        "{}",
        text(&refused.stderr)
    );

    // A certificate from another CA does not get past the handshake.
    let stranger = kube_ha_core::pki::ClusterCas::generate("stranger", OffsetDateTime::now_utc()).expect("CAs");
    let other = kube_ha_core::pki::issue_admin_client(&stranger, OffsetDateTime::now_utc()).expect("cert");
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let forged = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&other.cert_pem),
        b64(&other.key_pem)
    );
    let forged_path = home.path().join("forged.kubeconfig");
    std::fs::write(&forged_path, with_credentials(&full, &forged)).expect("write");
    let refused = kubectl(&forged_path, home.path(), &["version", "-o", "json"]).await;
    assert!(!refused.status.success(), "a certificate from another CA was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_https_rule_cuts_the_static_ip_and_deleting_the_etcd_rule_cuts_the_peers() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.add("europe-west1-c").await.expect_code(0);
    let names = ClusterNames::from_prefix("kubernetes");
    let gce = sb.gce().await;
    let api = sb.api();
    let static_ip = sb.static_ip().await;
    let internal: Vec<Ipv4Addr> = sb.replicas().await.iter().map(Sandbox::internal_ip).collect();
    assert!(matches!(
        support::sandbox::get(&api, static_ip, "healthz").await,
        Ok((200, _))
    ));

    gce.delete_firewall(&names.firewall_https())
        .await
        .expect("delete the https rule");
    eventually("the static IP is cut off", Duration::from_secs(30), || async {
        support::sandbox::get(&api, static_ip, "healthz")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // The replicas still serve (their etcd, asked inside each VM): what is cut is the rule's
    // traffic, not the VMs. Nothing of the machine reaches their internal IPs any more.
    let vms: Vec<String> = sb.replicas().await.iter().filter_map(|r| r.name.clone()).collect();
    let healthy = |vm: String| {
        let endpoint = sb.emu.endpoint.clone();
        async move {
            support::vm_etcd::etcdctl(&endpoint, &vm, EtcdCluster::Main, &["endpoint", "health"])
                .await
                .code
                == 0
        }
    };
    for vm in &vms {
        assert!(healthy(vm.clone()).await, "{vm} serves");
    }
    for ip in &internal {
        assert!(
            support::sandbox::get(&api, *ip, "healthz").await.is_err(),
            "the machine reaches {ip} without a rule"
        );
    }

    gce.delete_firewall(&names.firewall_etcd())
        .await
        .expect("delete the etcd rule");
    for vm in &vms {
        eventually(
            &format!("etcd in {vm} loses its peer"),
            Duration::from_secs(30),
            || async { (!healthy(vm.clone()).await).then_some(()) },
        )
        .await;
    }

    // Both rules back, as kube-up made them: peers and the static IP come back.
    support::sandbox::create_master_firewalls(gce).await;
    for vm in &vms {
        eventually(&format!("etcd in {vm} has its peer again"), BOOT_WITHIN, || async {
            healthy(vm.clone()).await.then_some(())
        })
        .await;
    }
    support::sandbox::wait_healthz(&api, static_ip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_exec_enters_the_network_or_a_vm_passes_the_exit_status_and_nothing_there_leaves_the_machine() {
    let emu = Emulator::start(&[]);
    let (_gce, m, _c) = master_with_ssh(&emu).await;
    let hostname = exec_when_up(&emu.endpoint, MASTER, &["hostname"]).await;
    assert_eq!(hostname.stdout, format!("{MASTER}\n"));
    // The VM's own process table: its PID 1 holds it.
    let init = sandbox_exec(&emu.endpoint, Some(MASTER), &["cat", "/proc/1/cmdline"]).await;
    assert!(init.stdout.starts_with("sleep"), "{init:?}");

    let gateway = format!("198.18.{}.1", m.internal_ip.octets()[2]);
    let network = sandbox_exec(&emu.endpoint, None, &["ip", "-o", "-4", "addr", "show"]).await;
    assert!(
        network.stdout.contains(&gateway),
        "the router holds the VPC gateway: {network:?}"
    );
    // From the sandbox network, the VM's API on its internal IP passes MASTER_NAME-https and
    // refuses a client without a certificate.
    let anonymous = sandbox_exec(
        &emu.endpoint,
        None,
        &[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{}/version", m.internal_ip),
        ],
    )
    .await;
    assert_eq!(anonymous.stdout, "401", "{anonymous:?}");

    // Nothing leaves the sandbox: an address it does not own is unreachable at once from a VM
    // (curl: "couldn't connect", not a timeout, and never a connection the machine's own
    // network would have made), and the router has no route for it.
    let outside = sandbox_exec(
        &emu.endpoint,
        Some(MASTER),
        &["curl", "-sS", "--connect-timeout", "10", "http://203.0.113.7/"],
    )
    .await;
    assert_eq!(outside.code, 7, "{outside:?}");
    let route = sandbox_exec(&emu.endpoint, None, &["ip", "route", "get", "203.0.113.7"]).await;
    assert_ne!(route.code, 0, "{route:?}");
    assert!(route.stderr.contains("unreachable"), "{route:?}");

    let status = sandbox_exec(&emu.endpoint, Some(MASTER), &["sh", "-c", "exit 7"]).await;
    assert_eq!(status.code, 7);
    let status = sandbox_exec(&emu.endpoint, None, &["sh", "-c", "exit 3"]).await;
    assert_eq!(status.code, 3);
    let unknown = sandbox_exec(&emu.endpoint, Some("no-such-vm"), &["true"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    let lines: Vec<&str> = unknown.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{unknown:?}");
    assert!(
        lines[0].starts_with("error: no running VM named no-such-vm"),
        "{unknown:?}"
    );
}

#[test]
fn as_another_user_the_sandbox_refuses_with_one_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["sandbox", "start"],
        vec!["sandbox", "exec", "--", "true"],
        vec![
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-dir",
            "/tmp/kube-ha-never-created",
        ],
    ] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(support::kube_ha_bin())
            .args(&args)
            .env("KUBE_HA_SANDBOX", dir.path())
            .env("HOME", "/tmp")
            .env_remove("KUBE_HA_COMPUTE_ENDPOINT")
            .output()
            .expect("setpriv");
        let stderr = text(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(errors[0].contains("need root"), "{args:?}: {stderr}");
    }
    assert!(!Path::new("/tmp/kube-ha-never-created").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_faults_make_keys_arrive_late_or_not_at_all_until_cleared() {
    let emu = Emulator::start(&[]);
    let (_gce, m, c) = master_with_ssh(&emu).await;
    exec_when_up(&emu.endpoint, MASTER, &["true"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = |action: Value| emu.control("/_emulator/faults", json!({"action": action, "instance": MASTER}));

    // Never applied: the metadata server has the key, the agent ignores it, sshd refuses.
    fault(json!({"kind": "ssh_keys_never"})).await;
    let (key, public) = key_pair(dir.path(), "never");
    set_item(&c, PROJECT, ZONE, MASTER, "ssh-keys", &format!("never:{public}")).await;
    let served = metadata_get(
        &emu.endpoint,
        MASTER,
        &[],
        "http://169.254.169.254/computeMetadata/v1/instance/attributes/ssh-keys",
    )
    .await;
    assert!(served.stdout.contains(&public), "{served:?}");
    // Two of the agent's ticks: time for it to misbehave, if it were going to.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = ssh(&key, "never", m.static_ip, None, &[], "true").await;
    assert!(!refused.status.success(), "a key the agent never applied let ssh in");
    fault(json!({"kind": "guest_clear"})).await;
    logs_in_within(
        &key,
        "never",
        m.static_ip,
        BOOT_WITHIN,
        "once the agent applies changes again",
    )
    .await;

    // Late: not there right after setMetadata, there a while later.
    fault(json!({"kind": "ssh_keys_late", "ms": 8000})).await;
    let (key, public) = key_pair(dir.path(), "late");
    set_item(&c, PROJECT, ZONE, MASTER, "ssh-keys", &format!("late:{public}")).await;
    let early = ssh(&key, "late", m.static_ip, None, &[], "true").await;
    assert!(!early.status.success(), "a key applied 8 s late worked at once");
    logs_in_within(
        &key,
        "late",
        m.static_ip,
        Duration::from_secs(40),
        "once the late key arrives",
    )
    .await;
}
