//! The immutable route table that requests read through the `ArcSwap`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::uri::Authority;

use crate::health::Health;

/// One snapshot of all routes. Never mutated after being published.
#[derive(Default)]
pub(crate) struct Table {
    /// Normalised host name → route.
    pub(crate) hosts: HashMap<String, Arc<Route>>,
    /// Environment → route (including routes without hosts).
    pub(crate) envs: HashMap<String, Arc<Route>>,
}

pub(crate) struct Route {
    pub(crate) env: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) backends: Vec<Backend>,
    /// Round-robin position; shared by all requests of this route, lock-free.
    next: AtomicUsize,
}

pub(crate) struct Backend {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) version: String,
    /// Precomputed so building the upstream URI does not re-format the address per request.
    pub(crate) authority: Authority,
    /// Shared with the health checker task; survives route updates.
    pub(crate) health: Arc<Health>,
}

impl Route {
    pub(crate) fn new(
        env: String,
        hosts: Vec<String>,
        backends: Vec<Backend>,
        next: usize,
    ) -> Self {
        Self {
            env,
            hosts,
            backends,
            next: AtomicUsize::new(next),
        }
    }

    pub(crate) fn next_value(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Picks the next healthy backend round robin, or `None` if none is healthy.
    ///
    /// Counts healthy backends first and then takes the k-th one, so the rotation stays even
    /// when some backends are out (skipping forward would double the share of the backend
    /// after an unhealthy one). No allocation.
    pub(crate) fn pick(&self) -> Option<&Backend> {
        let healthy = self
            .backends
            .iter()
            .filter(|b| b.health.is_healthy())
            .count();
        if healthy == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % healthy;
        self.backends
            .iter()
            .filter(|b| b.health.is_healthy())
            .nth(k)
            // Health may flip between the two passes; any healthy backend will do then.
            .or_else(|| self.backends.iter().find(|b| b.health.is_healthy()))
    }
}
