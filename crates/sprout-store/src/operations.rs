//! What the control loop knows about a running operation between its passes (steps that
//! failed in a row, instances that exited, when a canary first served in full) and which
//! rollback followed it: kept on the operation's row, so a restarted control plane (or a
//! second one) continues where the last pass left off. Migration 0014.

use crate::environments::OperationRecord;
use crate::{OperationRow, Result, Store};
use chrono::{DateTime, Utc};
use sprout_core::api::OperationOutcome;

/// The runtime state of one operation (the columns of migration 0014).
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct OperationState {
    /// Passes in a row whose step failed (reset by a pass that got through).
    pub step_failures: i64,
    /// The newest step failure.
    pub last_error: Option<String>,
    /// Instances of the target revision that exited while it ran.
    pub exits: i64,
    /// When the whole new set of a traffic-splitting deployment first served.
    pub canary_since: Option<DateTime<Utc>>,
    /// The rollback started when it failed (or was aborted).
    pub rolled_back_by: Option<i64>,
}

const STATE_COLUMNS: &str = "step_failures, last_error, exits, canary_since, rolled_back_by";

impl Store {
    /// Operation `id`, if there is one.
    pub async fn operation(&self, id: i64) -> Result<Option<OperationRow>> {
        sqlx::query_as::<_, OperationRecord>("SELECT * FROM operations WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(OperationRecord::parse)
            .transpose()
    }

    /// The runtime state of operation `id` (the default state if there is no such row).
    pub async fn operation_state(&self, id: i64) -> Result<OperationState> {
        Ok(sqlx::query_as::<_, OperationState>(&format!(
            "SELECT {STATE_COLUMNS} FROM operations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .unwrap_or_default())
    }

    /// The name of the environment operation `id` belongs to, if the operation exists.
    pub async fn operation_env_name(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT e.name FROM operations o JOIN environments e ON e.id = o.env_id WHERE o.id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Counts a failed step of a running operation and remembers why. Returns the failures
    /// in a row, or None when the operation is no longer running.
    pub async fn record_step_failure(&self, id: i64, error: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar::<_, i64>(
            "UPDATE operations SET step_failures = step_failures + 1, last_error = ?
             WHERE id = ? AND outcome = ? RETURNING step_failures",
        )
        .bind(error)
        .bind(id)
        .bind(OperationOutcome::Running.as_str())
        .fetch_optional(self.pool())
        .await?)
    }

    /// A pass got through: the next failure counts from one again (the last error stays).
    pub async fn clear_step_failures(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE operations SET step_failures = 0 WHERE id = ? AND step_failures > 0")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Counts an instance of the target revision that exited during operation `id`.
    pub async fn record_exit(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE operations SET exits = exits + 1 WHERE id = ? AND outcome = ?")
            .bind(id)
            .bind(OperationOutcome::Running.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks the moment the canary of operation `id` first served in full (kept if already
    /// set); returns that moment.
    pub async fn canary_serving(&self, id: i64) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "UPDATE operations SET canary_since = COALESCE(canary_since, ?) WHERE id = ?
             RETURNING canary_since",
        )
        .bind(crate::now())
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .flatten())
    }
}
