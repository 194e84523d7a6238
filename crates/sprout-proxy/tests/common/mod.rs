#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sprout_proxy::{BackendSpec, Balancer, BalancerConfig, HealthCheck, RouteSpec};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Headers the test backend echoes back as `echo-<name>`.
const ECHOED: [&str; 8] = [
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "host",
    "x-secret",
    "keep-alive",
];

/// A tiny backend answering with its own name; `/health` follows `healthy`.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub async fn spawn(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let (n, h, c, k) = (
            name.to_owned(),
            healthy.clone(),
            connections.clone(),
            hits.clone(),
        );
        let task = tokio::spawn(async move {
            // Connections live in the JoinSet so aborting this task kills them all.
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, h, k) = (n.clone(), h.clone(), k.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (n, h, k) = (n.clone(), h.clone(), k.clone());
                        async move { Ok::<_, Infallible>(answer(req, &n, &h, &k).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        TestBackend {
            name: name.to_owned(),
            addr,
            healthy,
            connections,
            hits,
            task,
        }
    }

    pub fn spec(&self) -> BackendSpec {
        BackendSpec {
            id: self.name.clone(),
            addr: self.addr,
            version: "v1".to_owned(),
        }
    }

    pub fn spec_version(&self, version: &str) -> BackendSpec {
        BackendSpec {
            version: version.to_owned(),
            ..self.spec()
        }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    name: &str,
    healthy: &AtomicBool,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        let status = if healthy.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut resp = Response::new(Full::new(Bytes::from_static(b"health")));
        *resp.status_mut() = status;
        return resp;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // `/sleep/<ms>`: answer after that long.
    if let Some(ms) = path.strip_prefix("/sleep/").and_then(|m| m.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(name.to_owned())));
    // `/status/<code>`: answer with that status.
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        *resp.status_mut() = code;
    }
    for h in ECHOED {
        if let Some(v) = req.headers().get(h) {
            resp.headers_mut().insert(
                format!("echo-{h}").parse::<http::HeaderName>().unwrap(),
                v.clone(),
            );
        }
    }
    resp
}

pub fn fast_health() -> HealthCheck {
    HealthCheck {
        path: "/health".to_owned(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        success_codes: (200, 399),
    }
}

pub fn route(env: &str, hosts: &[&str], backends: &[&TestBackend]) -> RouteSpec {
    RouteSpec {
        env: env.to_owned(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        health: fast_health(),
        backends: backends.iter().map(|b| b.spec()).collect(),
    }
}

pub struct TestProxy {
    pub balancer: Arc<Balancer>,
    pub addr: SocketAddr,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestProxy {
    pub async fn start() -> TestProxy {
        TestProxy::start_with(BalancerConfig::default()).await
    }

    pub async fn start_with(config: BalancerConfig) -> TestProxy {
        let balancer = Balancer::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(balancer.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        TestProxy {
            balancer,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.get_with(host, path, &[]).await
    }

    pub async fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(http::Method::GET, host, path, headers).await
    }

    pub async fn request(
        &self,
        method: http::Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_healthy(balancer: &Balancer, env: &str, ids: &[&str]) {
    let ok = wait_until(Duration::from_secs(5), || async {
        ids.iter().all(|id| balancer.is_healthy(env, id))
    })
    .await;
    assert!(ok, "backends {ids:?} of {env} did not become healthy");
}
