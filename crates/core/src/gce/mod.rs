//! The Compute Engine adapter: every GCE call kube-ha makes, through the official
//! `google-cloud-compute-v1` client over HTTP.
//!
//! Clients are built in one place ([`Gce::connect`]): with an explicit endpoint (the emulator)
//! they use anonymous credentials and fast operation polling, otherwise Application Default
//! Credentials. Every mutating call waits for its operation with a deadline, and a DONE operation
//! that carries `error` is an error here (the client returns `Ok` for it). "Already exists" and
//! "not found" are typed ([`GceError`]) so callers can make steps idempotent with
//! [`created`]/[`deleted`].

use std::time::Duration;

pub mod bodies;

use google_cloud_compute_v1::client::{
    Addresses, Disks, Firewalls, ForwardingRules, Instances, Projects, TargetPools, Zones,
};
use google_cloud_compute_v1::model;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_lro::Poller;

/// A Compute Engine error, typed where callers branch.
#[derive(Debug, thiserror::Error)]
pub enum GceError {
    /// 404, or an operation that failed with RESOURCE_NOT_FOUND.
    #[error("{what}: not found")]
    NotFound {
        /// The call.
        what: String,
    },
    /// 409, or an operation that failed with RESOURCE_ALREADY_EXISTS.
    #[error("{what}: already exists")]
    AlreadyExists {
        /// The call.
        what: String,
    },
    /// 412: a fingerprint was stale (someone else wrote in between).
    #[error("{what}: precondition failed: {message}")]
    Precondition {
        /// The call.
        what: String,
        /// GCE's message.
        message: String,
    },
    /// Any other error reply or transport failure.
    #[error("{what}: {message}")]
    Api {
        /// The call.
        what: String,
        /// HTTP status, when there was a reply.
        http_status: Option<u16>,
        /// GCE's message.
        message: String,
    },
    /// The operation finished with an error.
    #[error("{what}: operation failed: {code}: {message}")]
    OperationFailed {
        /// The call.
        what: String,
        /// GCE's error code (e.g. QUOTA_EXCEEDED).
        code: String,
        /// GCE's message.
        message: String,
    },
    /// The operation did not finish in time.
    #[error("{what}: operation still running after {after:?}")]
    Timeout {
        /// The call.
        what: String,
        /// The deadline.
        after: Duration,
    },
}

impl GceError {
    fn from_client(what: &str, e: google_cloud_gax::error::Error) -> GceError {
        let what = what.to_string();
        let http_status = e.http_status_code();
        let code = e.status().map(|s| s.code);
        let message = e.status().map(|s| s.message.clone()).unwrap_or_else(|| e.to_string());
        match (code, http_status) {
            (Some(Code::NotFound), _) | (None, Some(404)) => GceError::NotFound { what },
            (Some(Code::AlreadyExists), _) | (None, Some(409)) => GceError::AlreadyExists { what },
            (Some(Code::FailedPrecondition), _) | (_, Some(412)) => GceError::Precondition { what, message },
            _ => GceError::Api {
                what,
                http_status,
                message,
            },
        }
    }

    fn from_operation(what: &str, op: &model::Operation) -> Option<GceError> {
        let error = op.error.as_ref()?;
        let first = error.errors.first();
        let code = first.and_then(|e| e.code.clone()).unwrap_or_else(|| "UNKNOWN".into());
        let message = first
            .and_then(|e| e.message.clone())
            .or_else(|| op.http_error_message.clone())
            .unwrap_or_default();
        let what = what.to_string();
        Some(match (code.as_str(), op.http_error_status_code) {
            ("RESOURCE_NOT_FOUND", _) | (_, Some(404)) => GceError::NotFound { what },
            ("RESOURCE_ALREADY_EXISTS" | "ALREADY_EXISTS", _) | (_, Some(409)) => GceError::AlreadyExists { what },
            ("CONDITION_NOT_MET", _) | (_, Some(412)) => GceError::Precondition { what, message },
            _ => GceError::OperationFailed { what, code, message },
        })
    }

    /// Is this "not found"?
    pub fn is_not_found(&self) -> bool {
        matches!(self, GceError::NotFound { .. })
    }

    /// Is this "already exists"?
    pub fn is_already_exists(&self) -> bool {
        matches!(self, GceError::AlreadyExists { .. })
    }
}

/// What an idempotent step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It changed the world.
    Changed,
    /// The world was already as wanted (exists / already gone).
    AlreadyDone,
}

/// "Already exists" is success for a create.
pub fn created(r: Result<(), GceError>) -> Result<Outcome, GceError> {
    match r {
        Ok(()) => Ok(Outcome::Changed),
        Err(e) if e.is_already_exists() => Ok(Outcome::AlreadyDone),
        Err(e) => Err(e),
    }
}

/// "Not found" is success for a delete.
pub fn deleted(r: Result<(), GceError>) -> Result<Outcome, GceError> {
    match r {
        Ok(()) => Ok(Outcome::Changed),
        Err(e) if e.is_not_found() => Ok(Outcome::AlreadyDone),
        Err(e) => Err(e),
    }
}

/// `Ok(None)` for "not found".
fn found<T>(r: Result<T, GceError>) -> Result<Option<T>, GceError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last path segment of a GCE URL (`…/zones/europe-west1-b` → `europe-west1-b`).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Every Compute client kube-ha uses, for one project.
#[derive(Clone, Debug)]
pub struct Gce {
    project: String,
    instances: Instances,
    disks: Disks,
    addresses: Addresses,
    firewalls: Firewalls,
    target_pools: TargetPools,
    forwarding_rules: ForwardingRules,
    zones: Zones,
    projects: Projects,
    op_timeout: Duration,
}

macro_rules! build_client {
    ($ty:ty, $endpoint:expr) => {{
        match $endpoint {
            Some(url) => {
                let backoff = google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                    .with_initial_delay(Duration::from_millis(20))
                    .with_maximum_delay(Duration::from_millis(250))
                    .build()
                    .map_err(|e| anyhow::anyhow!("polling policy: {e}"))?;
                <$ty>::builder()
                    .with_endpoint(url)
                    .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
                    .with_polling_backoff_policy(backoff)
                    .build()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot build the {} client for {url}: {e}", stringify!($ty)))?
            }
            None => {
                let backoff = google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                    .with_initial_delay(Duration::from_millis(500))
                    .with_maximum_delay(Duration::from_secs(5))
                    .build()
                    .map_err(|e| anyhow::anyhow!("polling policy: {e}"))?;
                <$ty>::builder().with_polling_backoff_policy(backoff).build().await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot build the {} client (Application Default Credentials: run `gcloud auth application-default login`): {e}",
                        stringify!($ty)
                    )
                })?
            }
        }
    }};
}

impl Gce {
    /// Clients for `project`, talking to `endpoint` (anonymous) or to real GCE (ADC).
    /// `op_timeout` bounds the wait for each operation.
    pub async fn connect(project: &str, endpoint: Option<&str>, op_timeout: Duration) -> anyhow::Result<Gce> {
        Ok(Gce {
            project: project.to_string(),
            instances: build_client!(Instances, endpoint),
            disks: build_client!(Disks, endpoint),
            addresses: build_client!(Addresses, endpoint),
            firewalls: build_client!(Firewalls, endpoint),
            target_pools: build_client!(TargetPools, endpoint),
            forwarding_rules: build_client!(ForwardingRules, endpoint),
            zones: build_client!(Zones, endpoint),
            projects: build_client!(Projects, endpoint),
            op_timeout,
        })
    }

    /// The project id.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Wait for an operation, with the deadline; a DONE operation with `error` is an error.
    async fn finish<P>(&self, what: String, poller: P) -> Result<(), GceError>
    where
        P: Poller<model::Operation, model::Operation>,
    {
        let op = match tokio::time::timeout(self.op_timeout, poller.until_done()).await {
            Err(_) => {
                return Err(GceError::Timeout {
                    what,
                    after: self.op_timeout,
                });
            }
            Ok(r) => r.map_err(|e| GceError::from_client(&what, e))?,
        };
        match GceError::from_operation(&what, &op) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---- project metadata (lock and resume record) ----

    /// The project's common metadata items and fingerprint.
    pub async fn project_metadata(&self) -> Result<model::Metadata, GceError> {
        let what = format!("get project {}", self.project);
        let p = self
            .projects
            .get()
            .set_project(&self.project)
            .send()
            .await
            .map_err(|e| GceError::from_client(&what, e))?;
        Ok(p.common_instance_metadata.unwrap_or_default())
    }

    /// Replace the project's common metadata; `Precondition` when the fingerprint is stale.
    pub async fn set_project_metadata(&self, metadata: model::Metadata) -> Result<(), GceError> {
        let what = format!("set metadata of project {}", self.project);
        let poller = self
            .projects
            .set_common_instance_metadata()
            .set_project(&self.project)
            .set_body(metadata)
            .poller();
        self.finish(what, poller).await
    }

    // ---- catalogue ----

    /// The region of `zone`, or `None` when the project has no such zone.
    pub async fn zone_region(&self, zone: &str) -> Result<Option<String>, GceError> {
        let what = format!("get zone {zone}");
        let z = found(
            self.zones
                .get()
                .set_project(&self.project)
                .set_zone(zone)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )?;
        Ok(z.map(|z| z.region.as_deref().map(last_segment).unwrap_or_default().to_string()))
    }

    /// Every zone of the project's catalogue, with its region.
    pub async fn zones(&self) -> Result<Vec<(String, String)>, GceError> {
        let what = "list zones";
        let mut pages = self.zones.list().set_project(&self.project).by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| GceError::from_client(what, e))?;
            out.extend(page.items.into_iter().filter_map(|z| {
                let region = last_segment(z.region.as_deref()?).to_string();
                Some((z.name?, region))
            }));
        }
        Ok(out)
    }

    // ---- reads ----

    /// Every instance of the project, across zones.
    pub async fn all_instances(&self) -> Result<Vec<model::Instance>, GceError> {
        let what = "list instances (aggregated)";
        let mut pages = self.instances.aggregated_list().set_project(&self.project).by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| GceError::from_client(what, e))?;
            out.extend(page.items.into_values().flat_map(|scoped| scoped.instances));
        }
        Ok(out)
    }

    /// Every disk of the project, across zones.
    pub async fn all_disks(&self) -> Result<Vec<model::Disk>, GceError> {
        let what = "list disks (aggregated)";
        let mut pages = self.disks.aggregated_list().set_project(&self.project).by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| GceError::from_client(what, e))?;
            out.extend(page.items.into_values().flat_map(|scoped| scoped.disks));
        }
        Ok(out)
    }

    /// The region's addresses.
    pub async fn addresses(&self, region: &str) -> Result<Vec<model::Address>, GceError> {
        let what = format!("list addresses in {region}");
        let mut pages = self
            .addresses
            .list()
            .set_project(&self.project)
            .set_region(region)
            .by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page.map_err(|e| GceError::from_client(&what, e))?.items);
        }
        Ok(out)
    }

    /// Every address of the project, across regions.
    pub async fn all_addresses(&self) -> Result<Vec<model::Address>, GceError> {
        let what = "list addresses (aggregated)";
        let mut pages = self.addresses.aggregated_list().set_project(&self.project).by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| GceError::from_client(what, e))?;
            out.extend(page.items.into_values().flat_map(|scoped| scoped.addresses));
        }
        Ok(out)
    }

    /// One instance.
    pub async fn instance(&self, zone: &str, name: &str) -> Result<Option<model::Instance>, GceError> {
        let what = format!("get instance {name} in {zone}");
        found(
            self.instances
                .get()
                .set_project(&self.project)
                .set_zone(zone)
                .set_instance(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// One disk (a replica copies the existing master's boot disk type).
    pub async fn disk(&self, zone: &str, name: &str) -> Result<Option<model::Disk>, GceError> {
        let what = format!("get disk {name} in {zone}");
        found(
            self.disks
                .get()
                .set_project(&self.project)
                .set_zone(zone)
                .set_disk(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// One regional address.
    pub async fn address(&self, region: &str, name: &str) -> Result<Option<model::Address>, GceError> {
        let what = format!("get address {name} in {region}");
        found(
            self.addresses
                .get()
                .set_project(&self.project)
                .set_region(region)
                .set_address(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// One firewall rule.
    pub async fn firewall(&self, name: &str) -> Result<Option<model::Firewall>, GceError> {
        let what = format!("get firewall {name}");
        found(
            self.firewalls
                .get()
                .set_project(&self.project)
                .set_firewall(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// Every firewall rule of the project (the SSH preflight looks for one that admits tcp:22
    /// to the masters, whoever made it).
    pub async fn all_firewalls(&self) -> Result<Vec<model::Firewall>, GceError> {
        let what = "list firewall rules";
        let mut pages = self.firewalls.list().set_project(&self.project).by_page();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page.map_err(|e| GceError::from_client(what, e))?.items);
        }
        Ok(out)
    }

    /// One target pool.
    pub async fn target_pool(&self, region: &str, name: &str) -> Result<Option<model::TargetPool>, GceError> {
        let what = format!("get target pool {name} in {region}");
        found(
            self.target_pools
                .get()
                .set_project(&self.project)
                .set_region(region)
                .set_target_pool(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// One forwarding rule.
    pub async fn forwarding_rule(&self, region: &str, name: &str) -> Result<Option<model::ForwardingRule>, GceError> {
        let what = format!("get forwarding rule {name} in {region}");
        found(
            self.forwarding_rules
                .get()
                .set_project(&self.project)
                .set_region(region)
                .set_forwarding_rule(name)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    // ---- mutations (each waits for its operation) ----

    /// Create a firewall rule.
    pub async fn insert_firewall(&self, body: model::Firewall) -> Result<(), GceError> {
        let what = format!("create firewall {}", body.name.as_deref().unwrap_or_default());
        self.finish(
            what,
            self.firewalls
                .insert()
                .set_project(&self.project)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Delete a firewall rule.
    pub async fn delete_firewall(&self, name: &str) -> Result<(), GceError> {
        let what = format!("delete firewall {name}");
        self.finish(
            what,
            self.firewalls
                .delete()
                .set_project(&self.project)
                .set_firewall(name)
                .poller(),
        )
        .await
    }

    /// Reserve a regional address.
    pub async fn insert_address(&self, region: &str, body: model::Address) -> Result<(), GceError> {
        let what = format!(
            "reserve address {} in {region}",
            body.name.as_deref().unwrap_or_default()
        );
        self.finish(
            what,
            self.addresses
                .insert()
                .set_project(&self.project)
                .set_region(region)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Release a regional address.
    pub async fn delete_address(&self, region: &str, name: &str) -> Result<(), GceError> {
        let what = format!("release address {name} in {region}");
        self.finish(
            what,
            self.addresses
                .delete()
                .set_project(&self.project)
                .set_region(region)
                .set_address(name)
                .poller(),
        )
        .await
    }

    /// Create a disk.
    pub async fn insert_disk(&self, zone: &str, body: model::Disk) -> Result<(), GceError> {
        let what = format!("create disk {} in {zone}", body.name.as_deref().unwrap_or_default());
        self.finish(
            what,
            self.disks
                .insert()
                .set_project(&self.project)
                .set_zone(zone)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Delete a disk.
    pub async fn delete_disk(&self, zone: &str, name: &str) -> Result<(), GceError> {
        let what = format!("delete disk {name} in {zone}");
        self.finish(
            what,
            self.disks
                .delete()
                .set_project(&self.project)
                .set_zone(zone)
                .set_disk(name)
                .poller(),
        )
        .await
    }

    /// Create an instance.
    pub async fn insert_instance(&self, zone: &str, body: model::Instance) -> Result<(), GceError> {
        let what = format!("create instance {} in {zone}", body.name.as_deref().unwrap_or_default());
        self.finish(
            what,
            self.instances
                .insert()
                .set_project(&self.project)
                .set_zone(zone)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Delete an instance.
    pub async fn delete_instance(&self, zone: &str, name: &str) -> Result<(), GceError> {
        let what = format!("delete instance {name} in {zone}");
        self.finish(
            what,
            self.instances
                .delete()
                .set_project(&self.project)
                .set_zone(zone)
                .set_instance(name)
                .poller(),
        )
        .await
    }

    /// Remove an access config from `nic`.
    pub async fn delete_access_config(
        &self,
        zone: &str,
        instance: &str,
        nic: &str,
        access_config: &str,
    ) -> Result<(), GceError> {
        let what = format!("delete access config of {instance}");
        let poller = self
            .instances
            .delete_access_config()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(instance)
            .set_network_interface(nic)
            .set_access_config(access_config)
            .poller();
        self.finish(what, poller).await
    }

    /// Add an access config to `nic` (`nat_ip` None: a new ephemeral IP).
    pub async fn add_access_config(
        &self,
        zone: &str,
        instance: &str,
        nic: &str,
        name: &str,
        nat_ip: Option<&str>,
    ) -> Result<(), GceError> {
        let what = format!("add access config to {instance}");
        let mut ac = model::AccessConfig::default();
        ac.name = Some(name.to_string());
        ac.nat_ip = nat_ip.map(str::to_string);
        ac.r#type = Some(model::access_config::Type::OneToOneNat);
        let poller = self
            .instances
            .add_access_config()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(instance)
            .set_network_interface(nic)
            .set_body(ac)
            .poller();
        self.finish(what, poller).await
    }

    /// Create a target pool.
    pub async fn insert_target_pool(&self, region: &str, body: model::TargetPool) -> Result<(), GceError> {
        let what = format!(
            "create target pool {} in {region}",
            body.name.as_deref().unwrap_or_default()
        );
        self.finish(
            what,
            self.target_pools
                .insert()
                .set_project(&self.project)
                .set_region(region)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Delete a target pool.
    pub async fn delete_target_pool(&self, region: &str, name: &str) -> Result<(), GceError> {
        let what = format!("delete target pool {name} in {region}");
        self.finish(
            what,
            self.target_pools
                .delete()
                .set_project(&self.project)
                .set_region(region)
                .set_target_pool(name)
                .poller(),
        )
        .await
    }

    /// Add an instance (by URL) to a target pool.
    pub async fn add_to_target_pool(&self, region: &str, pool: &str, instance_url: &str) -> Result<(), GceError> {
        let what = format!("add {} to target pool {pool}", last_segment(instance_url));
        let mut reference = model::InstanceReference::default();
        reference.instance = Some(instance_url.to_string());
        let mut body = model::TargetPoolsAddInstanceRequest::default();
        body.instances = vec![reference];
        let poller = self
            .target_pools
            .add_instance()
            .set_project(&self.project)
            .set_region(region)
            .set_target_pool(pool)
            .set_body(body)
            .poller();
        self.finish(what, poller).await
    }

    /// Remove an instance (by URL) from a target pool.
    pub async fn remove_from_target_pool(&self, region: &str, pool: &str, instance_url: &str) -> Result<(), GceError> {
        let what = format!("remove {} from target pool {pool}", last_segment(instance_url));
        let mut reference = model::InstanceReference::default();
        reference.instance = Some(instance_url.to_string());
        let mut body = model::TargetPoolsRemoveInstanceRequest::default();
        body.instances = vec![reference];
        let poller = self
            .target_pools
            .remove_instance()
            .set_project(&self.project)
            .set_region(region)
            .set_target_pool(pool)
            .set_body(body)
            .poller();
        self.finish(what, poller).await
    }

    /// Create a forwarding rule.
    pub async fn insert_forwarding_rule(&self, region: &str, body: model::ForwardingRule) -> Result<(), GceError> {
        let what = format!(
            "create forwarding rule {} in {region}",
            body.name.as_deref().unwrap_or_default()
        );
        self.finish(
            what,
            self.forwarding_rules
                .insert()
                .set_project(&self.project)
                .set_region(region)
                .set_body(body)
                .poller(),
        )
        .await
    }

    /// Delete a forwarding rule.
    pub async fn delete_forwarding_rule(&self, region: &str, name: &str) -> Result<(), GceError> {
        let what = format!("delete forwarding rule {name} in {region}");
        self.finish(
            what,
            self.forwarding_rules
                .delete()
                .set_project(&self.project)
                .set_region(region)
                .set_forwarding_rule(name)
                .poller(),
        )
        .await
    }

    /// Replace an instance's metadata (`instances.setMetadata`). `metadata` must carry the
    /// fingerprint it was read with: `Precondition` when someone wrote in between (412).
    pub async fn set_instance_metadata(
        &self,
        zone: &str,
        name: &str,
        metadata: model::Metadata,
    ) -> Result<(), GceError> {
        let what = format!("set metadata of instance {name} in {zone}");
        let poller = self
            .instances
            .set_metadata()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_body(metadata)
            .poller();
        self.finish(what, poller).await
    }

    /// What an instance's guest published under `query_path` (`instances.getGuestAttributes`,
    /// e.g. `hostkeys/`); `None` when there is nothing (404: guest attributes disabled, or never
    /// written).
    pub async fn guest_attributes(
        &self,
        zone: &str,
        name: &str,
        query_path: &str,
    ) -> Result<Option<model::GuestAttributes>, GceError> {
        let what = format!("get guest attributes {query_path} of instance {name} in {zone}");
        found(
            self.instances
                .get_guest_attributes()
                .set_project(&self.project)
                .set_zone(zone)
                .set_instance(name)
                .set_query_path(query_path)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )
    }

    /// Everything an instance wrote to serial port `port` that GCE still holds
    /// (`instances.getSerialPortOutput`, from the start of its buffer); `None` when the instance
    /// is gone.
    pub async fn serial_port_output(&self, zone: &str, name: &str, port: i32) -> Result<Option<String>, GceError> {
        let what = format!("get serial port {port} output of instance {name} in {zone}");
        let out = found(
            self.instances
                .get_serial_port_output()
                .set_project(&self.project)
                .set_zone(zone)
                .set_instance(name)
                .set_port(port)
                .send()
                .await
                .map_err(|e| GceError::from_client(&what, e)),
        )?;
        Ok(out.map(|o| o.contents.unwrap_or_default()))
    }

    /// A full URL for a zonal instance, as target pools want it.
    pub fn instance_url(&self, zone: &str, name: &str) -> String {
        format!("projects/{}/zones/{zone}/instances/{name}", self.project)
    }
}
