//! The files a VM owns, under its directory in the sandbox, and how they appear inside the VM.
//!
//! ```text
//! <vm dir>/etc/        the VM's /etc: its own hosts, hostname, resolv.conf, passwd, group, shadow,
//!                      gshadow (copies of the machine's at creation; the guest agent adds users),
//!                      ssh/ (sshd_config, host keys) and srv/kubernetes/ (configure-helper's
//!                      certificates); every other entry a symlink to the machine's /etc entry
//! <vm dir>/home/       the VM's /home (the guest agent's users)
//! <vm dir>/run/        the VM's /run (sshd's privilege separation dir, the machine's /etc view)
//! <vm dir>/mnt/        the VM's /mnt; /mnt/disks/master-pd is the data disk's directory
//! <vm dir>/logs/       host setup, etcd and sshd logs (not visible inside the VM)
//! ```
//!
//! Inside the VM these are bind mounts in its own mount namespace (private propagation, so
//! nothing shows on the machine). `/etc` is a directory of the VM's, not the machine's with a
//! few files bound over it, for two reasons: `/etc/srv/kubernetes` and `/mnt/disks` do not exist
//! on the machine, and a bind mount needs a target (creating one would change the machine's
//! filesystem); and the guest agent can then replace `passwd`, `shadow` or `hosts` atomically by
//! rename, which a bind-mounted file (pinned by inode) does not allow. The machine's `/etc` stays
//! reachable inside the VM at [`HOST_ETC`], where the symlinks point.

use std::fs;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the machine's `/etc` is bound inside a VM (the VM's own `/run` hides it elsewhere).
pub const HOST_ETC: &str = "/run/host-etc";

/// configure-helper's certificate directory, inside the VM.
pub const SRV_KUBERNETES: &str = "/etc/srv/kubernetes";

/// The data disk's mount point inside the VM (kube-up's `master-pd`).
pub const MASTER_PD: &str = "/mnt/disks/master-pd";

/// sshd's configuration inside the VM.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

/// The `/etc` entries a VM owns (everything else is the machine's, through a symlink).
const OWNED_ETC: [&str; 9] = [
    "hosts",
    "hostname",
    "resolv.conf",
    "passwd",
    "group",
    "shadow",
    "gshadow",
    "ssh",
    "srv",
];

/// The account files copied from the machine at creation (the system users, `sshd` among them).
const ACCOUNT_FILES: [&str; 4] = ["passwd", "group", "shadow", "gshadow"];

/// One VM's files (paths in this process's view).
#[derive(Clone, Debug)]
pub struct VmFiles {
    root: PathBuf,
}

impl VmFiles {
    /// The files under `vm_dir`.
    pub fn new(vm_dir: &Path) -> VmFiles {
        VmFiles {
            root: vm_dir.to_path_buf(),
        }
    }

    /// The VM dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The VM's `/etc`.
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// The VM's `/etc/ssh`.
    pub fn ssh(&self) -> PathBuf {
        self.etc().join("ssh")
    }

    /// The VM's `/etc/srv/kubernetes`.
    pub fn srv_kubernetes(&self) -> PathBuf {
        self.etc().join("srv/kubernetes")
    }

    /// The VM's `/home`.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The VM's `/run`.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Logs (outside the VM's view).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The machine-side path of a VM path (`/etc/ssh/x` → `<vm dir>/etc/ssh/x`), for the VM's
    /// own trees only.
    pub fn outside(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// Create the tree (see the module doc) for instance `name` of `project` in `zone`. The
    /// account files start as copies of the machine's, `/etc/hosts` as `hosts`.
    pub fn prepare(&self, name: &str, zone: &str, project: &str, hosts: &str) -> Result<()> {
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.etc(), 0o755),
            (self.ssh(), 0o755),
            (self.srv_kubernetes(), 0o700),
            (self.home(), 0o755),
            (self.run(), 0o755),
            (self.run().join("sshd"), 0o755),
            (self.outside(HOST_ETC), 0o755),
            (self.outside(MASTER_PD), 0o755),
            (self.logs(), 0o755),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        link_machine_entries(Path::new("/etc"), &self.etc(), HOST_ETC, &OWNED_ETC)?;
        link_machine_entries(
            Path::new("/etc/ssh"),
            &self.ssh(),
            &format!("{HOST_ETC}/ssh"),
            &["sshd_config", "sshd_config.d"],
        )?;
        for file in ACCOUNT_FILES {
            let from = Path::new("/etc").join(file);
            match fs::copy(&from, self.etc().join(file)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("copying {}", from.display())),
            }
        }
        replace_file(&self.etc().join("hostname"), &format!("{name}\n"), 0o644)?;
        replace_file(&self.etc().join("resolv.conf"), &resolv_conf(zone, project), 0o644)?;
        replace_file(&self.etc().join("hosts"), hosts, 0o644)
    }

    /// Replace the VM's `/etc/hosts`.
    pub fn write_hosts(&self, text: &str) -> Result<()> {
        replace_file(&self.etc().join("hosts"), text, 0o644)
    }
}

/// For every entry of `machine_dir` not in `owned`: a symlink in `vm_dir` to it as the VM sees it
/// (`<inside>/<name>`); a symlink of the machine's is copied as it is.
fn link_machine_entries(machine_dir: &Path, vm_dir: &Path, inside: &str, owned: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(machine_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", machine_dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if owned.contains(&text) || text.starts_with("ssh_host_") {
            continue;
        }
        let target = match entry.file_type() {
            Ok(t) if t.is_symlink() => fs::read_link(entry.path()).unwrap_or_else(|_| Path::new(inside).join(text)),
            _ => Path::new(inside).join(text),
        };
        let link = vm_dir.join(text);
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("linking {}", link.display())),
        }
    }
    Ok(())
}

/// GCE's resolver setup: the metadata server is the DNS server, names are searched in the zone
/// and the project. Nothing answers DNS in the sandbox, so a name missing from `/etc/hosts` fails
/// at once (port unreachable) instead of leaving the VM.
pub fn resolv_conf(zone: &str, project: &str) -> String {
    format!("nameserver 169.254.169.254\nsearch {zone}.c.{project}.internal c.{project}.internal google.internal\n")
}

/// One line of a VM's `/etc/hosts`: an instance of the project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostEntry {
    /// Instance name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// nic0's networkIP.
    pub ip: Ipv4Addr,
}

/// The `/etc/hosts` of a VM in `zone` of `project`: loopback, the metadata server, and every
/// instance of the project under GCE's internal DNS names (`<name>.<zone>.c.<project>.internal`
/// and the bare name). Instances of the VM's own zone come first, so a bare name that exists in
/// several zones resolves to the nearest, as GCE's zonal DNS does.
pub fn hosts_file(zone: &str, project: &str, instances: &[HostEntry]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n169.254.169.254\tmetadata.google.internal metadata\n",
    );
    let mut sorted: Vec<&HostEntry> = instances.iter().collect();
    sorted.sort_by_key(|e| (e.zone != zone, e.zone.clone(), e.name.clone()));
    for e in sorted {
        out.push_str(&format!(
            "{}\t{}.{}.c.{project}.internal {}\n",
            e.ip, e.name, e.zone, e.name
        ));
    }
    out
}

/// Write `text` to `path` through a temporary file and a rename (readers never see half of it),
/// with `mode`.
pub fn replace_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("kube-ha-tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_every_instance_own_zone_first() {
        let ip = |n| Ipv4Addr::new(198, 18, 1, n);
        let text = hosts_file(
            "europe-west1-c",
            "p",
            &[
                HostEntry {
                    name: "m".into(),
                    zone: "europe-west1-b".into(),
                    ip: ip(2),
                },
                HostEntry {
                    name: "m".into(),
                    zone: "europe-west1-c".into(),
                    ip: ip(3),
                },
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"169.254.169.254\tmetadata.google.internal metadata"));
        let own = lines
            .iter()
            .position(|l| l.starts_with("198.18.1.3\tm.europe-west1-c.c.p.internal m"));
        let other = lines
            .iter()
            .position(|l| l.starts_with("198.18.1.2\tm.europe-west1-b.c.p.internal m"));
        assert!(own.is_some() && own < other, "{text}");
    }

    #[test]
    fn a_vm_etc_is_its_own_with_the_machines_entries_linked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = VmFiles::new(&dir.path().join("vm"));
        files.prepare("m", "z", "p", "127.0.0.1\tlocalhost\n").expect("prepare");
        let etc = files.etc();
        for owned in ["hosts", "hostname", "resolv.conf", "passwd", "group"] {
            let meta = fs::symlink_metadata(etc.join(owned)).expect(owned);
            assert!(meta.is_file(), "{owned} is the VM's own file");
        }
        assert!(fs::symlink_metadata(etc.join("srv/kubernetes")).expect("srv").is_dir());
        // Something every Debian machine has, seen through the machine's /etc view.
        let os_release = fs::read_link(etc.join("os-release")).expect("a symlink");
        assert!(
            os_release == Path::new("/run/host-etc/os-release") || os_release.is_relative(),
            "{}",
            os_release.display()
        );
        assert_eq!(fs::read_to_string(etc.join("hostname")).expect("read"), "m\n");
        assert!(files.outside(MASTER_PD).is_dir());
        assert_eq!(files.outside("/etc/ssh/x"), etc.join("ssh/x"));
        assert!(
            fs::read_to_string(etc.join("passwd"))
                .expect("passwd")
                .starts_with("root:"),
            "the machine's accounts are copied"
        );
    }
}
