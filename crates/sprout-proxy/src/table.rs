//! The immutable route table that requests read through the `ArcSwap`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tracing::warn;

use crate::health::Health;
use crate::metrics::{BackendRef, BackendStats, EnvStats, RouteStats};
use crate::Split;

/// Name of the stickiness cookie; its value is the backend id.
pub(crate) const STICKY_COOKIE: &str = "SPROUT_STICKY";

/// One snapshot of all routes. Never mutated after being published.
#[derive(Default, Clone)]
pub(crate) struct Table {
    /// Normalised host name → route.
    pub(crate) hosts: HashMap<String, Arc<Route>>,
    /// Environment → route (including routes without hosts).
    pub(crate) envs: HashMap<String, Arc<Route>>,
}

/// Per-environment options set outside [`crate::RouteSpec`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteOpts {
    /// Cookie lifetime when sticky sessions are on.
    pub(crate) sticky: Option<Duration>,
    pub(crate) split: Option<Split>,
}

pub(crate) struct Route {
    pub(crate) env: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) backends: Vec<Backend>,
    pub(crate) stats: Arc<EnvStats>,
    pub(crate) opts: RouteOpts,
    /// Round-robin position over all (or the non-canary) backends; lock-free.
    next: AtomicUsize,
    /// Round-robin position over the canary backends.
    next_canary: AtomicUsize,
    /// Request counter deciding the split, deterministically.
    split_next: AtomicU64,
    /// Rotation for retries, separate so a retry does not shift the main rotation (with one
    /// dead backend of two, every first attempt would then land on the dead one).
    next_retry: AtomicUsize,
}

#[derive(Clone)]
pub(crate) struct Backend {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) version: String,
    /// Shared with the health checker task; survives route updates.
    pub(crate) health: Arc<Health>,
    /// Keyed by env and backend id; survives route updates.
    pub(crate) stats: Arc<BackendStats>,
    /// Runs the split's version (computed when the route is built).
    pub(crate) canary: bool,
    /// Precomputed `Set-Cookie` value when sticky sessions are on (and the id is cookie-safe).
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl Route {
    /// Builds a route; counters continue from `prev` so an update does not restart rotation.
    pub(crate) fn new(
        env: String,
        hosts: Vec<String>,
        mut backends: Vec<Backend>,
        opts: RouteOpts,
        stats: Arc<EnvStats>,
        prev: Option<&Route>,
    ) -> Self {
        for b in &mut backends {
            b.canary = opts.split.as_ref().is_some_and(|s| s.version == b.version);
            b.set_cookie = opts.sticky.and_then(|ttl| {
                let v = sticky_cookie_value(&b.id, ttl);
                if v.is_none() {
                    warn!(env = %env, backend = %b.id, "backend id is not cookie-safe; no stickiness for it");
                }
                v
            });
        }
        Self {
            env,
            hosts,
            backends,
            stats,
            opts,
            next: AtomicUsize::new(prev.map_or(0, |p| p.next.load(Ordering::Relaxed))),
            next_canary: AtomicUsize::new(
                prev.map_or(0, |p| p.next_canary.load(Ordering::Relaxed)),
            ),
            split_next: AtomicU64::new(prev.map_or(0, |p| p.split_next.load(Ordering::Relaxed))),
            next_retry: AtomicUsize::new(prev.map_or(0, |p| p.next_retry.load(Ordering::Relaxed))),
        }
    }

    /// The route's counters and its backends', for the metrics.
    pub(crate) fn stats(&self) -> RouteStats<'_> {
        RouteStats {
            env: &self.env,
            stats: &self.stats,
            backends: self
                .backends
                .iter()
                .map(|b| BackendRef {
                    id: &b.id,
                    version: &b.version,
                    healthy: b.health.is_healthy(),
                    stats: &b.stats,
                })
                .collect(),
        }
    }

    pub(crate) fn backend(&self, id: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    /// Picks the next healthy backend, honouring the traffic split; `None` if none is healthy.
    pub(crate) fn pick(&self) -> Option<&Backend> {
        let Some(split) = &self.opts.split else {
            return self.pick_where(&self.next, |_| true);
        };
        // Deterministic and evenly spread: of any 100 consecutive requests exactly `percent`
        // go to the canary, interleaved rather than in one burst.
        let p = u64::from(split.percent.min(100));
        let c = self.split_next.fetch_add(1, Ordering::Relaxed) % 100;
        let canary = (c + 1) * p / 100 != c * p / 100;
        let canary_side = || self.pick_where(&self.next_canary, |b| b.canary);
        let stable_side = || self.pick_where(&self.next, |b| !b.canary);
        // A side without a healthy backend never fails a request: the other side takes it.
        if canary {
            canary_side().or_else(stable_side)
        } else {
            stable_side().or_else(canary_side)
        }
    }

    /// Picks a healthy backend other than `failed` (for a retry).
    pub(crate) fn pick_other(&self, failed: &Backend) -> Option<&Backend> {
        self.pick_where(&self.next_retry, |b| !std::ptr::eq(b, failed))
    }

    /// Round robin over the healthy backends matching `pred`.
    ///
    /// Counts the candidates first and then takes the k-th one, so the rotation stays even
    /// when some backends are out (skipping forward would double the share of the backend
    /// after an unhealthy one). No allocation.
    fn pick_where(
        &self,
        counter: &AtomicUsize,
        pred: impl Fn(&Backend) -> bool,
    ) -> Option<&Backend> {
        let ok = |b: &&Backend| b.health.is_healthy() && pred(b);
        let n = self.backends.iter().filter(ok).count();
        if n == 0 {
            return None;
        }
        let k = counter.fetch_add(1, Ordering::Relaxed) % n;
        self.backends
            .iter()
            .filter(ok)
            .nth(k)
            // Health may flip between the two passes; any candidate will do then.
            .or_else(|| self.backends.iter().find(ok))
    }
}

/// `SPROUT_STICKY=<id>; Path=/; Max-Age=<secs>; HttpOnly; SameSite=Lax`, if `id` may be a
/// cookie value (RFC 6265 cookie-octets).
fn sticky_cookie_value(id: &str, ttl: Duration) -> Option<HeaderValue> {
    let safe = !id.is_empty()
        && id
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E));
    if !safe {
        return None;
    }
    let value = format!(
        "{STICKY_COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        ttl.as_secs().max(1)
    );
    HeaderValue::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_value_only_for_safe_ids() {
        let v = sticky_cookie_value("i-1", Duration::from_secs(60)).unwrap();
        assert_eq!(
            v,
            "SPROUT_STICKY=i-1; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert!(sticky_cookie_value("a;b", Duration::from_secs(60)).is_none());
        assert!(sticky_cookie_value("a b", Duration::from_secs(60)).is_none());
    }
}
