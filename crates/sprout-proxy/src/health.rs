//! Active health checks: one background task per backend.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};
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
    /// Inclusive range of HTTP statuses that count as a pass. Default `(200, 399)`.
    pub success_codes: (u16, u16),
}

/// Where a backend stands, as reported by [`crate::Balancer::backends`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Has never passed `healthy_threshold` checks in a row yet; gets no traffic.
    Pending,
    /// In rotation.
    Healthy,
    /// Was healthy, then failed `unhealthy_threshold` checks in a row; gets no traffic.
    Unhealthy,
    /// Taken out of rotation by [`crate::Balancer::drain`]; in-flight requests finish.
    Draining,
}

/// Health of one backend as reported by [`crate::Balancer::backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub id: String,
    pub addr: SocketAddr,
    pub version: String,
    /// In rotation: `state == BackendState::Healthy`.
    pub healthy: bool,
    /// HTTP status of the last health check, if it got a response.
    pub last_status: Option<u16>,
    /// Why the last health check failed, if it did.
    pub last_error: Option<String>,
    pub state: BackendState,
    /// Health checks failed in a row (0 after a pass).
    pub consecutive_failures: u32,
    /// When `state` last changed.
    pub since: Instant,
}

const PENDING: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

/// Health state of one backend, shared between its checker task and the route table.
pub(crate) struct Health {
    /// What the checks say: `PENDING`, `HEALTHY` or `UNHEALTHY`. Read on the request path.
    checked: AtomicU8,
    /// Set by `drain`; overrides `checked`. Read on the request path.
    draining: AtomicBool,
    detail: Mutex<Detail>,
}

struct Detail {
    passes: u32,
    failures: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
    /// When `checked` last changed.
    since: Instant,
    /// When draining started.
    drain_since: Option<Instant>,
}

/// Result of one probe: the status code if a response came back, and an error if it failed.
pub(crate) struct Probe {
    status: Option<u16>,
    error: Option<String>,
}

impl Health {
    pub(crate) fn new() -> Health {
        Health {
            checked: AtomicU8::new(PENDING),
            draining: AtomicBool::new(false),
            detail: Mutex::new(Detail {
                passes: 0,
                failures: 0,
                last_status: None,
                last_error: None,
                since: Instant::now(),
                drain_since: None,
            }),
        }
    }

    /// A backend last known healthy (by a previous server, from the store): in rotation at
    /// once, and out after `unhealthy_threshold` failed checks like any healthy backend.
    pub(crate) fn known_healthy() -> Health {
        let health = Health::new();
        health.checked.store(HEALTHY, Ordering::Relaxed);
        health
    }

    /// In rotation: passed its checks and not draining. Two relaxed loads, no lock.
    #[inline]
    pub(crate) fn is_healthy(&self) -> bool {
        self.checked.load(Ordering::Relaxed) == HEALTHY && !self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Takes the backend out of rotation (or puts a drained one back, with `false`).
    /// Returns whether the flag changed.
    pub(crate) fn set_draining(&self, on: bool) -> bool {
        let mut d = self.lock();
        let changed = self.draining.swap(on, Ordering::Relaxed) != on;
        if changed {
            d.drain_since = on.then(Instant::now);
        }
        changed
    }

    pub(crate) fn state(&self) -> BackendState {
        if self.is_draining() {
            return BackendState::Draining;
        }
        match self.checked.load(Ordering::Relaxed) {
            HEALTHY => BackendState::Healthy,
            UNHEALTHY => BackendState::Unhealthy,
            _ => BackendState::Pending,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self, id: &str, addr: SocketAddr, version: &str) -> BackendStatus {
        let detail = self.lock();
        let state = self.state();
        BackendStatus {
            id: id.to_owned(),
            addr,
            version: version.to_owned(),
            healthy: state == BackendState::Healthy,
            last_status: detail.last_status,
            last_error: detail.last_error.clone(),
            state,
            consecutive_failures: detail.failures,
            since: match (state, detail.drain_since) {
                (BackendState::Draining, Some(t)) => t,
                _ => detail.since,
            },
        }
    }

    /// Records a probe; returns `Some(new_state)` when the checked state changed.
    ///
    /// Pending → Healthy after `healthy_threshold` passes in a row; Healthy → Unhealthy after
    /// `unhealthy_threshold` failures in a row; Unhealthy → Healthy like Pending. A backend
    /// that never passed stays Pending however often it fails.
    fn record(&self, probe: Probe, check: &HealthCheck) -> Option<BackendState> {
        let mut d = self.lock();
        d.last_status = probe.status;
        let passed = probe.error.is_none();
        d.last_error = probe.error;
        let checked = self.checked.load(Ordering::Relaxed);
        let next = if passed {
            d.passes = d.passes.saturating_add(1);
            d.failures = 0;
            (checked != HEALTHY && d.passes >= check.healthy_threshold.max(1)).then_some(HEALTHY)
        } else {
            d.failures = d.failures.saturating_add(1);
            d.passes = 0;
            (checked == HEALTHY && d.failures >= check.unhealthy_threshold.max(1))
                .then_some(UNHEALTHY)
        }?;
        self.checked.store(next, Ordering::Relaxed);
        d.since = Instant::now();
        Some(if next == HEALTHY {
            BackendState::Healthy
        } else {
            BackendState::Unhealthy
        })
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

/// How often a backend that has never passed is checked (when the interval is longer).
const PENDING_INTERVAL: Duration = Duration::from_millis(200);

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
    let interval = check.interval.max(Duration::from_millis(10));
    // A new instance is checked faster until it first passes, so it joins the pool (and a
    // deployment moves on) as soon as it answers, not up to an interval later.
    let pending_interval = interval.min(PENDING_INTERVAL);
    let mut first = true;
    loop {
        if !first {
            let wait = if health.state() == BackendState::Pending {
                pending_interval
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
        }
        first = false;
        let result = match &uri {
            Ok(uri) => probe(&client, uri.clone(), check.timeout, check.success_codes).await,
            Err(e) => Probe {
                status: None,
                error: Some(format!("invalid health check path {path:?}: {e}")),
            },
        };
        let (status, err) = (result.status, result.error.clone());
        let draining = health.is_draining();
        match health.record(result, &check) {
            Some(BackendState::Healthy) => {
                info!(env = %env, backend = %id, %addr, status = ?status, draining, "backend is healthy")
            }
            Some(_) => warn!(
                env = %env, backend = %id, %addr, status = ?status, error = err.as_deref().unwrap_or(""),
                "backend is unhealthy; out of rotation"
            ),
            None => {}
        }
    }
}

async fn probe(client: &HealthClient, uri: Uri, timeout: Duration, codes: (u16, u16)) -> Probe {
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
        Ok(Ok(status)) if (codes.0..=codes.1).contains(&status.as_u16()) => Probe {
            status: Some(status.as_u16()),
            error: None,
        },
        Ok(Ok(status)) => Probe {
            status: Some(status.as_u16()),
            error: Some(format!(
                "unexpected status {status} (expected {}-{})",
                codes.0, codes.1
            )),
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
