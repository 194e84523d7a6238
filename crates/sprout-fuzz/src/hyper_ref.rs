//! hyper's HTTP/1.1 server and client, fed from memory: what a hyper-based instance (or
//! client) makes of the same bytes the balancer parses.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads from a fixed buffer (then EOF); writes go nowhere. A client's connection reads
/// nothing before it has written its request (a response before any request is an error).
struct Mem {
    input: Bytes,
    wait_for_write: bool,
    reader: Option<std::task::Waker>,
}

impl Mem {
    fn new(input: &[u8], wait_for_write: bool) -> Self {
        Self {
            input: Bytes::copy_from_slice(input),
            wait_for_write,
            reader: None,
        }
    }
}

impl AsyncRead for Mem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.wait_for_write {
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.input.len());
        let chunk = self.input.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wait_for_write = false;
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

/// One request as hyper's server handed it to the service.
#[derive(Debug, Clone)]
pub struct HyperRequest {
    pub method: String,
    pub uri: String,
    pub http10: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, or `None` if reading it failed (malformed or cut short).
    pub body: Option<Vec<u8>>,
}

/// What hyper's server makes of `input` sent by a client on one connection: the requests
/// it served, in order, and whether the connection ended in an error.
pub fn server(input: &[u8]) -> (Vec<HyperRequest>, bool) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
            log.borrow_mut().push(HyperRequest {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                http10: parts.version == hyper::Version::HTTP_10,
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect(),
                body,
            });
            Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
        }
    });
    let io = hyper_util::rt::TokioIo::new(Mem::new(input, false));
    let failed = RT.with(|rt| {
        rt.block_on(async {
            hyper::server::conn::http1::Builder::new()
                // Bytes after a request are the next request's, not a half-closed socket.
                .half_close(true)
                .serve_connection(io, service)
                .await
                .is_err()
        })
    });
    let seen = seen.borrow().clone();
    (seen, failed)
}

/// One response as hyper's client read it.
#[derive(Debug, Clone)]
pub struct HyperResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, or `None` if reading it failed.
    pub body: Option<Vec<u8>>,
}

/// What hyper's client makes of `input` as the answer to a GET (or HEAD) request; `None` if
/// it refused the response head.
pub fn client(input: &[u8], head_request: bool) -> Option<HyperResponse> {
    let io = hyper_util::rt::TokioIo::new(Mem::new(input, true));
    RT.with(|rt| {
        rt.block_on(async {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
            let request = hyper::Request::builder()
                .method(if head_request { "HEAD" } else { "GET" })
                .uri("/")
                .header("host", "app.localhost")
                .body(Full::new(Bytes::new()))
                .ok()?;
            let exchange = async {
                let response = sender.send_request(request).await.ok()?;
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .ok()
                    .map(|b| b.to_bytes().to_vec());
                Some(HyperResponse {
                    status,
                    headers,
                    body,
                })
            };
            let (response, _) = tokio::join!(exchange, conn);
            response
        })
    })
}
