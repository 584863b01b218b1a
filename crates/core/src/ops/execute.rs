//! Act: run a plan's steps in order. Each step is idempotent ("already exists" / "already gone"
//! count as done) and re-reads what it depends on, so a step found half-done by a rerun is simply
//! run again (steno's rule: a step found "started" is re-executed).
//!
//! Values only known while acting are resolved here: the IPs just reserved, the CAs (fresh for the
//! first master, read back from metadata for replicas), each replica's own certificates, and the
//! short-lived etcd client certificate kube-ha issues itself.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use google_cloud_compute_v1::model;

use crate::bootstrap::{self, BootstrapInput};
use crate::config::{Config, Failpoint, MasterSettings};
use crate::error::Interrupted;
use crate::etcd::{EtcdClient, EtcdError, Member};
use crate::gce::{Gce, Outcome, bodies, created, deleted, last_segment};
use crate::names::{self, EtcdCluster};
use crate::pki::{self, ClusterCas, ReplicaIdentity};
use crate::plan::{ApiVia, ExternalIp, FirewallKind, Plan, Step};

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

/// How long one etcd call may take while acting.
const ETCD_CALL_TIMEOUT: Duration = Duration::from_secs(5);
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
    etcd: Option<EtcdClient>,
    /// Internal IPs of replicas whose etcd can be asked, by replica name.
    replica_ips: BTreeMap<String, Ipv4Addr>,
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
        replica_ips: BTreeMap<String, Ipv4Addr>,
        interrupt: Interrupt,
    ) -> Self {
        Executor {
            cfg,
            gce,
            progress,
            region,
            deadline: started + cfg.timeout,
            boot_deadline: started + cfg.timeout * 2 / 3,
            secrets,
            etcd: None,
            replica_ips,
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
                let mut fw = model::Firewall::default();
                fw.name = Some(name.clone());
                fw.network = Some(format!("projects/{project}/global/networks/{}", self.cfg.network));
                let mut allowed = model::firewall::Allowed::default();
                allowed.ip_protocol = Some("tcp".into());
                let tag = self.cfg.names.tag().to_string();
                match kind {
                    FirewallKind::Https => {
                        allowed.ports = vec![names::APISERVER_PORT.to_string()];
                        fw.source_ranges = vec!["0.0.0.0/0".into()];
                    }
                    FirewallKind::Etcd => {
                        allowed.ports = EtcdCluster::ALL.iter().map(|c| c.peer_port().to_string()).collect();
                        fw.source_tags = vec![tag.clone()];
                    }
                }
                fw.allowed = vec![allowed];
                fw.target_tags = vec![tag];
                created(gce.insert_firewall(fw).await)?
            }
            Step::DeleteFirewall { name } => deleted(gce.delete_firewall(name).await)?,
            Step::ReserveStaticIp { name, region } => {
                let mut a = model::Address::default();
                a.name = Some(name.clone());
                a.address_type = Some(model::address::AddressType::External);
                created(gce.insert_address(region, a).await)?
            }
            Step::ReserveInternalIp { name, region, .. } => {
                let mut a = model::Address::default();
                a.name = Some(name.clone());
                a.address_type = Some(model::address::AddressType::Internal);
                a.subnetwork = Some(format!(
                    "projects/{project}/regions/{region}/subnetworks/{}",
                    self.cfg.network
                ));
                created(gce.insert_address(region, a).await)?
            }
            Step::ReleaseAddress { name, region } => deleted(gce.delete_address(region, name).await)?,
            Step::CreateDataDisk {
                name,
                zone,
                disk_type,
                size_gb,
            } => {
                let mut d = model::Disk::default();
                d.name = Some(name.clone());
                d.size_gb = Some(i64::try_from(*size_gb).unwrap_or(i64::MAX));
                d.r#type = Some(format!("projects/{project}/zones/{zone}/diskTypes/{disk_type}"));
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
                self.replica_ips.remove(replica);
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
                let mut p = model::TargetPool::default();
                p.name = Some(name.clone());
                p.instances = vec![self.instance_url(zone, replica)];
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
                deleted(gce.delete_access_config(zone, replica, &nic, &name).await)?
            }
            Step::AttachExternalIp { replica, zone, ip } => self.attach_external_ip(replica, zone, ip).await?,
            Step::CreateForwardingRule { name, region } => {
                let ip = self.static_ip().await?;
                let mut r = model::ForwardingRule::default();
                r.name = Some(name.clone());
                r.ip_address = Some(ip.to_string());
                r.ip_protocol = Some(model::forwarding_rule::IPProtocol::Tcp);
                r.port_range = Some(format!("{0}-{0}", names::APISERVER_PORT));
                r.target = Some(format!(
                    "projects/{project}/regions/{region}/targetPools/{}",
                    self.cfg.names.target_pool()
                ));
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
        format!("projects/{}/zones/{zone}/instances/{name}", self.gce.project())
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

    /// kube-ha's etcd client, with a 1-hour client certificate it issues itself.
    async fn etcd(&mut self) -> Result<EtcdClient> {
        if let Some(c) = &self.etcd {
            return Ok(c.clone());
        }
        let cas = self.secrets().await?.cas.clone();
        let client = etcd_client(&cas, ETCD_CALL_TIMEOUT)?;
        self.etcd = Some(client.clone());
        Ok(client)
    }

    /// An endpoint of `cluster` whose member is healthy (not `excluding`'s), with the member list it gave.
    async fn healthy_endpoint(
        &mut self,
        cluster: EtcdCluster,
        excluding: Option<&str>,
    ) -> Result<(String, Vec<Member>)> {
        let etcd = self.etcd().await?;
        let mut errors = Vec::new();
        let candidates: Vec<(String, Ipv4Addr)> = self
            .replica_ips
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != excluding)
            .map(|(n, ip)| (n.clone(), *ip))
            .collect();
        for (_, ip) in candidates {
            let endpoint = cluster.client_url(ip);
            match etcd.status(&endpoint).await {
                Ok(st) if st.errors.is_empty() && st.leader.is_some() && !st.is_learner => {
                    match etcd.member_list(&endpoint).await {
                        Ok(members) => return Ok((endpoint, members)),
                        Err(e) => errors.push(format!("{endpoint}: {e}")),
                    }
                }
                Ok(st) => errors.push(format!("{endpoint}: not healthy ({})", st.errors.join("; "))),
                Err(e) => errors.push(e.to_string()),
            }
        }
        bail!("no healthy etcd {cluster} member to talk to ({})", errors.join("; "))
    }

    /// The member of `replica` in `members`: by peer URL on its instance name or internal IP
    /// (a learner that never started has no name yet), else by name.
    async fn member_of(&self, cluster: EtcdCluster, replica: &str, members: &[Member]) -> Option<Member> {
        let ip = match self.replica_ips.get(replica) {
            Some(ip) => Some(*ip),
            None => self.internal_ip(replica).await.ok(),
        };
        members
            .iter()
            .find(|m| m.peer_urls.contains(&cluster.peer_url_of(replica)))
            .or_else(|| {
                members
                    .iter()
                    .find(|m| ip.is_some_and(|ip| m.peer_urls.contains(&cluster.peer_url(ip))))
            })
            .or_else(|| members.iter().find(|m| m.name == cluster.member_name(replica)))
            .cloned()
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
        self.replica_ips.insert(replica.to_string(), internal);
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
        let inst = bodies::replica_of(
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
            self.etcd = None;
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

    async fn wait_etcd_healthy(&mut self, replica: &str) -> Result<()> {
        let ip = self.internal_ip(replica).await?;
        let etcd = self.etcd().await?;
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            let mut missing = Vec::new();
            for cluster in EtcdCluster::ALL {
                match etcd.status(&cluster.client_url(ip)).await {
                    Ok(st) if st.errors.is_empty() && st.leader.is_some() => {}
                    Ok(st) => missing.push(format!("etcd {cluster}: {}", st.errors.join("; "))),
                    Err(e) => missing.push(format!("etcd {cluster}: {e}")),
                }
            }
            if missing.is_empty() {
                self.progress.end_wait();
                self.replica_ips.insert(replica.to_string(), ip);
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
        let ip = match via {
            ApiVia::StaticIp => self.static_ip().await?,
            ApiVia::InternalIp => self.internal_ip(replica).await?,
        };
        let ca = self.secrets().await?.cas.cluster.cert_pem.clone();
        let client = api::client(&ca, Duration::from_secs(3))?;
        let started = Instant::now();
        let mut last = Instant::now();
        loop {
            match api::healthz(&client, ip).await {
                Ok(()) => {
                    self.progress.end_wait();
                    return Ok(());
                }
                Err(e) => {
                    let reason = format!("API: {e}");
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
        let (endpoint, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
        if members
            .iter()
            .any(|m| m.peer_urls.contains(&peer) || m.peer_urls.contains(&by_ip))
        {
            return Ok(Outcome::AlreadyDone);
        }
        let etcd = self.etcd().await?;
        let result = self
            .retry_unhealthy(|| etcd.member_add(&endpoint, std::slice::from_ref(&peer), true))
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
        let etcd = self.etcd().await?;
        let ip = self.internal_ip(replica).await?;
        let started = Instant::now();
        let mut last = Instant::now();
        let mut promoted = false;
        loop {
            let (endpoint, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
            let Some(m) = self.member_of(cluster, replica, &members).await else {
                bail!("{replica} has no member in etcd {cluster} (was it removed?); rerun to add it again");
            };
            if !m.is_learner {
                self.progress.end_wait();
                self.replica_ips.insert(replica.to_string(), ip);
                return Ok(if promoted {
                    Outcome::Changed
                } else {
                    Outcome::AlreadyDone
                });
            }
            let reason = match etcd.member_promote(&endpoint, m.id).await {
                Ok(_) => {
                    promoted = true;
                    continue;
                }
                Err(EtcdError::NotInSync) => {
                    let progress = match (etcd.status(&cluster.client_url(ip)).await, etcd.status(&endpoint).await) {
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
        let etcd = self.etcd().await?;
        let (endpoint, members) = self.healthy_endpoint(cluster, None).await?;
        let Some(victim) = self.member_of(cluster, replica, &members).await else {
            return Ok(Outcome::AlreadyDone);
        };
        let leader = etcd.status(&endpoint).await?.leader;
        if leader != Some(victim.id) {
            return Ok(Outcome::AlreadyDone);
        }
        // Hand over to the most caught-up healthy voting member.
        let mut best: Option<(u64, Member)> = None;
        for m in members.iter().filter(|m| m.id != victim.id && !m.is_learner) {
            let Some(url) = m.client_urls.first() else { continue };
            if let Ok(st) = etcd.status(url).await
                && st.errors.is_empty()
                && best.as_ref().is_none_or(|(idx, _)| st.raft_index > *idx)
            {
                best = Some((st.raft_index, m.clone()));
            }
        }
        let (_, target) =
            best.ok_or_else(|| anyhow!("no healthy member to take etcd {cluster} leadership from {replica}"))?;
        let leader_url = victim
            .client_urls
            .first()
            .ok_or_else(|| anyhow!("leader {replica} has no client URL"))?;
        etcd.move_leader(leader_url, target.id)
            .await
            .with_context(|| format!("cannot move etcd {cluster} leadership to {}", target.name))?;
        // Wait until the cluster agrees on the new leader before removing the old one.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(url) = target.client_urls.first()
                && let Ok(st) = etcd.status(url).await
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
        let etcd = self.etcd().await?;
        let (endpoint, members) = self.healthy_endpoint(cluster, Some(replica)).await?;
        let Some(victim) = self.member_of(cluster, replica, &members).await else {
            return Ok(Outcome::AlreadyDone);
        };
        match self.retry_unhealthy(|| etcd.member_remove(&endpoint, victim.id)).await {
            Ok(_) | Err(EtcdError::MemberNotFound) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove member {} ({})", victim.id, replica)),
        }
        // Wait until the rest has a leader again, so the next step sees a healthy cluster.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(st) = etcd.status(&endpoint).await
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
