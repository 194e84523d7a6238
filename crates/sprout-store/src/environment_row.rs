//! An environment row: as SQLite holds it, and parsed once into domain types as it leaves the store.

use crate::sealed::PROPERTIES;
use crate::{parse_field, parse_json, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sprout_core::manifest::BundleManifest;
use sprout_core::{Bootstrap, EnvSettings, EnvStatus, Mode, Tier};
use std::collections::BTreeMap;

/// An environment joined with its application and the version it runs, parsed: a row
/// that does not parse is a [`StoreError::Corrupt`] naming it, never a default.
#[derive(Debug, Clone)]
pub struct EnvRow {
    pub id: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub version_id: i64,
    pub version: String,
    /// The golden image of the version (None until built, or for user-data).
    pub image: Option<String>,
    pub platform: String,
    pub manifest: BundleManifest,
    pub previous_version_id: Option<i64>,
    pub tier: Tier,
    pub mode: Mode,
    pub status: EnvStatus,
    pub cname: String,
    pub bootstrap: Bootstrap,
    pub desired: i64,
    /// Every setting (the size columns folded in).
    pub settings: EnvSettings,
    /// The properties, opened.
    pub properties: BTreeMap<String, String>,
    /// The last health verdict (`sprout_core::HealthStatus`).
    pub health: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
}

/// An environment row as SQLite holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EnvRecord {
    pub(crate) id: i64,
    pub(crate) name: String,
    app_id: i64,
    app: String,
    version_id: i64,
    version: String,
    image: Option<String>,
    platform: String,
    manifest: String,
    previous_version_id: Option<i64>,
    tier: String,
    mode: String,
    status: String,
    cname: String,
    instance_type: String,
    bootstrap: String,
    min_instances: i64,
    max_instances: i64,
    desired: i64,
    properties: String,
    settings: String,
    health: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    terminated_at: Option<DateTime<Utc>>,
}

const ENVIRONMENTS: &str = "environments";

impl EnvRecord {
    /// Parses the row once; `properties` is already opened.
    fn parse(self, properties: &str) -> Result<EnvRow> {
        let id = self.id;
        let bad = |field: &'static str, reason: String| StoreError::Corrupt {
            table: ENVIRONMENTS,
            id: id.to_string(),
            field,
            reason,
        };
        let mode: Mode = parse_field(ENVIRONMENTS, id, "mode", &self.mode)?;
        // Rows from before a setting existed get their mode's default for it.
        let mut merged = serde_json::to_value(EnvSettings::for_mode(mode))
            .map_err(|e| StoreError::Encode(format!("settings: {e}")))?;
        let stored: serde_json::Value = parse_json(ENVIRONMENTS, id, "settings", &self.settings)?;
        match (merged.as_object_mut(), stored) {
            (Some(base), serde_json::Value::Object(stored)) => base.extend(stored),
            _ => return Err(bad("settings", "not a JSON object".into())),
        }
        let mut settings: EnvSettings =
            serde_json::from_value(merged).map_err(|e| bad("settings", e.to_string()))?;
        settings.instance_type =
            parse_field(ENVIRONMENTS, id, "instance_type", &self.instance_type)?;
        settings.min =
            u32::try_from(self.min_instances).map_err(|e| bad("min_instances", e.to_string()))?;
        settings.max =
            u32::try_from(self.max_instances).map_err(|e| bad("max_instances", e.to_string()))?;
        if self.desired < 0 {
            return Err(bad("desired", format!("{} is negative", self.desired)));
        }
        Ok(EnvRow {
            status: parse_field(ENVIRONMENTS, id, "status", &self.status)?,
            tier: parse_field(ENVIRONMENTS, id, "tier", &self.tier)?,
            bootstrap: parse_field(ENVIRONMENTS, id, "bootstrap", &self.bootstrap)?,
            manifest: parse_json(ENVIRONMENTS, id, "manifest", &self.manifest)?,
            properties: parse_json(ENVIRONMENTS, id, "properties", properties)?,
            settings,
            mode,
            id,
            name: self.name,
            app_id: self.app_id,
            app: self.app,
            version_id: self.version_id,
            version: self.version,
            image: self.image,
            platform: self.platform,
            previous_version_id: self.previous_version_id,
            cname: self.cname,
            desired: self.desired,
            health: self.health,
            created_at: self.created_at,
            updated_at: self.updated_at,
            terminated_at: self.terminated_at,
        })
    }
}

impl EnvRow {
    /// Every setting.
    pub fn settings(&self) -> EnvSettings {
        self.settings.clone()
    }

    /// The properties.
    pub fn properties(&self) -> BTreeMap<String, String> {
        self.properties.clone()
    }
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub name: String,
    pub app_id: i64,
    pub version_id: i64,
    pub version_label: String,
    pub tier: Tier,
    pub mode: Mode,
    pub cname: String,
    pub bootstrap: Bootstrap,
    pub settings: EnvSettings,
    pub desired: i64,
    pub properties: BTreeMap<String, String>,
    pub started_by: Option<String>,
}

/// The live environments the control loops look after, and those whose row does not parse
/// (left alone, reported, their instances not taken for orphans).
#[derive(Debug, Default)]
pub struct ActiveEnvironments {
    pub envs: Vec<EnvRow>,
    pub corrupt: Vec<CorruptEnv>,
}

#[derive(Debug)]
pub struct CorruptEnv {
    pub id: i64,
    pub name: String,
    pub error: StoreError,
}

pub(crate) const ENV_SELECT: &str = "SELECT e.id, e.name, e.app_id, a.name AS app, e.version_id, v.label AS version, v.image,
    v.platform, v.manifest, e.previous_version_id, e.tier, e.mode, e.status, e.cname, e.instance_type, e.bootstrap,
    e.min_instances, e.max_instances, e.desired, e.properties, e.settings, e.health, e.created_at, e.updated_at,
    e.terminated_at
    FROM environments e JOIN apps a ON a.id = e.app_id JOIN versions v ON v.id = e.version_id";

impl Store {
    /// An environment row as it leaves the store: its properties opened, every field parsed.
    pub(crate) fn open_env(&self, row: EnvRecord) -> Result<EnvRow> {
        let properties = self.open_secret(PROPERTIES, &row.properties)?;
        row.parse(&properties)
    }

    pub(crate) async fn environments_where(
        &self,
        app: Option<&str>,
        include_terminated: bool,
    ) -> Result<Vec<EnvRecord>> {
        let mut sql = format!("{ENV_SELECT} WHERE 1 = 1");
        if app.is_some() {
            sql.push_str(" AND a.name = ?");
        }
        if !include_terminated {
            sql.push_str(" AND e.status <> ?");
        }
        sql.push_str(" ORDER BY e.name, e.id");
        let mut query = sqlx::query_as::<_, EnvRecord>(&sql);
        if let Some(app) = app {
            query = query.bind(app);
        }
        if !include_terminated {
            query = query.bind(EnvStatus::Terminated.as_str());
        }
        Ok(query.fetch_all(self.pool()).await?)
    }
}
