use crate::{now, unique_or, Result, Store};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduledActionRow {
    pub id: i64,
    pub env_id: i64,
    pub name: String,
    pub cron: String,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub desired: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Zones marked failed.
    pub async fn failed_zones(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM zone_states WHERE failed = 1 ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    pub async fn set_zone_failed(&self, zone: &str, failed: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO zone_states (name, failed, changed_at) VALUES (?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET failed = excluded.failed, changed_at = excluded.changed_at",
        )
        .bind(zone)
        .bind(failed)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn add_scheduled_action(
        &self,
        env_id: i64,
        name: &str,
        cron: &str,
        min: Option<i64>,
        max: Option<i64>,
        desired: Option<i64>,
        by: Option<&str>,
    ) -> Result<ScheduledActionRow> {
        sqlx::query_as::<_, ScheduledActionRow>(
            "INSERT INTO scheduled_actions (env_id, name, cron, min, max, desired, created_by, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(env_id)
        .bind(name)
        .bind(cron)
        .bind(min)
        .bind(max)
        .bind(desired)
        .bind(by)
        .bind(now())
        .fetch_one(self.pool())
        .await
        .map_err(|e| unique_or(e, || format!("a scheduled action named '{name}' already exists")))
    }

    pub async fn scheduled_actions(&self, env_id: Option<i64>) -> Result<Vec<ScheduledActionRow>> {
        let rows = match env_id {
            Some(id) => {
                sqlx::query_as::<_, ScheduledActionRow>(
                    "SELECT * FROM scheduled_actions WHERE env_id = ? ORDER BY name",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as::<_, ScheduledActionRow>(
                    "SELECT s.* FROM scheduled_actions s JOIN environments e ON e.id = s.env_id
                 WHERE e.status <> ? ORDER BY s.id",
                )
                .bind(sprout_core::EnvStatus::Terminated.as_str())
                .fetch_all(self.pool())
                .await?
            }
        };
        Ok(rows)
    }

    pub async fn remove_scheduled_action(
        &self,
        env_id: i64,
        name: &str,
    ) -> Result<Option<ScheduledActionRow>> {
        Ok(sqlx::query_as::<_, ScheduledActionRow>(
            "DELETE FROM scheduled_actions WHERE env_id = ? AND name = ? RETURNING *",
        )
        .bind(env_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }
}
