//! The autoscaler: samples each environment's trigger metric once per period and applies
//! the decision rule of `sprout_core::scaling` (breach duration, thresholds, steps,
//! cooldown). A decision changes the desired count; the reconciler does the rest.

use super::Scaling;
use crate::error::Result;
use sprout_core::scaling::{decide, Fleet, Metric, Sample};
use sprout_core::{EnvOp, EnvSettings};
use sprout_store::EnvRow;
use sprout_store::EnvironmentStore as _;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

impl Scaling {
    pub(crate) async fn run_autoscaler(&self, shutdown: CancellationToken) {
        tracing::info!("autoscaler started");
        loop {
            match self.shared.store().active_environments().await {
                Ok(active) => {
                    let passes = active.envs.into_iter().map(|env| async move {
                        if let Err(e) = self.autoscale_env(&env).await {
                            tracing::warn!(env = %env.name, error = %e, "autoscaling pass failed");
                        }
                    });
                    futures_util::future::join_all(passes).await;
                }
                Err(e) => tracing::warn!(error = %e, "autoscaler cannot read the store"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        tracing::info!("autoscaler stopped");
    }

    async fn autoscale_env(&self, env: &EnvRow) -> Result<()> {
        let settings = env.settings();
        let trigger = settings.trigger();
        // Scaling waits while a deployment or another operation runs.
        if trigger.metric == Metric::None || !env.status.allows(EnvOp::Autoscale) {
            return Ok(());
        }
        let due = self
            .state
            .lock()
            .map(|m| {
                m.get(&env.id)
                    .and_then(|s| s.last_sample)
                    .is_none_or(|t| t.elapsed() >= trigger.period)
            })
            .unwrap_or(false);
        if !due {
            return Ok(());
        }
        let value = self.sample(env, &settings).await?;
        let now = now_ms();
        let fleet = Fleet {
            desired: u32::try_from(env.desired).unwrap_or(0),
            min: settings.min,
            max: settings.max,
            last_scaled_ms: None,
        };
        let decision = {
            let Ok(mut all) = self.state.lock() else {
                return Ok(());
            };
            let state = all.entry(env.id).or_default();
            state.last_sample = Some(Instant::now());
            if let Some(value) = value {
                state.samples.push_back(Sample { at_ms: now, value });
            }
            let keep = (trigger.breach_duration + trigger.period * 2).as_millis() as u64;
            while state
                .samples
                .front()
                .is_some_and(|s| now.saturating_sub(s.at_ms) > keep)
            {
                state.samples.pop_front();
            }
            let samples: Vec<Sample> = state.samples.iter().copied().collect();
            let fleet = Fleet {
                last_scaled_ms: state.last_scaled_ms,
                ..fleet
            };
            let decision = decide(&trigger, &samples, now, fleet);
            if decision.is_some() {
                state.last_scaled_ms = Some(now);
                state.samples.clear();
            }
            decision
        };
        if let Some(d) = decision {
            tracing::info!(env = %env.name, from = d.from, to = d.to, reason = %d.reason, "autoscaling");
            let transition = env.status.begin(EnvOp::Autoscale)?;
            self.shared
                .store()
                .set_desired(env, &transition, i64::from(d.to), &d.reason)
                .await?;
            self.shared.wake();
        }
        Ok(())
    }

    /// The trigger metric's value now, or None when there is nothing to measure.
    async fn sample(&self, env: &EnvRow, settings: &EnvSettings) -> Result<Option<f64>> {
        let statistic = settings.scaling_statistic;
        Ok(match settings.scaling_metric {
            Metric::None => None,
            Metric::Requests => {
                let Some(m) = self.shared.balancer().metrics(&env.name) else {
                    return Ok(None);
                };
                let serving = self
                    .shared
                    .balancer()
                    .backends(&env.name)
                    .iter()
                    .filter(|b| b.healthy)
                    .count()
                    .max(1);
                Some(m.requests_per_sec / serving as f64)
            }
            Metric::Latency => self.shared.balancer().metrics(&env.name).map(|m| m.p99_ms),
            Metric::Cpu => {
                let limit_cores = f64::from(settings.instance_type.limits().millicpus) / 1000.0;
                let containers = self.shared.env_containers(env).await?;
                let reads = containers.iter().filter(|c| c.running).map(|c| {
                    let zone = c.zone().to_string();
                    async move {
                        self.shared
                            .runtime_for(&zone)
                            .usage(&c.id)
                            .await
                            .ok()
                            .flatten()
                    }
                });
                let values: Vec<f64> = futures_util::future::join_all(reads)
                    .await
                    .into_iter()
                    .flatten()
                    .map(|(cores, _memory)| cores / limit_cores * 100.0)
                    .collect();
                statistic.apply(&values)
            }
            Metric::Backlog => self.queue_backlog_per_instance(env).await,
        })
    }

    /// Messages waiting (visible) per serving worker instance, like Beanstalk's
    /// ApproximateNumberOfMessagesVisible trigger.
    async fn queue_backlog_per_instance(&self, env: &EnvRow) -> Option<f64> {
        if env.tier != sprout_core::Tier::Worker {
            return None;
        }
        let stats = self.queues.queue_stats(&env.name).await.ok()?;
        let serving = self
            .shared
            .balancer()
            .backends(&env.name)
            .iter()
            .filter(|b| b.healthy)
            .count()
            .max(1);
        Some(stats.visible as f64 / serving as f64)
    }
}
