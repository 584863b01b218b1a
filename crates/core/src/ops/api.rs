//! Checking kube-apiserver the way a client would: `GET https://<ip>/healthz` with the cluster CA
//! as the only trust root, so a wrong certificate (or one without that IP in its SANs) fails.
//! Either on the static IP (reachable from anywhere), or on a replica's own `127.0.0.1` through a
//! private socket forwarded over its SSH connection ([`client_over`]): its serving certificate
//! carries `IP:127.0.0.1`, and nothing outside the VPC reaches its internal IP.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::error::error_chain;

fn builder(ca_pem: &str, timeout: Duration) -> Result<reqwest::ClientBuilder> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("cluster CA is not PEM")?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(timeout)
        .connect_timeout(timeout)
        // A probe asks what answers at the address now. A pooled connection keeps going where
        // it went (conntrack keeps a detached IP's old 1:1 NAT translation), so a health check
        // on it could pass before the load balancer that now owns the static IP serves.
        .pool_max_idle_per_host(0)
        .no_proxy())
}

/// An HTTPS client that trusts only `ca_pem`.
pub fn client(ca_pem: &str, timeout: Duration) -> Result<reqwest::Client> {
    builder(ca_pem, timeout)?
        .build()
        .context("cannot build the HTTPS client")
}

/// [`client`] whose every connection goes to the Unix socket `socket` (an SSH forward to a
/// replica's `127.0.0.1:443`); ask it with [`healthz`] on `127.0.0.1`.
pub fn client_over(ca_pem: &str, timeout: Duration, socket: &Path) -> Result<reqwest::Client> {
    builder(ca_pem, timeout)?
        .unix_socket(socket)
        .build()
        .context("cannot build the HTTPS client")
}

/// One `/healthz` probe.
pub async fn healthz(client: &reqwest::Client, ip: Ipv4Addr) -> Result<()> {
    let url = format!("https://{ip}/healthz");
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        bail!("{url}: HTTP {}", resp.status());
    }
    Ok(())
}
