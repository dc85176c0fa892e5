//! A TCP fault proxy on loopback, placed between the platform and a dependency (PostgreSQL,
//! Redis, the collector) and steered by the test: added latency and jitter, a bandwidth
//! limit, connection resets, a black hole (connections accepted and never answered), closing
//! after N bytes, and back to normal. A change applies to the connections already open as well
//! as to new ones. (`tc netem` is not available on these machines; a proxy in user space is.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic. `Faults::default()` is a plain proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Added to every chunk forwarded, in each direction.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk.
    pub jitter: Duration,
    /// Bytes per second in each direction; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Reset every connection (TCP RST) and every new one at once.
    pub reset: bool,
    /// Accept connections and never answer them; open ones stop moving.
    pub blackhole: bool,
    /// Close a connection after this many bytes from the client.
    pub close_after: Option<u64>,
}

impl Faults {
    /// Latency (and jitter) on every chunk.
    pub fn slow(latency: Duration, jitter: Duration) -> Self {
        Faults {
            latency,
            jitter,
            ..Faults::default()
        }
    }

    /// The dependency is gone: connections reset.
    pub fn down() -> Self {
        Faults {
            reset: true,
            ..Faults::default()
        }
    }

    /// The dependency hangs: connections accepted, nothing ever answered.
    pub fn blackhole() -> Self {
        Faults {
            blackhole: true,
            ..Faults::default()
        }
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    faults: watch::Sender<Faults>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (faults, watching) = watch::channel(Faults::default());
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(link(client, upstream, watching.clone()));
            }
        });
        Ok(FaultProxy {
            address,
            faults,
            acceptor,
        })
    }

    /// Where the platform connects instead of the dependency.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Applies `faults` from now on, to open connections too.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Back to a plain proxy.
    pub fn normal(&self) {
        self.set(Faults::default());
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// One proxied connection: a pump each way, both ending when either side closes or a fault
/// cuts the connection.
async fn link(client: TcpStream, upstream: SocketAddr, mut faults: watch::Receiver<Faults>) {
    // A new connection under a fault: reset it, or hold it unanswered until the fault ends.
    loop {
        let now = *faults.borrow_and_update();
        if now.reset {
            reset(client);
            return;
        }
        if !now.blackhole {
            break;
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let limit = faults.borrow().close_after;
    let up = pump(client_read, server_write, faults.clone(), limit);
    let down = pump(server_read, client_write, faults.clone(), None);
    tokio::select! {
        end = up => finish(end),
        end = down => finish(end),
    }
}

/// How a pump ended.
enum End {
    /// One side closed or failed.
    Closed,
    /// A fault asks for a reset: these halves are to be dropped with SO_LINGER 0.
    Reset(OwnedReadHalf, OwnedWriteHalf),
}

fn finish(end: End) {
    if let End::Reset(read, write) = end
        && let Ok(stream) = read.reunite(write)
    {
        reset(stream);
    }
}

/// Drops `stream` with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Copies `from` to `to` chunk by chunk under the current faults.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    close_after: Option<u64>,
) -> End {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut moved: u64 = 0;
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = faults.changed() => {
                if changed.is_err() {
                    return End::Closed;
                }
                if faults.borrow().reset {
                    return End::Reset(from, to);
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return End::Closed;
            }
            Ok(n) => n,
        };
        // The faults for this chunk (the latest; a black hole holds it until it lifts).
        let now = loop {
            let now = *faults.borrow_and_update();
            if now.reset {
                return End::Reset(from, to);
            }
            if !now.blackhole {
                break now;
            }
            if faults.changed().await.is_err() {
                return End::Closed;
            }
        };
        let delay = now.latency
            + jitter(now.jitter)
            + now
                .bandwidth
                .filter(|b| *b > 0)
                .map_or(Duration::ZERO, |b| {
                    Duration::from_secs_f64(n as f64 / b as f64)
                });
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut chunk = &buffer[..n];
        if let Some(limit) = close_after.or(now.close_after) {
            let room = limit.saturating_sub(moved);
            if room < n as u64 {
                chunk = &chunk[..usize::try_from(room).unwrap_or(0)];
                let _ = to.write_all(chunk).await;
                return End::Reset(from, to);
            }
        }
        if to.write_all(chunk).await.is_err() {
            return End::Closed;
        }
        moved += n as u64;
    }
}

/// A random duration up to `max`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn normal_latency_reset_blackhole_and_back() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ping").await.unwrap(), b"ping");

        proxy.set(Faults::slow(Duration::from_millis(100), Duration::ZERO));
        let started = Instant::now();
        round_trip(&mut stream, b"slow").await.unwrap();
        // 100 ms each way.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );

        proxy.set(Faults::down());
        let cut = tokio::time::timeout(Duration::from_secs(2), round_trip(&mut stream, b"x"))
            .await
            .expect("a reset answers at once");
        assert!(cut.is_err(), "the open connection is cut");
        let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(2), round_trip(&mut fresh, b"x"))
            .await
            .expect("a reset answers at once");
        assert!(refused.is_err(), "a new connection is cut");

        proxy.set(Faults::blackhole());
        let mut hung = TcpStream::connect(proxy.address()).await.unwrap();
        let silent =
            tokio::time::timeout(Duration::from_millis(300), round_trip(&mut hung, b"x")).await;
        assert!(silent.is_err(), "a black hole never answers");

        proxy.normal();
        let mut again = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn bandwidth_and_close_after() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        proxy.set(Faults {
            bandwidth: Some(100_000),
            ..Faults::default()
        });
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        let started = Instant::now();
        let payload = vec![7u8; 20_000];
        round_trip(&mut stream, &payload).await.unwrap();
        // 20 kB each way at 100 kB/s: at least 0.4 s.
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );

        proxy.set(Faults {
            close_after: Some(10),
            ..Faults::default()
        });
        let mut short = TcpStream::connect(proxy.address()).await.unwrap();
        assert!(
            round_trip(&mut short, &[1u8; 64]).await.is_err(),
            "closed after 10 bytes"
        );
    }
}
