//! How operations end.
//!
//! Every operation ends. The reconciler closes it when the environment reaches its goal
//! (`settle_operation`); it fails when one of its steps fails [`STEP_ATTEMPTS`] passes in a
//! row (Docker refusing the environment's network, instances that cannot start), when it
//! outlives its time limit (whatever its kind), or for the reasons the reconciler reads
//! from the fleet (instances that keep exiting, a failed health check, a sick canary).
//! What a pass learns about the operation (step failures, exits, the canary's start) is kept
//! on its row, so a restarted control plane continues the count.

use super::Reconciler;
use crate::error::{ControlError, Result};
use sprout_core::api::{OperationOutcome, STEP_ATTEMPTS};
use sprout_core::{EnvOp, EnvSettings, EnvStatus, OpKind};
use sprout_store::{EnvRow, EnvironmentStore, OperationEnd, OperationRow};
use std::time::Duration;

impl Reconciler {
    /// How long any operation may run: the server's `--operation-timeout`, or the
    /// environment's `command_timeout` when that is shorter.
    pub(crate) fn time_limit(&self, settings: &EnvSettings) -> Duration {
        settings
            .command_timeout
            .min(self.shared.config().operation_timeout)
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
            .shared
            .store()
            .current_operation(env.id)
            .await?
            .filter(OperationRow::is_running)
        else {
            tracing::warn!(env = %env.name, error = %error, "reconcile of environment failed");
            return Ok(());
        };
        let error = error.to_string();
        let Some(failures) = self
            .shared
            .store()
            .record_step_failure(op.id, &error)
            .await?
        else {
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
        self.fail_operation(env, env.status, &op, &settings, &why)
            .await
    }

    /// Fails the running operation `op` because of `why`. The lifecycle says whether it
    /// rolls back (a deployment or configuration change, if the environment says so) and
    /// where it ends otherwise (a terminate stays Terminating: its instances are still
    /// removed; anything else ends Ready).
    pub(crate) async fn fail_operation(
        &self,
        env: &EnvRow,
        status: EnvStatus,
        op: &OperationRow,
        settings: &EnvSettings,
        why: &str,
    ) -> Result<()> {
        self.shared.balancer().set_split(&env.name, None);
        let kind = op.kind;
        let rollback = status
            .begin(EnvOp::Rollback)
            .ok()
            .filter(|_| kind.op().rule().rolls_back && settings.rollback);
        if let Some(rollback) = rollback {
            let message = format!("{kind} {} failed: {why}", op.id);
            self.shared
                .store()
                .fail_and_roll_back(env, op, &rollback, self.shared.totals(&env.name), &message)
                .await?;
        } else {
            let what = match (status, kind) {
                (EnvStatus::Launching, _) => "createEnvironment".to_string(),
                (_, OpKind::Terminate) => "terminateEnvironment".to_string(),
                (_, k) => format!("{k} {}", op.id),
            };
            let message = format!("{what} failed: {why}");
            self.finish(
                env,
                status,
                Some(op.id),
                status.failure(Some(kind)),
                OperationOutcome::Failed,
                &message,
            )
            .await?;
        }
        self.shared.wake();
        Ok(())
    }

    /// Closes the running operation if the environment is still where this pass saw it.
    pub(crate) async fn finish(
        &self,
        env: &EnvRow,
        from: EnvStatus,
        operation: Option<i64>,
        status: EnvStatus,
        outcome: OperationOutcome,
        message: &str,
    ) -> Result<()> {
        let end = OperationEnd {
            from,
            operation,
            to: status,
            outcome,
            totals: self.shared.totals(&env.name),
            message,
        };
        if self.shared.store().finish_operation(env, &end).await? {
            tracing::info!(env = %env.name, %status, ?outcome, message, "operation finished");
        } else {
            tracing::debug!(env = %env.name, "state moved on before the operation could be closed");
        }
        Ok(())
    }
}
