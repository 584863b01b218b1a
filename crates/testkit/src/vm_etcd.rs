//! etcd's own view, asked where it listens: the machine's `etcdctl` inside a master VM
//! (`kube-ha sandbox exec --vm NAME -- etcdctl …`) against the VM's own `127.0.0.1` (main with
//! the VM's etcd-apiserver client certificate, events plain HTTP, as configure-helper runs them).
//! A VM's etcd serves clients on nothing else, so tests see what kube-ha sees over SSH and
//! nothing passes by accident.

use kube_ha_core::etcd::{Member, MemberId};
use kube_ha_core::names::EtcdCluster;
use serde_json::Value;

use crate::hosts::{Exec, sandbox_exec};

/// The VM's own etcd-apiserver client files (written at boot from `kube-master-certs`).
const CA: &str = "/etc/srv/kubernetes/pki/etcd-apiserver-ca.crt";
const CERT: &str = "/etc/srv/kubernetes/pki/etcd-apiserver-client.crt";
const KEY: &str = "/etc/srv/kubernetes/pki/etcd-apiserver-client.key";

/// The `etcdctl` command line (without the subcommand) for `cluster` on the VM's loopback.
pub fn etcdctl_args(cluster: EtcdCluster) -> Vec<String> {
    let mut args: Vec<String> = ["env", "ETCDCTL_API=3", "etcdctl", "--command-timeout", "5s"]
        .map(String::from)
        .to_vec();
    match cluster {
        EtcdCluster::Main => args.extend(
            [
                "--endpoints",
                "https://127.0.0.1:2379",
                "--cacert",
                CA,
                "--cert",
                CERT,
                "--key",
                KEY,
            ]
            .map(String::from),
        ),
        EtcdCluster::Events => args.extend(["--endpoints", "http://127.0.0.1:4002"].map(String::from)),
    }
    args
}

/// `etcdctl … <args>` inside `vm`, against its own `cluster` member.
pub async fn etcdctl(endpoint: &str, vm: &str, cluster: EtcdCluster, args: &[&str]) -> Exec {
    let mut command = etcdctl_args(cluster);
    command.extend(args.iter().map(|a| a.to_string()));
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    sandbox_exec(endpoint, Some(vm), &command).await
}

/// `etcdctl … -w json`, parsed; an error says what etcdctl said.
pub async fn etcdctl_json(endpoint: &str, vm: &str, cluster: EtcdCluster, args: &[&str]) -> Result<Value, String> {
    let mut with = args.to_vec();
    with.extend(["-w", "json"]);
    let run = etcdctl(endpoint, vm, cluster, &with).await;
    if run.code != 0 {
        return Err(format!(
            "etcdctl {args:?} in {vm} (exit {}): {}",
            run.code,
            run.stderr.trim()
        ));
    }
    serde_json::from_str(&run.stdout).map_err(|e| format!("etcdctl JSON from {vm}: {e}: {}", run.stdout))
}

/// A member as `etcdctl member list -w json` prints it.
pub fn member_of_json(m: &Value) -> Member {
    let strings = |key: &str| -> Vec<String> {
        m.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    Member {
        id: MemberId(m.get("ID").and_then(Value::as_u64).unwrap_or_default()),
        name: m.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
        peer_urls: strings("peerURLs"),
        client_urls: strings("clientURLs"),
        is_learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The member list of `cluster`, asked inside `vm`.
pub async fn member_list(endpoint: &str, vm: &str, cluster: EtcdCluster) -> Result<Vec<Member>, String> {
    let doc = etcdctl_json(endpoint, vm, cluster, &["member", "list"]).await?;
    Ok(doc
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(member_of_json).collect())
        .unwrap_or_default())
}

/// `(member ID, leader ID)` of `vm`'s own `cluster` member (`endpoint status`).
pub async fn status(endpoint: &str, vm: &str, cluster: EtcdCluster) -> Result<(MemberId, Option<MemberId>), String> {
    let doc = etcdctl_json(endpoint, vm, cluster, &["endpoint", "status"]).await?;
    let status = &doc[0]["Status"];
    let id = status["header"]["member_id"].as_u64().ok_or("no member_id")?;
    let leader = status["leader"].as_u64().filter(|l| *l != 0).map(MemberId);
    Ok((MemberId(id), leader))
}

/// Add a learner with `peer_url` to `cluster` through `vm`'s member.
pub async fn add_learner(endpoint: &str, vm: &str, cluster: EtcdCluster, peer_url: &str) -> Result<MemberId, String> {
    let doc = etcdctl_json(
        endpoint,
        vm,
        cluster,
        &["member", "add", "stray", "--learner", "--peer-urls", peer_url],
    )
    .await?;
    doc["member"]["ID"]
        .as_u64()
        .map(MemberId)
        .ok_or_else(|| format!("no member ID in {doc}"))
}

/// Sample `(leader, is `watched` a member?)` from `vm`'s own main member, as fast as etcdctl runs
/// inside the VM, until `watched` is no longer a member (one sample more) or `max` samples.
/// One `sandbox exec` runs the whole loop, so the samples are not spaced by process starts on
/// the machine.
pub async fn sample_leader_while_member(
    endpoint: &str,
    vm: &str,
    watched: MemberId,
    max: usize,
) -> Result<Vec<(Option<MemberId>, bool)>, String> {
    let etcdctl = etcdctl_args(EtcdCluster::Main)[1..].join(" ");
    let hex = format!("{:x}", watched.0);
    let script = format!(
        "i=0; while [ $i -lt {max} ]; do i=$((i+1)); \
         s=$({etcdctl} endpoint status -w json) || continue; m=$({etcdctl} member list) || continue; \
         echo \"$s\"; case \"$m\" in *{hex},*) echo present;; *) echo gone; break;; esac; done"
    );
    let run = sandbox_exec(endpoint, Some(vm), &["env", "ETCDCTL_API=3", "sh", "-c", &script]).await;
    if run.code != 0 {
        return Err(format!("sampler in {vm} (exit {}): {}", run.code, run.stderr.trim()));
    }
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut samples = Vec::new();
    for pair in lines.chunks(2) {
        let [json, presence] = pair else { break };
        let doc: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
        let leader = doc[0]["Status"]["leader"].as_u64().filter(|l| *l != 0).map(MemberId);
        samples.push((leader, *presence == "present"));
    }
    Ok(samples)
}
