//! Diagnostics: `tracing` to stderr, off unless `KUBE_HA_LOG` (an env-filter, e.g. `debug`) is set.
//!
//! kube-ha is several crates (the binary `kube_ha`, the product `kube_ha_core`, the emulator and
//! the sandbox), so `tracing` targets start with four different names. A directive for
//! `kube_ha` — what an operator types, and what the help text suggests — means all of them.

/// Crates whose targets a `kube_ha` directive stands for.
const OWN_CRATES: [&str; 4] = ["kube_ha", "kube_ha_core", "kube_ha_emulator", "kube_ha_sandbox"];

/// Install the subscriber once.
pub fn init() {
    if let Ok(filter) = std::env::var(kube_ha_core::config::vars::KUBE_HA_LOG.name()) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(expand(&filter)))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// `kube_ha=L` (or a bare `kube_ha`) becomes one directive per own crate; others are kept.
fn expand(filter: &str) -> String {
    filter
        .split(',')
        .map(|directive| {
            let (target, level) = match directive.split_once('=') {
                Some((t, l)) => (t, Some(l)),
                None => (directive, None),
            };
            if target.trim() != "kube_ha" {
                return directive.to_string();
            }
            OWN_CRATES
                .iter()
                .map(|c| match level {
                    Some(l) => format!("{c}={l}"),
                    None => c.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn a_kube_ha_directive_covers_every_crate_of_the_workspace() {
        for (given, want) in [
            ("debug", "debug"),
            (
                "kube_ha=info",
                "kube_ha=info,kube_ha_core=info,kube_ha_emulator=info,kube_ha_sandbox=info",
            ),
            (
                "warn,kube_ha=trace",
                "warn,kube_ha=trace,kube_ha_core=trace,kube_ha_emulator=trace,kube_ha_sandbox=trace",
            ),
            ("kube_ha_core=debug,russh=warn", "kube_ha_core=debug,russh=warn"),
            ("kube_ha", "kube_ha,kube_ha_core,kube_ha_emulator,kube_ha_sandbox"),
        ] {
            assert_eq!(expand(given), want, "{given}");
        }
    }
}
