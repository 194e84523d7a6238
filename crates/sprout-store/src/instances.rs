//! The instances of environments: one row per container Sprout started.

use crate::{now, Result, Store};
use chrono::{DateTime, Utc};

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

impl Store {
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
