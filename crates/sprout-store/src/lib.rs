//! Sprout's store: the desired state and the record of what happened, in SQLite (WAL).
//! Every multi-row change is one transaction, so a crash never leaves half an environment.
//! SQL lives here and nowhere else; the rows are plain structs the other crates map from.

mod apps;
mod backend;
mod configs;
mod dataplane;
mod environment_row;
mod environments;
mod events;
mod instances;
mod operations;
mod queue;
mod resource_ha;
mod resources;
mod sealed;
pub mod secret_box;
mod users;
mod zones;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use apps::{AppRow, DeletedVersion, NewVersion, VersionRow};
pub use backend::EnvironmentStore;
pub use configs::{NewSavedConfig, SavedConfigRow};
pub use dataplane::{HealthyBackend, RequestCounts};
pub use environment_row::{ActiveEnvironments, CorruptEnv, EnvRow, NewEnvironment};
pub use events::EventRow;
pub use instances::InstanceRow;
pub use operations::{BeforeState, OperationEnd, OperationRow, OperationStart, OperationState};
pub use queue::{
    AccessKeyRow, MessageRow, NewMessage, QueueCounts, QueueRow, QueueSettings, QueueUsage, Tick,
};
pub use resource_ha::ReplicaRow;
pub use resources::{AttachmentRow, NewResource, ResourceEventRow, ResourceRow, SnapshotRow};
pub use secret_box::{SecretBox, SecretError};
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
    /// A stored value that does not parse: the row is named so it can be found and mended.
    #[error("corrupt row: {table} {id}: bad {field}: {reason}")]
    Corrupt {
        table: &'static str,
        id: String,
        field: &'static str,
        reason: String,
    },
    /// A value that could not be written (serialization).
    #[error("cannot encode {0}")]
    Encode(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Quota(#[from] sprout_core::queue::QuotaError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a UNIQUE violation to a conflict with a human message.
pub(crate) fn unique_or(err: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(conflict()),
        _ => StoreError::Database(err),
    }
}

/// Parses one stored value of a row, or names the row, the field and why it is bad.
pub(crate) fn parse_field<T: FromStr>(
    table: &'static str,
    id: impl std::fmt::Display,
    field: &'static str,
    value: &str,
) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| StoreError::Corrupt {
        table,
        id: id.to_string(),
        field,
        reason: e.to_string(),
    })
}

/// Parses one stored JSON value of a row, or names the row, the field and why it is bad.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    id: impl std::fmt::Display,
    field: &'static str,
    value: &str,
) -> Result<T> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt {
        table,
        id: id.to_string(),
        field,
        reason: e.to_string(),
    })
}

/// JSON of a value about to be written.
pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    secrets: SecretBox,
}

/// Name of the key file [`Store::open`] keeps beside the database.
pub const SECRET_KEY_FILE: &str = "secrets.key";

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, with the key that seals
    /// secrets in [`SECRET_KEY_FILE`] beside it (made on first use).
    pub async fn open(path: &Path) -> Result<Self> {
        let key = path.with_file_name(SECRET_KEY_FILE);
        Self::open_with(path, SecretBox::load_or_create(&key)?).await
    }

    /// Opens (creating if needed) the SQLite database at `path`, applies migrations, and
    /// seals what an older Sprout left in plaintext. The file is made private (0600) before
    /// SQLite first opens it, so its `-wal` and `-shm` files get the same mode.
    pub async fn open_with(path: &Path, secrets: SecretBox) -> Result<Self> {
        make_private(path).map_err(|e| {
            StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            )))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Deleted and overwritten content is zeroed, so a secret replaced by its sealed
            // form leaves no plaintext in free pages.
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Self { pool, secrets };
        store.seal_plaintext_rows().await?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(store)
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

/// Creates the database file with mode 0600, or takes group and other rights away from one
/// an older Sprout made.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for file in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(file);
        let p = std::path::PathBuf::from(name);
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}
