//! HTTP/1.1 on the wire, as the balancer needs it: parsing request and response heads,
//! deciding how each body is delimited (RFC 9112 §6), following chunked bodies, and writing
//! the heads it sends on. Pure (no I/O), so every rule is unit-tested byte for byte.
//!
//! The balancer forwards bodies as they are (a chunked body stays chunked) and rewrites only
//! the heads, which is why it parses rather than re-encodes: one read, one write each way.

mod chunked;
mod request;
mod response;

pub(crate) use chunked::{write_chunk, Chunked};
pub(crate) use request::{host_of, RequestHead};
pub(crate) use response::{write_own_response, ClientBody, ResponseHead};

/// Most header lines a head may carry; more gets 431 (request) or 502 (response).
pub(crate) const MAX_HEADERS: usize = 100;
/// Most header lines a client's request head may carry: the head sent on adds up to eight
/// (Host, `X-Forwarded-*`, the request id, the upgrade pair, the framing), and must itself
/// stay within [`MAX_HEADERS`] (the limit of common app servers too, e.g. gunicorn's 100).
const MAX_CLIENT_HEADERS: usize = MAX_HEADERS - 8;
/// Most header lines an instance's response head may carry: the head sent to the client adds
/// up to four (the request id, the sticky cookie, the framing, `Connection`), and must itself
/// stay within [`MAX_HEADERS`], the limit of common clients too (e.g. hyper's 100).
const MAX_INSTANCE_HEADERS: usize = MAX_HEADERS - 4;
/// Largest head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Longest client-supplied request id passed on; longer ones are replaced.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 200;

/// Why a head or a chunked body could not be taken as HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed head")]
    Malformed,
    #[error("head too large")]
    TooLarge,
    #[error("HTTP version not supported")]
    Version,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("invalid Content-Length")]
    BadLength,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("unsupported Transfer-Encoding")]
    UnsupportedCoding,
    #[error("CONNECT is not supported")]
    Connect,
    #[error("malformed chunked body")]
    BadChunk,
}

impl From<httparse::Error> for WireError {
    fn from(e: httparse::Error) -> WireError {
        match e {
            httparse::Error::TooManyHeaders => WireError::TooLarge,
            httparse::Error::Version => WireError::Version,
            _ => WireError::Malformed,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the connection closes.
    UntilClose,
}

/// Where a head ends (just past its blank line), searching from `from`; `None` if it has not
/// all arrived. Accepts bare-LF line ends as httparse does. Searching incrementally keeps a
/// head dribbled in byte by byte linear.
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    for nl in memchr::memchr_iter(b'\n', &buf[start.min(buf.len())..]) {
        let at = start + nl;
        match buf.get(at + 1..) {
            Some([b'\n', ..]) => return Some(at + 2),
            Some([b'\r', b'\n', ..]) => return Some(at + 3),
            _ => {}
        }
    }
    None
}

fn is(name: &[u8], lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower.as_bytes())
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// What the `Connection` headers of a message say.
#[derive(Debug, Default)]
struct ConnectionTokens<'b> {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// Other listed names: hop-by-hop headers of this message, dropped when forwarding.
    /// Allocates only when a message lists one, which is rare.
    listed: Vec<&'b [u8]>,
}

impl<'b> ConnectionTokens<'b> {
    fn add(&mut self, value: &'b [u8]) {
        for t in tokens(value) {
            if is(t, "close") {
                self.close = true;
            } else if is(t, "keep-alive") {
                self.keep_alive = true;
            } else if is(t, "upgrade") {
                self.upgrade = true;
            } else {
                self.listed.push(t);
            }
        }
    }

    fn lists(&self, name: &[u8]) -> bool {
        self.listed.iter().any(|l| l.eq_ignore_ascii_case(name))
    }
}

/// Parses a Content-Length value: digits only. Repeated headers must agree.
fn content_length(value: &[u8], seen: Option<u64>) -> Result<u64, WireError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(WireError::BadLength);
    }
    let n = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    match seen {
        Some(prev) if prev != n => Err(WireError::BadLength),
        _ => Ok(n),
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `fmt::Write` into a byte buffer, for numbers.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_req(raw: &str, f: impl FnOnce(Result<Option<RequestHead<'_>>, WireError>)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        f(RequestHead::parse(
            raw.as_bytes(),
            &mut headers,
            "SPROUT_STICKY",
        ));
    }

    fn upstream(raw: &str) -> String {
        let mut out = Vec::new();
        parse_req(raw, |r| {
            r.unwrap()
                .unwrap()
                .write_upstream(&mut out, "127.0.0.1", true, b"id-1", &[])
        });
        String::from_utf8(out).unwrap()
    }

    fn upstream_with(raw: &str, trusted: bool, private: &[String]) -> String {
        let mut out = Vec::new();
        parse_req(raw, |r| {
            r.unwrap()
                .unwrap()
                .write_upstream(&mut out, "10.1.1.1", trusted, b"i", private)
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn client_forwarded_for_replaced_unless_trusted() {
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
        assert!(upstream_with(raw, false, &[]).contains("X-Forwarded-For: 10.1.1.1\r\n"));
        assert!(upstream_with(raw, true, &[]).contains("X-Forwarded-For: 6.6.6.6, 10.1.1.1\r\n"));
    }

    #[test]
    fn private_cookies_stripped() {
        let private = [
            "sprout_session".to_string(),
            "__Host-sprout_session".to_string(),
        ];
        let cookie = |value: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: {value}\r\n\r\n");
            let out = upstream_with(&raw, false, &private);
            out.lines()
                .find_map(|l| l.strip_prefix("Cookie: ").map(str::to_string))
        };
        assert_eq!(cookie("a=1; b=2").as_deref(), Some("a=1; b=2"));
        assert_eq!(
            cookie("a=1; sprout_session=jwt; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            cookie("__Host-sprout_session=jwt;theme=dark").as_deref(),
            Some("theme=dark")
        );
        assert_eq!(cookie("sprout_session=jwt"), None);
        // Names that merely contain the private one pass.
        assert_eq!(
            cookie("my_sprout_session=1; sprout_session_x=2").as_deref(),
            Some("my_sprout_session=1; sprout_session_x=2")
        );
    }

    #[test]
    fn host_syntax() {
        assert_eq!(host_of("app.localhost"), Some("app.localhost"));
        assert_eq!(host_of("App.localhost:8000"), Some("App.localhost"));
        assert_eq!(host_of("[::1]:80"), Some("[::1]"));
        assert_eq!(host_of("127.0.0.1:"), Some("127.0.0.1"));
        for bad in [
            "app.localhost:@evil",
            "app.localhost:80:80",
            "app.localhost:123456",
            "app localhost",
            "user@app.localhost",
            "[::1",
            "[]",
            "[::1]x",
            "",
            ":80",
            "app.localhost/x",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_head_end_incrementally() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(head_end(buf, 0), Some(27));
        assert_eq!(head_end(&buf[..26], 0), None);
        assert_eq!(head_end(buf, 25), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
    }

    #[test]
    fn rewrites_the_request_head() {
        let out = upstream(
            "GET /x?y=1 HTTP/1.1\r\nHost: App.localhost:1234\r\nConnection: keep-alive, x-secret\r\n\
             X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\
             X-Request-Id: theirs\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /x?y=1 HTTP/1.1\r\nAccept: */*\r\nHost: App.localhost:1234\r\n\
             X-Forwarded-Host: App.localhost:1234\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1\r\n\
             X-Forwarded-Proto: http\r\nX-Request-Id: id-1\r\n\r\n"
        );
    }

    #[test]
    fn an_empty_post_keeps_its_length() {
        parse_req(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            |r| {
                let r = r.unwrap().unwrap();
                assert_eq!(r.framing, Framing::Length(0));
                assert!(!r.has_body());
                let mut out = Vec::new();
                r.write_upstream(&mut out, "127.0.0.1", false, b"id", &[]);
                assert!(String::from_utf8(out)
                    .unwrap()
                    .contains("\r\nContent-Length: 0\r\n"));
            },
        );
    }

    #[test]
    fn request_framing() {
        parse_req(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            |r| assert_eq!(r.unwrap().unwrap().framing, Framing::Length(5)),
        );
        parse_req(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
            |r| assert_eq!(r.unwrap().unwrap().framing, Framing::Chunked),
        );
        parse_req(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            |r| assert_eq!(r.unwrap().unwrap().framing, Framing::Length(5)),
        );
        for (bad, err) in [
            (
                "Content-Length: 5\r\nContent-Length: 6",
                WireError::BadLength,
            ),
            ("Content-Length: 5, 5", WireError::BadLength),
            ("Content-Length: -1", WireError::BadLength),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                WireError::LengthAndChunked,
            ),
            (
                "Transfer-Encoding: gzip, chunked",
                WireError::UnsupportedCoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                WireError::UnsupportedCoding,
            ),
            ("Host: b", WireError::DuplicateHost),
        ] {
            parse_req(
                &format!("POST / HTTP/1.1\r\nHost: a\r\n{bad}\r\n\r\n"),
                |r| assert_eq!(r.unwrap_err(), err, "{bad}"),
            );
        }
        parse_req("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
            assert_eq!(r.unwrap_err(), WireError::Connect)
        });
    }

    #[test]
    fn keep_alive_by_version() {
        for (raw, want) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ] {
            parse_req(raw, |r| {
                assert_eq!(r.unwrap().unwrap().keep_alive, want, "{raw}")
            });
        }
    }

    #[test]
    fn a_request_is_chunked_only_by_chunked_alone() {
        for te in ["chunked", "Chunked", " chunked "] {
            parse_req(
                &format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n"),
                |r| assert_eq!(r.unwrap().unwrap().framing, Framing::Chunked, "{te}"),
            );
        }
        // Found by fuzzing against hyper: an empty list element leaves the final coding
        // empty, so an instance could read the body with another framing.
        for te in ["chunked,", ", chunked", "chunked, ,", "gzip, chunked"] {
            parse_req(
                &format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n"),
                |r| assert_eq!(r.err(), Some(WireError::UnsupportedCoding), "{te}"),
            );
        }
    }

    #[test]
    fn a_client_head_leaves_room_for_the_headers_the_balancer_adds() {
        let head = |n: usize| {
            let mut raw = String::from("POST / HTTP/1.1\r\nHost: app.localhost\r\n");
            for i in 1..n {
                raw.push_str(&format!("X-H{i}: v\r\n"));
            }
            raw + "Transfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"
        };
        // The most a client may send: what goes upstream must parse within MAX_HEADERS.
        let most = head(MAX_CLIENT_HEADERS - 3);
        let up = upstream(&most);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = httparse::Request::new(&mut headers).parse(up.as_bytes());
        assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == up.len()));
        parse_req(&head(MAX_CLIENT_HEADERS - 2), |r| {
            assert_eq!(r.err(), Some(WireError::TooLarge))
        });
    }

    #[test]
    fn a_response_head_leaves_room_for_the_headers_the_balancer_adds() {
        let head = |n: usize| {
            let mut raw = String::from("HTTP/1.1 200 OK\r\n");
            for i in 1..n {
                raw.push_str(&format!("X-H{i}: v\r\n"));
            }
            raw + "Transfer-Encoding: gzip\r\n\r\n"
        };
        // The most an instance may send, read to close and so rechunked: what goes to the
        // client (with a cookie, `chunked` and `Connection: close` added) parses within
        // MAX_HEADERS.
        let (out, body, ..) = response(&head(MAX_INSTANCE_HEADERS), false, false, false);
        assert_eq!(body, ClientBody::Rechunk);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = httparse::Response::new(&mut headers).parse(out.as_bytes());
        assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == out.len()));
        let raw = head(MAX_INSTANCE_HEADERS + 1);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            ResponseHead::parse(raw.as_bytes(), &mut headers, false).err(),
            Some(WireError::TooLarge)
        );
    }

    #[test]
    fn absolute_form_target() {
        parse_req("GET http://app.localhost:8000?q=1 HTTP/1.1\r\n\r\n", |r| {
            let r = r.unwrap().unwrap();
            assert_eq!(r.authority, Some("app.localhost:8000"));
            assert_eq!(r.path, "?q=1");
            assert_eq!(r.forwarded_host(), Some("app.localhost:8000"));
        });
        let out = upstream("GET HTTP://user@app.localhost?q=1 HTTP/1.1\r\n\r\n");
        assert!(
            out.starts_with("GET /?q=1 HTTP/1.1\r\nHost: app.localhost\r\n"),
            "{out}"
        );
    }

    #[test]
    fn an_absolute_form_authority_must_be_host_and_port() {
        for target in [
            "http://a::000/",
            "http://a::1/",
            "http://[::1/",
            "http://a]b/",
        ] {
            parse_req(&format!("GET {target} HTTP/1.1\r\n\r\n"), |r| {
                assert_eq!(r.unwrap_err(), WireError::Malformed, "{target}")
            });
        }
        parse_req("GET http://[::1]:8000/x HTTP/1.1\r\n\r\n", |r| {
            assert_eq!(r.unwrap().unwrap().authority, Some("[::1]:8000"))
        });
    }

    #[test]
    fn upgrade_and_cookie_and_request_id() {
        parse_req(
            "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
             Cookie: a=1; SPROUT_STICKY=\"web-3\" ; b=2\r\nX-Request-Id: abc\r\n\r\n",
            |r| {
                let r = r.unwrap().unwrap();
                assert_eq!(r.upgrade, Some(&b"websocket"[..]));
                assert_eq!(r.cookie, Some(&b"web-3"[..]));
                assert_eq!(r.request_id, Some(&b"abc"[..]));
                let mut out = Vec::new();
                r.write_upstream(&mut out, "::1", false, b"abc", &[]);
                let out = String::from_utf8(out).unwrap();
                assert!(out.contains("\r\nCookie: a=1; SPROUT_STICKY=\"web-3\" ; b=2\r\n"));
                assert!(out.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"), "{out}");
            },
        );
        // Upgrade without `Connection: upgrade` is not an upgrade.
        parse_req(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            |r| assert_eq!(r.unwrap().unwrap().upgrade, None),
        );
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        parse_req(
            &format!("GET / HTTP/1.1\r\nX-Request-Id: {long}\r\n\r\n"),
            |r| assert_eq!(r.unwrap().unwrap().request_id, None),
        );
    }

    fn response(
        raw: &str,
        head_req: bool,
        http10: bool,
        keep: bool,
    ) -> (String, ClientBody, bool, Framing, bool) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (n, r) = ResponseHead::parse(raw.as_bytes(), &mut headers, head_req)
            .unwrap()
            .unwrap();
        assert_eq!(n, raw.len());
        let mut out = Vec::new();
        let (body, alive) = r.write_client(&mut out, b"id", Some(b"S=1"), http10, keep);
        (
            String::from_utf8(out).unwrap(),
            body,
            alive,
            r.framing,
            r.reusable,
        )
    }

    #[test]
    fn rewrites_the_response_head() {
        let (out, body, alive, _, reusable) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-a\r\nX-A: 1\r\n\
             Keep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nX-B: 2\r\n\r\n",
            false,
            false,
            true,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nX-B: 2\r\nX-Request-Id: id\r\nSet-Cookie: S=1\r\nContent-Length: 2\r\n\r\n"
        );
        assert_eq!((body, alive, reusable), (ClientBody::Length(2), true, true));
    }

    #[test]
    fn response_framing() {
        let r = |raw: &str, head: bool, http10: bool| {
            let (_, body, alive, framing, reusable) = response(raw, head, http10, true);
            (framing, body, alive, reusable)
        };
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                false
            ),
            (Framing::Chunked, ClientBody::Chunked, true, true)
        );
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                true
            ),
            (Framing::Chunked, ClientBody::UntilClose, false, true)
        );
        assert_eq!(
            r("HTTP/1.0 200 OK\r\n\r\n", false, false),
            (Framing::UntilClose, ClientBody::Rechunk, true, false)
        );
        assert_eq!(
            r("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", false, false),
            (Framing::Length(3), ClientBody::Length(3), true, false)
        );
        assert_eq!(
            r(
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
                false,
                false
            ),
            (Framing::Length(3), ClientBody::Length(3), true, true)
        );
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                false
            ),
            (Framing::Chunked, ClientBody::Chunked, true, false)
        );
        let (out, body, ..) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            false,
            true,
        );
        assert_eq!(body, ClientBody::Chunked);
        assert!(
            out.contains("\r\nTransfer-Encoding: gzip, chunked\r\n"),
            "{out}"
        );
        let (out, body, ..) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
            false,
            true,
        );
        assert_eq!(body, ClientBody::Rechunk);
        assert!(
            out.contains("\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            "{out}"
        );
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                false,
                false
            ),
            (Framing::UntilClose, ClientBody::Rechunk, true, false)
        );
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                false
            ),
            (Framing::UntilClose, ClientBody::Rechunk, true, false)
        );
        assert_eq!(
            r(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                false
            ),
            (Framing::Empty, ClientBody::Empty, true, true)
        );
        let (out, ..) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            false,
            true,
        );
        assert!(out.contains("Content-Length: 9\r\n"), "{out}");
        let (out, body, alive, ..) = response(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            false,
            false,
            true,
        );
        assert!(
            out.contains("Connection: upgrade\r\nUpgrade: echo\r\n"),
            "{out}"
        );
        assert_eq!((body, alive), (ClientBody::Empty, false));
        let (out, ..) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            true,
            true,
        );
        assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
    }

    #[test]
    fn a_status_below_100_is_refused() {
        // Fuzzing found `HTTP/1.0 065 Ok` relayed as `HTTP/1.1 65 Ok`, which no client reads.
        for raw in ["HTTP/1.0 065 Ok\r\n\r\n", "HTTP/1.1 000 x\r\n\r\n"] {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            assert_eq!(
                ResponseHead::parse(raw.as_bytes(), &mut headers, false).unwrap_err(),
                WireError::Malformed,
                "{raw}"
            );
        }
    }

    #[test]
    fn transfer_encoding_from_an_http10_instance_is_refused() {
        // Fuzzing (against hyper's client) found these relayed, the connection kept for reuse.
        for raw in [
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            assert_eq!(
                ResponseHead::parse(raw.as_bytes(), &mut headers, false).unwrap_err(),
                WireError::UnsupportedCoding,
                "{raw}"
            );
        }
    }

    #[test]
    fn a_transfer_encoding_with_non_ascii_bytes_is_refused() {
        // Found by fuzzing against hyper's client, which reads this body to close.
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \xe4\xe4 gzip, chunked\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            ResponseHead::parse(raw, &mut headers, false).unwrap_err(),
            WireError::UnsupportedCoding
        );
    }

    fn follow(chunks: &[&[u8]]) -> Result<(usize, bool), WireError> {
        let mut c = Chunked::default();
        let mut total = 0;
        for part in chunks {
            total += c.advance(part)?;
            if c.is_done() {
                break;
            }
        }
        Ok((total, c.is_done()))
    }

    #[test]
    fn follows_chunked_bodies() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let len = body.len() - 4;
        assert_eq!(follow(&[body]), Ok((len, true)));
        // Byte by byte gives the same answer.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(follow(&bytes), Ok((len, true)));
        assert_eq!(follow(&[b"A\r\n0123456789\r\n0\r\n\r\n"]), Ok((20, true)));
        assert_eq!(follow(&[b"5\r\nhel"]), Ok((6, false)));
        let mut data = Vec::new();
        let mut c = Chunked::default();
        assert_eq!(c.decode(body, &mut data), Ok(len));
        assert_eq!(data, b"hello!");
        let spaced = b"5 \t;a=\"b c\"\r\nhello\r\n0\r\n\r\n";
        assert_eq!(follow(&[spaced]), Ok((spaced.len(), true)));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"5 x\r\n",
            b"5 5\r\n",
            b"5;a\x01\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\n: empty-name\r\n\r\n",
            // Found by fuzzing: trailer names that are not tokens, which hyper refuses.
            b"0\r\n5;e: x\r\n\r\n",
            b"0\r\nX-T : x\r\n\r\n",
        ] {
            assert_eq!(follow(&[bad]), Err(WireError::BadChunk), "{bad:?}");
        }
    }
}
