//! Before observing: can the Compute API be reached at all, and with credentials? One quick probe
//! with a short timeout, so a stopped sandbox, an endpoint that refuses or missing credentials is
//! refused (exit 2) in seconds with the fix, instead of the client's retries ending after about
//! 50 s in an opaque error. The probe only reads; a refusal here has made no call that changes
//! anything.

use std::time::Duration;

use google_cloud_auth::credentials::Builder;

use crate::config::{Config, Endpoint};
use crate::error::{Refusal, root_cause};

/// How long the probe may take. A local endpoint answers in milliseconds; a token from a metadata
/// server in well under a second. Past this, nothing is there.
pub const PROBE_WITHIN: Duration = Duration::from_secs(3);

/// The real Compute API.
const GOOGLE_COMPUTE: &str = "https://compute.googleapis.com";

/// What to do when real GCE cannot be used.
const CREDENTIALS_FIX: &str = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS \
     to a service-account key file), or use the local sandbox instead with KUBE_HA_SANDBOX=1";

/// The Application Default Credentials file, when there is one (`GOOGLE_APPLICATION_CREDENTIALS`,
/// else gcloud's well-known file); without one, ADC falls back to the GCE metadata server.
fn adc_file() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config/gcloud")))?;
    Some(config.join("application_default_credentials.json")).filter(|p| p.exists())
}

/// Probe the endpoint `cfg` names.
pub async fn probe(cfg: &Config) -> Result<(), Refusal> {
    match &cfg.endpoint {
        Endpoint::Url(url) => probe_url(url, &cfg.project).await,
        Endpoint::Google => probe_google(&cfg.project).await,
        Endpoint::Sandbox(dir) => Err(Refusal::new(format!(
            "the sandbox under {} was not started; run kube-ha sandbox start",
            dir.display()
        ))),
    }
}

fn http_client() -> Result<reqwest::Client, Refusal> {
    reqwest::Client::builder()
        .timeout(PROBE_WITHIN)
        .connect_timeout(PROBE_WITHIN)
        .build()
        .map_err(|e| Refusal::new(format!("cannot make an HTTP client: {}", root_cause(&e))))
}

/// An explicit endpoint (the emulator): anything that answers HTTP is there.
async fn probe_url(url: &str, project: &str) -> Result<(), Refusal> {
    match http_client()?
        .get(format!("{url}/compute/v1/projects/{project}"))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(Refusal::new(format!(
            "cannot reach the Compute API at {url} ({}); if that is the sandbox, it is stopped: start it with \
             `kube-ha sandbox start` and `eval \"$(kube-ha sandbox env)\"`, or unset KUBE_HA_COMPUTE_ENDPOINT \
             and set KUBE_HA_SANDBOX=1, which starts it when needed",
            root_cause(&e)
        ))),
    }
}

/// Real GCE: Application Default Credentials must give a token (a file, or a metadata server
/// that answers), and the project must answer with it.
async fn probe_google(project: &str) -> Result<(), Refusal> {
    let credentials = Builder::default()
        .build_access_token_credentials()
        .map_err(|e| Refusal::new(format!("no Google credentials ({e}); {CREDENTIALS_FIX}")))?;
    let token = match tokio::time::timeout(PROBE_WITHIN, credentials.access_token()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) if adc_file().is_some() => {
            return Err(Refusal::new(format!(
                "cannot get a Google access token from Application Default Credentials ({}); {CREDENTIALS_FIX}",
                root_cause(&e)
            )));
        }
        Ok(Err(e)) => {
            return Err(Refusal::new(format!(
                "no Google credentials: no Application Default Credentials file, and the GCE metadata server did not \
                 answer ({}); {CREDENTIALS_FIX}",
                root_cause(&e)
            )));
        }
        Err(_) => {
            return Err(Refusal::new(format!(
                "no Google credentials: no Application Default Credentials file, and no GCE metadata server \
                 answered within {}s; {CREDENTIALS_FIX}",
                PROBE_WITHIN.as_secs()
            )));
        }
    };
    let reply = http_client()?
        .get(format!("{GOOGLE_COMPUTE}/compute/v1/projects/{project}"))
        .bearer_auth(&token.token)
        .send()
        .await
        .map_err(|e| {
            Refusal::new(format!(
                "cannot reach {GOOGLE_COMPUTE} ({}); check the network or proxy settings (HTTPS_PROXY), or use the \
                 local sandbox with KUBE_HA_SANDBOX=1",
                root_cause(&e)
            ))
        })?;
    match reply.status().as_u16() {
        200..=299 => Ok(()),
        401 | 403 => Err(Refusal::new(format!(
            "the Google credentials have no access to project {project} (HTTP {}); check PROJECT, or log in as \
             an account that has: {CREDENTIALS_FIX}",
            reply.status().as_u16()
        ))),
        404 => Err(Refusal::new(format!(
            "project {project} does not exist on Compute Engine (HTTP 404); check PROJECT"
        ))),
        // Anything else is GCE's to explain; observing reports it with context.
        _ => Ok(()),
    }
}
