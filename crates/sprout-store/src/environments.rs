//! The environment and operation half of the store: [`EnvironmentStore`](crate::EnvironmentStore) for SQLite,
//! every status change a lifecycle transition written `WHERE status = from`.

use crate::environment_row::{
    ActiveEnvironments, CorruptEnv, EnvRecord, EnvRow, NewEnvironment, ENV_SELECT,
};
use crate::operations::{
    BeforeState, OperationEnd, OperationRecord, OperationRow, OperationStart, OPERATIONS,
};
use crate::sealed::PROPERTIES;
use crate::{now, parse_json, to_json, unique_or, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sprout_core::api::OperationOutcome;
use sprout_core::{EnvSettings, EnvStatus, OpKind, Policy, Severity, Transition};
use std::collections::BTreeMap;

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

const RUNNING: OperationOutcome = OperationOutcome::Running;

impl Store {
    fn seal_properties(&self, properties: &BTreeMap<String, String>) -> Result<String> {
        self.seal(PROPERTIES, &to_json("properties", properties)?)
    }
}

impl crate::EnvironmentStore for Store {
    async fn create_environment(&self, new: &NewEnvironment) -> Result<(EnvRow, OperationRow)> {
        let launch = sprout_core::lifecycle::launch();
        let kind = launch.records.unwrap_or(OpKind::Launch);
        let mut tx = self.pool().begin().await?;
        let properties = self.seal_properties(&new.properties)?;
        let settings = to_json("settings", &new.settings)?;
        let at = now();
        let (env_id,): (i64,) = sqlx::query_as(
            "INSERT INTO environments (name, app_id, version_id, tier, mode, status, cname, instance_type, bootstrap,
                min_instances, max_instances, desired, properties, settings, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.app_id)
        .bind(new.version_id)
        .bind(new.tier.as_str())
        .bind(new.mode.as_str())
        .bind(launch.during.as_str())
        .bind(&new.cname)
        .bind(new.settings.instance_type.as_str())
        .bind(new.bootstrap.as_str())
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
        let op = sqlx::query_as::<_, OperationRecord>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(env_id)
        .bind(kind.as_str())
        .bind(&new.version_label)
        .bind(&new.started_by)
        .bind(at)
        .bind(RUNNING.as_str())
        .bind(Policy::AllAtOnce.as_str())
        .fetch_one(&mut *tx)
        .await?
        .parse()?;
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

    async fn environment_by_id(&self, id: i64) -> Result<EnvRow> {
        let row = sqlx::query_as::<_, EnvRecord>(&format!("{ENV_SELECT} WHERE e.id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("environment {id} not found")))?;
        self.open_env(row)
    }

    async fn get_environment(&self, name: &str) -> Result<Option<EnvRow>> {
        sqlx::query_as::<_, EnvRecord>(&format!(
            "{ENV_SELECT} WHERE e.name = ? ORDER BY (e.status = ?), e.id DESC LIMIT 1"
        ))
        .bind(name)
        .bind(EnvStatus::Terminated.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|row| self.open_env(row))
        .transpose()
    }

    async fn list_environments(
        &self,
        app: Option<&str>,
        include_terminated: bool,
    ) -> Result<Vec<EnvRow>> {
        self.environments_where(app, include_terminated)
            .await?
            .into_iter()
            .map(|row| self.open_env(row))
            .collect()
    }

    async fn active_environments(&self) -> Result<ActiveEnvironments> {
        let mut active = ActiveEnvironments::default();
        for row in self.environments_where(None, false).await? {
            let (id, name) = (row.id, row.name.clone());
            match self.open_env(row) {
                Ok(env) => active.envs.push(env),
                Err(error) => active.corrupt.push(CorruptEnv { id, name, error }),
            }
        }
        Ok(active)
    }

    async fn begin_operation(
        &self,
        env: &EnvRow,
        transition: &Transition,
        start: &OperationStart<'_>,
    ) -> Result<OperationRow> {
        let kind = transition.records.ok_or_else(|| {
            StoreError::Conflict(format!("{} is not recorded as an operation", transition.op))
        })?;
        let mut tx = self.pool().begin().await?;
        let at = now();
        let before = BeforeState {
            version_id: env.version_id,
            version: env.version.clone(),
            settings: to_json("settings", &env.settings)?,
            properties: self.seal_properties(&env.properties)?,
            desired: env.desired,
        };
        let before_json = to_json("operation before-state", &before)?;
        enter(&mut tx, env, transition, at).await?;
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
            sqlx::query("UPDATE environments SET properties = ? WHERE id = ?")
                .bind(self.seal_properties(properties)?)
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
        if transition.supersedes {
            let superseded = sqlx::query(
                "UPDATE operations SET outcome = ?, finished_at = ?, message = ? WHERE env_id = ? AND outcome = ?",
            )
            .bind(OperationOutcome::Failed.as_str())
            .bind(at)
            .bind(format!("superseded by {kind}"))
            .bind(env.id)
            .bind(RUNNING.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if superseded > 0 {
                event(
                    &mut tx,
                    env.id,
                    Some(env.app_id),
                    Severity::Warn,
                    &format!("the running operation was superseded by {kind}"),
                )
                .await?;
            }
        }
        let op = sqlx::query_as::<_, OperationRecord>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy, batch,
                before_state, requests_before, failed_before)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(env.id)
        .bind(kind.as_str())
        .bind(start.new_version.map(|(_, label)| label).unwrap_or(&env.version))
        .bind(start.started_by)
        .bind(at)
        .bind(RUNNING.as_str())
        .bind(start.policy.map(Policy::as_str))
        .bind(start.batch.map(|b| b.to_string()))
        .bind(&before_json)
        .bind(start.totals.map(|t| t.0))
        .bind(start.totals.map(|t| t.1))
        .fetch_one(&mut *tx)
        .await?
        .parse()?;
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

    async fn fail_and_roll_back(
        &self,
        env: &EnvRow,
        operation: &OperationRow,
        rollback: &Transition,
        totals: Option<(i64, i64)>,
        message: &str,
    ) -> Result<Option<OperationRow>> {
        let Some(before) = operation.before_state.as_deref() else {
            return Ok(None);
        };
        let before: BeforeState = parse_json(OPERATIONS, operation.id, "before_state", before)?;
        let kind = rollback.records.unwrap_or(OpKind::Rollback);
        let mut tx = self.pool().begin().await?;
        let at = now();
        let closed = sqlx::query(
            "UPDATE operations SET outcome = ?, finished_at = ?, message = ?,
                requests = MAX(0, ? - COALESCE(requests_before, 0)), failed = MAX(0, ? - COALESCE(failed_before, 0))
             WHERE id = ? AND outcome = ?",
        )
        .bind(OperationOutcome::Failed.as_str())
        .bind(at)
        .bind(message)
        .bind(totals.map(|t| t.0))
        .bind(totals.map(|t| t.1))
        .bind(operation.id)
        .bind(RUNNING.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            return Ok(None);
        }
        let moved = sqlx::query(
            "UPDATE environments SET version_id = ?, previous_version_id = NULL, settings = ?, properties = ?, desired = ?,
                status = ?, updated_at = ? WHERE id = ? AND status = ?",
        )
        .bind(before.version_id)
        .bind(&before.settings)
        .bind(self.reseal(PROPERTIES, &before.properties)?)
        .bind(before.desired)
        .bind(rollback.during.as_str())
        .bind(at)
        .bind(env.id)
        .bind(rollback.from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(None);
        }
        // Keep the size columns in line with the restored settings.
        if before.settings != "{}" {
            let settings: EnvSettings =
                parse_json(OPERATIONS, operation.id, "before_state", &before.settings)?;
            write_settings(&mut tx, env.id, &settings).await?;
        }
        event(&mut tx, env.id, Some(env.app_id), Severity::Error, message).await?;
        let rollback = sqlx::query_as::<_, OperationRecord>(
            "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, outcome, policy, batch,
                requests_before, failed_before)
             VALUES (?, ?, ?, 'sprout', ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(env.id)
        .bind(kind.as_str())
        .bind(&before.version)
        .bind(at)
        .bind(RUNNING.as_str())
        .bind(operation.policy.map(Policy::as_str))
        .bind(operation.batch.map(|b| b.to_string()))
        .bind(totals.map(|t| t.0))
        .bind(totals.map(|t| t.1))
        .fetch_one(&mut *tx)
        .await?
        .parse()?;
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

    async fn apply_settings(
        &self,
        env: &EnvRow,
        transition: &Transition,
        settings: &EnvSettings,
        by: Option<&str>,
        message: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        enter(&mut tx, env, transition, at).await?;
        write_settings(&mut tx, env.id, settings).await?;
        if let Some(kind) = transition.records {
            sqlx::query(
                "INSERT INTO operations (env_id, kind, version_label, started_by, started_at, finished_at, outcome, message)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(env.id)
            .bind(kind.as_str())
            .bind(&env.version)
            .bind(by)
            .bind(at)
            .bind(at)
            .bind(OperationOutcome::Succeeded.as_str())
            .bind(message)
            .execute(&mut *tx)
            .await?;
        }
        event(&mut tx, env.id, Some(env.app_id), Severity::Info, message).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_health(
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

    async fn swap_cnames(
        &self,
        a: &EnvRow,
        b: &EnvRow,
        transition: &Transition,
        by: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        // Through a placeholder: the CNAME index is unique among live environments.
        let placeholder = format!("~swap-{}", a.id);
        for (id, cname) in [
            (a.id, placeholder.as_str()),
            (b.id, a.cname.as_str()),
            (a.id, b.cname.as_str()),
        ] {
            let changed = sqlx::query(
                "UPDATE environments SET cname = ?, status = ?, updated_at = ? WHERE id = ? AND status = ?",
            )
            .bind(cname)
            .bind(transition.during.as_str())
            .bind(at)
            .bind(id)
            .bind(transition.from.as_str())
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

    async fn operations(&self, env_id: i64, limit: i64) -> Result<Vec<OperationRow>> {
        self.operations_query(
            "SELECT * FROM operations WHERE env_id = ? ORDER BY id DESC LIMIT ?",
            &[env_id, limit],
        )
        .await
    }

    async fn set_desired(
        &self,
        env: &EnvRow,
        transition: &Transition,
        desired: i64,
        message: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        enter(&mut tx, env, transition, now()).await?;
        sqlx::query("UPDATE environments SET desired = ? WHERE id = ?")
            .bind(desired)
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        event(&mut tx, env.id, Some(env.app_id), Severity::Info, message).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_operation(&self, env: &EnvRow, end: &OperationEnd<'_>) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        let still =
            sqlx::query("UPDATE environments SET updated_at = ? WHERE id = ? AND status = ?")
                .bind(at)
                .bind(env.id)
                .bind(end.from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if still == 0 {
            return Ok(false);
        }
        if let Some(op) = end.operation {
            let (running,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM operations WHERE id = ? AND outcome = ?")
                    .bind(op)
                    .bind(RUNNING.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            if running == 0 {
                return Ok(false);
            }
        }
        let terminated_at = (end.to == EnvStatus::Terminated).then_some(at);
        sqlx::query("UPDATE environments SET status = ?, updated_at = ?, terminated_at = COALESCE(?, terminated_at) WHERE id = ?")
            .bind(end.to.as_str())
            .bind(at)
            .bind(terminated_at)
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE operations SET outcome = ?, finished_at = ?, message = ?,
                requests = MAX(0, ? - COALESCE(requests_before, 0)), failed = MAX(0, ? - COALESCE(failed_before, 0))
             WHERE env_id = ? AND outcome = ?",
        )
        .bind(end.outcome.as_str())
        .bind(at)
        .bind(end.message)
        .bind(end.totals.map(|t| t.0))
        .bind(end.totals.map(|t| t.1))
        .bind(env.id)
        .bind(RUNNING.as_str())
        .execute(&mut *tx)
        .await?;
        let severity = if end.outcome == OperationOutcome::Failed {
            Severity::Error
        } else {
            Severity::Info
        };
        event(&mut tx, env.id, Some(env.app_id), severity, end.message).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn current_operation(&self, env_id: i64) -> Result<Option<OperationRow>> {
        Ok(self
            .operations_query(
                "SELECT * FROM operations WHERE env_id = ? ORDER BY id DESC LIMIT 1",
                &[env_id],
            )
            .await?
            .pop())
    }

    async fn latest_operations(&self) -> Result<std::collections::HashMap<i64, OperationRow>> {
        let rows = self
            .operations_query(
                "SELECT o.* FROM operations o \
                 JOIN (SELECT env_id, MAX(id) AS id FROM operations GROUP BY env_id) newest \
                 ON newest.id = o.id",
                &[],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.env_id, r)).collect())
    }
}

async fn write_settings(
    conn: &mut sqlx::SqliteConnection,
    env_id: i64,
    settings: &EnvSettings,
) -> Result<()> {
    let json = to_json("settings", settings)?;
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

/// Moves `env` into `transition`'s running status, if it is still in the status the
/// transition starts from; a conflict (nothing changed) when another request moved it first.
async fn enter(
    conn: &mut sqlx::SqliteConnection,
    env: &EnvRow,
    transition: &Transition,
    at: DateTime<Utc>,
) -> Result<()> {
    let changed = sqlx::query(
        "UPDATE environments SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
    )
    .bind(transition.during.as_str())
    .bind(at)
    .bind(env.id)
    .bind(transition.from.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "environment '{}' changed while the request was handled; try again",
            env.name
        )));
    }
    Ok(())
}
