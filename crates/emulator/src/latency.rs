//! Operation latencies per collection and method (SPEC §7 item 5): how long an operation of
//! `instances.insert`, `disks.insert`, … stays PENDING/RUNNING before it is DONE, so a benchmark
//! can replay GCE's own latencies (instance insert ≈ 10–20 s, address, disk and forwarding rule
//! ≈ 2–10 s) instead of one latency for everything.
//!
//! A key is `<collection>.<method>` (`instances.insert`, `targetPools.addInstance`,
//! `projects.setCommonInstanceMetadata`) or a bare `<collection>` (every method of it). The
//! method is the operation's `operationType`. The most specific key wins; without one, the
//! default (`--op-latency-ms`) applies. Keys are checked against [`METHODS`], so a typo is an
//! error instead of a latency that silently never applies.
//!
//! Set at start with `kube-ha emulator --op-latency instances.insert=15000,disks=3000` (ms;
//! repeatable) and at run time with `/_emulator/latency` (see the crate doc).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// Every collection whose calls create operations, with the `operationType`s they create.
pub const METHODS: &[(&str, &[&str])] = &[
    (
        "instances",
        &[
            "insert",
            "delete",
            "addAccessConfig",
            "deleteAccessConfig",
            "setMetadata",
            "setLabels",
            "setDiskAutoDelete",
        ],
    ),
    ("disks", &["insert", "delete"]),
    ("addresses", &["insert", "delete"]),
    ("firewalls", &["insert", "delete"]),
    ("targetPools", &["insert", "delete", "addInstance", "removeInstance"]),
    ("forwardingRules", &["insert", "delete"]),
    ("projects", &["setCommonInstanceMetadata"]),
];

/// Latencies of some collections or methods, by key (see the module doc). Only valid keys get in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodLatencies(BTreeMap<String, Duration>);

impl MethodLatencies {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// `instances.insert=15000,disks=3000` (milliseconds); an empty string is no overrides.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, ms) = entry
                .split_once('=')
                .ok_or_else(|| format!("'{entry}' is not KEY=MS (e.g. instances.insert=15000)"))?;
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| format!("'{entry}': '{}' is not a number of milliseconds", ms.trim()))?;
            out.set(key.trim(), Some(Duration::from_millis(ms)))?;
        }
        Ok(out)
    }

    /// Set (`Some`) or remove (`None`) the latency of a key; an unknown key is an error naming
    /// the known ones.
    pub fn set(&mut self, key: &str, latency: Option<Duration>) -> Result<(), String> {
        check_key(key)?;
        match latency {
            Some(d) => self.0.insert(key.to_string(), d),
            None => self.0.remove(key),
        };
        Ok(())
    }

    /// Every key of `other` set here too (later wins).
    pub fn merge(&mut self, other: &MethodLatencies) {
        self.0.extend(other.0.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// The latency of `collection.method` if set, else of `collection` if set.
    pub fn get(&self, collection: &str, method: &str) -> Option<Duration> {
        self.0
            .get(&format!("{collection}.{method}"))
            .or_else(|| self.0.get(collection))
            .copied()
    }

    /// `{"instances.insert": 15000, …}` (milliseconds).
    pub fn to_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(k, d)| (k.clone(), json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))))
            .collect();
        Value::Object(map)
    }
}

fn check_key(key: &str) -> Result<(), String> {
    let (collection, method) = match key.split_once('.') {
        Some((c, m)) => (c, Some(m)),
        None => (key, None),
    };
    let known = METHODS
        .iter()
        .find(|(c, _)| *c == collection)
        .is_some_and(|(_, methods)| method.is_none_or(|m| methods.contains(&m)));
    if known {
        return Ok(());
    }
    let all: Vec<String> = METHODS
        .iter()
        .flat_map(|(c, ms)| ms.iter().map(move |m| format!("{c}.{m}")))
        .collect();
    Err(format!(
        "unknown operation '{key}': use a collection or COLLECTION.METHOD, one of {}",
        all.join(", ")
    ))
}

/// The latencies an emulator applies now: a default and the overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    /// For every operation without an override.
    pub default: Duration,
    /// Per collection or method.
    pub methods: MethodLatencies,
}

impl Latencies {
    /// The latency of an operation of `collection` with `operationType` `method`.
    pub fn of(&self, collection: &str, method: &str) -> Duration {
        self.methods.get(collection, method).unwrap_or(self.default)
    }

    /// `{"defaultMs": N, "methods": {…}}`, the `/_emulator/latency` document.
    pub fn to_json(&self) -> Value {
        json!({
            "defaultMs": u64::try_from(self.default.as_millis()).unwrap_or(u64::MAX),
            "methods": self.methods.to_json(),
        })
    }

    /// Apply a `POST /_emulator/latency` body: `defaultMs` replaces the default, each entry of
    /// `methods` sets a key (`null` removes it). Nothing changes when any part is invalid.
    pub fn update(&mut self, body: &Value) -> Result<(), String> {
        let Some(map) = body.as_object() else {
            return Err("the body must be a JSON object {\"defaultMs\", \"methods\"}".into());
        };
        if let Some(unknown) = map.keys().find(|k| *k != "defaultMs" && *k != "methods") {
            return Err(format!("unknown field '{unknown}' (known: defaultMs, methods)"));
        }
        let mut next = self.clone();
        if let Some(v) = map.get("defaultMs") {
            next.default = Duration::from_millis(millis(v, "defaultMs")?.ok_or("defaultMs must be a number")?);
        }
        match map.get("methods") {
            None | Some(Value::Null) => {}
            Some(Value::Object(methods)) => {
                for (key, v) in methods {
                    next.methods.set(key, millis(v, key)?.map(Duration::from_millis))?;
                }
            }
            Some(_) => return Err("methods must be an object {\"instances.insert\": 15000, …}".into()),
        }
        *self = next;
        Ok(())
    }
}

/// A number of milliseconds, or `None` for null.
fn millis(v: &Value, what: &str) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{what}: {v} is not a number of milliseconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_most_specific_key_wins_over_the_collection_and_the_default() {
        let l = Latencies {
            default: MS(7),
            methods: MethodLatencies::parse("instances.insert=15000, instances=500,disks.insert=3000").expect("valid"),
        };
        assert_eq!(l.of("instances", "insert"), MS(15000));
        assert_eq!(l.of("instances", "delete"), MS(500));
        assert_eq!(l.of("disks", "insert"), MS(3000));
        assert_eq!(l.of("disks", "delete"), MS(7));
        assert_eq!(l.of("projects", "setCommonInstanceMetadata"), MS(7));
    }

    #[test]
    fn typos_and_malformed_entries_are_refused() {
        assert!(MethodLatencies::parse("instances.insrt=1").is_err());
        assert!(MethodLatencies::parse("instance=1").is_err());
        assert!(MethodLatencies::parse("instances.insert").is_err());
        assert!(MethodLatencies::parse("instances.insert=soon").is_err());
        assert!(MethodLatencies::parse("instances.insert=-1").is_err());
        let e = MethodLatencies::parse("disks.attach=1").expect_err("unknown method");
        assert!(e.contains("disks.insert"), "{e}");
        assert_eq!(MethodLatencies::parse(""), Ok(MethodLatencies::new()));
    }

    #[test]
    fn updates_set_remove_and_are_all_or_nothing() {
        let mut l = Latencies::default();
        l.update(&json!({"defaultMs": 5, "methods": {"instances.insert": 100, "addresses": 20}}))
            .expect("valid");
        assert_eq!(
            l.to_json(),
            json!({"defaultMs": 5, "methods": {"addresses": 20, "instances.insert": 100}})
        );
        l.update(&json!({"methods": {"addresses": null}})).expect("valid");
        assert_eq!(l.of("addresses", "insert"), MS(5));
        let before = l.clone();
        assert!(
            l.update(&json!({"defaultMs": 1, "methods": {"nope.insert": 1}}))
                .is_err()
        );
        assert!(l.update(&json!({"default": 1})).is_err());
        assert!(l.update(&json!({"defaultMs": "1"})).is_err());
        assert_eq!(l, before);
    }

    #[test]
    fn every_operation_the_emulator_creates_can_be_given_a_latency() {
        use crate::resources::Mutation;
        use crate::scope::{Kind, ResourceKey, Scope};
        let zone = || Scope::Zone("us-central1-b".into());
        let vm = || ResourceKey::new(Kind::Instance, zone(), "vm");
        let pool = || ResourceKey::new(Kind::TargetPool, Scope::Region("us-central1".into()), "p");
        let mut calls = vec![
            Mutation::AddAccessConfig {
                key: vm(),
                nic: "nic0".into(),
                config: json!({}),
            },
            Mutation::DeleteAccessConfig {
                key: vm(),
                nic: "nic0".into(),
                name: "n".into(),
            },
            Mutation::SetMetadata {
                key: vm(),
                metadata: json!({}),
            },
            Mutation::SetLabels {
                key: vm(),
                body: json!({}),
            },
            Mutation::SetDiskAutoDelete {
                key: vm(),
                device_name: "d".into(),
                auto_delete: true,
            },
            Mutation::AddPoolInstances {
                key: pool(),
                instances: vec![],
            },
            Mutation::RemovePoolInstances {
                key: pool(),
                instances: vec![],
            },
            Mutation::SetCommonInstanceMetadata { metadata: json!({}) },
        ];
        for kind in Kind::ALL {
            let key = ResourceKey::new(kind, zone(), "x");
            calls.push(Mutation::Delete { key: key.clone() });
            calls.push(Mutation::Insert {
                key,
                body: json!({}),
                id: 1,
                created: String::new(),
            });
        }
        for m in calls {
            let key = format!("{}.{}", m.collection(), m.op_type());
            assert_eq!(check_key(&key), Ok(()), "{key}");
        }
    }

    #[test]
    fn merging_overrides_keeps_the_later_value() {
        let mut a = MethodLatencies::parse("disks=1,addresses=2").expect("valid");
        a.merge(&MethodLatencies::parse("disks=3").expect("valid"));
        assert_eq!(a.get("disks", "insert"), Some(MS(3)));
        assert_eq!(a.get("addresses", "delete"), Some(MS(2)));
    }
}
