use crate::{now, parse_field, Result, Store};
use chrono::{DateTime, Utc};
use sprout_core::Severity;

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub env_id: Option<i64>,
    pub environment: Option<String>,
    pub app: Option<String>,
    pub severity: Severity,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// An event row as SQLite holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct EventRecord {
    id: i64,
    env_id: Option<i64>,
    environment: Option<String>,
    app: Option<String>,
    severity: String,
    message: String,
    created_at: DateTime<Utc>,
}

impl EventRecord {
    fn parse(self) -> Result<EventRow> {
        Ok(EventRow {
            severity: parse_field("events", self.id, "severity", &self.severity)?,
            id: self.id,
            env_id: self.env_id,
            environment: self.environment,
            app: self.app,
            message: self.message,
            created_at: self.created_at,
        })
    }
}

impl Store {
    pub async fn add_event(&self, env_id: i64, severity: Severity, message: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO events (env_id, app_id, severity, message, created_at)
             VALUES (?, (SELECT app_id FROM environments WHERE id = ?), ?, ?, ?)",
        )
        .bind(env_id)
        .bind(env_id)
        .bind(severity.as_str())
        .bind(message)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An environment's events after `after_id`, oldest first, at most `limit` (the newest ones).
    pub async fn env_events(
        &self,
        env_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let mut rows = sqlx::query_as::<_, EventRecord>(
            "SELECT ev.id, ev.env_id, e.name AS environment, a.name AS app, ev.severity, ev.message, ev.created_at
             FROM events ev LEFT JOIN environments e ON e.id = ev.env_id LEFT JOIN apps a ON a.id = ev.app_id
             WHERE ev.env_id = ? AND ev.id > ? ORDER BY ev.id DESC LIMIT ?",
        )
        .bind(env_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.reverse();
        rows.into_iter().map(EventRecord::parse).collect()
    }

    /// The newest event of an environment (what a waiting CLI shows).
    pub async fn last_event(&self, env_id: i64) -> Result<Option<EventRow>> {
        Ok(self.env_events(env_id, 0, 1).await?.pop())
    }
}
