use crate::sealed::PROPERTIES;
use crate::{now, parse_enum, unique_or, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sprout_core::api::OperationOutcome;
use sprout_core::{EnvSettings, EnvStatus, Mode, Severity};
use std::collections::BTreeMap;

/// An environment joined with its application and the version it runs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvRow {
    pub id: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub version_id: i64,
    pub version: String,
    /// The golden image of the version (None until built, or for user-data).
    pub image: Option<String>,
    pub platform: String,
    pub manifest: String,
    pub previous_version_id: Option<i64>,
    pub tier: String,
    pub mode: String,
    pub status: String,
    pub cname: String,
    pub instance_type: String,
    pub bootstrap: String,
    pub min_instances: i64,
    pub max_instances: i64,
    pub desired: i64,
    pub properties: String,
    /// JSON of `sprout_core::EnvSettings`.
    pub settings: String,
    /// The last health verdict (`sprout_core::HealthStatus`).
    pub health: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
}

impl EnvRow {
    /// Every setting; rows from before settings existed get their mode's defaults.
    pub fn settings(&self) -> EnvSettings {
        let mode: Mode = self.mode.parse().unwrap_or(Mode::Dev);
        let mut base = serde_json::to_value(EnvSettings::for_mode(mode)).unwrap_or_default();
        if let (Some(base), Ok(serde_json::Value::Object(stored))) = (
            base.as_object_mut(),
            serde_json::from_str::<serde_json::Value>(&self.settings),
        ) {
            base.extend(stored);
        }
        let mut settings: EnvSettings =
            serde_json::from_value(base).unwrap_or_else(|_| EnvSettings::for_mode(mode));
        if let Ok(t) = self.instance_type.parse() {
            settings.instance_type = t;
        }
        settings.min = u32::try_from(self.min_instances).unwrap_or(settings.min);
        settings.max = u32::try_from(self.max_instances).unwrap_or(settings.max);
        settings
    }

    pub fn status(&self) -> Result<EnvStatus> {
        parse_enum(&self.status, "environment status")
    }

    pub fn properties(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.properties).unwrap_or_default()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperationRow {
    pub id: i64,
    pub env_id: i64,
    pub kind: String,
    pub version_label: Option<String>,
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub message: Option<String>,
    pub policy: Option<String>,
    pub batch: Option<String>,
    pub before_state: Option<String>,
    pub requests_before: Option<i64>,
    pub failed_before: Option<i64>,
    pub requests: Option<i64>,
    pub failed: Option<i64>,
}

/// What an operation changes and what it needs to know to undo itself.
#[derive(Debug, Clone, Default)]
pub struct OperationStart<'a> {
    pub kind: &'a str,
    pub new_version: Option<(i64, &'a str)>,
    pub new_settings: Option<&'a EnvSettings>,
    pub new_properties: Option<&'a BTreeMap<String, String>>,
    pub new_desired: Option<i64>,
    pub policy: Option<String>,
    pub batch: Option<String>,
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

impl OperationRow {
    pub fn outcome(&self) -> OperationOutcome {
        match self.outcome.as_str() {
            "succeeded" => OperationOutcome::Succeeded,
            "failed" => OperationOutcome::Failed,
            _ => OperationOutcome::Running,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceRow {
    pub id: String,
    pub env_id: i64,
    pub version_label: String,
    pub zone: String,
    pub container_id: Option<String>,
    pub address: Option<String>,
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub healthy_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
    pub removed_why: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub name: String,
    pub app_id: i64,
    pub version_id: i64,
    pub version_label: String,
    pub tier: String,
    pub mode: String,
    pub cname: String,
    pub bootstrap: String,
    pub settings: EnvSettings,
    pub desired: i64,
    pub properties: BTreeMap<String, String>,
    pub started_by: Option<String>,
}

const ENV_SELECT: &str = "SELECT e.id, e.name, e.app_id, a.name AS app, e.version_id, v.label AS version, v.image,
    v.platform, v.manifest, e.previous_version_id, e.tier, e.mode, e.status, e.cname, e.instance_type, e.bootstrap,
    e.min_instances, e.max_instances, e.desired, e.properties, e.settings, e.health, e.created_at, e.updated_at,
    e.terminated_at
    FROM environments e JOIN apps a ON a.id = e.app_id JOIN versions v ON v.id = e.version_id";

async fn event(
    conn: &mut sqlx::SqliteConnection,
    env_id: i64,
    app_id: Option<i64>,
    severity: Severity,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (env_id, app_id, severity, message, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(env_id)
    .bind(app_id)
    .bind(severity.as_str())
    .bind(message)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Creates an environment (Launching) with its launch operation and first event, atomically.
    pub async fn create_environment(&self, new: &NewEnvironment) -> Result<(EnvRow, OperationRow)> {
        let mut tx = self.pool().begin().await?;
        let properties = serde_json::to_string(&new.properties)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let properties = self.seal(PROPERTIES, &properties)?;
        let settings =
            serde_json::to_string(&new.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at = now();
        let (env_id,): (i64,) = sqlx::query_as(
            "INSERT INTO environments (name, app_id, version_id, tier, mode, status, cname, instance_type, bootstrap,
                min_instances, max_instances, desired, properties, settings, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'Launching', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.app_id)
        .bind(new.version_id)
        .bind(&new.tier)
        .bind(&new.mode)
        .bind(&new.cname)
        .bind(new.settings.instance_type.as_str())
        .bind(&new.bootstrap)
        .bind(i64::from(new.settings.min))
        .bind(i64::from(new.settings.max))
        .bind(new.desired)
        .bind(&properties)
        .bind(&settings)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            unique_or(e, || format!("an environment named '{}' or with CNAME '{}' already exists", new.name, new.cname))
        })?;
        let op = sqlx::query_as::<_, OperationRow>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy)
             VALUES (?, 'launch', ?, ?, ?, 'running', 'all-at-once') RETURNING *",
        )
        .bind(env_id)
        .bind(&new.version_label)
        .bind(&new.started_by)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let who = new.started_by.as_deref().unwrap_or("system");
        event(
            &mut tx,
            env_id,
            Some(new.app_id),
            Severity::Info,
            &format!(
                "createEnvironment is starting: {} {} tier, version {}, {} instance(s) of type {} (by {who})",
                new.mode, new.tier, new.version_label, new.desired, new.settings.instance_type
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((self.environment_by_id(env_id).await?, op))
    }

    pub async fn environment_by_id(&self, id: i64) -> Result<EnvRow> {
        let row = sqlx::query_as::<_, EnvRow>(&format!("{ENV_SELECT} WHERE e.id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("environment {id} not found")))?;
        self.open_env(row)
    }

    /// An environment row as it leaves the store: its properties opened.
    fn open_env(&self, mut row: EnvRow) -> Result<EnvRow> {
        row.properties = self.open_secret(PROPERTIES, &row.properties)?;
        Ok(row)
    }

    /// The live environment of that name, or else the most recently terminated one.
    pub async fn get_environment(&self, name: &str) -> Result<Option<EnvRow>> {
        sqlx::query_as::<_, EnvRow>(&format!(
            "{ENV_SELECT} WHERE e.name = ? ORDER BY (e.status = 'Terminated'), e.id DESC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .map(|row| self.open_env(row))
        .transpose()
    }

    pub async fn list_environments(
        &self,
        app: Option<&str>,
        include_terminated: bool,
    ) -> Result<Vec<EnvRow>> {
        let mut sql = format!("{ENV_SELECT} WHERE 1 = 1");
        if app.is_some() {
            sql.push_str(" AND a.name = ?");
        }
        if !include_terminated {
            sql.push_str(" AND e.status <> 'Terminated'");
        }
        sql.push_str(" ORDER BY e.name, e.id");
        let mut query = sqlx::query_as::<_, EnvRow>(&sql);
        if let Some(app) = app {
            query = query.bind(app);
        }
        query
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|row| self.open_env(row))
            .collect()
    }

    /// Every environment the control loops must look after.
    pub async fn active_environments(&self) -> Result<Vec<EnvRow>> {
        self.list_environments(None, false).await
    }

    /// Starts an operation if the environment is still in `from` (optimistic concurrency):
    /// moves it to `to`, applies what the operation changes (version, settings, properties,
    /// desired count) while remembering the state before, records the operation and an
    /// event. A running operation that `to` supersedes (terminate during a deploy) is
    /// closed as failed.
    pub async fn begin_operation(
        &self,
        env: &EnvRow,
        from: EnvStatus,
        to: EnvStatus,
        start: &OperationStart<'_>,
    ) -> Result<OperationRow> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        let before = BeforeState {
            version_id: env.version_id,
            version: env.version.clone(),
            settings: env.settings.clone(),
            properties: self.seal(PROPERTIES, &env.properties)?,
            desired: env.desired,
        };
        let before_json =
            serde_json::to_string(&before).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let changed = sqlx::query(
            "UPDATE environments SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(env.id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "environment '{}' changed while the request was handled; try again",
                env.name
            )));
        }
        if let Some((version_id, _)) = start.new_version {
            sqlx::query("UPDATE environments SET previous_version_id = version_id, version_id = ? WHERE id = ?")
                .bind(version_id)
                .bind(env.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(settings) = start.new_settings {
            write_settings(&mut tx, env.id, settings).await?;
        }
        if let Some(properties) = start.new_properties {
            let json = serde_json::to_string(properties)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("UPDATE environments SET properties = ? WHERE id = ?")
                .bind(self.seal(PROPERTIES, &json)?)
                .bind(env.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(desired) = start.new_desired {
            sqlx::query("UPDATE environments SET desired = ? WHERE id = ?")
                .bind(desired)
                .bind(env.id)
                .execute(&mut *tx)
                .await?;
        }
        let superseded = sqlx::query(
            "UPDATE operations SET outcome = 'failed', finished_at = ?, message = ? WHERE env_id = ? AND outcome = 'running'",
        )
        .bind(at)
        .bind(format!("superseded by {}", start.kind))
        .bind(env.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if superseded > 0 {
            event(
                &mut tx,
                env.id,
                Some(env.app_id),
                Severity::Warn,
                &format!("the running operation was superseded by {}", start.kind),
            )
            .await?;
        }
        let op = sqlx::query_as::<_, OperationRow>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy, batch,
                before_state, requests_before, failed_before)
             VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(env.id)
        .bind(start.kind)
        .bind(start.new_version.map(|(_, label)| label).unwrap_or(&env.version))
        .bind(start.started_by)
        .bind(at)
        .bind(&start.policy)
        .bind(&start.batch)
        .bind(&before_json)
        .bind(start.totals.map(|t| t.0))
        .bind(start.totals.map(|t| t.1))
        .fetch_one(&mut *tx)
        .await?;
        event(
            &mut tx,
            env.id,
            Some(env.app_id),
            Severity::Info,
            start.message,
        )
        .await?;
        tx.commit().await?;
        Ok(op)
    }

    /// Closes a failed operation and starts its rollback in one transaction: the
    /// environment gets back the version, settings, properties and count it had before,
    /// stays Updating, and a `rollback` operation (same policy) brings the fleet back.
    /// Returns None when the state moved on (another pass or a user got there first).
    pub async fn fail_and_roll_back(
        &self,
        env: &EnvRow,
        operation: &OperationRow,
        totals: Option<(i64, i64)>,
        message: &str,
    ) -> Result<Option<OperationRow>> {
        let Some(before) = operation
            .before_state
            .as_deref()
            .and_then(|b| serde_json::from_str::<BeforeState>(b).ok())
        else {
            return Ok(None);
        };
        let mut tx = self.pool().begin().await?;
        let at = now();
        let closed = sqlx::query(
            "UPDATE operations SET outcome = 'failed', finished_at = ?, message = ?,
                requests = MAX(0, ? - COALESCE(requests_before, 0)), failed = MAX(0, ? - COALESCE(failed_before, 0))
             WHERE id = ? AND outcome = 'running'",
        )
        .bind(at)
        .bind(message)
        .bind(totals.map(|t| t.0))
        .bind(totals.map(|t| t.1))
        .bind(operation.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE environments SET version_id = ?, previous_version_id = NULL, settings = ?, properties = ?, desired = ?,
                status = 'Updating', updated_at = ? WHERE id = ?",
        )
        .bind(before.version_id)
        .bind(&before.settings)
        .bind(self.reseal(PROPERTIES, &before.properties)?)
        .bind(before.desired)
        .bind(at)
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
        // Keep the size columns in line with the restored settings.
        if let Ok(settings) = serde_json::from_str::<EnvSettings>(&before.settings) {
            if before.settings != "{}" {
                write_settings(&mut tx, env.id, &settings).await?;
            }
        }
        event(&mut tx, env.id, Some(env.app_id), Severity::Error, message).await?;
        let rollback = sqlx::query_as::<_, OperationRow>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy, batch,
                requests_before, failed_before)
             VALUES (?, 'rollback', ?, 'sprout', ?, 'running', ?, ?, ?, ?) RETURNING *",
        )
        .bind(env.id)
        .bind(&before.version)
        .bind(at)
        .bind(&operation.policy)
        .bind(&operation.batch)
        .bind(totals.map(|t| t.0))
        .bind(totals.map(|t| t.1))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE operations SET rolled_back_by = ? WHERE id = ?")
            .bind(rollback.id)
            .bind(operation.id)
            .execute(&mut *tx)
            .await?;
        event(
            &mut tx,
            env.id,
            Some(env.app_id),
            Severity::Warn,
            &format!(
                "rolling back to version {} (operation {})",
                before.version, rollback.id
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(rollback))
    }

    /// Applies settings that need no new instances (health checks, stickiness, …) at once,
    /// recorded as a finished `configure` operation and an event.
    pub async fn apply_settings(
        &self,
        env: &EnvRow,
        settings: &EnvSettings,
        by: Option<&str>,
        message: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        write_settings(&mut tx, env.id, settings).await?;
        sqlx::query("UPDATE environments SET updated_at = ? WHERE id = ?")
            .bind(at)
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, finished_at, outcome, message)
             VALUES (?, 'configure', ?, ?, ?, ?, 'succeeded', ?)",
        )
        .bind(env.id)
        .bind(&env.version)
        .bind(by)
        .bind(at)
        .bind(at)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        event(&mut tx, env.id, Some(env.app_id), Severity::Info, message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a new health verdict and the event that says so.
    pub async fn set_health(
        &self,
        env: &EnvRow,
        health: &str,
        severity: Severity,
        message: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE environments SET health = ? WHERE id = ?")
            .bind(health)
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        event(&mut tx, env.id, Some(env.app_id), severity, message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exchanges two live environments' CNAMEs in one transaction.
    pub async fn swap_cnames(&self, a: &EnvRow, b: &EnvRow, by: Option<&str>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        // Through a placeholder: the CNAME index is unique among live environments.
        let placeholder = format!("~swap-{}", a.id);
        for (id, cname) in [
            (a.id, placeholder.as_str()),
            (b.id, a.cname.as_str()),
            (a.id, b.cname.as_str()),
        ] {
            let changed = sqlx::query("UPDATE environments SET cname = ?, updated_at = ? WHERE id = ? AND status <> 'Terminated'")
                .bind(cname)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(
                    "an environment of the swap changed; try again".into(),
                ));
            }
        }
        let who = by.unwrap_or("system");
        for (env, cname) in [(a, &b.cname), (b, &a.cname)] {
            event(
                &mut tx,
                env.id,
                Some(env.app_id),
                Severity::Info,
                &format!("CNAME swapped: now answers as '{cname}' (by {who})"),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An environment's operations, newest first.
    pub async fn operations(&self, env_id: i64, limit: i64) -> Result<Vec<OperationRow>> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "SELECT * FROM operations WHERE env_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(env_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Changes the desired count (bounded by the caller), with an event.
    pub async fn set_desired(&self, env: &EnvRow, desired: i64, message: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE environments SET desired = ?, updated_at = ? WHERE id = ?")
            .bind(desired)
            .bind(now())
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        event(&mut tx, env.id, Some(env.app_id), Severity::Info, message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the running operation: the environment moves to `status`, the operation gets its
    /// outcome and the requests served and failed while it ran (from the balancer's
    /// `totals` now, against those at its start), and an event says how it ended.
    ///
    /// Conditional on the environment still being in `from` with `operation` running: a pass
    /// of the control loop that read an older state cannot close a newer operation. Returns
    /// false (and changes nothing) when the state moved on.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_operation(
        &self,
        env: &EnvRow,
        from: EnvStatus,
        operation: Option<i64>,
        status: EnvStatus,
        outcome: OperationOutcome,
        totals: Option<(i64, i64)>,
        message: &str,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        let still =
            sqlx::query("UPDATE environments SET updated_at = ? WHERE id = ? AND status = ?")
                .bind(at)
                .bind(env.id)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if still == 0 {
            return Ok(false);
        }
        if let Some(op) = operation {
            let (running,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM operations WHERE id = ? AND outcome = 'running'",
            )
            .bind(op)
            .fetch_one(&mut *tx)
            .await?;
            if running == 0 {
                return Ok(false);
            }
        }
        let terminated_at = (status == EnvStatus::Terminated).then_some(at);
        sqlx::query("UPDATE environments SET status = ?, updated_at = ?, terminated_at = COALESCE(?, terminated_at) WHERE id = ?")
            .bind(status.as_str())
            .bind(at)
            .bind(terminated_at)
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        let outcome_text = match outcome {
            OperationOutcome::Running => "running",
            OperationOutcome::Succeeded => "succeeded",
            OperationOutcome::Failed => "failed",
        };
        sqlx::query(
            "UPDATE operations SET outcome = ?, finished_at = ?, message = ?,
                requests = MAX(0, ? - COALESCE(requests_before, 0)), failed = MAX(0, ? - COALESCE(failed_before, 0))
             WHERE env_id = ? AND outcome = 'running'",
        )
        .bind(outcome_text)
        .bind(at)
        .bind(message)
        .bind(totals.map(|t| t.0))
        .bind(totals.map(|t| t.1))
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
        let severity = if outcome == OperationOutcome::Failed {
            Severity::Error
        } else {
            Severity::Info
        };
        event(&mut tx, env.id, Some(env.app_id), severity, message).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn current_operation(&self, env_id: i64) -> Result<Option<OperationRow>> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "SELECT * FROM operations WHERE env_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(env_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The newest operation of each environment, by environment id: one query for a listing
    /// instead of one per environment.
    pub async fn latest_operations(&self) -> Result<std::collections::HashMap<i64, OperationRow>> {
        let rows = sqlx::query_as::<_, OperationRow>(
            "SELECT o.* FROM operations o \
             JOIN (SELECT env_id, MAX(id) AS id FROM operations GROUP BY env_id) newest \
             ON newest.id = o.id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| (r.env_id, r)).collect())
    }

    pub async fn insert_instance(&self, row: &InstanceRow) -> Result<InstanceRow> {
        Ok(sqlx::query_as::<_, InstanceRow>(
            "INSERT INTO instances (id, env_id, version_label, zone, container_id, address, seq, created_at)
             VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM instances), ?) RETURNING *",
        )
        .bind(&row.id)
        .bind(row.env_id)
        .bind(&row.version_label)
        .bind(&row.zone)
        .bind(&row.container_id)
        .bind(&row.address)
        .bind(row.created_at)
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn instance_started(
        &self,
        id: &str,
        container_id: &str,
        address: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE instances SET container_id = ?, address = ? WHERE id = ?")
            .bind(container_id)
            .bind(address)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the first time an instance passed its health check; true if this call set it.
    pub async fn instance_healthy(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE instances SET healthy_at = ? WHERE id = ? AND healthy_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn instance_removed(&self, id: &str, why: &str) -> Result<()> {
        sqlx::query("UPDATE instances SET removed_at = ?, removed_why = ? WHERE id = ? AND removed_at IS NULL")
            .bind(now())
            .bind(why)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn live_instances(&self, env_id: i64) -> Result<Vec<InstanceRow>> {
        Ok(sqlx::query_as::<_, InstanceRow>(
            "SELECT * FROM instances WHERE env_id = ? AND removed_at IS NULL ORDER BY seq",
        )
        .bind(env_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn get_instance(&self, id: &str) -> Result<Option<InstanceRow>> {
        Ok(
            sqlx::query_as::<_, InstanceRow>("SELECT * FROM instances WHERE id = ?")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

async fn write_settings(
    conn: &mut sqlx::SqliteConnection,
    env_id: i64,
    settings: &EnvSettings,
) -> Result<()> {
    let json = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE environments SET settings = ?, instance_type = ?, min_instances = ?, max_instances = ? WHERE id = ?")
        .bind(json)
        .bind(settings.instance_type.as_str())
        .bind(i64::from(settings.min))
        .bind(i64::from(settings.max))
        .bind(env_id)
        .execute(conn)
        .await?;
    Ok(())
}
