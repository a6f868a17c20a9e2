//! A TCP proxy that puts the network's faults between two parts under test (devices and the
//! app, or the app and PostgreSQL): `cut` drops every open connection at once, wherever its
//! requests and answers are (both ends see the connection reset), and `set_delay` holds every
//! chunk of data for a while in both directions. New connections keep working after a cut, as
//! they do after a real one.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// Bumped by every cut; each connection watches it and drops when it moves.
    cuts: watch::Sender<u64>,
    delay_ms: AtomicU64,
    connections: AtomicU64,
}

impl FaultProxy {
    /// Listen on a free local port and forward every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cuts: watch::channel(0).0,
            delay_ms: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(forward(client, target, shared.clone()));
                }
            }
        });
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every connection open now.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Hold each chunk this long before passing it on (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let mut cut = shared.cuts.subscribe();
    cut.mark_unchanged();
    let Ok(upstream) = TcpStream::connect(target).await else {
        return; // the target is down: the client sees its connection closed
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (up_read, up_write) = upstream.into_split();
    tokio::select! {
        _ = pump(client_read, up_write, &shared) => {}
        _ = pump(up_read, client_write, &shared) => {}
        _ = cut.changed() => {}
    }
    // Dropping both halves of both sockets here closes the connection mid-stream.
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = shared.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
