//! Request heads: which headers the balancer keeps, how the body is framed, and the head
//! it sends upstream.

use super::{content_length, header, is, Buf, ConnectionTokens, Framing, WireError};
use super::{MAX_CLIENT_HEADERS, MAX_HEADERS, MAX_REQUEST_ID_LEN};
use std::fmt::Write as _;

/// What the balancer does with a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqHeader {
    Pass,
    /// Hop-by-hop, or one the balancer writes itself.
    Drop,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    RequestId,
    ForwardedFor,
    Cookie,
}

/// Matches on length first: most headers are rejected by one integer comparison.
fn classify_request(name: &[u8]) -> ReqHeader {
    use ReqHeader::*;
    match name.len() {
        2 if is(name, "te") => Drop,
        4 if is(name, "host") => Host,
        6 if is(name, "cookie") => Cookie,
        6 if is(name, "expect") => Expect,
        // Client-supplied claims about the client; only X-Forwarded-For is kept (appended to).
        9 if is(name, "forwarded") => Drop,
        9 if is(name, "x-real-ip") => Drop,
        7 if is(name, "upgrade") => Upgrade,
        7 if is(name, "trailer") => Drop,
        10 if is(name, "connection") => Connection,
        10 if is(name, "keep-alive") => Drop,
        12 if is(name, "x-request-id") => RequestId,
        14 if is(name, "content-length") => ContentLength,
        15 if is(name, "x-forwarded-for") => ForwardedFor,
        16 if is(name, "proxy-connection") => Drop,
        16 if is(name, "x-forwarded-host") => Drop,
        17 if is(name, "transfer-encoding") => TransferEncoding,
        17 if is(name, "x-forwarded-proto") => Drop,
        18 if is(name, "proxy-authenticate") => Drop,
        19 if is(name, "proxy-authorization") => Drop,
        _ => Pass,
    }
}

/// A request's `Transfer-Encoding` the balancer forwards: `chunked` and nothing else, not
/// even an empty list element (`chunked,` has an empty final coding, which an instance may
/// take for "not chunked" and frame the body otherwise: RFC 9112 §6.3 makes that a 400).
fn request_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

fn is_100_continue(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
}

/// The value of the stickiness cookie among a `Cookie` header's pairs.
pub(crate) fn find_cookie<'b>(value: &'b [u8], name: &str) -> Option<&'b [u8]> {
    value.split(|&b| b == b';').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        (k == name.as_bytes()).then(|| {
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub(crate) struct RequestHead<'b> {
    pub(crate) method: &'b str,
    /// Path and query to send upstream (origin form, or `*`).
    pub(crate) path: &'b str,
    /// The authority of an absolute-form target (`GET http://a.b/ HTTP/1.1`).
    pub(crate) authority: Option<&'b str>,
    pub(crate) http10: bool,
    pub(crate) host: Option<&'b str>,
    pub(crate) framing: Framing,
    /// Whether the client wants the connection kept open after this exchange.
    pub(crate) keep_alive: bool,
    /// The protocol asked for (`Connection: upgrade` + `Upgrade: x`), e.g. WebSocket.
    pub(crate) upgrade: Option<&'b [u8]>,
    pub(crate) expect_continue: bool,
    pub(crate) request_id: Option<&'b [u8]>,
    /// The value of the cookie named when parsing (the stickiness cookie), if sent.
    pub(crate) cookie: Option<&'b [u8]>,
    headers: &'b [httparse::Header<'b>],
    conn: ConnectionTokens<'b>,
    has_forwarded_for: bool,
}

impl<'b> RequestHead<'b> {
    /// Parses a complete head (`buf` holds exactly it; see [`head_end`]). `None` if httparse
    /// still finds it partial (e.g. only blank lines so far).
    pub(crate) fn parse(
        buf: &'b [u8],
        headers: &'b mut [httparse::Header<'b>; MAX_HEADERS],
        cookie_name: &str,
    ) -> Result<Option<RequestHead<'b>>, WireError> {
        Self::parse_within(buf, &mut headers[..MAX_CLIENT_HEADERS], cookie_name)
    }

    /// [`RequestHead::parse`] with at most `headers.len()` header lines (the fuzz targets
    /// read the head sent upstream back with an instance's limit, [`MAX_HEADERS`]).
    pub(crate) fn parse_within(
        buf: &'b [u8],
        headers: &'b mut [httparse::Header<'b>],
        cookie_name: &str,
    ) -> Result<Option<RequestHead<'b>>, WireError> {
        let mut req = httparse::Request::new(headers);
        if req.parse(buf)?.is_partial() {
            return Ok(None);
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err(WireError::Malformed);
        };
        if method == "CONNECT" {
            return Err(WireError::Connect);
        }
        let headers: &'b [httparse::Header<'b>] = req.headers;
        let http10 = version == 0;

        let mut host = None;
        let mut length = None;
        let mut chunked = false;
        let mut coded = false;
        let mut conn = ConnectionTokens::default();
        let mut upgrade = None;
        let mut expect_continue = false;
        let mut request_id = None;
        let mut cookie = None;
        let mut has_forwarded_for = false;
        for h in headers {
            match classify_request(h.name.as_bytes()) {
                ReqHeader::Pass | ReqHeader::Drop => {}
                ReqHeader::Host => {
                    if host.is_some() {
                        return Err(WireError::DuplicateHost);
                    }
                    host = Some(std::str::from_utf8(h.value).map_err(|_| WireError::InvalidHost)?);
                }
                ReqHeader::ContentLength => length = Some(content_length(h.value, length)?),
                ReqHeader::TransferEncoding => {
                    if coded || !request_chunked(h.value) {
                        return Err(WireError::UnsupportedCoding);
                    }
                    coded = true;
                    chunked = true;
                }
                ReqHeader::Connection => conn.add(h.value),
                ReqHeader::Upgrade => upgrade = Some(h.value),
                ReqHeader::Expect => expect_continue |= is_100_continue(h.value),
                ReqHeader::RequestId => {
                    if !h.value.is_empty() && h.value.len() <= MAX_REQUEST_ID_LEN {
                        request_id = Some(h.value);
                    }
                }
                ReqHeader::ForwardedFor => has_forwarded_for = true,
                ReqHeader::Cookie => {
                    if cookie.is_none() {
                        cookie = find_cookie(h.value, cookie_name);
                    }
                }
            }
        }
        let framing = match (length, chunked) {
            (Some(_), true) => return Err(WireError::LengthAndChunked),
            // RFC 9112 §6.1: chunked from an HTTP/1.0 client is faulty framing.
            (None, true) if http10 => return Err(WireError::UnsupportedCoding),
            (None, true) => Framing::Chunked,
            (None, false) => Framing::Empty,
            // Kept even when 0: some servers want a length on every POST or PUT.
            (Some(n), false) => Framing::Length(n),
        };

        let (authority, path) = split_target(target)?;
        let keep_alive = if http10 {
            conn.keep_alive && !conn.close
        } else {
            !conn.close
        };
        Ok(Some(RequestHead {
            method,
            path,
            authority,
            http10,
            host,
            framing,
            keep_alive,
            upgrade: upgrade.filter(|_| conn.upgrade && !http10),
            expect_continue,
            request_id,
            cookie,
            headers,
            conn,
            has_forwarded_for,
        }))
    }

    /// Whether a failed first attempt may be sent again (RFC 9110 §9.2.2 idempotent, and
    /// nothing of a body to replay).
    pub(crate) fn retryable(&self) -> bool {
        matches!(self.method, "GET" | "HEAD" | "OPTIONS") && !self.has_body()
    }

    /// Idempotent (RFC 9110 §9.2.2): sending it twice does what sending it once does.
    pub(crate) fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }

    /// Whether body bytes follow the head.
    pub(crate) fn has_body(&self) -> bool {
        matches!(self.framing, Framing::Length(1..) | Framing::Chunked)
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The Host to send upstream: an absolute-form target's authority, which replaces the
    /// Host header (RFC 9112 §3.2.2) as it does for routing, else the client's Host.
    pub(crate) fn forwarded_host(&self) -> Option<&'b str> {
        self.authority.or(self.host)
    }

    /// Writes the head sent to an instance: the client's headers less the hop-by-hop ones,
    /// the client's Host, the `X-Forwarded-*` trio, the request id and the body's framing.
    /// Always keep-alive HTTP/1.1 upstream, even for HTTP/1.0 clients.
    /// A client's `X-Forwarded-For` is kept (and appended to) only when `trust_forwarded`
    /// (the peer is a trusted proxy); otherwise the peer's address replaces it. Cookies
    /// named in `private_cookies` are left out of `Cookie`.
    pub(crate) fn write_upstream(
        &self,
        out: &mut Vec<u8>,
        client_ip: &str,
        trust_forwarded: bool,
        request_id: &[u8],
        private_cookies: &[String],
    ) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        if !self.path.starts_with('/') && self.path != "*" {
            out.push(b'/');
        }
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for h in self.headers {
            let name = h.name.as_bytes();
            let pass = match classify_request(name) {
                ReqHeader::Pass => true,
                ReqHeader::Cookie => {
                    if !self.conn.lists(name) {
                        write_cookie(out, name, h.value, private_cookies);
                    }
                    false
                }
                // Answered by the balancer itself (see `expect_continue`).
                ReqHeader::Expect => !is_100_continue(h.value),
                _ => false,
            };
            if pass && !self.conn.lists(name) {
                header(out, name, h.value);
            }
        }
        if let Some(host) = self.forwarded_host() {
            header(out, b"Host", host.as_bytes());
            header(out, b"X-Forwarded-Host", host.as_bytes());
        }
        out.extend_from_slice(b"X-Forwarded-For: ");
        if self.has_forwarded_for && trust_forwarded {
            // Earlier hops, merged into one header, then this one.
            for v in self.headers.iter().filter(|h| {
                classify_request(h.name.as_bytes()) == ReqHeader::ForwardedFor
                    && !h.value.trim_ascii().is_empty()
            }) {
                out.extend_from_slice(v.value.trim_ascii());
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(client_ip.as_bytes());
        out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
        header(out, b"X-Request-Id", request_id);
        if let Some(proto) = self.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
            header(out, b"Upgrade", proto);
        }
        match self.framing {
            Framing::Length(n) => {
                let _ = write!(Buf(out), "Content-Length: {n}\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::Empty | Framing::UntilClose => {}
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a `Cookie` header without the pairs named in `private` (cookie names are
/// case-sensitive), or nothing if none is left. Copies the header as it is when no private
/// name occurs in it, which is the common case and costs one substring search per name.
fn write_cookie(out: &mut Vec<u8>, name: &[u8], value: &[u8], private: &[String]) {
    if !private
        .iter()
        .any(|p| memchr::memmem::find(value, p.as_bytes()).is_some())
    {
        header(out, name, value);
        return;
    }
    let start = out.len();
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let mut kept = false;
    for pair in value.split(|&b| b == b';').map(<[u8]>::trim_ascii) {
        let key = pair
            .split(|&b| b == b'=')
            .next()
            .unwrap_or(pair)
            .trim_ascii();
        if pair.is_empty() || private.iter().any(|p| p.as_bytes() == key) {
            continue;
        }
        if kept {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
        kept = true;
    }
    if kept {
        out.extend_from_slice(b"\r\n");
    } else {
        out.truncate(start);
    }
}

/// The host name of a `host[:port]` authority (`[v6]:port` → `[v6]`), or `None` when it is
/// not one: a name of letters, digits, `-`, `.` and `_`, or a bracketed IPv6 literal, then
/// an optional port of at most 5 digits. Anything else (`app.localhost:@evil`, a second
/// colon, spaces) is refused rather than routed on a prefix the client may not mean.
pub(crate) fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, port) = authority.split_at(end + 1);
        let inner = &host.as_bytes()[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (host, port)
    } else {
        let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return None;
        }
        (host, port)
    };
    match port.as_bytes() {
        [] => Some(host),
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {
            Some(host)
        }
        _ => None,
    }
}

/// `http://a.b:8000/x?y` → (`a.b:8000`, `/x?y`); origin form passes through.
fn split_target(target: &str) -> Result<(Option<&str>, &str), WireError> {
    if target.starts_with('/') || target == "*" {
        return Ok((None, target));
    }
    let lower = |n: usize| target.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(7).as_deref() == Some("http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &target[8..]
    } else {
        return Err(WireError::Malformed);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // `host[:port]` as RFC 3986 has it; fuzzing against hyper found `a::000` taken (and
    // routed on `a`).
    if authority.parse::<http::uri::Authority>().is_err() {
        return Err(WireError::Malformed);
    }
    // Drop any userinfo; it is never forwarded.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(WireError::Malformed);
    }
    let path = &rest[end..];
    Ok((Some(authority), if path.is_empty() { "/" } else { path }))
}
