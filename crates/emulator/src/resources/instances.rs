//! `instances` (zonal): insert (boot disks from `initializeParams`, attached disks, `networkIP`
//! and access configs with static or ephemeral IPs), delete (releases addresses, detaches disks,
//! deletes `autoDelete` ones), addAccessConfig, deleteAccessConfig, setMetadata, setLabels,
//! setDiskAutoDelete.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::{
    Commit, Effect, IpChoice, add_user, check_fingerprint, disks, metadata, new_resource, projects, rel_path,
    release_ip, remove_user, reserved_address, users, validate_name,
};
use crate::error::ApiError;
use crate::ips::Range;
use crate::json::{fingerprint, invalid_field, ip_field, object_mut, str_field};
use crate::scope::{Kind, ResourceKey, Scope, absolute, parse_link};
use crate::state::World;

fn zone_of(key: &ResourceKey) -> String {
    match &key.scope {
        Scope::Zone(z) => z.clone(),
        _ => String::new(),
    }
}

fn array(v: &Value, key: &str) -> Vec<Value> {
    v.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The name of the disk made from `initializeParams` of the disk at `index`.
fn new_disk_name(instance: &str, index: usize, params: &Value) -> String {
    match str_field(params, "diskName") {
        Some(name) => name.to_string(),
        None if index == 0 => instance.to_string(),
        None => format!("{instance}-{index}"),
    }
}

/// Disks an insert of `key` with `body` creates.
pub(super) fn created_disks(key: &ResourceKey, body: &Value) -> Vec<ResourceKey> {
    array(body, "disks")
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            d.get("initializeParams")
                .map(|p| ResourceKey::new(Kind::Disk, key.scope.clone(), new_disk_name(&key.name, i, p)))
        })
        .collect()
}

/// Fill defaults of an access config and choose its IP: a RESERVED EXTERNAL address of the
/// region named by `natIP`, or a fresh ephemeral one.
fn plan_access_config(
    w: &World,
    project: &str,
    region: &str,
    config: &Value,
    field: &str,
) -> Result<(Value, IpChoice), ApiError> {
    let nat_field = format!("{field}.natIP");
    let choice = match ip_field(config, "natIP", &nat_field)? {
        None => IpChoice::Fresh(Range::External),
        Some(ip) => match reserved_address(w, project, region, ip, "EXTERNAL", &nat_field)? {
            Some(key) => IpChoice::Static(ip, key),
            None => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{nat_field}': '{ip}'. The specified external IP address '{ip}' was not found in region '{region}'."
                )));
            }
        },
    };
    let mut entry = config.clone();
    let map = object_mut(&mut entry);
    map.remove("natIP");
    map.insert("kind".into(), json!("compute#accessConfig"));
    for (k, default) in [
        ("type", "ONE_TO_ONE_NAT"),
        ("name", "External NAT"),
        ("networkTier", "PREMIUM"),
    ] {
        map.entry(k).or_insert(json!(default));
    }
    Ok((entry, choice))
}

/// A disk attached by `source`: it must be a disk of this project in the instance's zone.
fn source_disk(
    w: &World,
    project: &str,
    instance: &ResourceKey,
    source: &str,
    field: &str,
) -> Result<ResourceKey, ApiError> {
    let key = parse_link(project, source)
        .filter(|l| l.project == project)
        .and_then(|l| l.key())
        .filter(|k| k.kind == Kind::Disk)
        .ok_or_else(|| invalid_field(field, source))?;
    if key.scope != instance.scope {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{source}'. Disk must be in the same zone as the instance ({}).",
            instance.scope.path()
        )));
    }
    if w.get(project, &key).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid value for field '{field}': '{source}'. The resource '{}' was not found",
            key.path(project)
        )));
    }
    Ok(key)
}

/// Mode in which `user` (an instance link) has disk `disk_link` attached.
fn attach_mode(w: &World, project: &str, user: &str, disk_link: &str) -> String {
    parse_link(project, user)
        .and_then(|l| l.key().map(|k| (l.project, k)))
        .and_then(|(p, k)| w.get(&p, &k))
        .map(|inst| array(inst, "disks"))
        .and_then(|disks| disks.into_iter().find(|d| str_field(d, "source") == Some(disk_link)))
        .and_then(|d| str_field(&d, "mode").map(String::from))
        .unwrap_or_else(|| "READ_WRITE".into())
}

/// A disk can be attached READ_WRITE only when unused, READ_ONLY only next to READ_ONLY users.
fn ensure_attachable(w: &World, project: &str, disk: &ResourceKey, mode: &str) -> Result<(), ApiError> {
    let link = w.self_link(project, disk);
    let current = w.get(project, disk).map(users).unwrap_or_default();
    for user in current {
        if mode == "READ_WRITE" || attach_mode(w, project, &user, &link) == "READ_WRITE" {
            return Err(ApiError::in_use(
                "disk resource",
                &disk.path(project),
                &rel_path(w, &user),
            ));
        }
    }
    Ok(())
}

enum DiskPlan {
    New { key: ResourceKey, disk: Value },
    Existing { key: ResourceKey },
}

struct NicPlan {
    entry: Value,
    network_ip: IpChoice,
    nat: Option<(Value, IpChoice)>,
}

pub(super) fn plan_insert(w: &World, project: &str, key: &ResourceKey, base: Value) -> Result<Commit, ApiError> {
    let zone = zone_of(key);
    let region = key.scope.region().unwrap_or_default().to_string();
    let created = str_field(&base, "creationTimestamp").unwrap_or_default().to_string();
    let mut instance = base;

    let mut disk_plans: Vec<DiskPlan> = Vec::new();
    let mut attached: Vec<Value> = Vec::new();
    for (i, d) in array(&instance, "disks").into_iter().enumerate() {
        let field = format!("resource.disks[{i}]");
        let mode = str_field(&d, "mode").unwrap_or("READ_WRITE").to_string();
        let (disk_key, disk_json) = match (d.get("initializeParams"), str_field(&d, "source")) {
            (Some(params), _) => {
                let name = new_disk_name(&key.name, i, params);
                validate_name(&name, &format!("{field}.initializeParams.diskName"))?;
                let dk = ResourceKey::new(Kind::Disk, key.scope.clone(), name);
                w.ensure_absent(project, &dk)?;
                if disk_plans
                    .iter()
                    .any(|p| matches!(p, DiskPlan::New { key, .. } if key == &dk))
                {
                    return Err(ApiError::already_exists(dk.path(project)));
                }
                let mut body = Map::new();
                for (from, to) in [
                    ("diskSizeGb", "sizeGb"),
                    ("sourceImage", "sourceImage"),
                    ("diskType", "type"),
                    ("labels", "labels"),
                    ("description", "description"),
                ] {
                    if let Some(v) = params.get(from) {
                        body.insert(to.into(), v.clone());
                    }
                }
                let disk_base = new_resource(w, project, &dk, &Value::Object(body), crate::json::new_id(), &created);
                let disk = disks::build(w, project, &dk, disk_base)?;
                disk_plans.push(DiskPlan::New {
                    key: dk.clone(),
                    disk: disk.clone(),
                });
                (dk, disk)
            }
            (None, Some(source)) => {
                let dk = source_disk(w, project, key, source, &format!("{field}.source"))?;
                ensure_attachable(w, project, &dk, &mode)?;
                let disk = w.require(project, &dk)?.clone();
                disk_plans.push(DiskPlan::Existing { key: dk.clone() });
                (dk, disk)
            }
            (None, None) => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{field}': a disk needs 'source' or 'initializeParams'."
                )));
            }
        };
        let mut entry = d.clone();
        let map = object_mut(&mut entry);
        map.remove("initializeParams");
        map.insert("kind".into(), json!("compute#attachedDisk"));
        map.insert("source".into(), json!(w.self_link(project, &disk_key)));
        map.insert("mode".into(), json!(mode));
        map.insert("index".into(), json!(i));
        if let Some(size) = disk_json.get("sizeGb") {
            map.insert("diskSizeGb".into(), size.clone());
        }
        for (k, default) in [
            ("type", json!("PERSISTENT")),
            ("deviceName", json!(format!("persistent-disk-{i}"))),
            ("boot", json!(false)),
            ("autoDelete", json!(false)),
            ("interface", json!("SCSI")),
        ] {
            map.entry(k).or_insert(default);
        }
        attached.push(entry);
    }

    let mut nics = array(&instance, "networkInterfaces");
    if nics.is_empty() {
        nics.push(json!({}));
    }
    let mut nic_plans = Vec::new();
    for (i, n) in nics.iter().enumerate() {
        let field = format!("resource.networkInterfaces[{i}]");
        let ip_field_name = format!("{field}.networkIP");
        let network_ip = match ip_field(n, "networkIP", &ip_field_name)? {
            None => IpChoice::Fresh(Range::Internal),
            Some(ip) => match reserved_address(w, project, &region, ip, "INTERNAL", &ip_field_name)? {
                Some(k) => IpChoice::Static(ip, k),
                None if w.ips.is_used(ip) => {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for field '{ip_field_name}': '{ip}'. IP address '{ip}' is already being used by another resource."
                    )));
                }
                None => IpChoice::Given(ip),
            },
        };
        let configs = array(n, "accessConfigs");
        if configs.len() > 1 {
            return Err(ApiError::invalid(format!(
                "Invalid value for field '{field}.accessConfigs': At most one access config currently supported."
            )));
        }
        let nat = match configs.first() {
            Some(c) => Some(plan_access_config(
                w,
                project,
                &region,
                c,
                &format!("{field}.accessConfigs[0]"),
            )?),
            None => None,
        };
        let mut entry = n.clone();
        let map = object_mut(&mut entry);
        map.remove("networkIP");
        map.remove("accessConfigs");
        map.insert("kind".into(), json!("compute#networkInterface"));
        map.insert("name".into(), json!(format!("nic{i}")));
        let network = str_field(n, "network").unwrap_or("global/networks/default");
        map.insert("network".into(), json!(absolute(&w.api_base, project, network)));
        let subnetwork = str_field(n, "subnetwork")
            .map(String::from)
            .unwrap_or_else(|| format!("regions/{region}/subnetworks/default"));
        map.insert("subnetwork".into(), json!(absolute(&w.api_base, project, &subnetwork)));
        map.insert("fingerprint".into(), json!(fingerprint()));
        map.entry("stackType").or_insert(json!("IPV4_ONLY"));
        nic_plans.push(NicPlan { entry, network_ip, nat });
    }

    // the rest of the record
    let map = object_mut(&mut instance);
    let machine_type = map
        .get("machineType")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| "n1-standard-1".into());
    let machine_type = if machine_type.contains('/') {
        absolute(&w.api_base, project, &machine_type)
    } else {
        format!("{}/zones/{zone}/machineTypes/{machine_type}", w.project_url(project))
    };
    map.insert("machineType".into(), json!(machine_type));
    let items = map
        .get("metadata")
        .and_then(|m| m.get("items"))
        .cloned()
        .unwrap_or_else(|| json!([]));
    metadata::check_limits(
        items.as_array().map(Vec::as_slice).unwrap_or_default(),
        "resource.metadata",
    )?;
    map.insert(
        "metadata".into(),
        json!({"kind": "compute#metadata", "fingerprint": fingerprint(), "items": items}),
    );
    map.insert("labelFingerprint".into(), json!(fingerprint()));
    if let Some(tags) = map.get_mut("tags") {
        object_mut(tags).insert("fingerprint".into(), json!(fingerprint()));
    }
    // GCE fills in what the request's scheduling leaves out (gcloud sends only some fields)
    let scheduling = object_mut(map.entry("scheduling").or_insert(json!({})));
    for (k, v) in [
        ("onHostMaintenance", json!("MIGRATE")),
        ("automaticRestart", json!(true)),
        ("preemptible", json!(false)),
        ("provisioningModel", json!("STANDARD")),
    ] {
        scheduling.entry(k).or_insert(v);
    }
    // service account `default` is the project's Compute Engine default service account
    let default_account = w.projects.get(project).map(|p| projects::default_service_account(p.id));
    if let (Some(Value::Array(accounts)), Some(email)) = (map.get_mut("serviceAccounts"), default_account) {
        for account in accounts.iter_mut().filter(|a| str_field(a, "email") == Some("default")) {
            object_mut(account).insert("email".into(), json!(email));
        }
    }
    map.entry("canIpForward").or_insert(json!(false));
    map.entry("deletionProtection").or_insert(json!(false));
    map.insert("status".into(), json!("RUNNING"));
    map.insert("cpuPlatform".into(), json!("Intel Cascade Lake"));
    map.insert("startRestricted".into(), json!(false));
    map.insert("lastStartTimestamp".into(), json!(created));
    map.insert("fingerprint".into(), json!(fingerprint()));
    map.insert("disks".into(), Value::Array(attached));

    let project = project.to_string();
    let key = key.clone();
    Ok(Box::new(move |w: &mut World, effects: &mut Vec<Effect>| {
        let self_link = w.self_link(&project, &key);
        // allocations first: they are the only step that can fail
        let mut taken: Vec<(Ipv4Addr, Option<Ipv4Addr>)> = Vec::new();
        for nic in &nic_plans {
            let ip = nic.network_ip.take(w)?;
            let nat = match &nic.nat {
                Some((_, choice)) => Some(choice.take(w)?),
                None => None,
            };
            taken.push((ip, nat));
        }
        let mut rendered = Vec::new();
        for (nic, (ip, nat)) in nic_plans.into_iter().zip(taken) {
            let mut entry = nic.entry;
            let map = object_mut(&mut entry);
            map.insert("networkIP".into(), json!(ip.to_string()));
            nic.network_ip.attach(w, &project, &self_link);
            if let (Some((mut config, choice)), Some(nat)) = (nic.nat, nat) {
                object_mut(&mut config).insert("natIP".into(), json!(nat.to_string()));
                choice.attach(w, &project, &self_link);
                map.insert("accessConfigs".into(), json!([config]));
            }
            rendered.push(entry);
        }
        object_mut(&mut instance).insert("networkInterfaces".into(), Value::Array(rendered));
        for plan in disk_plans {
            match plan {
                DiskPlan::New { key, mut disk } => {
                    object_mut(&mut disk).insert("users".into(), json!([self_link]));
                    w.insert(&project, key, disk);
                }
                DiskPlan::Existing { key } => add_user(w, &project, &key, &self_link),
            }
        }
        w.insert(&project, key.clone(), instance.clone());
        effects.push(Effect::InstanceCreated {
            zone: zone_of(&key),
            instance,
        });
        Ok(())
    }))
}

/// The IPs an instance holds (networkIPs and natIPs).
fn held_ips(instance: &Value) -> Vec<Ipv4Addr> {
    let mut ips = Vec::new();
    for nic in array(instance, "networkInterfaces") {
        ips.extend(str_field(&nic, "networkIP").and_then(|s| s.parse::<Ipv4Addr>().ok()));
        for ac in array(&nic, "accessConfigs") {
            ips.extend(str_field(&ac, "natIP").and_then(|s| s.parse::<Ipv4Addr>().ok()));
        }
    }
    ips
}

pub(super) fn plan_delete(w: &World, project: &str, key: &ResourceKey, current: &Value) -> Result<Commit, ApiError> {
    if current.get("deletionProtection") == Some(&json!(true)) {
        return Err(ApiError::invalid(format!(
            "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion: {}'.",
            key.path(project)
        )));
    }
    let ips = held_ips(current);
    let disks: Vec<((String, ResourceKey), bool)> = array(current, "disks")
        .iter()
        .filter_map(|d| {
            let link = parse_link(project, str_field(d, "source")?)?;
            let dk = link.key()?;
            Some(((link.project, dk), d.get("autoDelete") == Some(&json!(true))))
        })
        .collect();
    let self_link = w.self_link(project, key);
    let project = project.to_string();
    let key = key.clone();
    Ok(Box::new(move |w: &mut World, effects: &mut Vec<Effect>| {
        w.remove(&project, &key);
        for ip in ips {
            release_ip(w, &project, ip, &self_link);
        }
        for ((disk_project, disk), auto_delete) in disks {
            remove_user(w, &disk_project, &disk, &self_link);
            let unused = w.get(&disk_project, &disk).is_some_and(|d| users(d).is_empty());
            if auto_delete && unused {
                w.remove(&disk_project, &disk);
                effects.push(Effect::DiskDeleted {
                    zone: zone_of(&disk),
                    name: disk.name.clone(),
                });
            }
        }
        effects.push(Effect::InstanceDeleted {
            zone: zone_of(&key),
            name: key.name.clone(),
        });
        Ok(())
    }))
}

/// Index of the network interface named `nic`, or 400.
fn nic_index(instance: &Value, nic: &str) -> Result<usize, ApiError> {
    array(instance, "networkInterfaces")
        .iter()
        .position(|n| str_field(n, "name") == Some(nic))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value for field 'networkInterface': '{nic}'. The instance has no such network interface."
            ))
        })
}

/// The network interface `index` of a stored instance, mutably.
fn nic_mut<'a>(w: &'a mut World, project: &str, key: &ResourceKey, index: usize) -> Option<&'a mut Map<String, Value>> {
    w.get_mut(project, key)?
        .get_mut("networkInterfaces")?
        .get_mut(index)?
        .as_object_mut()
}

pub(super) fn plan_add_access_config(
    w: &World,
    project: &str,
    key: &ResourceKey,
    nic: &str,
    config: &Value,
) -> Result<Commit, ApiError> {
    let instance = w.require(project, key)?;
    let index = nic_index(instance, nic)?;
    let existing = array(&array(instance, "networkInterfaces")[index], "accessConfigs");
    if !existing.is_empty() {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': At most one access config currently supported.",
        ));
    }
    let region = key.scope.region().unwrap_or_default().to_string();
    let (entry, choice) = plan_access_config(w, project, &region, config, "resource")?;
    let self_link = w.self_link(project, key);
    let (project, key, nic) = (project.to_string(), key.clone(), nic.to_string());
    Ok(Box::new(move |w: &mut World, effects: &mut Vec<Effect>| {
        let ip = choice.take(w)?;
        choice.attach(w, &project, &self_link);
        let mut entry = entry;
        object_mut(&mut entry).insert("natIP".into(), json!(ip.to_string()));
        if let Some(n) = nic_mut(w, &project, &key, index) {
            n.insert("accessConfigs".into(), json!([entry]));
        }
        if nic == "nic0" {
            effects.push(Effect::ExternalIp {
                zone: zone_of(&key),
                name: key.name.clone(),
                ip: Some(ip),
            });
        }
        Ok(())
    }))
}

pub(super) fn plan_delete_access_config(
    w: &World,
    project: &str,
    key: &ResourceKey,
    nic: &str,
    name: &str,
) -> Result<Commit, ApiError> {
    let instance = w.require(project, key)?;
    let index = nic_index(instance, nic)?;
    let configs = array(&array(instance, "networkInterfaces")[index], "accessConfigs");
    let config = configs
        .iter()
        .find(|c| str_field(c, "name") == Some(name))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value for field 'accessConfig': '{name}'. The network interface '{nic}' has no such access config."
            ))
        })?;
    let nat: Option<Ipv4Addr> = str_field(config, "natIP").and_then(|s| s.parse().ok());
    let self_link = w.self_link(project, key);
    let (project, key, nic, name) = (project.to_string(), key.clone(), nic.to_string(), name.to_string());
    Ok(Box::new(move |w: &mut World, effects: &mut Vec<Effect>| {
        if let Some(n) = nic_mut(w, &project, &key, index)
            && let Some(Value::Array(list)) = n.get_mut("accessConfigs")
        {
            list.retain(|c| str_field(c, "name") != Some(name.as_str()));
            if list.is_empty() {
                n.remove("accessConfigs");
            }
        }
        if let Some(ip) = nat {
            release_ip(w, &project, ip, &self_link);
        }
        if nic == "nic0" {
            effects.push(Effect::ExternalIp {
                zone: zone_of(&key),
                name: key.name.clone(),
                ip: None,
            });
        }
        Ok(())
    }))
}

/// Metadata items must be `{key, value}` objects with distinct keys.
pub(super) fn validated_items(metadata: &Value) -> Result<Value, ApiError> {
    let items = match metadata.get("items") {
        None | Some(Value::Null) => return Ok(json!([])),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid_field("metadata.items", &other.to_string())),
    };
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let key = str_field(item, "key").ok_or_else(|| invalid_field(&format!("metadata.items[{i}].key"), ""))?;
        if !seen.insert(key) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field 'metadata.items[{i}].key': '{key}'. Duplicate keys are not allowed."
            )));
        }
    }
    metadata::check_limits(items, "metadata")?;
    Ok(Value::Array(items.clone()))
}

pub(super) fn plan_set_metadata(
    w: &World,
    project: &str,
    key: &ResourceKey,
    metadata: &Value,
) -> Result<Commit, ApiError> {
    let instance = w.require(project, key)?;
    let current = instance.get("metadata").cloned().unwrap_or_else(|| json!({}));
    // GCE: "You must always provide an up-to-date fingerprint", even over empty metadata
    check_fingerprint(
        str_field(&current, "fingerprint"),
        str_field(metadata, "fingerprint"),
        true,
        "metadata",
    )?;
    let items = validated_items(metadata)?;
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        if let Some(instance) = w.get_mut(&project, &key) {
            object_mut(instance).insert(
                "metadata".into(),
                json!({"kind": "compute#metadata", "fingerprint": fingerprint(), "items": items}),
            );
        }
        Ok(())
    }))
}

pub(super) fn plan_set_labels(w: &World, project: &str, key: &ResourceKey, body: &Value) -> Result<Commit, ApiError> {
    let instance = w.require(project, key)?;
    let has_labels = instance
        .get("labels")
        .and_then(Value::as_object)
        .is_some_and(|l| !l.is_empty());
    check_fingerprint(
        str_field(instance, "labelFingerprint"),
        str_field(body, "labelFingerprint"),
        has_labels,
        "label",
    )?;
    let labels = match body.get("labels") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        Some(other) => return Err(invalid_field("labels", &other.to_string())),
    };
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        if let Some(instance) = w.get_mut(&project, &key) {
            let map = object_mut(instance);
            if labels.is_empty() {
                map.remove("labels");
            } else {
                map.insert("labels".into(), Value::Object(labels));
            }
            map.insert("labelFingerprint".into(), json!(fingerprint()));
        }
        Ok(())
    }))
}

/// `setDiskAutoDelete`: the attached disk with that `deviceName` gets `autoDelete`.
pub(super) fn plan_set_disk_auto_delete(
    w: &World,
    project: &str,
    key: &ResourceKey,
    device_name: &str,
    auto_delete: bool,
) -> Result<Commit, ApiError> {
    let instance = w.require(project, key)?;
    let index = array(instance, "disks")
        .iter()
        .position(|d| str_field(d, "deviceName") == Some(device_name))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value for field 'deviceName': '{device_name}'. No disk with device name '{device_name}' is attached to instance '{}'.",
                key.path(project)
            ))
        })?;
    let (project, key) = (project.to_string(), key.clone());
    Ok(Box::new(move |w: &mut World, _: &mut Vec<Effect>| {
        if let Some(disk) = w
            .get_mut(&project, &key)
            .and_then(|i| i.get_mut("disks"))
            .and_then(|d| d.get_mut(index))
        {
            object_mut(disk).insert("autoDelete".into(), json!(auto_delete));
        }
        Ok(())
    }))
}
