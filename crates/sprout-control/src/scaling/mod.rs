//! Scaling: the autoscaler (`autoscale.rs`) and scheduled actions (`schedule.rs`), and the
//! one way either (or a user's `sprout scale`) changes an environment's bounds and desired
//! count. Owns the autoscaler's samples and the scheduled actions' jobs.

use crate::error::{setting, ControlError, Result};
use crate::queues::Queues;
use crate::shared::Shared;
use sprout_core::scaling::Sample;
use sprout_core::{api, Transition};
use sprout_store::EnvRow;
use sprout_store::EnvironmentStore as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_cron_scheduler::JobScheduler;
use uuid::Uuid;

mod autoscale;
mod schedule;

/// The autoscaler's memory of one environment: its samples and last decision.
#[derive(Debug, Default)]
struct ScaleState {
    samples: VecDeque<Sample>,
    last_sample: Option<Instant>,
    last_scaled_ms: Option<u64>,
}

/// The scheduled actions' scheduler and its jobs.
#[derive(Default)]
struct Schedules {
    scheduler: Option<JobScheduler>,
    jobs: HashMap<(i64, String), Uuid>,
}

/// Most instances one environment may ask for (a guard against typos like `--instances 200`).
pub(crate) const MAX_INSTANCES: u32 = 20;

/// The autoscaler and scheduled actions, with what they remember (in memory: a restarted
/// control plane samples afresh, and makes the scheduled actions' jobs again from the store).
#[derive(Clone)]
pub(crate) struct Scaling {
    shared: Arc<Shared>,
    /// The autoscaler's backlog trigger reads the worker queue.
    queues: Queues,
    /// Per environment: the autoscaler's samples and last decision.
    state: Arc<Mutex<HashMap<i64, ScaleState>>>,
    /// Scheduled actions' jobs, by (environment id, action name).
    schedules: Arc<tokio::sync::Mutex<Schedules>>,
}

impl Scaling {
    pub(crate) fn new(shared: Arc<Shared>, queues: Queues) -> Self {
        Self {
            shared,
            queues,
            state: Default::default(),
            schedules: Default::default(),
        }
    }

    /// New bounds (`req`) and/or a new desired count, kept within the bounds, recorded with
    /// `transition` (a user's scale, a scheduled action) and `who` in the events.
    pub(crate) async fn scale_to(
        &self,
        env: &EnvRow,
        transition: &Transition,
        req: &api::ScaleRequest,
        desired: Option<u32>,
        who: &str,
    ) -> Result<()> {
        let before = env.settings();
        let mut settings = before.clone();
        match (req.instances, req.min, req.max) {
            (None, None, None) if desired.is_none() => {
                return Err(ControlError::Invalid(
                    "give an instance count, or --min and/or --max".into(),
                ))
            }
            (Some(n), None, None) => (settings.min, settings.max) = (n, n),
            (Some(_), _, _) => {
                return Err(ControlError::Invalid(
                    "give an instance count or --min/--max, not both".into(),
                ))
            }
            (None, min, max) => {
                if let Some(min) = min {
                    settings.min = min;
                }
                if let Some(max) = max {
                    settings.max = max;
                }
            }
        }
        settings.validate(MAX_INSTANCES).map_err(setting)?;
        let desired = desired
            .map(i64::from)
            .unwrap_or(env.desired)
            .clamp(i64::from(settings.min), i64::from(settings.max));
        if settings != before {
            let message = format!(
                "scaling bounds changed by {who}: min {} → {}, max {} → {}",
                before.min, settings.min, before.max, settings.max
            );
            self.shared
                .store()
                .apply_settings(env, transition, &settings, Some(who), &message)
                .await?;
        }
        if desired != env.desired {
            let message = format!("desired instances {} → {desired} (by {who})", env.desired);
            self.shared
                .store()
                .set_desired(env, transition, desired, &message)
                .await?;
        }
        self.shared.wake();
        Ok(())
    }
}
