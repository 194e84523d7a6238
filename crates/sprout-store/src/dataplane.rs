//! What the data plane needs to come back after a restart without a warm-up.

use crate::{now, Result, Store};

/// A backend in rotation: (environment, instance id, address as `ip:port`).
pub type HealthyBackend = (String, String, String);

impl Store {
    /// Replaces the record of backends in rotation with `healthy`.
    pub async fn save_backend_health(&self, healthy: &[HealthyBackend]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM backend_health")
            .execute(&mut *tx)
            .await?;
        let at = now();
        for (env, id, addr) in healthy {
            sqlx::query(
                "INSERT OR REPLACE INTO backend_health (instance_id, env, address, checked_at)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(id)
            .bind(env)
            .bind(addr)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The backends last recorded in rotation.
    pub async fn backend_health(&self) -> Result<Vec<HealthyBackend>> {
        Ok(sqlx::query_as(
            "SELECT env, instance_id, address FROM backend_health ORDER BY env, instance_id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

/// An environment's request totals: (requests, answered 5xx, failed by the balancer).
pub type RequestCounts = (i64, i64, i64);

impl Store {
    /// Adds what each environment (by id) served since the last checkpoint.
    pub async fn add_request_counts(&self, counts: &[(i64, RequestCounts)]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        for (env_id, (requests, status_5xx, failed)) in counts {
            sqlx::query(
                "INSERT INTO request_counters (env_id, requests, status_5xx, failed, updated_at)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT(env_id) DO UPDATE SET requests = requests + excluded.requests,
                    status_5xx = status_5xx + excluded.status_5xx,
                    failed = failed + excluded.failed, updated_at = excluded.updated_at",
            )
            .bind(env_id)
            .bind(requests)
            .bind(status_5xx)
            .bind(failed)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every environment's checkpointed totals, by environment id.
    pub async fn request_counts(&self) -> Result<std::collections::HashMap<i64, RequestCounts>> {
        let rows: Vec<(i64, i64, i64, i64)> =
            sqlx::query_as("SELECT env_id, requests, status_5xx, failed FROM request_counters")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, r, s, f)| (id, (r, s, f)))
            .collect())
    }
}

impl Store {
    /// Starts this server's session of counting requests and returns its id. With
    /// `others_crashed` (no running server handed over to this one), every session still open
    /// ended in a crash: it is closed as such, marking a gap in the counts from now back to
    /// its last checkpoint.
    pub async fn open_count_session(&self, others_crashed: bool) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        let at = now();
        if others_crashed {
            sqlx::query(
                "UPDATE count_sessions SET stopped_at = ?, crashed = 1 WHERE stopped_at IS NULL",
            )
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        let id = sqlx::query("INSERT INTO count_sessions (started_at) VALUES (?)")
            .bind(at)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        Ok(id)
    }

    /// Closes a session after its last checkpoint (a clean stop or a hand-over).
    pub async fn close_count_session(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE count_sessions SET stopped_at = ? WHERE id = ?")
            .bind(now())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// When each gap in the counts was found (the start after a crash), oldest first.
    pub async fn count_gaps(&self) -> Result<Vec<chrono::DateTime<chrono::Utc>>> {
        let rows: Vec<(chrono::DateTime<chrono::Utc>,)> = sqlx::query_as(
            "SELECT stopped_at FROM count_sessions WHERE crashed = 1 AND stopped_at IS NOT NULL
             ORDER BY stopped_at",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(at,)| at).collect())
    }
}
