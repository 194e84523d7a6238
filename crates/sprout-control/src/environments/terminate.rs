//! Terminating an environment: the reconciler removes its instances, route and network.

use super::Environments;
use crate::error::Result;
use sprout_core::api;
use sprout_core::EnvOp;
use sprout_store::{EnvironmentStore, OperationStart};

impl Environments {
    pub async fn terminate(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        let env = self.shared.live_env(env_name).await?;
        let transition = self.begin(&env, EnvOp::Terminate).await?;
        let who = by.unwrap_or("system");
        let message = format!("terminateEnvironment is starting (by {who})");
        let start = OperationStart {
            started_by: by,
            message: &message,
            ..Default::default()
        };
        self.shared
            .store()
            .begin_operation(&env, &transition, &start)
            .await?;
        self.shared.wake();
        self.environment_view(&self.shared.store().environment_by_id(env.id).await?)
            .await
    }
}
