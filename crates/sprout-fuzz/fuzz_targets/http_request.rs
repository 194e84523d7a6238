//! The balancer's request head parser. The first byte picks where the head is split in two
//! reads (the reader searches incrementally); the rest is what a client sent. Checks:
//! - the head ends where httparse says it does (no byte of it ignored, none of the body
//!   taken for head);
//! - the head written upstream is one well-formed head that the balancer's own parser (with
//!   an instance's limit of header lines) and httparse read back with the same method,
//!   target, Host and body framing (a value smuggling a line break or a second framing
//!   header would show here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_proxy::fuzzing::{
    head_end, parse_request, parse_upstream_request, Framing, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, raw)) = data.split_first() else {
        return;
    };
    let Some(end) = head_end(raw, 0) else {
        return;
    };
    // Incremental search: an earlier read saw only a prefix, then the rest arrived.
    let split = usize::from(split).min(end);
    if split < end {
        assert_eq!(head_end(&raw[..split], 0).filter(|&e| e <= split), None);
        assert_eq!(head_end(raw, split), Some(end), "split at {split}");
    }
    let head = &raw[..end];
    let Ok(Some(req)) = parse_request(head) else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let status = httparse::Request::new(&mut headers).parse(head);
    assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == end),
        "head_end says {end}, httparse {status:?}"
    );

    let up = &req.upstream_head;
    assert_eq!(
        head_end(up, 0),
        Some(up.len()),
        "upstream head: {:?}",
        String::from_utf8_lossy(up)
    );
    // Read back as an instance would (its limit is MAX_HEADERS lines; a client's is lower).
    let again = match parse_upstream_request(up) {
        Ok(Some(again)) => again,
        other => panic!(
            "upstream head refused ({other:?}): {:?}",
            String::from_utf8_lossy(up)
        ),
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut check = httparse::Request::new(&mut headers);
    assert_eq!(
        check.parse(up).ok(),
        Some(httparse::Status::Complete(up.len()))
    );
    assert_eq!(again.method, req.method);
    let path = if req.path.starts_with('/') || req.path == "*" {
        req.path.clone()
    } else {
        format!("/{}", req.path)
    };
    assert_eq!(again.path, path);
    assert_eq!(again.authority, None);
    assert_eq!(
        again.host.as_deref(),
        req.authority.as_deref().or(req.host.as_deref())
    );
    assert!(!again.http10 && again.keep_alive);
    assert_eq!(again.upgrade, req.upgrade);
    assert!(
        !again.expect_continue,
        "100-continue is answered by the balancer"
    );
    let framing = match req.framing {
        Framing::UntilClose => Framing::Empty,
        f => f,
    };
    assert_eq!(again.framing, framing);
});
