//! Restarting an environment's instances (Beanstalk's "restart app servers"): one at a time,
//! each drained and stopped like any removed instance; the reconciler starts its
//! replacement, and the next waits until the environment serves at full strength again.

use super::Environments;
use crate::error::{ControlError, Result};
use sprout_core::plan::RemoveReason;
use sprout_core::{EnvOp, Severity, Tier};
use sprout_store::EnvRow;
use sprout_store::EnvironmentStore as _;
use std::time::{Duration, Instant};

impl Environments {
    pub async fn restart(&self, env_name: &str, by: Option<&str>) -> Result<usize> {
        let env = self.shared.live_env(env_name).await?;
        if !env.status.allows(EnvOp::Restart) {
            return Err(ControlError::Conflict(format!(
                "environment '{}' is {}; restart it once that ends",
                env.name, env.status
            )));
        }
        let ids: Vec<String> = self
            .shared
            .env_containers(&env)
            .await?
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| c.labels.get("sprout.instance").cloned())
            .collect();
        let who = by.unwrap_or("system");
        let message = format!(
            "restarting {} instance(s), one at a time (by {who})",
            ids.len()
        );
        self.shared
            .store()
            .add_event(env.id, Severity::Info, &message)
            .await?;
        let control = self.clone();
        let count = ids.len();
        tokio::spawn(async move {
            if let Err(e) = control.rolling_restart(&env, ids).await {
                tracing::warn!(env = %env.name, error = %e, "restart stopped");
                let _ = control
                    .shared
                    .store()
                    .add_event(env.id, Severity::Warn, &format!("restart stopped: {e}"))
                    .await;
            }
        });
        Ok(count)
    }

    pub(crate) async fn rolling_restart(&self, env: &EnvRow, ids: Vec<String>) -> Result<()> {
        let deadline = Instant::now() + self.shared.config().operation_timeout;
        for id in ids {
            self.wait_full_strength(env, deadline).await?;
            let containers = self.shared.env_containers(env).await?;
            let Some(c) = containers
                .iter()
                .find(|c| c.labels.get("sprout.instance") == Some(&id))
            else {
                continue; // already gone (replaced or scaled in meanwhile)
            };
            let settings = env.settings();
            self.reconciler
                .spawn_drain(env, &id, c, RemoveReason::Restart, &settings)
                .await?;
            // Wait until it is gone, so the strength check below sees its replacement.
            while self
                .shared
                .env_containers(env)
                .await?
                .iter()
                .any(|c| c.labels.get("sprout.instance") == Some(&id))
            {
                if Instant::now() > deadline {
                    return Err(ControlError::Unavailable(format!(
                        "instance {id} did not stop in time"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            self.shared.wake();
        }
        self.wait_full_strength(env, deadline).await?;
        self.shared
            .store()
            .add_event(env.id, Severity::Info, "restart finished")
            .await?;
        Ok(())
    }

    /// Waits until the environment has its desired count of serving instances.
    async fn wait_full_strength(&self, env: &EnvRow, deadline: Instant) -> Result<()> {
        loop {
            let fresh = self.shared.store().environment_by_id(env.id).await?;
            let desired = usize::try_from(fresh.desired).unwrap_or(0);
            let serving = if fresh.tier == Tier::Web {
                self.shared
                    .balancer()
                    .backends(&fresh.name)
                    .iter()
                    .filter(|b| b.healthy)
                    .count()
            } else {
                self.shared
                    .env_containers(&fresh)
                    .await?
                    .iter()
                    .filter(|c| c.running)
                    .count()
            };
            if serving >= desired {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ControlError::Unavailable(format!(
                    "only {serving} of {desired} instances serve; gave up waiting"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
