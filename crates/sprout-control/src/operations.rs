//! How operations end, and the operation resource readers (and `--wait`) follow.
//!
//! Every operation ends. The reconciler closes it when the environment reaches its goal
//! (`settle_operation`); it fails when one of its steps fails [`STEP_ATTEMPTS`] passes in a
//! row (Docker refusing the environment's network, instances that cannot start), when it
//! outlives its time limit (whatever its kind), or for the reasons the reconciler reads
//! from the fleet (instances that keep exiting, a failed health check, a sick canary).
//! What a pass learns about the operation (step failures, exits, the canary's start) is kept
//! on its row, so a restarted control plane continues the count.

use crate::{Control, ControlError, Result};
use sprout_core::api::{self, OperationOutcome, OperationPhase, STEP_ATTEMPTS};
use sprout_core::{EnvSettings, EnvStatus, Tier};
use sprout_store::{EnvRow, OperationRow};
use std::time::Duration;

impl Control {
    /// How long any operation may run: the server's `--operation-timeout`, or the
    /// environment's `command_timeout` when that is shorter.
    pub(crate) fn time_limit(&self, settings: &EnvSettings) -> Duration {
        settings
            .command_timeout
            .min(self.config().operation_timeout)
    }

    /// Why `op` has run out of time, if it has.
    pub(crate) fn timed_out(&self, op: &OperationRow, settings: &EnvSettings) -> Option<String> {
        let elapsed = (chrono::Utc::now() - op.started_at)
            .to_std()
            .unwrap_or_default();
        let limit = self.time_limit(settings);
        (elapsed > limit).then(|| {
            format!(
                "not done within the operation timeout ({} s)",
                limit.as_secs()
            )
        })
    }

    /// A pass over `env` failed with `error`: counts it against the running operation, and
    /// fails the operation once its step failed [`STEP_ATTEMPTS`] times in a row or it ran
    /// out of time.
    pub(crate) async fn step_failed(&self, env: &EnvRow, error: &ControlError) -> Result<()> {
        let Some(op) = self
            .store()
            .current_operation(env.id)
            .await?
            .filter(|op| op.outcome() == OperationOutcome::Running)
        else {
            tracing::warn!(env = %env.name, error = %error, "reconcile of environment failed");
            return Ok(());
        };
        let error = error.to_string();
        let Some(failures) = self.store().record_step_failure(op.id, &error).await? else {
            return Ok(()); // it ended meanwhile
        };
        tracing::warn!(env = %env.name, operation = op.id, failures, error = %error, "a step of the operation failed");
        let settings = env.settings();
        let why = if failures >= i64::from(STEP_ATTEMPTS) {
            format!("{error} ({failures} attempts in a row)")
        } else if let Some(why) = self.timed_out(&op, &settings) {
            format!("{why}; last error: {error}")
        } else {
            return Ok(());
        };
        self.fail_operation(env, env.status()?, &op, &settings, &why)
            .await
    }

    /// Fails the running operation `op` because of `why`. A deployment or configuration
    /// change rolls back (if the environment says so); a terminate fails but the
    /// environment stays Terminating (its instances are still removed); anything else
    /// ends with the environment Ready.
    pub(crate) async fn fail_operation(
        &self,
        env: &EnvRow,
        status: EnvStatus,
        op: &OperationRow,
        settings: &EnvSettings,
        why: &str,
    ) -> Result<()> {
        self.balancer().set_split(&env.name, None);
        let kind = op.kind.as_str();
        if status == EnvStatus::Updating
            && matches!(kind, "deploy" | "configure")
            && settings.rollback
        {
            let message = format!("{kind} {} failed: {why}", op.id);
            self.store()
                .fail_and_roll_back(env, op, self.totals(&env.name), &message)
                .await?;
        } else {
            let (what, to) = match (status, kind) {
                (EnvStatus::Launching, _) => ("createEnvironment".to_string(), EnvStatus::Ready),
                (EnvStatus::Terminating, _) => {
                    ("terminateEnvironment".to_string(), EnvStatus::Terminating)
                }
                (_, k) => (format!("{k} {}", op.id), EnvStatus::Ready),
            };
            let message = format!("{what} failed: {why}");
            self.finish(
                env,
                status,
                Some(op.id),
                to,
                OperationOutcome::Failed,
                &message,
            )
            .await?;
        }
        self.wake();
        Ok(())
    }

    /// `GET /operations/{id}`: the operation, where it stands and how it ended.
    pub async fn operation(&self, id: i64) -> Result<api::OperationStatus> {
        let op = self
            .store()
            .operation(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("operation {id} not found")))?;
        let state = self.store().operation_state(id).await?;
        let env = self.store().environment_by_id(op.env_id).await?;
        let rollback = match state.rolled_back_by {
            Some(rb) => self.store().operation(rb).await?.map(|r| r.outcome()),
            None => None,
        };
        let outcome = op.outcome();
        let running = outcome == OperationOutcome::Running;
        let (requests, failed) = if running {
            match self.totals(&env.name) {
                Some((r, f)) => (
                    Some((r - op.requests_before.unwrap_or(0)).max(0)),
                    Some((f - op.failed_before.unwrap_or(0)).max(0)),
                ),
                None => (None, None),
            }
        } else {
            (op.requests, op.failed)
        };
        let progress = if running {
            Some(self.progress(&env).await?)
        } else {
            None
        };
        Ok(api::OperationStatus {
            id: op.id,
            environment: env.name.clone(),
            kind: op.kind.clone(),
            version: op.version_label.clone(),
            policy: op.policy.clone(),
            batch: op.batch.clone(),
            started_by: op.started_by.clone(),
            started_at: op.started_at,
            finished_at: op.finished_at,
            duration_secs: op
                .finished_at
                .map(|f| (f - op.started_at).num_milliseconds() as f64 / 1000.0),
            outcome,
            phase: OperationPhase::of(outcome, state.canary_since.is_some(), rollback),
            environment_status: env.status()?,
            message: op.message.clone(),
            progress,
            rolled_back_by: state.rolled_back_by,
            requests,
            failed,
            step_failures: u32::try_from(state.step_failures).unwrap_or(u32::MAX),
            last_error: state.last_error,
        })
    }

    /// The environment's instances against its goal.
    async fn progress(&self, env: &EnvRow) -> Result<api::OperationProgress> {
        let instances = self.instance_views(env).await?;
        let on_version: Vec<_> = instances
            .iter()
            .filter(|i| i.version == env.version && i.state == "running")
            .collect();
        let web = env.tier == Tier::Web.as_str();
        let healthy = on_version.iter().filter(|i| !web || i.healthy).count();
        Ok(api::OperationProgress {
            desired: u32::try_from(env.desired).unwrap_or(0),
            on_version: u32::try_from(on_version.len()).unwrap_or(u32::MAX),
            healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
        })
    }
}
