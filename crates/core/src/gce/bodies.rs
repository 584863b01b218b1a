//! Request bodies kube-ha sends, as pure functions: what a master replica VM looks like in GCE is
//! decided here once (kube-up's `create-master-instance-internal`), for the executor, the
//! benchmarks' kube-up replay and the sandbox tests alike.

use std::net::Ipv4Addr;

use google_cloud_compute_v1::model;

use crate::config::MasterSettings;
use crate::names;

/// Name of the access config kube-up (and gcloud) give nic0's external NAT.
pub const ACCESS_CONFIG: &str = "External NAT";

/// Everything that makes one replica VM.
#[derive(Clone, Debug)]
pub struct ReplicaVm<'a> {
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
pub fn replica_instance(vm: &ReplicaVm<'_>) -> model::Instance {
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
    let mut data = model::AttachedDisk::default();
    data.source = Some(format!(
        "projects/{}/zones/{}/disks/{}-pd",
        vm.project, vm.zone, vm.name
    ));
    data.device_name = Some(names::DATA_DISK_DEVICE.to_string());
    data.auto_delete = Some(false);
    data.mode = Some(model::attached_disk::Mode::ReadWrite);
    inst.disks = vec![boot, data];

    let mut scheduling = model::Scheduling::default();
    scheduling.preemptible = Some(s.preemptible);
    scheduling.automatic_restart = Some(!s.preemptible);
    inst.scheduling = Some(scheduling);

    let mut md = model::Metadata::default();
    md.items = vm
        .metadata
        .iter()
        .map(|(k, v)| {
            let mut i = model::metadata::Items::default();
            i.key = Some((*k).to_string());
            i.value = Some(v.clone());
            i
        })
        .collect();
    inst.metadata = Some(md);
    inst
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let inst = replica_instance(&ReplicaVm {
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
}
