//! Read-only views the dashboard needs beyond the REST API's: per-instance resource use and
//! an environment's periodic tasks.

use crate::{Control, Result};
use sprout_core::cron::CronTask;
use std::collections::HashMap;

/// CPU (in cores, 1.0 = one full core) and memory (bytes) of one instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

impl Control {
    /// CPU and memory of each running instance of an environment, by instance id. Docker
    /// samples over about a second, so the instances are read concurrently.
    pub async fn instance_usage(&self, env_name: &str) -> Result<HashMap<String, Usage>> {
        let env = self.live_env(env_name).await?;
        let containers = self.env_containers(&env).await?;
        let reads = containers.iter().filter(|c| c.running).map(|c| {
            let zone = c.labels.get("sprout.zone").cloned().unwrap_or_default();
            let id = c.labels.get("sprout.instance").cloned().unwrap_or_default();
            async move {
                let usage = self.runtime_for(&zone).usage(&c.id).await.ok().flatten();
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
    pub async fn cron_tasks(&self, env_name: &str) -> Result<Vec<CronTask>> {
        let env = self.live_env(env_name).await?;
        Ok(env.manifest.cron.cron)
    }
}
