//! Where the simulated machines keep their files under `--sandbox-dir`.
//!
//! ```text
//! <sandbox-dir>/vms/<project>/<zone>/<instance>/         the VM's own files: etc/, home/, run/, mnt/, logs/ (files.rs)
//! <sandbox-dir>/disks/<project>/<zone>/<disk>/var/etcd/  data, data-events (etcd's data dirs; the VM's /mnt/disks/master-pd)
//! <sandbox-dir>/vpc.log                                  the VPC router holder's stderr
//! ```
//!
//! etcd's data lives with the *disk*, not the VM, because that is where it lives on GCE (the
//! `master-pd` data disk): a VM recreated on the same disk finds its member data again, and
//! the data goes only when the disk is deleted.
//!
//! Emptied `<project>/<zone>` directories are left in place: pruning them would race with a VM
//! of the same zone creating its directory on a blocking thread.
//!
//! The emulator keeps GCE's records in memory, so when a new emulator starts, no disk or VM of an
//! earlier run exists any more: [`Layout::create`] wipes what an earlier run left, so that a new
//! disk of a reused name never finds a stale etcd member in it. It wipes only directories it can
//! tell are its own (the dir carries the [`MARKER`] file it wrote): pointed at a directory that
//! already has unrelated `vms/` or `disks/` (say, `--sandbox-dir ~`), it refuses instead.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The file that marks a directory as a sandbox's (see the module doc).
pub const MARKER: &str = ".kube-ha-sandbox";

/// A zonal resource: a VM or a disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZonalKey {
    /// Project id.
    pub project: String,
    /// Zone name.
    pub zone: String,
    /// Resource name.
    pub name: String,
}

impl ZonalKey {
    /// A key from its three parts.
    pub fn new(project: &str, zone: &str, name: &str) -> ZonalKey {
        ZonalKey {
            project: project.to_string(),
            zone: zone.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ZonalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.zone, self.name)
    }
}

/// The directory tree of one sandbox.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Create `root` if needed and remove what an earlier emulator left in `vms/` and `disks/`
    /// (see the module doc). Nothing else under `root` is touched.
    pub fn create(root: &Path) -> Result<Layout> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let layout = Layout { root };
        let ours = [layout.root.join("vms"), layout.root.join("disks")];
        let marker = layout.root.join(MARKER);
        if !marker.exists() {
            if let Some(foreign) = ours.iter().find(|d| d.exists()) {
                bail!(
                    "{} exists but {} is not a kube-ha sandbox dir (no {MARKER}); use an empty or new directory",
                    foreign.display(),
                    layout.root.display()
                );
            }
            fs::write(
                &marker,
                "kube-ha sandbox: vms/ and disks/ here are removed when an emulator starts\n",
            )
            .with_context(|| format!("writing {}", marker.display()))?;
        }
        for stale in ours {
            remove_dir_all_if_present(&stale)?;
        }
        Ok(layout)
    }

    /// The sandbox directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A VM's own files (its /etc, /home, /run, logs); removed when the VM is deleted.
    pub fn vm_dir(&self, vm: &ZonalKey) -> PathBuf {
        self.zonal("vms", vm)
    }

    /// A disk's files; removed when the disk is deleted.
    pub fn disk_dir(&self, disk: &ZonalKey) -> PathBuf {
        self.zonal("disks", disk)
    }

    /// configure-helper's `/mnt/disks/master-pd/var/etcd` on this disk: the parent of `data` and
    /// `data-events`.
    pub fn etcd_dir(&self, disk: &ZonalKey) -> PathBuf {
        self.disk_dir(disk).join("var/etcd")
    }

    fn zonal(&self, kind: &str, key: &ZonalKey) -> PathBuf {
        self.root
            .join(kind)
            .join(component(&key.project))
            .join(component(&key.zone))
            .join(component(&key.name))
    }
}

/// `rm -rf`, where a missing directory is not an error.
pub fn remove_dir_all_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// A GCE name as one path component. GCE names are `[a-z0-9-]` already; anything else (a slash,
/// `..`) is replaced so that no name can point outside the sandbox.
fn component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() { "_".to_string() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_sandbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(dir.path()).expect("layout");
        let vm = layout.vm_dir(&ZonalKey::new("p", "../..", "a/b"));
        assert!(vm.starts_with(layout.root().join("vms")));
        assert_eq!(vm.file_name().and_then(|n| n.to_str()), Some("a_b"));
        assert_eq!(
            layout.etcd_dir(&ZonalKey::new("p", "z", "m-pd")),
            layout.root().join("disks/p/z/m-pd/var/etcd")
        );
    }

    #[test]
    fn a_new_sandbox_forgets_the_machines_of_an_earlier_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        Layout::create(dir.path()).expect("first run");
        let stale = dir.path().join("disks/p/z/d/var/etcd/data");
        fs::create_dir_all(&stale).expect("mkdir");
        fs::write(dir.path().join("emulator.log"), "keep").expect("write");
        Layout::create(dir.path()).expect("second run");
        assert!(!dir.path().join("disks").exists());
        assert!(dir.path().join("emulator.log").exists());
    }

    #[test]
    fn a_directory_that_is_not_a_sandbox_is_never_wiped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("vms/my-notes.txt");
        fs::create_dir_all(dir.path().join("vms")).expect("mkdir");
        fs::write(&precious, "mine").expect("write");
        let refused = Layout::create(dir.path()).expect_err("must refuse");
        assert!(refused.to_string().contains("not a kube-ha sandbox dir"), "{refused}");
        assert!(precious.exists());
    }
}
