//! [`Proxy`]: a TCP proxy on loopback that tests put between agents and central to break,
//! delay and redirect the link on purpose.
//!
//! Agents are configured with one fixed central URL; pointing it at a proxy lets a test restart
//! central on a new port ([`Proxy::retarget`]), cut every live link at once ([`Proxy::cut`]),
//! take central off the network ([`Proxy::block`]), hold reconnects while central restarts
//! ([`Proxy::stall`]) and slow the link down ([`Proxy::set_delay`]). The proxy forwards bytes
//! and knows nothing of TLS: an agent speaking `wss://` to the proxy is checking central's
//! certificate end to end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the proxy tries to reach its target for one accepted connection.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy does with a connection it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward it to the target.
    Open,
    /// Hold it, unforwarded, until the mode changes (or it is cut).
    Stalled,
    /// Close it at once.
    Refusing,
}

#[derive(Debug)]
struct Shared {
    target: Mutex<SocketAddr>,
    mode: watch::Sender<Mode>,
    /// Bumped by every cut: each connection watches it from its accept on.
    cuts: watch::Sender<u64>,
    delay_micros: AtomicU64,
    accepted: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    target_failed: AtomicU64,
    cut_connections: AtomicU64,
    active: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_micros.load(Ordering::Relaxed))
    }

    fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters of what a [`Proxy`] did, for summaries and for asserting that a fault happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections that reached the target and were forwarded.
    pub forwarded: u64,
    /// Connections closed at once because the proxy was blocked.
    pub refused: u64,
    /// Connections closed because the target could not be reached.
    pub target_failed: u64,
    /// Connections (forwarded or held) closed by [`Proxy::cut`] or [`Proxy::block`].
    pub cut: u64,
    /// Connections being forwarded now.
    pub active: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
}

/// A TCP proxy on `127.0.0.1:<port the OS picks>` that forwards every connection to its target.
///
/// It runs as tasks on the test's runtime. Dropping it stops accepting and closes every
/// connection it holds.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target`, open (forwarding).
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            mode: watch::Sender::new(Mode::Open),
            cuts: watch::Sender::new(0),
            delay_micros: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            target_failed: AtomicU64::new(0),
            cut_connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Proxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where new connections go.
    pub fn target(&self) -> SocketAddr {
        self.shared.target()
    }

    /// Sends connections accepted from now on, and connections held by [`Proxy::stall`] once
    /// released, to `target`. Connections already forwarded stay with the old target (they end
    /// when it closes them, or on [`Proxy::cut`]).
    pub fn retarget(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// Closes every connection the proxy holds now, at once and abruptly (TCP reset, both
    /// sides), as a network failure would; connections held by [`Proxy::stall`] too. The proxy
    /// keeps accepting: clients may reconnect at once. Returns how many connections were
    /// forwarding when it was called.
    pub fn cut(&self) -> u64 {
        let active = self.shared.active.load(Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
        active
    }

    /// A full outage: closes every current connection ([`Proxy::cut`]) and, until
    /// [`Proxy::unblock`], closes each new connection as soon as it is accepted (the client
    /// sees its connection closed before any byte arrives, like a refused connection).
    /// Returns how many connections were forwarding when it was called.
    pub fn block(&self) -> u64 {
        // Refuse first, so that no connection slips in between the cut and the refusal.
        self.shared.mode.send_replace(Mode::Refusing);
        self.cut()
    }

    /// Holds new connections: they are accepted but not forwarded until [`Proxy::unblock`],
    /// which forwards them to the target set then (so `stall`, restart the far end,
    /// [`Proxy::retarget`], `unblock` makes reconnects wait instead of fail). Current
    /// connections are left alone. A held connection is closed by [`Proxy::cut`], or by the
    /// client giving up.
    pub fn stall(&self) {
        self.shared.mode.send_replace(Mode::Stalled);
    }

    /// Ends [`Proxy::block`] or [`Proxy::stall`]: new and held connections are forwarded again.
    pub fn unblock(&self) {
        self.shared.mode.send_replace(Mode::Open);
    }

    /// Delays every chunk the proxy forwards (each read, either direction) by `delay` before
    /// writing it on (`Duration::ZERO` for none). Applies to current connections too, from their
    /// next chunk.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_micros.store(micros, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::SeqCst),
            forwarded: s.forwarded.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            target_failed: s.target_failed.load(Ordering::SeqCst),
            cut: s.cut_connections.load(Ordering::SeqCst),
            active: s.active.load(Ordering::SeqCst),
            bytes: s.bytes.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // Out of file descriptors and the like: a fault of the machine, not a
                // synchronisation. Back off briefly instead of spinning.
                eprintln!("proxy: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        // Subscribed here, before anything else can happen to the connection: a cut from now
        // on reaches it.
        let cuts = shared.cuts.subscribe();
        tokio::spawn(connection(client, cuts, Arc::clone(&shared)));
    }
}

/// Decrements the active count when a forwarded connection ends, however it ends.
struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(mut client: TcpStream, mut cuts: watch::Receiver<u64>, shared: Arc<Shared>) {
    let mut mode = shared.mode.subscribe();
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Open => break,
            Mode::Refusing => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                reset(&client);
                return;
            }
            Mode::Stalled => {
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    _ = cuts.changed() => {
                        shared.cut_connections.fetch_add(1, Ordering::SeqCst);
                        reset(&client);
                        return;
                    }
                }
            }
        }
    }
    let target = shared.target();
    let connected = tokio::select! {
        connected = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(target)) => connected,
        _ = cuts.changed() => {
            shared.cut_connections.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            return;
        }
    };
    let mut server = match connected {
        Ok(Ok(server)) => server,
        Ok(Err(_)) | Err(_) => {
            // The far end is down: the client sees its connection closed, as it would if it
            // had tried the far end itself.
            shared.target_failed.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    shared.active.fetch_add(1, Ordering::SeqCst);
    let _active = Active(&shared);
    let was_cut = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let transfer = async {
            tokio::try_join!(
                pump(&mut client_read, &mut server_write, &shared),
                pump(&mut server_read, &mut client_write, &shared),
            )
        };
        tokio::select! {
            _ = transfer => false,
            _ = cuts.changed() => true,
        }
    };
    if was_cut {
        shared.cut_connections.fetch_add(1, Ordering::SeqCst);
        reset(&client);
        reset(&server);
    }
}

/// Makes closing `stream` send a TCP reset instead of an orderly FIN.
fn reset(stream: &TcpStream) {
    // SO_LINGER with a zero timeout never blocks on close (it is why the method is
    // deprecated: a non-zero one would).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Copies `from` to `to` until `from` ends (then shuts `to` down for writing, passing the
/// end on) or either fails.
async fn pump<R, W>(from: &mut R, to: &mut W, shared: &Shared) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let delay = shared.delay();
        if !delay.is_zero() {
            // A fault schedule (a slow link), not a synchronisation.
            tokio::time::sleep(delay).await;
        }
        to.write_all(&buffer[..n]).await?;
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server that prefixes every chunk it echoes with `tag`.
    async fn echo(tag: u8) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let mut out = vec![tag];
                        out.extend_from_slice(&buffer[..n]);
                        if stream.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, byte: u8) -> std::io::Result<Vec<u8>> {
        stream.write_all(&[byte]).await?;
        let mut answer = [0u8; 2];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer))
            .await
            .expect("an answer or an error within 10 s")?;
        Ok(answer[..n].to_vec())
    }

    /// Reads until the connection ends; true when it ended (EOF or reset) within 10 s.
    async fn ends(stream: &mut TcpStream) -> bool {
        let mut buffer = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn forwards_cuts_blocks_stalls_and_retargets() {
        let (a, b) = (echo(b'a').await, echo(b'b').await);
        let proxy = Proxy::start(a).await.unwrap();

        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut first, 1).await.unwrap(), [b'a', 1]);
        proxy.set_delay(Duration::from_millis(5));
        assert_eq!(round_trip(&mut first, 2).await.unwrap(), [b'a', 2]);
        proxy.set_delay(Duration::ZERO);

        assert_eq!(proxy.cut(), 1);
        assert!(ends(&mut first).await, "a cut connection ends");
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut second, 3).await.unwrap(), [b'a', 3]);

        assert_eq!(proxy.block(), 1);
        assert!(ends(&mut second).await, "block cuts current connections");
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            ends(&mut refused).await,
            "a blocked proxy closes new connections"
        );

        proxy.stall();
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        held.write_all(&[4]).await.unwrap();
        proxy.retarget(b);
        proxy.unblock();
        let mut answer = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(10), held.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            answer,
            [b'b', 4],
            "a held connection goes to the target set at release"
        );

        let stats = proxy.stats();
        assert_eq!(stats.accepted, 4);
        assert_eq!(stats.forwarded, 3);
        assert_eq!(stats.refused, 1);
        assert_eq!(stats.cut, 2);
        assert_eq!(stats.active, 1);
    }
}
