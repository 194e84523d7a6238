//! `sprout-proxy`: Sprout's built-in load balancer.
//!
//! Requests are routed on the Host header's name to the environment that claims it, and spread
//! round robin over that environment's healthy instances. The route table lives in an
//! [`ArcSwap`] so the hot path never takes a lock; the control plane replaces the whole table
//! atomically on every change. Background tasks health-check every backend.

mod conn;
mod error;
/// Entry points for the fuzz targets (`crates/sprout-fuzz`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod health;
mod limits;
mod metrics;
mod server;
mod table;
mod upstream;
mod wire;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use error::ProxyError;
pub use health::{BackendState, BackendStatus, HealthCheck};
pub use ipnet::IpNet;
pub use limits::{ClientConns, ClientSlot};
pub use metrics::{BackendMetrics, EnvMetrics, Totals};
pub use server::PerCoreListeners;
pub use wire::WireError;

use health::{Checker, Health, HealthClient};
use metrics::{BackendStats, EnvStats};
use table::{Backend, Route, RouteOpts, Table};

/// Static configuration of the balancer.
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    /// The domain environments answer under, e.g. `localhost` → `<cname>.localhost`.
    pub domain: String,
    /// Longest wait for any one read or write once a request is under way: an instance
    /// that sends nothing of its response for this long gets the client a 504, and a client
    /// or instance that stalls a body this long loses the connection. Default 60 s, as
    /// nginx's `proxy_read_timeout` and an ALB's idle timeout.
    pub io_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is kept and appended to: proxies in front of Sprout.
    /// From any other peer the header is replaced by the peer's address, since a client can
    /// write anything there. Trusted proxies are also exempt from the per-client cap.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most connections open at once from one client address (0: no cap). Past it a new
    /// connection gets a 429 and is closed.
    pub max_connections_per_client: u32,
    /// Once `body_grace` has passed, a request body must keep arriving at this average rate
    /// (bytes per second, counting only time spent waiting on the client) or the connection
    /// is cut: a body trickled byte by byte would hold a connection and an instance's worker
    /// for as long as the client likes. 0: no minimum (the `io_timeout` per read still holds).
    pub min_body_rate: u32,
    pub body_grace: Duration,
    /// Cookies never passed on to instances: the dashboard's session, should the dashboard
    /// and an environment share a host name.
    pub private_cookies: Vec<String>,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
            io_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            max_connections_per_client: 512,
            min_body_rate: 1024,
            body_grace: Duration::from_secs(10),
            private_cookies: Vec::new(),
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

/// A canary traffic split (see [`Balancer::set_split`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Backends whose [`BackendSpec::version`] equals this get `percent` of the requests.
    pub version: String,
    /// 0..=100 (larger values count as 100).
    pub percent: u8,
}

/// Sprout's load balancer. Create with [`Balancer::new`], run with [`Balancer::serve`].
pub struct Balancer {
    config: BalancerConfig,
    /// Read on every request without locking; replaced wholesale by the control plane.
    table: ArcSwap<Table>,
    health_client: HealthClient,
    /// Control-plane state (health checker tasks). Never touched on the request path.
    control: Mutex<Control>,
    /// Open connections per client address, across all serving threads.
    clients: limits::ClientConns,
}

#[derive(Default)]
struct Control {
    envs: HashMap<String, EnvControl>,
    /// Backends (id, address) a previous server last saw healthy: they start in rotation
    /// rather than pending (see [`Balancer::restore_health`]). Each is used once.
    known_healthy: HashSet<(String, SocketAddr)>,
}

/// Everything about an environment that outlives a single `set_route`.
struct EnvControl {
    health: HealthCheck,
    checkers: HashMap<String, Checker>,
    stats: Arc<EnvStats>,
    backend_stats: HashMap<String, Arc<BackendStats>>,
    opts: RouteOpts,
    /// Backend ids taken out of rotation; sticky until the id leaves the route.
    drained: HashSet<String>,
}

impl EnvControl {
    fn new(health: HealthCheck) -> EnvControl {
        EnvControl {
            health,
            checkers: HashMap::new(),
            stats: Arc::new(EnvStats::new()),
            backend_stats: HashMap::new(),
            opts: RouteOpts::default(),
            drained: HashSet::new(),
        }
    }
}

impl Balancer {
    pub fn new(config: BalancerConfig) -> Arc<Balancer> {
        Arc::new(Balancer {
            config,
            table: ArcSwap::from_pointee(Table::default()),
            health_client: health::health_client(),
            control: Mutex::new(Control::default()),
            clients: limits::ClientConns::default(),
        })
    }

    pub(crate) fn io_timeout(&self) -> Duration {
        self.config.io_timeout
    }

    pub(crate) fn config(&self) -> &BalancerConfig {
        &self.config
    }

    /// Whether `ip` is one of the trusted proxies.
    pub(crate) fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
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
    /// `healthy_threshold` checks. Metrics, stickiness, the split and drained backends carry
    /// over. Atomic: a request sees the old table or the new one.
    ///
    /// Must be called from within a Tokio runtime (health checkers are spawned on it).
    pub fn set_route(&self, route: RouteSpec) {
        self.set_routes(vec![route]);
    }

    /// Replaces several environments' routes in one table swap, e.g. a CNAME swap between two
    /// environments: every request sees all the old routes or all the new ones, so no host is
    /// ever answered by both environments or by neither. If an environment appears more than
    /// once, the last spec wins.
    pub fn set_routes(&self, routes: Vec<RouteSpec>) {
        let mut control = self.lock_control();
        let current = self.table.load_full();
        let mut table = Table::clone(&current);

        let mut built: Vec<Arc<Route>> = Vec::with_capacity(routes.len());
        for (i, spec) in routes.iter().enumerate() {
            if routes[i + 1..].iter().any(|later| later.env == spec.env) {
                continue;
            }
            let prev = current.envs.get(&spec.env).map(|r| r.as_ref());
            built.push(self.build_route(&mut control, spec, prev));
        }

        // Unmap every updated environment's hosts first and then map the new ones, so hosts
        // moving between the updated environments never pass through "unknown".
        table
            .hosts
            .retain(|_, r| !built.iter().any(|b| b.env == r.env));
        for route in built {
            for host in &route.hosts {
                if let Some(other) = table.hosts.insert(host.clone(), route.clone()) {
                    if other.env != route.env {
                        warn!(host = %host, env = %route.env, previous_env = %other.env, "host moved to another environment");
                    }
                }
            }
            table.envs.insert(route.env.clone(), route);
        }
        // Writers are serialised by the control lock, so load-modify-store cannot race.
        self.table.store(Arc::new(table));
    }

    /// Reconciles one environment's control state with `spec` and builds its new route.
    fn build_route(
        &self,
        control: &mut Control,
        spec: &RouteSpec,
        prev: Option<&Route>,
    ) -> Arc<Route> {
        let env_control = control
            .envs
            .entry(spec.env.clone())
            .or_insert_with(|| EnvControl::new(spec.health.clone()));
        let health_changed = env_control.health != spec.health;
        env_control.health = spec.health.clone();

        let mut old = std::mem::take(&mut env_control.checkers);
        let mut old_stats = std::mem::take(&mut env_control.backend_stats);
        let mut checkers = HashMap::with_capacity(spec.backends.len());
        let mut stats = HashMap::with_capacity(spec.backends.len());
        let mut backends = Vec::with_capacity(spec.backends.len());
        for b in &spec.backends {
            if checkers.contains_key(&b.id) {
                warn!(env = %spec.env, backend = %b.id, "duplicate backend id in route; ignored");
                continue;
            }
            let checker = match old.remove(&b.id) {
                // Same instance: keep its health state (and its checker, unless the check changed).
                Some(mut c) if c.addr == b.addr => {
                    if health_changed {
                        c.restart(&self.health_client, &spec.env, &b.id, &spec.health);
                    }
                    c
                }
                // New instance (or an id reused for another address): starts pending, unless
                // a previous server last saw it healthy at this address.
                _ => {
                    let health = if control.known_healthy.remove(&(b.id.clone(), b.addr)) {
                        Health::known_healthy()
                    } else {
                        Health::new()
                    };
                    Checker::start(
                        &self.health_client,
                        &spec.env,
                        &b.id,
                        b.addr,
                        &spec.health,
                        Arc::new(health),
                    )
                }
            };
            if env_control.drained.contains(&b.id) {
                checker.health.set_draining(true);
            }
            let backend_stats = old_stats
                .remove(&b.id)
                .unwrap_or_else(|| Arc::new(BackendStats::new()));
            backends.push(Backend {
                id: b.id.clone(),
                addr: b.addr,
                version: b.version.clone(),
                health: checker.health.clone(),
                stats: backend_stats.clone(),
                canary: false,
                set_cookie: None,
            });
            checkers.insert(b.id.clone(), checker);
            stats.insert(b.id.clone(), backend_stats);
        }
        // Backends that left the route: dropping their checker stops its task; they are no
        // longer drained (an id that comes back is a new instance).
        drop(old);
        env_control.drained.retain(|id| checkers.contains_key(id));
        env_control.checkers = checkers;
        env_control.backend_stats = stats;

        let hosts: Vec<String> = spec
            .hosts
            .iter()
            .map(|h| normalize_host(h).into_owned())
            .filter(|h| !h.is_empty())
            .collect();
        Arc::new(Route::new(
            spec.env.clone(),
            hosts,
            backends,
            env_control.opts.clone(),
            env_control.stats.clone(),
            prev,
        ))
    }

    /// Backends (id, address) that a previous server last saw healthy: when a route next
    /// lists one of them as new, it joins the pool at once instead of waiting for
    /// `healthy_threshold` passes, so a restarted server answers from its first request.
    /// Its checks run as usual from then on.
    pub fn restore_health(&self, known: impl IntoIterator<Item = (String, SocketAddr)>) {
        self.lock_control().known_healthy.extend(known);
    }

    /// Every backend in rotation, as (environment, id, address): what a restarted server
    /// passes to [`Balancer::restore_health`].
    pub fn healthy_backends(&self) -> Vec<(String, String, SocketAddr)> {
        let table = self.table.load();
        let mut healthy: Vec<(String, String, SocketAddr)> = table
            .envs
            .values()
            .flat_map(|route| {
                route
                    .backends
                    .iter()
                    .filter(|b| b.health.is_healthy())
                    .map(|b| (route.env.clone(), b.id.clone(), b.addr))
            })
            .collect();
        healthy.sort();
        healthy
    }

    /// Adds the totals counted by previous servers (restored from the store) to an
    /// environment's, so they stay monotonic across restarts. False if it has no route.
    pub fn restore_totals(&self, env: &str, earlier: Totals) -> bool {
        let control = self.lock_control();
        match control.envs.get(env) {
            Some(e) => {
                e.stats.restore(earlier);
                true
            }
            None => false,
        }
    }

    /// Per environment, what its totals grew by since the last call: what to add to the
    /// store's checkpoint. Environments with nothing new are left out.
    pub fn take_unsaved_totals(&self) -> Vec<(String, Totals)> {
        let control = self.lock_control();
        control
            .envs
            .iter()
            .map(|(env, e)| (env.clone(), e.stats.take_unsaved()))
            .filter(|(_, t)| *t != Totals::default())
            .collect()
    }

    /// Removes an environment's route, stops its health checks and drops its metrics,
    /// stickiness and split settings.
    pub fn remove_route(&self, env: &str) {
        let mut control = self.lock_control();
        // Dropping the checkers aborts their tasks.
        control.envs.remove(env);
        let current = self.table.load_full();
        if !current.envs.contains_key(env) {
            return;
        }
        let mut table = Table::clone(&current);
        table.hosts.retain(|_, r| r.env != env);
        table.envs.remove(env);
        self.table.store(Arc::new(table));
    }

    /// Turns sticky sessions on (`Some(cookie lifetime)`) or off (`None`) for an environment.
    ///
    /// When on, responses carry `Set-Cookie: SPROUT_STICKY=<backend id>; Path=/;
    /// Max-Age=<ttl>; HttpOnly; SameSite=Lax` unless the client already presented a valid
    /// cookie for that backend; requests presenting the cookie of a Healthy backend go to it.
    /// The setting survives `set_route` and is dropped by `remove_route`; it may be set before
    /// the first `set_route`.
    pub fn set_sticky(&self, env: &str, ttl: Option<Duration>) {
        let mut control = self.lock_control();
        let opts = {
            let c = control
                .envs
                .entry(env.to_owned())
                .or_insert_with(|| EnvControl::new(HealthCheck::default()));
            c.opts.sticky = ttl;
            c.opts.clone()
        };
        self.republish(env, opts);
    }

    /// Sends `split.percent` % of an environment's requests (deterministically, by a per-route
    /// counter) to healthy backends whose version is `split.version` and the rest to the other
    /// healthy backends; a side without a healthy backend hands its share to the other side.
    /// `None` = plain round robin over all healthy backends. Survives `set_route`.
    pub fn set_split(&self, env: &str, split: Option<Split>) {
        let mut control = self.lock_control();
        let opts = {
            let c = control
                .envs
                .entry(env.to_owned())
                .or_insert_with(|| EnvControl::new(HealthCheck::default()));
            c.opts.split = split.map(|s| Split {
                percent: s.percent.min(100),
                ..s
            });
            c.opts.clone()
        };
        self.republish(env, opts);
    }

    /// Publishes an environment's current route again with new options (control lock held).
    fn republish(&self, env: &str, opts: RouteOpts) {
        let current = self.table.load_full();
        let Some(old) = current.envs.get(env) else {
            return;
        };
        let route = Arc::new(Route::new(
            old.env.clone(),
            old.hosts.clone(),
            old.backends.clone(),
            opts,
            old.stats.clone(),
            Some(old),
        ));
        let mut table = Table::clone(&current);
        for r in table.hosts.values_mut() {
            if r.env == env {
                *r = route.clone();
            }
        }
        table.envs.insert(env.to_owned(), route);
        self.table.store(Arc::new(table));
    }

    /// Takes a backend out of rotation at once (state Draining): it gets no new request, not
    /// even sticky ones, while requests in flight to it finish (see [`Balancer::in_flight`]).
    /// Draining sticks across `set_route` until the backend leaves the route. Returns false
    /// if the environment has no such backend.
    pub fn drain(&self, env: &str, backend_id: &str) -> bool {
        let mut control = self.lock_control();
        let table = self.table.load();
        let Some(backend) = table.envs.get(env).and_then(|r| r.backend(backend_id)) else {
            return false;
        };
        if let Some(c) = control.envs.get_mut(env) {
            c.drained.insert(backend_id.to_owned());
        }
        if backend.health.set_draining(true) {
            info!(
                env,
                backend = backend_id,
                in_flight = backend.stats.in_flight(),
                "backend draining; out of rotation"
            );
        }
        true
    }

    /// Requests currently being proxied to a backend (0 if unknown). A request counts from
    /// the start of the upstream request until its response body has been sent or dropped.
    pub fn in_flight(&self, env: &str, backend_id: &str) -> u64 {
        let table = self.table.load();
        table
            .envs
            .get(env)
            .and_then(|r| r.backend(backend_id))
            .map_or(0, |b| b.stats.in_flight())
    }

    /// Metrics of an environment over the last 10 s, plus its totals; `None` without a route.
    pub fn metrics(&self, env: &str) -> Option<EnvMetrics> {
        let table = self.table.load();
        table
            .envs
            .get(env)
            .map(|r| metrics::env_metrics(&r.stats()))
    }

    /// All routes' metrics in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let table = self.table.load();
        let mut routes: Vec<_> = table.envs.values().map(|r| r.stats()).collect();
        routes.sort_by(|a, b| a.env.cmp(b.env));
        metrics::prometheus(&routes)
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

    /// Whether a backend is in rotation (Healthy: passed its checks and not draining).
    pub fn is_healthy(&self, env: &str, backend_id: &str) -> bool {
        let table = self.table.load();
        table
            .envs
            .get(env)
            .and_then(|r| r.backend(backend_id))
            .is_some_and(|b| b.health.is_healthy())
    }

    /// The route for a request: an absolute-form target's authority takes precedence over
    /// the Host header (RFC 9112 §3.2.2). Lock-free: a snapshot of the table.
    pub(crate) fn route_for(
        &self,
        authority: Option<&str>,
        host: Option<&str>,
    ) -> Result<Arc<Route>, ProxyError> {
        let raw = match (authority, host) {
            (Some(a), _) => a,
            (None, Some(h)) => h,
            (None, None) => return Err(ProxyError::MissingHost),
        };
        let host = normalize_host(wire::host_of(raw).ok_or(ProxyError::InvalidHost)?);
        if host.is_empty() {
            return Err(ProxyError::InvalidHost);
        }
        let table = self.table.load();
        match table.hosts.get(host.as_ref()) {
            Some(route) => Ok(route.clone()),
            None => Err(ProxyError::UnknownHost(host.into_owned())),
        }
    }

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // A panic elsewhere while holding the lock must not wedge the control plane.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A trusted proxy as written in settings: a network (`10.0.0.0/8`) or one address
/// (`10.0.0.1`, `::1`).
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is not an address or a network (e.g. 10.0.0.1, 10.0.0.0/8)"))
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
            success_codes: (200, 399),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trusted_proxies_parse() {
        let net = super::parse_trusted_proxy;
        assert!(net("10.0.0.1")
            .unwrap()
            .contains(&"10.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!net("10.0.0.1")
            .unwrap()
            .contains(&"10.0.0.2".parse::<std::net::IpAddr>().unwrap()));
        assert!(net("10.0.0.0/8")
            .unwrap()
            .contains(&"10.9.9.9".parse::<std::net::IpAddr>().unwrap()));
        assert!(net("::1").is_ok());
        assert!(net("proxy.local").unwrap_err().contains("proxy.local"));
    }
}
