//! The balancer's response head parser, on what an instance sent. The first byte's low bit
//! says whether the request was HEAD. Checks: the head ends where httparse says; the head
//! written to the client (HTTP/1.1 and HTTP/1.0) is one well-formed head whose framing the
//! balancer's own parser reads back as the body mode it chose.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_proxy::fuzzing::{head_end, parse_client_response, parse_response, ClientBody, Framing};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let Some(end) = head_end(raw, 0) else {
        return;
    };
    let Ok(Some(resp)) = parse_response(&raw[..end], head_request) else {
        return;
    };
    assert_eq!(
        resp.len, end,
        "head_end and httparse disagree on where the head ends"
    );
    for (client, body) in [
        (&resp.client_head, resp.client_body),
        (&resp.client_head_10, resp.client_body_10),
    ] {
        assert_eq!(head_end(client, 0), Some(client.len()));
        let (again_len, again_status, again_framing) =
            match parse_client_response(client, head_request) {
                Ok(Some(again)) => again,
                other => panic!(
                    "client head refused ({other:?}): {:?}",
                    String::from_utf8_lossy(client)
                ),
            };
        assert_eq!(again_len, client.len());
        assert_eq!(again_status, resp.status);
        let want = match body {
            ClientBody::Empty => Framing::Empty,
            ClientBody::Length(n) => Framing::Length(n),
            ClientBody::Chunked | ClientBody::Rechunk => Framing::Chunked,
            ClientBody::UntilClose => Framing::UntilClose,
        };
        // A 101's head is passed on as it came; its "body" is the tunnel.
        if resp.status != 101 {
            assert_eq!(
                again_framing,
                want,
                "client head: {:?}",
                String::from_utf8_lossy(client)
            );
        }
    }
});
