//! GCE firewall rules, enforced on ingress to each VM in its own network namespace: the project's
//! rules and instances → one nftables `inet` input chain per VM ([`ruleset`], pure), loaded with
//! `nft -f -` inside the VM whenever the rules, the instances or their tags change.
//!
//! The chain, in order:
//! 1. `lo` and replies to connections the VM opened (`ct direction reply`; their ICMP errors:
//!    `ct state related`) are accepted;
//! 2. one line per applicable rule and protocol entry, in GCE's order (priority, then deny before
//!    allow): protocol and ports, the sources (`sourceRanges`, plus the internal IPs of the
//!    instances carrying `sourceTags` or running as `sourceServiceAccounts`; none of the three
//!    means `0.0.0.0/0`), `accept` (allowed) or `drop` (denied). A rule applies to the VM when it is
//!    enabled, INGRESS, on the VM's network, and its `targetTags`/`targetServiceAccounts` (if any)
//!    name the VM;
//! 3. the default: drop.
//!
//! Nothing of the machine's own traffic bypasses the rules: kube-ha reaches a VM's etcd and API
//! over SSH (tcp:22, admitted by a rule like any operator's), never on the internal IP.
//!
//! Every packet of a connection someone else opened is checked, not only the first: deleting a
//! rule cuts what it allowed at once, also connections already open (GCE's own connection
//! tracking may let those finish; the sandbox errs on the side of showing the cut).
//!
//! Traffic through a forwarding rule reaches the VM from the rule's IP (the load balancer
//! connects from it), so it counts as from outside; traffic to an external IP is DNATed by the
//! router and keeps its source.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;

/// The nftables table in every VM.
const TABLE: &str = "gce_firewall";

/// What the firewall needs to know about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceFacts {
    /// nic0's network (the last part of its URL).
    pub network: String,
    /// nic0's networkIP.
    pub ip: Option<Ipv4Addr>,
    /// Network tags.
    pub tags: Vec<String>,
    /// Service account emails.
    pub service_accounts: Vec<String>,
}

impl InstanceFacts {
    /// From an instance as the emulator renders it.
    pub fn from_instance(instance: &Value) -> InstanceFacts {
        let nic0 = instance.pointer("/networkInterfaces/0");
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default()
        };
        InstanceFacts {
            network: nic0
                .and_then(|n| n.get("network"))
                .and_then(Value::as_str)
                .map_or("default", last_segment)
                .to_string(),
            ip: nic0
                .and_then(|n| n.get("networkIP"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
            tags: strings(instance.pointer("/tags/items")),
            service_accounts: instance
                .get("serviceAccounts")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|sa| sa.get("email").and_then(Value::as_str))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn last_segment(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

/// An IPv4 network `a.b.c.d/p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cidr {
    net: u32,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?),
            None => (text.parse::<Ipv4Addr>().ok()?, 32),
        };
        (prefix <= 32).then(|| Cidr {
            net: u32::from(ip) & mask(prefix),
            prefix,
        })
    }

    fn host(ip: Ipv4Addr) -> Cidr {
        Cidr {
            net: u32::from(ip),
            prefix: 32,
        }
    }

    fn contains(self, other: Cidr) -> bool {
        self.prefix <= other.prefix && other.net & mask(self.prefix) == self.net
    }

    fn render(self) -> String {
        let ip = Ipv4Addr::from(self.net);
        if self.prefix == 32 {
            ip.to_string()
        } else {
            format!("{ip}/{}", self.prefix)
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// `networks` without any network another one contains (nftables refuses overlapping set
/// elements).
fn without_overlaps(networks: BTreeSet<Cidr>) -> Vec<Cidr> {
    let all: Vec<Cidr> = networks.into_iter().collect();
    all.iter()
        .filter(|c| !all.iter().any(|o| o != *c && o.contains(**c)))
        .copied()
        .collect()
}

fn strings(rule: &Value, key: &str) -> Vec<String> {
    rule.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// The nftables match for one `allowed`/`denied` entry; `None` for one that matches nothing
/// (an unknown protocol).
fn protocol_match(entry: &Value) -> Option<String> {
    let protocol = entry
        .get("IPProtocol")
        .and_then(Value::as_str)
        .unwrap_or("all")
        .to_ascii_lowercase();
    let ports: Vec<String> = strings(entry, "ports");
    let named = match protocol.as_str() {
        "6" => "tcp",
        "17" => "udp",
        "132" => "sctp",
        other => other,
    };
    let with_ports = matches!(named, "tcp" | "udp" | "sctp");
    match named {
        "all" => Some(String::new()),
        _ if with_ports && !ports.is_empty() => {
            let valid: Vec<&String> = ports
                .iter()
                .filter(|p| p.split('-').all(|n| n.parse::<u16>().is_ok()))
                .collect();
            if valid.is_empty() {
                return None;
            }
            let list: Vec<&str> = valid.iter().map(|p| p.as_str()).collect();
            Some(format!("{named} dport {{ {} }} ", list.join(", ")))
        }
        _ if with_ports => Some(format!("meta l4proto {named} ")),
        "icmp" | "esp" | "ah" | "ipip" | "gre" => Some(format!("meta l4proto {named} ")),
        number if number.parse::<u8>().is_ok() => Some(format!("meta l4proto {number} ")),
        _ => None,
    }
}

/// The nftables script that makes `me`'s ingress chain match `firewalls`, given every instance of
/// the project (for source tags and service accounts). Replaces any earlier table in one
/// transaction. See the module doc.
pub fn ruleset(me: &InstanceFacts, instances: &[InstanceFacts], firewalls: &[Value]) -> String {
    let mut rules: Vec<&Value> = firewalls
        .iter()
        .filter(|r| r.get("disabled") != Some(&Value::Bool(true)))
        .filter(|r| r.get("direction").and_then(Value::as_str).unwrap_or("INGRESS") == "INGRESS")
        .filter(|r| r.get("network").and_then(Value::as_str).map_or("default", last_segment) == me.network)
        .filter(|r| {
            let tags = strings(r, "targetTags");
            let accounts = strings(r, "targetServiceAccounts");
            (tags.is_empty() || tags.iter().any(|t| me.tags.contains(t)))
                && (accounts.is_empty() || accounts.iter().any(|a| me.service_accounts.contains(a)))
        })
        .collect();
    let priority = |r: &Value| r.get("priority").and_then(Value::as_i64).unwrap_or(1000);
    let denies = |r: &Value| r.get("denied").and_then(Value::as_array).is_some_and(|d| !d.is_empty());
    rules.sort_by_key(|r| {
        (
            priority(r),
            !denies(r),
            r.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        )
    });

    let mut lines = vec![
        "    iif \"lo\" accept".to_string(),
        "    ct direction reply accept".to_string(),
        "    ct state related accept".to_string(),
    ];
    for rule in rules {
        let name = rule.get("name").and_then(Value::as_str).unwrap_or("unnamed");
        let ranges = strings(rule, "sourceRanges");
        let source_tags = strings(rule, "sourceTags");
        let source_accounts = strings(rule, "sourceServiceAccounts");
        let mut sources: BTreeSet<Cidr> = ranges.iter().filter_map(|r| Cidr::parse(r)).collect();
        for other in instances.iter().filter(|i| i.network == me.network) {
            let tagged = source_tags.iter().any(|t| other.tags.contains(t));
            let account = source_accounts.iter().any(|a| other.service_accounts.contains(a));
            if let (true, Some(ip)) = (tagged || account, other.ip) {
                sources.insert(Cidr::host(ip));
            }
        }
        let anywhere = ranges.is_empty() && source_tags.is_empty() && source_accounts.is_empty();
        let source = if anywhere || sources.iter().any(|c| c.prefix == 0) {
            String::new()
        } else if sources.is_empty() {
            // Sources named, none exists (yet): the rule matches nothing.
            continue;
        } else {
            let list: Vec<String> = without_overlaps(sources).into_iter().map(Cidr::render).collect();
            format!("ip saddr {{ {} }} ", list.join(", "))
        };
        let (entries, verdict) = if denies(rule) {
            (rule.get("denied"), "drop")
        } else {
            (rule.get("allowed"), "accept")
        };
        for entry in entries.and_then(Value::as_array).into_iter().flatten() {
            if let Some(protocol) = protocol_match(entry) {
                lines.push(format!("    {source}{protocol}{verdict} comment \"{name}\""));
            }
        }
    }
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain ingress {{\n    \
         type filter hook input priority 0; policy drop;\n{}\n  }}\n}}\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(ip: u8, tags: &[&str]) -> InstanceFacts {
        InstanceFacts {
            network: "default".into(),
            ip: Some(Ipv4Addr::new(198, 18, 1, ip)),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            service_accounts: vec![],
        }
    }

    fn chain(me: &InstanceFacts, all: &[InstanceFacts], rules: Value) -> Vec<String> {
        let rules: Vec<Value> = rules.as_array().cloned().unwrap_or_default();
        ruleset(me, all, &rules)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| l.contains("comment"))
            .collect()
    }

    #[test]
    fn kube_ups_rules_become_one_line_each() {
        let m = vm(2, &["kubernetes-master"]);
        let r = vm(3, &["kubernetes-master"]);
        let node = vm(4, &["node"]);
        let all = [m.clone(), r.clone(), node.clone()];
        let rules = json!([
            {"name": "kubernetes-master-https", "network": "https://x/global/networks/default",
             "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}],
             "sourceRanges": ["0.0.0.0/0"], "targetTags": ["kubernetes-master"]},
            {"name": "kubernetes-master-etcd", "allowed": [{"IPProtocol": "tcp", "ports": ["2380", "2381"]}],
             "sourceTags": ["kubernetes-master"], "targetTags": ["kubernetes-master"]},
            {"name": "default-default-ssh", "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}
        ]);
        assert_eq!(
            chain(&m, &all, rules.clone()),
            vec![
                "tcp dport { 22 } accept comment \"default-default-ssh\"",
                "ip saddr { 198.18.1.2, 198.18.1.3 } tcp dport { 2380, 2381 } accept comment \"kubernetes-master-etcd\"",
                "tcp dport { 443 } accept comment \"kubernetes-master-https\"",
            ]
        );
        // Target tags: the node gets only the untargeted rule.
        assert_eq!(
            chain(&node, &all, rules),
            vec!["tcp dport { 22 } accept comment \"default-default-ssh\""]
        );
    }

    #[test]
    fn order_is_priority_then_deny_and_odd_rules_fail_closed() {
        let m = vm(2, &[]);
        let rules = json!([
            {"name": "b-allow", "priority": 100, "allowed": [{"IPProtocol": "all"}], "sourceRanges": ["10.0.0.0/8", "10.1.0.0/16"]},
            {"name": "a-deny", "priority": 100, "denied": [{"IPProtocol": "udp"}]},
            {"name": "first", "priority": 10, "allowed": [{"IPProtocol": "icmp"}]},
            {"name": "off", "disabled": true, "allowed": [{"IPProtocol": "all"}]},
            {"name": "out", "direction": "EGRESS", "allowed": [{"IPProtocol": "all"}]},
            {"name": "elsewhere", "network": "global/networks/other", "allowed": [{"IPProtocol": "all"}]},
            {"name": "nobody", "sourceTags": ["ghost"], "allowed": [{"IPProtocol": "all"}]},
            {"name": "odd", "allowed": [{"IPProtocol": "martian"}]}
        ]);
        assert_eq!(
            chain(&m, std::slice::from_ref(&m), rules),
            vec![
                "meta l4proto icmp accept comment \"first\"",
                "meta l4proto udp drop comment \"a-deny\"",
                "ip saddr { 10.0.0.0/8 } accept comment \"b-allow\"",
            ]
        );
    }

    #[test]
    fn the_chain_drops_by_default_and_lets_nothing_of_the_machine_bypass_the_rules() {
        let m = vm(2, &[]);
        let text = ruleset(&m, &[], &[]);
        assert!(text.contains("policy drop;"));
        assert!(text.starts_with("table inet gce_firewall\ndelete table inet gce_firewall\n"));
        assert!(!text.contains("198.18.7.254"), "{text}");
    }

    #[test]
    fn instance_facts_come_from_the_gce_record() {
        let facts = InstanceFacts::from_instance(&json!({
            "networkInterfaces": [{"network": "https://e/compute/v1/projects/p/global/networks/vpc", "networkIP": "198.18.1.9"}],
            "tags": {"items": ["a", "b"]},
            "serviceAccounts": [{"email": "sa@p.iam.gserviceaccount.com"}]
        }));
        assert_eq!(facts.network, "vpc");
        assert_eq!(facts.ip, Some(Ipv4Addr::new(198, 18, 1, 9)));
        assert_eq!(facts.tags, vec!["a", "b"]);
        assert_eq!(facts.service_accounts, vec!["sa@p.iam.gserviceaccount.com"]);
    }
}
