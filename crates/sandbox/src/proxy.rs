//! The load balancer: a forwarding rule on the cluster's static IP with a target pool behind it,
//! simulated as a TCP proxy on `<rule IP>:<port>` that forwards each connection to one pool
//! instance's `<internal IP>:<port>`.
//!
//! Backends are taken round-robin; when connecting to one fails (its VM crashed, was deleted, or
//! has not booted), the next is tried, which is what a target pool with a health check does for
//! a dead instance. TLS passes through untouched (GCE's network load balancer is layer 4), so
//! clients see the chosen replica's own certificate.
//!
//! In the sandbox the proxy runs in the VPC router's namespace (`vpc.rs`), where the rule's IP
//! is a local address, and connects to the backends *from* that IP: to a VM's firewall the
//! traffic comes from outside the VPC, as GCE's network load balancer's does (the client's
//! address is not kept; the sandbox has no use for it).
//!
//! The emulator hands over the complete rule list on every change ([`LoadBalancers::apply`]):
//! a rule that disappeared closes its listener, a rule whose pool changed keeps its listener
//! and gets the new backends in place (open connections are not disturbed).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;

use kube_ha_core::names::APISERVER_PORT;
use kube_ha_emulator::LbRule;

use super::listener::ListenerTask;

/// How long connecting to one backend may take before the next is tried. A backend whose VM is
/// gone fails at once (no route); one whose firewall drops the SYN takes this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A rule covering more ports than this is served on 443 only (kube-ha's rules are 443-443; a
/// rule without `portRange` means "all ports", which nobody wants 65536 listeners for).
const MAX_PORTS_PER_RULE: u32 = 16;

/// The proxies of every current rule, by listening address.
#[derive(Debug, Default)]
pub struct LoadBalancers {
    ports: BTreeMap<SocketAddrV4, Port>,
}

#[derive(Debug)]
struct Port {
    pool: Arc<Pool>,
    listener: ListenerTask,
}

/// A target pool as the proxy sees it: backend IPs and the round-robin cursor.
#[derive(Debug, Default)]
struct Pool {
    backends: RwLock<Vec<Ipv4Addr>>,
    next: AtomicUsize,
}

impl Pool {
    /// The backends in the order to try them for the next connection.
    fn rotation(&self) -> Vec<Ipv4Addr> {
        let backends = self.backends.read().unwrap_or_else(PoisonError::into_inner).clone();
        if backends.is_empty() {
            return backends;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % backends.len();
        backends[start..].iter().chain(&backends[..start]).copied().collect()
    }

    fn set(&self, backends: Vec<Ipv4Addr>) {
        *self.backends.write().unwrap_or_else(PoisonError::into_inner) = backends;
    }
}

impl LoadBalancers {
    /// Make the running proxies match `rules` (the complete list).
    pub async fn apply(&mut self, rules: &[LbRule]) {
        let mut wanted: BTreeMap<SocketAddrV4, Vec<Ipv4Addr>> = BTreeMap::new();
        for rule in rules {
            for port in ports_of(rule) {
                wanted
                    .entry(SocketAddrV4::new(rule.ip, port))
                    .or_default()
                    .extend(&rule.backends);
            }
        }
        let gone: Vec<SocketAddrV4> = self.ports.keys().filter(|a| !wanted.contains_key(a)).copied().collect();
        for addr in gone {
            if let Some(port) = self.ports.remove(&addr) {
                port.listener.close().await;
                tracing::info!(%addr, "load balancer closed");
            }
        }
        for (addr, backends) in wanted {
            if let Some(port) = self.ports.get(&addr) {
                port.pool.set(backends);
                continue;
            }
            let pool = Arc::new(Pool::default());
            pool.set(backends);
            let shared = pool.clone();
            let listener = ListenerTask::spawn(SocketAddr::V4(addr), "load balancer".into(), move |client, _| {
                forward(client, shared.clone(), *addr.ip(), addr.port())
            });
            self.ports.insert(addr, Port { pool, listener });
        }
    }

    /// Close every proxy.
    pub async fn close_all(&mut self) {
        for (_, port) in std::mem::take(&mut self.ports) {
            port.listener.close().await;
        }
    }

    /// The listening addresses with their backends (for logs and tests).
    pub fn describe(&self) -> Vec<(SocketAddrV4, Vec<Ipv4Addr>)> {
        self.ports
            .iter()
            .map(|(addr, port)| {
                let backends = port
                    .pool
                    .backends
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                (*addr, backends)
            })
            .collect()
    }
}

/// The ports a rule is served on (see [`MAX_PORTS_PER_RULE`]).
fn ports_of(rule: &LbRule) -> Vec<u16> {
    let (lo, hi) = rule.ports;
    if hi < lo {
        return Vec::new();
    }
    if u32::from(hi - lo) < MAX_PORTS_PER_RULE {
        return (lo..=hi).collect();
    }
    if (lo..=hi).contains(&APISERVER_PORT) {
        vec![APISERVER_PORT]
    } else {
        tracing::warn!(ip = %rule.ip, "load balancer ports {lo}-{hi}: too many to simulate, none served");
        Vec::new()
    }
}

/// A connection to `backend` from `source` (any port).
async fn connect_from(source: Ipv4Addr, backend: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    socket.connect(backend).await
}

/// Connect (from the rule's IP) to the first backend in rotation that accepts, then copy bytes
/// both ways until either side closes. No backend accepting closes the client's connection.
async fn forward(mut client: TcpStream, pool: Arc<Pool>, source: Ipv4Addr, port: u16) {
    for ip in pool.rotation() {
        let backend = SocketAddr::V4(SocketAddrV4::new(ip, port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(source, backend)).await {
            Ok(Ok(mut server)) => {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(%backend, "load balancer: backend refused: {e}"),
            Err(_) => tracing::debug!(%backend, "load balancer: backend did not answer"),
        }
    }
    tracing::debug!(port, "load balancer: no backend accepted the connection");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn rule(ip: Ipv4Addr, ports: (u16, u16), backends: &[Ipv4Addr]) -> LbRule {
        LbRule {
            ip,
            ports,
            backends: backends.to_vec(),
        }
    }

    #[test]
    fn round_robin_starts_one_further_each_time() {
        let pool = Pool::default();
        let (a, b, c) = (
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::new(127, 0, 0, 3),
        );
        pool.set(vec![a, b, c]);
        assert_eq!(pool.rotation(), vec![a, b, c]);
        assert_eq!(pool.rotation(), vec![b, c, a]);
        assert_eq!(pool.rotation(), vec![c, a, b]);
        pool.set(Vec::new());
        assert!(pool.rotation().is_empty());
    }

    #[test]
    fn all_ports_means_the_apiserver_port() {
        let ip = Ipv4Addr::new(127, 0, 0, 9);
        assert_eq!(ports_of(&rule(ip, (443, 443), &[])), vec![443]);
        assert_eq!(ports_of(&rule(ip, (1, 65535), &[])), vec![443]);
        assert_eq!(ports_of(&rule(ip, (8000, 8002), &[])), vec![8000, 8001, 8002]);
        assert!(ports_of(&rule(ip, (1000, 2000), &[])).is_empty());
    }

    /// A backend that answers every connection with its own name.
    async fn named_backend(ip: Ipv4Addr, port: u16, name: &'static str) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind((ip, port)).await.expect("bind backend");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        })
    }

    async fn ask(addr: SocketAddrV4) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let mut out = String::new();
                if s.read_to_string(&mut out).await.is_ok() && !out.is_empty() {
                    return out;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no answer through {addr}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn connections_alternate_and_skip_a_dead_backend() {
        let block = kube_ha_emulator::ipblock::IpBlock::claim_free().expect("block");
        let (vip, a, b, dead) = (block.addr(128, 1), block.addr(1, 1), block.addr(1, 2), block.addr(1, 3));
        let port = 8443;
        let _a = named_backend(a, port, "a").await;
        let _b = named_backend(b, port, "b").await;
        let mut lbs = LoadBalancers::default();
        lbs.apply(&[rule(vip, (port, port), &[dead, a, b])]).await;
        let front = SocketAddrV4::new(vip, port);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(ask(front).await);
        }
        assert!(
            seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
            "{seen:?}"
        );
        // Changing the pool keeps the listener and uses the new backends.
        lbs.apply(&[rule(vip, (port, port), &[b])]).await;
        for _ in 0..3 {
            assert_eq!(ask(front).await, "b");
        }
        lbs.apply(&[]).await;
        assert!(TcpStream::connect(front).await.is_err(), "a removed rule still listens");
    }
}
