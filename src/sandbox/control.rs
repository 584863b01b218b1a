//! `kube-ha sandbox start|stop|env` and `KUBE_HA_SANDBOX`: the emulator in the background under a
//! state directory. (Interface; the body lands with the sandbox work.)

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// `$XDG_STATE_HOME/kube-ha/sandbox`, else `~/.local/state/kube-ha/sandbox`.
pub fn default_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("kube-ha/sandbox"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/kube-ha/sandbox")),
        None => bail!("neither XDG_STATE_HOME nor HOME is set; set KUBE_HA_SANDBOX to a directory"),
    }
}

/// Make sure the sandbox under `dir` runs; return its Compute endpoint.
pub async fn ensure_running(dir: &Path) -> Result<String> {
    bail!("the sandbox at {} is not implemented yet", dir.display())
}

/// `sandbox start`.
pub async fn start(dir: &Path) -> Result<()> {
    ensure_running(dir).await.map(|_| ())
}

/// `sandbox stop`.
pub async fn stop(dir: &Path) -> Result<()> {
    bail!("the sandbox at {} is not implemented yet", dir.display())
}

/// `sandbox env`.
pub async fn print_env(dir: &Path) -> Result<()> {
    let endpoint = ensure_running(dir).await?;
    println!("export KUBE_HA_COMPUTE_ENDPOINT={endpoint}\nexport PROJECT=sandbox");
    Ok(())
}
