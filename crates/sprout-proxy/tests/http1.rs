//! HTTP/1.1 through the balancer, byte for byte: bodies both ways in every framing, HTTP/1.0
//! clients, pipelining, `Expect: 100-continue`, bad requests, and pooled connections that
//! the instance closed.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{fast_health, wait_healthy, TestProxy};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sprout_proxy::{BackendSpec, RouteSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.localhost";

fn spec(addr: SocketAddr) -> RouteSpec {
    RouteSpec {
        env: "web".into(),
        hosts: vec![HOST.into()],
        health: fast_health(),
        backends: vec![BackendSpec {
            id: "b".into(),
            addr,
            version: "v1".into(),
        }],
    }
}

/// A hyper backend: `/echo` answers with the request body (and its length in `x-len`),
/// `/stream` with a body of unknown length (chunked on the wire), `/big/<n>` with n bytes.
async fn spawn_hyper_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let resp: Response<http_body_util::Either<Full<Bytes>, _>> = if path
                        == "/stream"
                    {
                        let parts = ["one,", "two,", "three"].map(|s| {
                            Ok::<_, Infallible>(Frame::data(Bytes::from_static(s.as_bytes())))
                        });
                        Response::new(http_body_util::Either::Right(StreamBody::new(
                            futures_util::stream::iter(parts),
                        )))
                    } else if let Some(n) = path.strip_prefix("/big/") {
                        let n: usize = n.parse().unwrap();
                        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                        Response::new(http_body_util::Either::Left(Full::new(Bytes::from(body))))
                    } else {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut r =
                            Response::new(http_body_util::Either::Left(Full::new(body.clone())));
                        r.headers_mut()
                            .insert("x-len", body.len().to_string().parse().unwrap());
                        r
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A raw backend that reads one request head per connection and answers with `response`,
/// then closes the connection after `linger` (an HTTP/1.0-style server, or one whose
/// keep-alive times out).
async fn spawn_raw_backend(response: &'static str, linger: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let health = head.starts_with(b"GET /health");
                let answer = if health {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    response
                };
                let _ = s.write_all(answer.as_bytes()).await;
                if !health {
                    tokio::time::sleep(linger).await;
                }
            });
        }
    });
    addr
}

async fn proxy_to(addr: SocketAddr) -> TestProxy {
    proxy_with(sprout_proxy::BalancerConfig::default(), addr).await
}

/// A balancer with `config` in front of the backend at `addr` (id `b`), once it is healthy.
async fn proxy_with(config: sprout_proxy::BalancerConfig, addr: SocketAddr) -> TestProxy {
    let proxy = TestProxy::start_with(config).await;
    proxy.balancer.set_route(spec(addr));
    wait_healthy(&proxy.balancer, "web", &["b"]).await;
    proxy
}

/// One parsed response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Reads one response (Content-Length, chunked, or until close) from `s`, keeping any
/// bytes after it in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Raw {
    async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response timed out")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        n > 0
    }
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(more(s, buf).await, "closed before a response head");
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    buf.drain(..end);
    let status: u16 = head[9..12].parse().unwrap();
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    if status == 100 || status == 304 || status == 204 {
        return raw;
    }
    if let Some(len) = raw.header("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            assert!(more(s, buf).await, "closed mid-body");
        }
        raw.body = buf.drain(..len).collect();
    } else if raw.header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(more(s, buf).await);
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                assert!(more(s, buf).await);
            }
            raw.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        while more(s, buf).await {}
        raw.body = std::mem::take(buf);
    }
    raw
}

async fn connect(proxy: &TestProxy) -> TcpStream {
    TcpStream::connect(proxy.addr).await.unwrap()
}

#[tokio::test]
async fn request_bodies_arrive_whole_in_both_framings() {
    let proxy = proxy_to(spawn_hyper_backend().await).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();

    // 3 MiB with Content-Length, written in pieces; then more on the same connection.
    let body: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for piece in body.chunks(100_000) {
        s.write_all(piece).await.unwrap();
    }
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("x-len").as_deref(), Some("3145728"));
    assert!(r.body == body, "echoed body differs");

    // Chunked, with an extension and a trailer, in the same write as the head.
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world"[..]));

    // Expect: 100-continue: the balancer says continue, then the body goes through.
    s.write_all(
        format!(
            "PUT /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let interim = read_response(&mut s, &mut buf).await;
    assert_eq!(interim.status, 100);
    s.write_all(b"data").await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"data"[..]));
    assert!(buf.is_empty());
}

#[tokio::test]
async fn response_bodies_in_every_framing() {
    let proxy = proxy_to(spawn_hyper_backend().await).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();

    // Chunked passes through as chunked.
    s.write_all(format!("GET /stream HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.body, b"one,two,three");

    // A large body with a length, and HEAD (length, no body) on the same connection.
    s.write_all(format!("GET /big/5000000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.body.len(), 5_000_000);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    s.write_all(format!("HEAD /big/10 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head_only = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        head_only.extend_from_slice(&chunk[..n]);
        if let Some(i) = head_only.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert_eq!(end, head_only.len(), "HEAD response carried a body");
    let head_only = String::from_utf8_lossy(&head_only).to_lowercase();
    assert!(head_only.contains("content-length: 10\r\n"), "{head_only}");

    // An HTTP/1.0 client gets the chunked body's data raw, delimited by close.
    let mut s10 = connect(&proxy).await;
    s10.write_all(format!("GET /stream HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf10 = Vec::new();
    let r = read_response(&mut s10, &mut buf10).await;
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, b"one,two,three");
}

#[tokio::test]
async fn close_delimited_responses_are_rechunked_and_the_client_keeps_its_connection() {
    let addr = spawn_raw_backend(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        Duration::ZERO,
    )
    .await;
    let proxy = proxy_to(addr).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();
    for _ in 0..3 {
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s, &mut buf).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        assert_eq!(r.body, b"until the end");
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = TestProxy::start().await;
    proxy
        .balancer
        .set_route(common::route("web", &[HOST], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let mut s = connect(&proxy).await;
    s.write_all(
        format!(
            "GET /status/201 HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: {HOST}\r\n\r\n\
             GET /status/203 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for want in [201, 202, 203] {
        let r = read_response(&mut s, &mut buf).await;
        assert_eq!(r.status, want);
        assert_eq!(r.body, b"a");
    }
    // The last asked to close: the balancer closes.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = TestProxy::start().await;
    proxy
        .balancer
        .set_route(common::route("web", &[HOST], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let big = "x".repeat(70 * 1024);
    let cases = [
        ("garbage\r\n\r\n".to_owned(), 400),
        (
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n"),
            431,
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
            ),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501,
        ),
        (format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"), 400),
        (
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: other\r\n\r\n"),
            400,
        ),
        ("GET / HTTP/1.1\r\n\r\n".to_owned(), 400),
    ];
    for (request, status) in cases {
        let mut s = connect(&proxy).await;
        // The 70 KiB head may be refused before it is all written.
        let _ = s.write_all(request.as_bytes()).await;
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf).await;
        assert_eq!(r.status, status, "{}", &request[..request.len().min(80)]);
        assert_eq!(r.header("x-request-id").map(|v| v.len()), Some(36));
    }
    assert_eq!(a.hits(), 0, "a refused request reached the instance");
}

#[tokio::test]
async fn pooled_connections_the_instance_closed_are_not_used() {
    // Keep-alive HTTP/1.1 answers, but the server drops each connection 50 ms later, as a
    // server with a short keep-alive timeout does.
    let addr = spawn_raw_backend(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        Duration::from_millis(50),
    )
    .await;
    let proxy = proxy_to(addr).await;
    for method in ["GET", "POST", "GET", "DELETE"] {
        let mut s = connect(&proxy).await;
        s.write_all(
            format!("{method} / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]), "{method}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!((m.count, m.failed), (4, 0));
}

#[tokio::test]
async fn an_http10_client_is_kept_alive_only_when_it_asks() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = TestProxy::start().await;
    proxy
        .balancer
        .set_route(common::route("web", &[HOST], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(
            format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let r = read_response(&mut s, &mut buf).await;
        assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
        assert_eq!(r.body, b"a");
    }
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
    assert_eq!(StatusCode::from_u16(r.status).unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_silent_instance_gets_the_client_a_504_after_the_io_timeout() {
    // Reads the request, then says nothing and keeps the connection open.
    let addr = spawn_raw_backend("", Duration::from_secs(30)).await;
    let proxy = TestProxy::start_with(sprout_proxy::BalancerConfig {
        io_timeout: Duration::from_millis(300),
        ..sprout_proxy::BalancerConfig::default()
    })
    .await;
    proxy.balancer.set_route(spec(addr));
    wait_healthy(&proxy.balancer, "web", &["b"]).await;
    let mut s = connect(&proxy).await;
    let started = std::time::Instant::now();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n\r\nhi").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        String::from_utf8_lossy(&r.body).contains("did not answer within 300ms"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!((m.count, m.failed), (1, 1));
}

/// For raw test backends: reads one request (head, and a body of Content-Length) off `s`,
/// keeping what follows in `buf`; returns the head in lower case, `None` once closed.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < end + len {
        more(s, buf).await?;
    }
    buf.drain(..end + len);
    Some(head)
}

/// A backend that answers the first request on each connection and, on the second, reads it
/// and closes without a word (a crash mid-request). Counts the requests it read.
async fn spawn_second_request_dropper(
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for nth in 0.. {
                    let Some(head) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    if head.starts_with("get /health") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if nth == 1 {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_request_that_may_have_been_processed_is_resent_only_if_idempotent() {
    use std::sync::atomic::Ordering;
    async fn send(s: &mut TcpStream, buf: &mut Vec<u8>, request: String) -> Raw {
        s.write_all(request.as_bytes()).await.unwrap();
        read_response(s, buf).await
    }
    let (addr, seen) = spawn_second_request_dropper().await;
    let proxy = proxy_to(addr).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();
    let get = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    // A POST on a reused connection that the instance drops after reading: not sent again.
    let r = send(&mut s, &mut buf, get.clone()).await;
    assert_eq!(r.status, 200);
    let r = send(
        &mut s,
        &mut buf,
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n\r\nhi"),
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the POST was sent twice");

    // A GET in the same spot is sent again on a new connection and answered.
    let r = send(&mut s, &mut buf, get.clone()).await;
    assert_eq!(r.status, 200);
    let r = send(&mut s, &mut buf, get.clone()).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_early_answer_reaches_the_client_while_its_body_is_still_coming() {
    // Answers 413 as soon as it has the head, without reading the body, and hangs up.
    let addr = spawn_raw_backend(
        "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
        Duration::ZERO,
    )
    .await;
    let proxy = proxy_to(addr).await;
    let s = connect(&proxy).await;
    let (mut reader, mut writer) = s.into_split();
    let body_len = 20 * 1024 * 1024;
    let upload = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {body_len}\r\n\r\n");
        writer.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        // The balancer stops reading once it has answered: writes then fail or stall.
        for _ in 0..body_len / chunk.len() {
            match tokio::time::timeout(Duration::from_secs(2), writer.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("too big!") {
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut chunk))
            .await
            .expect("no answer while the body was coming")
            .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    upload.abort();
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!((m.count, m.status_4xx, m.failed), (1, 1, 0));
}

#[tokio::test]
async fn a_stray_body_after_a_bodiless_answer_is_not_taken_for_the_next_answer() {
    // A broken instance: answers HEAD with a length and then, a moment later, sends the body
    // anyway, on a connection it keeps open. The pool probes a connection idle for more than
    // a millisecond before reusing it, and drops this one.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut s, &mut buf).await {
                    if head.starts_with("head ") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                            .await;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let _ = s.write_all(b"stray").await;
                    } else {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
                            .await;
                    }
                }
            });
        }
    });
    let proxy = proxy_to(addr).await;
    let mut s = connect(&proxy).await;
    let mut buf = Vec::new();
    s.write_all(format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"good"[..]),
        "{}",
        r.head
    );
}

// ---------------------------------------------------------------------------------------
// Guards against hostile clients (issue 12)

#[tokio::test]
async fn a_host_that_is_not_host_and_port_is_refused_and_never_reaches_the_instance() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = proxy_to(a.addr).await;
    for host in [
        "app.localhost:@evil",
        "app.localhost:80:80",
        "app.localhost:8000x",
        "app.localhost:123456",
        "app.localhost\tx",
        "evil@app.localhost",
        "[::1",
    ] {
        let mut s = connect(&proxy).await;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s, &mut Vec::new()).await;
        assert_eq!(r.status, 400, "Host: {host}: {}", r.head);
    }
    assert_eq!(a.hits(), 0, "a bad Host reached the instance");
    // The same name with a real port is routed.
    let r = proxy.get(&format!("{HOST}:8000"), "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "a"));
}

#[tokio::test]
async fn a_clients_forwarded_for_is_replaced_unless_it_is_a_trusted_proxy() {
    let a = common::TestBackend::spawn("a").await;
    let forged = [("x-forwarded-for", "6.6.6.6")];
    let untrusted = proxy_to(a.addr).await;
    let r = untrusted.get_with(HOST, "/", &forged).await;
    assert_eq!(r.headers["echo-x-forwarded-for"], "127.0.0.1");

    let trusted = proxy_with(
        sprout_proxy::BalancerConfig {
            trusted_proxies: vec![sprout_proxy::parse_trusted_proxy("127.0.0.0/8").unwrap()],
            ..sprout_proxy::BalancerConfig::default()
        },
        a.addr,
    )
    .await;
    let r = trusted.get_with(HOST, "/", &forged).await;
    assert_eq!(r.headers["echo-x-forwarded-for"], "6.6.6.6, 127.0.0.1");
}

#[tokio::test]
async fn the_dashboards_session_cookie_is_not_forwarded_and_other_cookies_are() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = proxy_with(
        sprout_proxy::BalancerConfig {
            private_cookies: vec!["sprout_session".into(), "__Host-sprout_session".into()],
            ..sprout_proxy::BalancerConfig::default()
        },
        a.addr,
    )
    .await;
    let sent = "theme=dark; sprout_session=eyJ.jwt.sig; __Host-sprout_session=eyJ2; cart=3";
    let r = proxy.get_with(HOST, "/", &[("cookie", sent)]).await;
    assert_eq!(r.headers["echo-cookie"], "theme=dark; cart=3");
    let r = proxy
        .get_with(HOST, "/", &[("cookie", "sprout_session=eyJ.jwt.sig")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key("echo-cookie"), "{:?}", r.headers);
    let r = proxy.get_with(HOST, "/", &[("cookie", "theme=dark")]).await;
    assert_eq!(r.headers["echo-cookie"], "theme=dark");
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_minimum_rate_is_cut() {
    let backend = spawn_hyper_backend().await;
    let proxy = proxy_with(
        sprout_proxy::BalancerConfig {
            min_body_rate: 1000,
            body_grace: Duration::from_millis(500),
            ..sprout_proxy::BalancerConfig::default()
        },
        backend,
    )
    .await;

    // At a good pace (2000 bytes in 4 pieces, well above 1000 bytes/s): answered whole.
    let mut s = connect(&proxy).await;
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2000\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        s.write_all(&[b'x'; 500]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = read_response(&mut s, &mut Vec::new()).await;
    assert_eq!((r.status, r.body.len()), (200, 2000));

    // A byte every 100 ms (10 bytes/s) of an announced 100 kB: the balancer closes the
    // connection (on today's 60 s per-read timeout alone it would wait for ever).
    let mut s = connect(&proxy).await;
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        while wr.write_all(b"x").await.is_ok() && sent < 100_000 {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let mut rest = Vec::new();
    // A safety net only: the cut comes after about the 0.5 s grace.
    let closed = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the trickling client was not cut");
    assert!(
        !String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"),
        "the trickled body was answered: {}",
        String::from_utf8_lossy(&rest)
    );
    let sent = trickle.await.unwrap();
    assert!(sent < 1000, "the client kept sending: {sent} bytes");
}

#[tokio::test]
async fn connections_from_one_address_are_capped() {
    let a = common::TestBackend::spawn("a").await;
    let proxy = proxy_with(
        sprout_proxy::BalancerConfig {
            max_connections_per_client: 3,
            ..sprout_proxy::BalancerConfig::default()
        },
        a.addr,
    )
    .await;
    let get = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&proxy).await;
        s.write_all(get.as_bytes()).await.unwrap();
        let r = read_response(&mut s, &mut Vec::new()).await;
        assert_eq!(r.status, 200);
        open.push(s);
    }
    // The fourth, while three are open: 429, closed, never forwarded.
    let hits = a.hits();
    let mut s = connect(&proxy).await;
    let r = read_response(&mut s, &mut Vec::new()).await;
    assert_eq!(r.status, 429, "{}", r.head);
    assert_eq!(s.read(&mut [0u8; 16]).await.unwrap_or(0), 0, "closed after");
    assert_eq!(a.hits(), hits);
    // One closes: a new connection is served again (once the balancer has seen it close).
    drop(open.pop());
    let served = common::wait_until(Duration::from_secs(5), || async {
        let mut s = connect(&proxy).await;
        if s.write_all(get.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = vec![0u8; 12];
        s.read_exact(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.1 200")
    })
    .await;
    assert!(
        served,
        "a slot freed by a closed connection is not given back"
    );
}
