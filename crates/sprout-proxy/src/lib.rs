//! `sprout-proxy`: Sprout's built-in load balancer.
//!
//! Requests are routed on the Host header's name to the environment that claims it, and spread
//! round robin over that environment's healthy instances. The route table lives in an
//! [`ArcSwap`] so the hot path never takes a lock; the control plane replaces the whole table
//! atomically on every change. Background tasks health-check every backend.

mod error;
mod headers;
mod health;
mod proxy;
mod server;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use tracing::warn;

pub use error::ProxyError;
pub use health::{BackendStatus, HealthCheck};
pub use proxy::ProxyBody;

use health::{Checker, Health, HealthClient};
use proxy::UpstreamClient;
use table::{Backend, Route, Table};

/// Static configuration of the balancer.
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    /// The domain environments answer under, e.g. `localhost` → `<cname>.localhost`.
    pub domain: String,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
        }
    }
}

/// The route of one environment: the host names it answers at and its instances.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub env: String,
    /// Full host names like `time-prod.localhost`. Empty = health checks only, no routing.
    pub hosts: Vec<String>,
    pub health: HealthCheck,
    pub backends: Vec<BackendSpec>,
}

/// One instance behind a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub id: String,
    pub addr: SocketAddr,
    pub version: String,
}

/// Sprout's load balancer. Create with [`Balancer::new`], run with [`Balancer::serve`].
pub struct Balancer {
    config: BalancerConfig,
    /// Read on every request without locking; replaced wholesale by the control plane.
    table: ArcSwap<Table>,
    client: UpstreamClient,
    health_client: HealthClient,
    /// Control-plane state (health checker tasks). Never touched on the request path.
    control: Mutex<Control>,
}

#[derive(Default)]
struct Control {
    envs: HashMap<String, EnvControl>,
}

struct EnvControl {
    health: HealthCheck,
    checkers: HashMap<String, Checker>,
}

impl Balancer {
    pub fn new(config: BalancerConfig) -> Arc<Balancer> {
        Arc::new(Balancer {
            config,
            table: ArcSwap::from_pointee(Table::default()),
            client: proxy::upstream_client(),
            health_client: health::health_client(),
            control: Mutex::new(Control::default()),
        })
    }

    /// The configured domain (e.g. `localhost`).
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// The host name an environment with this CNAME prefix answers at: `<cname>.<domain>`.
    pub fn host_for(&self, cname: &str) -> String {
        format!("{}.{}", cname.to_ascii_lowercase(), self.config.domain)
    }

    /// Installs or replaces the route of one environment (keyed by `env`).
    ///
    /// Backends keep their health state across updates when their `id` (and address) is
    /// unchanged; new backends start unhealthy (pending) and join the pool only after passing
    /// `healthy_threshold` checks. Atomic: a request sees the old table or the new one.
    ///
    /// Must be called from within a Tokio runtime (health checkers are spawned on it).
    pub fn set_route(&self, route: RouteSpec) {
        let mut control = self.lock_control();
        let env_control = control
            .envs
            .entry(route.env.clone())
            .or_insert_with(|| EnvControl {
                health: route.health.clone(),
                checkers: HashMap::new(),
            });
        let health_changed = env_control.health != route.health;
        env_control.health = route.health.clone();

        let mut old = std::mem::take(&mut env_control.checkers);
        let mut checkers = HashMap::with_capacity(route.backends.len());
        let mut backends = Vec::with_capacity(route.backends.len());
        for spec in &route.backends {
            if checkers.contains_key(&spec.id) {
                warn!(env = %route.env, backend = %spec.id, "duplicate backend id in route; ignored");
                continue;
            }
            let authority = match Authority::try_from(spec.addr.to_string()) {
                Ok(a) => a,
                Err(e) => {
                    // Cannot happen for a SocketAddr, but never panic on control input.
                    warn!(env = %route.env, backend = %spec.id, error = %e, "bad backend address; ignored");
                    continue;
                }
            };
            let checker = match old.remove(&spec.id) {
                // Same instance: keep its health state (and its checker, unless the check changed).
                Some(mut c) if c.addr == spec.addr => {
                    if health_changed {
                        c.restart(&self.health_client, &route.env, &spec.id, &route.health);
                    }
                    c
                }
                // New instance (or an id reused for another address): starts pending.
                _ => Checker::start(
                    &self.health_client,
                    &route.env,
                    &spec.id,
                    spec.addr,
                    &route.health,
                    Arc::new(Health::default()),
                ),
            };
            backends.push(Backend {
                id: spec.id.clone(),
                addr: spec.addr,
                version: spec.version.clone(),
                authority,
                health: checker.health.clone(),
            });
            checkers.insert(spec.id.clone(), checker);
        }
        // Backends that left the route: dropping their checker stops its task.
        drop(old);
        env_control.checkers = checkers;

        let hosts: Vec<String> = route
            .hosts
            .iter()
            .map(|h| normalize_host(h).into_owned())
            .filter(|h| !h.is_empty())
            .collect();

        // Writers are serialised by the control lock, so load-modify-store cannot race.
        let current = self.table.load_full();
        let mut table = Table {
            hosts: current.hosts.clone(),
            envs: current.envs.clone(),
        };
        // Carry the round-robin position over so an update does not restart at backend 0.
        let next = table
            .envs
            .get(&route.env)
            .map(|r| r.next_value())
            .unwrap_or(0);
        table.hosts.retain(|_, r| r.env != route.env);
        let new_route = Arc::new(Route::new(route.env.clone(), hosts, backends, next));
        for host in &new_route.hosts {
            if let Some(other) = table.hosts.insert(host.clone(), new_route.clone()) {
                if other.env != route.env {
                    warn!(host = %host, env = %route.env, previous_env = %other.env, "host moved to another environment");
                }
            }
        }
        table.envs.insert(route.env.clone(), new_route);
        self.table.store(Arc::new(table));
    }

    /// Removes an environment's route and stops its health checks.
    pub fn remove_route(&self, env: &str) {
        let mut control = self.lock_control();
        // Dropping the checkers aborts their tasks.
        control.envs.remove(env);
        let current = self.table.load_full();
        if !current.envs.contains_key(env) {
            return;
        }
        let mut table = Table {
            hosts: current.hosts.clone(),
            envs: current.envs.clone(),
        };
        table.hosts.retain(|_, r| r.env != env);
        table.envs.remove(env);
        self.table.store(Arc::new(table));
    }

    /// Health of each backend of an environment's route (empty if no route).
    pub fn backends(&self, env: &str) -> Vec<BackendStatus> {
        let table = self.table.load();
        let Some(route) = table.envs.get(env) else {
            return Vec::new();
        };
        route
            .backends
            .iter()
            .map(|b| b.health.status(&b.id, b.addr, &b.version))
            .collect()
    }

    pub fn is_healthy(&self, env: &str, backend_id: &str) -> bool {
        let table = self.table.load();
        table
            .envs
            .get(env)
            .and_then(|r| r.backends.iter().find(|b| b.id == backend_id))
            .is_some_and(|b| b.health.is_healthy())
    }

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // A panic elsewhere while holding the lock must not wedge the control plane.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lowercases a host name and strips a trailing dot (`Foo.Localhost.` → `foo.localhost`).
/// Borrows when nothing changes so the hot path does not allocate.
pub(crate) fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim().trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}
