//! Request bodies kube-ha sends, as pure functions: what a master VM looks like in GCE is decided
//! here once, for the executor, the benchmarks' kube-up replay and the sandbox tests alike.
//!
//! - [`replica_instance`]: a first master from kube-ha's settings (kube-up's
//!   `create-master-instance-internal`).
//! - [`replica_of`]: a replica **copied from the existing master** (SPEC §2): its every metadata
//!   item but the per-VM ones, its service account and scopes, tags, labels, network interface
//!   (network, subnetwork, alias IP ranges by range name and size, `canIpForward`), scheduling,
//!   boot disk type; only the per-replica kube-env and kube-master-certs and the VM's own
//!   addresses are its own. kube-up took these from the operator's shell instead, so a replica
//!   added from another checkout differed from its master.
//! - [`firewall`], [`static_address`], [`internal_address`], [`data_disk_body`],
//!   [`target_pool`], [`forwarding_rule`]: the cluster's other resources, as kube-up created them.

use std::net::Ipv4Addr;

use google_cloud_compute_v1::model;

use crate::config::MasterSettings;
use crate::names::{self, EtcdCluster};
use crate::plan::FirewallKind;
use crate::ssh;

/// Name of the access config kube-up (and gcloud) give nic0's external NAT.
pub const ACCESS_CONFIG: &str = "External NAT";

/// Everything that makes one replica VM.
#[derive(Clone, Debug)]
pub struct ReplicaInstanceSpec<'a> {
    /// Project id (for full resource paths).
    pub project: &'a str,
    /// Zone.
    pub zone: &'a str,
    /// VM name.
    pub name: &'a str,
    /// Machine type, disks, image, preemptibility.
    pub settings: &'a MasterSettings,
    /// VPC network name.
    pub network: &'a str,
    /// Network tag (`MASTER_NAME`).
    pub tag: &'a str,
    /// nic0's reserved internal IP.
    pub internal_ip: Ipv4Addr,
    /// The static IP for the first master; `None` for an ephemeral external IP.
    pub nat_ip: Option<Ipv4Addr>,
    /// Metadata items (kube-env, kube-master-certs, cluster-name).
    pub metadata: Vec<(&'static str, String)>,
}

/// The instance body: boot disk from the image (deleted with the VM), the data disk
/// `<name>-pd` attached as `master-pd` (kept), nic0 on the reserved internal IP with an external
/// NAT, the master tag, IP forwarding as kube-up set it.
pub fn replica_instance(vm: &ReplicaInstanceSpec<'_>) -> model::Instance {
    let s = vm.settings;
    let mut inst = model::Instance::default();
    inst.name = Some(vm.name.to_string());
    inst.machine_type = Some(format!("zones/{}/machineTypes/{}", vm.zone, s.machine_type));
    inst.can_ip_forward = Some(true);
    let mut tags = model::Tags::default();
    tags.items = vec![vm.tag.to_string()];
    inst.tags = Some(tags);

    let mut ac = model::AccessConfig::default();
    ac.name = Some(ACCESS_CONFIG.into());
    ac.r#type = Some(model::access_config::Type::OneToOneNat);
    ac.nat_ip = vm.nat_ip.map(|ip| ip.to_string());
    let mut nic = model::NetworkInterface::default();
    nic.network = Some(format!("projects/{}/global/networks/{}", vm.project, vm.network));
    nic.network_ip = Some(vm.internal_ip.to_string());
    nic.access_configs = vec![ac];
    inst.network_interfaces = vec![nic];

    let mut boot_params = model::AttachedDiskInitializeParams::default();
    boot_params.disk_size_gb = Some(i64::try_from(s.root_disk_size_gb).unwrap_or(i64::MAX));
    boot_params.source_image = Some(s.source_image.clone());
    let mut boot = model::AttachedDisk::default();
    boot.boot = Some(true);
    boot.auto_delete = Some(true);
    boot.initialize_params = Some(boot_params);
    inst.disks = vec![boot, data_disk(vm.project, vm.zone, vm.name)];

    let mut scheduling = model::Scheduling::default();
    scheduling.preemptible = Some(s.preemptible);
    scheduling.automatic_restart = Some(!s.preemptible);
    inst.scheduling = Some(scheduling);

    let mut md = model::Metadata::default();
    md.items = vm.metadata.iter().map(|(k, v)| metadata_item(k, v.clone())).collect();
    inst.metadata = Some(md);
    inst
}

/// Metadata items that belong to one VM and are never copied to another: the internal VIP of a
/// private cluster's first master (kube-up's `attach-internal-master-ip`) and the maps
/// [`replica_of`] is given for the new VM. `ssh-keys` is filtered, not dropped ([`per_vm_ssh_keys`]).
pub const PER_VM_ITEMS: [&str; 3] = [
    "kube-master-internal-ip",
    names::METADATA_KUBE_ENV,
    names::METADATA_MASTER_CERTS,
];

/// What a new replica copies: the existing master's instance and its boot disk (the instance
/// names the disk; its type lives on the disk).
#[derive(Clone, Copy, Debug)]
pub struct ExistingMaster<'a> {
    /// The instance as GCE returns it.
    pub instance: &'a model::Instance,
    /// Its boot disk as GCE returns it.
    pub boot_disk: &'a model::Disk,
}

/// What is the new replica's own.
#[derive(Clone, Debug)]
pub struct NewReplica<'a> {
    /// Project id (for full resource paths).
    pub project: &'a str,
    /// Its zone (may differ from the existing master's).
    pub zone: &'a str,
    /// Its VM name.
    pub name: &'a str,
    /// nic0's address (the reserved `<replica>-internal`), or `None` for one GCE picks.
    pub internal_ip: Option<Ipv4Addr>,
    /// Machine type, image, boot disk size, preemptibility: the existing master's as observed,
    /// unless the operator set them explicitly (SPEC §1.1; the planner decides).
    pub settings: &'a MasterSettings,
    /// Its rendered `kube-env`.
    pub kube_env: String,
    /// Its rendered `kube-master-certs`.
    pub master_certs: String,
}

/// The existing master lacks what a copy needs (nothing is invented in its place).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot copy the existing master {master}: it has no {missing}")]
pub struct CopyError {
    /// The existing master.
    pub master: String,
    /// What it lacks.
    pub missing: &'static str,
}

/// An `ssh-keys` (or `sshKeys`) value without kube-ha's own entries: those are per VM and per run
/// (each run adds its own, with an expiry, to the VM it talks to); the operator's are copied, so
/// the new replica lets in whoever the existing master lets in. `None` when nothing is left.
pub fn per_vm_ssh_keys(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split('\n')
        .filter(|line| ssh::parse_entry(line).is_none_or(|e| e.user != names::SSH_USER))
        .collect();
    let text = kept.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

/// `10.64.1.0/24` → `/24`: the size of an alias range, to ask the same secondary range for.
fn alias_size(cidr: &str) -> String {
    match cidr.rsplit_once('/') {
        Some((_, bits)) => format!("/{bits}"),
        None => cidr.to_string(),
    }
}

/// A new replica's instance body, copied from the existing master (see the module doc).
pub fn replica_of(existing: ExistingMaster<'_>, new: &NewReplica<'_>) -> Result<model::Instance, CopyError> {
    let from = existing.instance;
    let master = from.name.clone().unwrap_or_default();
    let missing = |what| CopyError {
        master: master.clone(),
        missing: what,
    };
    let s = new.settings;
    let mut inst = model::Instance::default();
    inst.name = Some(new.name.to_string());
    inst.description = from.description.clone();
    inst.machine_type = Some(format!("zones/{}/machineTypes/{}", new.zone, s.machine_type));
    inst.can_ip_forward = from.can_ip_forward;
    inst.tags = from.tags.as_ref().map(|t| {
        let mut tags = model::Tags::default();
        tags.items = t.items.clone();
        tags
    });
    inst.labels = from.labels.clone();
    inst.service_accounts = from.service_accounts.clone();
    inst.min_cpu_platform = from.min_cpu_platform.clone();
    inst.shielded_instance_config = from.shielded_instance_config.clone();

    let mut scheduling = from.scheduling.clone().unwrap_or_default();
    scheduling.preemptible = Some(s.preemptible);
    if s.preemptible {
        // GCE: a preemptible VM cannot restart automatically or live-migrate.
        scheduling.automatic_restart = Some(false);
        scheduling.on_host_maintenance = Some(model::scheduling::OnHostMaintenance::Terminate);
    }
    inst.scheduling = Some(scheduling);

    if from.network_interfaces.is_empty() {
        return Err(missing("network interface"));
    }
    inst.network_interfaces = from
        .network_interfaces
        .iter()
        .enumerate()
        .map(|(i, nic)| {
            let mut copy = model::NetworkInterface::default();
            copy.network = nic.network.clone();
            copy.subnetwork = nic.subnetwork.clone();
            copy.nic_type = nic.nic_type.clone();
            copy.stack_type = nic.stack_type.clone();
            copy.network_ip = if i == 0 {
                new.internal_ip.map(|ip| ip.to_string())
            } else {
                None
            };
            copy.alias_ip_ranges = nic
                .alias_ip_ranges
                .iter()
                .map(|r| {
                    let mut range = model::AliasIpRange::default();
                    range.ip_cidr_range = r.ip_cidr_range.as_deref().map(alias_size);
                    range.subnetwork_range_name = r.subnetwork_range_name.clone();
                    range
                })
                .collect();
            // An ephemeral external IP where the master has one (the static IP is the load
            // balancer's, never copied).
            copy.access_configs = nic
                .access_configs
                .iter()
                .map(|ac| {
                    let mut eph = model::AccessConfig::default();
                    eph.name = Some(ac.name.clone().unwrap_or_else(|| ACCESS_CONFIG.to_string()));
                    eph.r#type = Some(model::access_config::Type::OneToOneNat);
                    eph.network_tier = ac.network_tier.clone();
                    eph
                })
                .collect();
            copy
        })
        .collect();

    let boot_attached = from
        .disks
        .iter()
        .find(|d| d.boot == Some(true))
        .ok_or_else(|| missing("boot disk"))?;
    let mut params = model::AttachedDiskInitializeParams::default();
    params.source_image = Some(s.source_image.clone());
    params.disk_size_gb = Some(i64::try_from(s.root_disk_size_gb).unwrap_or(i64::MAX));
    params.disk_type = existing
        .boot_disk
        .r#type
        .as_deref()
        .map(|t| format!("zones/{}/diskTypes/{}", new.zone, super::last_segment(t)));
    let mut boot = model::AttachedDisk::default();
    boot.boot = Some(true);
    boot.auto_delete = Some(boot_attached.auto_delete.unwrap_or(true));
    boot.initialize_params = Some(params);
    inst.disks = vec![boot, data_disk(new.project, new.zone, new.name)];

    let items = from.metadata.as_ref().map(|m| m.items.as_slice()).unwrap_or_default();
    let mut md = model::Metadata::default();
    for item in items {
        let Some(key) = item.key.as_deref() else { continue };
        let value = item.value.clone().unwrap_or_default();
        let value = match key {
            k if k == names::METADATA_KUBE_ENV => Some(new.kube_env.clone()),
            k if k == names::METADATA_MASTER_CERTS => Some(new.master_certs.clone()),
            k if PER_VM_ITEMS.contains(&k) => None,
            k if k == names::METADATA_SSH_KEYS || k == names::METADATA_SSH_KEYS_LEGACY => per_vm_ssh_keys(&value),
            _ => Some(value),
        };
        if let Some(value) = value {
            md.items.push(metadata_item(key, value));
        }
    }
    for (key, value) in [
        (names::METADATA_KUBE_ENV, &new.kube_env),
        (names::METADATA_MASTER_CERTS, &new.master_certs),
    ] {
        if !md.items.iter().any(|i| i.key.as_deref() == Some(key)) {
            md.items.push(metadata_item(key, value.clone()));
        }
    }
    inst.metadata = Some(md);
    Ok(inst)
}

/// Set metadata item `key` of an instance body to `value` (replacing it if present).
pub fn set_metadata_item(inst: &mut model::Instance, key: &str, value: &str) {
    let md = inst.metadata.get_or_insert_with(model::Metadata::default);
    md.items.retain(|i| i.key.as_deref() != Some(key));
    md.items.push(metadata_item(key, value.to_string()));
}

/// The VM's service account and its scopes (kube-up's `--scopes`, as full URLs); a replica
/// copies the existing master's instead.
pub fn set_service_account(inst: &mut model::Instance, email: &str, scopes: &[String]) {
    let mut sa = model::ServiceAccount::default();
    sa.email = Some(email.to_string());
    sa.scopes = scopes.to_vec();
    inst.service_accounts = vec![sa];
}

/// `projects/P/zones/Z/instances/NAME`: how a target pool names its instances.
pub fn instance_url(project: &str, zone: &str, name: &str) -> String {
    format!("projects/{project}/zones/{zone}/instances/{name}")
}

/// One of the cluster's firewall rules (SPEC §2), to the master tag on `network`: the API port
/// from anywhere (kube-up's `MASTER_NAME-https`), the etcd peer ports between masters
/// (`MASTER_NAME-etcd`), SSH from `ssh_source_ranges` (`MASTER_NAME-ssh`, how kube-ha reaches
/// etcd).
pub fn firewall(
    project: &str,
    network: &str,
    name: &str,
    kind: FirewallKind,
    tag: &str,
    ssh_source_ranges: &[String],
) -> model::Firewall {
    let mut fw = model::Firewall::default();
    fw.name = Some(name.to_string());
    fw.network = Some(format!("projects/{project}/global/networks/{network}"));
    let mut allowed = model::firewall::Allowed::default();
    allowed.ip_protocol = Some("tcp".into());
    match kind {
        FirewallKind::Https => {
            allowed.ports = vec![names::APISERVER_PORT.to_string()];
            fw.source_ranges = vec!["0.0.0.0/0".into()];
        }
        FirewallKind::Etcd => {
            allowed.ports = EtcdCluster::ALL.iter().map(|c| c.peer_port().to_string()).collect();
            fw.source_tags = vec![tag.to_string()];
        }
        FirewallKind::Ssh => {
            allowed.ports = vec![names::SSH_PORT.to_string()];
            fw.source_ranges = ssh_source_ranges.to_vec();
        }
    }
    fw.allowed = vec![allowed];
    fw.target_tags = vec![tag.to_string()];
    fw
}

/// The cluster's reserved external (static) IP.
pub fn static_address(name: &str) -> model::Address {
    let mut a = model::Address::default();
    a.name = Some(name.to_string());
    a.address_type = Some(model::address::AddressType::External);
    a
}

/// A replica's reserved internal IP, on the subnetwork named like the network (kube-up's
/// auto-mode `default`).
pub fn internal_address(project: &str, region: &str, network: &str, name: &str) -> model::Address {
    let mut a = model::Address::default();
    a.name = Some(name.to_string());
    a.address_type = Some(model::address::AddressType::Internal);
    a.subnetwork = Some(format!("projects/{project}/regions/{region}/subnetworks/{network}"));
    a
}

/// A replica's data disk `<name>-pd` (etcd's data lives there and outlives the VM).
pub fn data_disk_body(project: &str, zone: &str, name: &str, disk_type: &str, size_gb: i64) -> model::Disk {
    let mut d = model::Disk::default();
    d.name = Some(name.to_string());
    d.size_gb = Some(size_gb);
    d.r#type = Some(format!("projects/{project}/zones/{zone}/diskTypes/{disk_type}"));
    d
}

/// The load balancer's target pool, created with its first instance (kube-up's
/// `create-loadbalancer`).
pub fn target_pool(name: &str, instance_url: String) -> model::TargetPool {
    let mut p = model::TargetPool::default();
    p.name = Some(name.to_string());
    p.instances = vec![instance_url];
    p
}

/// The forwarding rule that gives the static IP to the pool, API port only.
pub fn forwarding_rule(project: &str, region: &str, name: &str, ip: Ipv4Addr, pool: &str) -> model::ForwardingRule {
    let mut r = model::ForwardingRule::default();
    r.name = Some(name.to_string());
    r.ip_address = Some(ip.to_string());
    r.ip_protocol = Some(model::forwarding_rule::IPProtocol::Tcp);
    r.port_range = Some(format!("{0}-{0}", names::APISERVER_PORT));
    r.target = Some(format!("projects/{project}/regions/{region}/targetPools/{pool}"));
    r
}

fn metadata_item(key: &str, value: String) -> model::metadata::Items {
    let mut i = model::metadata::Items::default();
    i.key = Some(key.to_string());
    i.value = Some(value);
    i
}

/// `<name>-pd` attached as `master-pd`, kept when the VM goes (kube-up's
/// `--disk name=…,device-name=master-pd,mode=rw,boot=no,auto-delete=no`).
fn data_disk(project: &str, zone: &str, name: &str) -> model::AttachedDisk {
    let mut data = model::AttachedDisk::default();
    data.source = Some(format!(
        "projects/{project}/zones/{zone}/disks/{}",
        names::ClusterNames::data_disk_of(name)
    ));
    data.device_name = Some(names::DATA_DISK_DEVICE.to_string());
    data.auto_delete = Some(false);
    data.mode = Some(model::attached_disk::Mode::ReadWrite);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_rules_admit_what_kube_up_admitted_to_the_master_tag() {
        let ranges = vec!["35.235.240.0/20".to_string()];
        for (kind, ports, sources, tags) in [
            (FirewallKind::Https, vec!["443"], vec!["0.0.0.0/0"], vec![]),
            (
                FirewallKind::Etcd,
                vec!["2380", "2381"],
                vec![],
                vec!["kubernetes-master"],
            ),
            (FirewallKind::Ssh, vec!["22"], vec!["35.235.240.0/20"], vec![]),
        ] {
            let fw = firewall("p", "default", "r", kind, "kubernetes-master", &ranges);
            assert_eq!(
                fw.network.as_deref(),
                Some("projects/p/global/networks/default"),
                "{kind:?}"
            );
            assert_eq!(fw.target_tags, vec!["kubernetes-master"], "{kind:?}");
            assert_eq!(fw.allowed.len(), 1, "{kind:?}");
            assert_eq!(fw.allowed[0].ip_protocol.as_deref(), Some("tcp"), "{kind:?}");
            assert_eq!(fw.allowed[0].ports, ports, "{kind:?}");
            assert_eq!(fw.source_ranges, sources, "{kind:?}");
            assert_eq!(fw.source_tags, tags, "{kind:?}");
        }
    }

    #[test]
    fn the_load_balancer_gives_the_static_ip_to_the_pool_on_the_api_port_only() {
        let rule = forwarding_rule("p", "europe-west1", "m", Ipv4Addr::new(198, 19, 1, 9), "m");
        assert_eq!(rule.ip_address.as_deref(), Some("198.19.1.9"));
        assert_eq!(rule.port_range.as_deref(), Some("443-443"));
        assert_eq!(
            rule.target.as_deref(),
            Some("projects/p/regions/europe-west1/targetPools/m")
        );
        let pool = target_pool("m", instance_url("p", "europe-west1-b", "m"));
        assert_eq!(pool.instances, vec!["projects/p/zones/europe-west1-b/instances/m"]);
        let a = internal_address("p", "europe-west1", "default", "m-internal");
        assert_eq!(
            a.subnetwork.as_deref(),
            Some("projects/p/regions/europe-west1/subnetworks/default")
        );
        assert_eq!(a.address_type, Some(model::address::AddressType::Internal));
        assert_eq!(
            static_address("m-ip").address_type,
            Some(model::address::AddressType::External)
        );
        let d = data_disk_body("p", "europe-west1-b", "m-pd", "pd-ssd", 20);
        assert_eq!(
            d.r#type.as_deref(),
            Some("projects/p/zones/europe-west1-b/diskTypes/pd-ssd")
        );
        assert_eq!(d.size_gb, Some(20));
    }

    #[test]
    fn a_replica_vm_keeps_its_data_disk_and_carries_its_metadata() {
        let settings = MasterSettings {
            machine_type: "n1-standard-2".into(),
            disk_type: "pd-ssd".into(),
            disk_size_gb: 20,
            root_disk_size_gb: 30,
            source_image: "projects/cos-cloud/global/images/family/cos-109-lts".into(),
            preemptible: false,
        };
        let inst = replica_instance(&ReplicaInstanceSpec {
            project: "p",
            zone: "europe-west1-b",
            name: "k-master-a1b",
            settings: &settings,
            network: "default",
            tag: "k-master",
            internal_ip: Ipv4Addr::new(10, 0, 0, 3),
            nat_ip: None,
            metadata: vec![(names::METADATA_KUBE_ENV, "A: b\n".into())],
        });
        let data = &inst.disks[1];
        assert_eq!(
            data.source.as_deref(),
            Some("projects/p/zones/europe-west1-b/disks/k-master-a1b-pd")
        );
        assert_eq!(
            (data.device_name.as_deref(), data.auto_delete),
            (Some("master-pd"), Some(false))
        );
        assert_eq!(inst.disks[0].auto_delete, Some(true));
        assert_eq!(inst.network_interfaces[0].network_ip.as_deref(), Some("10.0.0.3"));
        assert_eq!(inst.network_interfaces[0].access_configs[0].nat_ip, None, "ephemeral");
        assert_eq!(inst.metadata.as_ref().map(|m| m.items.len()), Some(1));
    }

    /// A first master as kube-up made it in IP-alias mode, with an operator's extras.
    fn kube_up_master() -> (model::Instance, model::Disk) {
        let mut i = model::Instance::default();
        i.name = Some("k-master".into());
        i.zone = Some("https://x/projects/p/zones/europe-west1-b".into());
        i.can_ip_forward = Some(false);
        let mut tags = model::Tags::default();
        tags.items = vec!["k-master".into(), "extra-tag".into()];
        i.tags = Some(tags);
        let mut sa = model::ServiceAccount::default();
        sa.email = Some("123-compute@developer.gserviceaccount.com".into());
        sa.scopes = vec!["https://www.googleapis.com/auth/compute".into()];
        i.service_accounts = vec![sa];
        let mut alias = model::AliasIpRange::default();
        alias.ip_cidr_range = Some("10.64.1.0/24".into());
        alias.subnetwork_range_name = Some("pods-default".into());
        let mut nat = model::AccessConfig::default();
        nat.name = Some("External NAT".into());
        nat.nat_ip = Some("35.1.2.3".into());
        let mut nic = model::NetworkInterface::default();
        nic.network = Some("https://x/projects/p/global/networks/net".into());
        nic.subnetwork = Some("https://x/projects/p/regions/europe-west1/subnetworks/sub".into());
        nic.network_ip = Some("10.0.0.2".into());
        nic.alias_ip_ranges = vec![alias];
        nic.access_configs = vec![nat];
        i.network_interfaces = vec![nic];
        let mut boot = model::AttachedDisk::default();
        boot.boot = Some(true);
        boot.auto_delete = Some(true);
        boot.source = Some("https://x/projects/p/zones/europe-west1-b/disks/k-master".into());
        i.disks = vec![boot];
        let mut md = model::Metadata::default();
        md.items = [
            ("user-data", "#cloud-config"),
            ("configure-sh", "#!/bin/bash"),
            ("kubelet-config", "kind: KubeletConfiguration"),
            ("cluster-name", "k"),
            ("kube-master-internal-ip", "10.0.0.100"),
            ("kube-env", "OLD: 'env'"),
            ("kube-master-certs", "OLD: 'certs'"),
            (
                "ssh-keys",
                "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice\nkube-ha:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRun kube-ha",
            ),
            ("operator-extra", "x"),
        ]
        .into_iter()
        .map(|(k, v)| metadata_item(k, v.to_string()))
        .collect();
        i.metadata = Some(md);
        let mut disk = model::Disk::default();
        disk.r#type = Some("https://x/projects/p/zones/europe-west1-b/diskTypes/pd-balanced".into());
        (i, disk)
    }

    fn settings(preemptible: bool) -> MasterSettings {
        MasterSettings {
            machine_type: "e2-standard-2".into(),
            disk_type: "pd-ssd".into(),
            disk_size_gb: 20,
            root_disk_size_gb: 30,
            source_image: "projects/cos-cloud/global/images/cos-121".into(),
            preemptible,
        }
    }

    fn copy(from: &model::Instance, disk: &model::Disk, s: &MasterSettings) -> Result<model::Instance, CopyError> {
        replica_of(
            ExistingMaster {
                instance: from,
                boot_disk: disk,
            },
            &NewReplica {
                project: "p",
                zone: "europe-west1-c",
                name: "k-master-x1y",
                internal_ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
                settings: s,
                kube_env: "NEW: 'env'".into(),
                master_certs: "NEW: 'certs'".into(),
            },
        )
    }

    #[test]
    fn a_replica_copies_every_item_but_the_per_vm_ones_and_keeps_only_the_operators_ssh_keys() {
        let (from, disk) = kube_up_master();
        let inst = copy(&from, &disk, &settings(false)).expect("copy");
        let items: Vec<(String, String)> = inst
            .metadata
            .expect("metadata")
            .items
            .into_iter()
            .map(|i| (i.key.unwrap_or_default(), i.value.unwrap_or_default()))
            .collect();
        let get = |k: &str| items.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        for (key, want) in [
            ("user-data", Some("#cloud-config")),
            ("configure-sh", Some("#!/bin/bash")),
            ("kubelet-config", Some("kind: KubeletConfiguration")),
            ("cluster-name", Some("k")),
            ("operator-extra", Some("x")),
            ("kube-master-internal-ip", None),
            ("kube-env", Some("NEW: 'env'")),
            ("kube-master-certs", Some("NEW: 'certs'")),
            (
                "ssh-keys",
                Some("alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice"),
            ),
        ] {
            assert_eq!(get(key), want, "{key}");
        }
        assert_eq!(items.len(), 8);
    }

    #[test]
    fn a_replica_copies_the_gce_shape_with_its_own_name_zone_and_addresses() {
        let (from, disk) = kube_up_master();
        let inst = copy(&from, &disk, &settings(false)).expect("copy");
        assert_eq!(inst.name.as_deref(), Some("k-master-x1y"));
        assert_eq!(
            inst.machine_type.as_deref(),
            Some("zones/europe-west1-c/machineTypes/e2-standard-2")
        );
        assert_eq!(inst.tags, from.tags);
        assert_eq!(inst.service_accounts, from.service_accounts);
        assert_eq!(inst.can_ip_forward, Some(false));
        let nic = &inst.network_interfaces[0];
        let src = &from.network_interfaces[0];
        assert_eq!((&nic.network, &nic.subnetwork), (&src.network, &src.subnetwork));
        assert_eq!(nic.network_ip.as_deref(), Some("10.0.0.7"));
        // The same secondary range, by name and size; GCE picks the block.
        assert_eq!(nic.alias_ip_ranges[0].ip_cidr_range.as_deref(), Some("/24"));
        assert_eq!(
            nic.alias_ip_ranges[0].subnetwork_range_name.as_deref(),
            Some("pods-default")
        );
        // An ephemeral external IP, never the master's.
        assert_eq!(nic.access_configs[0].nat_ip, None);
        let boot = inst.disks[0].initialize_params.as_ref().expect("boot params");
        assert_eq!(
            boot.disk_type.as_deref(),
            Some("zones/europe-west1-c/diskTypes/pd-balanced")
        );
        assert_eq!(boot.disk_size_gb, Some(30));
        assert_eq!(
            inst.disks[1].source.as_deref(),
            Some("projects/p/zones/europe-west1-c/disks/k-master-x1y-pd")
        );
        let sched = inst.scheduling.expect("scheduling");
        assert_eq!(sched.preemptible, Some(false));
        let pre = copy(&from, &disk, &settings(true))
            .expect("copy")
            .scheduling
            .expect("scheduling");
        assert_eq!(
            (pre.preemptible, pre.automatic_restart),
            (Some(true), Some(false)),
            "GCE: a preemptible VM does not restart"
        );
    }

    #[test]
    fn a_master_without_a_network_interface_or_boot_disk_is_not_copied() {
        let (mut from, disk) = kube_up_master();
        from.disks.clear();
        let e = copy(&from, &disk, &settings(false)).expect_err("no boot disk");
        assert_eq!(e.missing, "boot disk");
        from.network_interfaces.clear();
        let e = copy(&from, &disk, &settings(false)).expect_err("no nic");
        assert_eq!(
            e.to_string(),
            "cannot copy the existing master k-master: it has no network interface"
        );
    }
}
