//! Operations: the row of each operation users or the control plane start on an environment
//! (what it changes, what it needs to undo itself, how it ended), and what the control loop
//! knows about a running operation between its passes (steps that
//! failed in a row, instances that exited, when a canary first served in full) and which
//! rollback followed it: kept on the operation's row, so a restarted control plane (or a
//! second one) continues where the last pass left off. Migration 0014.

use crate::{parse_field, Result, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sprout_core::api::OperationOutcome;
use sprout_core::{BatchSize, EnvSettings, EnvStatus, OpKind, Policy};
use std::collections::BTreeMap;

/// An operation, parsed.
#[derive(Debug, Clone)]
pub struct OperationRow {
    pub id: i64,
    pub env_id: i64,
    pub kind: OpKind,
    pub version_label: Option<String>,
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: OperationOutcome,
    pub message: Option<String>,
    pub policy: Option<Policy>,
    pub batch: Option<BatchSize>,
    pub before_state: Option<String>,
    pub requests_before: Option<i64>,
    pub failed_before: Option<i64>,
    pub requests: Option<i64>,
    pub failed: Option<i64>,
}

/// An operation row as SQLite holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct OperationRecord {
    id: i64,
    env_id: i64,
    kind: String,
    version_label: Option<String>,
    started_by: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    outcome: String,
    message: Option<String>,
    policy: Option<String>,
    batch: Option<String>,
    before_state: Option<String>,
    requests_before: Option<i64>,
    failed_before: Option<i64>,
    requests: Option<i64>,
    failed: Option<i64>,
}

pub(crate) const OPERATIONS: &str = "operations";

impl OperationRecord {
    pub(crate) fn parse(self) -> Result<OperationRow> {
        let id = self.id;
        Ok(OperationRow {
            kind: parse_field(OPERATIONS, id, "kind", &self.kind)?,
            outcome: parse_field(OPERATIONS, id, "outcome", &self.outcome)?,
            policy: self
                .policy
                .as_deref()
                .map(|p| parse_field(OPERATIONS, id, "policy", p))
                .transpose()?,
            batch: self
                .batch
                .as_deref()
                .map(|b| parse_field(OPERATIONS, id, "batch", b))
                .transpose()?,
            id,
            env_id: self.env_id,
            version_label: self.version_label,
            started_by: self.started_by,
            started_at: self.started_at,
            finished_at: self.finished_at,
            message: self.message,
            before_state: self.before_state,
            requests_before: self.requests_before,
            failed_before: self.failed_before,
            requests: self.requests,
            failed: self.failed,
        })
    }
}

impl OperationRow {
    pub fn outcome(&self) -> OperationOutcome {
        self.outcome
    }

    pub fn is_running(&self) -> bool {
        self.outcome == OperationOutcome::Running
    }
}

/// What an operation changes and what it needs to know to undo itself.
#[derive(Debug, Clone, Default)]
pub struct OperationStart<'a> {
    pub new_version: Option<(i64, &'a str)>,
    pub new_settings: Option<&'a EnvSettings>,
    pub new_properties: Option<&'a BTreeMap<String, String>>,
    pub new_desired: Option<i64>,
    pub policy: Option<Policy>,
    pub batch: Option<BatchSize>,
    /// The balancer's totals when the operation starts (requests, failed).
    pub totals: Option<(i64, i64)>,
    pub started_by: Option<&'a str>,
    pub message: &'a str,
}

/// The environment as it was before an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeforeState {
    pub version_id: i64,
    pub version: String,
    pub settings: String,
    pub properties: String,
    pub desired: i64,
}

/// How a running operation ends: conditional on the environment still being in `from` and
/// `operation` still running, so a pass that read an older state cannot close a newer one.
#[derive(Debug, Clone)]
pub struct OperationEnd<'a> {
    pub from: EnvStatus,
    pub operation: Option<i64>,
    pub to: EnvStatus,
    pub outcome: OperationOutcome,
    /// The balancer's totals now (requests, failed).
    pub totals: Option<(i64, i64)>,
    pub message: &'a str,
}

impl Store {
    pub(crate) async fn operations_query(
        &self,
        sql: &str,
        binds: &[i64],
    ) -> Result<Vec<OperationRow>> {
        let mut query = sqlx::query_as::<_, OperationRecord>(sql);
        for b in binds {
            query = query.bind(*b);
        }
        query
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(OperationRecord::parse)
            .collect()
    }
}

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
