//! The real `gcloud` against a real emulator process: every `gcloud compute` command line that
//! kube-up.sh and kube-down.sh used for HA masters (`reference/kube-up-ha-reference.md` §3,
//! `reference/configure-helper-contract.md` §4–§6), in their order, with their flags, written as
//! the scripts wrote them. What the commands made is then read back through the official Rust
//! client, so a test passes only when gcloud's requests (its batch requests and
//! `setDiskAutoDelete` included) did what they do on GCE. gcloud runs with a throwaway config
//! directory, anonymous credentials and no prompts (`kube_ha_testkit::gcloud`).

use kube_ha_testkit as support;

use std::collections::BTreeSet;

use google_cloud_compute_v1::model::{Address, Disk, Firewall, ForwardingRule, Instance, TargetPool};
use serde_json::Value;
use support::emulator::{Clients, Emulator};
use support::gcloud::Gcloud;

const P: &str = "kube-up-replay";
const ZONE: &str = "us-central1-b";
const REPLICA_ZONE: &str = "us-central1-c";
const REGION: &str = "us-central1";
const MASTER: &str = "kubernetes-master";
const REPLICA: &str = "kubernetes-master-a1b";
/// `MASTER_TAG`.
const TAG: &str = "kubernetes-master";
/// kube-up's replica regexp, unanchored at the end as kube-up wrote it.
const REPLICA_FILTER: &str = r#"--filter "name ~ '^kubernetes-master(-...)?'""#;
/// kube-up's `--scopes` for masters.
const SCOPES: &str = "storage-ro,compute-rw,monitoring,logging-write";
/// The boot image flags.
const IMAGE: &str = "--image-project cos-cloud --image cos-121-17412-1-21";
const KUBE_ENV: &str = "ENABLE_ETCD_QUORUM_READ: 'true'\nINITIAL_ETCD_CLUSTER: 'kubernetes-master'\n";

/// One emulator, gcloud pointed at it, the official clients, and the files kube-up passed with
/// `--metadata-from-file`.
struct Replay {
    emu: Emulator,
    gcloud: Gcloud,
    c: Clients,
    files: tempfile::TempDir,
}

impl Replay {
    async fn start(emulator_args: &[&str]) -> Replay {
        let emu = Emulator::start(emulator_args);
        let gcloud = Gcloud::new(&emu.endpoint, P);
        let c = emu.clients().await;
        let files = tempfile::tempdir().expect("temp dir");
        for (name, text) in [
            ("master-kube-env.yaml", KUBE_ENV),
            ("master.yaml", "#cloud-config\n"),
            ("configure.sh", "#!/bin/bash\necho configure\n"),
            ("cluster-name.txt", "kubernetes"),
        ] {
            std::fs::write(files.path().join(name), text).expect("write metadata file");
        }
        Replay { emu, gcloud, c, files }
    }

    /// Run a `gcloud compute …` command line, which must succeed; its stdout.
    fn ok(&self, line: &str) -> String {
        self.gcloud.ok(line)
    }

    /// Run a `gcloud compute …` command line, which must fail; its stderr.
    fn fails(&self, line: &str) -> String {
        self.gcloud.fails(line)
    }

    fn file(&self, name: &str) -> String {
        self.files.path().join(name).display().to_string()
    }

    /// `--metadata-from-file`'s value as kube-up's `create-master-instance-internal` passed it.
    fn metadata_files(&self) -> String {
        format!(
            "kube-env={},user-data={},configure-sh={},cluster-name={}",
            self.file("master-kube-env.yaml"),
            self.file("master.yaml"),
            self.file("configure.sh"),
            self.file("cluster-name.txt")
        )
    }

    async fn instance(&self, zone: &str, name: &str) -> Option<Instance> {
        let r = self.c.instances.get().set_project(P).set_zone(zone).set_instance(name);
        r.send().await.ok()
    }

    async fn disk(&self, zone: &str, name: &str) -> Option<Disk> {
        self.c
            .disks
            .get()
            .set_project(P)
            .set_zone(zone)
            .set_disk(name)
            .send()
            .await
            .ok()
    }

    async fn address(&self, name: &str) -> Option<Address> {
        let r = self
            .c
            .addresses
            .get()
            .set_project(P)
            .set_region(REGION)
            .set_address(name);
        r.send().await.ok()
    }

    async fn firewall(&self, name: &str) -> Option<Firewall> {
        self.c
            .firewalls
            .get()
            .set_project(P)
            .set_firewall(name)
            .send()
            .await
            .ok()
    }

    async fn pool(&self) -> Option<TargetPool> {
        let r = self.c.target_pools.get().set_project(P).set_region(REGION);
        r.set_target_pool(MASTER).send().await.ok()
    }

    async fn forwarding_rule(&self) -> Option<ForwardingRule> {
        let r = self.c.forwarding_rules.get().set_project(P).set_region(REGION);
        r.set_forwarding_rule(MASTER).send().await.ok()
    }

    /// Every instance of the project (aggregated list).
    async fn instance_names(&self) -> BTreeSet<String> {
        let list = self.c.instances.aggregated_list().set_project(P).send().await;
        let list = list.expect("aggregated instances");
        list.items
            .into_values()
            .flat_map(|scoped| scoped.instances)
            .filter_map(|i| i.name)
            .collect()
    }

    /// Every disk of the project (aggregated list).
    async fn disk_names(&self) -> BTreeSet<String> {
        let list = self.c.disks.aggregated_list().set_project(P).send().await;
        let list = list.expect("aggregated disks");
        list.items
            .into_values()
            .flat_map(|scoped| scoped.disks)
            .filter_map(|d| d.name)
            .collect()
    }

    /// The logged calls whose path ends with `suffix`.
    async fn calls_ending(&self, suffix: &str) -> Vec<Value> {
        let calls = self.emu.calls().await;
        calls
            .into_iter()
            .filter(|c| c["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
            .collect()
    }
}

fn last_segment(url: Option<&str>) -> &str {
    url.and_then(|u| u.rsplit('/').next()).unwrap_or_default()
}

fn nat_ip(i: &Instance) -> Option<String> {
    i.network_interfaces.first()?.access_configs.first()?.nat_ip.clone()
}

fn metadata_value(i: &Instance, key: &str) -> Option<String> {
    let items = &i.metadata.as_ref()?.items;
    items.iter().find(|it| it.key.as_deref() == Some(key))?.value.clone()
}

/// kube-up's first master (§3a: `create-network`'s ssh rule, then `create-master`, with U2x's
/// private-cluster internal IP); the static IP.
fn kube_up_first_master(r: &Replay) -> String {
    r.ok(
        "gcloud compute firewall-rules create default-default-ssh --network default --source-ranges 0.0.0.0/0 \
          --allow tcp:22",
    );
    r.ok(&format!(
        "gcloud compute firewall-rules create {MASTER}-https --network default --target-tags {TAG} --allow tcp:443"
    ));
    r.ok(&format!(
        "gcloud compute disks create {MASTER}-pd --zone {ZONE} --type pd-ssd --size 20GB"
    ));
    r.ok(&format!(
        "gcloud compute firewall-rules create {MASTER}-etcd --network default --source-tags {TAG} \
         --allow tcp:2380,tcp:2381 --target-tags {TAG}"
    ));
    r.ok(&format!(
        "gcloud compute addresses create {MASTER}-ip --region {REGION} -q"
    ));
    let static_ip = r.ok(&format!(
        "gcloud compute addresses describe {MASTER}-ip --region {REGION} --format='value(address)'"
    ));
    let static_ip = static_ip.trim().to_string();
    r.ok(&format!(
        "gcloud compute addresses create {MASTER}-internal-ip --region {REGION} --subnet default"
    ));
    r.ok(&format!(
        "gcloud compute instances create {MASTER} --zone {ZONE} --machine-type e2-standard-2 {IMAGE} --tags {TAG} \
         --scopes {SCOPES} --metadata-from-file {files} \
         --disk name={MASTER}-pd,device-name=master-pd,mode=rw,boot=no,auto-delete=no --boot-disk-size 20GB \
         --network default --can-ip-forward --address {static_ip}",
        files = r.metadata_files()
    ));
    static_ip
}

/// kube-up's first replication (§3b with `create-loadbalancer`, §3c): move the static IP to a
/// forwarding rule, then create the replica (IP-alias mode) and add it to the pool.
fn kube_up_replica(r: &Replay, static_ip: &str) {
    let existing = r.ok(&format!(
        "gcloud compute instances list {REPLICA_FILTER} --format 'value(name,zone)'"
    ));
    assert_eq!(existing.trim(), format!("{MASTER}\t{ZONE}"));
    let stderr = r.fails(&format!(
        "gcloud compute forwarding-rules describe {MASTER} --region {REGION}"
    ));
    assert!(stderr.contains("was not found"), "{stderr}");
    // the deprecated positional form `create-loadbalancer` used to find the zone
    let zone = r.ok(&format!(
        "gcloud compute instances list {MASTER} --format 'value(zone)'"
    ));
    assert_eq!(zone.trim(), ZONE);
    attach_external_ip(r, MASTER, ZONE, None);
    r.ok(&format!(
        "gcloud compute target-pools create {MASTER} --region {REGION}"
    ));
    r.ok(&format!(
        "gcloud compute target-pools add-instances {MASTER} --instances {MASTER} --zone {ZONE}"
    ));
    r.ok(&format!(
        "gcloud compute forwarding-rules create {MASTER} --region {REGION} --target-pool {MASTER} \
         --address={static_ip} --ports=443"
    ));

    r.ok(&format!(
        "gcloud compute disks create {REPLICA}-pd --zone {REPLICA_ZONE} --type pd-ssd --size 20GB"
    ));
    r.ok(&format!(
        "gcloud compute instances create {REPLICA} --zone {REPLICA_ZONE} --machine-type e2-standard-2 {IMAGE} \
         --tags {TAG} --scopes {SCOPES} --metadata-from-file {files} \
         --disk name={REPLICA}-pd,device-name=master-pd,mode=rw,boot=no,auto-delete=no --boot-disk-size 20GB \
         --network-interface network=default,address=,subnet=default,aliases=pods-default:/24 --no-can-ip-forward",
        files = r.metadata_files()
    ));
    r.ok(&format!(
        "gcloud compute target-pools add-instances {MASTER} --zone {REPLICA_ZONE} --instances {REPLICA}"
    ));
}

/// kube-up's `attach-external-ip NAME ZONE [IP]`: replace nic0's access config, with the given
/// IP or an ephemeral one.
fn attach_external_ip(r: &Replay, name: &str, zone: &str, ip: Option<&str>) {
    let config = r.ok(&format!(
        "gcloud compute instances describe {name} --zone {zone} \
         --format='value(networkInterfaces[0].accessConfigs[0].name)'"
    ));
    let config = config.trim();
    r.ok(&format!(
        "gcloud compute instances delete-access-config {name} --zone {zone} --access-config-name '{config}'"
    ));
    match ip {
        None => r.ok(&format!(
            "gcloud compute instances add-access-config {name} --zone {zone}"
        )),
        Some(ip) => r.ok(&format!(
            "gcloud compute instances add-access-config {name} --zone {zone} --access-config-name '{config}' \
             --address {ip}"
        )),
    };
}

#[tokio::test]
async fn kube_ups_first_master_command_lines_make_the_master_kube_up_made() {
    let r = Replay::start(&[]).await;
    let static_ip = kube_up_first_master(&r);

    let vm = r.instance(ZONE, MASTER).await.expect("the master exists");
    assert_eq!(vm.status.as_ref().and_then(|s| s.name()), Some("RUNNING"));
    assert_eq!(last_segment(vm.machine_type.as_deref()), "e2-standard-2");
    assert_eq!(vm.tags.as_ref().map(|t| t.items.clone()), Some(vec![TAG.to_string()]));
    assert_eq!(vm.can_ip_forward, Some(true));
    assert_eq!(nat_ip(&vm), Some(static_ip.clone()));
    let account = vm.service_accounts.first().expect("a service account");
    assert!(
        account
            .email
            .as_deref()
            .is_some_and(|e| e.ends_with("-compute@developer.gserviceaccount.com")),
        "`default` is the project's default service account: {account:?}"
    );
    let scopes: BTreeSet<&str> = account.scopes.iter().map(String::as_str).collect();
    for scope in ["compute", "devstorage.read_only", "logging.write", "monitoring"] {
        let url = format!("https://www.googleapis.com/auth/{scope}");
        assert!(scopes.contains(url.as_str()), "{scope} in {scopes:?}");
    }
    assert_eq!(metadata_value(&vm, "kube-env").as_deref(), Some(KUBE_ENV));
    assert_eq!(metadata_value(&vm, "user-data").as_deref(), Some("#cloud-config\n"));
    assert_eq!(metadata_value(&vm, "cluster-name").as_deref(), Some("kubernetes"));
    assert!(metadata_value(&vm, "configure-sh").is_some());
    let boot = vm.disks.iter().find(|d| d.boot == Some(true)).expect("a boot disk");
    assert_eq!((boot.auto_delete, boot.disk_size_gb), (Some(true), Some(20)));
    let data = vm
        .disks
        .iter()
        .find(|d| d.device_name.as_deref() == Some("master-pd"))
        .expect("the PD attached as master-pd");
    assert_eq!(data.auto_delete, Some(false));
    assert_eq!(last_segment(data.source.as_deref()), format!("{MASTER}-pd"));

    let pd = r.disk(ZONE, &format!("{MASTER}-pd")).await.expect("the PD");
    assert_eq!((last_segment(pd.r#type.as_deref()), pd.size_gb), ("pd-ssd", Some(20)));
    assert_eq!(pd.users, [vm.self_link.clone().expect("self link")]);
    let ip = r.address(&format!("{MASTER}-ip")).await.expect("the static IP");
    assert_eq!(ip.status.as_ref().and_then(|s| s.name()), Some("IN_USE"));
    assert_eq!(ip.users, pd.users);

    let name = format!("{MASTER}-internal-ip");
    let internal = r.address(&name).await.expect("the internal IP");
    assert_eq!(internal.address_type.as_ref().and_then(|t| t.name()), Some("INTERNAL"));
    assert_eq!(last_segment(internal.subnetwork.as_deref()), "default");
    // the same IP reserved again with `--addresses`
    let internal_ip = internal.address.clone().expect("its IP");
    r.ok(&format!(
        "gcloud compute addresses delete {name} --region {REGION} --quiet"
    ));
    r.ok(&format!(
        "gcloud compute addresses create {name} --region {REGION} --subnet default --addresses {internal_ip}"
    ));
    let again = r.address(&name).await.expect("reserved again");
    assert_eq!(again.address, Some(internal_ip));
    assert_eq!(again.status.as_ref().and_then(|s| s.name()), Some("RESERVED"));

    let https = r.firewall(&format!("{MASTER}-https")).await.expect("https rule");
    assert_eq!(https.target_tags, [TAG]);
    assert_eq!(https.allowed[0].ports, ["443"]);
    let etcd = r.firewall(&format!("{MASTER}-etcd")).await.expect("etcd rule");
    assert_eq!(etcd.source_tags, [TAG]);
    assert_eq!(etcd.target_tags, [TAG]);
    let ports: BTreeSet<&str> = etcd
        .allowed
        .iter()
        .flat_map(|a| a.ports.iter().map(String::as_str))
        .collect();
    assert_eq!(ports, BTreeSet::from(["2380", "2381"]));
    let ssh = r.firewall("default-default-ssh").await.expect("ssh rule");
    assert_eq!(ssh.source_ranges, ["0.0.0.0/0"]);
    assert_eq!(ssh.allowed[0].ip_protocol.as_deref(), Some("tcp"));
}

#[tokio::test]
async fn kube_ups_replica_command_lines_put_the_static_ip_on_a_forwarding_rule_to_both_masters() {
    let r = Replay::start(&[]).await;
    let static_ip = kube_up_first_master(&r);
    kube_up_replica(&r, &static_ip);

    let rule = r.forwarding_rule().await.expect("the forwarding rule");
    assert_eq!(rule.ip_address.as_deref(), Some(static_ip.as_str()));
    assert_eq!(rule.port_range.as_deref(), Some("443-443"));
    assert_eq!(last_segment(rule.target.as_deref()), MASTER);
    let master = r.instance(ZONE, MASTER).await.expect("master");
    let replica = r.instance(REPLICA_ZONE, REPLICA).await.expect("replica");
    let master_ip = nat_ip(&master).expect("the master has an ephemeral IP again");
    assert_ne!(master_ip, static_ip);
    assert!(nat_ip(&replica).is_some_and(|ip| ip != static_ip && ip != master_ip));
    let pool = r.pool().await.expect("the pool");
    let members: BTreeSet<&str> = pool.instances.iter().map(|u| last_segment(Some(u))).collect();
    assert_eq!(members, BTreeSet::from([MASTER, REPLICA]));
    let ip = r.address(&format!("{MASTER}-ip")).await.expect("static IP");
    assert_eq!(ip.users, [rule.self_link.clone().expect("self link")]);

    let nic = &replica.network_interfaces[0];
    assert_eq!(nic.alias_ip_ranges.len(), 1);
    assert_eq!(
        nic.alias_ip_ranges[0].subnetwork_range_name.as_deref(),
        Some("pods-default")
    );
    assert_eq!(nic.alias_ip_ranges[0].ip_cidr_range.as_deref(), Some("/24"));
    assert_eq!(replica.can_ip_forward, Some(false));
    assert_eq!(metadata_value(&replica, "kube-env").as_deref(), Some(KUBE_ENV));
    let listed = r.ok(&format!(
        "gcloud compute instances list {REPLICA_FILTER} --format 'value(name,zone)'"
    ));
    let listed: BTreeSet<&str> = listed.lines().collect();
    let (first, second) = (format!("{MASTER}\t{ZONE}"), format!("{REPLICA}\t{REPLICA_ZONE}"));
    assert_eq!(listed, BTreeSet::from([first.as_str(), second.as_str()]));
}

#[tokio::test]
async fn kube_downs_command_lines_remove_the_replica_with_its_disk_then_tear_everything_down() {
    let r = Replay::start(&[]).await;
    let static_ip = kube_up_first_master(&r);
    kube_up_replica(&r, &static_ip);

    // §3d: remove the replica in its zone
    let victim = r.ok(&format!(
        "gcloud compute instances list {REPLICA_FILTER} --zones {REPLICA_ZONE} --format 'value(name)'"
    ));
    assert_eq!(victim.trim(), REPLICA);
    r.ok(&format!(
        "gcloud compute target-pools describe {MASTER} --region {REGION} --format 'value(name)'"
    ));
    r.ok(&format!(
        "gcloud compute target-pools remove-instances {MASTER} --zone {REPLICA_ZONE} --instances {REPLICA}"
    ));
    r.ok(&format!(
        "gcloud compute instances delete {REPLICA} --zone {REPLICA_ZONE} --delete-disks all --quiet"
    ));
    r.fails(&format!(
        "gcloud compute disks describe {REPLICA}-pd --zone {REPLICA_ZONE}"
    ));
    let auto_delete = r.calls_ending(&format!("/instances/{REPLICA}/setDiskAutoDelete")).await;
    assert_eq!(auto_delete.len(), 1, "{auto_delete:?}");
    let query = auto_delete[0]["query"].as_str().unwrap_or_default();
    assert!(query.contains("deviceName=master-pd"), "{query}");
    assert!(r.instance(REPLICA_ZONE, REPLICA).await.is_none());
    let pd = format!("{REPLICA}-pd");
    assert!(
        r.disk(REPLICA_ZONE, &pd).await.is_none(),
        "--delete-disks all deleted the PD"
    );
    assert!(r.disk(REPLICA_ZONE, REPLICA).await.is_none(), "and the boot disk");
    // a PD leaked by an earlier failed create is deleted by name
    let leaked = format!("{MASTER}-x9z-pd");
    r.ok(&format!(
        "gcloud compute disks create {leaked} --zone {REPLICA_ZONE} --type pd-ssd --size 20GB"
    ));
    r.ok(&format!(
        "gcloud compute disks delete {leaked} --zone {REPLICA_ZONE} --quiet"
    ));
    assert!(r.disk(REPLICA_ZONE, &leaked).await.is_none());

    // one replica left: the static IP goes back to it, the load balancer goes away
    let remaining = r.ok(&format!(
        "gcloud compute instances list {REPLICA_FILTER} --format 'value(name,zone)'"
    ));
    assert_eq!(remaining.lines().count(), 1);
    let ip = r.ok(&format!(
        "gcloud compute addresses describe {MASTER}-ip --region {REGION} --format='value(address)'"
    ));
    assert_eq!(ip.trim(), static_ip);
    r.ok(&format!(
        "gcloud compute forwarding-rules delete {MASTER} --region {REGION} --quiet"
    ));
    attach_external_ip(&r, MASTER, ZONE, Some(&static_ip));
    r.ok(&format!(
        "gcloud compute target-pools delete {MASTER} --region {REGION} --quiet"
    ));
    assert!(r.forwarding_rule().await.is_none() && r.pool().await.is_none());
    let master = r.instance(ZONE, MASTER).await.expect("master");
    assert_eq!(nat_ip(&master), Some(static_ip.clone()));

    // two "nodes", deleted in one command as kube-down deleted nodes (one batch request)
    for node in ["kubernetes-minion-group-x1", "kubernetes-minion-group-x2"] {
        r.ok(&format!(
            "gcloud compute instances create {node} --zone {ZONE} --tags kubernetes-minion"
        ));
    }
    r.ok(&format!(
        "gcloud compute instances delete --quiet --delete-disks boot --zone {ZONE} \
         kubernetes-minion-group-x1 kubernetes-minion-group-x2"
    ));

    // §3e: the last master, then what the cluster had
    r.ok(&format!(
        "gcloud compute instances delete {MASTER} --zone {ZONE} --delete-disks all --quiet"
    ));
    r.fails(&format!("gcloud compute disks describe {MASTER}-pd --zone {ZONE}"));
    let described = r.ok(&format!(
        "gcloud compute firewall-rules describe {MASTER}-https --format='value(name)'"
    ));
    assert_eq!(described.trim(), format!("{MASTER}-https"));
    r.ok(&format!("gcloud compute firewall-rules delete --quiet {MASTER}-https"));
    r.ok(&format!(
        "gcloud compute firewall-rules delete --quiet {MASTER}-etcd default-default-ssh"
    ));
    r.ok(&format!(
        "gcloud compute addresses delete --region {REGION} --quiet {MASTER}-ip {MASTER}-internal-ip"
    ));

    assert!(r.instance_names().await.is_empty());
    assert!(r.disk_names().await.is_empty());
    let firewalls = r.c.firewalls.list().set_project(P).send().await.expect("firewalls");
    assert!(firewalls.items.is_empty(), "{:?}", firewalls.items);
    let addresses = r.c.addresses.list().set_project(P).set_region(REGION).send().await;
    assert!(addresses.expect("addresses").items.is_empty());
}

#[tokio::test]
async fn metadata_command_lines_change_only_their_keys_and_the_call_log_says_which() {
    let r = Replay::start(&[]).await;
    r.ok(&format!(
        "gcloud compute instances create {MASTER} --zone {ZONE} --metadata-from-file {}",
        r.metadata_files()
    ));
    r.emu.clear_calls().await;

    r.ok(&format!(
        "gcloud compute instances add-metadata {MASTER} --zone {ZONE} --metadata kube-master-internal-ip=10.0.0.5"
    ));
    let vm = r.instance(ZONE, MASTER).await.expect("vm");
    assert_eq!(
        metadata_value(&vm, "kube-master-internal-ip").as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(metadata_value(&vm, "kube-env").as_deref(), Some(KUBE_ENV));
    r.ok(&format!(
        "gcloud compute instances remove-metadata {MASTER} --zone {ZONE} --keys kube-master-internal-ip"
    ));
    let vm = r.instance(ZONE, MASTER).await.expect("vm");
    assert_eq!(metadata_value(&vm, "kube-master-internal-ip"), None);
    assert_eq!(vm.metadata.as_ref().map(|m| m.items.len()), Some(4));

    r.ok("gcloud compute project-info add-metadata --metadata kube-ha-lock=owner");
    let described = r.ok("gcloud compute project-info describe --format 'value(commonInstanceMetadata.items)'");
    assert!(described.contains("kube-ha-lock"), "{described}");
    r.ok("gcloud compute project-info remove-metadata --keys kube-ha-lock");
    let project = r.c.projects.get().set_project(P).send().await.expect("project");
    assert!(project.common_instance_metadata.expect("metadata").items.is_empty());

    // over GCE's 256 KiB a value: refused, nothing written
    std::fs::write(r.files.path().join("big.txt"), "x".repeat(300 * 1024)).expect("write");
    let stderr = r.fails(&format!(
        "gcloud compute instances add-metadata {MASTER} --zone {ZONE} --metadata-from-file kube-env={}",
        r.file("big.txt")
    ));
    assert!(stderr.contains("is too large: maximum size 262144"), "{stderr}");
    let vm = r.instance(ZONE, MASTER).await.expect("vm");
    assert_eq!(metadata_value(&vm, "kube-env").as_deref(), Some(KUBE_ENV));

    let keys = r.emu.metadata_keys_changed().await;
    let expected: Vec<Vec<&str>> = vec![
        vec!["kube-master-internal-ip"],
        vec!["kube-master-internal-ip"],
        vec!["kube-ha-lock"],
        vec!["kube-ha-lock"],
        vec![],
    ];
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn catalogue_command_lines_see_real_region_and_zone_names() {
    let r = Replay::start(&[]).await;
    let zones = r.ok(&format!(
        "gcloud compute zones list --filter=region={REGION} --format='value(name)'"
    ));
    let zones: Vec<&str> = zones.lines().collect();
    assert_eq!(
        zones,
        ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    );
    let region = r.ok("gcloud compute regions describe europe-west1 --format='value(status)'");
    assert_eq!(region.trim(), "UP");
    let stderr = r.fails("gcloud compute regions describe mars-central1");
    assert!(stderr.contains("was not found"), "{stderr}");
    // kube-up's image lookup when MASTER_IMAGE is empty (cpg util.sh)
    let image = r.ok("gcloud compute images list --project=cos-cloud --no-standard-images \
                      --filter=\"family:cos-121-lts architecture:X86_64\" --format 'value(name)'");
    assert_eq!(image.trim(), "cos-121-17412-1-21");
    let newest =
        r.ok("gcloud compute images describe-from-family cos-109-lts --project cos-cloud --format 'value(name)'");
    assert!(newest.starts_with("cos-109-"), "{newest}");
    r.ok(&format!("gcloud compute instances create lonely --zone {REPLICA_ZONE}"));
    let here = r.ok(&format!(
        "gcloud compute instances list --zones {REPLICA_ZONE} --format='value(name)'"
    ));
    let elsewhere = r.ok(&format!(
        "gcloud compute instances list --zones {ZONE} --format='value(name)'"
    ));
    assert_eq!((here.trim(), elsewhere.trim()), ("lonely", ""));
}

#[tokio::test]
async fn batch_requests_with_slow_operations_delete_every_resource_and_report_each_failure() {
    let r = Replay::start(&["--op-latency", "firewalls=200"]).await;
    for name in ["fw-a", "fw-b", "fw-c"] {
        r.ok(&format!(
            "gcloud compute firewall-rules create {name} --network default --allow tcp:443"
        ));
    }
    r.emu.clear_calls().await;
    r.ok("gcloud compute firewall-rules delete --quiet fw-a fw-b");
    assert!(r.firewall("fw-a").await.is_none() && r.firewall("fw-b").await.is_none());
    let deletes = r.emu.mutating_calls().await;
    let deleted: BTreeSet<&str> = deletes
        .iter()
        .filter(|c| c["method"] == "DELETE")
        .filter_map(|c| c["path"].as_str()?.rsplit('/').next())
        .collect();
    assert_eq!(deleted, BTreeSet::from(["fw-a", "fw-b"]));
    let waits = r.calls_ending("/wait").await;
    assert!(waits.len() >= 2, "gcloud waited for both operations: {waits:?}");

    // one part fails (404), the other is still done
    let stderr = r.fails("gcloud compute firewall-rules delete --quiet fw-missing fw-c");
    assert!(
        stderr.contains("fw-missing") && stderr.contains("was not found"),
        "{stderr}"
    );
    assert!(r.firewall("fw-c").await.is_none());
}
