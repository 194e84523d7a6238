//! How a pass judges the running operation: the canary's evaluation, why an operation
//! failed, closing it when the environment reached its goal, and health transitions.

use super::{Reconciler, Seen};
use crate::error::Result;
use sprout_core::api::OperationOutcome;
use sprout_core::plan::Observed;
use sprout_core::{EnvSettings, EnvStatus, HealthStatus, OpKind, Policy, Severity};
use sprout_proxy::Split;
use sprout_store::{EnvRow, EnvironmentStore, OperationRow, OperationState};

impl Reconciler {
    /// Traffic splitting: the new set gets `canary_percent` of requests; once all of it
    /// serves, it is evaluated for `evaluation`, then promoted (returns true).
    pub(super) async fn canary_step(
        &self,
        env: &EnvRow,
        op: &OperationRow,
        settings: &EnvSettings,
        observed: &[Observed],
        target: &str,
    ) -> Result<bool> {
        self.shared.balancer().set_split(
            &env.name,
            Some(Split {
                version: target.to_string(),
                percent: settings.canary_percent,
            }),
        );
        let serving = observed
            .iter()
            .filter(|o| o.revision == target && o.healthy)
            .count() as i64;
        if serving < env.desired {
            return Ok(false);
        }
        let Some(since) = self.shared.store().canary_serving(op.id).await? else {
            return Ok(false);
        };
        let evaluated = (chrono::Utc::now() - since).to_std().unwrap_or_default();
        Ok(evaluated >= settings.evaluation)
    }

    /// Why the running operation has failed, if it has: out of time, instances that keep
    /// exiting, a new instance that does not pass its checks in time, a sick canary.
    fn failure(
        &self,
        seen: &Seen<'_>,
        op: &OperationRow,
        state: &OperationState,
    ) -> Option<String> {
        let exits = state.exits;
        if exits > 2 * seen.env.desired.max(1) {
            return Some(format!(
                "instances of version {} keep exiting ({exits} exits); see `sprout logs {}`",
                seen.env.version, seen.env.name
            ));
        }
        if let Some(why) = self.timed_out(op, seen.settings) {
            return Some(why);
        }
        let now = chrono::Utc::now();
        let judged = self.shared.judge_instances(seen.env);
        for o in seen
            .observed
            .iter()
            .filter(|o| o.revision == seen.target && o.running && !o.healthy)
        {
            let Some(row) = seen.rows.get(&o.id) else {
                continue;
            };
            let age = (now - row.created_at).to_std().unwrap_or_default();
            if row.healthy_at.is_none() && age > seen.settings.health_grace {
                let last = judged
                    .get(&o.id)
                    .map(|j| j.verdict.causes.join("; "))
                    .unwrap_or_default();
                let backend = self
                    .shared
                    .balancer()
                    .backends(&seen.env.name)
                    .into_iter()
                    .find(|b| b.id == o.id);
                let check = backend
                    .and_then(|b| {
                        b.last_error.or(b
                            .last_status
                            .map(|s| format!("the health check answered {s}")))
                    })
                    .unwrap_or(last);
                return Some(format!(
                    "instance {} of version {} did not pass its health check within {} s ({check})",
                    o.id,
                    seen.env.version,
                    seen.settings.health_grace.as_secs()
                ));
            }
        }
        let splitting = op.policy == Some(Policy::TrafficSplitting);
        if splitting && seen.status == EnvStatus::Updating {
            for o in seen
                .observed
                .iter()
                .filter(|o| o.revision == seen.target && o.healthy)
            {
                if let Some(j) = judged.get(&o.id) {
                    if matches!(
                        j.verdict.status,
                        HealthStatus::Degraded | HealthStatus::Severe
                    ) {
                        return Some(format!(
                            "the canary instance {} is {}: {}",
                            o.id,
                            j.verdict.status,
                            j.verdict.causes.join("; ")
                        ));
                    }
                }
            }
        }
        None
    }

    /// Closes the running operation when the environment reached its goal, or when it
    /// failed (a deployment then rolls back, if the environment says so).
    pub(super) async fn settle_operation(
        &self,
        seen: &Seen<'_>,
        converged: bool,
        operation: Option<OperationRow>,
        state: &OperationState,
    ) -> Result<()> {
        let (env, status) = (seen.env, seen.status);
        if !status.is_transitional() {
            return Ok(());
        }
        let op_id = operation.as_ref().map(|op| op.id);
        let took = operation
            .as_ref()
            .map(|op| {
                format!(
                    "{:.1} s",
                    (chrono::Utc::now() - op.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let traffic = || {
            let (requests, failed) = match (self.shared.totals(&env.name), operation.as_ref()) {
                // Never below zero, should totals have lost a crash's last second.
                (Some((r, f)), Some(op)) => (
                    (r - op.requests_before.unwrap_or(0)).max(0),
                    (f - op.failed_before.unwrap_or(0)).max(0),
                ),
                _ => (0, 0),
            };
            format!("{requests} requests, {failed} failed")
        };
        let done = converged
            && seen.draining == 0
            && (status != EnvStatus::Terminating || seen.containers_left == 0);
        if done {
            let n = env.desired;
            let kind = operation.as_ref().map(|op| op.kind);
            let id = op_id.unwrap_or(0);
            let message = match (status, kind) {
                (EnvStatus::Terminating, _) => {
                    self.shared.balancer().remove_route(&env.name);
                    for engine in self.shared.engines() {
                        let _ = engine.remove_network(&self.shared.network_of(env)).await;
                    }
                    format!("terminateEnvironment completed successfully in {took}")
                }
                (EnvStatus::Launching, _) => format!(
                    "Successfully launched environment: {} (version {} on {n}/{n} healthy instances in {took})",
                    env.name, env.version
                ),
                (_, Some(OpKind::Rollback)) => format!(
                    "rollback {id} finished: back on {} on {n}/{n} instances in {took}, {}",
                    env.version,
                    traffic()
                ),
                (_, Some(OpKind::Configure)) => format!("configuration {id} applied on {n}/{n} instances in {took}, {}", traffic()),
                _ => format!(
                    "deployment {id} finished: {} on {n}/{n} instances in {took}, {}",
                    env.version,
                    traffic()
                ),
            };
            self.shared.balancer().set_split(&env.name, None);
            return self
                .finish(
                    env,
                    status,
                    op_id,
                    status.success(kind),
                    OperationOutcome::Succeeded,
                    &message,
                )
                .await;
        }
        let Some(op) = operation else { return Ok(()) };
        let why = if status == EnvStatus::Terminating {
            self.timed_out(&op, seen.settings)
        } else {
            self.failure(seen, &op, state)
        };
        match why {
            Some(why) => {
                self.fail_operation(env, status, &op, seen.settings, &why)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Records health transitions as events.
    pub(super) async fn track_health(&self, env: &EnvRow, status: EnvStatus) -> Result<()> {
        let verdict = self.shared.judge_environment(env, status);
        if verdict.status.as_str() == env.health {
            return Ok(());
        }
        let worse = matches!(
            verdict.status,
            HealthStatus::Warning | HealthStatus::Degraded | HealthStatus::Severe
        );
        let severity = if worse {
            Severity::Warn
        } else {
            Severity::Info
        };
        let causes = if verdict.causes.is_empty() {
            String::new()
        } else {
            format!(": {}", verdict.causes.join("; "))
        };
        let message = format!(
            "environment health has transitioned from {} to {} ({}){causes}",
            env.health,
            verdict.status,
            verdict.status.color()
        );
        self.shared
            .store()
            .set_health(env, verdict.status.as_str(), severity, &message)
            .await?;
        Ok(())
    }
}
