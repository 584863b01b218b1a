//! What the emulator's synchronous hooks read without asking the sandbox actor: where each host
//! runs (for `GET /_emulator/hosts`, what `kube-ha sandbox exec` enters), what each VM's guest
//! wrote to its guest attributes (for `instances.getGuestAttributes`) and its boot wrote to its
//! serial console (for `instances.getSerialPortOutput`). The VM tasks keep it up to
//! date; a mutex each, held for a copy.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use kube_ha_emulator::GuestAttribute;

use super::console::SerialConsole;
use super::layout::ZonalKey;
use super::metadata::GuestAttributes;

/// Where one running host is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRecord {
    /// The holder's pid (its namespaces are the VM's; see `host.rs`).
    pub pid: u32,
    /// The inode of its network namespace, so a reader can tell a recycled pid.
    pub netns: u64,
    /// nic0's networkIP.
    pub internal_ip: Ipv4Addr,
}

/// The shared records (see the module doc).
#[derive(Debug, Default)]
pub struct Registry {
    network: Mutex<Option<(u32, u64)>>,
    hosts: Mutex<BTreeMap<ZonalKey, HostRecord>>,
    guests: Mutex<BTreeMap<ZonalKey, Arc<GuestAttributes>>>,
    consoles: Mutex<BTreeMap<ZonalKey, Arc<SerialConsole>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// The VPC router's holder pid and netns inode.
    pub fn set_network(&self, pid: u32, netns: u64) {
        *lock(&self.network) = Some((pid, netns));
    }

    /// A host is up.
    pub fn host_up(&self, key: &ZonalKey, record: HostRecord) {
        lock(&self.hosts).insert(key.clone(), record);
    }

    /// A host is gone (crashed, deleted, shut down).
    pub fn host_down(&self, key: &ZonalKey) {
        lock(&self.hosts).remove(key);
    }

    /// A VM's guest attribute store (a new one the first time).
    pub fn guest(&self, key: &ZonalKey) -> Arc<GuestAttributes> {
        lock(&self.guests).entry(key.clone()).or_default().clone()
    }

    /// Forget a deleted VM's guest attributes and serial console.
    pub fn forget_guest(&self, key: &ZonalKey) {
        lock(&self.guests).remove(key);
        lock(&self.consoles).remove(key);
    }

    /// A VM's serial console (a new one, copied to `copy`, the first time).
    pub fn console(&self, key: &ZonalKey, copy: PathBuf) -> Arc<SerialConsole> {
        lock(&self.consoles)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(SerialConsole::new(&key.name, Some(copy))))
            .clone()
    }

    /// What a VM wrote to serial port `port` so far (only port 3, the boot log, is written).
    pub fn serial_port_output(&self, key: &ZonalKey, port: u8) -> Option<String> {
        let console = lock(&self.consoles).get(key).cloned()?;
        Some(if port == super::console::BOOT_LOG_PORT {
            console.text()
        } else {
            String::new()
        })
    }

    /// What a VM's guest wrote, if the VM has booted.
    pub fn guest_attributes(&self, key: &ZonalKey) -> Option<Vec<GuestAttribute>> {
        lock(&self.guests).get(key).map(|g| g.list())
    }

    /// The `GET /_emulator/hosts` document:
    /// `{"network": {"pid", "netns"}, "vms": [{"project", "zone", "name", "pid", "netns", "internalIp"}]}`.
    pub fn document(&self) -> Value {
        let network = lock(&self.network).map(|(pid, netns)| json!({"pid": pid, "netns": netns}));
        let vms: Vec<Value> = lock(&self.hosts)
            .iter()
            .map(|(key, h)| {
                json!({"project": key.project, "zone": key.zone, "name": key.name,
                       "pid": h.pid, "netns": h.netns, "internalIp": h.internal_ip.to_string()})
            })
            .collect();
        json!({"network": network, "vms": vms})
    }
}
