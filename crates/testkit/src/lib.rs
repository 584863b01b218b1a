//! Shared helpers of the end-to-end tests and the benchmarks: real processes (the emulator, the
//! sandbox, etcd, OpenSSH's sshd), never mocks. The tests live in the `kube-ha` package (they
//! need its binary); this crate is only ever a dev-dependency.

use std::path::PathBuf;

pub mod cluster;
pub mod emulator;
pub mod etcd;
pub mod gcloud;
pub mod hosts;
pub mod kube_up;
pub mod sandbox;
pub mod sshd;
pub mod tunnel;
pub mod vm_etcd;

/// The `kube-ha` binary under test: `KUBE_HA_BIN` when set, else the one Cargo built next to the
/// running test executable (`target/<profile>/deps/<test>` → `target/<profile>/kube-ha`).
pub fn kube_ha_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_HA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("kube-ha")
}

/// The workspace root (README, env-examples).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
