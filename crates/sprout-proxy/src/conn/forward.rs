//! Forwarding one request to an instance (with one retry elsewhere where allowed) and relaying
//! its response back: the request body streamed at the client's pace, interim responses,
//! and the response body as its framing says.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::tunnel::Tunnel;
use super::{invalid, reserve, timed, Conn, Next, RequestBody, RequestInfo, Shared};
use crate::error::ProxyError;
use crate::headers::RequestId;
use crate::limits::Pace;
use crate::metrics::InFlight;
use crate::table::{Backend, Route};
use crate::upstream::{Pool, Upstream};
use crate::wire::{self, Chunked, ClientBody, Framing, ResponseHead, WireError};

/// How sending a request to an instance failed.
enum SendError {
    /// The client went away (or sent a broken body): nothing to answer.
    Client(io::Error),
    /// The instance could not be reached or failed before its response head arrived.
    /// `untouched`: nothing was received, so an idempotent request may go elsewhere.
    Upstream { error: io::Error, untouched: bool },
}

impl Conn {
    /// Sends the request (with one retry elsewhere where allowed) and relays the response.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward<'r>(
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
