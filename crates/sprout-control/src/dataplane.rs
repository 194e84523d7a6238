//! Bringing the balancer back after a restart: every environment's route and the last known
//! health of every instance, from the store and Docker, before the new server's first accept
//! (issue 14). A server that started routing with an empty table answered 404, and with
//! every backend pending (waiting for `healthy_threshold` checks) 502.

use crate::{Control, Result};
use sprout_core::Tier;
use sprout_runtime::ContainerInfo;
use sprout_store::EnvironmentStore as _;
use std::collections::HashMap;
use std::net::SocketAddr;

impl Control {
    /// Installs the routes of every active environment, with the instances recorded in
    /// rotation at the last checkpoint ([`Control::checkpoint_health`]) in rotation at once.
    /// Changes nothing in Docker or the store. Returns how many routes it installed.
    pub async fn restore_routes(&self) -> Result<usize> {
        let known = self.store().backend_health().await?;
        self.balancer().restore_health(
            known
                .into_iter()
                .filter_map(|(_, id, addr)| Some((id, addr.parse::<SocketAddr>().ok()?))),
        );
        let envs = self.store().active_environments().await?.envs;
        let mut by_env: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        for c in self
            .list_containers(&[("sprout.server", self.server_id())])
            .await?
        {
            by_env
                .entry(c.label("sprout.env-id").to_string())
                .or_default()
                .push(c);
        }
        let mut routes = Vec::with_capacity(envs.len());
        for env in &envs {
            let containers = by_env.remove(&env.id.to_string()).unwrap_or_default();
            let all: Vec<&ContainerInfo> = containers.iter().collect();
            routes.push(self.route_for(env, env.status.is_live(), &all));
            let web = env.tier == Tier::Web;
            self.balancer()
                .set_sticky(&env.name, env.settings().sticky.filter(|_| web));
        }
        let count = routes.len();
        self.balancer().set_routes(routes);
        // Totals go on from where the previous servers' checkpoints left them, so a
        // deployment's counts (differences of totals) are never negative.
        let counts = self.store().request_counts().await?;
        for env in &envs {
            if let Some(&(requests, status_5xx, failed)) = counts.get(&env.id) {
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                self.balancer().restore_totals(
                    &env.name,
                    sprout_proxy::Totals {
                        requests: count(requests),
                        status_5xx: count(status_5xx),
                        failed: count(failed),
                    },
                );
            }
        }
        Ok(count)
    }

    /// Adds what the balancer counted since the last checkpoint to the store's totals.
    /// Called every 250 ms, before a hand-over and after the last request: a crash loses
    /// at most that much of the counts.
    pub async fn checkpoint_counts(&self) -> Result<()> {
        let unsaved = self.balancer().take_unsaved_totals();
        if unsaved.is_empty() {
            return Ok(());
        }
        let active = self.store().active_environments().await?;
        let ids: HashMap<String, i64> = active
            .envs
            .into_iter()
            .map(|e| (e.name, e.id))
            .chain(active.corrupt.into_iter().map(|c| (c.name, c.id)))
            .collect();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let rows: Vec<(i64, sprout_store::RequestCounts)> = unsaved
            .into_iter()
            .filter_map(|(env, t)| {
                Some((
                    *ids.get(&env)?,
                    (count(t.requests), count(t.status_5xx), count(t.failed)),
                ))
            })
            .collect();
        self.store().add_request_counts(&rows).await?;
        Ok(())
    }

    /// Records the backends in rotation if they changed since `last`; returns what it saved.
    /// Called after every reconcile pass and before a hand-over to the next server.
    pub async fn checkpoint_health(
        &self,
        last: Option<&[sprout_store::HealthyBackend]>,
    ) -> Result<Vec<sprout_store::HealthyBackend>> {
        let now: Vec<sprout_store::HealthyBackend> = self
            .balancer()
            .healthy_backends()
            .into_iter()
            .map(|(env, id, addr)| (env, id, addr.to_string()))
            .collect();
        if last != Some(now.as_slice()) {
            self.store().save_backend_health(&now).await?;
        }
        Ok(now)
    }
}
