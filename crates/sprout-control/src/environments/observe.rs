//! Read-only views the dashboard needs beyond the REST API's: per-instance resource use and
//! an environment's periodic tasks.

use super::{Environments, Usage};
use crate::error::Result;
use sprout_core::cron::CronTask;
use std::collections::HashMap;

impl Environments {
    /// CPU and memory of each running instance of an environment, by instance id. Docker
    /// samples over about a second, so the instances are read concurrently.
    pub(crate) async fn instance_usage(&self, env_name: &str) -> Result<HashMap<String, Usage>> {
        let env = self.shared.live_env(env_name).await?;
        let containers = self.shared.env_containers(&env).await?;
        let reads = containers.iter().filter(|c| c.running).map(|c| {
            let zone = c.labels.get("sprout.zone").cloned().unwrap_or_default();
            let id = c.labels.get("sprout.instance").cloned().unwrap_or_default();
            async move {
                let usage = self
                    .shared
                    .runtime_for(&zone)
                    .usage(&c.id)
                    .await
                    .ok()
                    .flatten();
                usage.map(|(cpu_cores, memory_bytes)| {
                    (
                        id,
                        Usage {
                            cpu_cores,
                            memory_bytes,
                        },
                    )
                })
            }
        });
        Ok(futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect())
    }

    /// The periodic tasks (`cron.yaml`) of the version an environment runs.
    pub(crate) async fn cron_tasks(&self, env_name: &str) -> Result<Vec<CronTask>> {
        let env = self.shared.live_env(env_name).await?;
        Ok(env.manifest.cron.cron)
    }
}
