//! Connections to instances: opened with a short timeout, kept alive and reused.
//!
//! One pool per serving thread (see [`crate::Balancer::serve_per_core`]), so its lock is
//! never contended; it is a `Mutex` only so the same code serves a multi-thread runtime.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// A dead instance must fail fast (then the request is retried elsewhere) rather than hang
/// on ARP for seconds: its address may meanwhile be given to a new instance that has not
/// passed a health check. Instances are on local bridges or a LAN, where a connect takes
/// well under a millisecond.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle connections older than this are closed rather than reused (instances' servers
/// commonly time keep-alive out after 5 to 75 s; a reused connection the instance has just
/// closed costs a retry).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per instance; more are closed when returned.
const MAX_IDLE_PER_BACKEND: usize = 1024;
/// An idle connection reused sooner than this is not probed for a close first: under load
/// that probe would cost a system call per request, and an instance closing a connection
/// within a millisecond of answering on it says `Connection: close` in the answer.
const PROBE_AFTER: Duration = Duration::from_millis(1);

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// Keep-alive connections to instances, by address.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

/// A connection to an instance, and whether it came from the pool (a reused connection the
/// instance closed meanwhile fails without having served anything: worth one retry).
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    pub(crate) reused: bool,
}

impl Pool {
    /// The most recently used live idle connection to `addr`, else a new one. `probe`:
    /// check even a connection reused at once for a close (for a request that must not be
    /// sent twice, since a failed send on it could not be retried).
    pub(crate) async fn get(&self, addr: SocketAddr, probe: bool) -> io::Result<Upstream> {
        if let Some(stream) = self.take_idle(addr, probe) {
            return Ok(Upstream {
                stream,
                reused: true,
            });
        }
        self.fresh(addr).await
    }

    /// A new connection, bypassing the pool (the retry after a reused one failed).
    pub(crate) async fn fresh(&self, addr: SocketAddr) -> io::Result<Upstream> {
        Ok(Upstream {
            stream: connect(addr).await?,
            reused: false,
        })
    }

    fn take_idle(&self, addr: SocketAddr, probe: bool) -> Option<TcpStream> {
        let now = Instant::now();
        loop {
            let idle = {
                let mut pool = self.lock();
                pool.get_mut(&addr)?.pop()?
            };
            let age = now.saturating_duration_since(idle.since);
            if age >= IDLE_TIMEOUT {
                continue;
            }
            if (age < PROBE_AFTER && !probe) || is_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Returns a connection whose last response was read to its end and that the instance
    /// keeps open.
    pub(crate) fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let mut pool = self.lock();
        let idle = pool.entry(addr).or_default();
        if idle.len() < MAX_IDLE_PER_BACKEND {
            idle.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for longer than the idle timeout (and forgets instances
    /// that have none left), so connections to departed instances do not linger.
    pub(crate) fn purge(&self) {
        let now = Instant::now();
        let mut pool = self.lock();
        pool.retain(|_, idle| {
            idle.retain(|c| now.saturating_duration_since(c.since) < IDLE_TIMEOUT);
            !idle.is_empty()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        // Nothing here can leave the map half-updated; a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether an idle connection is still open: nothing (not even an end of stream) is
/// waiting to be read on it. Tokio answers from its cached readiness without a system call
/// when the socket has not become readable.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
