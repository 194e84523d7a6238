use crate::sealed::PROPERTIES;
use crate::{now, Result, Store};
use chrono::{DateTime, Utc};

/// A saved configuration: a named snapshot of an environment's settings, versioned by
/// `revision` (saving under the same name again makes the next revision).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SavedConfigRow {
    pub id: i64,
    pub app_id: i64,
    pub name: String,
    pub revision: i64,
    pub settings: String,
    pub properties: String,
    pub tier: String,
    pub mode: String,
    pub bootstrap: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub async fn save_config(
        &self,
        app_id: i64,
        name: &str,
        settings: &str,
        properties: &str,
        tier: &str,
        mode: &str,
        bootstrap: &str,
        by: Option<&str>,
    ) -> Result<SavedConfigRow> {
        let row = sqlx::query_as::<_, SavedConfigRow>(
            "INSERT INTO saved_configs (app_id, name, revision, settings, properties, tier, mode, bootstrap, created_by, created_at)
             VALUES (?, ?, (SELECT COALESCE(MAX(revision), 0) + 1 FROM saved_configs WHERE app_id = ? AND name = ?),
                     ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(app_id)
        .bind(name)
        .bind(app_id)
        .bind(name)
        .bind(settings)
        .bind(self.seal(PROPERTIES, properties)?)
        .bind(tier)
        .bind(mode)
        .bind(bootstrap)
        .bind(by)
        .bind(now())
        .fetch_one(self.pool())
        .await?;
        self.open_config(row)
    }

    /// The newest revision of a saved configuration.
    pub async fn saved_config(&self, app_id: i64, name: &str) -> Result<Option<SavedConfigRow>> {
        sqlx::query_as::<_, SavedConfigRow>(
            "SELECT * FROM saved_configs WHERE app_id = ? AND name = ? ORDER BY revision DESC LIMIT 1",
        )
        .bind(app_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .map(|row| self.open_config(row))
        .transpose()
    }

    /// A saved configuration as it leaves the store: its properties opened.
    fn open_config(&self, mut row: SavedConfigRow) -> Result<SavedConfigRow> {
        row.properties = self.open_secret(PROPERTIES, &row.properties)?;
        Ok(row)
    }
}
