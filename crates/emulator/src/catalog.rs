//! The fixed catalogue of regions and zones (real GCE names), shared by every project, and their
//! JSON. A zonal or regional call naming anything else is a 404.

use serde_json::{Value, json};

/// Regions and the suffixes of their zones.
const REGIONS: &[(&str, &[&str])] = &[
    ("us-central1", &["a", "b", "c", "f"]),
    ("us-east1", &["b", "c", "d"]),
    ("us-west1", &["a", "b", "c"]),
    ("europe-west1", &["b", "c", "d"]),
    ("europe-west4", &["a", "b", "c"]),
    ("asia-east1", &["a", "b", "c"]),
    ("northamerica-northeast1", &["a", "b", "c"]),
];

/// GCE reports this creation time for its zones and regions.
const CATALOGUE_CREATED: &str = "1969-12-31T16:00:00.000-08:00";

/// Every region name, in catalogue order.
pub fn regions() -> impl Iterator<Item = &'static str> {
    REGIONS.iter().map(|(r, _)| *r)
}

/// Every zone name with its region, in catalogue order.
pub fn zones() -> impl Iterator<Item = (String, &'static str)> {
    REGIONS
        .iter()
        .flat_map(|(r, zs)| zs.iter().map(move |z| (format!("{r}-{z}"), *r)))
}

/// The region of a known zone.
pub fn region_of_zone(zone: &str) -> Option<&'static str> {
    zones().find(|(z, _)| z == zone).map(|(_, r)| r)
}

/// Whether the region is in the catalogue.
pub fn is_region(region: &str) -> bool {
    regions().any(|r| r == region)
}

/// Zone JSON (`compute#zone`); `project_url` is `<base>/projects/<p>`.
pub fn zone_json(project_url: &str, zone: &str) -> Option<Value> {
    let (index, (name, region)) = zones().enumerate().find(|(_, (z, _))| z == zone)?;
    Some(json!({
        "kind": "compute#zone",
        "id": (2000 + index).to_string(),
        "creationTimestamp": CATALOGUE_CREATED,
        "name": name,
        "description": name,
        "status": "UP",
        "region": format!("{project_url}/regions/{region}"),
        "selfLink": format!("{project_url}/zones/{name}"),
        "availableCpuPlatforms": ["Intel Cascade Lake", "Intel Ice Lake", "AMD Milan"],
        "supportsPzs": false,
    }))
}

/// Region JSON (`compute#region`).
pub fn region_json(project_url: &str, region: &str) -> Option<Value> {
    let index = regions().position(|r| r == region)?;
    let zone_links: Vec<String> = zones()
        .filter(|(_, r)| *r == region)
        .map(|(z, _)| format!("{project_url}/zones/{z}"))
        .collect();
    Some(json!({
        "kind": "compute#region",
        "id": (1000 + index).to_string(),
        "creationTimestamp": CATALOGUE_CREATED,
        "name": region,
        "description": region,
        "status": "UP",
        "zones": zone_links,
        "quotas": [],
        "selfLink": format!("{project_url}/regions/{region}"),
        "supportsPzs": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_belong_to_their_region() {
        assert_eq!(region_of_zone("europe-west1-b"), Some("europe-west1"));
        assert_eq!(region_of_zone("us-central1-f"), Some("us-central1"));
        assert_eq!(region_of_zone("us-central1-e"), None);
        assert!(is_region("northamerica-northeast1"));
        let r = region_json("http://h/compute/v1/projects/p", "us-east1").expect("known");
        assert_eq!(r["zones"].as_array().map(Vec::len), Some(3));
        assert!(zone_json("u", "mars-1-a").is_none());
    }
}
