//! Scheduled scaling actions ("at 08:00 min=4; at 20:00 min=2"), run by
//! tokio-cron-scheduler. The store keeps them; the jobs are made again at every start.

use super::Scaling;
use crate::error::{ControlError, Result};
use sprout_core::api;
use sprout_store::EnvironmentStore as _;
use sprout_store::ScheduledActionRow;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Five-field cron (minute first) gains a seconds field; six fields pass as they are.
pub(crate) fn normalize_cron(cron: &str) -> Result<String> {
    let fields = cron.split_whitespace().count();
    match fields {
        5 => Ok(format!("0 {}", cron.trim())),
        6 | 7 => Ok(cron.trim().to_string()),
        _ => Err(ControlError::Invalid(format!(
            "'{cron}' is not a cron expression: five fields (minute hour day month weekday) or six (seconds first)"
        ))),
    }
}

fn view(row: &ScheduledActionRow) -> api::ScheduledAction {
    api::ScheduledAction {
        name: row.name.clone(),
        cron: row.cron.clone(),
        min: row.min.and_then(|v| u32::try_from(v).ok()),
        max: row.max.and_then(|v| u32::try_from(v).ok()),
        desired: row.desired.and_then(|v| u32::try_from(v).ok()),
    }
}

impl Scaling {
    fn job_for(&self, env_id: i64, name: &str, cron: &str) -> Result<Job> {
        let scaling = self.clone();
        let name = name.to_string();
        Job::new_async(cron, move |_, _| {
            let (scaling, name) = (scaling.clone(), name.clone());
            Box::pin(async move {
                if let Err(e) = scaling.run_scheduled(env_id, &name).await {
                    tracing::warn!(env_id, action = %name, error = %e, "scheduled action failed");
                }
            })
        })
        .map_err(|e| ControlError::Invalid(format!("'{cron}' is not a valid cron expression: {e}")))
    }

    /// Starts the scheduler with every stored action.
    pub(crate) async fn start_schedules(&self) -> Result<()> {
        let scheduler = JobScheduler::new()
            .await
            .map_err(|e| ControlError::Internal(format!("cron scheduler: {e}")))?;
        scheduler
            .start()
            .await
            .map_err(|e| ControlError::Internal(format!("cron scheduler: {e}")))?;
        let mut schedules = self.schedules.lock().await;
        schedules.scheduler = Some(scheduler);
        for row in self.shared.store().scheduled_actions(None).await? {
            match self.job_for(row.env_id, &row.name, &row.cron) {
                Ok(job) => {
                    if let Some(s) = &schedules.scheduler {
                        if let Ok(id) = s.add(job).await {
                            schedules.jobs.insert((row.env_id, row.name.clone()), id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(action = %row.name, error = %e, "skipping a scheduled action")
                }
            }
        }
        Ok(())
    }

    /// Stops running scheduled actions (a next server takes them over); `start_schedules`
    /// starts them again.
    pub(crate) async fn stop_schedules(&self) {
        let mut schedules = self.schedules.lock().await;
        schedules.jobs.clear();
        if let Some(mut scheduler) = schedules.scheduler.take() {
            if let Err(e) = scheduler.shutdown().await {
                tracing::warn!(error = %e, "could not stop the cron scheduler");
            }
        }
    }

    pub(crate) async fn add_schedule(
        &self,
        env_name: &str,
        action: &api::ScheduledAction,
        by: Option<&str>,
    ) -> Result<api::ScheduledAction> {
        let env = self.shared.live_env(env_name).await?;
        sprout_core::EnvName::parse(&action.name).map_err(|e| {
            ControlError::Invalid(e.to_string().replace("environment name", "action name"))
        })?;
        if action.min.is_none() && action.max.is_none() && action.desired.is_none() {
            return Err(ControlError::Invalid(
                "a scheduled action sets at least one of min, max, desired".into(),
            ));
        }
        let cron = normalize_cron(&action.cron)?;
        let job = self.job_for(env.id, &action.name, &cron)?;
        let row = self
            .shared
            .store()
            .add_scheduled_action(
                env.id,
                &action.name,
                &cron,
                action.min.map(i64::from),
                action.max.map(i64::from),
                action.desired.map(i64::from),
                by,
            )
            .await?;
        let mut schedules = self.schedules.lock().await;
        if let Some(s) = &schedules.scheduler {
            let id = s
                .add(job)
                .await
                .map_err(|e| ControlError::Internal(format!("cron scheduler: {e}")))?;
            schedules.jobs.insert((env.id, row.name.clone()), id);
        }
        let message = format!(
            "scheduled action '{}' added by {} ({})",
            row.name,
            by.unwrap_or("system"),
            row.cron
        );
        self.shared
            .store()
            .add_event(env.id, sprout_core::Severity::Info, &message)
            .await?;
        Ok(view(&row))
    }

    pub(crate) async fn list_schedules(&self, env_name: &str) -> Result<Vec<api::ScheduledAction>> {
        let env = self.shared.live_env(env_name).await?;
        Ok(self
            .shared
            .store()
            .scheduled_actions(Some(env.id))
            .await?
            .iter()
            .map(view)
            .collect())
    }

    pub(crate) async fn remove_schedule(
        &self,
        env_name: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<()> {
        let env = self.shared.live_env(env_name).await?;
        let Some(row) = self
            .shared
            .store()
            .remove_scheduled_action(env.id, name)
            .await?
        else {
            return Err(ControlError::NotFound(format!(
                "scheduled action '{name}' of '{}' not found",
                env.name
            )));
        };
        let mut schedules = self.schedules.lock().await;
        if let Some(id) = schedules.jobs.remove(&(env.id, row.name.clone())) {
            if let Some(s) = &schedules.scheduler {
                let _ = s.remove(&id).await;
            }
        }
        let message = format!(
            "scheduled action '{name}' removed by {}",
            by.unwrap_or("system")
        );
        self.shared
            .store()
            .add_event(env.id, sprout_core::Severity::Info, &message)
            .await?;
        Ok(())
    }

    async fn run_scheduled(&self, env_id: i64, name: &str) -> Result<()> {
        let env = self.shared.store().environment_by_id(env_id).await?;
        let Ok(transition) = env.status.begin(sprout_core::EnvOp::Schedule) else {
            return Ok(());
        };
        let Some(row) = self
            .shared
            .store()
            .scheduled_actions(Some(env_id))
            .await?
            .into_iter()
            .find(|r| r.name == name)
        else {
            return Ok(());
        };
        let req = api::ScaleRequest {
            instances: None,
            min: row.min.and_then(|v| u32::try_from(v).ok()),
            max: row.max.and_then(|v| u32::try_from(v).ok()),
        };
        let desired = row.desired.and_then(|v| u32::try_from(v).ok());
        let who = format!("scheduled action '{name}'");
        self.scale_to(&env, &transition, &req, desired, &who).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_forms() {
        assert_eq!(
            normalize_cron("0 8 * * *").ok().as_deref(),
            Some("0 0 8 * * *")
        );
        assert_eq!(
            normalize_cron("*/2 * * * * *").ok().as_deref(),
            Some("*/2 * * * * *")
        );
        assert!(normalize_cron("8am").is_err());
    }
}
