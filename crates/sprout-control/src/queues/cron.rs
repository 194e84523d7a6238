//! Periodic tasks: the `cron.yaml` of each live worker environment's version, scheduled with
//! tokio-cron-scheduler. Each tick is recorded in the store in the same transaction as its
//! message, so it enqueues exactly one message even if a restarted scheduler sees it again.
//! Deploying another version replaces the schedule (checked every few seconds).

use super::{now_ms, prepare, Queues};
use sprout_core::cron::CronTask;
use sprout_core::queue::{
    Attributes, MessageAttribute, ATTR_PATH, ATTR_SCHEDULED_AT, ATTR_TASK_NAME,
};
use sprout_core::Tier;
use sprout_store::EnvironmentStore as _;
use sprout_store::Tick;
use std::collections::HashMap;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Beanstalk's body for periodic-task messages.
const TASK_BODY: &str = "elasticbeanstalk scheduled job";

impl Queues {
    pub(crate) async fn run_cron(&self, shutdown: CancellationToken) {
        let mut scheduler = match JobScheduler::new().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the cron scheduler; periodic tasks are off");
                return;
            }
        };
        if let Err(e) = scheduler.start().await {
            tracing::error!(error = %e, "cannot start the cron scheduler; periodic tasks are off");
            return;
        }
        tracing::info!("cron started");
        // env id -> (what the schedule was made from, its jobs)
        let mut registered: HashMap<i64, (String, Vec<Uuid>)> = HashMap::new();
        loop {
            if let Err(e) = self.sync_cron(&scheduler, &mut registered).await {
                tracing::warn!(error = %e, "cron sync failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
        if let Err(e) = scheduler.shutdown().await {
            tracing::warn!(error = %e, "cron scheduler did not stop cleanly");
        }
        tracing::info!("cron stopped");
    }

    async fn sync_cron(
        &self,
        scheduler: &JobScheduler,
        registered: &mut HashMap<i64, (String, Vec<Uuid>)>,
    ) -> crate::error::Result<()> {
        let mut wanted: HashMap<i64, (String, Vec<CronTask>)> = HashMap::new();
        for env in self.shared.store().active_environments().await?.envs {
            if !env.status.is_live() || env.tier != Tier::Worker {
                continue;
            }
            let manifest = env.manifest;
            if manifest.cron.cron.is_empty() {
                continue;
            }
            let key = format!(
                "{}:{}",
                env.version_id,
                serde_json::to_string(&manifest.cron).unwrap_or_default()
            );
            wanted.insert(env.id, (key, manifest.cron.cron));
        }
        let stale: Vec<i64> = registered
            .iter()
            .filter(|(id, (key, _))| wanted.get(id).map(|(k, _)| k) != Some(key))
            .map(|(id, _)| *id)
            .collect();
        for env_id in stale {
            if let Some((_, jobs)) = registered.remove(&env_id) {
                for job in jobs {
                    if let Err(e) = scheduler.remove(&job).await {
                        tracing::warn!(env_id, error = %e, "could not remove a cron job");
                    }
                }
                tracing::info!(env_id, "periodic tasks unscheduled");
            }
        }
        for (env_id, (key, tasks)) in wanted {
            if registered.contains_key(&env_id) {
                continue;
            }
            let mut jobs = Vec::new();
            for task in tasks {
                let queues = self.clone();
                let schedule = task.schedule_with_seconds();
                let task_for_job = task.clone();
                let job = Job::new_async(schedule.as_str(), move |_id, _sched| {
                    let queues = queues.clone();
                    let task = task_for_job.clone();
                    Box::pin(async move { queues.fire_tick(env_id, &task).await })
                });
                match job {
                    Ok(job) => match scheduler.add(job).await {
                        Ok(id) => jobs.push(id),
                        Err(e) => {
                            tracing::warn!(env_id, task = %task.name, error = %e, "could not schedule a task")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(env_id, task = %task.name, %schedule, error = %e, "bad schedule");
                        let _ = self
                            .shared.store()
                            .add_event(
                                env_id,
                                sprout_core::Severity::Error,
                                &format!("cron.yaml: task '{}' has a schedule cron cannot read: {schedule}", task.name),
                            )
                            .await;
                    }
                }
            }
            tracing::info!(env_id, tasks = jobs.len(), "periodic tasks scheduled");
            registered.insert(env_id, (key, jobs));
        }
        Ok(())
    }

    /// One tick of a task: record it and enqueue its message, once.
    async fn fire_tick(&self, env_id: i64, task: &CronTask) {
        let scheduled = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let result = async {
            let env = self.shared.store().environment_by_id(env_id).await?;
            let queue = self.ensure_worker_queue(&env).await?;
            let mut attributes = Attributes::new();
            attributes.insert(ATTR_TASK_NAME.into(), MessageAttribute::string(&task.name));
            attributes.insert(
                ATTR_SCHEDULED_AT.into(),
                MessageAttribute::string(&scheduled),
            );
            attributes.insert(ATTR_PATH.into(), MessageAttribute::string(&task.url));
            let out = prepare(TASK_BODY, &attributes, 0)?;
            // A task firing every second at a worker that never answers must not fill the store.
            let sent = self
                .shared
                .store()
                .send_tick(
                    &Tick {
                        env_id,
                        task: &task.name,
                        scheduled_at: &scheduled,
                    },
                    &queue,
                    &out.row,
                    now_ms(),
                    &self.shared.config().queue_quota,
                )
                .await?;
            Ok::<_, crate::error::ControlError>(sent)
        }
        .await;
        match result {
            Ok(true) => {
                tracing::info!(env_id, task = %task.name, %scheduled, "periodic task enqueued");
                self.queue_changed();
            }
            Ok(false) => {
                tracing::debug!(env_id, task = %task.name, %scheduled, "tick already recorded")
            }
            Err(e) => {
                tracing::warn!(env_id, task = %task.name, error = %e, "periodic task not enqueued")
            }
        }
    }
}
