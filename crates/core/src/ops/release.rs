//! A first master's release bootstrap, checked **before acting** (SPEC §8): the two scripts read
//! from `KUBE_ROOT` and the artifact URLs and hashes checked once, here, so a plan that creates a
//! first master on real GCE without them is refused (exit 2, zero mutating calls) rather than
//! making a VM on which nothing starts. The sandbox's boot ignores `user-data`, so there the
//! bootstrap is optional; what is given is still checked (fail closed, never half a bootstrap).

use crate::bootstrap::{ReleaseArtifacts, ReleaseScripts};
use crate::config::{Config, Endpoint, vars};
use crate::error::Refusal;
use crate::plan::{Plan, Step};

/// What the executor builds a first master's bootstrap from.
#[derive(Clone, Debug)]
pub struct Release {
    /// `user-data` and `configure-sh`.
    pub scripts: ReleaseScripts,
    /// The tarballs configure.sh downloads.
    pub artifacts: ReleaseArtifacts,
}

/// The release for `plan`'s first master, if it makes one and the release is given; a refusal
/// naming everything missing when it makes one on GCE without it.
pub fn for_plan(cfg: &Config, plan: &Plan) -> Result<Option<Release>, Refusal> {
    let makes_first = plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::CreateReplicaVm { first: true, .. }));
    let src = &cfg.release;
    if !makes_first || (!src.is_given() && cfg.endpoint != Endpoint::Google) {
        return Ok(None);
    }
    let mut missing = Vec::new();
    if src.kube_root.is_none() {
        missing.push(vars::KUBE_ROOT.name());
    }
    for (var, value) in [
        (vars::SERVER_BINARY_TAR_URL, &src.artifacts.server_binary_tar_url),
        (vars::KUBE_MANIFESTS_TAR_URL, &src.artifacts.kube_manifests_tar_url),
    ] {
        if value.is_empty() {
            missing.push(var.name());
        }
    }
    if !missing.is_empty() {
        return Err(Refusal::new(format!(
            "a first master needs {} to boot on GCE (KUBE_ROOT: a Kubernetes release tree that still has \
             cluster/gce/gci; the URLs: that release's kubernetes-server and kubernetes-manifests tarballs, \
             as kube-up uploaded them): set them and rerun kube-ha up",
            missing.join(", ")
        )));
    }
    let root = src.kube_root.as_deref().unwrap_or(std::path::Path::new(""));
    let scripts = ReleaseScripts::read(root).map_err(|e| Refusal::new(e.to_string()))?;
    src.artifacts.check().map_err(|e| Refusal::new(e.to_string()))?;
    Ok(Some(Release {
        scripts,
        artifacts: src.artifacts.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Command, Flags, RawEnv};
    use crate::plan::{Snapshot, plan_command};

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/kube-root");
    const SERVER: &str = "https://storage.googleapis.com/b/kubernetes-server-linux-amd64.tar.gz";
    const MANIFESTS: &str = "https://storage.googleapis.com/b/kubernetes-manifests.tar.gz";

    fn cfg(vars: &[(&str, &str)]) -> Config {
        let raw = RawEnv::from_vars(
            [("PROJECT", "my-project"), ("KUBE_GCE_ZONE", "europe-west1-b")]
                .iter()
                .chain(vars)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Config::resolve(&raw, Command::Up, Flags::default(), || PathBuf::from("/s")).expect("config")
    }

    fn first_master(cfg: &Config) -> Result<Option<Release>, Refusal> {
        let empty = Snapshot {
            zone_known: true,
            kubeconfig_ok: true,
            ..Default::default()
        };
        let plan = plan_command(cfg, Command::Up, &empty).expect("plan");
        for_plan(cfg, &plan)
    }

    #[test]
    fn a_first_master_on_gce_without_the_release_is_refused_naming_everything_missing() {
        let e = first_master(&cfg(&[])).expect_err("refused");
        for name in ["KUBE_ROOT", "SERVER_BINARY_TAR_URL", "KUBE_MANIFESTS_TAR_URL"] {
            assert!(e.message().contains(name), "{name}: {}", e.message());
        }
        let e = first_master(&cfg(&[("KUBE_ROOT", FIXTURE), ("SERVER_BINARY_TAR_URL", SERVER)])).expect_err("refused");
        assert!(
            e.message()
                .starts_with("a first master needs KUBE_MANIFESTS_TAR_URL to boot"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_release_tree_without_the_gce_scripts_or_an_unusable_url_is_refused() {
        let e = first_master(&cfg(&[
            ("KUBE_ROOT", "/nonexistent"),
            ("SERVER_BINARY_TAR_URL", SERVER),
            ("KUBE_MANIFESTS_TAR_URL", MANIFESTS),
        ]))
        .expect_err("refused");
        assert!(e.message().contains("cluster/gce/gci"), "{}", e.message());
        let e = first_master(&cfg(&[
            ("KUBE_ROOT", FIXTURE),
            ("SERVER_BINARY_TAR_URL", "gs://b/kubernetes-server-linux-amd64.tar.gz"),
            ("KUBE_MANIFESTS_TAR_URL", MANIFESTS),
        ]))
        .expect_err("refused");
        assert!(e.message().contains("http(s) URLs"), "{}", e.message());
    }

    #[test]
    fn the_sandbox_needs_no_release_but_checks_one_that_is_given() {
        assert!(
            first_master(&cfg(&[("KUBE_HA_SANDBOX", "1")]))
                .expect("optional")
                .is_none()
        );
        let e = first_master(&cfg(&[("KUBE_HA_SANDBOX", "1"), ("KUBE_ROOT", FIXTURE)])).expect_err("half");
        assert!(e.message().contains("SERVER_BINARY_TAR_URL"), "{}", e.message());
        let r = first_master(&cfg(&[
            ("KUBE_ROOT", FIXTURE),
            ("SERVER_BINARY_TAR_URL", SERVER),
            ("KUBE_MANIFESTS_TAR_URL", MANIFESTS),
        ]))
        .expect("given")
        .expect("a release");
        assert!(
            r.scripts.master_yaml.contains("#cloud-config"),
            "{}",
            r.scripts.master_yaml
        );
    }

    #[test]
    fn adding_a_replica_needs_no_release_it_copies_the_existing_master() {
        let cfg = cfg(&[
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ("KUBE_GCE_ZONE", "europe-west1-c"),
        ]);
        let s = crate::plan::fixtures::cluster(&[("", "europe-west1-b")]);
        let plan = plan_command(&cfg, Command::Up, &s).expect("plan");
        assert!(!plan.steps.is_empty());
        assert!(for_plan(&cfg, &plan).expect("no refusal").is_none());
    }
}
