//! A VM as a host of its own: network, mount, UTS and PID namespaces held by one PID-1 holder
//! process, its files mounted where a VM has them (`files.rs`), linked to the sandbox's VPC
//! (`vpc.rs`), its firewall chain loaded (`firewall.rs`).
//!
//! The holder is `unshare --pid --fork --kill-child --mount-proc --net --mount --uts
//! --propagation private -- sh -c <setup>`: `unshare` creates the namespaces and forks the VM's
//! PID 1, which mounts the VM's files, sets the hostname (the instance name: configure-helper
//! uses `hostname -s`), brings `lo` up with `169.254.169.254` (the metadata server's address) on
//! it, says `ready` and becomes `sleep infinity`. `unshare` is started with
//! `PR_SET_PDEATHSIG = SIGKILL` from the spawner thread and kills its child when it dies
//! (`--kill-child`); when PID 1 dies the kernel kills every other process of the VM. So a crash
//! is "kill the holder", and a SIGKILLed emulator takes every VM with it.
//!
//! Processes are started inside with [`Host::spawn`] (see `ns.rs`): etcd, one `sshd -i` per SSH
//! connection, `kube-ha sandbox exec --vm`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::files::{HOST_ETC, MASTER_PD, VmFiles};
use super::ns::{self, Holder, Namespaces};
use super::vpc::{HOLDER_READY_WITHIN, Vpc};

/// The holder's setup, run as the VM's PID 1 (`$1` VM dir, `$2` hostname, `$3` disk dir or empty).
const SETUP: &str = r#"set -e
vm=$1
mount --bind "$vm/run" /run
mount --bind /etc "$HOST_ETC"
mount --bind "$vm/etc" /etc
mount --bind "$vm/home" /home
mount --bind "$vm/mnt" /mnt
if [ -n "$3" ]; then mount --bind "$3" "$MASTER_PD"; fi
hostname "$2"
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
echo ready
exec sleep infinity
"#;

/// What a host is made from.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// Instance name (the hostname).
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// Its project.
    pub project: String,
    /// nic0's networkIP.
    pub ip: Ipv4Addr,
    /// The data disk's directory (mounted at `/mnt/disks/master-pd`), if one is attached.
    pub disk: Option<PathBuf>,
    /// The first `/etc/hosts`.
    pub hosts: String,
    /// The first firewall chain (nftables script).
    pub firewall: String,
}

/// A running host. Dropping it kills every process of the VM.
#[derive(Debug)]
pub struct Host {
    ns: Arc<Namespaces>,
    link: String,
    // Last: the VM's processes die when it is dropped, after the descriptors are closed.
    holder: Holder,
}

impl Host {
    /// Create the host (see the module doc): files, namespaces, firewall chain, link. Blocking.
    pub fn create(spec: &HostSpec, files: &VmFiles, vpc: &Vpc) -> Result<Host> {
        files.prepare(&spec.name, &spec.zone, &spec.project, &spec.hosts)?;
        if let Some(disk) = &spec.disk {
            // A new disk is empty; its directory appears with its first VM.
            std::fs::create_dir_all(disk).with_context(|| format!("creating {}", disk.display()))?;
        }
        let log_path = files.logs().join("host.log");
        let log = ns::append_log(&log_path)?;
        let mut command = Command::new("unshare");
        command
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--net",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SETUP,
                "vm-host",
            ])
            .arg(files.root())
            .arg(&spec.name)
            .arg(spec.disk.as_deref().unwrap_or(std::path::Path::new("")))
            .env("HOST_ETC", HOST_ETC)
            .env("MASTER_PD", MASTER_PD);
        let holder = Holder::start(command, log, HOLDER_READY_WITHIN)
            .with_context(|| format!("starting the host of {} (see {})", spec.name, log_path.display()))?;
        let ns = Arc::new(Namespaces::host_of(holder.pid())?);
        // The chain before the link: the VM is never reachable unfiltered.
        ns::run(Some(&ns), "nft", &["-f", "-"], Some(&spec.firewall)).context("loading the VM's firewall chain")?;
        let link = vpc.attach(&ns, holder.pid(), spec.ip)?;
        Ok(Host { ns, link, holder })
    }

    /// The namespaces, for starting processes or threads inside.
    pub fn namespaces(&self) -> &Arc<Namespaces> {
        &self.ns
    }

    /// The holder's pid (what `kube-ha sandbox exec --vm` enters).
    pub fn pid(&self) -> u32 {
        self.holder.pid()
    }

    /// The router's end of the VM's link.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Kill every process of the VM (its PID 1 and so all of them). Blocking (reaps the holder).
    pub fn kill(&mut self) {
        self.holder.kill();
    }
}
