use crate::sealed::PROPERTIES;
use crate::{now, parse_field, parse_json, to_json, Result, Store};
use chrono::{DateTime, Utc};
use sprout_core::{Bootstrap, EnvSettings, Mode, Tier};
use std::collections::BTreeMap;

/// A saved configuration: a named snapshot of an environment's settings, versioned by
/// `revision` (saving under the same name again makes the next revision). Parsed: a row that
/// does not parse is a [`crate::StoreError::Corrupt`] naming it.
#[derive(Debug, Clone)]
pub struct SavedConfigRow {
    pub id: i64,
    pub app_id: i64,
    pub name: String,
    pub revision: i64,
    pub settings: EnvSettings,
    pub properties: BTreeMap<String, String>,
    pub tier: Tier,
    pub mode: Mode,
    pub bootstrap: Bootstrap,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A saved configuration as SQLite holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct SavedConfigRecord {
    id: i64,
    app_id: i64,
    name: String,
    revision: i64,
    settings: String,
    properties: String,
    tier: String,
    mode: String,
    bootstrap: String,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

/// What a saved configuration keeps.
#[derive(Debug, Clone)]
pub struct NewSavedConfig<'a> {
    pub app_id: i64,
    pub name: &'a str,
    pub settings: &'a EnvSettings,
    pub properties: &'a BTreeMap<String, String>,
    pub tier: Tier,
    pub mode: Mode,
    pub bootstrap: Bootstrap,
    pub by: Option<&'a str>,
}

impl Store {
    pub async fn save_config(&self, new: &NewSavedConfig<'_>) -> Result<SavedConfigRow> {
        let properties = to_json("properties", new.properties)?;
        let row = sqlx::query_as::<_, SavedConfigRecord>(
            "INSERT INTO saved_configs (app_id, name, revision, settings, properties, tier, mode, bootstrap, created_by, created_at)
             VALUES (?, ?, (SELECT COALESCE(MAX(revision), 0) + 1 FROM saved_configs WHERE app_id = ? AND name = ?),
                     ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(new.app_id)
        .bind(new.name)
        .bind(new.app_id)
        .bind(new.name)
        .bind(to_json("settings", new.settings)?)
        .bind(self.seal(PROPERTIES, &properties)?)
        .bind(new.tier.as_str())
        .bind(new.mode.as_str())
        .bind(new.bootstrap.as_str())
        .bind(new.by)
        .bind(now())
        .fetch_one(self.pool())
        .await?;
        self.open_config(row)
    }

    /// The newest revision of a saved configuration.
    pub async fn saved_config(&self, app_id: i64, name: &str) -> Result<Option<SavedConfigRow>> {
        sqlx::query_as::<_, SavedConfigRecord>(
            "SELECT * FROM saved_configs WHERE app_id = ? AND name = ? ORDER BY revision DESC LIMIT 1",
        )
        .bind(app_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .map(|row| self.open_config(row))
        .transpose()
    }

    /// A saved configuration as it leaves the store: its properties opened, every field
    /// parsed.
    fn open_config(&self, row: SavedConfigRecord) -> Result<SavedConfigRow> {
        const TABLE: &str = "saved_configs";
        let id = row.id;
        let properties = self.open_secret(PROPERTIES, &row.properties)?;
        Ok(SavedConfigRow {
            settings: parse_json(TABLE, id, "settings", &row.settings)?,
            properties: parse_json(TABLE, id, "properties", &properties)?,
            tier: parse_field(TABLE, id, "tier", &row.tier)?,
            mode: parse_field(TABLE, id, "mode", &row.mode)?,
            bootstrap: parse_field(TABLE, id, "bootstrap", &row.bootstrap)?,
            id,
            app_id: row.app_id,
            name: row.name,
            revision: row.revision,
            created_by: row.created_by,
            created_at: row.created_at,
        })
    }
}
