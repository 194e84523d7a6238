use crate::{now, parse_field, parse_json, unique_or, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sprout_core::manifest::BundleManifest;
use sprout_core::{EnvStatus, VersionStatus};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub versions: i64,
    pub environments: i64,
}

/// What a deleted version leaves to reclaim.
#[derive(Debug, Clone)]
pub struct DeletedVersion {
    /// The version's image, to remove.
    pub image: Option<String>,
    /// The bundle (sha256, format) no version uses any more, to remove.
    pub bundle: Option<(String, String)>,
}

/// A version, parsed: a row that does not parse is a [`StoreError::Corrupt`] naming it.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub id: i64,
    pub app_id: i64,
    pub app: String,
    pub label: String,
    pub description: Option<String>,
    pub status: VersionStatus,
    pub sha256: String,
    pub size_bytes: i64,
    pub format: String,
    pub manifest: BundleManifest,
    pub platform: String,
    pub image: Option<String>,
    pub error: Option<String>,
    pub build_log: String,
    pub created_at: DateTime<Utc>,
    pub built_at: Option<DateTime<Utc>>,
}

/// A version row as SQLite holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct VersionRecord {
    id: i64,
    app_id: i64,
    app: String,
    label: String,
    description: Option<String>,
    status: String,
    sha256: String,
    size_bytes: i64,
    format: String,
    manifest: String,
    platform: String,
    image: Option<String>,
    error: Option<String>,
    build_log: String,
    created_at: DateTime<Utc>,
    built_at: Option<DateTime<Utc>>,
}

impl VersionRecord {
    fn parse(self) -> Result<VersionRow> {
        const VERSIONS: &str = "versions";
        let id = self.id;
        Ok(VersionRow {
            status: parse_field(VERSIONS, id, "status", &self.status)?,
            manifest: parse_json(VERSIONS, id, "manifest", &self.manifest)?,
            id,
            app_id: self.app_id,
            app: self.app,
            label: self.label,
            description: self.description,
            sha256: self.sha256,
            size_bytes: self.size_bytes,
            format: self.format,
            platform: self.platform,
            image: self.image,
            error: self.error,
            build_log: self.build_log,
            created_at: self.created_at,
            built_at: self.built_at,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub app_id: i64,
    pub label: &'a str,
    pub description: Option<&'a str>,
    pub sha256: &'a str,
    pub size_bytes: i64,
    pub format: &'a str,
    pub manifest: &'a str,
    pub platform: &'a str,
}

/// Binds: the Terminated status.
const APP_SELECT: &str = "SELECT a.id, a.name, a.created_at,
    (SELECT COUNT(*) FROM versions v WHERE v.app_id = a.id) AS versions,
    (SELECT COUNT(*) FROM environments e WHERE e.app_id = a.id AND e.status <> ?) AS environments
    FROM apps a";

const VERSION_SELECT: &str = "SELECT v.id, v.app_id, a.name AS app, v.label, v.description, v.status, v.sha256,
    v.size_bytes, v.format, v.manifest, v.platform, v.image, v.error, v.build_log, v.created_at, v.built_at
    FROM versions v JOIN apps a ON a.id = v.app_id";

impl Store {
    pub async fn create_app(&self, name: &str) -> Result<AppRow> {
        let mut tx = self.pool().begin().await?;
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO apps (name, created_at) VALUES (?, ?) RETURNING id")
                .bind(name)
                .bind(now())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique_or(e, || format!("application '{name}' already exists")))?;
        sqlx::query(
            "INSERT INTO events (app_id, severity, message, created_at) VALUES (?, 'INFO', ?, ?)",
        )
        .bind(id)
        .bind(format!("application '{name}' created"))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_app(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("application '{name}'")))
    }

    pub async fn get_app(&self, name: &str) -> Result<Option<AppRow>> {
        Ok(
            sqlx::query_as::<_, AppRow>(&format!("{APP_SELECT} WHERE a.name = ?"))
                .bind(EnvStatus::Terminated.as_str())
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn list_apps(&self) -> Result<Vec<AppRow>> {
        Ok(
            sqlx::query_as::<_, AppRow>(&format!("{APP_SELECT} ORDER BY a.name"))
                .bind(EnvStatus::Terminated.as_str())
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Deletes an application, its versions and the records of its terminated environments.
    /// Refused while an environment of it still exists. Returns the images to remove.
    pub async fn delete_app(&self, name: &str) -> Result<Vec<String>> {
        let mut tx = self.pool().begin().await?;
        let app: Option<(i64,)> = sqlx::query_as("SELECT id FROM apps WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((app_id,)) = app else {
            return Err(StoreError::NotFound(format!(
                "application '{name}' not found"
            )));
        };
        let live: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM environments WHERE app_id = ? AND status <> ? ORDER BY name",
        )
        .bind(app_id)
        .bind(EnvStatus::Terminated.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !live.is_empty() {
            let names: Vec<String> = live.into_iter().map(|(n,)| n).collect();
            return Err(StoreError::Conflict(format!(
                "application '{name}' still has environments: {}; terminate them first",
                names.join(", ")
            )));
        }
        let resources: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM resources WHERE app_id = ? ORDER BY name")
                .bind(app_id)
                .fetch_all(&mut *tx)
                .await?;
        if !resources.is_empty() {
            let names: Vec<String> = resources.into_iter().map(|(n,)| n).collect();
            return Err(StoreError::Conflict(format!(
                "application '{name}' still has resources: {}; delete them first",
                names.join(", ")
            )));
        }
        sqlx::query("DELETE FROM resource_snapshots WHERE app_id = ?")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        let images: Vec<(String,)> =
            sqlx::query_as("SELECT image FROM versions WHERE app_id = ? AND image IS NOT NULL")
                .bind(app_id)
                .fetch_all(&mut *tx)
                .await?;
        for table in [
            "events",
            "operations",
            "instances",
            "access_keys",
            "cron_ticks",
            "queues",
            "request_counters",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE env_id IN (SELECT id FROM environments WHERE app_id = ?)"))
                .bind(app_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM environments WHERE app_id = ?")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM events WHERE app_id = ?")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(images.into_iter().map(|(i,)| i).collect())
    }

    pub async fn insert_version(&self, new: &NewVersion<'_>) -> Result<VersionRow> {
        let mut tx = self.pool().begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO versions (app_id, label, description, status, sha256, size_bytes, format, manifest, platform, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.app_id)
        .bind(new.label)
        .bind(new.description)
        .bind(VersionStatus::Processing.as_str())
        .bind(new.sha256)
        .bind(new.size_bytes)
        .bind(new.format)
        .bind(new.manifest)
        .bind(new.platform)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_or(e, || format!("version '{}' already exists", new.label)))?;
        sqlx::query(
            "INSERT INTO events (app_id, severity, message, created_at) VALUES (?, 'INFO', ?, ?)",
        )
        .bind(new.app_id)
        .bind(format!(
            "version '{}' uploaded ({} bytes, sha256 {})",
            new.label, new.size_bytes, new.sha256
        ))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.version_by_id(id).await
    }

    /// Deletes a version: refused (`Conflict`, naming them) while an environment runs it or
    /// may roll back to it. Answers what to reclaim: its image, and its bundle's sha256 and
    /// format when no other version shares the bundle.
    pub async fn delete_version(&self, app: &str, label: &str) -> Result<DeletedVersion> {
        let mut tx = self.pool().begin().await?;
        let row: Option<(i64, Option<String>, String, String)> = sqlx::query_as(
            "SELECT v.id, v.image, v.sha256, v.format FROM versions v JOIN apps a ON a.id = v.app_id
             WHERE a.name = ? AND v.label = ?",
        )
        .bind(app)
        .bind(label)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, image, sha256, format)) = row else {
            return Err(StoreError::NotFound(format!(
                "version '{label}' of '{app}' not found"
            )));
        };
        let users: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, status FROM environments WHERE version_id = ? OR previous_version_id = ? ORDER BY name",
        )
        .bind(id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let (live, gone): (Vec<_>, Vec<_>) = users
            .into_iter()
            .partition(|(_, st)| st != EnvStatus::Terminated.as_str());
        if !live.is_empty() {
            let names: Vec<String> = live.into_iter().map(|(n, _)| n).collect();
            return Err(StoreError::Conflict(format!(
                "version '{label}' of '{app}' is in use by environment {}; deploy another version there (or terminate it) first",
                names.join(", ")
            )));
        }
        if !gone.is_empty() {
            let names: Vec<String> = gone.into_iter().map(|(n, _)| n).collect();
            return Err(StoreError::Conflict(format!(
                "version '{label}' of '{app}' is recorded by terminated environment {}; delete the application to remove it",
                names.join(", ")
            )));
        }
        sqlx::query("DELETE FROM versions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let (shared,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM versions WHERE sha256 = ?")
            .bind(&sha256)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeletedVersion {
            image,
            bundle: (shared == 0).then_some((sha256, format)),
        })
    }

    /// Deletes a version whose build failed, so its label can be pushed again; answers
    /// whether it was deleted (not if it is no longer failed, or an environment names it).
    pub async fn delete_failed_version(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM versions WHERE id = ? AND status = ?
               AND NOT EXISTS (SELECT 1 FROM environments e
                               WHERE e.version_id = versions.id OR e.previous_version_id = versions.id)",
        )
        .bind(id)
        .bind(VersionStatus::Failed.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn version_by_id(&self, id: i64) -> Result<VersionRow> {
        sqlx::query_as::<_, VersionRecord>(&format!("{VERSION_SELECT} WHERE v.id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("version {id} not found")))?
            .parse()
    }

    pub async fn get_version(&self, app: &str, label: &str) -> Result<Option<VersionRow>> {
        sqlx::query_as::<_, VersionRecord>(&format!(
            "{VERSION_SELECT} WHERE a.name = ? AND v.label = ?"
        ))
        .bind(app)
        .bind(label)
        .fetch_optional(self.pool())
        .await?
        .map(VersionRecord::parse)
        .transpose()
    }

    pub async fn list_versions(&self, app: &str) -> Result<Vec<VersionRow>> {
        sqlx::query_as::<_, VersionRecord>(&format!(
            "{VERSION_SELECT} WHERE a.name = ? ORDER BY v.id"
        ))
        .bind(app)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(VersionRecord::parse)
        .collect()
    }

    /// Versions left `processing` by a control plane that stopped mid-build.
    pub async fn processing_versions(&self) -> Result<Vec<VersionRow>> {
        sqlx::query_as::<_, VersionRecord>(&format!(
            "{VERSION_SELECT} WHERE v.status = ? ORDER BY v.id"
        ))
        .bind(VersionStatus::Processing.as_str())
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(VersionRecord::parse)
        .collect()
    }

    pub async fn version_built(&self, id: i64, image: &str, build_log: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let row: (i64, String) = sqlx::query_as(
            "UPDATE versions SET status = ?, image = ?, build_log = ?, built_at = ?, error = NULL
             WHERE id = ? RETURNING app_id, label",
        )
        .bind(VersionStatus::Ready.as_str())
        .bind(image)
        .bind(build_log)
        .bind(now())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO events (app_id, severity, message, created_at) VALUES (?, 'INFO', ?, ?)",
        )
        .bind(row.0)
        .bind(format!("version '{}' built: image {image}", row.1))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn version_failed(&self, id: i64, error: &str, build_log: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let row: (i64, String) = sqlx::query_as(
            "UPDATE versions SET status = ?, image = NULL, error = ?, build_log = ?, built_at = ?
             WHERE id = ? RETURNING app_id, label",
        )
        .bind(VersionStatus::Failed.as_str())
        .bind(error)
        .bind(build_log)
        .bind(now())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO events (app_id, severity, message, created_at) VALUES (?, 'ERROR', ?, ?)",
        )
        .bind(row.0)
        .bind(format!("version '{}' failed to build: {error}", row.1))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
