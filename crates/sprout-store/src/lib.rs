//! Sprout's store: the desired state and the record of what happened, in SQLite (WAL).
//! Every multi-row change is one transaction, so a crash never leaves half an environment.
//! SQL lives here and nowhere else; the rows are plain structs the other crates map from.

mod apps;
mod configs;
mod dataplane;
mod environments;
mod events;
mod queue;
mod users;
mod zones;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use apps::{AppRow, NewVersion, VersionRow};
pub use configs::SavedConfigRow;
pub use dataplane::{HealthyBackend, RequestCounts};
pub use environments::{
    BeforeState, EnvRow, InstanceRow, NewEnvironment, OperationRow, OperationStart,
};
pub use events::EventRow;
pub use queue::{AccessKeyRow, MessageRow, NewMessage, QueueCounts, QueueRow, QueueSettings};
pub use users::{AuditRow, TokenRow, UserRow};
pub use zones::ScheduledActionRow;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a UNIQUE violation to a conflict with a human message.
pub(crate) fn unique_or(err: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(conflict()),
        _ => StoreError::Database(err),
    }
}

pub(crate) fn parse_enum<T: FromStr>(value: &str, what: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse::<T>()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A random id for this data directory, made once. Docker objects carry it as a label so
    /// several servers can share one engine without adopting each other's containers.
    pub async fn server_id(&self) -> Result<String> {
        let fresh = format!("{:08x}", rand::random::<u32>());
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('server_id', ?) ON CONFLICT(key) DO NOTHING",
        )
        .bind(&fresh)
        .execute(&self.pool)
        .await?;
        let (id,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = 'server_id'")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}
