//! The SSH preflight, pure: kube-ha reaches etcd over SSH to each master (SPEC §5), so tcp:22
//! must reach the masters from where kube-ha runs. Does a firewall rule of the project admit it?
//!
//! A rule counts when it is enabled, INGRESS, on the masters' network, targets the masters (no
//! target tags, or the master tag; a rule that targets service accounts cannot be judged from
//! here and does not count), allows tcp port 22 (`tcp`/`6`/`all`, no ports or a list or range
//! with 22), and admits sources other than instances: source ranges, or no source at all (GCE
//! then means `0.0.0.0/0`); a rule with only source tags or service accounts admits other VMs,
//! not kube-ha. kube-up's `<network>-default-ssh` (tcp:22 from `0.0.0.0/0` to everything) counts.
//! A deny rule for tcp:22 from everywhere to the masters that comes first (lower priority
//! number, or the same: a deny wins a tie) cancels an allow. Where kube-ha runs from is not
//! known here, so any source range counts: the connection itself is the final word.

use crate::error::Refusal;
use crate::names::{ClusterNames, SSH_PORT};

use super::commands::gcloud_create_ssh_rule;
use super::snapshot::{FirewallRuleObs, Snapshot};

/// Does one `allowed`/`denied` entry cover tcp:22?
fn covers_ssh((protocol, ports): &(String, Vec<String>)) -> bool {
    let tcp = matches!(protocol.to_ascii_lowercase().as_str(), "tcp" | "6" | "all");
    let port = |p: &String| match p.split_once('-') {
        Some((lo, hi)) => {
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&SSH_PORT))
        }
        None => p.parse::<u16>() == Ok(SSH_PORT),
    };
    tcp && (ports.is_empty() || protocol.eq_ignore_ascii_case("all") || ports.iter().any(port))
}

/// Does the rule apply to ingress to the masters (tag `tag` on `network`)?
fn applies(rule: &FirewallRuleObs, network: Option<&str>, tag: &str) -> bool {
    !rule.disabled
        && rule.ingress
        && network.is_none_or(|n| rule.network == n)
        && rule.target_service_accounts.is_empty()
        && (rule.target_tags.is_empty() || rule.target_tags.iter().any(|t| t == tag))
}

/// Does the rule admit sources beyond the project's instances?
fn admits_outside(rule: &FirewallRuleObs) -> bool {
    !rule.source_ranges.is_empty() || (rule.source_tags.is_empty() && rule.source_service_accounts.is_empty())
}

/// Does a deny rule cut tcp:22 from everywhere?
fn denies_everywhere(rule: &FirewallRuleObs) -> bool {
    let everywhere = rule.source_ranges.iter().any(|r| r == "0.0.0.0/0")
        || (rule.source_ranges.is_empty() && rule.source_tags.is_empty() && rule.source_service_accounts.is_empty());
    everywhere && rule.denied.iter().any(covers_ssh)
}

/// The name of a rule that admits tcp:22 to the masters (tag `tag` on `network`, `None`: any
/// network), if any: the first in GCE's order (priority, then name).
pub fn ssh_admitted_by<'a>(rules: &'a [FirewallRuleObs], network: Option<&str>, tag: &str) -> Option<&'a str> {
    let mut allows: Vec<&FirewallRuleObs> = rules
        .iter()
        .filter(|r| applies(r, network, tag) && admits_outside(r) && r.allowed.iter().any(covers_ssh))
        .collect();
    allows.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let denied_first = |allow: &FirewallRuleObs| {
        rules
            .iter()
            .any(|d| applies(d, network, tag) && denies_everywhere(d) && d.priority <= allow.priority)
    };
    allows.into_iter().find(|a| !denied_first(a)).map(|r| r.name.as_str())
}

/// Refuse an add or a removal when no rule admits tcp:22 to the masters, with the gcloud line
/// that creates the cluster's own rule (`sources`: `KUBE_HA_SSH_SOURCE_RANGES`).
pub fn refuse_without_ssh(s: &Snapshot, names: &ClusterNames, sources: &[String]) -> Result<(), Refusal> {
    let network = s.masters_network.as_deref();
    if ssh_admitted_by(&s.firewall_rules, network, names.tag()).is_some() {
        return Ok(());
    }
    let network = network.unwrap_or("default");
    Err(Refusal::new(format!(
        "no firewall rule admits tcp:{SSH_PORT} to the masters (tag {} on network {network}), and kube-ha reaches \
         etcd over SSH; create one with {}",
        names.tag(),
        gcloud_create_ssh_rule(names, network, sources)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(name: &str, protocol: &str, ports: &[&str]) -> FirewallRuleObs {
        FirewallRuleObs {
            name: name.into(),
            allowed: vec![(protocol.into(), ports.iter().map(|p| p.to_string()).collect())],
            source_ranges: vec!["0.0.0.0/0".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_counts_when_it_lets_tcp_22_reach_the_masters_from_outside() {
        let tag = "k-master";
        let with = |f: fn(&mut FirewallRuleObs)| {
            let mut r = allow("r", "tcp", &["22"]);
            f(&mut r);
            r
        };
        let rows: Vec<(&str, Vec<FirewallRuleObs>, Option<&str>)> = vec![
            (
                "kube-up's default-ssh",
                vec![allow("default-default-ssh", "tcp", &["22"])],
                Some("default-default-ssh"),
            ),
            ("every port", vec![allow("r", "tcp", &[])], Some("r")),
            ("a range with 22", vec![allow("r", "tcp", &["20-30"])], Some("r")),
            ("protocol number 6", vec![allow("r", "6", &["22"])], Some("r")),
            ("all protocols", vec![allow("r", "all", &[])], Some("r")),
            ("another port", vec![allow("r", "tcp", &["2222"])], None),
            ("a range without 22", vec![allow("r", "tcp", &["23-30"])], None),
            ("udp", vec![allow("r", "udp", &["22"])], None),
            (
                "the master tag",
                vec![with(|r| r.target_tags = vec!["k-master".into()])],
                Some("r"),
            ),
            ("another tag", vec![with(|r| r.target_tags = vec!["node".into()])], None),
            (
                "service-account targets",
                vec![with(|r| r.target_service_accounts = vec!["sa@p".into()])],
                None,
            ),
            (
                "only from other VMs",
                vec![with(|r| {
                    r.source_ranges.clear();
                    r.source_tags = vec!["k-master".into()];
                })],
                None,
            ),
            (
                "no source at all (0.0.0.0/0)",
                vec![with(|r| r.source_ranges.clear())],
                Some("r"),
            ),
            (
                "IAP's range",
                vec![with(|r| r.source_ranges = vec!["35.235.240.0/20".into()])],
                Some("r"),
            ),
            ("disabled", vec![with(|r| r.disabled = true)], None),
            ("egress", vec![with(|r| r.ingress = false)], None),
            ("another network", vec![with(|r| r.network = "vpc".into())], None),
            (
                "a deny that comes first",
                vec![
                    allow("r", "tcp", &["22"]),
                    FirewallRuleObs {
                        name: "no-ssh".into(),
                        priority: 900,
                        denied: vec![("tcp".into(), vec!["22".into()])],
                        ..Default::default()
                    },
                ],
                None,
            ),
            (
                "a deny that comes later",
                vec![
                    allow("r", "tcp", &["22"]),
                    FirewallRuleObs {
                        name: "no-ssh".into(),
                        priority: 2000,
                        denied: vec![("all".into(), vec![])],
                        source_ranges: vec!["0.0.0.0/0".into()],
                        ..Default::default()
                    },
                ],
                Some("r"),
            ),
        ];
        for (what, rules, want) in rows {
            assert_eq!(ssh_admitted_by(&rules, Some("default"), tag), want, "{what}");
        }
    }

    #[test]
    fn the_refusal_ends_with_the_gcloud_line_that_creates_the_rule() {
        let names = ClusterNames::from_prefix("k");
        let s = Snapshot {
            masters_network: Some("default".into()),
            ..Default::default()
        };
        let e = refuse_without_ssh(&s, &names, &["0.0.0.0/0".into()])
            .expect_err("refused")
            .to_string();
        assert!(
            e.ends_with(
                "create one with gcloud compute firewall-rules create k-master-ssh --network=default \
                 --direction=INGRESS --allow=tcp:22 --target-tags=k-master --source-ranges=0.0.0.0/0"
            ),
            "{e}"
        );
        let mut ok = s.clone();
        ok.firewall_rules = vec![allow("default-default-ssh", "tcp", &["22"])];
        assert!(refuse_without_ssh(&ok, &names, &[]).is_ok());
    }
}
