//! How one run reaches its masters' etcd and API (SPEC §5; the library is [`crate::ssh`]): one
//! SSH connection per master, an ephemeral key in its `ssh-keys` metadata while the run lasts,
//! and routes through that connection to the master's own `127.0.0.1:2379` (mutual TLS with
//! kube-ha's 1-hour certificate), `:4002` (plain HTTP) and `:443` (the API, cluster CA).
//!
//! # Expected flow
//! 1. [`Access::new`]: the run key (in memory, `expireOn` = the run's deadline), the known-hosts
//!    file, the settings.
//! 2. [`Access::prepare`] (observe), for every replica not linked yet, in this order:
//!    - read-only checks that need no SSH: an address to connect to (`KUBE_HA_SSH_VIA`), OS Login
//!      (a refusal), the host keys published in guest attributes;
//!    - connect every master in parallel: TCP, handshake, host key verified (a mismatch is a
//!      refusal; nothing has been written yet). A master that does not answer is unreachable and
//!      gets no key;
//!    - the key into each reachable master's `ssh-keys` (recorded *before* the write, so an
//!      uncertain write is cleaned up too), then every login in parallel, bounded, with progress
//!      while the guest agent applies it; then the routes.
//! 3. The executor asks for routes ([`Access::route`], [`Access::api`]); a master whose external
//!    IP the run moved ([`Access::moved`]) or whose connection died is reconnected on its next
//!    use, a master the run creates is linked by [`Access::link`] when its VM is up.
//! 4. [`Access::remove_keys`] on every way out (done, failed, refused, interrupted): the run's
//!    entry leaves every instance it went into. After a SIGKILL its `expireOn` is the backstop,
//!    and the next run's install or removal drops it (`ssh::with_entry`/`without_entry`).
//!
//! # Guarantees
//! - A master that refuses SSH, never accepts the key, or refuses to forward counts as an
//!   unreachable member ([`SshReach`] in the snapshot): quorum projection, preflight and rollback
//!   decide as for any dead member.
//! - The only write a refused run makes is its own `ssh-keys` entry, removed before it exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use futures_util::future::join_all;
use google_cloud_compute_v1::model;
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::Refusal;
use crate::gce::{Gce, last_segment};
use crate::names::{self, EtcdCluster, SSH_USER};
use crate::pki::{self, CertPair, ClusterCas};
use crate::plan::snapshot::SshReach;
use crate::ssh::{
    self, Connection, EtcdRoute, EtcdTls, Forward, Handshakes, HostKeys, KnownHosts, MasterLink, RunKey, SshError,
    SshSettings, SshTarget, SshVia,
};

use super::api;
use super::progress::Progress;

/// How long one etcd call through a route may take (a dead member must not stall a step).
pub const ETCD_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one API probe through a route may take.
const API_TIMEOUT: Duration = Duration::from_secs(3);

/// A master that could not be linked is tried again at most this often (a VM that is booting).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How long a master whose address the run moved is tried again before it counts as
/// unreachable (a new external IP takes a moment to route), and how often.
const RELINK_WITHIN: Duration = Duration::from_secs(30);
const RELINK_EVERY: Duration = Duration::from_millis(250);

/// The TLS material every route of the run uses, issued once per run (and again if the run made
/// the CAs itself: a first master).
struct Tls {
    /// The etcd client CA (signs every etcd server certificate).
    etcd_ca: String,
    /// kube-ha's own 1-hour etcd client certificate.
    tool: CertPair,
    /// The cluster CA (signs the API serving certificates).
    cluster_ca: String,
}

/// One master's SSH connection and what runs through it.
struct Linked {
    link: MasterLink,
    address: SocketAddr,
    etcd: BTreeMap<EtcdCluster, EtcdRoute>,
    api: Option<(reqwest::Client, Forward)>,
}

/// Where a master stands.
enum State {
    Linked(Box<Linked>),
    /// Not reachable when last tried; tried again (by [`Access::link`]) no sooner than `retry`.
    Unreachable {
        why: SshReach,
        retry: Instant,
    },
    /// Its address changed or its connection died: reconnect on next use.
    Stale,
}

/// A master of the run.
struct Master {
    zone: String,
    state: State,
}

/// Whether a linking failure is a refusal-class one (never retried, never accepted).
fn is_verdict(e: &SshError) -> bool {
    matches!(e, SshError::HostKeyMismatch(_) | SshError::OsLogin { .. })
}

/// The hint for a master whose sshd does not forward.
fn with_forwarding_hint(e: SshError) -> String {
    match e {
        SshError::ForwardingRefused { .. } => format!(
            "{e}; its sshd must allow local forwarding to etcd (AllowTcpForwarding yes or local, and PermitOpen \
             any or including 127.0.0.1:2379 and 127.0.0.1:4002)"
        ),
        other => other.to_string(),
    }
}

/// The run's access to its masters.
pub struct Access {
    gce: Gce,
    via: SshVia,
    settings: SshSettings,
    known_hosts: KnownHosts,
    key: RunKey,
    handshakes: Handshakes,
    progress: Progress,
    tls: Option<Tls>,
    masters: BTreeMap<String, Master>,
    /// Instances the run key went into (or may have), with their zones: where it must leave.
    installed: BTreeMap<String, String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("key", &self.key)
            .field("masters", &self.masters.keys().collect::<Vec<_>>())
            .field("installed", &self.installed)
            .finish()
    }
}

impl Access {
    /// The run's access: a fresh key that expires at the run's deadline (`started` +
    /// `KUBE_HA_TIMEOUT`), and the known-hosts file (`KUBE_HA_KNOWN_HOSTS`, else gcloud's).
    /// `loud`: progress lines on stderr.
    pub fn new(cfg: &Config, gce: &Gce, started: Instant, loud: bool) -> Result<Access, Refusal> {
        let known_hosts = match &cfg.known_hosts {
            Some(path) => KnownHosts::new(path),
            None => KnownHosts::gcloud_default().ok_or_else(|| {
                Refusal::new(format!(
                    "no home directory for gcloud's known-hosts file (HOME is not set); set {} to a file where \
                     masters' SSH host keys are pinned",
                    crate::config::vars::KUBE_HA_KNOWN_HOSTS.name()
                ))
            })?,
        };
        let left = cfg.timeout.saturating_sub(started.elapsed());
        let expire_on = OffsetDateTime::now_utc() + left;
        Ok(Access {
            gce: gce.clone(),
            via: cfg.ssh_via,
            settings: SshSettings {
                login_within: cfg.ssh_key_timeout,
                ..SshSettings::default()
            },
            known_hosts,
            key: RunKey::generate(SSH_USER, expire_on),
            handshakes: Handshakes::default(),
            progress: if loud { Progress::new(0) } else { Progress::quiet() },
            tls: None,
            masters: BTreeMap::new(),
            installed: BTreeMap::new(),
        })
    }

    /// SSH handshakes started so far (the benchmark's "handshakes per command").
    pub fn handshakes(&self) -> u64 {
        self.handshakes.count()
    }

    /// Instances the run key went into (or may have).
    pub fn installed(&self) -> impl Iterator<Item = &str> {
        self.installed.keys().map(String::as_str)
    }

    /// Use the cluster's CAs: kube-ha's 1-hour etcd client certificate is issued here, once per
    /// run; CAs the run made itself (a first master) replace them, and the routes built with the
    /// old ones go.
    pub fn set_cas(&mut self, cas: &ClusterCas) -> Result<()> {
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.etcd_ca == cas.etcd_client.cert_pem && t.cluster_ca == cas.cluster.cert_pem)
        {
            return Ok(());
        }
        let tool = pki::issue_tool_client(cas, OffsetDateTime::now_utc())?;
        self.tls = Some(Tls {
            etcd_ca: cas.etcd_client.cert_pem.clone(),
            tool,
            cluster_ca: cas.cluster.cert_pem.clone(),
        });
        for m in self.masters.values_mut() {
            if let State::Linked(l) = &mut m.state {
                l.etcd.clear();
                l.api = None;
            }
        }
        Ok(())
    }

    /// Observe-time linking of every replica in `instances` not linked yet (see the module doc).
    /// `blocked`: why no SSH can reach the masters at all (no firewall rule admits tcp:22): then
    /// none is tried. A host key mismatch or OS Login is a [`Refusal`].
    pub async fn prepare(
        &mut self,
        instances: &[model::Instance],
        project_metadata: &model::Metadata,
        blocked: Option<&str>,
    ) -> Result<()> {
        struct Candidate<'a> {
            instance: &'a model::Instance,
            name: String,
            zone: String,
            target: SshTarget,
        }
        let mut candidates = Vec::new();
        for instance in instances {
            let (Some(name), Some(zone)) = (instance.name.clone(), instance.zone.as_deref().map(last_segment)) else {
                continue;
            };
            let zone = zone.to_string();
            let target = SshTarget::of_instance(instance, self.via);
            if let Some(Master {
                state: State::Linked(l),
                ..
            }) = self.masters.get(&name)
                && Some(l.address) == target.as_ref().map(|t| t.address)
                && !l.link.is_closed()
            {
                continue;
            }
            let unreachable = |why| Master {
                zone: zone.clone(),
                state: State::Unreachable {
                    why,
                    retry: Instant::now(),
                },
            };
            if let Some(why) = blocked {
                self.masters
                    .insert(name, unreachable(SshReach::Failed(why.to_string())));
                continue;
            }
            let Some(target) = target else {
                let why = self.no_address(&name);
                self.masters.insert(name, unreachable(SshReach::NoAddress(why)));
                continue;
            };
            let md = instance.metadata.clone().unwrap_or_default();
            ssh::check_os_login(&name, &zone, &md, project_metadata).map_err(|e| Refusal::new(e.to_string()))?;
            candidates.push(Candidate {
                instance,
                name,
                zone,
                target,
            });
        }
        if candidates.is_empty() {
            return Ok(());
        }

        // Published host keys and the handshakes (host key verified), all in parallel.
        let this: &Access = self;
        let connects = join_all(candidates.iter().map(|c| {
            let md = c.instance.metadata.clone().unwrap_or_default();
            async move {
                let published = ssh::published_host_keys(&this.gce, &c.zone, &c.name, &md, project_metadata).await?;
                let host_keys = HostKeys {
                    known_hosts: this.known_hosts.clone(),
                    published,
                };
                ssh::connect(
                    c.target.clone(),
                    host_keys,
                    this.settings.clone(),
                    this.handshakes.clone(),
                )
                .await
            }
        }))
        .await;
        let mut verdict = None;
        let mut connected: Vec<(usize, Connection)> = Vec::new();
        for (i, result) in connects.into_iter().enumerate() {
            match result {
                Ok(c) => connected.push((i, c)),
                Err(e) if is_verdict(&e) => {
                    verdict.get_or_insert(e);
                }
                Err(SshError::KnownHosts { file, message }) => {
                    verdict.get_or_insert(SshError::KnownHosts { file, message });
                }
                Err(e) if e.is_unreachable() => {
                    let c = &candidates[i];
                    self.mark_unreachable(&c.name, &c.zone, SshReach::Failed(e.to_string()));
                }
                Err(e) => return Err(anyhow::Error::new(e).context("cannot reach the masters over SSH")),
            }
        }
        if let Some(e) = verdict {
            for (_, c) in connected {
                c.close().await;
            }
            return Err(match e {
                SshError::KnownHosts { .. } => Refusal::new(format!(
                    "{e}; fix that file or set {} to another one",
                    crate::config::vars::KUBE_HA_KNOWN_HOSTS.name()
                ))
                .into(),
                e => Refusal::new(e.to_string()).into(),
            });
        }

        // The key, then every login.
        let mut keyed = Vec::new();
        for (i, connection) in connected {
            let c = &candidates[i];
            match self.install(&c.name, &c.zone).await {
                Ok(()) => keyed.push((i, connection)),
                Err(why) => {
                    connection.close().await;
                    self.mark_unreachable(&c.name, &c.zone, why);
                }
            }
        }
        let names: Vec<&str> = keyed.iter().map(|(i, _)| candidates[*i].name.as_str()).collect();
        let key = self.key.clone();
        let logins = join_all(keyed.into_iter().map(|(i, connection)| {
            let key = key.clone();
            async move { (i, connection.login(&key).await) }
        }));
        let logins = self.with_login_progress(&names, logins).await;
        let mut links = Vec::new();
        for (i, result) in logins {
            let c = &candidates[i];
            match result {
                Ok(link) => links.push((i, link)),
                Err(e) => self.mark_unreachable(&c.name, &c.zone, SshReach::Failed(e.to_string())),
            }
        }
        let this: &Access = self;
        let routed = join_all(links.into_iter().map(|(i, link)| async move {
            let routes = this.open_etcd_routes(&link).await;
            (i, link, routes)
        }))
        .await;
        for (i, link, routes) in routed {
            let c = &candidates[i];
            match routes {
                Ok(etcd) => {
                    let linked = Linked {
                        address: c.target.address,
                        link,
                        etcd,
                        api: None,
                    };
                    self.masters.insert(
                        c.name.clone(),
                        Master {
                            zone: c.zone.clone(),
                            state: State::Linked(Box::new(linked)),
                        },
                    );
                }
                Err(why) => {
                    link.close().await;
                    self.mark_unreachable(&c.name, &c.zone, SshReach::Failed(why));
                }
            }
        }
        Ok(())
    }

    /// Why `name` has no address under the run's `KUBE_HA_SSH_VIA`.
    fn no_address(&self, name: &str) -> String {
        match self.via {
            SshVia::External => format!(
                "{name} has no external IP to reach over SSH (from inside the VPC, set {}=internal)",
                crate::config::vars::KUBE_HA_SSH_VIA.name()
            ),
            SshVia::Internal => format!("{name} has no internal IP to reach over SSH"),
        }
    }

    fn mark_unreachable(&mut self, name: &str, zone: &str, why: SshReach) {
        tracing::debug!(instance = %name, %why, "unreachable over SSH");
        self.masters.insert(
            name.to_string(),
            Master {
                zone: zone.to_string(),
                state: State::Unreachable {
                    why,
                    retry: Instant::now() + RETRY_EVERY,
                },
            },
        );
    }

    /// The run key into `name`'s `ssh-keys` (recorded first, so even an uncertain write is
    /// removed at the end). A failure makes the master unreachable for this run.
    async fn install(&mut self, name: &str, zone: &str) -> Result<(), SshReach> {
        self.installed.insert(name.to_string(), zone.to_string());
        ssh::install_run_key(&self.gce, zone, name, &self.key, OffsetDateTime::now_utc())
            .await
            .map(|_| ())
            .map_err(|e| SshReach::Failed(format!("cannot put kube-ha's SSH key into {name}'s ssh-keys: {e}")))
    }

    /// Await `logins`, saying once that the run waits for the guest agent, with a heartbeat.
    async fn with_login_progress<F, T>(&self, names: &[&str], logins: F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        tokio::pin!(logins);
        let started = Instant::now();
        let mut last = Instant::now();
        let mut said = false;
        loop {
            tokio::select! {
                done = &mut logins => {
                    self.progress.end_wait();
                    return done;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let what = format!(
                        "waiting for the guest agent to apply kube-ha's SSH key on {} (up to {}s)",
                        names.join(", "),
                        self.settings.login_within.as_secs()
                    );
                    if !said {
                        self.progress.say(&what);
                        said = true;
                    } else {
                        self.progress.waiting(&mut last, started, &what);
                    }
                }
            }
        }
    }

    /// Both etcd routes of a link (main with mutual TLS, events plain).
    async fn open_etcd_routes(&self, link: &MasterLink) -> Result<BTreeMap<EtcdCluster, EtcdRoute>, String> {
        let Some(tls) = &self.tls else {
            return Err("the cluster's etcd CA is not known yet".into());
        };
        let mut routes = BTreeMap::new();
        for cluster in EtcdCluster::ALL {
            let creds = (cluster == EtcdCluster::Main).then_some(EtcdTls {
                ca_pem: &tls.etcd_ca,
                identity: &tls.tool,
            });
            let route = link
                .etcd(cluster.client_port(), creds, ETCD_CALL_TIMEOUT)
                .await
                .map_err(with_forwarding_hint)?;
            routes.insert(cluster, route);
        }
        Ok(routes)
    }

    /// Why each master that is not linked could not be reached (for the snapshot).
    pub fn unreachable(&self) -> BTreeMap<String, SshReach> {
        self.masters
            .iter()
            .filter_map(|(name, m)| match &m.state {
                State::Unreachable { why, .. } => Some((name.clone(), why.clone())),
                State::Stale => Some((
                    name.clone(),
                    SshReach::Failed(format!("{name}: its SSH connection has to be made again")),
                )),
                State::Linked(_) => None,
            })
            .collect()
    }

    /// The routes of `cluster` of every linked master, by replica name (observe asks them all).
    pub fn routes(&self, cluster: EtcdCluster) -> Vec<(String, EtcdRoute)> {
        self.masters
            .iter()
            .filter_map(|(name, m)| match &m.state {
                State::Linked(l) if !l.link.is_closed() => l.etcd.get(&cluster).map(|r| (name.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Is `replica` linked now?
    pub fn is_linked(&self, replica: &str) -> bool {
        matches!(self.masters.get(replica).map(|m| &m.state), Some(State::Linked(l)) if !l.link.is_closed())
    }

    /// A master the run is about to create (its VM): linked later by [`Access::link`].
    pub fn expect(&mut self, replica: &str, zone: &str) {
        if !self.masters.contains_key(replica) {
            self.masters.insert(
                replica.to_string(),
                Master {
                    zone: zone.to_string(),
                    state: State::Unreachable {
                        why: SshReach::Failed(format!("{replica}: its VM is being created")),
                        retry: Instant::now(),
                    },
                },
            );
        }
    }

    /// The run moved `replica`'s external IP: its connection (to the old one) goes, and the next
    /// use reconnects to the new one.
    pub async fn moved(&mut self, replica: &str) {
        if let Some(m) = self.masters.get_mut(replica)
            && let State::Linked(l) = std::mem::replace(&mut m.state, State::Stale)
        {
            l.link.close().await;
        }
    }

    /// `replica`'s VM is gone: so is its connection (its key goes with the instance).
    pub async fn forget(&mut self, replica: &str) {
        if let Some(Master {
            state: State::Linked(l),
            ..
        }) = self.masters.remove(replica)
        {
            l.link.close().await;
        }
    }

    /// Make sure `replica` is linked: connect (host key verified: published, else pinned on
    /// first use), the key in, login, routes. For a master the run created, or one whose address
    /// changed. A master not reachable yet is an [`SshError::is_unreachable`] error, worth trying
    /// again (no sooner than a second after the last try); a host key mismatch or OS Login is
    /// not. `zone` is needed for a master the run has not met.
    pub async fn link(&mut self, replica: &str, zone: Option<&str>) -> Result<()> {
        let zone = match (self.masters.get(replica), zone) {
            (Some(m), _) => m.zone.clone(),
            (None, Some(z)) => z.to_string(),
            (None, None) => return Err(anyhow!("{replica} is not a master this run knows")),
        };
        match self.masters.get(replica).map(|m| &m.state) {
            Some(State::Linked(l)) if !l.link.is_closed() => return Ok(()),
            Some(State::Unreachable { why, retry }) if Instant::now() < *retry => {
                return Err(anyhow::Error::new(SshError::Unreachable {
                    instance: replica.to_string(),
                    address: SocketAddr::from(([0, 0, 0, 0], names::SSH_PORT)),
                    what: "connection",
                    message: why.to_string(),
                }));
            }
            _ => {}
        }
        match self.link_now(replica, &zone).await {
            Ok(linked) => {
                self.masters.insert(
                    replica.to_string(),
                    Master {
                        zone,
                        state: State::Linked(Box::new(linked)),
                    },
                );
                Ok(())
            }
            Err(e) => {
                let why = SshReach::Failed(format!("{e:#}"));
                self.mark_unreachable(replica, &zone, why);
                Err(e)
            }
        }
    }

    async fn link_now(&mut self, replica: &str, zone: &str) -> Result<Linked> {
        let unreachable = |message: String| {
            anyhow::Error::new(SshError::Unreachable {
                instance: replica.to_string(),
                address: SocketAddr::from(([0, 0, 0, 0], names::SSH_PORT)),
                what: "connect",
                message,
            })
        };
        let instance = self
            .gce
            .instance(zone, replica)
            .await?
            .ok_or_else(|| unreachable(format!("instance {replica} does not exist (yet)")))?;
        let target =
            SshTarget::of_instance(&instance, self.via).ok_or_else(|| unreachable(self.no_address(replica)))?;
        let project = self.gce.project_metadata().await?;
        let md = instance.metadata.clone().unwrap_or_default();
        ssh::check_os_login(replica, zone, &md, &project)?;
        let published = ssh::published_host_keys(&self.gce, zone, replica, &md, &project).await?;
        let host_keys = HostKeys {
            known_hosts: self.known_hosts.clone(),
            published,
        };
        let connection = ssh::connect(
            target.clone(),
            host_keys,
            self.settings.clone(),
            self.handshakes.clone(),
        )
        .await?;
        if !self.installed.contains_key(replica)
            && let Err(why) = self.install(replica, zone).await
        {
            connection.close().await;
            return Err(anyhow!("{why}"));
        }
        let key = self.key.clone();
        let link = self.with_login_progress(&[replica], connection.login(&key)).await?;
        let etcd = match self.open_etcd_routes(&link).await {
            Ok(r) => r,
            Err(why) => {
                link.close().await;
                return Err(anyhow!("{why}"));
            }
        };
        tracing::debug!(instance = %replica, address = %target.address, "linked");
        Ok(Linked {
            link,
            address: target.address,
            etcd,
            api: None,
        })
    }

    /// The route to `cluster` on `replica`, reconnecting first when its connection is stale
    /// (moved, or died). An unreachable master is an error that says why.
    pub async fn route(&mut self, replica: &str, cluster: EtcdCluster) -> Result<EtcdRoute> {
        if let Some(Master {
            state: State::Linked(l),
            ..
        }) = self.masters.get(replica)
            && !l.link.is_closed()
            && let Some(r) = l.etcd.get(&cluster)
        {
            return Ok(r.clone());
        }
        match self.masters.get(replica).map(|m| &m.state) {
            None => return Err(anyhow!("{replica} is not a master this run reached")),
            Some(State::Unreachable { why, .. }) => {
                return Err(anyhow!("{why}"));
            }
            Some(State::Linked(l)) if !l.link.is_closed() => {
                // Linked, but its routes went with old CAs: build them again.
                let routes = self.open_etcd_routes(&l.link).await.map_err(|e| anyhow!(e))?;
                if let Some(Master {
                    state: State::Linked(l),
                    ..
                }) = self.masters.get_mut(replica)
                {
                    l.etcd = routes;
                }
            }
            _ => self.relink(replica).await?,
        }
        match self.masters.get(replica).map(|m| &m.state) {
            Some(State::Linked(l)) => l
                .etcd
                .get(&cluster)
                .cloned()
                .ok_or_else(|| anyhow!("{replica}: no route to etcd {cluster}")),
            _ => Err(anyhow!("{replica}: not linked")),
        }
    }

    /// Reconnect `replica`, whose address the run moved or whose connection died. The network
    /// may take a moment to route a new external IP (GCE's does too), so failures worth another
    /// try are retried for at most [`RELINK_WITHIN`]; a host key mismatch is final at once.
    async fn relink(&mut self, replica: &str) -> Result<()> {
        let deadline = Instant::now() + RELINK_WITHIN;
        loop {
            if let Some(m) = self.masters.get_mut(replica) {
                m.state = State::Stale;
            }
            match self.link(replica, None).await {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    tracing::debug!(instance = %replica, error = %format!("{e:#}"), "relinking");
                    tokio::time::sleep(RELINK_EVERY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An HTTPS client for `replica`'s own API (`https://127.0.0.1`, the cluster CA as the only
    /// root), through its SSH connection; links it first if needed (see [`Access::link`]).
    pub async fn api(&mut self, replica: &str) -> Result<reqwest::Client> {
        self.link(replica, None).await?;
        let cluster_ca = self
            .tls
            .as_ref()
            .map(|t| t.cluster_ca.clone())
            .ok_or_else(|| anyhow!("the cluster CA is not known yet"))?;
        let Some(Master {
            state: State::Linked(l),
            ..
        }) = self.masters.get_mut(replica)
        else {
            return Err(anyhow!("{replica}: not linked"));
        };
        if let Some((client, _)) = &l.api {
            return Ok(client.clone());
        }
        let forward = l
            .link
            .forward(names::APISERVER_PORT)
            .await
            .map_err(|e| anyhow!(with_forwarding_hint(e)))?;
        let client = api::client_over(&cluster_ca, API_TIMEOUT, forward.socket_path())?;
        l.api = Some((client.clone(), forward));
        Ok(client)
    }

    /// Close every connection and take the run key out of every instance it went into (and any
    /// expired `kube-ha` entries with it). Never fails: a key that could not be removed is said,
    /// with when it expires anyway.
    pub async fn remove_keys(&mut self) {
        for (_, m) in std::mem::take(&mut self.masters) {
            if let State::Linked(l) = m.state {
                l.link.close().await;
            }
        }
        let installed = std::mem::take(&mut self.installed);
        let now = OffsetDateTime::now_utc();
        let removals = join_all(installed.iter().map(|(name, zone)| {
            let (gce, key) = (&self.gce, &self.key);
            async move { (name, ssh::remove_run_key(gce, zone, name, key, now).await) }
        }))
        .await;
        for (name, result) in removals {
            if let Err(e) = result {
                let expires = self
                    .key
                    .expire_on()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                self.progress.say(&format!(
                    "warning: could not remove kube-ha's SSH key from {name}'s ssh-keys ({e}); it expires at {expires}"
                ));
            }
        }
    }
}

/// What [`Access::link`] failing means for a wait: worth another try (the VM is booting, the
/// guest agent is slow), or final.
pub fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<SshError>() {
        Some(s) => !is_verdict(s) && !matches!(s, SshError::KnownHosts { .. }),
        None => true,
    }
}

/// Context for an error of [`Access::link`] in a step.
pub fn while_linking(e: anyhow::Error, replica: &str) -> anyhow::Error {
    e.context(format!("cannot reach {replica} over SSH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarding_refusal_names_the_sshd_settings_that_allow_it() {
        let e = SshError::ForwardingRefused {
            instance: "m".into(),
            host: "127.0.0.1".into(),
            port: 2379,
        };
        let text = with_forwarding_hint(e);
        assert!(
            text.contains("AllowTcpForwarding") && text.contains("PermitOpen"),
            "{text}"
        );
    }

    #[test]
    fn only_host_key_and_os_login_verdicts_are_final() {
        let unreachable = anyhow::Error::new(SshError::AuthNeverAccepted {
            instance: "m".into(),
            user: "kube-ha".into(),
            within: Duration::from_secs(1),
            attempts: 2,
        });
        assert!(is_transient(&unreachable));
        let os_login = anyhow::Error::new(SshError::OsLogin {
            instance: "m".into(),
            zone: "z".into(),
            level: ssh::MetadataLevel::Project,
        });
        assert!(!is_transient(&os_login));
        assert!(is_transient(&anyhow!("instance m does not exist (yet)")));
    }
}
