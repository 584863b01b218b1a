//! The fixed catalogues, shared by every project, and their JSON: regions and zones (real GCE
//! names; a zonal or regional call naming anything else is a 404), and a few public boot images
//! (for `gcloud compute images list --project=cos-cloud`, which kube-up used to resolve an empty
//! `MASTER_IMAGE`). Image names have the shape of real ones; instance inserts do not check them.

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

/// Public images: (project, name, family), newest of a family last.
const IMAGES: &[(&str, &str, &str)] = &[
    ("cos-cloud", "cos-109-17800-372-55", "cos-109-lts"),
    ("cos-cloud", "cos-121-17412-1-21", "cos-121-lts"),
    ("cos-cloud", "cos-stable-121-17412-1-21", "cos-stable"),
    ("debian-cloud", "debian-12-bookworm-v20250610", "debian-12"),
    ("ubuntu-os-cloud", "ubuntu-2204-jammy-v20250610", "ubuntu-2204-lts"),
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

/// Image JSON (`compute#image`); `api_base` is `<base>/compute/v1`.
fn image_json(api_base: &str, index: usize) -> Option<Value> {
    let (project, name, family) = IMAGES.get(index)?;
    Some(json!({
        "kind": "compute#image",
        "id": (3000 + index).to_string(),
        "creationTimestamp": "2025-06-10T00:00:00.000-07:00",
        "name": name,
        "description": format!("{family} image {name}"),
        "family": family,
        "sourceType": "RAW",
        "status": "READY",
        "architecture": "X86_64",
        "diskSizeGb": "10",
        "archiveSizeBytes": "1000000000",
        "selfLink": format!("{api_base}/projects/{project}/global/images/{name}"),
    }))
}

/// Every public image of `project` (none for other projects).
pub fn images(api_base: &str, project: &str) -> Vec<Value> {
    (0..IMAGES.len())
        .filter(|&i| IMAGES[i].0 == project)
        .filter_map(|i| image_json(api_base, i))
        .collect()
}

/// One image of `project` by name.
pub fn image(api_base: &str, project: &str, name: &str) -> Option<Value> {
    let i = IMAGES.iter().position(|(p, n, _)| *p == project && *n == name)?;
    image_json(api_base, i)
}

/// The newest image of a family of `project` (`images.getFromFamily`).
pub fn image_from_family(api_base: &str, project: &str, family: &str) -> Option<Value> {
    let i = IMAGES.iter().rposition(|(p, _, f)| *p == project && *f == family)?;
    image_json(api_base, i)
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

    #[test]
    fn images_are_found_by_project_name_and_family() {
        let base = "http://h/compute/v1";
        assert_eq!(images(base, "cos-cloud").len(), 3);
        assert!(images(base, "my-project").is_empty());
        let newest = image_from_family(base, "cos-cloud", "cos-121-lts").expect("family");
        assert_eq!(newest["name"], "cos-121-17412-1-21");
        assert!(image(base, "cos-cloud", "cos-121-17412-1-21").is_some());
        assert!(image(base, "debian-cloud", "cos-121-17412-1-21").is_none());
    }
}
