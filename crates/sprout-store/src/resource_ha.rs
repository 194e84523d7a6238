//! Resources' automated backups, read replicas and health: the columns and the table
//! migration 0017 adds.

use chrono::{DateTime, Utc};
use sprout_core::resource_ha::BackupPolicy;

use crate::resources::{SnapshotRow, SELECT_SNAPSHOT};
use crate::{now, Result, Store, StoreError};

/// One read replica of a resource.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaRow {
    pub resource_id: i64,
    pub idx: i64,
    pub container: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Sets (or clears) a resource's backup schedule.
    pub async fn set_resource_backup(&self, id: i64, policy: Option<&BackupPolicy>) -> Result<()> {
        sqlx::query(
            "UPDATE resources SET backup_schedule = ?, backup_keep = ?, updated_at = ? WHERE id = ?",
        )
        .bind(policy.map(|p| p.schedule.as_str()))
        .bind(policy.map(|p| i64::from(p.keep)))
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that the schedule made (or started) a backup at `at`, only if the last one is
    /// still `last` (so two loops cannot both start one). Returns whether it was recorded.
    pub async fn claim_backup(
        &self,
        id: i64,
        last: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE resources SET backup_last_at = ? WHERE id = ? AND backup_last_at IS ?",
        )
        .bind(at)
        .bind(id)
        .bind(last)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a snapshot as taken by the backup schedule.
    pub async fn set_snapshot_automated(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE resource_snapshots SET automated = 1 WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The finished (available or failed) automated snapshots of an application's resource
    /// of that name taken since `since`, newest first.
    pub async fn automated_snapshots(
        &self,
        app_id: i64,
        resource_name: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SnapshotRow>> {
        Ok(sqlx::query_as(&format!(
            "{SELECT_SNAPSHOT} WHERE app_id = ? AND resource_name = ? AND automated = 1
               AND status <> 'creating' AND created_at >= ? ORDER BY id DESC"
        ))
        .bind(app_id)
        .bind(resource_name)
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes a snapshot's row (its file is the caller's).
    pub async fn delete_snapshot(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM resource_snapshots WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a read replica. A taken index is a conflict.
    pub async fn add_replica(&self, resource_id: i64, idx: u32, container: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO resource_replicas (resource_id, idx, container, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(resource_id)
        .bind(i64::from(idx))
        .bind(container)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| crate::unique_or(e, || format!("replica {idx} already exists")))?;
        Ok(())
    }

    /// A resource's read replicas, by index.
    pub async fn replicas(&self, resource_id: i64) -> Result<Vec<ReplicaRow>> {
        Ok(sqlx::query_as(
            "SELECT resource_id, idx, container, created_at FROM resource_replicas
             WHERE resource_id = ? ORDER BY idx",
        )
        .bind(resource_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Replica `idx` became the primary: the resource's container and host are now its, and
    /// it is no longer a replica.
    pub async fn promote_replica(&self, resource_id: i64, idx: u32, host: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let row: Option<(String,)> = sqlx::query_as(
            "DELETE FROM resource_replicas WHERE resource_id = ? AND idx = ? RETURNING container",
        )
        .bind(resource_id)
        .bind(i64::from(idx))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((container,)) = row else {
            return Err(StoreError::NotFound(format!("replica {idx} not found")));
        };
        sqlx::query("UPDATE resources SET container = ?, host = ?, updated_at = ? WHERE id = ?")
            .bind(container)
            .bind(host)
            .bind(now())
            .bind(resource_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a health check's outcome (`healthy` or `unhealthy`). Returns the previous
    /// outcome, so a change can be reported once.
    pub async fn set_resource_health(&self, id: i64, health: &str) -> Result<Option<String>> {
        let mut tx = self.pool().begin().await?;
        let before: Option<(Option<String>,)> =
            sqlx::query_as("SELECT health FROM resources WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query("UPDATE resources SET health = ?, health_at = ? WHERE id = ?")
            .bind(health)
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before.and_then(|(h,)| h))
    }
}
