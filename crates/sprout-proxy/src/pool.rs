//! Keep-alive connections to the instances, one pool per thread.
//!
//! Replaces hyper-util's legacy `Client` on the request path: that client hands every request
//! to a pool behind a `Mutex` and keeps connections in `Arc`s. Here each thread keeps a plain
//! stack of idle `SendRequest`s per instance address. A request takes one (or connects), sends,
//! and the response body puts it back once the backend's body has ended, so a connection is
//! only reused when it is idle. With [`crate::Balancer::serve_per_core`] a connection's task
//! runs on the thread that owns it; on a multi-thread runtime a sender may go back to another
//! thread's pool, which is harmless.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Either;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

/// Body sent upstream: the client's, or empty for bodiless requests that may be retried.
pub(crate) type UpstreamBody = Either<Incoming, Empty<Bytes>>;

pub(crate) type Sender = http1::SendRequest<UpstreamBody>;

/// A dead instance must fail fast (then the request is retried elsewhere) rather than hang
/// on ARP for seconds: its address may meanwhile be given to a new instance that has not
/// passed a health check. Instances are on local bridges or a LAN, where a connect takes
/// well under a millisecond.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle connections older than this are closed (as the legacy client's pool did).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keep-alive probes start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Bound on idle connections kept per instance and thread; extra ones are closed.
const MAX_IDLE_PER_ADDR: usize = 512;
/// How often a pool looks through all its addresses for closed or expired connections
/// (instances that left the route are never asked for again).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why no response came back from an instance. Every variant means no byte of a response
/// was received, so an idempotent bodiless request may be sent elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("tcp connect error: {0}")]
    Connect(#[source] std::io::Error),
    #[error("tcp connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("http handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("{0}")]
    Request(#[source] hyper::Error),
}

struct Idle {
    sender: Sender,
    since: Instant,
}

struct Pool {
    idle: HashMap<SocketAddr, Vec<Idle>>,
    last_sweep: Instant,
}

impl Pool {
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.idle.retain(|_, conns| {
            conns.retain(|c| !c.sender.is_closed() && now - c.since < IDLE_TIMEOUT);
            !conns.is_empty()
        });
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        idle: HashMap::new(),
        last_sweep: Instant::now(),
    });
}

/// A connection to an instance, checked out of this thread's pool or new.
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    pub(crate) addr: SocketAddr,
    /// Came from the pool: the instance may have closed it meanwhile.
    pub(crate) reused: bool,
}

/// The most recently used idle connection to `addr` that is still open.
fn take_idle(addr: SocketAddr) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let conns = pool.idle.get_mut(&addr)?;
        while let Some(c) = conns.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.sender);
            }
        }
        None
    })
}

/// Gives a connection whose last response has been read in full back to this thread's pool.
pub(crate) fn put(addr: SocketAddr, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    let now = Instant::now();
    POOL.with(|pool| {
        // Never panic in a Drop path: a re-entrant borrow (impossible today) just closes it.
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return;
        };
        if now - pool.last_sweep >= SWEEP_EVERY {
            pool.sweep(now);
        }
        let conns = pool.idle.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_ADDR {
            conns.push(Idle { sender, since: now });
        }
    });
}

/// An idle pooled connection to `addr` ready for a request, or a new one.
pub(crate) async fn checkout(addr: SocketAddr) -> Result<Conn, UpstreamError> {
    while let Some(mut sender) = take_idle(addr) {
        // At once for an idle connection; an error if it has closed since.
        if sender.ready().await.is_ok() {
            return Ok(Conn {
                sender,
                addr,
                reused: true,
            });
        }
    }
    connect(addr).await
}

/// Opens a new connection to `addr`; its task runs on the current runtime.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Conn, UpstreamError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
        Err(_) => return Err(UpstreamError::ConnectTimeout(CONNECT_TIMEOUT)),
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%addr, error = %e, "could not set TCP_NODELAY upstream");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        debug!(%addr, error = %e, "could not set TCP keep-alive upstream");
    }
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the socket over once the backend answers 101.
        if let Err(e) = conn.with_upgrades().await {
            debug!(%addr, error = %e, "upstream connection ended with error");
        }
    });
    Ok(Conn {
        sender,
        addr,
        reused: false,
    })
}

/// Sends `req` on a pooled or new connection to `addr`. A pooled connection the instance
/// closed before taking the request is replaced by a new one transparently (the request had
/// not been written). Returns the connection with the response so it can be pooled again.
pub(crate) async fn send(
    addr: SocketAddr,
    req: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, Conn), UpstreamError> {
    let mut conn = checkout(addr).await?;
    match conn.sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, conn)),
        Err(mut e) => match e.take_message() {
            Some(req) if conn.reused => {
                debug!(%addr, error = %e.error(), "pooled connection closed; reconnecting");
                let mut conn = connect(addr).await?;
                let resp = conn
                    .sender
                    .send_request(req)
                    .await
                    .map_err(UpstreamError::Request)?;
                Ok((resp, conn))
            }
            _ => Err(UpstreamError::Request(e.into_error())),
        },
    }
}
