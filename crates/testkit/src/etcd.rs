//! Real etcd clusters for tests, built from kube-ha's own parts: CAs and per-member certificates
//! from `pki`, processes from `sandbox::etcd_proc`, calls through `etcd::EtcdClient` with the
//! short-lived tool certificate kube-ha issues itself.
//!
//! Each [`TestEtcd`] owns a loopback block `127.N.0.0/16` (so tests run in parallel) and a temp
//! dir; member `i` is replica `kubernetes-master` (i = 1) or `kubernetes-master-xNN` on
//! `127.N.1.i`. Members are killed (SIGKILL) when dropped, so teardown is instant whatever the
//! cluster's state.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube_ha_core::etcd::{EtcdClient, EtcdError, Member, MemberId};
use kube_ha_core::names::EtcdCluster;
use kube_ha_core::pki::{CertPair, ClusterCas, ReplicaCerts, ReplicaIdentity, issue_replica_certs};
use kube_ha_emulator::ipblock::IpBlock;
use kube_ha_sandbox::etcd_proc::{EtcdMember, EtcdMemberConfig, EtcdTlsFiles, InitialClusterState, initial_cluster};
use tempfile::TempDir;
use time::OffsetDateTime;

/// How long a fresh single-member cluster gets to become healthy (measured: about 1 s).
pub const START_WITHIN: Duration = Duration::from_secs(15);

/// One etcd cluster (main or events) under test.
pub struct TestEtcd {
    /// Main or events: decides the ports.
    pub cluster: EtcdCluster,
    /// The CAs every member's certificates come from.
    pub cas: ClusterCas,
    /// kube-ha's client: etcd client CA as the only root, the 1-hour tool certificate.
    pub client: EtcdClient,
    block: IpBlock,
    dir: TempDir,
}

/// One running member.
pub struct TestMember {
    /// 1-based index: the last octet of its IP.
    pub index: u8,
    /// Its replica (VM) name.
    pub replica: String,
    /// Its internal IP.
    pub ip: Ipv4Addr,
    /// Its certificates.
    pub certs: ReplicaCerts,
    /// The etcd process.
    pub process: EtcdMember,
}

impl TestMember {
    /// `https://<ip>:<client port>`.
    pub fn endpoint(&self) -> String {
        self.process.client_url()
    }

    /// `https://<ip>:<peer port>`.
    pub fn peer_url(&self) -> String {
        self.process.peer_url()
    }
}

impl TestEtcd {
    /// Fresh CAs, a free loopback block, a temp dir; no member yet.
    pub fn new(cluster: EtcdCluster) -> TestEtcd {
        let block = IpBlock::claim_free().expect("free loopback block");
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let cas = ClusterCas::generate("kubernetes", now).expect("CAs");
        let client = EtcdClient::for_tool(&cas, now, kube_ha_core::etcd::DEFAULT_TIMEOUT).expect("etcd client");
        TestEtcd {
            cluster,
            cas,
            client,
            block,
            dir,
        }
    }

    /// A client of this cluster presenting `identity` and trusting `root` (a CA certificate).
    pub fn client_with(&self, root: &CertPair, identity: &CertPair) -> EtcdClient {
        EtcdClient::with_identity(&root.cert_pem, identity, kube_ha_core::etcd::DEFAULT_TIMEOUT).expect("etcd client")
    }

    /// Replica name of member `index`.
    pub fn replica(index: u8) -> String {
        if index == 1 {
            "kubernetes-master".to_string()
        } else {
            format!("kubernetes-master-x{index:02}")
        }
    }

    /// IP of member `index`.
    pub fn ip(&self, index: u8) -> Ipv4Addr {
        self.block.addr(1, index)
    }

    /// Peer URL of member `index` (whether or not it runs).
    pub fn peer_url(&self, index: u8) -> String {
        self.cluster.peer_url(self.ip(index))
    }

    /// Client URL of member `index` (whether or not it runs).
    pub fn endpoint(&self, index: u8) -> String {
        self.cluster.client_url(self.ip(index))
    }

    /// Where member `index` keeps its files.
    fn member_dir(&self, index: u8) -> PathBuf {
        self.dir.path().join(Self::replica(index))
    }

    /// Issue member `index`'s certificates and start its etcd with `--initial-cluster` listing
    /// `members` (indices, itself included) and the given state. Does not wait.
    pub fn spawn(&self, index: u8, members: &[u8], state: InitialClusterState) -> TestMember {
        self.spawn_with(index, members, state, |_| {})
    }

    /// [`TestEtcd::spawn`] with the member's configuration adjusted before it starts: another
    /// binary (e.g. [`crate::sshd::SshHost::launcher`], to run it inside a simulated master),
    /// other addresses (then fix `initial_cluster` too), extra flags.
    pub fn spawn_with(
        &self,
        index: u8,
        members: &[u8],
        state: InitialClusterState,
        adjust: impl FnOnce(&mut EtcdMemberConfig),
    ) -> TestMember {
        let replica = Self::replica(index);
        let ip = self.ip(index);
        let certs = issue_replica_certs(
            &self.cas,
            &ReplicaIdentity {
                master_name: Self::replica(1),
                replica: replica.clone(),
                internal_ip: ip,
                static_ip: self.block.addr(0, 1),
                service_ip: Ipv4Addr::new(10, 0, 0, 1),
                dns_domain: "cluster.local".into(),
            },
            OffsetDateTime::now_utc(),
        )
        .expect("replica certs");
        let dir = self.member_dir(index);
        let tls = EtcdTlsFiles::write(&dir.join("pki"), &self.cas, &certs).expect("tls files");
        let list: Vec<(String, Ipv4Addr)> = members.iter().map(|&i| (Self::replica(i), self.ip(i))).collect();
        let mut config = EtcdMemberConfig::new(
            self.cluster,
            &replica,
            ip,
            &dir,
            tls,
            initial_cluster(self.cluster, &list),
            state,
        );
        adjust(&mut config);
        let ip = config.ip;
        let process = EtcdMember::spawn(config).expect("spawn etcd");
        TestMember {
            index,
            replica,
            ip,
            certs,
            process,
        }
    }

    /// Start member `index` as a new single-member cluster and wait until it is healthy.
    pub async fn start_new(&self, index: u8) -> TestMember {
        let member = self.spawn(index, &[index], InitialClusterState::New);
        self.wait_healthy(&member).await;
        member
    }

    /// Wait until `member` reports healthy, with its log in the panic message if it does not.
    pub async fn wait_healthy(&self, member: &TestMember) {
        if let Err(e) = self.client.wait_healthy(&member.endpoint(), START_WITHIN).await {
            panic!("{e}; log:\n{}", self.log(member));
        }
    }

    /// Promote `id` through `endpoint`, retrying while etcd says the learner is not in sync.
    /// Returns how many attempts it took.
    pub async fn promote(&self, endpoint: &str, id: MemberId, within: Duration) -> u32 {
        let deadline = Instant::now() + within;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.client.member_promote(endpoint, id).await {
                Ok(_) => return attempts,
                Err(EtcdError::NotInSync) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("promote {id} after {attempts} attempts: {e}"),
            }
        }
    }

    /// The member list as seen from `endpoint`, sorted by peer URL (i.e. by index).
    pub async fn members(&self, endpoint: &str) -> Vec<Member> {
        let mut members = self.client.member_list(endpoint).await.expect("member list");
        members.sort_by(|a, b| a.peer_urls.cmp(&b.peer_urls));
        members
    }

    /// The member's etcd log, for failure messages.
    pub fn log(&self, member: &TestMember) -> String {
        std::fs::read_to_string(&member.process.config().log_file).unwrap_or_default()
    }
}

/// Run `call` until it stops answering [`EtcdError::UnhealthyCluster`] or `within` has passed,
/// and say how long that took. etcd 3.4 refuses membership changes for 5 s after a member
/// connected (see the variant's doc), which every test that changes membership twice meets.
pub async fn retry_while_unhealthy<T, F, Fut>(within: Duration, mut call: F) -> (Result<T, EtcdError>, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EtcdError>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Err(EtcdError::UnhealthyCluster) if started.elapsed() < within => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return (other, started.elapsed()),
        }
    }
}
