//! Diagnostics: `tracing` to stderr, off unless `KUBE_HA_LOG` (an env-filter, e.g. `debug`) is set.

/// Install the subscriber once.
pub fn init() {
    if let Ok(filter) = std::env::var(kube_ha_core::config::vars::KUBE_HA_LOG.name()) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
