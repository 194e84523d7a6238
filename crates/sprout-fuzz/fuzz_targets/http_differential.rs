//! Differential: the same client bytes go to the balancer's parser (as its connection loop
//! reads them: heads, then bodies by their framing, request after request) and to hyper's
//! HTTP/1.1 server. Fails when
//! - the balancer takes a request (head and whole body) that hyper refuses, or reads a
//!   different body from it;
//! - hyper takes a request the balancer refuses, unless the balancer is stricter on purpose
//!   (`allowed`, each with its reason);
//! - what the balancer forwards upstream for a request is not, for hyper, exactly that one
//!   request with the same method and body (request smuggling would show here).
//! The same is done for responses: what the balancer relays from an instance against what
//! hyper's client reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_fuzz::hyper_ref;
use sprout_proxy::fuzzing::{head_end, parse_request, parse_response, Chunked, Framing, WireError};

#[derive(Debug)]
struct Forwarded {
    method: String,
    /// The request target sent upstream.
    path: String,
    body: Vec<u8>,
    /// The head written upstream and the body bytes as they go on (chunks unchanged).
    upstream: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum End {
    /// Every byte was read, ending between requests.
    Clean,
    /// The connection closes after the last request (`Connection: close`, an upgrade).
    Closed,
    /// Input ended inside a head or a body.
    Incomplete,
    /// The balancer refused the next request (head or body), which starts at this offset.
    Refused(WireError, usize),
}

fn balancer_requests(raw: &[u8]) -> (Vec<Forwarded>, End) {
    let mut rest = raw;
    let mut out = Vec::new();
    loop {
        if rest.is_empty() {
            return (out, End::Clean);
        }
        let Some(end) = head_end(rest, 0) else {
            return (out, End::Incomplete);
        };
        let req = match parse_request(&rest[..end]) {
            // Blank lines before a request line are skipped.
            Ok(None) => {
                rest = &rest[end..];
                continue;
            }
            Ok(Some(req)) => req,
            Err(e) => return (out, End::Refused(e, raw.len() - rest.len())),
        };
        let start = raw.len() - rest.len();
        rest = &rest[end..];
        let mut upstream = req.upstream_head.clone();
        let body = match req.framing {
            Framing::Empty | Framing::UntilClose => Vec::new(),
            Framing::Length(n) => {
                let Some(body) = usize::try_from(n).ok().and_then(|n| rest.get(..n)) else {
                    return (out, End::Incomplete);
                };
                rest = &rest[body.len()..];
                upstream.extend_from_slice(body);
                body.to_vec()
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                let mut data = Vec::new();
                let n = match c.decode(rest, &mut data) {
                    Ok(n) => n,
                    Err(e) => return (out, End::Refused(e, start)),
                };
                if !c.is_done() {
                    return (out, End::Incomplete);
                }
                upstream.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                data
            }
        };
        let path = if req.path.starts_with('/') || req.path == "*" {
            req.path.clone()
        } else {
            format!("/{}", req.path)
        };
        out.push(Forwarded {
            method: req.method.clone(),
            path,
            body,
            upstream,
        });
        if req.upgrade || !req.keep_alive {
            return (out, End::Closed);
        }
    }
}

/// Why the balancer may refuse a request hyper takes: it is stricter on purpose there.
fn allowed(e: WireError, head: &[u8]) -> Option<&'static str> {
    match e {
        // The balancer does not tunnel CONNECT; hyper hands it to the service.
        WireError::Connect => Some("CONNECT is refused"),
        // Only `chunked` alone is forwarded; other codings, repeated Transfer-Encoding
        // headers and chunked from HTTP/1.0 are refused rather than guessed at (RFC 9112
        // §6.1 lets a server refuse them; hyper decodes a final chunked).
        WireError::UnsupportedCoding => Some("Transfer-Encoding other than one `chunked`"),
        // Both framings at once is how requests are smuggled: refused (RFC 9112 §6.3 ¶3),
        // where hyper drops the length and reads chunks.
        WireError::LengthAndChunked => Some("Content-Length with Transfer-Encoding"),
        // Routing depends on Host: two of them are refused (RFC 9112 §3.2), as is one that
        // is not UTF-8.
        WireError::DuplicateHost | WireError::InvalidHost => Some("ambiguous or non-UTF-8 Host"),
        // Content-Length must be plain digits, repeated headers equal; hyper also takes a
        // comma-separated list of equal values.
        WireError::BadLength => Some("Content-Length list"),
        // An absolute-form target must be http(s) with an authority: the balancer routes on it.
        WireError::Malformed => absolute_form(head),
        // Chunk extensions with bytes outside VCHAR/WSP, or trailer lines that are not
        // `name: value`, are refused; hyper skips extensions and drops trailers unread.
        WireError::BadChunk => Some("strict chunk extensions and trailers"),
        _ => None,
    }
}

/// A refused absolute-form target (any request target not starting with `/` or `*`).
fn absolute_form(head: &[u8]) -> Option<&'static str> {
    let line = head
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty())?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    (!target.starts_with(b"/") && target != b"*").then_some("non-http(s) absolute-form target")
}

/// Allowed difference, the one place the balancer is the more lenient: a request target
/// with bytes RFC 3986 leaves out but browsers and curl send unencoded (`{`, `|`, `` ` ``,
/// `^`, ...) is passed on as it came, as nginx does; the `http` crate under hyper refuses it
/// (400). The target does not take part in framing, so the next request starts at the same
/// byte for both; hyper's answer is the instance's own 400. Comparison stops there, since
/// hyper closes the connection after it.
fn target_hyper_refuses(f: &Forwarded) -> bool {
    f.path != "*" && hyper::Uri::try_from(f.path.as_str()).is_err()
}

fn requests(raw: &[u8]) {
    let (mut ours, mut end) = balancer_requests(raw);
    if let Some(i) = ours.iter().position(target_hyper_refuses) {
        ours.truncate(i);
        end = End::Closed;
    }
    let (theirs, _) = hyper_ref::server(raw);
    for (i, f) in ours.iter().enumerate() {
        let Some(h) = theirs.get(i) else {
            panic!("the balancer took request {i} ({f:?}), hyper refused it: {theirs:?}");
        };
        assert_eq!(h.method, f.method, "request {i}");
        assert_eq!(
            h.body.as_deref(),
            Some(&f.body[..]),
            "request {i}: hyper read another body"
        );
    }
    if let End::Refused(e, start) = end {
        let i = ours.len();
        if let Some(h) = theirs.get(i).filter(|h| h.body.is_some()) {
            if allowed(e, &raw[start..]).is_none() {
                panic!("hyper took request {i} ({h:?}), the balancer refused it: {e:?}");
            }
        }
    }

    // What goes upstream must be exactly one request to a hyper-based instance.
    for (i, f) in ours.iter().enumerate() {
        let (seen, failed) = hyper_ref::server(&f.upstream);
        let up = String::from_utf8_lossy(&f.upstream);
        assert_eq!(seen.len(), 1, "request {i} forwarded as {seen:?}: {up:?}");
        assert!(
            !failed,
            "request {i}: hyper failed on what was forwarded: {up:?}"
        );
        assert_eq!(seen[0].method, f.method, "{up:?}");
        assert_eq!(seen[0].body.as_deref(), Some(&f.body[..]), "{up:?}");
    }
}

/// The balancer's reading of a response to GET (or HEAD): status and body, or `None` if it
/// refuses it or the input ends first. Interim (1xx) responses are skipped as it does.
fn balancer_response(raw: &[u8], head_request: bool) -> Option<(u16, Vec<u8>)> {
    let mut rest = raw;
    loop {
        let end = head_end(rest, 0)?;
        let resp = parse_response(&rest[..end], head_request).ok()??;
        rest = &rest[end..];
        if resp.interim {
            continue;
        }
        if resp.status == 101 {
            return None;
        }
        let body = match resp.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) => rest.get(..usize::try_from(n).ok()?)?.to_vec(),
            Framing::UntilClose => rest.to_vec(),
            Framing::Chunked => {
                let mut c = Chunked::default();
                let mut data = Vec::new();
                c.decode(rest, &mut data).ok()?;
                if !c.is_done() {
                    return None;
                }
                data
            }
        };
        return Some((resp.status, body));
    }
}

fn responses(raw: &[u8], head_request: bool) {
    let Some((status, body)) = balancer_response(raw, head_request) else {
        return;
    };
    let theirs = hyper_ref::client(raw, head_request);
    let Some(h) = theirs else {
        panic!("the balancer relayed a {status} response hyper's client refuses");
    };
    assert_eq!(h.status, status);
    assert_eq!(
        h.body.as_deref(),
        Some(&body[..]),
        "hyper's client read another response body"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, raw)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => responses(raw, false),
        1 => responses(raw, true),
        _ => requests(raw),
    }
});
