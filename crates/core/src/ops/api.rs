//! Checking kube-apiserver the way a client would: `GET https://<ip>/healthz` with the cluster CA
//! as the only trust root, so a wrong certificate (or one without this IP in its SANs) fails.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::error::error_chain;

/// An HTTPS client that trusts only `ca_pem`.
pub fn client(ca_pem: &str, timeout: Duration) -> Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("cluster CA is not PEM")?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(timeout)
        .connect_timeout(timeout)
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
