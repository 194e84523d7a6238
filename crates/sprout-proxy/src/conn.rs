//! One client connection: read a request head, pick an instance, forward the request, stream
//! the response back, and again while the client keeps the connection open.
//!
//! Hand-written over [`crate::wire`] rather than a general HTTP library because this loop is
//! what every request pays for: a request and its response each cost one read and one write
//! in the common case, heads are rewritten in place without building header maps, and
//! bodies pass through unchanged.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;
use tracing::{debug, warn};

use crate::error::ProxyError;
use crate::headers::{Peer, RequestId};
use crate::limits::{ClientSlot, Pace};
use crate::metrics::InFlight;
use crate::table::{Backend, Route, STICKY_COOKIE};
use crate::upstream::{Pool, Upstream};
use crate::wire::{self, Chunked, ClientBody, Framing, RequestHead, ResponseHead, WireError};
use crate::Balancer;

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

/// How sending a request to an instance failed.
enum SendError {
    /// The client went away (or sent a broken body): nothing to answer.
    Client(io::Error),
    /// The instance could not be reached or failed before its response head arrived.
    /// `untouched`: nothing was received, so an idempotent request may go elsewhere.
    Upstream { error: io::Error, untouched: bool },
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

    /// Sends the request (with one retry elsewhere where allowed) and relays the response.
    #[allow(clippy::too_many_arguments)]
    async fn forward<'r>(
        &mut self,
        shared: &Shared,
        route: &'r Route,
        mut backend: &'r Backend,
        presented: Option<&'r Backend>,
        body: &mut RequestBody,
        id: &RequestId,
        info: &RequestInfo,
        start: Instant,
    ) -> Next {
        let mut guard = InFlight::enter(&backend.stats);
        let mut sent = self.send(&shared.pool, backend.addr, body, info).await;
        if let Err(SendError::Upstream {
            error,
            untouched: true,
        }) = &sent
        {
            if info.retryable {
                // Nothing of a response arrived: try once more on another healthy backend.
                if let Some(other) = route.pick_other(backend) {
                    warn!(
                        request_id = %id, env = %route.env, backend = %backend.id,
                        retry_on = %other.id, error = %error,
                        "instance could not be reached; retrying elsewhere"
                    );
                    backend.stats.record_retried_failure(Instant::now());
                    backend = other;
                    guard = InFlight::enter(&other.stats);
                    sent = self.send(&shared.pool, backend.addr, body, info).await;
                }
            }
        }
        let (mut upstream, mut head_len) = match sent {
            Ok(pair) => pair,
            Err(SendError::Client(e)) => {
                debug!(request_id = %id, error = %e, "client went away while sending its request");
                return Next::Close;
            }
            Err(SendError::Upstream { error, .. }) => {
                let e = upstream_error(route, backend, error, self.io_timeout);
                let unread = !matches!(body, RequestBody::Sent);
                return self
                    .answer_error(e, Some(route), Some(backend), id, info, unread)
                    .await;
            }
        };

        // The final response, after any interim (1xx) ones.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
            let parsed = ResponseHead::parse(&self.ubuf[..head_len], &mut headers, info.is_head);
            let resp = match parsed {
                Ok(Some((_, resp))) if resp.is_interim() => {
                    drop(resp);
                    self.ubuf.advance(head_len);
                    match read_response_head(&mut upstream.stream, &mut self.ubuf).await {
                        Ok(n) => {
                            head_len = n;
                            continue;
                        }
                        Err(error) => {
                            let e = upstream_error(route, backend, error, self.io_timeout);
                            return self
                                .answer_error(e, Some(route), Some(backend), id, info, false)
                                .await;
                        }
                    }
                }
                Ok(Some((_, resp))) if resp.status != 101 || info.upgrade => resp,
                other => {
                    let reason = match other {
                        Err(e) => format!("bad response: {e}"),
                        Ok(Some(_)) => "switched protocols unasked".to_owned(),
                        Ok(None) => "bad response: incomplete head".to_owned(),
                    };
                    let e =
                        upstream_error(route, backend, io::Error::other(reason), self.io_timeout);
                    return self
                        .answer_error(e, Some(route), Some(backend), id, info, false)
                        .await;
                }
            };

            let now = Instant::now();
            route.stats.record(now, now - start, resp.status, false);
            backend.stats.record(now, now - start, resp.status, false);
            // Only when the client did not already present a valid cookie for this backend.
            let cookie = backend
                .set_cookie
                .as_ref()
                .filter(|_| !presented.is_some_and(|p| std::ptr::eq(p, backend)));
            self.out.clear();
            // After an early answer the rest of the request body is unread: close after.
            let body_read = matches!(body, RequestBody::Sent);
            let (client_body, keep_alive) = resp.write_client(
                &mut self.out,
                id.as_bytes(),
                cookie.map(|c| c.as_bytes()),
                info.http10,
                info.keep_alive && body_read,
            );
            let framing = resp.framing;
            let switched = resp.status == 101;
            let reusable = resp.reusable && body_read;
            drop(resp);
            self.ubuf.advance(head_len);

            if switched {
                return Next::Tunnel(Tunnel {
                    upstream: upstream.stream,
                    to_client: std::mem::take(&mut self.out),
                    from_upstream: self.ubuf.split(),
                    env: route.env.clone(),
                    backend: backend.id.clone(),
                    in_flight: guard,
                });
            }
            if let Err(e) = self
                .relay_body(&mut upstream.stream, framing, client_body)
                .await
            {
                debug!(
                    request_id = %id, env = %route.env, backend = %backend.id, error = %e,
                    "response body not relayed to its end"
                );
                return Next::Close;
            }
            // The instance's part is done: free it before the client's last write, so
            // neither the pool nor the in-flight count waits on a slow client.
            if reusable && self.ubuf.is_empty() {
                shared.pool.put(backend.addr, upstream.stream);
            }
            drop(guard);
            return match self.flush_out().await {
                Ok(()) if keep_alive => Next::KeepAlive,
                Ok(()) => Next::Close,
                Err(e) => {
                    debug!(request_id = %id, error = %e, "client went away");
                    Next::Close
                }
            };
        }
    }

    /// Sends the head (and body) to an instance and reads until its response head is in
    /// `ubuf`; returns the connection and the head's length. A reused connection that fails
    /// before anything arrived is retried once on a new one, if the request can be resent:
    /// its body was all in hand, and either the instance cannot have seen it (the write
    /// failed) or sending it twice does no harm (an idempotent method).
    async fn send(
        &mut self,
        pool: &Pool,
        addr: SocketAddr,
        body: &mut RequestBody,
        info: &RequestInfo,
    ) -> Result<(Upstream, usize), SendError> {
        let replayable = matches!(body, RequestBody::Sent);
        let mut fresh = false;
        let mut pace = Pace::new(self.min_body_rate, self.body_grace);
        loop {
            let got = if fresh {
                pool.fresh(addr).await
            } else {
                pool.get(addr, !info.idempotent).await
            };
            let mut up = got.map_err(|error| SendError::Upstream {
                error,
                untouched: true,
            })?;
            self.ubuf.clear();
            let mut written = false;
            let result = async {
                timed(self.io_timeout, up.stream.write_all(&self.out))
                    .await
                    .map_err(|error| SendError::Upstream {
                        error,
                        untouched: true,
                    })?;
                written = true;
                // The instance may answer before the body is all sent (413, 401): watch for
                // its answer while sending, and take it as soon as it comes.
                while !matches!(body, RequestBody::Sent) {
                    let race = {
                        let (mut from_up, mut to_up) = up.stream.split();
                        let sending = send_body(
                            &mut self.client,
                            &mut self.rbuf,
                            &mut to_up,
                            body,
                            info,
                            self.io_timeout,
                            &mut pace,
                        );
                        let answer = read_response_head(&mut from_up, &mut self.ubuf);
                        tokio::select! {
                            biased;
                            head = answer => Err(head),
                            sent = sending => Ok(sent),
                        }
                    };
                    match race {
                        Ok(sent) => sent?,
                        // An interim answer (100 Continue): keep sending.
                        Err(Ok(n)) if is_interim(&self.ubuf[..n]) => self.ubuf.advance(n),
                        Err(head) => {
                            return head.map_err(|error| SendError::Upstream {
                                untouched: self.ubuf.is_empty(),
                                error,
                            })
                        }
                    }
                }
                timed(
                    self.io_timeout,
                    read_response_head(&mut up.stream, &mut self.ubuf),
                )
                .await
                .map_err(|error| SendError::Upstream {
                    untouched: self.ubuf.is_empty(),
                    error,
                })
            }
            .await;
            match result {
                Ok(head_len) => return Ok((up, head_len)),
                Err(SendError::Upstream {
                    untouched: true,
                    error,
                }) if up.reused
                    && replayable
                    && (!written || info.idempotent)
                    && error.kind() != io::ErrorKind::TimedOut =>
                {
                    fresh = true
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Relays the response body from the instance after the head in `out`, as
    /// `client_body` says. Returns once the instance's side is complete, with the last piece
    /// still in `out`: the caller frees the instance first, then writes it.
    async fn relay_body(
        &mut self,
        up: &mut TcpStream,
        framing: Framing,
        client_body: ClientBody,
    ) -> io::Result<()> {
        match (framing, client_body) {
            (_, ClientBody::Empty) => Ok(()),
            (_, ClientBody::Length(n)) => {
                let mut left = n;
                loop {
                    let take = left.min(self.ubuf.len() as u64) as usize;
                    self.out.extend_from_slice(&self.ubuf[..take]);
                    self.ubuf.advance(take);
                    left -= take as u64;
                    if left == 0 {
                        return Ok(());
                    }
                    self.flush_out().await?;
                    fill(up, &mut self.ubuf, self.io_timeout).await?;
                }
            }
            (Framing::Chunked, ClientBody::Chunked) => {
                let mut state = Chunked::default();
                loop {
                    let take = state.advance(&self.ubuf).map_err(invalid)?;
                    self.out.extend_from_slice(&self.ubuf[..take]);
                    self.ubuf.advance(take);
                    if state.is_done() {
                        return Ok(());
                    }
                    self.flush_out().await?;
                    fill(up, &mut self.ubuf, self.io_timeout).await?;
                }
            }
            // An HTTP/1.0 client gets the chunked body's data raw, then the connection closes.
            (Framing::Chunked, ClientBody::UntilClose) => {
                let mut state = Chunked::default();
                loop {
                    let take = state.decode(&self.ubuf, &mut self.out).map_err(invalid)?;
                    self.ubuf.advance(take);
                    if state.is_done() {
                        return Ok(());
                    }
                    self.flush_out().await?;
                    fill(up, &mut self.ubuf, self.io_timeout).await?;
                }
            }
            // Delimited by the instance closing: until then, pass on (or chunk) what arrives.
            (_, ClientBody::Rechunk | ClientBody::UntilClose) => {
                let rechunk = client_body == ClientBody::Rechunk;
                loop {
                    if !self.ubuf.is_empty() {
                        if rechunk {
                            wire::write_chunk(&mut self.out, &self.ubuf);
                        } else {
                            self.out.extend_from_slice(&self.ubuf);
                        }
                        self.ubuf.clear();
                    }
                    self.flush_out().await?;
                    reserve(&mut self.ubuf);
                    if timed(self.io_timeout, up.read_buf(&mut self.ubuf)).await? == 0 {
                        if rechunk {
                            wire::write_chunk(&mut self.out, b"");
                        }
                        return Ok(());
                    }
                }
            }
            (_, ClientBody::Chunked) => Err(invalid(WireError::Malformed)),
        }
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

fn upstream_error(
    route: &Route,
    backend: &Backend,
    error: io::Error,
    limit: Duration,
) -> ProxyError {
    if error.kind() == io::ErrorKind::TimedOut {
        return ProxyError::UpstreamTimeout {
            env: route.env.clone(),
            backend: backend.id.clone(),
            after: limit,
        };
    }
    ProxyError::Upstream {
        env: route.env.clone(),
        backend: backend.id.clone(),
        reason: error.to_string(),
        source: error,
    }
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

/// Reads more of a body; the instance closing early is an error.
async fn fill(up: &mut TcpStream, buf: &mut BytesMut, limit: Duration) -> io::Result<()> {
    reserve(buf);
    match timed(limit, up.read_buf(buf)).await? {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "instance closed the connection mid-body",
        )),
        _ => Ok(()),
    }
}

/// Streams the rest of the request body from the client to the instance.
async fn send_body(
    client: &mut TcpStream,
    rbuf: &mut BytesMut,
    up: &mut (impl AsyncWrite + Unpin),
    body: &mut RequestBody,
    info: &RequestInfo,
    limit: Duration,
    pace: &mut Pace,
) -> Result<(), SendError> {
    let upstream_err = |error| SendError::Upstream {
        error,
        untouched: false,
    };
    // Never to an HTTP/1.0 client, which cannot take an interim response.
    if info.expect_continue && !info.http10 && rbuf.is_empty() {
        // The client waits for this before sending the body it announced.
        timed(limit, client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"))
            .await
            .map_err(SendError::Client)?;
    }
    loop {
        if rbuf.is_empty() {
            reserve(rbuf);
            let n = read_paced(client, rbuf, pace, limit)
                .await
                .map_err(SendError::Client)?;
            if n == 0 {
                return Err(SendError::Client(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let take = match body {
            RequestBody::Sent => return Ok(()),
            RequestBody::Length(left) => (*left).min(rbuf.len() as u64) as usize,
            RequestBody::Chunked(state) => state
                .advance(rbuf)
                .map_err(|e| SendError::Client(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        };
        timed(limit, up.write_all(&rbuf[..take]))
            .await
            .map_err(upstream_err)?;
        rbuf.advance(take);
        let done = match body {
            RequestBody::Length(left) => {
                *left -= take as u64;
                *left == 0
            }
            RequestBody::Chunked(state) => state.is_done(),
            RequestBody::Sent => true,
        };
        if done {
            *body = RequestBody::Sent;
            return Ok(());
        }
    }
}

/// Reads more of a request body within the per-read `limit` and the body's minimum rate.
async fn read_paced(
    client: &mut TcpStream,
    rbuf: &mut BytesMut,
    pace: &mut Pace,
    limit: Duration,
) -> io::Result<usize> {
    let Some(allowed) = pace.allowance(limit) else {
        return timed(limit, client.read_buf(rbuf)).await;
    };
    let started = tokio::time::Instant::now();
    let read = tokio::time::timeout(allowed, client.read_buf(rbuf)).await;
    let waited = started.elapsed();
    match read {
        Ok(n) => {
            let n = n?;
            pace.record(n, waited);
            Ok(n)
        }
        Err(_) if allowed < limit => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("request body slower than {} bytes/s; cut", pace.min_rate()),
        )),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

/// Whether a response head is an interim one (1xx other than 101).
fn is_interim(head: &[u8]) -> bool {
    head.len() >= 12 && head.starts_with(b"HTTP/1.") && head[9] == b'1' && &head[9..12] != b"101"
}

/// Reads until `buf` holds a complete response head; returns its length.
async fn read_response_head(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> io::Result<usize> {
    let mut searched = 0;
    loop {
        if let Some(end) = wire::head_end(buf, searched) {
            return Ok(end);
        }
        searched = buf.len();
        if buf.len() >= wire::MAX_HEAD {
            return Err(invalid(WireError::TooLarge));
        }
        reserve(buf);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "connection closed before any response"
                } else {
                    "connection closed mid-response"
                },
            ));
        }
    }
}

/// An upgraded connection (e.g. WebSocket), spliced client to instance until either closes.
struct Tunnel {
    upstream: TcpStream,
    /// The 101 head for the client.
    to_client: Vec<u8>,
    /// Bytes the instance sent after its 101 head.
    from_upstream: BytesMut,
    env: String,
    backend: String,
    /// The tunnel counts as a request in flight for as long as it is open.
    in_flight: InFlight,
}

impl Tunnel {
    /// Runs on its own task, so a long-lived tunnel never holds up a graceful shutdown.
    fn spawn(self, mut client: TcpStream, from_client: BytesMut, slot: ClientSlot) {
        tokio::spawn(async move {
            // The client's connection stays counted for as long as the tunnel is open.
            let _slot = slot;
            let Tunnel {
                mut upstream,
                mut to_client,
                from_upstream,
                env,
                backend,
                in_flight,
            } = self;
            let _in_flight = in_flight;
            to_client.extend_from_slice(&from_upstream);
            let result = async {
                client.write_all(&to_client).await?;
                upstream.write_all(&from_client).await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await
            }
            .await;
            if let Err(e) = result {
                debug!(env = %env, backend = %backend, error = %e, "upgraded connection ended");
            }
        });
    }
}
