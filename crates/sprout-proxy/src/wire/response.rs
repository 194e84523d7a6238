//! Response heads: which headers the balancer keeps, how the body goes on to the client,
//! the head it sends back, and the responses it writes itself.

use super::{content_length, header, is, tokens, Buf, ConnectionTokens, Framing, WireError};
use super::{MAX_HEADERS, MAX_INSTANCE_HEADERS};
use std::fmt::Write as _;

/// What the balancer does with a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespHeader {
    Pass,
    Drop,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
}

fn classify_response(name: &[u8]) -> RespHeader {
    use RespHeader::*;
    match name.len() {
        2 if is(name, "te") => Drop,
        7 if is(name, "upgrade") => Upgrade,
        7 if is(name, "trailer") => Drop,
        10 if is(name, "connection") => Connection,
        10 if is(name, "keep-alive") => Drop,
        12 if is(name, "x-request-id") => Drop,
        14 if is(name, "content-length") => ContentLength,
        16 if is(name, "proxy-connection") => Drop,
        17 if is(name, "transfer-encoding") => TransferEncoding,
        18 if is(name, "proxy-authenticate") => Drop,
        19 if is(name, "proxy-authorization") => Drop,
        _ => Pass,
    }
}

/// Whether a Transfer-Encoding value is exactly `chunked` (the only coding the balancer
/// forwards; anything else in a request is refused rather than guessed at).
fn only_chunked(value: &[u8]) -> bool {
    let mut t = tokens(value);
    matches!((t.next(), t.next()), (Some(c), None) if is(c, "chunked"))
}

/// How the balancer sends a response body on to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientBody {
    Empty,
    Length(u64),
    /// The instance's chunked body, passed through as it is.
    Chunked,
    /// A body delimited by close upstream, re-framed as chunks for an HTTP/1.1 client.
    Rechunk,
    /// A body delimited by close, sent raw to an HTTP/1.0 client; then the connection closes.
    UntilClose,
}

/// A parsed response head, borrowing the instance's read buffer.
#[derive(Debug)]
pub(crate) struct ResponseHead<'b> {
    pub(crate) status: u16,
    reason: &'b str,
    pub(crate) framing: Framing,
    /// Whether the instance keeps the connection open after this response.
    pub(crate) reusable: bool,
    headers: &'b [httparse::Header<'b>],
    conn: ConnectionTokens<'b>,
    length_header: Option<u64>,
}

impl<'b> ResponseHead<'b> {
    /// Parses a complete response head; `None` if more bytes are needed.
    pub(crate) fn parse(
        buf: &'b [u8],
        headers: &'b mut [httparse::Header<'b>; MAX_HEADERS],
        to_head_request: bool,
    ) -> Result<Option<(usize, ResponseHead<'b>)>, WireError> {
        Self::parse_within(buf, &mut headers[..MAX_INSTANCE_HEADERS], to_head_request)
    }

    /// [`ResponseHead::parse`] with at most `headers.len()` header lines (the fuzz targets
    /// read the head sent to the client back with a client's limit, [`MAX_HEADERS`]).
    pub(crate) fn parse_within(
        buf: &'b [u8],
        headers: &'b mut [httparse::Header<'b>],
        to_head_request: bool,
    ) -> Result<Option<(usize, ResponseHead<'b>)>, WireError> {
        let mut resp = httparse::Response::new(headers);
        let len = match resp.parse(buf)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(None),
        };
        let (Some(version), Some(status)) = (resp.version, resp.code) else {
            return Err(WireError::Malformed);
        };
        // httparse takes any three digits; `065` would be written on as `65` (found by fuzzing).
        if status < 100 {
            return Err(WireError::Malformed);
        }
        let headers: &'b [httparse::Header<'b>] = resp.headers;
        let mut conn = ConnectionTokens::default();
        let mut length = None;
        // Whether the final transfer coding (of the last header) is chunked.
        let mut coding: Option<bool> = None;
        for h in headers {
            match classify_response(h.name.as_bytes()) {
                RespHeader::Connection => conn.add(h.value),
                RespHeader::ContentLength => length = Some(content_length(h.value, length)?),
                RespHeader::TransferEncoding => {
                    // Codings are ASCII tokens. hyper's client takes a value with other bytes
                    // as not chunked and reads to close, so relaying it as chunked would
                    // desync the client's connection (found by fuzzing).
                    if !h
                        .value
                        .iter()
                        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
                    {
                        return Err(WireError::UnsupportedCoding);
                    }
                    // Chunked only if it is the final coding; otherwise the body is read
                    // until close, as RFC 9112 §6.3 says.
                    coding = Some(tokens(h.value).last().is_some_and(|t| is(t, "chunked")));
                }
                RespHeader::Pass | RespHeader::Drop | RespHeader::Upgrade => {}
            }
        }
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing. Refused,
        // as hyper's client does; it was relayed and the connection reused (found by fuzzing).
        if version == 0 && coding.is_some() {
            return Err(WireError::UnsupportedCoding);
        }
        let bodiless =
            to_head_request || (100..200).contains(&status) || matches!(status, 204 | 304);
        let framing = match (bodiless, coding, length) {
            (true, _, _) => Framing::Empty,
            (false, Some(true), _) => Framing::Chunked,
            (false, Some(false), _) => Framing::UntilClose,
            (false, None, Some(0)) => Framing::Empty,
            (false, None, Some(n)) => Framing::Length(n),
            (false, None, None) => Framing::UntilClose,
        };
        let keep_alive = if version == 0 {
            conn.keep_alive && !conn.close
        } else {
            !conn.close
        };
        Ok(Some((
            len,
            ResponseHead {
                status,
                reason: resp.reason.unwrap_or(""),
                framing,
                // Both framings at once may be an attempt at response splitting (RFC 9112
                // §6.3): the chunked body is relayed, the connection not trusted again.
                reusable: keep_alive
                    && framing != Framing::UntilClose
                    && status != 101
                    && !(coding.is_some() && length.is_some()),
                headers,
                conn,
                length_header: length,
            },
        )))
    }

    /// Informational (1xx) other than 101: skipped, the final response follows.
    pub(crate) fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Writes the head sent to the client and says how the body follows. `keep_alive` is
    /// whether the client connection stays open if the body allows it; the returned flag is
    /// whether it actually does.
    pub(crate) fn write_client(
        &self,
        out: &mut Vec<u8>,
        request_id: &[u8],
        set_cookie: Option<&[u8]>,
        client_http10: bool,
        keep_alive: bool,
    ) -> (ClientBody, bool) {
        let upgrade = self.status == 101;
        let body = match self.framing {
            Framing::Empty => ClientBody::Empty,
            Framing::Length(n) => ClientBody::Length(n),
            Framing::Chunked if client_http10 => ClientBody::UntilClose,
            Framing::Chunked => ClientBody::Chunked,
            Framing::UntilClose if client_http10 => ClientBody::UntilClose,
            Framing::UntilClose => ClientBody::Rechunk,
        };
        let keep_alive = keep_alive && !upgrade && body != ClientBody::UntilClose;

        out.extend_from_slice(b"HTTP/1.1 ");
        let _ = write!(Buf(out), "{} ", self.status);
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in self.headers {
            let name = h.name.as_bytes();
            let pass = match classify_response(name) {
                RespHeader::Pass => !self.conn.lists(name),
                // 101 keeps Connection/Upgrade: they are the point of the response.
                RespHeader::Connection | RespHeader::Upgrade => upgrade,
                _ => false,
            };
            if pass {
                header(out, name, h.value);
            }
        }
        header(out, b"X-Request-Id", request_id);
        if let Some(cookie) = set_cookie {
            header(out, b"Set-Cookie", cookie);
        }
        match body {
            ClientBody::Length(n) => {
                let _ = write!(Buf(out), "Content-Length: {n}\r\n");
            }
            // Other codings (`gzip, chunked`) are the client's to undo: their headers go on
            // as they came, and a body the balancer chunks itself gets `chunked` added.
            ClientBody::Chunked | ClientBody::Rechunk => {
                let te = |h: &&httparse::Header<'_>| {
                    classify_response(h.name.as_bytes()) == RespHeader::TransferEncoding
                };
                let mut codings = self.headers.iter().filter(te);
                let just_chunked = match (codings.next(), codings.next()) {
                    (Some(h), None) => only_chunked(h.value),
                    _ => false,
                };
                if body == ClientBody::Chunked && just_chunked {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                } else {
                    for h in self.headers.iter().filter(te) {
                        header(out, b"Transfer-Encoding", h.value);
                    }
                    if body == ClientBody::Rechunk {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    }
                }
            }
            // A bodiless response (HEAD, 304) still tells the length the body would have.
            ClientBody::Empty => {
                let may_have_length = !(self.status < 200 || self.status == 204);
                if let (Some(n), true) = (self.length_header, may_have_length) {
                    let _ = write!(Buf(out), "Content-Length: {n}\r\n");
                }
            }
            ClientBody::UntilClose => {}
        }
        if !upgrade {
            connection_header(out, client_http10, keep_alive);
        }
        out.extend_from_slice(b"\r\n");
        (body, keep_alive)
    }
}

/// `Connection: close` when the connection ends after this response; `keep-alive` where an
/// HTTP/1.0 client needs telling that it does not.
fn connection_header(out: &mut Vec<u8>, client_http10: bool, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// A complete response the balancer writes itself (errors): plain text, never cached.
pub(crate) fn write_own_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    body: &str,
    request_id: &[u8],
    client_http10: bool,
    keep_alive: bool,
) {
    let _ = write!(
        Buf(out),
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Cache-Control: no-store\r\nContent-Length: {}\r\n",
        body.len()
    );
    header(out, b"X-Request-Id", request_id);
    connection_header(out, client_http10, keep_alive);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}
