//! The Compute Engine emulator (SPEC §6). (Interface; the body lands with the emulator work.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one emulator process.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Where to serve the API.
    pub listen: SocketAddr,
    /// Boot instances carrying kube-env, keeping their files here.
    pub sandbox_dir: Option<PathBuf>,
    /// PENDING → DONE time of each operation.
    pub op_latency: Duration,
    /// Boot time of a simulated VM.
    pub boot_delay: Duration,
    /// 127.N.0.0/16 block to draw addresses from.
    pub ip_block: Option<u8>,
}

/// Serve until SIGTERM or SIGINT. The first stdout line is `listening on http://ADDR`.
pub async fn run(_opts: EmulatorOptions) -> anyhow::Result<()> {
    anyhow::bail!("the emulator is not implemented yet")
}
