//! The balancer's HTTP/1.1 parsing (`wire`), wrapped in owned types for the fuzz targets.
//! Compiled only with the `fuzzing` feature; the balancer itself never calls it.

use crate::wire;
pub use crate::wire::WireError;

/// Most header lines a head may carry.
pub const MAX_HEADERS: usize = wire::MAX_HEADERS;
/// Largest head the balancer reads.
pub const MAX_HEAD: usize = wire::MAX_HEAD;

/// How a message body is delimited (mirrors `wire::Framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl From<wire::Framing> for Framing {
    fn from(f: wire::Framing) -> Self {
        match f {
            wire::Framing::Empty => Framing::Empty,
            wire::Framing::Length(n) => Framing::Length(n),
            wire::Framing::Chunked => Framing::Chunked,
            wire::Framing::UntilClose => Framing::UntilClose,
        }
    }
}

/// How a response body goes on to the client (mirrors `wire::ClientBody`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBody {
    Empty,
    Length(u64),
    Chunked,
    Rechunk,
    UntilClose,
}

impl From<wire::ClientBody> for ClientBody {
    fn from(b: wire::ClientBody) -> Self {
        match b {
            wire::ClientBody::Empty => ClientBody::Empty,
            wire::ClientBody::Length(n) => ClientBody::Length(n),
            wire::ClientBody::Chunked => ClientBody::Chunked,
            wire::ClientBody::Rechunk => ClientBody::Rechunk,
            wire::ClientBody::UntilClose => ClientBody::UntilClose,
        }
    }
}

/// Where a head ends, as the balancer's reader finds it.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    wire::head_end(buf, from)
}

/// A request head as the balancer understood it, and the head it would send upstream.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub host: Option<String>,
    pub http10: bool,
    pub framing: Framing,
    pub keep_alive: bool,
    pub upgrade: bool,
    pub expect_continue: bool,
    /// `write_upstream`'s output (client 127.0.0.1, request id `fuzz-id`).
    pub upstream_head: Vec<u8>,
}

/// `RequestHead::parse` on a complete head (`buf` is exactly it).
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    let Some(head) = wire::RequestHead::parse(buf, &mut headers, "SPROUT_STICKY")? else {
        return Ok(None);
    };
    Ok(Some(request(&head)))
}

/// A head the balancer sent upstream, read back as an instance would: the same parser with
/// an instance's limit of [`MAX_HEADERS`] lines (a client's head may have fewer, leaving
/// room for the lines the balancer adds).
pub fn parse_upstream_request(buf: &[u8]) -> Result<Option<Request>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    let Some(head) = wire::RequestHead::parse_within(buf, &mut headers, "SPROUT_STICKY")? else {
        return Ok(None);
    };
    Ok(Some(request(&head)))
}

fn request(head: &wire::RequestHead<'_>) -> Request {
    let mut upstream_head = Vec::new();
    head.write_upstream(&mut upstream_head, "127.0.0.1", false, b"fuzz-id", &[]);
    Request {
        method: head.method.to_string(),
        path: head.path.to_string(),
        authority: head.authority.map(str::to_string),
        host: head.host.map(str::to_string),
        http10: head.http10,
        framing: head.framing.into(),
        keep_alive: head.keep_alive,
        upgrade: head.upgrade.is_some(),
        expect_continue: head.expect_continue,
        upstream_head,
    }
}

/// A response head as the balancer understood it, and what it would send the client.
#[derive(Debug, Clone)]
pub struct Response {
    /// Bytes of the head httparse consumed.
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    pub reusable: bool,
    pub interim: bool,
    /// `write_client`'s output and body mode for an HTTP/1.1 client.
    pub client_head: Vec<u8>,
    pub client_body: ClientBody,
    /// The same for an HTTP/1.0 client.
    pub client_head_10: Vec<u8>,
    pub client_body_10: ClientBody,
}

/// The head the balancer wrote to a client, read back with a client's limit of
/// [`MAX_HEADERS`] lines (an instance may send fewer, leaving room for the balancer's own):
/// its length, status and framing.
pub fn parse_client_response(
    buf: &[u8],
    to_head_request: bool,
) -> Result<Option<(usize, u16, Framing)>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    Ok(
        wire::ResponseHead::parse_within(buf, &mut headers, to_head_request)?
            .map(|(len, head)| (len, head.status, head.framing.into())),
    )
}

/// `ResponseHead::parse` on a complete head, then `write_client` for both client versions.
pub fn parse_response(buf: &[u8], to_head_request: bool) -> Result<Option<Response>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    let Some((len, head)) = wire::ResponseHead::parse(buf, &mut headers, to_head_request)? else {
        return Ok(None);
    };
    let mut client_head = Vec::new();
    let (client_body, _) = head.write_client(&mut client_head, b"fuzz-id", None, false, true);
    let mut client_head_10 = Vec::new();
    let (client_body_10, _) = head.write_client(&mut client_head_10, b"fuzz-id", None, true, true);
    Ok(Some(Response {
        len,
        status: head.status,
        framing: head.framing.into(),
        reusable: head.reusable,
        interim: head.is_interim(),
        client_head,
        client_body: client_body.into(),
        client_head_10,
        client_body_10: client_body_10.into(),
    }))
}

/// The balancer's chunked-body follower.
#[derive(Debug, Clone, Default)]
pub struct Chunked(wire::Chunked);

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, WireError> {
        self.0.advance(buf)
    }

    pub fn decode(&mut self, buf: &[u8], data: &mut Vec<u8>) -> Result<usize, WireError> {
        self.0.decode(buf, data)
    }
}

/// Appends one re-framed chunk, as the balancer does for a close-delimited body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    wire::write_chunk(out, data)
}
