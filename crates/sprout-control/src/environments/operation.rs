//! The operation resource readers (and `--wait`) follow: `GET /operations/{id}`.

use super::Environments;
use crate::error::{ControlError, Result};
use sprout_core::api::{self, OperationOutcome, OperationPhase};
use sprout_core::Tier;
use sprout_store::{EnvRow, EnvironmentStore};

impl Environments {
    /// `GET /operations/{id}`: the operation, where it stands and how it ended.
    pub async fn operation(&self, id: i64) -> Result<api::OperationStatus> {
        let op = self
            .shared
            .store()
            .operation(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("operation {id} not found")))?;
        let state = self.shared.store().operation_state(id).await?;
        let env = self.shared.store().environment_by_id(op.env_id).await?;
        let rollback = match state.rolled_back_by {
            Some(rb) => self
                .shared
                .store()
                .operation(rb)
                .await?
                .map(|r| r.outcome()),
            None => None,
        };
        let outcome = op.outcome();
        let running = outcome == OperationOutcome::Running;
        let (requests, failed) = if running {
            match self.shared.totals(&env.name) {
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
            kind: op.kind.to_string(),
            version: op.version_label.clone(),
            policy: op.policy.map(|p| p.to_string()),
            batch: op.batch.map(|b| b.to_string()),
            started_by: op.started_by.clone(),
            started_at: op.started_at,
            finished_at: op.finished_at,
            duration_secs: op
                .finished_at
                .map(|f| (f - op.started_at).num_milliseconds() as f64 / 1000.0),
            outcome,
            phase: OperationPhase::of(outcome, state.canary_since.is_some(), rollback),
            environment_status: env.status,
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
        let web = env.tier == Tier::Web;
        let healthy = on_version.iter().filter(|i| !web || i.healthy).count();
        Ok(api::OperationProgress {
            desired: u32::try_from(env.desired).unwrap_or(0),
            on_version: u32::try_from(on_version.len()).unwrap_or(u32::MAX),
            healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
        })
    }
}
