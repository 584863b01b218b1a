//! One TCP listener of a simulated machine (a VM's API on one IP, a load balancer's port), run
//! as a task that owns the socket and every connection it accepted.
//!
//! Closing means aborting that task: the listening socket and all its connections go with it,
//! as they would when GCE takes an address away from a VM. An address often moves from one
//! owner to another (a VM's access config → a forwarding rule and back), and the previous
//! owner's task may not have been dropped yet when the next one binds, so a bind that finds the
//! address in use retries for a while instead of failing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a bind keeps retrying while the address is still held by its previous owner.
pub const BIND_RETRY_FOR: Duration = Duration::from_secs(10);

/// Pause between bind attempts.
const BIND_RETRY_EVERY: Duration = Duration::from_millis(20);

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A running listener; dropping it closes it (without waiting).
#[derive(Debug)]
pub struct ListenerTask {
    task: JoinHandle<()>,
}

impl ListenerTask {
    /// Bind `addr` (retrying while it is in use, see the module doc) and hand every accepted
    /// connection to `on_connection`. `what` names the listener in logs.
    pub fn spawn<F, Fut>(addr: SocketAddr, what: String, on_connection: F) -> ListenerTask
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            let listener = match bind_with_retry(addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(%addr, "{what}: cannot listen: {e}");
                    return;
                }
            };
            tracing::info!(%addr, "{what}: listening");
            // Connections live in the listener's task, so closing the listener closes them.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            connections.spawn(on_connection(stream, peer));
                        }
                        Err(e) => {
                            tracing::debug!(%addr, "{what}: accept failed: {e}");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        ListenerTask { task }
    }

    /// Close the socket and every connection, and wait until they are gone (the address can be
    /// bound again when this returns).
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `bind`, retried for [`BIND_RETRY_FOR`] while the address is in use.
async fn bind_with_retry(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + BIND_RETRY_FOR;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(BIND_RETRY_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_once(mut stream: TcpStream, _: SocketAddr) {
        let mut buf = [0u8; 4];
        if stream.read_exact(&mut buf).await.is_ok() {
            let _ = stream.write_all(&buf).await;
        }
    }

    /// An address of a loopback block of this test's own, so no parallel test can take the port.
    fn own_address() -> (kube_ha_emulator::ipblock::IpBlock, SocketAddr) {
        let block = kube_ha_emulator::ipblock::IpBlock::claim_free().expect("block");
        let addr = SocketAddr::new(block.addr(1, 1).into(), 4000);
        (block, addr)
    }

    #[tokio::test]
    async fn an_address_taken_over_is_bound_once_its_owner_closes() {
        let (_block, addr) = own_address();
        let holder = std::net::TcpListener::bind(addr).expect("bind");
        let listener = ListenerTask::spawn(addr, "test".into(), echo_once);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(holder);
        // The whole exchange is retried: a child another test forks in this process holds a copy
        // of the dropped socket until it execs, and a connection that lands there is reset.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut buf = [0u8; 4];
            let echoed = async {
                let mut stream = TcpStream::connect(addr).await?;
                stream.write_all(b"ping").await?;
                stream.read_exact(&mut buf).await.map(|_| ())
            }
            .await;
            match echoed {
                Ok(()) => {
                    assert_eq!(&buf, b"ping");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "never bound: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        listener.close().await;
        assert!(TcpStream::connect(addr).await.is_err(), "closed listener still accepts");
    }

    #[tokio::test]
    async fn closing_a_listener_drops_its_open_connections() {
        let (_block, addr) = own_address();
        let listener = ListenerTask::spawn(addr, "test".into(), |stream, _| async move {
            let _held = stream;
            std::future::pending::<()>().await;
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stream = loop {
            if let Ok(s) = TcpStream::connect(addr).await {
                break s;
            }
            assert!(Instant::now() < deadline, "never bound");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Let the listener accept it before closing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        listener.close().await;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the connection was left open");
        assert!(matches!(read, Ok(0) | Err(_)));
    }
}
