//! The accept loop and per-connection HTTP/1.1 serving with graceful shutdown.
//!
//! Two ways to run it: [`Balancer::serve`] on the caller's runtime, or
//! [`Balancer::serve_per_core`] on N threads of their own, each a current-thread runtime with
//! its own accept loop and its own upstream connection pool. The latter keeps a request and
//! its upstream connection on one core from accept to response: no task migration, no pool
//! lock shared between cores, which is where the balancer spends its time under load.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::conn::{self, Shared};
use crate::headers::Peer;
use crate::upstream::Pool;
use crate::Balancer;

/// Listening sockets for [`Balancer::serve_per_core`]: one per serving thread, all bound to
/// one address with `SO_REUSEPORT`, so the kernel spreads new connections evenly over the
/// threads (from one shared socket, whichever thread wakes first takes them, measured here
/// as up to 60/40 under a burst of 64 connections).
pub struct PerCoreListeners {
    sockets: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl PerCoreListeners {
    /// Binds `threads` sockets (0 = one per core) to `addr` (port 0 = a free port, the same
    /// for all). Fails like a plain bind when anything else listens there: `SO_REUSEPORT`
    /// would otherwise let a second server share the port silently.
    pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<PerCoreListeners> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        // A plain bind first: it fails if the port is taken, reuse-port sockets included.
        let probe = socket(addr, false)?;
        let addr = probe.local_addr()?;
        drop(probe);
        let sockets = (0..threads)
            .map(|_| socket(addr, true))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(PerCoreListeners { sockets, addr })
    }

    /// Listening sockets bound elsewhere (a previous server's, handed over on restart).
    /// They must all listen on one address.
    pub fn from_std(sockets: Vec<std::net::TcpListener>) -> io::Result<PerCoreListeners> {
        let Some(first) = sockets.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listening socket",
            ));
        };
        let addr = first.local_addr()?;
        for socket in &sockets {
            if socket.local_addr()? != addr {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "listening sockets on different addresses",
                ));
            }
            socket.set_nonblocking(true)?;
        }
        Ok(PerCoreListeners { sockets, addr })
    }

    /// Duplicates of the sockets (the same kernel sockets, new descriptors), to hand to a
    /// next server while these keep serving: connections waiting in a socket's queue are
    /// then accepted by whichever process takes them first, never reset.
    pub fn try_clone_sockets(&self) -> io::Result<Vec<std::net::TcpListener>> {
        self.sockets.iter().map(|s| s.try_clone()).collect()
    }

    /// The address bound (with the port chosen, if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A non-blocking listening socket on `addr`.
fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The answer to a connection over the per-client cap, before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n\
Content-Length: 39\r\nConnection: close\r\n\r\ntoo many connections from your address\n";

/// How long a stopping balancer lets requests under way finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often idle upstream connections past their timeout are closed.
const POOL_PURGE_INTERVAL: Duration = Duration::from_secs(10);

impl Balancer {
    /// Serves HTTP/1.1 on the listener until `shutdown` resolves; then stops accepting and lets
    /// in-flight requests finish (idle keep-alive connections are closed).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let local = listener.local_addr().ok();
        tracing::debug!(addr = ?local, "balancer listening");
        self.accept_loop(listener, Arc::new(Pool::default()), shutdown)
            .await;
        info!(addr = ?local, "balancer stopped");
        Ok(())
    }

    /// Like [`Balancer::serve`], but on dedicated OS threads, one per listener of
    /// `listeners`, each running a current-thread Tokio runtime that accepts from its own
    /// socket and keeps its own pool of keep-alive connections to the instances. Returns
    /// once every thread has drained its connections after `shutdown` resolved.
    pub async fn serve_per_core(
        self: Arc<Self>,
        listeners: PerCoreListeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let local = listeners.addr;
        let threads = listeners.sockets.len();
        // `sprout server` announces the address once, on stdout; this is for debugging.
        tracing::debug!(addr = %local, threads, "balancer listening (one runtime per thread)");
        // Every runtime first, so a failure leaves no thread running.
        let runtimes = (0..threads)
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut done = Vec::with_capacity(threads);
        let mut started = Ok(());
        for (i, (socket, runtime)) in listeners.sockets.into_iter().zip(runtimes).enumerate() {
            let this = self.clone();
            let mut stop = stop_rx.clone();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("balancer-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match TcpListener::from_std(socket) {
                            Ok(l) => l,
                            Err(e) => {
                                warn!(error = %e, "balancer thread cannot use the listener");
                                return;
                            }
                        };
                        // Per thread: connections in this pool are only ever used here.
                        let pool = Arc::new(Pool::default());
                        let stopped = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        this.accept_loop(listener, pool, stopped).await;
                    });
                    let _ = done_tx.send(());
                });
            if let Err(e) = spawned {
                // Stop the threads already started rather than leave them serving.
                started = Err(e);
                break;
            }
            done.push(done_rx);
        }
        if started.is_ok() {
            shutdown.await;
        }
        let _ = stop_tx.send(true);
        for d in done {
            // An Err means the thread ended without reporting (it panicked); nothing to wait for.
            let _ = d.await;
        }
        info!(addr = %local, "balancer stopped");
        started
    }

    /// Accepts and serves connections until `shutdown` resolves, then drains them.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        pool: Arc<Pool>,
        shutdown: impl Future<Output = ()>,
    ) {
        // Each connection task holds a receiver: `send(true)` asks them to wind down and
        // `closed()` tells us when the last one has finished.
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            balancer: self,
            pool: pool.clone(),
        });
        let purge = tokio::spawn(async move {
            let mut every = tokio::time::interval(POOL_PURGE_INTERVAL);
            loop {
                every.tick().await;
                pool.purge();
            }
        });

        let mut conns = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Per-connection errors (reset before accept) are harmless; resource
                        // exhaustion (EMFILE) needs a pause rather than a hot loop.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let ip = peer.ip().to_canonical();
            let trusted = shared.balancer.trusts(ip);
            let max = if trusted {
                0
            } else {
                shared.balancer.config().max_connections_per_client
            };
            let Some(slot) = shared.balancer.clients.admit(ip, max) else {
                debug!(client = %peer, max, "too many connections from one address; refused");
                // Best effort and never waiting: the connection closes either way.
                let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "could not set TCP_NODELAY");
            }
            conns.spawn(conn::serve(
                shared.clone(),
                stream,
                Peer::new(peer, trusted),
                slot,
                stop_rx.clone(),
            ));
            // Reap the finished ones so the set holds only live connections.
            while conns.try_join_next().is_some() {}
        }

        let local = listener.local_addr().ok();
        drop(listener);
        // One accept loop per runtime thread: said once, by "balancer stopped", above.
        debug!(addr = ?local, "balancer stopped accepting; draining connections");
        let _ = stop_tx.send(true);
        drop(stop_rx);
        // Idle connections close after one more request or a short quiet spell (see
        // `conn::DRAIN_IDLE`), requests under way finish; a stream that
        // would never end (a long poll, an event stream) is cut at the deadline.
        if tokio::time::timeout(DRAIN_TIMEOUT, stop_tx.closed())
            .await
            .is_err()
        {
            warn!(
                addr = ?local,
                connections = conns.len(),
                "connections still busy after the drain deadline; closing them"
            );
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        purge.abort();
    }
}
