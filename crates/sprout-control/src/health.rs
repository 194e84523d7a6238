//! The health rules of `sprout_core::health` applied to what the balancer knows: each
//! instance's verdict and the environment's. The reconciler records the transitions; the
//! environment views show them.

use crate::shared::Shared;
use sprout_core::health::{self, CheckState, Verdict, Window};
use sprout_core::{EnvStatus, HealthStatus};
use sprout_proxy::BackendState;
use sprout_store::EnvRow;
use std::collections::HashMap;

/// What the balancer knows of one instance, judged by the health rules.
pub(crate) struct InstanceJudgement {
    pub verdict: Verdict,
    pub metrics: Option<sprout_proxy::BackendMetrics>,
}

impl Shared {
    /// Every instance of the balancer's route, judged by the health rules.
    pub(crate) fn judge_instances(&self, env: &EnvRow) -> HashMap<String, InstanceJudgement> {
        let metrics = self.balancer().metrics(&env.name);
        let mut per_backend: HashMap<String, sprout_proxy::BackendMetrics> = metrics
            .map(|m| m.backends.into_iter().map(|b| (b.id.clone(), b)).collect())
            .unwrap_or_default();
        self.balancer()
            .backends(&env.name)
            .into_iter()
            .map(|b| {
                let m = per_backend.remove(&b.id);
                let check = match b.state {
                    BackendState::Pending => CheckState::Pending,
                    BackendState::Healthy => CheckState::Healthy,
                    BackendState::Unhealthy => CheckState::Unhealthy,
                    BackendState::Draining => CheckState::Draining,
                };
                let window = m
                    .as_ref()
                    .map(|m| Window {
                        count: m.count,
                        status_5xx: m.status_5xx,
                        p99_ms: m.p99_ms,
                    })
                    .unwrap_or_default();
                let mut verdict = health::instance_health(check, &window);
                if check == CheckState::Unhealthy {
                    if let Some(why) = b
                        .last_error
                        .clone()
                        .or(b.last_status.map(|s| format!("health check answered {s}")))
                    {
                        verdict.causes.push(why);
                    }
                }
                (
                    b.id.clone(),
                    InstanceJudgement {
                        verdict,
                        metrics: m,
                    },
                )
            })
            .collect()
    }

    /// The environment's health by the rules in `sprout_core::health`.
    pub(crate) fn judge_environment(&self, env: &EnvRow, status: EnvStatus) -> Verdict {
        let judged = self.judge_instances(env);
        let states: Vec<HealthStatus> = judged.values().map(|j| j.verdict.status).collect();
        let window = self
            .balancer()
            .metrics(&env.name)
            .map(|m| Window {
                count: m.count,
                status_5xx: m.status_5xx,
                p99_ms: m.p99_ms,
            })
            .unwrap_or_default();
        health::environment_health(
            status,
            u32::try_from(env.desired).unwrap_or(0),
            &states,
            &window,
        )
    }
}
