//! Blue/green: exchanging two web environments' CNAMEs, atomically in the balancer.

use super::Environments;
use crate::error::{ControlError, Result};
use sprout_core::{EnvOp, Tier};
use sprout_store::EnvironmentStore;

impl Environments {
    /// Exchanges two web environments' CNAMEs (blue/green), atomically in the balancer.
    pub async fn swap(&self, a: &str, b: &str, by: Option<&str>) -> Result<()> {
        let env_a = self.shared.live_env(a).await?;
        let env_b = self.shared.live_env(b).await?;
        if env_a.id == env_b.id {
            return Err(ControlError::Invalid(
                "swap needs two different environments".into(),
            ));
        }
        for env in [&env_a, &env_b] {
            if env.tier != Tier::Web {
                return Err(ControlError::Invalid(format!(
                    "'{}' is a worker environment: it has no CNAME to swap",
                    env.name
                )));
            }
        }
        let transition = self.begin(&env_a, EnvOp::Swap).await?;
        let other = self.begin(&env_b, EnvOp::Swap).await?;
        if other.from != transition.from {
            return Err(ControlError::Conflict(format!(
                "'{}' is {} and '{}' is {}; swap them when both are Ready",
                env_a.name, transition.from, env_b.name, other.from
            )));
        }
        self.shared
            .store()
            .swap_cnames(&env_a, &env_b, &transition, by)
            .await?;
        let env_a = self.shared.store().environment_by_id(env_a.id).await?;
        let env_b = self.shared.store().environment_by_id(env_b.id).await?;
        let mut routes = Vec::new();
        for env in [&env_a, &env_b] {
            let containers = self.shared.env_containers(env).await?;
            let all: Vec<&sprout_runtime::ContainerInfo> = containers.iter().collect();
            routes.push(self.reconciler.route_for(env, true, &all));
        }
        self.shared.balancer().set_routes(routes);
        tracing::info!(a = %env_a.name, b = %env_b.name, "CNAMEs swapped");
        Ok(())
    }
}
