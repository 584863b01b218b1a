//! Conformance of the Compute Engine emulator with what kube-ha relies on from GCE, driven
//! through the official `google-cloud-compute-v1` client over real HTTP against a real emulator
//! process (one per test). Control endpoints (`/_emulator/*`) are plain HTTP.

use kube_ha_testkit as support;

use std::time::Duration;

use google_cloud_compute_v1::model::{
    self, AccessConfig, Address, AttachedDisk, AttachedDiskInitializeParams, Disk, Firewall, ForwardingRule, Instance,
    InstanceReference, InstancesSetLabelsRequest, Metadata, NetworkInterface, Operation, TargetPool,
    TargetPoolsAddInstanceRequest, TargetPoolsRemoveInstanceRequest,
};
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::Code;
use google_cloud_lro::Poller as _;
use serde_json::{Value, json};
use support::emulator::{Clients, Emulator};

const P: &str = "kube-ha-test";
const ZONE: &str = "us-central1-b";
const REGION: &str = "us-central1";
const OTHER_ZONE: &str = "europe-west1-c";
const OTHER_REGION: &str = "europe-west1";

type Result<T> = std::result::Result<T, Error>;

/// An operation that finished without error.
fn ok_op(r: Result<Operation>) -> Operation {
    let op = r.expect("call accepted");
    assert_eq!(op.status, Some(model::operation::Status::Done), "{op:?}");
    assert!(op.error.is_none(), "operation failed: {op:?}");
    op
}

/// (status code, http status) of a failed call.
fn failure<T: std::fmt::Debug>(r: Result<T>) -> (Code, u16) {
    let e = r.expect_err("the call must fail");
    (
        e.status().map(|s| s.code).unwrap_or(Code::Unknown),
        e.http_status_code().unwrap_or(0),
    )
}

fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
    let e = r.expect_err("the call must fail");
    e.status().map(|s| s.message.clone()).unwrap_or_default()
}

fn firewall(name: &str) -> Firewall {
    Firewall::new()
        .set_name(name)
        .set_network("global/networks/default")
        .set_allowed([model::firewall::Allowed::new()
            .set_ip_protocol("tcp")
            .set_ports(["443"])])
        .set_target_tags(["kubernetes-master"])
}

/// A master-like instance: boot disk from an image (autoDelete), one access config.
fn instance(name: &str, zone: &str) -> Instance {
    Instance::new()
        .set_name(name)
        .set_machine_type(format!("zones/{zone}/machineTypes/n1-standard-1"))
        .set_disks([AttachedDisk::new()
            .set_boot(true)
            .set_auto_delete(true)
            .set_initialize_params(
                AttachedDiskInitializeParams::new()
                    .set_disk_size_gb(20)
                    .set_source_image("projects/cos-cloud/global/images/family/cos-stable"),
            )])
        .set_network_interfaces([NetworkInterface::new()
            .set_network("global/networks/default")
            .set_access_configs([AccessConfig::new().set_name("External NAT")])])
        .set_metadata(
            Metadata::new().set_items([model::metadata::Items::new().set_key("kube-env").set_value("A: b\n")]),
        )
        .set_tags(model::Tags::new().set_items(["kubernetes-master"]))
}

async fn insert_instance(c: &Clients, zone: &str, body: Instance) -> Result<Operation> {
    c.instances
        .insert()
        .set_project(P)
        .set_zone(zone)
        .set_body(body)
        .poller()
        .until_done()
        .await
}

async fn get_instance(c: &Clients, zone: &str, name: &str) -> Result<Instance> {
    c.instances
        .get()
        .set_project(P)
        .set_zone(zone)
        .set_instance(name)
        .send()
        .await
}

async fn insert_address(c: &Clients, region: &str, body: Address) -> Result<Operation> {
    c.addresses
        .insert()
        .set_project(P)
        .set_region(region)
        .set_body(body)
        .poller()
        .until_done()
        .await
}

/// An INTERNAL address named `name`.
fn internal(name: &str) -> Address {
    Address::new()
        .set_name(name)
        .set_address_type(model::address::AddressType::Internal)
}

/// Reserve an address; its IP.
async fn reserve(c: &Clients, region: &str, body: Address) -> String {
    let name = body.name.clone().unwrap_or_default();
    ok_op(insert_address(c, region, body).await);
    get_address(c, region, &name)
        .await
        .expect("reserved address")
        .address
        .expect("its IP")
}

async fn insert_disk(c: &Clients, zone: &str, body: Disk) -> Result<Operation> {
    c.disks
        .insert()
        .set_project(P)
        .set_zone(zone)
        .set_body(body)
        .poller()
        .until_done()
        .await
}

async fn get_address(c: &Clients, region: &str, name: &str) -> Result<Address> {
    c.addresses
        .get()
        .set_project(P)
        .set_region(region)
        .set_address(name)
        .send()
        .await
}

async fn get_disk(c: &Clients, zone: &str, name: &str) -> Result<Disk> {
    c.disks.get().set_project(P).set_zone(zone).set_disk(name).send().await
}

fn nat_ip(i: &Instance) -> Option<String> {
    i.network_interfaces.first()?.access_configs.first()?.nat_ip.clone()
}

#[tokio::test]
async fn zones_and_regions_are_real_gce_names_and_unknown_ones_are_404() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let zones = c.zones.list().set_project(P).send().await.expect("zones");
    let names: Vec<String> = zones.items.iter().filter_map(|z| z.name.clone()).collect();
    for z in [
        "europe-west1-b",
        "europe-west1-c",
        "europe-west1-d",
        "us-central1-a",
        "us-central1-b",
        "us-central1-c",
        "us-central1-f",
    ] {
        assert!(names.iter().any(|n| n == z), "{z} missing from {names:?}");
    }
    let zone = c
        .zones
        .get()
        .set_project(P)
        .set_zone("us-central1-f")
        .send()
        .await
        .expect("zone");
    assert!(
        zone.region
            .as_deref()
            .is_some_and(|r| r.ends_with("/regions/us-central1")),
        "{zone:?}"
    );
    let region = c
        .regions
        .get()
        .set_project(P)
        .set_region(OTHER_REGION)
        .send()
        .await
        .expect("region");
    assert_eq!(region.zones.len(), 3);
    let regions = c.regions.list().set_project(P).send().await.expect("regions");
    assert!(regions.items.len() >= 7);

    let missing_zone = c.zones.get().set_project(P).set_zone("us-central1-e").send().await;
    assert_eq!(failure(missing_zone), (Code::NotFound, 404));
    let in_missing_zone = c.instances.list().set_project(P).set_zone("mars-1-a").send().await;
    assert_eq!(failure(in_missing_zone), (Code::NotFound, 404));
    let in_missing_region = c.addresses.list().set_project(P).set_region("mars-1").send().await;
    assert_eq!(failure(in_missing_region), (Code::NotFound, 404));
}

#[tokio::test]
async fn firewalls_insert_get_list_delete_with_gce_errors() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let insert = || {
        c.firewalls
            .insert()
            .set_project(P)
            .set_body(firewall("master-https"))
            .poller()
            .until_done()
    };
    let op = ok_op(insert().await);
    assert_eq!(op.operation_type.as_deref(), Some("insert"));
    let fw = c
        .firewalls
        .get()
        .set_project(P)
        .set_firewall("master-https")
        .send()
        .await
        .expect("get");
    assert!(fw.id.is_some_and(|id| id > 0));
    assert_eq!(
        fw.self_link.as_deref(),
        Some(format!("{}/compute/v1/projects/{P}/global/firewalls/master-https", emu.endpoint).as_str())
    );
    assert!(
        fw.network
            .as_deref()
            .is_some_and(|n| n.ends_with("/global/networks/default"))
    );
    assert_eq!(fw.target_tags, ["kubernetes-master"]);
    assert_eq!(fw.allowed[0].ports, ["443"]);
    assert!(fw.creation_timestamp.is_some());
    assert_eq!(fw.priority, Some(1000));

    let list = c.firewalls.list().set_project(P).send().await.expect("list");
    assert_eq!(list.items.len(), 1);

    assert_eq!(failure(insert().await), (Code::AlreadyExists, 409));

    ok_op(
        c.firewalls
            .delete()
            .set_project(P)
            .set_firewall("master-https")
            .poller()
            .until_done()
            .await,
    );
    let gone = c
        .firewalls
        .get()
        .set_project(P)
        .set_firewall("master-https")
        .send()
        .await;
    assert_eq!(failure(gone), (Code::NotFound, 404));
    let again = c
        .firewalls
        .delete()
        .set_project(P)
        .set_firewall("master-https")
        .poller()
        .until_done()
        .await;
    assert_eq!(failure(again), (Code::NotFound, 404));
    let list = c.firewalls.list().set_project(P).send().await.expect("list");
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn disks_insert_get_list_delete_and_int64_sizes() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let disk = Disk::new().set_name("master-pd").set_size_gb(20).set_type("pd-ssd");
    let insert = || {
        c.disks
            .insert()
            .set_project(P)
            .set_zone(ZONE)
            .set_body(disk.clone())
            .poller()
            .until_done()
    };
    ok_op(insert().await);
    let got = get_disk(&c, ZONE, "master-pd").await.expect("disk");
    assert_eq!(got.size_gb, Some(20));
    assert!(
        got.r#type
            .as_deref()
            .is_some_and(|t| t.ends_with(&format!("zones/{ZONE}/diskTypes/pd-ssd")))
    );
    assert!(
        got.zone
            .as_deref()
            .is_some_and(|z| z.ends_with(&format!("/zones/{ZONE}")))
    );
    assert!(got.users.is_empty());
    let list = c.disks.list().set_project(P).set_zone(ZONE).send().await.expect("list");
    assert_eq!(list.items.len(), 1);
    let other_zone = c
        .disks
        .list()
        .set_project(P)
        .set_zone(OTHER_ZONE)
        .send()
        .await
        .expect("list");
    assert!(other_zone.items.is_empty());
    assert_eq!(failure(insert().await), (Code::AlreadyExists, 409));
    ok_op(
        c.disks
            .delete()
            .set_project(P)
            .set_zone(ZONE)
            .set_disk("master-pd")
            .poller()
            .until_done()
            .await,
    );
    assert_eq!(failure(get_disk(&c, ZONE, "master-pd").await), (Code::NotFound, 404));
}

#[tokio::test]
async fn addresses_come_from_the_emulator_block_and_start_reserved() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let n = emu.ip_block;
    ok_op(insert_address(&c, REGION, Address::new().set_name("master-ip")).await);
    ok_op(insert_address(&c, REGION, internal("master-internal")).await);
    let requested = format!("198.18.{n}.200");
    ok_op(insert_address(&c, REGION, internal("pinned").set_address(requested.clone())).await);
    let external = get_address(&c, REGION, "master-ip").await.expect("external");
    assert_eq!(external.address, Some(format!("198.19.{n}.1")));
    assert_eq!(external.status, Some(model::address::Status::Reserved));
    assert_eq!(external.address_type, Some(model::address::AddressType::External));
    assert!(external.users.is_empty());
    let internal = get_address(&c, REGION, "master-internal").await.expect("internal");
    assert_eq!(
        internal.address,
        Some(format!("198.18.{n}.2")),
        "198.18.N.1 is the VPC gateway"
    );
    let pinned = get_address(&c, REGION, "pinned").await.expect("pinned");
    assert_eq!(pinned.address, Some(requested.clone()));
    let taken = insert_address(&c, REGION, Address::new().set_name("copy").set_address(requested)).await;
    assert_eq!(failure(taken), (Code::InvalidArgument, 400));

    let list = c
        .addresses
        .list()
        .set_project(P)
        .set_region(REGION)
        .send()
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3);
    ok_op(
        c.addresses
            .delete()
            .set_project(P)
            .set_region(REGION)
            .set_address("pinned")
            .poller()
            .until_done()
            .await,
    );
    assert_eq!(failure(get_address(&c, REGION, "pinned").await), (Code::NotFound, 404));
    let dup = insert_address(&c, REGION, Address::new().set_name("master-ip")).await;
    assert_eq!(failure(dup), (Code::AlreadyExists, 409));
}

#[tokio::test]
async fn an_instance_is_running_with_nic0_boot_disk_static_ips_and_metadata() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let n = emu.ip_block;
    let static_ip = reserve(&c, REGION, Address::new().set_name("master-ip")).await;
    let internal_ip = reserve(&c, REGION, internal("master-internal")).await;
    ok_op(insert_disk(&c, ZONE, Disk::new().set_name("master-pd").set_size_gb(10)).await);
    let mut body = instance("master", ZONE);
    body.network_interfaces[0].network_ip = Some(internal_ip.clone());
    body.network_interfaces[0].access_configs[0].nat_ip = Some(static_ip.clone());
    body.disks.push(
        AttachedDisk::new()
            .set_source(format!("projects/{P}/zones/{ZONE}/disks/master-pd"))
            .set_device_name("master-pd")
            .set_auto_delete(false),
    );
    body = body.set_labels([("role", "master")]);
    ok_op(insert_instance(&c, ZONE, body.clone()).await);

    let vm = get_instance(&c, ZONE, "master").await.expect("instance");
    let self_link = format!("{}/compute/v1/projects/{P}/zones/{ZONE}/instances/master", emu.endpoint);
    assert_eq!(vm.status, Some(model::instance::Status::Running));
    assert_eq!(vm.self_link.as_deref(), Some(self_link.as_str()));
    assert!(
        vm.zone
            .as_deref()
            .is_some_and(|z| z.ends_with(&format!("/zones/{ZONE}")))
    );
    assert!(vm.id.is_some());
    let nic = &vm.network_interfaces[0];
    assert_eq!(nic.name.as_deref(), Some("nic0"));
    assert_eq!(nic.network_ip.as_deref(), Some(internal_ip.as_str()));
    assert_eq!(nic.access_configs[0].name.as_deref(), Some("External NAT"));
    assert_eq!(nat_ip(&vm), Some(static_ip.clone()));
    assert_eq!(
        vm.tags.as_ref().map(|t| t.items.clone()),
        Some(vec!["kubernetes-master".to_string()])
    );
    assert_eq!(vm.labels.get("role").map(String::as_str), Some("master"));
    assert!(vm.label_fingerprint.is_some());
    let md = vm.metadata.as_ref().expect("metadata");
    assert!(md.fingerprint.is_some());
    assert_eq!(md.items[0].key.as_deref(), Some("kube-env"));
    assert_eq!(md.items[0].value.as_deref(), Some("A: b\n"));
    assert!(
        vm.machine_type
            .as_deref()
            .is_some_and(|m| m.ends_with("/machineTypes/n1-standard-1"))
    );

    // the boot disk is a Disk named after the instance; both disks list the instance as user
    assert_eq!(vm.disks.len(), 2);
    assert_eq!(vm.disks[0].boot, Some(true));
    assert!(
        vm.disks[0]
            .source
            .as_deref()
            .is_some_and(|s| s.ends_with(&format!("zones/{ZONE}/disks/master")))
    );
    assert_eq!(vm.disks[1].device_name.as_deref(), Some("master-pd"));
    assert_eq!(vm.disks[1].auto_delete, Some(false));
    let boot = get_disk(&c, ZONE, "master").await.expect("boot disk");
    assert_eq!(boot.size_gb, Some(20));
    assert!(
        boot.source_image
            .as_deref()
            .is_some_and(|i| i.ends_with("cos-cloud/global/images/family/cos-stable"))
    );
    assert_eq!(boot.users, std::slice::from_ref(&self_link));
    assert_eq!(
        get_disk(&c, ZONE, "master-pd").await.expect("pd").users,
        std::slice::from_ref(&self_link)
    );

    // both reserved addresses are now IN_USE by the instance
    for name in ["master-ip", "master-internal"] {
        let a = get_address(&c, REGION, name).await.expect("address");
        assert_eq!(a.status, Some(model::address::Status::InUse), "{name}");
        assert_eq!(a.users, std::slice::from_ref(&self_link), "{name}");
    }

    // an instance without networkIP/natIP gets fresh ones from the block
    ok_op(insert_instance(&c, ZONE, instance("master-x1z", ZONE)).await);
    let other = get_instance(&c, ZONE, "master-x1z").await.expect("second");
    assert_eq!(other.network_interfaces[0].network_ip, Some(format!("198.18.{n}.3")));
    assert_eq!(nat_ip(&other), Some(format!("198.19.{n}.2")));

    let list = c
        .instances
        .list()
        .set_project(P)
        .set_zone(ZONE)
        .send()
        .await
        .expect("list");
    assert_eq!(list.items.len(), 2);
    let filtered = c
        .instances
        .list()
        .set_project(P)
        .set_zone(ZONE)
        .set_filter("name eq master(-[a-z0-9]{3})?")
        .send()
        .await
        .expect("filtered list");
    assert_eq!(filtered.items.len(), 2);

    let dup = insert_instance(&c, ZONE, instance("master", ZONE)).await;
    assert_eq!(failure(dup), (Code::AlreadyExists, 409));
    // a disk attached read-write cannot be attached again
    let mut thief = instance("thief", ZONE);
    thief
        .disks
        .push(AttachedDisk::new().set_source(format!("zones/{ZONE}/disks/master-pd")));
    assert_eq!(
        failure(insert_instance(&c, ZONE, thief).await),
        (Code::InvalidArgument, 400)
    );
    // a used static IP cannot be used again
    let mut copy = instance("copycat", ZONE);
    copy.network_interfaces[0].access_configs[0].nat_ip = Some(static_ip);
    assert_eq!(
        failure(insert_instance(&c, ZONE, copy).await),
        (Code::InvalidArgument, 400)
    );
    assert_eq!(failure(get_instance(&c, ZONE, "nobody").await), (Code::NotFound, 404));

    let state = emu.state().await;
    assert_eq!(state["projects"][P]["instances"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn instance_delete_honours_auto_delete_and_releases_addresses() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let static_ip = Some(reserve(&c, REGION, Address::new().set_name("master-ip")).await);
    ok_op(insert_disk(&c, ZONE, Disk::new().set_name("master-pd")).await);
    let mut body = instance("master", ZONE);
    body.network_interfaces[0].access_configs[0].nat_ip = static_ip;
    body.disks[0].initialize_params = body.disks[0]
        .initialize_params
        .take()
        .map(|p| p.set_disk_name("master-boot"));
    body.disks.push(
        AttachedDisk::new()
            .set_source(format!("zones/{ZONE}/disks/master-pd"))
            .set_device_name("master-pd")
            .set_auto_delete(false),
    );
    ok_op(insert_instance(&c, ZONE, body).await);
    assert!(
        get_disk(&c, ZONE, "master-boot").await.is_ok(),
        "diskName names the boot disk"
    );
    let in_use = c
        .disks
        .delete()
        .set_project(P)
        .set_zone(ZONE)
        .set_disk("master-pd")
        .send()
        .await;
    assert_eq!(failure(in_use), (Code::InvalidArgument, 400));

    ok_op(
        c.instances
            .delete()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master")
            .poller()
            .until_done()
            .await,
    );
    assert_eq!(failure(get_instance(&c, ZONE, "master").await), (Code::NotFound, 404));
    assert_eq!(failure(get_disk(&c, ZONE, "master-boot").await), (Code::NotFound, 404));
    let pd = get_disk(&c, ZONE, "master-pd")
        .await
        .expect("autoDelete=false keeps the disk");
    assert!(pd.users.is_empty());
    let ip = get_address(&c, REGION, "master-ip").await.expect("address");
    assert_eq!(ip.status, Some(model::address::Status::Reserved));
    assert!(ip.users.is_empty());
    let missing = c
        .instances
        .delete()
        .set_project(P)
        .set_zone(ZONE)
        .set_instance("master")
        .send()
        .await;
    assert_eq!(failure(missing), (Code::NotFound, 404));
}

#[tokio::test]
async fn aggregated_lists_span_every_zone() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, "us-central1-a", instance("master", "us-central1-a")).await);
    ok_op(insert_instance(&c, OTHER_ZONE, instance("master-x1z", OTHER_ZONE)).await);
    ok_op(insert_disk(&c, OTHER_ZONE, Disk::new().set_name("master-x1z-pd")).await);
    let all = c
        .instances
        .aggregated_list()
        .set_project(P)
        .send()
        .await
        .expect("aggregated instances");
    let count = |zone: &str| all.items.get(&format!("zones/{zone}")).map(|s| s.instances.len());
    assert_eq!(count("us-central1-a"), Some(1));
    assert_eq!(count(OTHER_ZONE), Some(1));
    assert_eq!(count("asia-east1-a"), Some(0));
    assert!(all.items["zones/asia-east1-a"].warning.is_some());
    let total: usize = all.items.values().map(|s| s.instances.len()).sum();
    assert_eq!(total, 2);

    let disks = c
        .disks
        .aggregated_list()
        .set_project(P)
        .send()
        .await
        .expect("aggregated disks");
    let names: Vec<String> = disks
        .items
        .values()
        .flat_map(|s| s.disks.iter().filter_map(|d| d.name.clone()))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(disks.items[&format!("zones/{OTHER_ZONE}")].disks.len(), 2);
}

#[tokio::test]
async fn regional_resources_used_from_another_region_are_refused() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let static_ip = reserve(&c, REGION, Address::new().set_name("master-ip")).await;
    let internal_ip = reserve(&c, REGION, internal("master-internal")).await;

    let mut nat_elsewhere = instance("master", OTHER_ZONE);
    nat_elsewhere.network_interfaces[0].access_configs[0].nat_ip = Some(static_ip.clone());
    assert_eq!(
        failure(insert_instance(&c, OTHER_ZONE, nat_elsewhere).await),
        (Code::InvalidArgument, 400)
    );
    let mut internal_elsewhere = instance("master", OTHER_ZONE);
    internal_elsewhere.network_interfaces[0].network_ip = Some(internal_ip);
    assert_eq!(
        failure(insert_instance(&c, OTHER_ZONE, internal_elsewhere).await),
        (Code::InvalidArgument, 400)
    );

    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
    let url = format!("projects/{P}/zones/{ZONE}/instances/master");
    let pool_elsewhere = c
        .target_pools
        .insert()
        .set_project(P)
        .set_region(OTHER_REGION)
        .set_body(TargetPool::new().set_name("master").set_instances([url.clone()]))
        .poller()
        .until_done()
        .await;
    assert_eq!(failure(pool_elsewhere), (Code::InvalidArgument, 400));
    ok_op(
        c.target_pools
            .insert()
            .set_project(P)
            .set_region(OTHER_REGION)
            .set_body(TargetPool::new().set_name("master"))
            .poller()
            .until_done()
            .await,
    );
    let add_elsewhere = c
        .target_pools
        .add_instance()
        .set_project(P)
        .set_region(OTHER_REGION)
        .set_target_pool("master")
        .set_body(TargetPoolsAddInstanceRequest::new().set_instances([InstanceReference::new().set_instance(url)]))
        .send()
        .await;
    assert_eq!(failure(add_elsewhere), (Code::InvalidArgument, 400));
    let rule_elsewhere = c
        .forwarding_rules
        .insert()
        .set_project(P)
        .set_region(OTHER_REGION)
        .set_body(
            ForwardingRule::new()
                .set_name("master")
                .set_ip_address(static_ip)
                .set_ip_protocol("TCP")
                .set_port_range("443")
                .set_target(format!("regions/{OTHER_REGION}/targetPools/master")),
        )
        .send()
        .await;
    assert_eq!(failure(rule_elsewhere), (Code::InvalidArgument, 400));
}

#[tokio::test]
async fn resources_in_use_cannot_be_deleted() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let static_ip = Some(reserve(&c, REGION, Address::new().set_name("master-ip")).await);
    ok_op(insert_address(&c, REGION, Address::new().set_name("lb-ip")).await);
    let mut body = instance("master", ZONE);
    body.network_interfaces[0].access_configs[0].nat_ip = static_ip;
    ok_op(insert_instance(&c, ZONE, body).await);
    let delete_address = |name: &'static str| {
        c.addresses
            .delete()
            .set_project(P)
            .set_region(REGION)
            .set_address(name)
            .send()
    };
    let msg = message(delete_address("master-ip").await);
    assert!(msg.contains("already being used by"), "{msg}");
    assert_eq!(failure(delete_address("master-ip").await), (Code::InvalidArgument, 400));

    ok_op(
        c.target_pools
            .insert()
            .set_project(P)
            .set_region(REGION)
            .set_body(TargetPool::new().set_name("master"))
            .poller()
            .until_done()
            .await,
    );
    ok_op(
        c.forwarding_rules
            .insert()
            .set_project(P)
            .set_region(REGION)
            .set_body(
                ForwardingRule::new()
                    .set_name("master")
                    .set_ip_address(format!("regions/{REGION}/addresses/lb-ip"))
                    .set_ip_protocol("TCP")
                    .set_port_range("443")
                    .set_target(format!("regions/{REGION}/targetPools/master")),
            )
            .poller()
            .until_done()
            .await,
    );
    let lb_ip = get_address(&c, REGION, "lb-ip").await.expect("lb ip");
    assert_eq!(lb_ip.status, Some(model::address::Status::InUse));
    assert!(lb_ip.users[0].ends_with("/forwardingRules/master"));
    let rule = c
        .forwarding_rules
        .get()
        .set_project(P)
        .set_region(REGION)
        .set_forwarding_rule("master")
        .send()
        .await
        .expect("rule");
    assert_eq!(rule.ip_address, lb_ip.address);
    let rules = c
        .forwarding_rules
        .list()
        .set_project(P)
        .set_region(REGION)
        .send()
        .await
        .expect("rules");
    assert_eq!(rules.items.len(), 1);
    assert_eq!(rule.port_range.as_deref(), Some("443-443"));
    assert_eq!(failure(delete_address("lb-ip").await), (Code::InvalidArgument, 400));
    let pool_in_use = c
        .target_pools
        .delete()
        .set_project(P)
        .set_region(REGION)
        .set_target_pool("master")
        .send()
        .await;
    assert_eq!(failure(pool_in_use), (Code::InvalidArgument, 400));
    // a second rule cannot take an address in use
    let second = c
        .forwarding_rules
        .insert()
        .set_project(P)
        .set_region(REGION)
        .set_body(
            ForwardingRule::new()
                .set_name("again")
                .set_ip_address(lb_ip.address.clone().unwrap_or_default())
                .set_target(format!("regions/{REGION}/targetPools/master")),
        )
        .send()
        .await;
    assert_eq!(failure(second), (Code::InvalidArgument, 400));

    ok_op(
        c.forwarding_rules
            .delete()
            .set_project(P)
            .set_region(REGION)
            .set_forwarding_rule("master")
            .poller()
            .until_done()
            .await,
    );
    let lb_ip = get_address(&c, REGION, "lb-ip").await.expect("lb ip");
    assert_eq!(lb_ip.status, Some(model::address::Status::Reserved));
    ok_op(delete_address("lb-ip").await);
    let rules = c
        .forwarding_rules
        .list()
        .set_project(P)
        .set_region(REGION)
        .send()
        .await
        .expect("rules");
    assert!(rules.items.is_empty());

    // the pool is free once the rule is gone
    let pools = || c.target_pools.list().set_project(P).set_region(REGION).send();
    assert_eq!(pools().await.expect("pools").items.len(), 1);
    ok_op(
        c.target_pools
            .delete()
            .set_project(P)
            .set_region(REGION)
            .set_target_pool("master")
            .poller()
            .until_done()
            .await,
    );
    assert!(pools().await.expect("pools").items.is_empty());
    let gone = c
        .target_pools
        .get()
        .set_project(P)
        .set_region(REGION)
        .set_target_pool("master")
        .send()
        .await;
    assert_eq!(failure(gone), (Code::NotFound, 404));
}

#[tokio::test]
async fn stale_metadata_fingerprints_are_refused_with_412() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
    let first = get_instance(&c, ZONE, "master")
        .await
        .expect("vm")
        .metadata
        .expect("md");
    let set_metadata = |md: Metadata| {
        c.instances
            .set_metadata()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master")
            .set_body(md)
            .poller()
            .until_done()
    };
    let items = [model::metadata::Items::new().set_key("lock").set_value("me")];
    let update = Metadata::new()
        .set_or_clear_fingerprint(first.fingerprint.clone())
        .set_items(items.clone());
    ok_op(set_metadata(update.clone()).await);
    let second = get_instance(&c, ZONE, "master")
        .await
        .expect("vm")
        .metadata
        .expect("md");
    assert_ne!(second.fingerprint, first.fingerprint, "fingerprint changes on update");
    assert_eq!(second.items[0].key.as_deref(), Some("lock"));
    assert_eq!(failure(set_metadata(update).await), (Code::FailedPrecondition, 412));
    let without = Metadata::new().set_items(items.clone());
    assert_eq!(failure(set_metadata(without).await), (Code::FailedPrecondition, 412));

    // project metadata: the same rule
    let project = c.projects.get().set_project(P).send().await.expect("project");
    assert_eq!(project.name.as_deref(), Some(P));
    let common = project.common_instance_metadata.expect("common metadata");
    let set_common = |md: Metadata| {
        c.projects
            .set_common_instance_metadata()
            .set_project(P)
            .set_body(md)
            .poller()
            .until_done()
    };
    let update = Metadata::new()
        .set_or_clear_fingerprint(common.fingerprint.clone())
        .set_items(items.clone());
    let op = ok_op(set_common(update.clone()).await);
    assert_eq!(op.operation_type.as_deref(), Some("setCommonInstanceMetadata"));
    let after = c
        .projects
        .get()
        .set_project(P)
        .send()
        .await
        .expect("project")
        .common_instance_metadata
        .expect("md");
    assert_eq!(after.items.len(), 1);
    assert_ne!(after.fingerprint, common.fingerprint);
    assert_eq!(failure(set_common(update).await), (Code::FailedPrecondition, 412));
    assert_eq!(
        failure(set_common(Metadata::new().set_items(items)).await),
        (Code::FailedPrecondition, 412)
    );
}

#[tokio::test]
async fn labels_are_set_with_the_label_fingerprint() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
    let vm = get_instance(&c, ZONE, "master").await.expect("vm");
    let set_labels = |vm: &Instance| {
        c.instances
            .set_labels()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master")
            .set_body(
                InstancesSetLabelsRequest::new()
                    .set_or_clear_label_fingerprint(vm.label_fingerprint.clone())
                    .set_labels([("replica", "yes")]),
            )
            .poller()
            .until_done()
    };
    ok_op(set_labels(&vm).await);
    let after = get_instance(&c, ZONE, "master").await.expect("vm");
    assert_eq!(after.labels.get("replica").map(String::as_str), Some("yes"));
    assert_ne!(after.label_fingerprint, vm.label_fingerprint);
    assert_eq!(failure(set_labels(&vm).await), (Code::FailedPrecondition, 412));
}

#[tokio::test]
async fn an_injected_http_error_fails_the_call_without_effect() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    emu.fault(json!({"method": "POST", "path_contains": "/global/firewalls",
        "action": {"kind": "http_error", "code": 503, "message": "backend is down"}}))
        .await;
    let insert = || {
        c.firewalls
            .insert()
            .set_project(P)
            .set_body(firewall("master-https"))
            .poller()
            .until_done()
    };
    let e = insert().await.expect_err("fault");
    assert_eq!(e.http_status_code(), Some(503));
    assert_eq!(e.status().map(|s| s.code), Some(Code::Unavailable));
    assert_eq!(e.status().map(|s| s.message.as_str()), Some("backend is down"));
    let list = c.firewalls.list().set_project(P).send().await.expect("list");
    assert!(list.items.is_empty(), "no effect");
    assert_eq!(emu.faults().await, json!([]), "consumed");
    ok_op(insert().await);
}

#[tokio::test]
async fn an_injected_operation_error_ends_done_with_error_and_no_effect() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    emu.fault(json!({"path_contains": "/instances", "method": "post",
        "action": {"kind": "operation_error", "code": "QUOTA_EXCEEDED",
                   "message": "Quota 'CPUS' exceeded", "http_status": 403}}))
        .await;
    let op = insert_instance(&c, ZONE, instance("master", ZONE))
        .await
        .expect("the client returns Ok for a DONE operation with an error");
    assert_eq!(op.status, Some(model::operation::Status::Done));
    let error = op.error.as_ref().expect("operation error");
    assert_eq!(error.errors[0].code.as_deref(), Some("QUOTA_EXCEEDED"));
    assert_eq!(error.errors[0].message.as_deref(), Some("Quota 'CPUS' exceeded"));
    assert_eq!(op.http_error_status_code, Some(403));
    assert!(op.http_error_message.is_some());
    assert_eq!(failure(get_instance(&c, ZONE, "master").await), (Code::NotFound, 404));
    assert_eq!(failure(get_disk(&c, ZONE, "master").await), (Code::NotFound, 404));
    // the name is free again
    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
}

#[tokio::test]
async fn operations_go_pending_running_done_with_latency() {
    let emu = Emulator::start(&["--op-latency-ms", "250"]);
    let c = emu.clients().await;
    // global
    let op = c
        .firewalls
        .insert()
        .set_project(P)
        .set_body(firewall("master-https"))
        .send()
        .await
        .expect("accepted");
    assert_eq!(op.status, Some(model::operation::Status::Pending));
    let name = op.name.clone().expect("op name");
    let polled = c
        .firewalls
        .get_operation()
        .set_project(P)
        .set_operation(name.clone())
        .send()
        .await
        .expect("op");
    assert_eq!(polled.status, Some(model::operation::Status::Running));
    let not_yet = c
        .firewalls
        .get()
        .set_project(P)
        .set_firewall("master-https")
        .send()
        .await;
    assert_eq!(failure(not_yet), (Code::NotFound, 404), "appears only when DONE");
    let conflict = c
        .firewalls
        .insert()
        .set_project(P)
        .set_body(firewall("master-https"))
        .send()
        .await;
    assert_eq!(failure(conflict), (Code::AlreadyExists, 409), "pending names conflict");
    let waited = c
        .global_operations
        .wait()
        .set_project(P)
        .set_operation(name.clone())
        .send()
        .await
        .expect("wait");
    assert_eq!(waited.status, Some(model::operation::Status::Done));
    assert!(waited.end_time.is_some());
    c.firewalls
        .get()
        .set_project(P)
        .set_firewall("master-https")
        .send()
        .await
        .expect("exists once DONE");

    // zonal: the poller observes RUNNING then DONE; the op is only found in its own zone
    let op = c
        .instances
        .insert()
        .set_project(P)
        .set_zone(ZONE)
        .set_body(instance("master", ZONE))
        .send()
        .await
        .expect("accepted");
    let name = op.name.clone().expect("op name");
    assert!(
        op.zone
            .as_deref()
            .is_some_and(|z| z.ends_with(&format!("/zones/{ZONE}")))
    );
    let running = c
        .zone_operations
        .get()
        .set_project(P)
        .set_zone(ZONE)
        .set_operation(name.clone())
        .send()
        .await
        .expect("zonal op");
    assert_eq!(running.status, Some(model::operation::Status::Running));
    let elsewhere = c
        .zone_operations
        .get()
        .set_project(P)
        .set_zone(OTHER_ZONE)
        .set_operation(name.clone())
        .send()
        .await;
    assert_eq!(failure(elsewhere), (Code::NotFound, 404));
    let global = c
        .global_operations
        .get()
        .set_project(P)
        .set_operation(name.clone())
        .send()
        .await;
    assert_eq!(failure(global), (Code::NotFound, 404));
    let disk_name_taken = c
        .disks
        .insert()
        .set_project(P)
        .set_zone(ZONE)
        .set_body(Disk::new().set_name("master"))
        .send()
        .await;
    assert_eq!(
        failure(disk_name_taken),
        (Code::AlreadyExists, 409),
        "the boot disk name is claimed"
    );
    let done = poll_until_done(&c, ZONE, &name).await;
    assert_eq!(done.status, Some(model::operation::Status::Done));
    assert_eq!(
        get_instance(&c, ZONE, "master").await.expect("vm").status,
        Some(model::instance::Status::Running)
    );
    let op = c
        .instances
        .delete()
        .set_project(P)
        .set_zone(ZONE)
        .set_instance("master")
        .send()
        .await
        .expect("accepted");
    let waited = c
        .zone_operations
        .wait()
        .set_project(P)
        .set_zone(ZONE)
        .set_operation(op.name.expect("name"))
        .send()
        .await
        .expect("wait");
    assert_eq!(waited.status, Some(model::operation::Status::Done));
    assert_eq!(failure(get_instance(&c, ZONE, "master").await), (Code::NotFound, 404));

    // regional: a delete makes the resource disappear only when DONE
    ok_op(insert_address(&c, REGION, Address::new().set_name("ip")).await);
    let op = c
        .addresses
        .delete()
        .set_project(P)
        .set_region(REGION)
        .set_address("ip")
        .send()
        .await
        .expect("accepted");
    assert!(get_address(&c, REGION, "ip").await.is_ok(), "still there while RUNNING");
    let waited = c
        .region_operations
        .wait()
        .set_project(P)
        .set_region(REGION)
        .set_operation(op.name.expect("name"))
        .send()
        .await
        .expect("wait");
    assert_eq!(waited.status, Some(model::operation::Status::Done));
    assert_eq!(failure(get_address(&c, REGION, "ip").await), (Code::NotFound, 404));
}

/// Poll a zonal operation with `instances.getOperation` until DONE (at most 10 s).
async fn poll_until_done(c: &Clients, zone: &str, name: &str) -> Operation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let op = c
            .instances
            .get_operation()
            .set_project(P)
            .set_zone(zone)
            .set_operation(name)
            .send()
            .await
            .expect("operation get");
        if op.status == Some(model::operation::Status::Done) {
            return op;
        }
        assert!(tokio::time::Instant::now() < deadline, "operation never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stalled_and_delayed_operations() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    emu.fault(json!({"path_contains": "/disks", "action": {"kind": "stall_operation"}}))
        .await;
    let op = c
        .disks
        .insert()
        .set_project(P)
        .set_zone(ZONE)
        .set_body(Disk::new().set_name("stuck"))
        .send()
        .await
        .expect("accepted");
    assert_eq!(op.status, Some(model::operation::Status::Pending));
    let stuck = tokio::time::timeout(
        Duration::from_millis(300),
        c.disks
            .insert()
            .set_project(P)
            .set_zone(ZONE)
            .set_body(Disk::new().set_name("other"))
            .poller()
            .until_done(),
    )
    .await;
    assert!(stuck.is_ok(), "the fault was consumed by the first call");
    let still = c
        .zone_operations
        .get()
        .set_project(P)
        .set_zone(ZONE)
        .set_operation(op.name.clone().expect("name"))
        .send()
        .await
        .expect("op");
    assert_eq!(still.status, Some(model::operation::Status::Running));
    assert_eq!(failure(get_disk(&c, ZONE, "stuck").await), (Code::NotFound, 404));
    let state = emu.state().await;
    assert_eq!(
        state["projects"][P]["pendingOperations"].as_array().map(Vec::len),
        Some(1)
    );

    emu.fault(json!({"path_contains": "/firewalls", "action": {"kind": "delay", "ms": 300}}))
        .await;
    let started = tokio::time::Instant::now();
    let op = c
        .firewalls
        .insert()
        .set_project(P)
        .set_body(firewall("slow"))
        .send()
        .await
        .expect("accepted");
    assert_eq!(op.status, Some(model::operation::Status::Pending), "returned at once");
    let waited = c
        .global_operations
        .wait()
        .set_project(P)
        .set_operation(op.name.expect("name"))
        .send()
        .await
        .expect("wait");
    assert_eq!(waited.status, Some(model::operation::Status::Done));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // a delay on a read delays its response
    emu.fault(json!({"method": "GET", "path_contains": "/firewalls/slow",
        "action": {"kind": "delay", "ms": 200}}))
        .await;
    let started = tokio::time::Instant::now();
    c.firewalls
        .get()
        .set_project(P)
        .set_firewall("slow")
        .send()
        .await
        .expect("slow get");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn moving_the_static_ip_between_access_configs() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let n = emu.ip_block;
    let static_ip = reserve(&c, REGION, Address::new().set_name("master-ip")).await;
    let mut body = instance("master", ZONE);
    body.network_interfaces[0].access_configs[0].nat_ip = Some(static_ip.clone());
    ok_op(insert_instance(&c, ZONE, body).await);

    let delete_config = || {
        c.instances
            .delete_access_config()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master")
            .set_access_config("External NAT")
            .set_network_interface("nic0")
            .poller()
            .until_done()
    };
    let op = ok_op(delete_config().await);
    assert_eq!(op.operation_type.as_deref(), Some("deleteAccessConfig"));
    let vm = get_instance(&c, ZONE, "master").await.expect("vm");
    assert!(vm.network_interfaces[0].access_configs.is_empty());
    let address = get_address(&c, REGION, "master-ip").await.expect("address");
    assert_eq!(address.status, Some(model::address::Status::Reserved));
    assert!(address.users.is_empty());
    assert_eq!(failure(delete_config().await), (Code::InvalidArgument, 400));

    let add_config = |config: AccessConfig| {
        c.instances
            .add_access_config()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master")
            .set_network_interface("nic0")
            .set_body(config)
            .poller()
            .until_done()
    };
    ok_op(add_config(AccessConfig::new().set_name("External NAT")).await);
    let ephemeral = nat_ip(&get_instance(&c, ZONE, "master").await.expect("vm")).expect("nat ip");
    assert_ne!(ephemeral, static_ip);
    assert!(ephemeral.starts_with(&format!("198.19.{n}.")), "{ephemeral}");
    let twice = add_config(AccessConfig::new().set_name("second")).await;
    assert_eq!(
        failure(twice),
        (Code::InvalidArgument, 400),
        "one access config per interface"
    );

    // and back: ephemeral out (it vanishes), static in
    ok_op(delete_config().await);
    ok_op(
        add_config(
            AccessConfig::new()
                .set_name("External NAT")
                .set_nat_ip(static_ip.clone()),
        )
        .await,
    );
    let vm = get_instance(&c, ZONE, "master").await.expect("vm");
    assert_eq!(nat_ip(&vm), Some(static_ip));
    let address = get_address(&c, REGION, "master-ip").await.expect("address");
    assert_eq!(address.status, Some(model::address::Status::InUse));
    let unknown_nic = c
        .instances
        .delete_access_config()
        .set_project(P)
        .set_zone(ZONE)
        .set_instance("master")
        .set_access_config("External NAT")
        .set_network_interface("nic7")
        .send()
        .await;
    assert_eq!(failure(unknown_nic), (Code::InvalidArgument, 400));
}

#[tokio::test]
async fn target_pools_add_and_remove_instances() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, "us-central1-a", instance("master", "us-central1-a")).await);
    ok_op(insert_instance(&c, ZONE, instance("master-x1z", ZONE)).await);
    let first = format!("projects/{P}/zones/us-central1-a/instances/master");
    let second = format!("https://www.googleapis.com/compute/v1/projects/{P}/zones/{ZONE}/instances/master-x1z");
    ok_op(
        c.target_pools
            .insert()
            .set_project(P)
            .set_region(REGION)
            .set_body(TargetPool::new().set_name("master").set_instances([first.clone()]))
            .poller()
            .until_done()
            .await,
    );
    let add = |url: String| {
        c.target_pools
            .add_instance()
            .set_project(P)
            .set_region(REGION)
            .set_target_pool("master")
            .set_body(TargetPoolsAddInstanceRequest::new().set_instances([InstanceReference::new().set_instance(url)]))
            .poller()
            .until_done()
    };
    let remove = |url: String| {
        c.target_pools
            .remove_instance()
            .set_project(P)
            .set_region(REGION)
            .set_target_pool("master")
            .set_body(
                TargetPoolsRemoveInstanceRequest::new().set_instances([InstanceReference::new().set_instance(url)]),
            )
            .poller()
            .until_done()
    };
    let members = || async {
        c.target_pools
            .get()
            .set_project(P)
            .set_region(REGION)
            .set_target_pool("master")
            .send()
            .await
            .expect("pool")
            .instances
    };
    ok_op(add(second.clone()).await);
    let now = members().await;
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|m| m.starts_with(&emu.endpoint)), "{now:?}");
    assert_eq!(
        failure(add(first.clone()).await),
        (Code::InvalidArgument, 400),
        "already a member"
    );
    let missing = format!("projects/{P}/zones/{ZONE}/instances/nobody");
    assert_eq!(failure(add(missing.clone()).await), (Code::InvalidArgument, 400));
    ok_op(remove(first.clone()).await);
    let now = members().await;
    assert_eq!(now.len(), 1);
    assert!(now[0].ends_with("/instances/master-x1z"));
    assert_eq!(
        failure(remove(first).await),
        (Code::InvalidArgument, 400),
        "not a member"
    );

    // a member deleted by hand stays listed (like GCE) and can still be removed
    ok_op(
        c.instances
            .delete()
            .set_project(P)
            .set_zone(ZONE)
            .set_instance("master-x1z")
            .poller()
            .until_done()
            .await,
    );
    assert_eq!(members().await.len(), 1);
    ok_op(remove(second).await);
    assert!(members().await.is_empty());
}

#[tokio::test]
async fn a_repeated_request_id_returns_the_same_operation_without_a_second_effect() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let insert = || {
        c.disks
            .insert()
            .set_project(P)
            .set_zone(ZONE)
            .set_request_id("3f1c2a2e-1111-4c5d-9e8f-000000000001")
            .set_body(Disk::new().set_name("master-pd"))
            .send()
    };
    let first = insert().await.expect("first");
    let second = insert().await.expect("retried insert is not a conflict");
    assert_eq!(first.name, second.name);
    assert_eq!(first.id, second.id);
    let list = c.disks.list().set_project(P).set_zone(ZONE).send().await.expect("list");
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn the_call_log_records_every_api_call_and_marks_mutations() {
    let emu = Emulator::start(&["--op-latency-ms", "50"]);
    let c = emu.clients().await;
    let _ = c.projects.get().set_project(P).send().await.expect("project");
    emu.clear_calls().await;

    let missing = c.firewalls.get().set_project(P).set_firewall("nope").send().await;
    assert_eq!(failure(missing), (Code::NotFound, 404));
    let op = c
        .firewalls
        .insert()
        .set_project(P)
        .set_body(firewall("master-https"))
        .send()
        .await
        .expect("insert");
    c.global_operations
        .wait()
        .set_project(P)
        .set_operation(op.name.expect("name"))
        .send()
        .await
        .expect("wait");
    let _ = c.firewalls.list().set_project(P).send().await.expect("list");
    ok_op(
        c.firewalls
            .delete()
            .set_project(P)
            .set_firewall("master-https")
            .poller()
            .until_done()
            .await,
    );
    let dup = c
        .firewalls
        .delete()
        .set_project(P)
        .set_firewall("master-https")
        .send()
        .await;
    assert_eq!(failure(dup), (Code::NotFound, 404));

    let calls = emu.calls().await;
    let summary: Vec<(String, bool, u64)> = calls
        .iter()
        .map(|c| {
            (
                c["method"].as_str().unwrap_or("?").to_string(),
                c["mutating"].as_bool().unwrap_or(false),
                c["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(summary[0], ("GET".into(), false, 404));
    assert_eq!(summary[1], ("POST".into(), true, 200));
    assert_eq!(
        summary[2],
        ("POST".into(), false, 200),
        "operations wait is not a mutation"
    );
    assert!(calls[2]["path"].as_str().is_some_and(|p| p.ends_with("/wait")));
    assert_eq!(summary[3], ("GET".into(), false, 200));
    assert_eq!(summary[4], ("DELETE".into(), true, 200));
    assert_eq!(summary.last(), Some(&("DELETE".into(), true, 404)));
    assert!(calls[1]["path"] == json!(format!("/compute/v1/projects/{P}/global/firewalls")));
    assert!(calls[1]["query"].as_str().is_some_and(|q| q.contains("$alt=json")));
    let mutating = emu.mutating_calls().await;
    assert_eq!(mutating.len(), 3, "{mutating:?}");
    emu.clear_calls().await;
    assert!(emu.calls().await.is_empty());
}

#[tokio::test]
async fn crashing_a_vm_keeps_its_gce_record() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
    let (status, body) = emu.crash(ZONE, "master").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"], P);
    assert_eq!(
        get_instance(&c, ZONE, "master").await.expect("vm").status,
        Some(model::instance::Status::Running)
    );
    let (status, _) = emu.crash(ZONE, "nobody").await;
    assert_eq!(status, 404);
    assert!(
        emu.calls()
            .await
            .iter()
            .all(|c| !c["path"].as_str().unwrap_or("").starts_with("/_emulator"))
    );
}

#[tokio::test]
async fn lists_page_and_filter_like_gce() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    for name in ["a-https", "b-etcd", "c-https"] {
        ok_op(
            c.firewalls
                .insert()
                .set_project(P)
                .set_body(firewall(name))
                .poller()
                .until_done()
                .await,
        );
    }
    let page1 = c
        .firewalls
        .list()
        .set_project(P)
        .set_max_results(2_u32)
        .send()
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 2);
    let token = page1.next_page_token.clone().expect("more pages");
    let page2 = c
        .firewalls
        .list()
        .set_project(P)
        .set_max_results(2_u32)
        .set_page_token(token)
        .send()
        .await
        .expect("page 2");
    assert_eq!(page2.items.len(), 1);
    assert!(page2.next_page_token.is_none());
    let https = c
        .firewalls
        .list()
        .set_project(P)
        .set_filter("name eq .*-https")
        .send()
        .await
        .expect("filtered");
    assert_eq!(https.items.len(), 2);
    let not = c
        .firewalls
        .list()
        .set_project(P)
        .set_filter("(name != b-etcd) (priority = 1000)")
        .send()
        .await
        .expect("filtered");
    assert_eq!(not.items.len(), 2);
    let bad = c.firewalls.list().set_project(P).set_filter("name eq (").send().await;
    assert_eq!(failure(bad), (Code::InvalidArgument, 400));
}

// ---------------------------------------------------------------------------------------------
// Metadata rules, the call log's metadataKeysChanged, per-method latencies, setDiskAutoDelete,
// batch requests

fn item(key: &str, value: &str) -> model::metadata::Items {
    model::metadata::Items::new().set_key(key).set_value(value)
}

/// `instances.setMetadata` of `master` in ZONE, waited for.
async fn set_instance_metadata(c: &Clients, md: Metadata) -> Result<Operation> {
    let call = c.instances.set_metadata().set_project(P).set_zone(ZONE);
    call.set_instance("master").set_body(md).poller().until_done().await
}

/// `projects.setCommonInstanceMetadata`, waited for.
async fn set_project_metadata(c: &Clients, md: Metadata) -> Result<Operation> {
    let call = c.projects.set_common_instance_metadata().set_project(P);
    call.set_body(md).poller().until_done().await
}

async fn instance_metadata(c: &Clients) -> Metadata {
    let vm = get_instance(c, ZONE, "master").await.expect("vm");
    vm.metadata.expect("metadata")
}

async fn project_metadata(c: &Clients) -> Metadata {
    let project = c.projects.get().set_project(P).send().await.expect("project");
    project.common_instance_metadata.expect("metadata")
}

/// `items`, written over `current` with its fingerprint.
fn over(current: &Metadata, items: Vec<model::metadata::Items>) -> Metadata {
    Metadata::new()
        .set_or_clear_fingerprint(current.fingerprint.clone())
        .set_items(items)
}

#[tokio::test]
async fn metadata_writes_need_the_current_fingerprint_even_over_empty_metadata() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_instance(&c, ZONE, instance("master", ZONE).set_metadata(Metadata::new())).await);
    assert!(instance_metadata(&c).await.items.is_empty());
    let without = Metadata::new().set_items([item("a", "b")]);
    assert_eq!(
        failure(set_instance_metadata(&c, without.clone()).await),
        (Code::FailedPrecondition, 412)
    );
    assert_eq!(
        failure(set_project_metadata(&c, without).await),
        (Code::FailedPrecondition, 412)
    );
    assert!(project_metadata(&c).await.items.is_empty());

    // with the fingerprint: the item list is replaced whole
    let current = instance_metadata(&c).await;
    ok_op(set_instance_metadata(&c, over(&current, vec![item("a", "1"), item("b", "2")])).await);
    let current = instance_metadata(&c).await;
    ok_op(set_instance_metadata(&c, over(&current, vec![item("c", "3")])).await);
    let keys: Vec<Option<String>> = instance_metadata(&c).await.items.into_iter().map(|i| i.key).collect();
    assert_eq!(keys, [Some("c".to_string())]);
}

#[tokio::test]
async fn metadata_over_gce_size_limits_is_refused_with_413_and_changes_nothing() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let big = |n: usize| "v".repeat(n);
    let oversized = instance("master", ZONE).set_metadata(Metadata::new().set_items([item("kube-env", &big(262_145))]));
    let refused = insert_instance(&c, ZONE, oversized).await;
    assert_eq!(failure(refused), (Code::InvalidArgument, 413));
    assert_eq!(failure(get_instance(&c, ZONE, "master").await), (Code::NotFound, 404));

    ok_op(insert_instance(&c, ZONE, instance("master", ZONE)).await);
    let current = instance_metadata(&c).await;
    let at_limit = over(&current, vec![item("kube-env", &big(262_144))]);
    ok_op(set_instance_metadata(&c, at_limit).await);
    let current = instance_metadata(&c).await;
    let value_too_big = over(&current, vec![item("a", "1"), item("kube-env", &big(262_145))]);
    let r = set_instance_metadata(&c, value_too_big).await;
    assert_eq!(
        message(r),
        "Value for field 'metadata.items[1].value' is too large: maximum size 262144 character(s); actual size 262145."
    );
    let total_too_big = over(
        &current,
        vec![item("a", &big(262_144)), item("b", &big(262_144)), item("c", "x")],
    );
    assert_eq!(
        failure(set_instance_metadata(&c, total_too_big).await),
        (Code::InvalidArgument, 413)
    );
    let bad_key = over(&current, vec![item("no spaces", "x")]);
    assert_eq!(
        failure(set_instance_metadata(&c, bad_key).await),
        (Code::InvalidArgument, 400)
    );
    let project = project_metadata(&c).await;
    let r = set_project_metadata(&c, over(&project, vec![item("lock", &big(262_145))])).await;
    assert_eq!(failure(r), (Code::InvalidArgument, 413));
    assert_eq!(
        instance_metadata(&c).await.fingerprint,
        current.fingerprint,
        "nothing changed"
    );
    assert!(project_metadata(&c).await.items.is_empty());
}

#[tokio::test]
async fn the_call_log_names_the_metadata_keys_each_write_changed_and_nothing_for_refused_ones() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let alice = "alice:ssh-ed25519 AAAA alice";
    let vm = instance("master", ZONE).set_metadata(Metadata::new().set_items([
        item("kube-env", "A: 'b'\n"),
        item("ssh-keys", alice),
        item("user-data", "#cloud-config"),
    ]));
    ok_op(insert_instance(&c, ZONE, vm).await);
    emu.clear_calls().await;

    let before = instance_metadata(&c).await;
    let mut items = before.items.clone();
    items[1] = item("ssh-keys", &format!("{alice}\nkube-ha:ssh-ed25519 BBBB google-ssh"));
    ok_op(set_instance_metadata(&c, over(&before, items.clone())).await);
    // stale fingerprint: refused, nothing changed
    assert_eq!(
        failure(set_instance_metadata(&c, over(&before, vec![])).await),
        (Code::FailedPrecondition, 412)
    );
    // the same items again: accepted, nothing changed
    let now = instance_metadata(&c).await;
    ok_op(set_instance_metadata(&c, over(&now, items)).await);
    // an injected operation error: nothing changed
    emu.fault(
        json!({"path_contains": "/setMetadata", "action": {"kind": "operation_error", "code": "INTERNAL_ERROR"}}),
    )
    .await;
    let now = instance_metadata(&c).await;
    let op = set_instance_metadata(&c, over(&now, vec![])).await.expect("accepted");
    assert!(op.error.is_some(), "{op:?}");
    // project metadata: one key added
    let project = project_metadata(&c).await;
    ok_op(set_project_metadata(&c, over(&project, vec![item("kube-ha-lock", "me")])).await);
    // a write whose operation is still running has changed nothing yet
    emu.set_latency(json!({"methods": {"instances.setMetadata": 600_000}}))
        .await;
    let now = instance_metadata(&c).await;
    let call = c
        .instances
        .set_metadata()
        .set_project(P)
        .set_zone(ZONE)
        .set_instance("master");
    let pending = call.set_body(over(&now, vec![])).send().await.expect("accepted");
    assert_eq!(pending.status, Some(model::operation::Status::Pending));

    let keys = emu.metadata_keys_changed().await;
    let expected: Vec<Vec<&str>> = vec![vec!["ssh-keys"], vec![], vec![], vec![], vec!["kube-ha-lock"], vec![]];
    assert_eq!(keys, expected);
    let other_calls: Vec<Value> = emu.calls().await.into_iter().filter(|c| c["method"] == "GET").collect();
    assert!(other_calls.iter().all(|c| c.get("metadataKeysChanged").is_none()));
}

#[tokio::test]
async fn operation_latencies_apply_per_collection_and_method_and_change_at_run_time() {
    let emu = Emulator::start(&["--op-latency", "instances.insert=600000"]);
    let c = emu.clients().await;
    let status = |op: Operation| op.status.expect("status");
    let disk = |name: &str| Disk::new().set_name(name);
    let send_disk = |name: &str| {
        c.disks
            .insert()
            .set_project(P)
            .set_zone(ZONE)
            .set_body(disk(name))
            .send()
    };
    let send_vm = |name: &str| {
        let body = Instance::new().set_name(name);
        c.instances.insert().set_project(P).set_zone(ZONE).set_body(body).send()
    };
    assert_eq!(
        status(send_disk("d1").await.expect("d1")),
        model::operation::Status::Done
    );
    assert_eq!(
        status(send_vm("vm1").await.expect("vm1")),
        model::operation::Status::Pending
    );
    let table = emu.set_latency(json!({})).await;
    assert_eq!(table, json!({"defaultMs": 0, "methods": {"instances.insert": 600_000}}));

    let table = emu
        .set_latency(json!({"methods": {"disks": 600_000, "instances.insert": null}}))
        .await;
    assert_eq!(table, json!({"defaultMs": 0, "methods": {"disks": 600_000}}));
    assert_eq!(
        status(send_disk("d2").await.expect("d2")),
        model::operation::Status::Pending
    );
    assert_eq!(
        status(send_vm("vm2").await.expect("vm2")),
        model::operation::Status::Done
    );
    let firewall_op = c
        .firewalls
        .insert()
        .set_project(P)
        .set_body(firewall("fw"))
        .send()
        .await;
    assert_eq!(
        status(firewall_op.expect("fw")),
        model::operation::Status::Done,
        "the default"
    );

    let http = reqwest::Client::new();
    let url = format!("{}/_emulator/latency", emu.endpoint);
    let typo = http
        .post(&url)
        .json(&json!({"methods": {"disk.insert": 5}}))
        .send()
        .await;
    assert_eq!(typo.expect("reachable").status().as_u16(), 400);
    let reset = http.delete(&url).send().await.expect("reachable");
    let reset: Value = reset.json().await.expect("json");
    assert_eq!(reset, json!({"defaultMs": 0, "methods": {"instances.insert": 600_000}}));
}

#[tokio::test]
async fn set_disk_auto_delete_makes_the_instance_delete_take_its_data_disk() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    ok_op(insert_disk(&c, ZONE, Disk::new().set_name("master-pd")).await);
    let mut vm = instance("master", ZONE);
    vm.disks.push(
        AttachedDisk::new()
            .set_source(format!("zones/{ZONE}/disks/master-pd"))
            .set_device_name("master-pd")
            .set_auto_delete(false),
    );
    ok_op(insert_instance(&c, ZONE, vm).await);
    let auto_delete = |device: &str| {
        let call = c.instances.set_disk_auto_delete().set_project(P).set_zone(ZONE);
        call.set_instance("master")
            .set_device_name(device)
            .set_auto_delete(true)
            .poller()
            .until_done()
    };
    assert_eq!(
        failure(auto_delete("no-such-device").await),
        (Code::InvalidArgument, 400)
    );
    let op = ok_op(auto_delete("master-pd").await);
    assert_eq!(op.operation_type.as_deref(), Some("setDiskAutoDelete"));
    let vm = get_instance(&c, ZONE, "master").await.expect("vm");
    let pd = vm.disks.iter().find(|d| d.device_name.as_deref() == Some("master-pd"));
    assert_eq!(pd.and_then(|d| d.auto_delete), Some(true));
    let delete = c
        .instances
        .delete()
        .set_project(P)
        .set_zone(ZONE)
        .set_instance("master");
    ok_op(delete.poller().until_done().await);
    assert_eq!(failure(get_disk(&c, ZONE, "master-pd").await), (Code::NotFound, 404));
}

/// `GET`/`POST … HTTP/1.1` parts of a batch body, LF line endings as gcloud writes them.
fn batch_body(boundary: &str, requests: &[(&str, &str, &str)]) -> String {
    let mut body = String::new();
    for (i, (method, path, json)) in requests.iter().enumerate() {
        body += &format!(
            "--{boundary}\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\
             Content-ID: <batch-test+{i}>\n\n{method} {path} HTTP/1.1\nContent-Type: application/json\n\
             content-length: {}\n\n{json}\n",
            json.len()
        );
    }
    body + &format!("--{boundary}--")
}

#[tokio::test]
async fn a_batch_request_answers_each_part_in_order_like_the_same_call_alone() {
    let emu = Emulator::start(&[]);
    let c = emu.clients().await;
    let base = format!("/compute/v1/projects/{P}");
    let insert = serde_json::to_string(&json!({"name": "fw", "allowed": [{"IPProtocol": "tcp"}]})).expect("json");
    let body = batch_body(
        "==b==",
        &[
            ("POST", &format!("{base}/global/firewalls"), &insert),
            ("GET", &format!("{base}/global/firewalls/missing"), ""),
            ("GET", &format!("{base}/zones/{ZONE}"), ""),
            ("POST", "/batch/compute/v1", ""),
        ],
    );
    let response = reqwest::Client::new()
        .post(format!("{}/batch/compute/v1", emu.endpoint))
        .header("content-type", "multipart/mixed; boundary=\"==b==\"")
        .body(body)
        .send()
        .await
        .expect("batch reachable");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_string();
    let boundary = content_type.split("boundary=").nth(1).expect("a boundary").to_string();
    let text = response.text().await.expect("body");
    let parts: Vec<&str> = text
        .split(&format!("--{boundary}"))
        .filter(|p| p.contains("HTTP/1.1"))
        .collect();
    let heads: Vec<(bool, &str)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let status = p.split("HTTP/1.1 ").nth(1).and_then(|s| s.get(..3)).unwrap_or("?");
            (p.contains(&format!("Content-ID: <response-batch-test+{i}>")), status)
        })
        .collect();
    assert_eq!(heads, [(true, "200"), (true, "404"), (true, "200"), (true, "404")]);
    assert!(parts[0].contains("\"operationType\":\"insert\""), "{}", parts[0]);
    assert!(parts[1].contains("\"reason\":\"notFound\""), "{}", parts[1]);

    let fw = c
        .firewalls
        .get()
        .set_project(P)
        .set_firewall("fw")
        .send()
        .await
        .expect("created by the batch");
    assert_eq!(fw.allowed[0].ip_protocol.as_deref(), Some("tcp"));
    let logged: Vec<String> = emu
        .calls()
        .await
        .iter()
        .filter_map(|c| Some(format!("{} {}", c["method"].as_str()?, c["path"].as_str()?)))
        .filter(|c| !c.ends_with("/firewalls/fw"))
        .collect();
    let mut logged = logged;
    logged.sort();
    assert_eq!(
        logged,
        [
            format!("GET {base}/global/firewalls/missing"),
            format!("GET {base}/zones/{ZONE}"),
            format!("POST {base}/global/firewalls"),
        ],
        "each part is logged as itself, the envelope and the nested batch are not"
    );
}
