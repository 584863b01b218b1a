//! The command lines kube-ha suggests to operators ("finish it with …", "remove it with …"), in
//! one place, so that every suggestion works when pasted into the shell that got it.
//!
//! A suggestion sets every variable that steers its command, whatever the shell exports: the
//! zone (`pick_target` refuses a named replica outside `KUBE_GCE_ZONE`), the mode flags
//! (`KUBE_DELETE_NODES=true` for a teardown, so an exported `KUBE_DELETE_NODES=false` cannot turn
//! it into a removal, and the reverse), and `KUBE_GCE_INSTANCE_PREFIX` when the cluster's is not
//! the default. `PROJECT` and the endpoint are not repeated: they say where, not what, and
//! `eval "$(kube-ha sandbox env)"` or gcloud export them. A test feeds each line back through
//! `Config::resolve` and the planner.

use crate::config::{Command, vars};
use crate::names::ClusterNames;

use super::lock::{Intent, OwnerRef};

/// A suggested command line: environment assignments, then `kube-ha <command>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    env: Vec<(&'static str, String)>,
    command: Command,
}

impl Suggestion {
    fn new(command: Command) -> Self {
        Suggestion {
            env: Vec::new(),
            command,
        }
    }

    fn set(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
        self
    }

    /// The assignments, in order.
    pub fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }

    /// The subcommand.
    pub fn command(&self) -> Command {
        self.command
    }
}

impl std::fmt::Display for Suggestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, value) in &self.env {
            write!(f, "{name}={} ", shell_word(value))?;
        }
        write!(f, "kube-ha {}", self.command)
    }
}

/// `value` as one shell word: as is when it is made of safe characters (every name and zone
/// kube-ha produces is), else single-quoted.
fn shell_word(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@%+,".contains(&b));
    if safe {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The suggestions for one cluster.
#[derive(Clone, Debug)]
pub struct Commands {
    prefix: Option<String>,
}

impl Commands {
    /// Suggestions for the cluster named by `names` (its prefix is repeated unless it is the default).
    pub fn for_cluster(names: &ClusterNames) -> Commands {
        let default = vars::KUBE_GCE_INSTANCE_PREFIX.default_value();
        let prefix = (default.as_ref() != Some(names))
            .then(|| names.prefix().to_string())
            .filter(|p| !p.is_empty());
        Commands { prefix }
    }

    fn base(&self, command: Command) -> Suggestion {
        let s = Suggestion::new(command);
        match &self.prefix {
            Some(p) => s.set(vars::KUBE_GCE_INSTANCE_PREFIX.name(), p.clone()),
            None => s,
        }
    }

    /// Create (or finish creating) the first master in `zone`.
    pub fn first_up(&self, zone: &str) -> Suggestion {
        self.base(Command::Up)
            .set(vars::KUBE_GCE_ZONE.name(), zone)
            .set(vars::KUBE_REPLICATE_EXISTING_MASTER.name(), "false")
    }

    /// Add a replica in `zone` (also finishes, or finishes undoing, an interrupted add there).
    pub fn add_replica(&self, zone: &str) -> Suggestion {
        self.base(Command::Up)
            .set(vars::KUBE_GCE_ZONE.name(), zone)
            .set(vars::KUBE_REPLICATE_EXISTING_MASTER.name(), "true")
    }

    /// Add a replica in `zone` although the zone has one and another zone has none.
    pub fn add_replica_same_zone(&self, zone: &str) -> Suggestion {
        self.add_replica(zone).set(vars::KUBE_HA_ALLOW_SAME_ZONE.name(), "true")
    }

    /// Remove `replica` (in `zone`, when known: a replica without VM or disk has none).
    pub fn remove_replica(&self, replica: &str, zone: Option<&str>) -> Suggestion {
        let s = self.base(Command::Down).set(vars::KUBE_DELETE_NODES.name(), "false");
        let s = match zone {
            Some(z) => s.set(vars::KUBE_GCE_ZONE.name(), z),
            None => s,
        };
        s.set(vars::KUBE_REPLICA_NAME.name(), replica)
    }

    /// Tear the cluster down (only with one replica left).
    pub fn teardown(&self) -> Suggestion {
        self.base(Command::Down).set(vars::KUBE_DELETE_NODES.name(), "true")
    }

    /// `kube-ha status`.
    pub fn status(&self) -> Suggestion {
        self.base(Command::Status)
    }

    /// The command that finishes an interrupted operation.
    pub fn resume(&self, intent: &Intent) -> Suggestion {
        match intent {
            Intent::FirstMaster { zone } => self.first_up(zone),
            Intent::AddReplica { zone, .. } => self.add_replica(zone),
            Intent::RemoveReplica { replica, zone } => self.remove_replica(replica, zone.as_deref()),
            Intent::Teardown => self.teardown(),
        }
    }

    /// Take over the lock of `owner` (gone for good) and finish its operation.
    pub fn take_over(&self, owner: &OwnerRef, intent: &Intent) -> Suggestion {
        let s = self.resume(intent);
        let mut env = vec![(vars::KUBE_HA_TAKE_OVER_LOCK.name(), owner.to_string())];
        env.extend(s.env);
        Suggestion { env, ..s }
    }
}

/// The gcloud line that creates the cluster's SSH rule, `MASTER_NAME-ssh` (tcp:22 from `sources`
/// to the master tag on `network`): what the first `up` creates, for clusters without it (made by
/// kube-up, whose `<network>-default-ssh` was deleted, or by an older kube-ha). gcloud's own
/// project setting says where, as `PROJECT` does for kube-ha's lines.
pub fn gcloud_create_ssh_rule(names: &ClusterNames, network: &str, sources: &[String]) -> String {
    let sources = if sources.is_empty() {
        "0.0.0.0/0".to_string()
    } else {
        sources.join(",")
    };
    format!(
        "gcloud compute firewall-rules create {} --network={} --direction=INGRESS --allow=tcp:{} --target-tags={} \
         --source-ranges={}",
        shell_word(&names.firewall_ssh()),
        shell_word(network),
        crate::names::SSH_PORT,
        shell_word(names.tag()),
        shell_word(&sources)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggestion_sets_every_variable_that_steers_it() {
        let c = Commands::for_cluster(&ClusterNames::from_prefix("kubernetes"));
        assert_eq!(
            c.remove_replica("kubernetes-master-a1b", Some("europe-west1-c"))
                .to_string(),
            "KUBE_DELETE_NODES=false KUBE_GCE_ZONE=europe-west1-c KUBE_REPLICA_NAME=kubernetes-master-a1b kube-ha down"
        );
        assert_eq!(c.teardown().to_string(), "KUBE_DELETE_NODES=true kube-ha down");
        let e2e = Commands::for_cluster(&ClusterNames::from_prefix("e2e"));
        assert_eq!(
            e2e.add_replica("europe-west1-d").to_string(),
            "KUBE_GCE_INSTANCE_PREFIX=e2e KUBE_GCE_ZONE=europe-west1-d KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up"
        );
        let owner = OwnerRef {
            host: "laptop".into(),
            pid: 7,
        };
        assert!(
            c.take_over(&owner, &Intent::Teardown)
                .to_string()
                .starts_with("KUBE_HA_TAKE_OVER_LOCK=laptop:7 KUBE_DELETE_NODES=true")
        );
    }

    #[test]
    fn odd_values_are_quoted_as_one_shell_word() {
        assert_eq!(shell_word("europe-west1-b"), "europe-west1-b");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
