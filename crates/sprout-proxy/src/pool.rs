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
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Either;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
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

/// The connection future: reads responses, writes requests. Driven by whoever uses the
/// connection (see [`Upstream`]), not by a task of its own.
type Connection = http1::Connection<TokioIo<TcpStream>, UpstreamBody>;

/// A connection to an instance, checked out of this thread's pool or new.
///
/// The connection is polled inline by the request that uses it (while waiting for the
/// response head, then from the response body), so a request does not hop between the client
/// connection's task and an upstream connection task: both sockets are served by one task.
pub(crate) struct Upstream {
    sender: Sender,
    /// `None` once the connection has ended, or when it runs as a task of its own (upgrades).
    conn: Option<Connection>,
    addr: SocketAddr,
    /// Came from the pool: the instance may have closed it meanwhile.
    reused: bool,
}

impl Upstream {
    /// Drives the connection. `Ready` means it has ended (closed or failed) and is gone.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(conn) = &mut self.conn else {
            return Poll::Ready(());
        };
        match Pin::new(conn).poll(cx) {
            Poll::Ready(result) => {
                if let Err(e) = result {
                    debug!(addr = %self.addr, error = %e, "upstream connection ended with error");
                }
                self.conn = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Keeps the connection moving while the response body is read (the body is fed by it).
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        let _ = self.poll_conn(cx);
    }

    /// Sends a request and drives the connection until the response head has arrived.
    async fn exchange(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        let mut response = pin!(self.sender.try_send_request(req));
        poll_fn(|cx| {
            // The connection first, so a request just queued is written at once.
            let _ = self.poll_conn(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// Gives the connection back to this thread's pool once its response has been read in
    /// full; a connection that is not idle (or has ended) is closed instead.
    pub(crate) fn release(mut self: Box<Self>, cx: Option<&mut Context<'_>>) {
        if self.conn.is_none() {
            return;
        }
        // One more turn so the connection notices the response is done and asks for the
        // next request (or notices the instance closed it).
        let ended = match cx {
            Some(cx) => self.poll_conn(cx).is_ready(),
            None => self
                .poll_conn(&mut Context::from_waker(Waker::noop()))
                .is_ready(),
        };
        if ended || !self.sender.is_ready() {
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
            let conns = pool.idle.entry(self.addr).or_default();
            if conns.len() < MAX_IDLE_PER_ADDR {
                self.reused = true;
                conns.push(Idle {
                    upstream: self,
                    since: now,
                });
            }
        });
    }
}

struct Idle {
    upstream: Box<Upstream>,
    since: Instant,
}

struct Pool {
    idle: HashMap<SocketAddr, Vec<Idle>>,
    last_sweep: Instant,
}

impl Pool {
    /// Closes idle connections that expired or that their instance closed.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let mut cx = Context::from_waker(Waker::noop());
        self.idle.retain(|_, conns| {
            conns.retain_mut(|c| {
                now - c.since < IDLE_TIMEOUT && c.upstream.poll_conn(&mut cx).is_pending()
            });
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

/// The most recently used idle connection to `addr`, unexpired.
fn take_idle(addr: SocketAddr) -> Option<Box<Upstream>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let conns = pool.idle.get_mut(&addr)?;
        while let Some(c) = conns.pop() {
            if c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.upstream);
            }
        }
        None
    })
}

/// An idle pooled connection to `addr` ready for a request, or a new one.
async fn checkout(addr: SocketAddr) -> Result<Box<Upstream>, UpstreamError> {
    while let Some(mut up) = take_idle(addr) {
        // Ready at once for an idle connection; ended if the instance closed it meanwhile.
        let ready = poll_fn(|cx| {
            if up.poll_conn(cx).is_ready() {
                return Poll::Ready(false);
            }
            up.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await;
        if ready {
            return Ok(up);
        }
    }
    connect(addr, false).await
}

/// Opens a new connection to `addr`. With `spawn` its connection future runs as a task of
/// its own, which upgrades (WebSocket) need: the socket outlives the request there.
async fn connect(addr: SocketAddr, spawn: bool) -> Result<Box<Upstream>, UpstreamError> {
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
    let conn = if spawn {
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(%addr, error = %e, "upstream connection ended with error");
            }
        });
        None
    } else {
        Some(conn)
    };
    Ok(Box::new(Upstream {
        sender,
        conn,
        addr,
        reused: false,
    }))
}

/// Sends `req` on a pooled or new connection to `addr` (always a new one for an upgrade).
/// A pooled connection the instance closed before taking the request is replaced by a new
/// one transparently (the request had not been written). Returns the connection with the
/// response so it can be pooled again.
pub(crate) async fn send(
    addr: SocketAddr,
    req: Request<UpstreamBody>,
    upgrade: bool,
) -> Result<(Response<Incoming>, Box<Upstream>), UpstreamError> {
    let mut up = if upgrade {
        connect(addr, true).await?
    } else {
        checkout(addr).await?
    };
    match up.exchange(req).await {
        Ok(resp) => Ok((resp, up)),
        Err(mut e) => match e.take_message() {
            Some(req) if up.reused => {
                debug!(%addr, error = %e.error(), "pooled connection closed; reconnecting");
                let mut up = connect(addr, false).await?;
                match up.exchange(req).await {
                    Ok(resp) => Ok((resp, up)),
                    Err(e) => Err(UpstreamError::Request(e.into_error())),
                }
            }
            _ => Err(UpstreamError::Request(e.into_error())),
        },
    }
}
