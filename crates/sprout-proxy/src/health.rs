//! Active health checks: one background task per backend.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::task::AbortHandle;
use tracing::{error, info, warn};

pub(crate) type HealthClient = Client<HttpConnector, Empty<Bytes>>;

/// How a route's backends are health-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with `GET http://<addr><path>`.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes before a backend joins the pool.
    pub healthy_threshold: u32,
    /// Consecutive failures before a backend leaves the pool.
    pub unhealthy_threshold: u32,
}

/// Health of one backend as reported by [`crate::Balancer::backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub id: String,
    pub addr: SocketAddr,
    pub version: String,
    pub healthy: bool,
    /// HTTP status of the last health check, if it got a response.
    pub last_status: Option<u16>,
    /// Why the last health check failed, if it did.
    pub last_error: Option<String>,
}

/// Health state of one backend, shared between its checker task and the route table.
#[derive(Default)]
pub(crate) struct Health {
    /// The only field the request path reads: a single atomic load.
    healthy: AtomicBool,
    detail: Mutex<Detail>,
}

#[derive(Default)]
struct Detail {
    passes: u32,
    failures: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
}

/// Result of one probe: the status code if a response came back, and an error if it failed.
pub(crate) struct Probe {
    status: Option<u16>,
    error: Option<String>,
}

impl Health {
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn status(&self, id: &str, addr: SocketAddr, version: &str) -> BackendStatus {
        let detail = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        BackendStatus {
            id: id.to_owned(),
            addr,
            version: version.to_owned(),
            healthy: self.is_healthy(),
            last_status: detail.last_status,
            last_error: detail.last_error.clone(),
        }
    }

    /// Records a probe; returns `Some(new_state)` when the backend changed state.
    fn record(&self, probe: Probe, check: &HealthCheck) -> Option<bool> {
        let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        d.last_status = probe.status;
        let passed = probe.error.is_none();
        d.last_error = probe.error;
        let healthy = self.is_healthy();
        if passed {
            d.passes = d.passes.saturating_add(1);
            d.failures = 0;
            if !healthy && d.passes >= check.healthy_threshold.max(1) {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            d.failures = d.failures.saturating_add(1);
            d.passes = 0;
            if healthy && d.failures >= check.unhealthy_threshold.max(1) {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

pub(crate) fn health_client() -> HealthClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    // Keep-alive for probes too, so frequent checks do not churn sockets (TIME_WAIT).
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// A running health checker; dropping it stops the task.
pub(crate) struct Checker {
    pub(crate) addr: SocketAddr,
    pub(crate) health: Arc<Health>,
    task: Option<AbortHandle>,
}

impl Checker {
    pub(crate) fn start(
        client: &HealthClient,
        env: &str,
        id: &str,
        addr: SocketAddr,
        check: &HealthCheck,
        health: Arc<Health>,
    ) -> Checker {
        let task = spawn_task(client, env, id, addr, check, &health);
        Checker { addr, health, task }
    }

    /// Restarts the task with a new check configuration, keeping the health state.
    pub(crate) fn restart(
        &mut self,
        client: &HealthClient,
        env: &str,
        id: &str,
        check: &HealthCheck,
    ) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.task = spawn_task(client, env, id, self.addr, check, &self.health);
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn spawn_task(
    client: &HealthClient,
    env: &str,
    id: &str,
    addr: SocketAddr,
    check: &HealthCheck,
    health: &Arc<Health>,
) -> Option<AbortHandle> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        error!(
            env,
            backend = id,
            "set_route called outside a Tokio runtime; health checks not running"
        );
        return None;
    };
    let task = rt.spawn(run(
        client.clone(),
        env.to_owned(),
        id.to_owned(),
        addr,
        check.clone(),
        health.clone(),
    ));
    Some(task.abort_handle())
}

async fn run(
    client: HealthClient,
    env: String,
    id: String,
    addr: SocketAddr,
    check: HealthCheck,
    health: Arc<Health>,
) {
    let path = if check.path.starts_with('/') {
        check.path.clone()
    } else {
        format!("/{}", check.path)
    };
    let uri: Result<Uri, _> = format!("http://{addr}{path}").parse();
    // A zero interval would spin; clamp to something sane.
    let mut ticker = tokio::time::interval(check.interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match &uri {
            Ok(uri) => probe(&client, uri.clone(), check.timeout).await,
            Err(e) => Probe {
                status: None,
                error: Some(format!("invalid health check path {path:?}: {e}")),
            },
        };
        let (status, err) = (result.status, result.error.clone());
        match health.record(result, &check) {
            Some(true) => {
                info!(env = %env, backend = %id, %addr, status = ?status, "backend is healthy")
            }
            Some(false) => warn!(
                env = %env, backend = %id, %addr, status = ?status, error = err.as_deref().unwrap_or(""),
                "backend is unhealthy; out of rotation"
            ),
            None => {}
        }
    }
}

async fn probe(client: &HealthClient, uri: Uri, timeout: Duration) -> Probe {
    let req = match Request::get(uri)
        .header(header::USER_AGENT, "sprout-health-check/1")
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => {
            return Probe {
                status: None,
                error: Some(e.to_string()),
            }
        }
    };
    let attempt = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // Drain (a bounded amount of) the body so the connection goes back to the pool.
        let _ = Limited::new(resp.into_body(), 64 * 1024).collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) if status.is_success() || status.is_redirection() => Probe {
            status: Some(status.as_u16()),
            error: None,
        },
        Ok(Ok(status)) => Probe {
            status: Some(status.as_u16()),
            error: Some(format!("unexpected status {status}")),
        },
        Ok(Err(e)) => Probe {
            status: None,
            error: Some(crate::error::chain(&e)),
        },
        Err(_) => Probe {
            status: None,
            error: Some(format!("timed out after {timeout:?}")),
        },
    }
}
