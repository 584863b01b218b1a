//! Act: run a plan's steps in order. Each step is idempotent ("already exists" / "already gone"
//! count as done) and re-reads what it depends on, so a step found half-done by a rerun is simply
//! run again (steno's rule: a step found "started" is re-executed).
//!
//! Values only known while acting are resolved here: the IPs just reserved, the CAs (fresh for the
//! first master, read back from metadata for replicas), each replica's own certificates, and the
//! short-lived etcd client certificate kube-ha issues itself.
//!
//! etcd and the replicas' own API are reached only through [`Access`] (SSH to each master, its
//! own `127.0.0.1`); which member belongs to which replica is the snapshot's rule
//! ([`Snapshot::member_of`], [`Snapshot::replica_of_member`]), kept up to date in `view` with the
//! member lists and addresses this run sees.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use google_cloud_compute_v1::model;

use crate::bootstrap::{self, BootstrapInput};
use crate::config::{Config, Failpoint, MasterSettings};
use crate::error::Interrupted;
use crate::etcd::{EndpointStatus, EtcdClient, EtcdError, Member};
use crate::gce::{Gce, Outcome, bodies, created, deleted, last_segment};
use crate::names::{self, EtcdCluster};
use crate::pki::{self, ClusterCas, ReplicaIdentity};
use crate::plan::snapshot::AddressObs;
use crate::plan::{ApiVia, ExternalIp, Plan, Snapshot, Step};
use crate::ssh::EtcdRoute;

use super::access::{Access, is_transient};
use super::cluster::{ClusterEnv, ClusterSecrets, first_master_metadata, initial_cluster, replica_metadata};
use super::interrupt::Interrupt;
use super::progress::Progress;
use super::release::Release;
use super::{api, kubeconfig};

/// A new replica did not become healthy in time: the add is rolled back.
#[derive(Debug, thiserror::Error)]
#[error("replica {replica} did not become healthy within {}s: {reason}", after.as_secs())]
pub struct NeverHealthy {
    /// The replica.
    pub replica: String,
    /// How long it was given.
    pub after: Duration,
    /// What was still missing.
    pub reason: String,
}

/// How long to wait out etcd's post-change health interval (5 s) before giving up.
const UNHEALTHY_RETRY: Duration = Duration::from_secs(15);
/// Pause between polls of a wait.
const POLL: Duration = Duration::from_millis(200);

/// Runs steps against GCE and etcd.
pub struct Executor<'a> {
    cfg: &'a Config,
    gce: &'a Gce,
    progress: &'a Progress,
    region: String,
    /// Overall deadline (KUBE_HA_TIMEOUT).
    deadline: Instant,
    /// Deadline for a new replica to become healthy (leaves time to roll back).
    boot_deadline: Instant,
    secrets: Option<ClusterSecrets>,
    /// SSH to the masters: every etcd call and every API check of a replica goes through it.
    access: &'a mut Access,
    /// The world as observed, with the member lists and addresses seen since: what
    /// [`Snapshot::member_of`] matches members to replicas with.
    view: Snapshot,
    /// Replicas whose etcd members may be asked (the observed ones, and those this run made).
    etcd_hosts: BTreeSet<String>,
    /// SIGINT/SIGTERM received: stop at the next step boundary (or poll of a wait).
    interrupt: Interrupt,
    /// The step being run, as `step i/n (…)`, for the interruption message.
    current: Option<String>,
    /// The release a first master boots from (`ops::release`, checked before acting).
    release: Option<Release>,
}

impl<'a> Executor<'a> {
    /// An executor for one command.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &'a Config,
        gce: &'a Gce,
        progress: &'a Progress,
        region: String,
        started: Instant,
        secrets: Option<ClusterSecrets>,
        access: &'a mut Access,
        view: Snapshot,
        interrupt: Interrupt,
    ) -> Self {
        let etcd_hosts = view.replicas.iter().map(|r| r.name.clone()).collect();
        Executor {
            cfg,
            gce,
            progress,
            region,
            deadline: started + cfg.timeout,
            boot_deadline: started + cfg.timeout * 2 / 3,
            secrets,
            access,
            view,
            etcd_hosts,
            interrupt,
            current: None,
            release: None,
        }
    }

    /// A first master made by this executor carries the release's bootstrap (SPEC §8).
    pub fn with_release(mut self, release: Option<Release>) -> Self {
        self.release = release;
        self
    }

    /// Stop here if a signal came in; the step in flight is not abandoned half-way, because
    /// this is only called between steps and between polls of a wait.
    fn stop_if_interrupted(&self) -> Result<(), Interrupted> {
        self.interrupt.check(|| self.current.clone())
    }

    /// The run's SSH access (for observing again: a rollback, a plan that needs the rest planned).
    pub fn access(&mut self) -> &mut Access {
        self.access
    }

    /// A fresh observation replaces the view (members, addresses) the executor matches with.
    pub fn set_view(&mut self, view: Snapshot) {
        self.etcd_hosts.extend(view.replicas.iter().map(|r| r.name.clone()));
        self.view = view;
    }

    /// Give the rollback the rest of the overall deadline.
    pub fn extend_boot_deadline(&mut self) {
        self.boot_deadline = self.deadline;
    }

    /// Run every step of `plan`.
    pub async fn run(&mut self, plan: &Plan) -> Result<()> {
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            self.current = Some(format!("step {}/{total} ({step})", i + 1));
            self.stop_if_interrupted()?;
            self.failpoint(Failpoint::Before(step.kind()), step);
            if Instant::now() > self.deadline {
                bail!(
                    "KUBE_HA_TIMEOUT ({}s) reached before step {}: {step}; rerun to resume",
                    self.cfg.timeout.as_secs(),
                    i + 1
                );
            }
            self.progress.step(i, step);
            let started = Instant::now();
            let outcome = self
                .execute(step)
                .await
                .with_context(|| format!("step {} ({step})", i + 1))?;
            self.progress.done(started, outcome == Outcome::AlreadyDone);
            if self.cfg.failpoint == Some(Failpoint::Repeat) {
                // Steno's test mode: every step (and every undo) runs twice; the second run must
                // find its work done.
                let again = self
                    .execute(step)
                    .await
                    .with_context(|| format!("step {} ({step}), repeated", i + 1))?;
                if again == Outcome::Changed && step.mutates_cluster() {
                    bail!(
                        "step {} ({step}) is not idempotent: running it again changed the world",
                        i + 1
                    );
                }
                self.progress.say("      repeated: nothing left to do");
            }
            self.failpoint(Failpoint::After(step.kind()), step);
        }
        self.current = None;
        Ok(())
    }

    /// `KUBE_HA_FAILPOINT=before:<step kind>` or `after:<step kind>`: die by SIGKILL there, as
    /// an operator's `kill -9` or a lost machine would (etcd's gofail, for crash tests).
    fn failpoint(&self, here: Failpoint, step: &Step) {
        if self.cfg.failpoint == Some(here) {
            eprintln!("failpoint {here:?} at {step}: killing myself");
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    async fn execute(&mut self, step: &Step) -> Result<Outcome> {
        let gce = self.gce;
        let project = gce.project().to_string();
        let region = self.region.clone();
        Ok(match step {
            Step::CreateFirewall { name, kind } => {
                let tag = self.cfg.names.tag();
                let fw = bodies::firewall(
                    &project,
                    &self.cfg.network,
                    name,
                    *kind,
                    tag,
                    &self.cfg.ssh_source_ranges,
                );
                created(gce.insert_firewall(fw).await)?
            }
            Step::DeleteFirewall { name } => deleted(gce.delete_firewall(name).await)?,
            Step::ReserveStaticIp { name, region } => {
                created(gce.insert_address(region, bodies::static_address(name)).await)?
            }
            Step::ReserveInternalIp { name, region, .. } => {
                let a = bodies::internal_address(&project, region, &self.cfg.network, name);
                created(gce.insert_address(region, a).await)?
            }
            Step::ReleaseAddress { name, region } => deleted(gce.delete_address(region, name).await)?,
            Step::CreateDataDisk {
                name,
                zone,
                disk_type,
                size_gb,
            } => {
                let size_gb = i64::try_from(*size_gb).context("the data disk size does not fit GCE's sizeGb")?;
                let d = bodies::data_disk_body(&project, zone, name, disk_type, size_gb);
                created(gce.insert_disk(zone, d).await)?
            }
            Step::DeleteDisk { name, zone } => deleted(gce.delete_disk(zone, name).await)?,
            Step::CreateReplicaVm {
                replica,
                zone,
                first,
                settings,
            } => self.create_replica_vm(replica, zone, *first, settings).await?,
            Step::DeleteVm { replica, zone } => {
                let o = deleted(gce.delete_instance(zone, replica).await)?;
                self.etcd_hosts.remove(replica);
                self.access.forget(replica).await;
                o
            }
            Step::WaitEtcdHealthy { replica } => {
                self.wait_etcd_healthy(replica).await?;
                Outcome::Changed
            }
            Step::WaitApi { replica, via } => {
                self.wait_api(replica, via).await?;
                Outcome::Changed
            }
            Step::WriteKubeconfig { path, context } => {
                let ip = self.static_ip().await?;
                let cas = self.secrets().await?.cas.clone();
                let admin = pki::issue_admin_client(&cas, time::OffsetDateTime::now_utc())?;
                kubeconfig::merge(std::path::Path::new(path), context, ip, &cas.cluster.cert_pem, &admin)?;
                Outcome::Changed
            }
            Step::RemoveKubeconfigEntries { path, context } => {
                if kubeconfig::remove(std::path::Path::new(path), context)? {
                    Outcome::Changed
                } else {
                    Outcome::AlreadyDone
                }
            }
            Step::CreateTargetPool {
                name,
                region,
                replica,
                zone,
            } => {
                let p = bodies::target_pool(name, self.instance_url(zone, replica));
                match created(gce.insert_target_pool(region, p).await)? {
                    Outcome::Changed => Outcome::Changed,
                    Outcome::AlreadyDone => self.add_to_pool(replica, zone).await?,
                }
            }
            Step::DeleteTargetPool { name, region } => deleted(gce.delete_target_pool(region, name).await)?,
            Step::AddToPool { replica, zone } => self.add_to_pool(replica, zone).await?,
            Step::RemoveFromPool { replica, zone } => {
                let pool = self.cfg.names.target_pool();
                match gce.target_pool(&region, pool).await? {
                    Some(p) if p.instances.iter().any(|u| last_segment(u) == replica) => {
                        let url = p
                            .instances
                            .iter()
                            .find(|u| last_segment(u) == replica)
                            .cloned()
                            .unwrap_or_else(|| self.instance_url(zone, replica));
                        gce.remove_from_target_pool(&region, pool, &url).await?;
                        Outcome::Changed
                    }
                    _ => Outcome::AlreadyDone,
                }
            }
            Step::DetachExternalIp { replica, zone, .. } => {
                let Some((nic, Some(ac))) = self.nic0(zone, replica).await? else {
                    return Ok(Outcome::AlreadyDone);
                };
                let name = ac.name.unwrap_or_else(|| "External NAT".into());
                let o = deleted(gce.delete_access_config(zone, replica, &nic, &name).await)?;
                self.access.moved(replica).await;
                o
            }
            Step::AttachExternalIp { replica, zone, ip } => {
                let o = self.attach_external_ip(replica, zone, ip).await?;
                if o == Outcome::Changed {
                    self.access.moved(replica).await;
                }
                o
            }
            Step::CreateForwardingRule { name, region } => {
                let ip = self.static_ip().await?;
                let r = bodies::forwarding_rule(&project, region, name, ip, self.cfg.names.target_pool());
                created(gce.insert_forwarding_rule(region, r).await)?
            }
            Step::DeleteForwardingRule { name, region } => deleted(gce.delete_forwarding_rule(region, name).await)?,
            Step::AddLearner { cluster, replica } => self.add_learner(*cluster, replica).await?,
            Step::PromoteLearner { cluster, replica } => self.promote(*cluster, replica).await?,
            Step::MoveLeaderOff { cluster, replica } => self.move_leader_off(*cluster, replica).await?,
            Step::RemoveMember { cluster, replica } => self.remove_member(*cluster, replica).await?,
        })
    }

    fn instance_url(&self, zone: &str, name: &str) -> String {
        bodies::instance_url(self.gce.project(), zone, name)
    }

    async fn static_ip(&self) -> Result<Ipv4Addr> {
        self.address_ip("static IP", &self.cfg.names.static_ip()).await
    }

    async fn internal_ip(&self, replica: &str) -> Result<Ipv4Addr> {
        self.address_ip("internal IP", &self.cfg.names.internal_ip(replica))
            .await
    }

    /// The IP of a named regional address (re-read: it may have been reserved by this very run).
    async fn address_ip(&self, what: &str, name: &str) -> Result<Ipv4Addr> {
        let a = self
            .gce
            .address(&self.region, name)
            .await?
            .ok_or_else(|| anyhow!("{what} {name} does not exist"))?;
        a.address
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{what} {name} has no address"))
    }

    /// The shared secrets: from observation, or read from any replica's metadata.
    async fn secrets(&mut self) -> Result<&ClusterSecrets> {
        if self.secrets.is_none() {
            for i in self.gce.all_instances().await? {
                if i.name.as_deref().is_some_and(|n| self.cfg.names.is_replica(n))
                    && let Some(s) = ClusterSecrets::from_instance(&i)?
                {
                    self.secrets = Some(s);
                    break;
                }
            }
        }
        self.secrets
            .as_ref()
            .ok_or_else(|| anyhow!("no replica carries the cluster's kube-env (metadata)"))
    }

    /// Make sure the routes use the cluster's CAs (kube-ha's 1-hour client certificate is
    /// issued once per run).
    async fn ensure_cas(&mut self) -> Result<()> {
        let cas = self.secrets().await?.cas.clone();
        self.access.set_cas(&cas)
    }

    /// A route to `cluster` on `replica` (reconnecting if the run moved its IP).
    async fn route(&mut self, replica: &str, cluster: EtcdCluster) -> Result<EtcdRoute> {
        self.ensure_cas().await?;
        self.access.route(replica, cluster).await
    }

    /// Remember `members` as `cluster`'s member list, so the snapshot's matching sees them.
    fn remember(&mut self, cluster: EtcdCluster, members: &[Member]) {
        self.view.etcd.entry(cluster).or_default().members = Some(members.to_vec());
    }

    /// A route of `cluster` whose member is healthy and voting (not on `excluding`), with the
    /// member list it gave.
    async fn healthy_endpoint(
        &mut self,
        cluster: EtcdCluster,
        excluding: Option<&str>,
    ) -> Result<(EtcdRoute, Vec<Member>)> {
        let mut errors = Vec::new();
        let candidates: Vec<String> = self
            .etcd_hosts
            .iter()
            .filter(|n| Some(n.as_str()) != excluding)
            .cloned()
            .collect();
        for replica in candidates {
            let route = match self.route(&replica, cluster).await {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{replica}: {e:#}"));
                    continue;
                }
            };
            match route.client.status(&route.endpoint).await {
                Ok(st) if st.errors.is_empty() && st.leader.is_some() && !st.is_learner => {
                    match route.client.member_list(&route.endpoint).await {
                        Ok(members) => {
                            self.remember(cluster, &members);
                            return Ok((route, members));
                        }
                        Err(e) => errors.push(format!("{replica}: {e}")),
                    }
                }
                Ok(st) => errors.push(format!("{replica}: not healthy ({})", st.errors.join("; "))),
                Err(e) => errors.push(format!("{replica}: {e}")),
            }
        }
        bail!("no healthy etcd {cluster} member to talk to ({})", errors.join("; "))
    }

    /// Make sure the view knows `replica`'s internal IP (reserved by this run, perhaps).
    async fn know_ip(&mut self, replica: &str) {
        if self.view.replica_ip(replica).is_none()
            && let Ok(ip) = self.internal_ip(replica).await
        {
            self.view.internal_ips.insert(
                replica.to_string(),
                AddressObs {
                    name: self.cfg.names.internal_ip(replica),
                    region: self.region.clone(),
                    ip,
                    in_use: false,
                },
            );
        }
    }

    /// The member of `replica` in `members`, by the snapshot's rule.
    async fn member_of(&mut self, cluster: EtcdCluster, replica: &str, members: &[Member]) -> Option<Member> {
        self.know_ip(replica).await;
        self.remember(cluster, members);
        self.view.member_of(cluster, replica).cloned()
    }

    /// What `member`'s own endpoint says, through its replica's route (`None`: no replica of it
    /// can be reached).
    async fn own_status(&mut self, cluster: EtcdCluster, member: &Member) -> Option<(EtcdRoute, EndpointStatus)> {
        let replica = self.view.replica_of_member(cluster, member)?;
        let route = self.route(&replica, cluster).await.ok()?;
        let status = route.client.status(&route.endpoint).await.ok()?;
        Some((route, status))
    }

    async fn create_replica_vm(
        &mut self,
        replica: &str,
        zone: &str,
        first: bool,
        settings: &MasterSettings,
    ) -> Result<Outcome> {
        if self.gce.instance(zone, replica).await?.is_some() {
            return Ok(Outcome::AlreadyDone);
        }
        let internal = self.internal_ip(replica).await?;
        let static_ip = self.static_ip().await?;
        let id = ReplicaIdentity {
            master_name: self.cfg.names.master_name().to_string(),
            replica: replica.to_string(),
            internal_ip: internal,
            static_ip,
            service_ip: self.cfg.service_ip,
            dns_domain: self.cfg.dns_domain.clone(),
        };
        let outcome = if first {
            self.create_first_master_vm(zone, &id, settings).await?
        } else {
            self.create_copy_vm(zone, &id, settings).await?
        };
        self.know_ip(replica).await;
        self.etcd_hosts.insert(replica.to_string());
        self.access.expect(replica, zone);
        Ok(outcome)
    }

    /// A replica: a copy of the existing master (SPEC §2) with its own kube-env and
    /// kube-master-certs.
    async fn create_copy_vm(&mut self, zone: &str, id: &ReplicaIdentity, settings: &MasterSettings) -> Result<Outcome> {
        let replica = id.replica.as_str();
        let now = time::OffsetDateTime::now_utc();
        let (_, members) = self.healthy_endpoint(EtcdCluster::Main, Some(replica)).await?;
        let secrets = self.secrets().await?.clone();
        let certs = pki::issue_replica_certs(&secrets.cas, id, now)?;
        let (kube_env, master_certs) = replica_metadata(&secrets, replica, &certs, initial_cluster(&members, replica)?);
        // A replica is a copy of the existing master (SPEC §2): its bootstrap items, service
        // account, tags and network interface, whoever made that master.
        let (source, boot_disk) = self.existing_master(replica).await?;
        let mut inst = bodies::replica_of(
            bodies::ExistingMaster {
                instance: &source,
                boot_disk: &boot_disk,
            },
            &bodies::NewReplica {
                project: self.gce.project(),
                zone,
                name: replica,
                internal_ip: Some(id.internal_ip),
                settings,
                kube_env: kube_env.to_yaml(),
                master_certs: master_certs.to_yaml(),
            },
        )?;
        // Whatever the existing master says: host keys published, so kube-ha verifies them
        // rather than pinning them on first use (access-path.md §1c).
        bodies::set_metadata_item(&mut inst, names::METADATA_ENABLE_GUEST_ATTRIBUTES, "TRUE");
        Ok(created(self.gce.insert_instance(zone, inst).await)?)
    }

    /// The first master: new CAs, its certificates, the release bootstrap when given (SPEC §8),
    /// the static IP on nic0.
    async fn create_first_master_vm(
        &mut self,
        zone: &str,
        id: &ReplicaIdentity,
        settings: &MasterSettings,
    ) -> Result<Outcome> {
        let (replica, static_ip) = (id.replica.as_str(), id.static_ip);
        let now = time::OffsetDateTime::now_utc();
        // The CAs are made here and live only in this VM's metadata: if this step never
        // completes, nothing else has used them yet and a rerun makes new ones.
        let cas = ClusterCas::generate(self.cfg.names.master_name(), now)?;
        let certs = pki::issue_replica_certs(&cas, id, now)?;
        let clients = pki::issue_cluster_clients(&cas, now)?;
        let env = ClusterEnv {
            master_name: self.cfg.names.master_name().to_string(),
            multizone: self.cfg.multizone,
            quorum_read: self.cfg.quorum_read,
            static_ip,
            service_cluster_ip_range: self.cfg.service_cluster_ip_range.clone(),
            dns_domain: self.cfg.dns_domain.clone(),
        };
        let (mut kube_env, master_certs) = first_master_metadata(&env, &cas, &clients, &certs);
        let boot = match &self.release {
            Some(r) => Some(bootstrap::first_master_bootstrap(
                &BootstrapInput {
                    instance_prefix: self.cfg.names.prefix().to_string(),
                    project: self.gce.project().to_string(),
                    network_project: self.gce.project().to_string(),
                    zone: zone.to_string(),
                    region: self.region.clone(),
                    network: self.cfg.network.clone(),
                    // The subnetwork the internal IPs are reserved in (ReserveInternalIp).
                    subnetwork: self.cfg.network.clone(),
                    static_ip,
                    num_nodes: self.cfg.num_nodes,
                    dns_domain: self.cfg.dns_domain.clone(),
                    dns_server_ip: bootstrap::DEFAULT_DNS_SERVER_IP,
                    ip_aliases: false,
                    artifacts: r.artifacts.clone(),
                },
                &r.scripts,
            )?),
            None => None,
        };
        let mut metadata = match &boot {
            Some(b) => {
                b.apply(&mut kube_env)?;
                b.metadata_items(&kube_env, &master_certs)?
            }
            None => vec![
                (names::METADATA_KUBE_ENV, kube_env.to_yaml()),
                (names::METADATA_MASTER_CERTS, master_certs.to_yaml()),
            ],
        };
        metadata.push((names::METADATA_CLUSTER_NAME, self.cfg.names.prefix().to_string()));
        // Lets non-COS images (and the sandbox) publish their SSH host keys, so kube-ha verifies
        // them rather than pinning them on first use (access-path.md §1c).
        metadata.push((names::METADATA_ENABLE_GUEST_ATTRIBUTES, "TRUE".to_string()));
        let made = Some(ClusterSecrets {
            kube_env,
            master_certs,
            cas,
        });
        let mut inst = bodies::replica_instance(&bodies::ReplicaInstanceSpec {
            project: self.gce.project(),
            zone,
            name: replica,
            settings,
            network: &self.cfg.network,
            tag: self.cfg.names.tag(),
            internal_ip: id.internal_ip,
            // The first master carries the static IP itself; later replicas sit behind the load balancer.
            nat_ip: Some(static_ip),
            metadata,
        });
        if let Some(b) = &boot {
            bodies::set_service_account(&mut inst, b.service_account, &b.scopes);
        }
        let outcome = created(self.gce.insert_instance(zone, inst).await)?;
        if made.is_some() {
            self.secrets = match outcome {
                Outcome::Changed => made,
                // An interrupted run's insert got there first (its operation may still be
                // running): that VM boots with its own CAs, so those are the cluster's.
                Outcome::AlreadyDone => Some(self.secrets_of_existing(zone, replica).await?),
            };
            if let Some(s) = &self.secrets {
                self.access.set_cas(&s.cas)?;
            }
        }
        Ok(outcome)
    }

    /// The master a new replica copies: another replica of this cluster carrying the cluster's
    /// kube-env (the first master's name first, then by name, so reruns pick the same one), with
    /// its boot disk (the disk type lives there, not on the instance).
    async fn existing_master(&self, replica: &str) -> Result<(model::Instance, model::Disk)> {
        let mut candidates: Vec<model::Instance> = self
            .gce
            .all_instances()
            .await?
            .into_iter()
            .filter(|i| {
                i.name
                    .as_deref()
                    .is_some_and(|n| n != replica && self.cfg.names.is_replica(n))
                    && ClusterSecrets::from_instance(i).ok().flatten().is_some()
            })
            .collect();
        let master = self.cfg.names.master_name();
        candidates.sort_by_key(|i| (i.name.as_deref() != Some(master), i.name.clone()));
        let source = candidates
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no replica carries the cluster's kube-env (metadata) to copy"))?;
        let name = source.name.clone().unwrap_or_default();
        let zone = last_segment(source.zone.as_deref().unwrap_or_default()).to_string();
        let disk_name = source
            .disks
            .iter()
            .find(|d| d.boot == Some(true))
            .and_then(|d| d.source.as_deref())
            .map(|s| last_segment(s).to_string())
            .ok_or_else(|| anyhow!("the existing master {name} has no boot disk"))?;
        let disk = self
            .gce
            .disk(&zone, &disk_name)
            .await?
            .ok_or_else(|| anyhow!("boot disk {disk_name} of the existing master {name} does not exist"))?;
        Ok((source, disk))
    }

    /// The secrets in the metadata of an instance whose insert may still be running (GCE shows
    /// it as PROVISIONING; the emulator only once its operation is done): polled until visible.
    async fn secrets_of_existing(&self, zone: &str, replica: &str) -> Result<ClusterSecrets> {
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            if let Some(i) = self.gce.instance(zone, replica).await?
                && let Some(s) = ClusterSecrets::from_instance(&i)?
            {
                self.progress.end_wait();
                return Ok(s);
            }
            self.give_up_after_boot_deadline(replica, started, "its VM is not visible yet")?;
            self.progress.waiting(
                &mut last,
                started,
                &format!("{replica}: waiting for the VM an earlier run created"),
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Past the boot deadline a new replica is given up on (and its add rolled back); a signal
    /// stops the wait too (nothing is half-done while waiting).
    fn give_up_after_boot_deadline(&self, replica: &str, started: Instant, reason: &str) -> Result<()> {
        if let Err(i) = self.stop_if_interrupted() {
            self.progress.end_wait();
            return Err(i.into());
        }
        if Instant::now() > self.boot_deadline {
            self.progress.end_wait();
            let reason = reason.to_string();
            return Err(NeverHealthy {
                replica: replica.to_string(),
                after: started.elapsed(),
                reason,
            }
            .into());
        }
        Ok(())
    }

    /// Link `replica` (its VM booted: connect, key, login), for a wait: `Ok(None)` once linked,
    /// `Ok(Some(reason))` while it is not reachable yet, an error when it never will be (a host
    /// key mismatch).
    async fn link_for_wait(&mut self, replica: &str) -> Result<Option<String>> {
        self.ensure_cas().await?;
        match self.access.link(replica, None).await {
            Ok(()) => Ok(None),
            Err(e) if is_transient(&e) => Ok(Some(format!("SSH: {e:#}"))),
            Err(e) => Err(e.context(format!("cannot reach {replica} over SSH"))),
        }
    }

    async fn wait_etcd_healthy(&mut self, replica: &str) -> Result<()> {
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            let mut missing = Vec::new();
            match self.link_for_wait(replica).await? {
                Some(reason) => missing.push(reason),
                None => {
                    for cluster in EtcdCluster::ALL {
                        match self.route(replica, cluster).await {
                            Ok(route) => match route.client.status(&route.endpoint).await {
                                Ok(st) if st.errors.is_empty() && st.leader.is_some() => {}
                                Ok(st) => missing.push(format!("etcd {cluster}: {}", st.errors.join("; "))),
                                Err(e) => missing.push(format!("etcd {cluster}: {e}")),
                            },
                            Err(e) => missing.push(format!("etcd {cluster}: {e:#}")),
                        }
                    }
                }
            }
            if missing.is_empty() {
                self.progress.end_wait();
                self.etcd_hosts.insert(replica.to_string());
                return Ok(());
            }
            let reason = missing.join("; ");
            self.give_up_after_boot_deadline(replica, started, &reason)?;
            self.progress
                .waiting(&mut last, started, &format!("{replica} etcd: {reason}"));
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_api(&mut self, replica: &str, via: &ApiVia) -> Result<()> {
        let ca = self.secrets().await?.cas.cluster.cert_pem.clone();
        let direct = match via {
            ApiVia::StaticIp => Some((api::client(&ca, Duration::from_secs(3))?, self.static_ip().await?)),
            ApiVia::Loopback => None,
        };
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            let probe = match &direct {
                Some((client, ip)) => api::healthz(client, *ip).await,
                None => match self.link_for_wait(replica).await? {
                    Some(reason) => Err(anyhow!(reason)),
                    None => match self.access.api(replica).await {
                        Ok(client) => api::healthz(&client, Ipv4Addr::LOCALHOST).await,
                        Err(e) => Err(e),
                    },
                },
            };
            match probe {
                Ok(()) => {
                    self.progress.end_wait();
                    return Ok(());
                }
                Err(e) => {
                    let reason = format!("API: {e:#}");
                    self.give_up_after_boot_deadline(replica, started, &reason)?;
                    self.progress.waiting(&mut last, started, &reason);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn add_to_pool(&self, replica: &str, zone: &str) -> Result<Outcome> {
        let pool = self.cfg.names.target_pool();
        let p = self
            .gce
            .target_pool(&self.region, pool)
            .await?
            .ok_or_else(|| anyhow!("target pool {pool} does not exist"))?;
        if p.instances.iter().any(|u| last_segment(u) == replica) {
            return Ok(Outcome::AlreadyDone);
        }
        self.gce
            .add_to_target_pool(&self.region, pool, &self.instance_url(zone, replica))
            .await?;
        Ok(Outcome::Changed)
    }

    /// nic0's name and access config of an instance; `None` if the instance is gone.
    async fn nic0(&self, zone: &str, replica: &str) -> Result<Option<(String, Option<model::AccessConfig>)>> {
        let Some(inst) = self.gce.instance(zone, replica).await? else {
            return Ok(None);
        };
        let nic = inst
            .network_interfaces
            .first()
            .ok_or_else(|| anyhow!("{replica} has no network interface"))?;
        Ok(Some((
            nic.name.clone().unwrap_or_else(|| "nic0".into()),
            nic.access_configs.first().cloned(),
        )))
    }

    async fn attach_external_ip(&self, replica: &str, zone: &str, want: &ExternalIp) -> Result<Outcome> {
        let (nic, ac) = self
            .nic0(zone, replica)
            .await?
            .ok_or_else(|| anyhow!("instance {replica} does not exist"))?;
        let nat_ip = match want {
            ExternalIp::Static => Some(self.static_ip().await?.to_string()),
            ExternalIp::Ephemeral => None,
        };
        if let Some(ac) = ac {
            let has = ac.nat_ip.clone();
            let right = match want {
                ExternalIp::Static => has == nat_ip,
                ExternalIp::Ephemeral => has.is_some() && has != Some(self.static_ip().await?.to_string()),
            };
            if right {
                return Ok(Outcome::AlreadyDone);
            }
            // The wrong IP is attached (a run interrupted between detach and attach elsewhere).
            let name = ac.name.unwrap_or_else(|| "External NAT".into());
            deleted(self.gce.delete_access_config(zone, replica, &nic, &name).await)?;
        }
        self.gce
            .add_access_config(zone, replica, &nic, "External NAT", nat_ip.as_deref())
            .await?;
        Ok(Outcome::Changed)
    }

    async fn add_learner(&mut self, cluster: EtcdCluster, replica: &str) -> Result<Outcome> {
        // Registered by instance name, as kube-up registers and configure-helper advertises
        // (`https://<vm>:<peer port>`); an earlier kube-ha's registration by IP counts as done.
        let peer = cluster.peer_url_of(replica);
        let by_ip = cluster.peer_url(self.internal_ip(replica).await?);
        let (route, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
        if members
            .iter()
            .any(|m| m.peer_urls.contains(&peer) || m.peer_urls.contains(&by_ip))
        {
            return Ok(Outcome::AlreadyDone);
        }
        let result = self
            .retry_unhealthy(|| {
                route
                    .client
                    .member_add(&route.endpoint, std::slice::from_ref(&peer), true)
            })
            .await;
        match result {
            Ok(_) => Ok(Outcome::Changed),
            Err(EtcdError::PeerUrlExists) => Ok(Outcome::AlreadyDone),
            Err(e) => Err(e).with_context(|| format!("cannot add {peer} as a learner")),
        }
    }

    /// etcd 3.4 refuses membership changes with "unhealthy cluster" until the member that answers
    /// has been connected to all its peers for 5 s (`HealthInterval`), e.g. right after a promote
    /// or a restart. Preflight has already checked health, so wait that out, bounded.
    async fn retry_unhealthy<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            match call().await {
                Err(EtcdError::UnhealthyCluster)
                    if started.elapsed() < UNHEALTHY_RETRY && Instant::now() < self.deadline =>
                {
                    self.progress
                        .waiting(&mut last, started, "etcd: waiting for the cluster's 5s health interval");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => {
                    self.progress.end_wait();
                    return other;
                }
            }
        }
    }

    async fn promote(&mut self, cluster: EtcdCluster, replica: &str) -> Result<Outcome> {
        let started = Instant::now();
        let mut last = Instant::now();
        let mut promoted = false;
        loop {
            let (route, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
            let Some(m) = self.member_of(cluster, replica, &members).await else {
                bail!("{replica} has no member in etcd {cluster} (was it removed?); rerun to add it again");
            };
            if !m.is_learner {
                self.progress.end_wait();
                self.etcd_hosts.insert(replica.to_string());
                return Ok(if promoted {
                    Outcome::Changed
                } else {
                    Outcome::AlreadyDone
                });
            }
            let reason = match route.client.member_promote(&route.endpoint, m.id).await {
                Ok(_) => {
                    promoted = true;
                    continue;
                }
                Err(EtcdError::NotInSync) => {
                    // The learner's own view, through its SSH connection once its VM lets us in.
                    let learner = match self.link_for_wait(replica).await? {
                        Some(reason) => Err(reason),
                        None => match self.route(replica, cluster).await {
                            Ok(r) => r.client.status(&r.endpoint).await.map_err(|e| e.to_string()),
                            Err(e) => Err(format!("{e:#}")),
                        },
                    };
                    let progress = match (learner, route.client.status(&route.endpoint).await) {
                        (Ok(learner), Ok(leader)) => {
                            format!("raft index {} of {}", learner.raft_index, leader.raft_index)
                        }
                        (Err(e), _) => format!("learner not answering ({e})"),
                        (_, Err(e)) => e.to_string(),
                    };
                    format!(
                        "learner {} on etcd {cluster} catching up: {progress}",
                        cluster.member_name(replica)
                    )
                }
                Err(e) => format!("promote failed: {e}"),
            };
            self.give_up_after_boot_deadline(replica, started, &reason)?;
            self.progress.waiting(&mut last, started, &reason);
            tokio::time::sleep(POLL).await;
        }
    }

    async fn move_leader_off(&mut self, cluster: EtcdCluster, replica: &str) -> Result<Outcome> {
        let (route, members) = self.healthy_endpoint(cluster, None).await?;
        let Some(victim) = self.member_of(cluster, replica, &members).await else {
            return Ok(Outcome::AlreadyDone);
        };
        let leader = route.client.status(&route.endpoint).await?.leader;
        if leader != Some(victim.id) {
            return Ok(Outcome::AlreadyDone);
        }
        // Every other voter's own view; the pure rule picks the transferee.
        let mut asked: Vec<(Member, Option<(EtcdRoute, EndpointStatus)>)> = Vec::new();
        for m in members.iter().filter(|m| m.id != victim.id && !m.is_learner) {
            let own = self.own_status(cluster, m).await;
            asked.push((m.clone(), own));
        }
        let candidates: Vec<crate::plan::leader::Candidate<'_>> = asked
            .iter()
            .map(|(m, own)| (m, own.as_ref().map(|(_, st)| st)))
            .collect();
        let chosen = crate::plan::leader::pick_transferee(&candidates, victim.id)
            .ok_or_else(|| anyhow!("no healthy member to take etcd {cluster} leadership from {replica}"))?;
        let Some((target, Some((target_route, _)))) = asked.iter().find(|(m, _)| m.id == chosen) else {
            bail!("etcd {cluster}: the member chosen to lead is gone");
        };
        let leader_route = self
            .route(replica, cluster)
            .await
            .with_context(|| format!("cannot reach the etcd {cluster} leader on {replica}"))?;
        leader_route
            .client
            .move_leader(&leader_route.endpoint, target.id)
            .await
            .with_context(|| format!("cannot move etcd {cluster} leadership to {}", target.name))?;
        // Wait until the cluster agrees on the new leader before removing the old one.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(st) = target_route.client.status(&target_route.endpoint).await
                && st.leader == Some(target.id)
            {
                self.progress
                    .say(&format!("      etcd {cluster} leader is now {}", target.name));
                return Ok(Outcome::Changed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("etcd {cluster} leadership did not move to {} within 10s", target.name)
    }

    async fn remove_member(&mut self, cluster: EtcdCluster, replica: &str) -> Result<Outcome> {
        let (route, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
        let Some(victim) = self.member_of(cluster, replica, &members).await else {
            return Ok(Outcome::AlreadyDone);
        };
        match self
            .retry_unhealthy(|| route.client.member_remove(&route.endpoint, victim.id))
            .await
        {
            Ok(_) | Err(EtcdError::MemberNotFound) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove member {} ({})", victim.id, replica)),
        }
        // Wait until the rest has a leader again, so the next step sees a healthy cluster.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(st) = route.client.status(&route.endpoint).await
                && st.leader.is_some()
                && st.errors.is_empty()
            {
                return Ok(Outcome::Changed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("etcd {cluster} has no leader after removing {replica}")
    }
}

/// An etcd client authenticated by a fresh 1-hour certificate signed by the etcd client CA.
pub fn etcd_client(cas: &ClusterCas, timeout: Duration) -> Result<EtcdClient> {
    let me = pki::issue_tool_client(cas, time::OffsetDateTime::now_utc())?;
    EtcdClient::new(&cas.etcd_client.cert_pem, &me.cert_pem, &me.key_pem, timeout)
}
