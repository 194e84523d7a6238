mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{route, wait_healthy, wait_until, TestBackend, TestProxy};
use http::{Method, StatusCode};
use sprout_proxy::{BackendState, HealthCheck, Split};

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
    // The client is no trusted proxy: its claim is replaced by its address.
    assert_eq!(h["echo-x-forwarded-for"], "127.0.0.1");
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
    // One pass (the immediate first check; the next comes 200 ms later, the pending
    // cadence) is below the threshold of 2.
    tokio::time::sleep(Duration::from_millis(80)).await;
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
    // The instance sees the name it was reached by, not the Host header the target overrides.
    assert!(
        resp.to_lowercase()
            .contains("echo-host: app.localhost:8000\r\n"),
        "{resp}"
    );
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

fn state_of(proxy: &TestProxy, env: &str, id: &str) -> sprout_proxy::BackendStatus {
    proxy
        .balancer
        .backends(env)
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
}

async fn wait_state(proxy: &TestProxy, env: &str, id: &str, state: BackendState) {
    let ok = wait_until(Duration::from_secs(5), || async {
        state_of(proxy, env, id).state == state
    })
    .await;
    assert!(ok, "{env}/{id} did not become {state:?}");
}

#[tokio::test]
async fn health_check_expected_status_range() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    // `a` answers /health with 503, which this route expects.
    a.set_healthy(false);
    let mut spec = route("odd", &["odd.localhost"], &[&a]);
    spec.health.success_codes = (503, 503);
    proxy.balancer.set_route(spec);
    // `b` answers 200, which this route does not accept.
    let mut spec = route("strict", &["strict.localhost"], &[&b]);
    spec.health.success_codes = (204, 204);
    proxy.balancer.set_route(spec);

    wait_healthy(&proxy.balancer, "odd", &["a"]).await;
    assert_eq!(proxy.get("odd.localhost", "/").await.body, "a");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let st = state_of(&proxy, "strict", "b");
    assert_eq!(st.state, BackendState::Pending);
    assert_eq!(st.last_status, Some(200));
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("expected 204-204"),
        "{st:?}"
    );
    assert_eq!(HealthCheck::default().success_codes, (200, 399));
}

#[tokio::test]
async fn health_state_pending_healthy_unhealthy() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    a.set_healthy(false);
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Never passed: failures keep it pending, not unhealthy.
    let st = state_of(&proxy, "web", "a");
    assert_eq!(st.state, BackendState::Pending);
    assert!(!st.healthy);
    assert!(st.consecutive_failures >= 2, "{st:?}");
    let pending_since = st.since;

    a.set_healthy(true);
    wait_state(&proxy, "web", "a", BackendState::Healthy).await;
    let st = state_of(&proxy, "web", "a");
    assert!(st.healthy);
    assert_eq!(st.consecutive_failures, 0);
    assert!(st.since > pending_since);
    let healthy_since = st.since;

    a.set_healthy(false);
    wait_state(&proxy, "web", "a", BackendState::Unhealthy).await;
    let st = state_of(&proxy, "web", "a");
    assert!(!st.healthy);
    assert!(st.consecutive_failures >= 2, "{st:?}");
    assert!(st.since > healthy_since);
    assert!(!proxy.balancer.is_healthy("web", "a"));

    a.set_healthy(true);
    wait_state(&proxy, "web", "a", BackendState::Healthy).await;
}

#[tokio::test]
async fn metrics_count_classes_and_percentiles() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!((m.count, m.totals.requests), (0, 0));

    let mix: [(&str, usize, StatusCode); 5] = [
        ("/", 34, StatusCode::OK),
        ("/status/302", 2, StatusCode::FOUND),
        ("/status/404", 4, StatusCode::NOT_FOUND),
        ("/status/500", 8, StatusCode::INTERNAL_SERVER_ERROR),
        ("/sleep/300", 2, StatusCode::OK),
    ];
    for (path, n, status) in mix {
        for _ in 0..n {
            assert_eq!(proxy.get("app.localhost", path).await.status, status);
        }
    }
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!(m.count, 50);
    assert_eq!(
        (
            m.status_2xx,
            m.status_3xx,
            m.status_4xx,
            m.status_5xx,
            m.failed
        ),
        (36, 2, 4, 8, 0)
    );
    assert_eq!(
        m.totals,
        sprout_proxy::Totals {
            requests: 50,
            status_5xx: 8,
            failed: 0
        }
    );
    // 48 fast requests and 2 of 300 ms: p50/p90 fast, p99/p99.9 the slow ones.
    assert!(m.p50_ms > 0.0 && m.p50_ms < 50.0, "{m:?}");
    assert!(m.p90_ms < 50.0, "{m:?}");
    assert!((250.0..500.0).contains(&m.p99_ms), "{m:?}");
    assert!((250.0..500.0).contains(&m.p999_ms), "{m:?}");
    assert!(m.window_secs >= 1.0 && m.window_secs <= 10.0);
    assert!(m.requests_per_sec > 0.0);
    assert_eq!(m.backends.len(), 1);
    let b = &m.backends[0];
    assert_eq!((b.id.as_str(), b.version.as_str()), ("a", "v1"));
    assert_eq!(
        (b.count, b.status_5xx, b.failed, b.in_flight),
        (50, 8, 0, 0)
    );
    assert!((250.0..500.0).contains(&b.p99_ms), "{b:?}");

    // The balancer's own failures count as 5xx and as failed.
    let down = TestBackend::spawn("down").await;
    down.set_healthy(false);
    proxy
        .balancer
        .set_route(route("down", &["down.localhost"], &[&down]));
    assert_eq!(
        proxy.get("down.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    let m = proxy.balancer.metrics("down").unwrap();
    assert_eq!((m.count, m.status_5xx, m.failed), (1, 1, 1));
    assert_eq!(m.totals.failed, 1);
    assert!(proxy.balancer.metrics("nope").is_none());
    // Serializable for the API.
    let _ = serde_json_like(&m);
}

/// The crate has no serde_json; checking the derive compiles is enough here.
fn serde_json_like<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(t: &T) -> T {
    t.clone()
}

#[tokio::test]
async fn totals_are_monotonic_across_route_updates() {
    let proxy = TestProxy::start().await;
    let (a, b, c) = (
        TestBackend::spawn("a").await,
        TestBackend::spawn("b").await,
        TestBackend::spawn("c").await,
    );
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;
    for _ in 0..10 {
        proxy.get("app.localhost", "/").await;
    }
    let t1 = proxy.balancer.metrics("web").unwrap().totals;
    assert_eq!(t1.requests, 10);

    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    assert_eq!(proxy.balancer.metrics("web").unwrap().totals, t1);
    for _ in 0..3 {
        proxy.get("app.localhost", "/status/503").await;
    }
    proxy
        .balancer
        .set_route(route("web", &["app.localhost", "www.localhost"], &[&a, &c]));
    for _ in 0..2 {
        proxy.get("www.localhost", "/").await;
    }
    let m = proxy.balancer.metrics("web").unwrap();
    let t2 = m.totals;
    assert_eq!((t2.requests, t2.status_5xx, t2.failed), (15, 3, 0));
    assert!(t2.requests >= t1.requests && t2.status_5xx >= t1.status_5xx);
    // Window counts survive too; backends follow the route (a kept its counts by id).
    assert_eq!(m.count, 15);
    let ids: Vec<&str> = m.backends.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(m.backends[0].count, 5 + 3 + 2);

    proxy.balancer.remove_route("web");
    assert!(proxy.balancer.metrics("web").is_none());
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    assert_eq!(proxy.balancer.metrics("web").unwrap().totals.requests, 0);
}

#[tokio::test]
async fn prometheus_exposition() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    for _ in 0..3 {
        proxy.get("app.localhost", "/").await;
    }
    proxy.get("app.localhost", "/status/500").await;
    let text = proxy.balancer.prometheus();
    for line in [
        "# TYPE sprout_requests_total counter",
        "sprout_requests_total{env=\"web\",backend=\"a\",class=\"2xx\"} 3",
        "sprout_requests_total{env=\"web\",backend=\"a\",class=\"5xx\"} 1",
        "sprout_failed_total{env=\"web\",backend=\"a\"} 0",
        "# TYPE sprout_request_duration_seconds summary",
        "sprout_request_duration_seconds{env=\"web\",quantile=\"0.5\"} ",
        "sprout_request_duration_seconds{env=\"web\",quantile=\"0.99\"} ",
        "sprout_request_duration_seconds_count{env=\"web\"} 4",
        "# TYPE sprout_backend_healthy gauge",
        "sprout_backend_healthy{env=\"web\",backend=\"a\"} 1",
        "# TYPE sprout_in_flight gauge",
        "sprout_in_flight{env=\"web\",backend=\"a\"} 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn drain_stops_new_requests_and_tracks_in_flight() {
    let proxy = Arc::new(TestProxy::start().await);
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;

    let p = proxy.clone();
    let slow = tokio::spawn(async move { p.get("app.localhost", "/sleep/1000").await });
    let bal = proxy.balancer.clone();
    assert!(
        wait_until(Duration::from_secs(2), || async {
            bal.in_flight("web", "a") + bal.in_flight("web", "b") == 1
        })
        .await
    );
    let (busy, other) = if proxy.balancer.in_flight("web", "a") == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert!(proxy.balancer.drain("web", busy));
    assert!(!proxy.balancer.drain("web", "nope"));
    assert!(!proxy.balancer.drain("nope", busy));
    let st = state_of(&proxy, "web", busy);
    assert_eq!(st.state, BackendState::Draining);
    assert!(!st.healthy);
    assert!(!proxy.balancer.is_healthy("web", busy));

    for _ in 0..10 {
        let r = proxy.get("app.localhost", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, other);
    }
    // Draining sticks across a route update that still lists the backend.
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    assert_eq!(state_of(&proxy, "web", busy).state, BackendState::Draining);
    assert_eq!(proxy.get("app.localhost", "/").await.body, other);
    assert_eq!(proxy.balancer.in_flight("web", busy), 1);

    let r = slow.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, busy);
    assert!(
        wait_until(Duration::from_secs(1), || async {
            bal.in_flight("web", busy) == 0
        })
        .await
    );
    assert_eq!(proxy.balancer.in_flight("web", other), 0);

    // Leaving the route ends draining: an id that comes back is a new instance.
    let keep = if other == "a" { &a } else { &b };
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[keep]));
    assert!(state_of_opt(&proxy, "web", busy).is_none());
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_state(&proxy, "web", busy, BackendState::Healthy).await;
}

fn state_of_opt(proxy: &TestProxy, env: &str, id: &str) -> Option<sprout_proxy::BackendStatus> {
    proxy
        .balancer
        .backends(env)
        .into_iter()
        .find(|s| s.id == id)
}

fn sticky_cookie_of(r: &common::Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("SPROUT_STICKY="))
        .map(|v| v.to_owned())
}

#[tokio::test]
async fn sticky_sessions_follow_the_cookie() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    // Set before the route exists: must still apply.
    proxy
        .balancer
        .set_sticky("web", Some(Duration::from_secs(60)));
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;

    let first = proxy.get("app.localhost", "/").await;
    let x = first.body.clone();
    let cookie = sticky_cookie_of(&first).expect("no sticky cookie");
    assert_eq!(
        cookie,
        format!("SPROUT_STICKY={x}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax")
    );
    let presented = format!("theme=dark; SPROUT_STICKY={x}");
    for _ in 0..50 {
        let r = proxy
            .get_with("app.localhost", "/", &[("cookie", &presented)])
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, x);
        assert!(sticky_cookie_of(&r).is_none(), "cookie re-set needlessly");
    }
    // Stickiness survives a route update.
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a, &b]));
    let r = proxy
        .get_with("app.localhost", "/", &[("cookie", &presented)])
        .await;
    assert_eq!(r.body, x);

    // An unknown backend in the cookie: round robin and a fresh cookie.
    let r = proxy
        .get_with("app.localhost", "/", &[("cookie", "SPROUT_STICKY=gone")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        sticky_cookie_of(&r).unwrap(),
        format!(
            "SPROUT_STICKY={}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax",
            r.body
        )
    );

    // The sticky backend drains: the next request goes elsewhere and gets a new cookie.
    assert!(proxy.balancer.drain("web", &x));
    let r = proxy
        .get_with("app.localhost", "/", &[("cookie", &presented)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body, x);
    let y = r.body.clone();
    assert!(sticky_cookie_of(&r)
        .unwrap()
        .starts_with(&format!("SPROUT_STICKY={y};")));

    // Off again: no cookies.
    proxy.balancer.set_sticky("web", None);
    assert!(sticky_cookie_of(&proxy.get("app.localhost", "/").await).is_none());
}

#[tokio::test]
async fn split_sends_a_deterministic_share_to_the_canary() {
    let proxy = TestProxy::start().await;
    let (a, b, c) = (
        TestBackend::spawn("a").await,
        TestBackend::spawn("b").await,
        TestBackend::spawn("c").await,
    );
    let mut spec = route("web", &["app.localhost"], &[]);
    spec.backends = vec![
        a.spec_version("v1"),
        b.spec_version("v1"),
        c.spec_version("v2"),
    ];
    proxy.balancer.set_route(spec.clone());
    wait_healthy(&proxy.balancer, "web", &["a", "b", "c"]).await;
    proxy.balancer.set_split(
        "web",
        Some(Split {
            version: "v2".into(),
            percent: 25,
        }),
    );
    // A route update keeps the split.
    proxy.balancer.set_route(spec);
    for _ in 0..200 {
        assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    }
    assert_eq!(c.hits(), 50);
    assert_eq!(a.hits(), 75);
    assert_eq!(b.hits(), 75);

    // A side without a healthy backend never fails a request.
    proxy.balancer.set_split(
        "web",
        Some(Split {
            version: "v3".into(),
            percent: 50,
        }),
    );
    for _ in 0..10 {
        assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    }
    proxy.balancer.set_split(
        "web",
        Some(Split {
            version: "v2".into(),
            percent: 100,
        }),
    );
    assert!(proxy.balancer.drain("web", "c"));
    let before = c.hits();
    for _ in 0..10 {
        let r = proxy.get("app.localhost", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_ne!(r.body, "c");
    }
    assert_eq!(c.hits(), before);

    // None: plain round robin over all healthy backends (c is drained).
    proxy.balancer.set_split("web", None);
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..10 {
        proxy.get("app.localhost", "/").await;
    }
    assert_eq!((a.hits() - a0, b.hits() - b0), (5, 5));
}

#[tokio::test]
async fn set_routes_swaps_hosts_atomically() {
    let proxy = Arc::new(TestProxy::start().await);
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    proxy.balancer.set_routes(vec![
        route("blue", &["app.localhost"], &[&a]),
        route("green", &["staging.localhost"], &[&b]),
    ]);
    wait_healthy(&proxy.balancer, "blue", &["a"]).await;
    wait_healthy(&proxy.balancer, "green", &["b"]).await;

    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for i in 0..4 {
        let (proxy, failures, done) = (proxy.clone(), failures.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let host = if i % 2 == 0 {
                "app.localhost"
            } else {
                "staging.localhost"
            };
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
            while tokio::time::Instant::now() < deadline {
                let r = proxy.get(host, "/").await;
                if r.status != StatusCode::OK || !(r.body == "a" || r.body == "b") {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut live = "blue";
    for _ in 0..40 {
        let (to_app, to_staging) = if live == "blue" {
            (("green", &b), ("blue", &a))
        } else {
            (("blue", &a), ("green", &b))
        };
        proxy.balancer.set_routes(vec![
            route(to_app.0, &["app.localhost"], &[to_app.1]),
            route(to_staging.0, &["staging.localhost"], &[to_staging.1]),
        ]);
        live = to_app.0;
        assert!(proxy.balancer.is_healthy("blue", "a"));
        assert!(proxy.balancer.is_healthy("green", "b"));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(done.load(Ordering::SeqCst) > 50);
    // After an even number of swaps: back to the start.
    assert_eq!(proxy.get("app.localhost", "/").await.body, "a");
    assert_eq!(proxy.get("staging.localhost", "/").await.body, "b");
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_backend() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let mut spec = route("web", &["app.localhost"], &[&a, &b]);
    // One immediate passing check, then none for a while: the kill below goes unnoticed.
    spec.health = HealthCheck {
        interval: Duration::from_secs(30),
        healthy_threshold: 1,
        ..common::fast_health()
    };
    proxy.balancer.set_route(spec);
    wait_healthy(&proxy.balancer, "web", &["a", "b"]).await;
    for _ in 0..2 {
        assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    }

    a.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(proxy.balancer.is_healthy("web", "a"));
    for method in [Method::GET, Method::GET, Method::HEAD, Method::OPTIONS] {
        for _ in 0..2 {
            let r = proxy
                .request(method.clone(), "app.localhost", "/", &[])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{method}");
        }
    }
    let m = proxy.balancer.metrics("web").unwrap();
    // The client never saw the first failures.
    assert_eq!((m.count, m.status_5xx, m.failed), (10, 0, 0));
    // Round robin still alternates: every other first attempt went to `a` and failed there.
    let ma = m.backends.iter().find(|b| b.id == "a").unwrap();
    assert_eq!((ma.count, ma.failed, ma.status_5xx), (1 + 4, 4, 0), "{m:?}");
    assert_eq!(a.hits(), 1);
    assert_eq!(b.hits(), 1 + 8);

    // A POST is not retried: the one that lands on `a` gets a 502.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let r = proxy.request(Method::POST, "app.localhost", "/", &[]).await;
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_GATEWAY]);
    let m = proxy.balancer.metrics("web").unwrap();
    assert_eq!((m.count, m.status_5xx, m.failed), (12, 1, 1));
    assert_eq!(m.totals.failed, 1);
}

#[tokio::test]
async fn per_core_listeners_serve_and_refuse_a_taken_port() {
    let a = TestBackend::spawn("a").await;
    let balancer = sprout_proxy::Balancer::new(sprout_proxy::BalancerConfig::default());
    balancer.set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&balancer, "web", &["a"]).await;
    let listeners =
        sprout_proxy::PerCoreListeners::bind("127.0.0.1:0".parse().unwrap(), 2).expect("bind");
    let addr = listeners.local_addr();
    // A second server on the same port must fail, as a plain bind would.
    assert!(sprout_proxy::PerCoreListeners::bind(addr, 2).is_err());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(balancer.clone().serve_per_core(listeners, async move {
        let _ = stopped.await;
    }));
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("\r\n\r\na"), "{resp}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve_per_core did not return")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A backend a previous server last saw healthy is in rotation from the first request,
/// where a new one would be pending (502); a backend at another address is not.
#[tokio::test]
async fn restored_health_routes_from_the_first_request() {
    let proxy = TestProxy::start().await;
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let mut spec = route("web", &["app.localhost"], &[&a]);
    spec.health = HealthCheck {
        interval: Duration::from_secs(10),
        ..common::fast_health()
    };
    // Recorded healthy: "a" at its address, "b" at an address it no longer has.
    proxy.balancer.restore_health([
        ("a".to_string(), a.addr),
        ("b".to_string(), "127.0.0.1:9".parse().unwrap()),
    ]);
    proxy.balancer.set_route(spec.clone());
    assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    assert_eq!(
        proxy.balancer.healthy_backends(),
        vec![("web".to_string(), "a".to_string(), a.addr)]
    );

    let mut spec_b = route("web", &["app.localhost"], &[&b]);
    spec_b.health = spec.health.clone();
    proxy.balancer.set_route(spec_b);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        proxy.get("app.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY,
        "b moved: pending like any new backend"
    );
}

/// Totals restored from the store carry on, and only what was counted since is unsaved.
#[tokio::test]
async fn restored_totals_carry_on() {
    let proxy = TestProxy::start().await;
    let a = TestBackend::spawn("a").await;
    proxy
        .balancer
        .set_route(route("web", &["app.localhost"], &[&a]));
    wait_healthy(&proxy.balancer, "web", &["a"]).await;
    let earlier = sprout_proxy::Totals {
        requests: 1000,
        status_5xx: 7,
        failed: 3,
    };
    assert!(proxy.balancer.restore_totals("web", earlier));
    assert!(!proxy.balancer.restore_totals("gone", earlier));
    assert!(proxy.balancer.take_unsaved_totals().is_empty());
    for _ in 0..3 {
        assert_eq!(proxy.get("app.localhost", "/").await.status, StatusCode::OK);
    }
    let totals = proxy.balancer.metrics("web").expect("metrics").totals;
    assert_eq!(totals.requests, 1003);
    assert_eq!(totals.status_5xx, 7);
    let unsaved = proxy.balancer.take_unsaved_totals();
    assert_eq!(unsaved.len(), 1);
    assert_eq!(unsaved[0].1.requests, 3);
    assert!(proxy.balancer.take_unsaved_totals().is_empty());
}
