//! Where a resource lives and how it is named: [`Kind`] (the collection), [`Scope`] (zone,
//! region or global), [`ResourceKey`], and the links between them — `selfLink`s out, and
//! resource references in (full URLs of any host, `projects/…` or `zones/…` partial paths).

use super::catalog;
use super::error::ApiError;

/// A zone, a region, or global.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `global/…`.
    Global,
    /// `regions/<r>/…`.
    Region(String),
    /// `zones/<z>/…`.
    Zone(String),
}

impl Scope {
    /// `global`, `regions/r` or `zones/z` (also the key of an aggregated list).
    pub fn path(&self) -> String {
        match self {
            Scope::Global => "global".into(),
            Scope::Region(r) => format!("regions/{r}"),
            Scope::Zone(z) => format!("zones/{z}"),
        }
    }

    /// The region of a region, or of a zone.
    pub fn region(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Region(r) => Some(r),
            Scope::Zone(z) => catalog::region_of_zone(z),
        }
    }

    /// 404 unless the zone or region is in the catalogue.
    pub fn ensure_known(&self, project: &str) -> Result<(), ApiError> {
        let known = match self {
            Scope::Global => true,
            Scope::Region(r) => catalog::is_region(r),
            Scope::Zone(z) => catalog::region_of_zone(z).is_some(),
        };
        if known {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("projects/{project}/{}", self.path())))
        }
    }

    fn matches(&self, kind: Kind) -> bool {
        matches!(
            (self, kind.scope_type()),
            (Scope::Global, ScopeType::Global)
                | (Scope::Region(_), ScopeType::Regional)
                | (Scope::Zone(_), ScopeType::Zonal)
        )
    }
}

/// The kind of scope a collection lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeType {
    /// Per zone.
    Zonal,
    /// Per region.
    Regional,
    /// Per project.
    Global,
}

/// The collections the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `instances` (zonal).
    Instance,
    /// `disks` (zonal).
    Disk,
    /// `addresses` (regional).
    Address,
    /// `targetPools` (regional).
    TargetPool,
    /// `forwardingRules` (regional).
    ForwardingRule,
    /// `firewalls` (global).
    Firewall,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Instance,
        Kind::Disk,
        Kind::Address,
        Kind::TargetPool,
        Kind::ForwardingRule,
        Kind::Firewall,
    ];

    /// The collection name in URLs (`instances`, `targetPools`, …).
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Instance => "instances",
            Kind::Disk => "disks",
            Kind::Address => "addresses",
            Kind::TargetPool => "targetPools",
            Kind::ForwardingRule => "forwardingRules",
            Kind::Firewall => "firewalls",
        }
    }

    /// The kind of a collection name.
    pub fn from_collection(collection: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == collection)
    }

    /// `compute#instance`, …
    pub fn kind(self) -> &'static str {
        match self {
            Kind::Instance => "compute#instance",
            Kind::Disk => "compute#disk",
            Kind::Address => "compute#address",
            Kind::TargetPool => "compute#targetPool",
            Kind::ForwardingRule => "compute#forwardingRule",
            Kind::Firewall => "compute#firewall",
        }
    }

    /// Where the collection lives.
    pub fn scope_type(self) -> ScopeType {
        match self {
            Kind::Instance | Kind::Disk => ScopeType::Zonal,
            Kind::Address | Kind::TargetPool | Kind::ForwardingRule => ScopeType::Regional,
            Kind::Firewall => ScopeType::Global,
        }
    }

    /// `compute#instanceList`, …
    pub fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }

    /// `compute#instanceAggregatedList`, …
    pub fn aggregated_kind(self) -> String {
        format!("{}AggregatedList", self.kind())
    }
}

/// One resource of one project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// Its collection.
    pub kind: Kind,
    /// Its zone, region or global.
    pub scope: Scope,
    /// Its name.
    pub name: String,
}

impl ResourceKey {
    /// A key.
    pub fn new(kind: Kind, scope: Scope, name: impl Into<String>) -> Self {
        ResourceKey {
            kind,
            scope,
            name: name.into(),
        }
    }

    /// `zones/z/instances/x` (relative to the project).
    pub fn rel(&self) -> String {
        format!("{}/{}/{}", self.scope.path(), self.kind.collection(), self.name)
    }

    /// `projects/p/zones/z/instances/x`, as in error messages.
    pub fn path(&self, project: &str) -> String {
        format!("projects/{project}/{}", self.rel())
    }
}

/// A parsed resource reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The project it names (the caller's project when the reference has none).
    pub project: String,
    /// Its scope.
    pub scope: Scope,
    /// Its collection name as written.
    pub collection: String,
    /// Its name.
    pub name: String,
}

impl Link {
    /// The key, if the collection is one the emulator serves in that kind of scope.
    pub fn key(&self) -> Option<ResourceKey> {
        let kind = Kind::from_collection(&self.collection)?;
        self.scope
            .matches(kind)
            .then(|| ResourceKey::new(kind, self.scope.clone(), self.name.clone()))
    }
}

/// The part of a reference after `/compute/v1/` (or the reference itself, without a leading `/`).
fn relative(reference: &str) -> &str {
    for marker in ["/compute/v1/", "/compute/beta/", "/compute/alpha/"] {
        if let Some(i) = reference.find(marker) {
            return &reference[i + marker.len()..];
        }
    }
    reference.trim_start_matches('/')
}

/// Parse a resource reference: a full URL (any host), `projects/p/zones/z/disks/d`, or
/// `zones/z/disks/d` (project defaults to `project`).
pub fn parse_link(project: &str, reference: &str) -> Option<Link> {
    let rel = relative(reference);
    let (project, rest) = match rel.strip_prefix("projects/") {
        Some(r) => {
            let (p, rest) = r.split_once('/')?;
            (p.to_string(), rest)
        }
        None => (project.to_string(), rel),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (scope, collection, name) = match parts.as_slice() {
        ["zones", z, c, n] => (Scope::Zone(z.to_string()), c, n),
        ["regions", r, c, n] => (Scope::Region(r.to_string()), c, n),
        ["global", c, n] => (Scope::Global, c, n),
        _ => return None,
    };
    if name.is_empty() || project.is_empty() {
        return None;
    }
    Some(Link {
        project,
        scope,
        collection: collection.to_string(),
        name: name.to_string(),
    })
}

/// A reference made absolute against `api_base` (`http://host:port/compute/v1`): full URLs of
/// any host and `projects/…` paths keep their path; `zones/…`, `regions/…`, `global/…` get the
/// project. Anything else is returned unchanged.
pub fn absolute(api_base: &str, project: &str, reference: &str) -> String {
    let has_api_path = ["/compute/v1/", "/compute/beta/", "/compute/alpha/"]
        .iter()
        .any(|m| reference.contains(m));
    let rel = relative(reference);
    if has_api_path || rel.starts_with("projects/") {
        format!("{api_base}/{rel}")
    } else if ["zones/", "regions/", "global/"].iter().any(|p| rel.starts_with(p)) {
        format!("{api_base}/projects/{project}/{rel}")
    } else {
        reference.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_from_urls_and_partial_paths() {
        let full = parse_link(
            "me",
            "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b/disks/d",
        )
        .expect("full url");
        assert_eq!(
            full.key(),
            Some(ResourceKey::new(Kind::Disk, Scope::Zone("us-central1-b".into()), "d"))
        );
        assert_eq!(full.project, "p");
        let partial = parse_link("me", "regions/us-east1/addresses/a").expect("partial");
        assert_eq!(partial.project, "me");
        assert_eq!(partial.key().map(|k| k.kind), Some(Kind::Address));
        let global = parse_link("me", "projects/x/global/firewalls/f").expect("global");
        assert_eq!(global.key().map(|k| k.scope), Some(Scope::Global));
        assert!(parse_link("me", "1.2.3.4").is_none());
        assert!(parse_link("me", "zones/z/disks").is_none());
        // a disk URL in a regional scope is not a disk
        let odd = parse_link("me", "regions/r/disks/d").expect("parses");
        assert_eq!(odd.key(), None);
    }

    #[test]
    fn references_become_absolute_on_our_base() {
        let base = "http://127.0.0.1:9/compute/v1";
        assert_eq!(
            absolute(base, "p", "zones/z/machineTypes/n1"),
            "http://127.0.0.1:9/compute/v1/projects/p/zones/z/machineTypes/n1"
        );
        assert_eq!(
            absolute(base, "p", "projects/cos-cloud/global/images/family/cos-stable"),
            "http://127.0.0.1:9/compute/v1/projects/cos-cloud/global/images/family/cos-stable"
        );
        assert_eq!(
            absolute(
                base,
                "p",
                "https://www.googleapis.com/compute/v1/projects/q/global/networks/default"
            ),
            "http://127.0.0.1:9/compute/v1/projects/q/global/networks/default"
        );
        assert_eq!(absolute(base, "p", "n1-standard-1"), "n1-standard-1");
    }

    #[test]
    fn scopes_know_their_region() {
        assert_eq!(Scope::Zone("europe-west1-c".into()).region(), Some("europe-west1"));
        assert!(Scope::Zone("nowhere-1-a".into()).ensure_known("p").is_err());
        assert_eq!(Kind::from_collection("targetPools"), Some(Kind::TargetPool));
        assert_eq!(Kind::Disk.list_kind(), "compute#diskList");
    }
}
