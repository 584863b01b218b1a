//! Hooks from the emulator's GCE state to the simulated VMs (the sandbox, SPEC §6).
//!
//! The emulator only keeps Compute Engine's records. Whatever "runs" (a VM's etcd and API
//! stand-in, a load balancer's TCP proxy) is somebody else's job, told about each change through
//! [`Machines`]. Hooks are called when an effect is *applied*, i.e. when the operation becomes
//! DONE (not when the call is accepted), in the order the effects happen, with the emulator's
//! state lock held: an implementation must return quickly (spawn slow work) and must not call the
//! emulator back from inside a hook. [`NoMachines`] is used when there is no sandbox.

use std::net::Ipv4Addr;
use std::time::Duration;

/// How a newly created instance should boot (default from `--boot-delay-ms`, overridden by the
/// `never_boot` and `boot_delay` faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Boot after `delay`.
    Normal {
        /// Time from "insert DONE" to "processes started".
        delay: Duration,
    },
    /// Never boot (the VM exists in GCE but nothing runs on it).
    Never,
}

/// One load-balanced IP: a forwarding rule whose target is a target pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LbRule {
    /// The forwarding rule's `IPAddress`.
    pub ip: Ipv4Addr,
    /// Its `portRange`, inclusive (all ports when the rule has none).
    pub ports: (u16, u16),
    /// `nic0.networkIP` of each existing instance in the rule's target pool.
    pub backends: Vec<Ipv4Addr>,
}

/// One guest attribute a VM's guest wrote to its metadata server (`PUT
/// …/instance/guest-attributes/<namespace>/<key>`), as `instances.getGuestAttributes` returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestAttribute {
    /// `hostkeys`, …
    pub namespace: String,
    /// `ssh-ed25519`, …
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// A fault of a VM's guest environment (its guest agent, its host keys), set through
/// `/_emulator/faults` and passed to [`Machines::guest_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// The guest agent applies `ssh-keys` changes only this long after they reach the metadata
    /// server (GCE's agent takes about a second; gcloud allows 60 s).
    SshKeysLate {
        /// The extra delay.
        delay: Duration,
    },
    /// The guest agent stops applying `ssh-keys` changes (it hangs, or was removed).
    SshKeysNever,
    /// The VM's SSH host keys are regenerated under the same instance id (a rebuilt disk, a
    /// man in the middle): keys pinned on first use no longer match. Guest attributes are not
    /// updated (the agent publishes host keys only at first boot).
    HostKeyChanged,
    /// Back to normal behaviour.
    Clear,
}

/// What the emulator tells the simulated VMs. See the module doc for when and how it is called.
/// Methods with a default body are optional: an implementation that simulates nothing of that
/// kind can leave them out.
pub trait Machines: Send + Sync + 'static {
    /// An instance's insert is DONE: `instance` is its full JSON (metadata, networkInterfaces,
    /// disks…) as a `get` would return it.
    fn instance_created(&self, project: &str, zone: &str, instance: &serde_json::Value, boot: Boot);
    /// An instance's delete is DONE: stop its processes.
    fn instance_deleted(&self, project: &str, zone: &str, name: &str);
    /// nic0's external IP changed (access config added: `Some`, removed: `None`).
    fn external_ip_changed(&self, project: &str, zone: &str, name: &str, ip: Option<Ipv4Addr>);
    /// Forwarding rules, target pools or their instances changed: the complete current list of
    /// load-balanced IPs across all projects (sorted), only called when it differs from the last.
    fn load_balancers_changed(&self, rules: Vec<LbRule>);
    /// A disk was deleted (by `disks.delete` or an instance's `autoDelete`).
    fn disk_deleted(&self, project: &str, zone: &str, name: &str);
    /// Kill a VM's processes (a failed replica; its GCE record stays RUNNING). False if unknown.
    fn crash(&self, project: &str, zone: &str, name: &str) -> bool;
    /// The emulator is exiting: stop everything.
    fn shutdown(&self);

    /// An existing instance changed (its metadata, labels, tags, or an access config): its full
    /// JSON as a `get` would return it, once the change is applied. Not called for the insert
    /// ([`Machines::instance_created`] carries the JSON) nor for the delete.
    fn instance_changed(&self, _project: &str, _zone: &str, _instance: &serde_json::Value) {}

    /// The project's `commonInstanceMetadata` changed (or the project was created): the full
    /// metadata object (`fingerprint`, `items`), once the change is applied.
    fn project_metadata_changed(&self, _project: &str, _metadata: &serde_json::Value) {}

    /// The project's firewall rules changed: the complete current list, each rule as a `get`
    /// returns it (`network`, `allowed`, `sourceRanges`, `sourceTags`, `targetTags`, …).
    fn firewalls_changed(&self, _project: &str, _firewalls: &[serde_json::Value]) {}

    /// What the instance's guest has written to its guest attributes (for
    /// `instances.getGuestAttributes`); `None` when nothing is simulated for it. Called without
    /// the emulator's state lock.
    fn guest_attributes(&self, _project: &str, _zone: &str, _name: &str) -> Option<Vec<GuestAttribute>> {
        None
    }

    /// What the instance wrote so far to serial port `port` (1–4), for
    /// `instances.getSerialPortOutput`; `None` when nothing is simulated for it. Called without
    /// the emulator's state lock.
    fn serial_port_output(&self, _project: &str, _zone: &str, _name: &str, _port: u8) -> Option<String> {
        None
    }

    /// Apply a guest fault to one instance (`Some((zone, name))`) or to every instance of the
    /// project, present and future (`None`), until [`GuestFault::Clear`]. False when nothing is
    /// simulated that it could apply to.
    fn guest_fault(&self, _project: &str, _instance: Option<(&str, &str)>, _fault: GuestFault) -> bool {
        false
    }

    /// Where the simulated hosts run, for `GET /_emulator/hosts` (what `kube-ha sandbox exec`
    /// enters): a JSON document of the implementation's choosing; `None` when nothing is
    /// simulated. Called without the emulator's state lock.
    fn hosts(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The hooks when nothing is simulated: GCE records only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMachines;

impl Machines for NoMachines {
    fn instance_created(&self, _: &str, _: &str, _: &serde_json::Value, _: Boot) {}
    fn instance_deleted(&self, _: &str, _: &str, _: &str) {}
    fn external_ip_changed(&self, _: &str, _: &str, _: &str, _: Option<Ipv4Addr>) {}
    fn load_balancers_changed(&self, _: Vec<LbRule>) {}
    fn disk_deleted(&self, _: &str, _: &str, _: &str) {}
    fn crash(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
    fn shutdown(&self) {}
}
