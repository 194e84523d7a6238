mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{route, wait_healthy, wait_until, TestBackend, TestProxy};
use http::StatusCode;
use sprout_proxy::HealthCheck;

#[tokio::test]
async fn round_robin_over_two_backends() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;

    let mut seen = Vec::new();
    for _ in 0..10 {
        // Port and case in Host must not matter.
        let r = proxy.get("App.Localhost:8000", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        seen.push(r.body);
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {seen:?}");
    }
    assert_eq!(a.hits(), 5);
    assert_eq!(b.hits(), 5);
}

#[tokio::test]
async fn unknown_host_is_404() {
    let proxy = TestProxy::start().await;
    let r = proxy.get("nope.localhost:8000", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body.contains("no environment answers at nope.localhost"),
        "{}",
        r.body
    );
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn no_healthy_backend_is_502() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    a.set_healthy(false);
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    // Give the checker time to run; the backend must stay pending.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!proxy.balancer.is_healthy("web", "a"));
    let st = &proxy.balancer.backends("web")[0];
    assert_eq!(st.last_status, Some(503));
    assert!(st.last_error.is_some());

    let r = proxy.get("app.localhost", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(
        r.body.contains("no healthy instance for environment web"),
        "{}",
        r.body
    );
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn failing_backend_leaves_and_rejoins_rotation() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;

    a.set_healthy(false);
    let bal = proxy.balancer.clone();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            !bal.is_healthy("web", "a")
        })
        .await,
        "a was not taken out of rotation"
    );
    let before = a.hits();
    for _ in 0..10 {
        let r = proxy.get("app.localhost", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "b");
    }
    assert_eq!(a.hits(), before);

    a.set_healthy(true);
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let status = proxy.balancer.backends("web");
    assert!(status
        .iter()
        .all(|s| s.healthy && s.last_status == Some(200)));
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(proxy.get("app.localhost", "/").await.body);
    }
    assert!(bodies.contains(&"a".to_owned()) && bodies.contains(&"b".to_owned()));
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;

    let r = proxy
        .get_with(
            "app.localhost:1234",
            "/x?y=1",
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "s"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let h = &r.headers;
    assert_eq!(h["echo-x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["echo-x-forwarded-proto"], "http");
    assert_eq!(h["echo-x-forwarded-host"], "app.localhost:1234");
    assert_eq!(h["echo-host"], "app.localhost:1234");
    assert!(!h.contains_key("echo-x-secret"), "hop-by-hop header leaked");
    let id = h["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(h["echo-x-request-id"], id);

    let r = proxy
        .get_with("app.localhost", "/", &[("x-request-id", "my-id-1")])
        .await;
    assert_eq!(r.headers["x-request-id"], "my-id-1");
    assert_eq!(r.headers["echo-x-request-id"], "my-id-1");
}

#[tokio::test]
async fn route_updates_keep_health_and_drop_no_request() {
    let proxy = Arc::new(TestProxy::start().await);
    let (a, b, c) = (
        TestBackend::spawn("a").await,
        TestBackend::spawn("b").await,
        TestBackend::spawn("c").await,
    );
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;

    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (proxy, failures, done) = (proxy.clone(), failures.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
            while tokio::time::Instant::now() < deadline {
                let r = proxy.get("app.localhost", "/").await;
                if r.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for i in 0..30 {
        let spec = if i % 2 == 0 {
            route("web", &["app.localhost", "www.localhost"], &[&c, &b, &a])
        } else {
            route("web", &["app.localhost"], &[&a, &b])
        };
        proxy.balancer.set_route(spec);
        // Unchanged backends keep their health across the update.
        assert!(proxy.balancer.is_healthy("web", "a"));
        assert!(proxy.balancer.is_healthy("web", "b"));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(done.load(Ordering::SeqCst) > 50);

    // A new backend starts pending and joins after passing its checks.
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b, &c]));
    wait_healthy(&proxy.balancer, "web", &["a", "b", "c"]).await;
}

#[tokio::test]
async fn new_backend_starts_pending() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    let mut spec = route("web", &["app.localhost"], &[&a]);
    spec.health = HealthCheck {
        interval: Duration::from_secs(10),
        ..common::fast_health()
    };
    proxy.balancer.set_route(spec);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One pass (the immediate first check) is below the threshold of 2.
    let st = proxy.balancer.backends("web");
    assert_eq!(st.len(), 1);
    assert!(!st[0].healthy);
    assert_eq!(st[0].last_status, Some(200));
    assert_eq!(
        proxy.get("app.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn remove_route_gives_404() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);

    proxy.balancer.remove_route("web");
    let r = proxy.get("app.localhost", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(proxy.balancer.backends("web").is_empty());
    assert!(!proxy.balancer.is_healthy("web", "a"));

    // Health checks stopped: no new probe connections arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conns = a.connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.connections(), conns);
}

#[tokio::test]
async fn route_without_hosts_only_checks_health() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy.balancer.set_route(route("worker", &[], &[&a]));
    wait_healthy(&proxy.balancer, "worker", &["a"]).await;
    assert_eq!(
        proxy.get("worker.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn backend_connections_are_reused() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let before = a.connections();
    for _ in 0..200 {
        assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    }
    let used = a.connections() - before;
    // One pooled proxy connection (plus at most a reconnect of the health checker's).
    assert!(used <= 2, "200 requests opened {used} backend connections");
}

#[tokio::test]
async fn unreachable_backend_is_502() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    let mut spec = route("web", &["app.localhost"], &[&a]);
    // One immediate passing check, then none for a while: the kill below goes unnoticed.
    spec.health = HealthCheck {
        interval: Duration::from_secs(30),
        healthy_threshold: 1,
        ..common::fast_health()
    };
    proxy.balancer.set_route(spec);
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);

    a.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = proxy.get("app.localhost", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(
        r.body
            .contains("instance a of environment web could not be reached"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;

    let proxy_addr = proxy.addr;
    let task = proxy.task.take().unwrap();
    let shutdown = proxy.shutdown.take().unwrap();
    let proxy = Arc::new(proxy);
    let p = proxy.clone();
    let slow = tokio::spawn(async move { p.get("app.localhost", "/slow").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    shutdown.send(()).unwrap();

    let r = slow.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "a");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(proxy_addr).await.is_err());
}

/// Raw HTTP/1.1 exchange so the test controls the request line exactly.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn absolute_form_uri_routes_on_its_authority() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let resp = raw_exchange(
        proxy.addr,
        "GET http://app.localhost:8000/ HTTP/1.1\r\nHost: other.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("a"), "{resp}");
}

/// A raw backend that answers `/health` with 200 and upgrades anything else to an echo protocol.
async fn spawn_upgrade_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
                let head = String::from_utf8_lossy(&head).to_lowercase();
                if head.starts_with("get /health") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                assert!(head.contains("upgrade: echo"), "{head}");
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upgrades_are_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = TestProxy::start().await;
    let addr = spawn_upgrade_backend().await;
    proxy.balancer.set_route(sprout_proxy::RouteSpec {
        env: "ws".into(),
        hosts: vec!["ws.localhost".into()],
        health: common::fast_health(),
        backends: vec![sprout_proxy::BackendSpec {
            id: "u".into(),
            addr,
            version: "v1".into(),
        }],
    });
    wait_healthy(&proxy.balancer, "ws", &["u"]).await;

    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
}
