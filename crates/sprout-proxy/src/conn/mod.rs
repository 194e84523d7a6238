//! One client connection: read a request head, pick an instance, forward the request, stream
//! the response back, and again while the client keeps the connection open.
//!
//! Hand-written over [`crate::wire`] rather than a general HTTP library because this loop is
//! what every request pays for: a request and its response each cost one read and one write
//! in the common case, heads are rewritten in place without building header maps, and
//! bodies pass through unchanged.

mod forward;
mod tunnel;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;
use tracing::{debug, warn};

use crate::error::ProxyError;
use crate::headers::{Peer, RequestId};
use crate::limits::ClientSlot;
use crate::table::{Backend, Route, STICKY_COOKIE};
use crate::upstream::Pool;
use crate::wire::{self, Chunked, Framing, RequestHead, WireError};
use crate::Balancer;
use tunnel::Tunnel;

/// A client may wait this long between requests on a kept-alive connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a stopping balancer keeps an idle keep-alive connection open for one more
/// request (see `read_head`).
const DRAIN_IDLE: Duration = Duration::from_secs(2);
/// Drop clients that start a request head and never finish it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection waits for the client to close its side, so that unread
/// bytes from it do not reset the connection before it has read the last response.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// Reads ask for at least this much room.
const READ_CHUNK: usize = 16 * 1024;
/// A buffer grown past this by one large message is given back afterwards.
const KEEP_BUFFER: usize = 64 * 1024;

/// What the connections of one serving thread share.
pub(crate) struct Shared {
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) pool: Arc<Pool>,
}

/// Serves one client connection until it closes, the balancer stops, or it is upgraded.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: Peer,
    slot: ClientSlot,
    stop: watch::Receiver<bool>,
) {
    let config = shared.balancer.config();
    let mut conn = Conn {
        io_timeout: shared.balancer.io_timeout(),
        min_body_rate: config.min_body_rate,
        body_grace: config.body_grace,
        client: stream,
        peer,
        rbuf: BytesMut::new(),
        ubuf: BytesMut::new(),
        out: Vec::new(),
        stop,
        timer: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
    };
    loop {
        let head_len = match conn.read_head().await {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(HeadError::Io(e)) => {
                debug!(client = %conn.peer.addr, error = %e, "client connection ended");
                break;
            }
            Err(HeadError::Wire(e)) => {
                conn.refuse(e).await;
                break;
            }
        };
        match conn.exchange(&shared, head_len).await {
            Next::KeepAlive => conn.trim_buffers(),
            Next::Close => break,
            Next::Tunnel(t) => {
                t.spawn(conn.client, conn.rbuf, slot);
                return;
            }
        }
    }
    conn.linger().await;
}

struct Conn {
    io_timeout: Duration,
    min_body_rate: u32,
    body_grace: Duration,
    client: TcpStream,
    peer: Peer,
    /// Bytes from the client not yet handled (pipelined requests stay here).
    rbuf: BytesMut,
    /// Bytes from the instance.
    ubuf: BytesMut,
    /// Heads (and small bodies) being assembled for one write.
    out: Vec<u8>,
    stop: watch::Receiver<bool>,
    /// Idle and head deadlines; one timer per connection, moved rather than re-created.
    timer: Pin<Box<Sleep>>,
}

enum HeadError {
    Io(io::Error),
    Wire(WireError),
}

enum Next {
    KeepAlive,
    Close,
    Tunnel(Tunnel),
}

/// The rest of the request body still to be read from the client and sent on.
enum RequestBody {
    Sent,
    Length(u64),
    Chunked(Chunked),
}

impl Conn {
    /// Waits for a complete request head; `None` when the connection should just close
    /// (client closed between requests, idle timeout, or the balancer is stopping).
    async fn read_head(&mut self) -> Result<Option<usize>, HeadError> {
        let mut searched = 0;
        let mut head_deadline = None;
        loop {
            if let Some(end) = wire::head_end(&self.rbuf, searched) {
                return Ok(Some(end));
            }
            searched = self.rbuf.len();
            if self.rbuf.len() >= wire::MAX_HEAD {
                return Err(HeadError::Wire(WireError::TooLarge));
            }
            let idle = self.rbuf.is_empty();
            let stopping = *self.stop.borrow();
            let deadline = if idle {
                // Stopping (a restart hands the listeners to the next server): an idle
                // keep-alive connection still gets its next request, answered with
                // `Connection: close`, rather than a close that could cross a request
                // the client is sending at that moment. Only a quiet one is closed.
                tokio::time::Instant::now() + if stopping { DRAIN_IDLE } else { IDLE_TIMEOUT }
            } else {
                *head_deadline.get_or_insert_with(|| tokio::time::Instant::now() + HEAD_TIMEOUT)
            };
            self.timer.as_mut().reset(deadline);
            reserve(&mut self.rbuf);
            let Conn {
                client,
                rbuf,
                stop,
                timer,
                ..
            } = self;
            let n = tokio::select! {
                biased;
                r = client.read_buf(rbuf) => r.map_err(HeadError::Io)?,
                _ = timer.as_mut() => {
                    return if idle {
                        Ok(None)
                    } else {
                        Err(HeadError::Io(io::Error::new(io::ErrorKind::TimedOut, "request head timed out")))
                    };
                }
                // A stop shortens an idle connection's wait (the loop starts over with the
                // drain deadline); a started head is finished and answered.
                changed = stop.changed(), if idle && !stopping => match changed {
                    Ok(()) => continue,
                    Err(_) => return Ok(None),
                },
            };
            if n == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }

    /// Closes the connection gracefully: FIN first, then reads (and drops) what the client
    /// still sends until it closes too, briefly. Closing with unread bytes would send a
    /// reset, which can destroy a response the client has not read yet (an error answered
    /// before its request's body was read, say).
    async fn linger(&mut self) {
        if self.client.shutdown().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.rbuf.clear();
            reserve(&mut self.rbuf);
            match tokio::time::timeout_at(deadline, self.client.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            }
        }
    }

    /// Answers a head that could not be parsed, then the connection closes.
    async fn refuse(&mut self, e: WireError) {
        let err = ProxyError::from(e);
        debug!(client = %self.peer.addr, error = %err, "bad request");
        let id = RequestId::generate();
        self.out.clear();
        err.write_response(&mut self.out, id.as_bytes(), false, false);
        let _ = self.client.write_all(&self.out).await;
    }

    /// One request and its response.
    async fn exchange(&mut self, shared: &Shared, head_len: usize) -> Next {
        let start = Instant::now();
        let stopping = *self.stop.borrow();
        let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
        let head = match RequestHead::parse(&self.rbuf[..head_len], &mut headers, STICKY_COOKIE) {
            Ok(Some(head)) => head,
            // Only blank lines so far (allowed before a request line): skip them.
            Ok(None) => {
                self.rbuf.advance(head_len);
                return Next::KeepAlive;
            }
            Err(e) => {
                self.refuse(e).await;
                return Next::Close;
            }
        };
        let id = RequestId::from_client(head.request_id);
        let info = RequestInfo {
            http10: head.http10,
            keep_alive: head.keep_alive && !stopping,
            retryable: head.retryable(),
            idempotent: head.idempotent(),
            is_head: head.is_head(),
            upgrade: head.upgrade.is_some(),
            expect_continue: head.expect_continue,
        };

        let route = match shared.balancer.route_for(head.authority, head.host) {
            Ok(route) => route,
            Err(e) => {
                let has_body = head.has_body();
                drop(head);
                self.rbuf.advance(head_len);
                return self.answer_error(e, None, None, &id, &info, has_body).await;
            }
        };
        // The backend the client's stickiness cookie names, if stickiness is on.
        let presented = match (route.opts.sticky, head.cookie) {
            (Some(_), Some(c)) => std::str::from_utf8(c).ok().and_then(|c| route.backend(c)),
            _ => None,
        };
        let backend = match presented.filter(|b| b.health.is_healthy()) {
            Some(b) => b,
            None => match route.pick() {
                Some(b) => b,
                None => {
                    let has_body = head.has_body();
                    drop(head);
                    self.rbuf.advance(head_len);
                    let e = ProxyError::NoHealthyBackend(route.env.clone());
                    return self
                        .answer_error(e, Some(&route), None, &id, &info, has_body)
                        .await;
                }
            },
        };

        self.out.clear();
        head.write_upstream(
            &mut self.out,
            &self.peer.ip,
            self.peer.trusted,
            id.as_bytes(),
            &shared.balancer.config().private_cookies,
        );
        let framing = head.framing;
        drop(head);
        self.rbuf.advance(head_len);
        let mut body = match framing {
            Framing::Empty | Framing::UntilClose => RequestBody::Sent,
            // A body that has all arrived goes in the same write as the head.
            Framing::Length(n) if self.rbuf.len() as u64 >= n => {
                self.out.extend_from_slice(&self.rbuf[..n as usize]);
                self.rbuf.advance(n as usize);
                RequestBody::Sent
            }
            Framing::Length(n) => RequestBody::Length(n),
            Framing::Chunked => RequestBody::Chunked(Chunked::default()),
        };
        self.forward(
            shared, &route, backend, presented, &mut body, &id, &info, start,
        )
        .await
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        timed(self.io_timeout, self.client.write_all(&self.out)).await?;
        self.out.clear();
        Ok(())
    }

    /// Answers the request itself (an error), recording it against the route.
    async fn answer_error(
        &mut self,
        e: ProxyError,
        route: Option<&Route>,
        backend: Option<&Backend>,
        id: &RequestId,
        info: &RequestInfo,
        unread_body: bool,
    ) -> Next {
        let status = e.status().as_u16();
        if let Some(route) = route {
            let now = Instant::now();
            route.stats.record(now, Duration::ZERO, status, true);
            match backend {
                Some(b) => b.stats.record(now, Duration::ZERO, status, true),
                None => route.stats.record_unrouted(),
            }
        }
        match &e {
            ProxyError::Upstream { .. } | ProxyError::UpstreamTimeout { .. } => {
                warn!(request_id = %id, error = %e, "proxy error")
            }
            _ => debug!(request_id = %id, error = %e, "request not forwarded"),
        }
        // Unread body bytes would be taken for the next request: close instead.
        let keep_alive = info.keep_alive && !unread_body;
        self.out.clear();
        e.write_response(&mut self.out, id.as_bytes(), info.http10, keep_alive);
        match timed(self.io_timeout, self.client.write_all(&self.out)).await {
            Ok(()) if keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// Gives back buffer space one large message grew.
    fn trim_buffers(&mut self) {
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        if self.ubuf.capacity() > KEEP_BUFFER && self.ubuf.is_empty() {
            self.ubuf = BytesMut::new();
        }
        if self.rbuf.capacity() > KEEP_BUFFER && self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
    }
}

/// What the exchange needs from the request head after the head's buffer has moved on.
struct RequestInfo {
    http10: bool,
    /// The client's wish, and the balancer not stopping.
    keep_alive: bool,
    retryable: bool,
    idempotent: bool,
    is_head: bool,
    upgrade: bool,
    expect_continue: bool,
}

/// Bounds one read or write by `limit` (`BalancerConfig::io_timeout`). Costs no timer when
/// the I/O is ready at once.
async fn timed<T>(
    limit: Duration,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, io).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

fn invalid(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}
