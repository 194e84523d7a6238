//! Attached resources, their attachments to environments, their snapshots and events.
//! Credentials are sealed at rest (purpose [`RESOURCE_CREDENTIALS`]) and opened on read.

use chrono::{DateTime, Utc};
use sprout_core::resource::{
    AttachmentState, Credentials, DeletionPolicy, ResourceKind, ResourceStatus, SnapshotStatus,
    VarPrefix,
};
use sprout_core::resource_ha::BackupPolicy;
use sprout_core::{InstanceType, Severity};

use crate::{now, parse_field, unique_or, Result, Store, StoreError};
use sprout_core::EnvStatus;

/// `resources.credentials`: the JSON of a resource's [`Credentials`].
pub(crate) const RESOURCE_CREDENTIALS: &str = "resource-credentials";

/// One resource, typed, credentials opened.
#[derive(Debug, Clone)]
pub struct ResourceRow {
    pub id: i64,
    pub app_id: i64,
    pub app: String,
    pub name: String,
    pub kind: ResourceKind,
    pub size: InstanceType,
    pub status: ResourceStatus,
    pub status_reason: Option<String>,
    pub credentials: Credentials,
    pub container: String,
    pub deletion_policy: DeletionPolicy,
    pub coupled_env_id: Option<i64>,
    pub restored_from: Option<i64>,
    /// Automated backups, if scheduled.
    pub backup: Option<BackupPolicy>,
    /// When the schedule last made a backup (None: never; it counts from `created_at`).
    pub backup_last_at: Option<DateTime<Utc>>,
    /// The primary's host name when it is not the resource's name (a promoted replica's).
    pub host: Option<String>,
    /// The last health check after Available (`healthy`, `unhealthy`) and its time.
    pub health: Option<String>,
    pub health_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawResource {
    id: i64,
    app_id: i64,
    app: String,
    name: String,
    kind: String,
    size: String,
    status: String,
    status_reason: Option<String>,
    credentials: String,
    container: String,
    deletion_policy: String,
    coupled_env_id: Option<i64>,
    restored_from: Option<i64>,
    backup_schedule: Option<String>,
    backup_keep: Option<i64>,
    backup_last_at: Option<DateTime<Utc>>,
    host: Option<String>,
    health: Option<String>,
    health_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SELECT_RESOURCE: &str =
    "SELECT r.id, r.app_id, a.name AS app, r.name, r.kind, r.size, r.status, \
     r.status_reason, r.credentials, r.container, r.deletion_policy, r.coupled_env_id, \
     r.restored_from, r.backup_schedule, r.backup_keep, r.backup_last_at, r.host, r.health, \
     r.health_at, r.created_at, r.updated_at FROM resources r JOIN apps a ON a.id = r.app_id";

/// What creating a resource records.
#[derive(Debug, Clone)]
pub struct NewResource<'a> {
    pub app: &'a str,
    pub name: &'a str,
    pub kind: ResourceKind,
    pub size: InstanceType,
    pub credentials: &'a Credentials,
    pub container: &'a str,
    pub deletion_policy: DeletionPolicy,
    pub coupled_env_id: Option<i64>,
    /// A restore starts `Restoring` from this snapshot; a new resource starts `Creating`.
    pub restored_from: Option<i64>,
}

/// An attachment, with the environment's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub resource_id: i64,
    pub resource: String,
    pub env_id: i64,
    pub env: String,
    pub prefix: Option<VarPrefix>,
    pub state: AttachmentState,
    pub attached_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SnapshotRow {
    pub id: i64,
    pub app_id: i64,
    pub resource_name: String,
    pub kind: String,
    /// `creating`, `available` or `failed`.
    pub status: String,
    /// Relative to the data directory.
    pub file: String,
    pub size_bytes: Option<i64>,
    pub final_snapshot: bool,
    /// Taken by the backup schedule.
    pub automated: bool,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub(crate) const SELECT_SNAPSHOT: &str =
    "SELECT id, app_id, resource_name, kind, status, file, size_bytes, \
     final AS final_snapshot, automated, created_at, finished_at FROM resource_snapshots";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResourceEventRow {
    pub id: i64,
    pub severity: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

const RESOURCES: &str = "resources";

impl Store {
    fn resource_from(&self, raw: RawResource) -> Result<ResourceRow> {
        let json = self.open_secret(RESOURCE_CREDENTIALS, &raw.credentials)?;
        let credentials: Credentials =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                table: RESOURCES,
                id: raw.id.to_string(),
                field: "credentials",
                reason: e.to_string(),
            })?;
        Ok(ResourceRow {
            id: raw.id,
            app_id: raw.app_id,
            app: raw.app,
            kind: parse_field(RESOURCES, raw.id, "kind", &raw.kind)?,
            size: parse_field(RESOURCES, raw.id, "size", &raw.size)?,
            status: parse_field(RESOURCES, raw.id, "status", &raw.status)?,
            deletion_policy: parse_field(
                RESOURCES,
                raw.id,
                "deletion_policy",
                &raw.deletion_policy,
            )?,
            name: raw.name,
            status_reason: raw.status_reason,
            credentials,
            container: raw.container,
            coupled_env_id: raw.coupled_env_id,
            restored_from: raw.restored_from,
            backup: match (raw.backup_schedule, raw.backup_keep) {
                (Some(schedule), Some(keep)) => Some(BackupPolicy {
                    schedule,
                    keep: u32::try_from(keep).map_err(|e| StoreError::Corrupt {
                        table: RESOURCES,
                        id: raw.id.to_string(),
                        field: "backup_keep",
                        reason: e.to_string(),
                    })?,
                }),
                _ => None,
            },
            backup_last_at: raw.backup_last_at,
            host: raw.host,
            health: raw.health,
            health_at: raw.health_at,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }

    /// Records a new resource (`Creating`, or `Restoring` when restored from a snapshot).
    /// A taken name is a conflict; an unknown application is not found.
    pub async fn create_resource(&self, new: &NewResource<'_>) -> Result<ResourceRow> {
        let mut tx = self.pool().begin().await?;
        let app: Option<(i64,)> = sqlx::query_as("SELECT id FROM apps WHERE name = ?")
            .bind(new.app)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((app_id,)) = app else {
            return Err(StoreError::NotFound(format!(
                "application '{}' not found",
                new.app
            )));
        };
        let json = serde_json::to_string(new.credentials)
            .map_err(|e| StoreError::Encode(format!("credentials: {e}")))?;
        let status = if new.restored_from.is_some() {
            ResourceStatus::Restoring
        } else {
            ResourceStatus::Creating
        };
        let at = now();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO resources (app_id, name, kind, size, status, credentials, container,
                 deletion_policy, coupled_env_id, restored_from, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(app_id)
        .bind(new.name)
        .bind(new.kind.as_str())
        .bind(new.size.as_str())
        .bind(status.as_str())
        .bind(self.seal(RESOURCE_CREDENTIALS, &json)?)
        .bind(new.container)
        .bind(new.deletion_policy.as_str())
        .bind(new.coupled_env_id)
        .bind(new.restored_from)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            unique_or(e, || {
                format!("a resource named '{}' already exists", new.name)
            })
        })?;
        tx.commit().await?;
        self.resource_by_id(id).await
    }

    pub async fn resource_by_id(&self, id: i64) -> Result<ResourceRow> {
        let raw: Option<RawResource> = sqlx::query_as(&format!("{SELECT_RESOURCE} WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let raw = raw.ok_or_else(|| StoreError::NotFound(format!("resource {id} not found")))?;
        self.resource_from(raw)
    }

    /// The resource of that name, if any.
    pub async fn get_resource(&self, name: &str) -> Result<Option<ResourceRow>> {
        let raw: Option<RawResource> =
            sqlx::query_as(&format!("{SELECT_RESOURCE} WHERE r.name = ?"))
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        raw.map(|r| self.resource_from(r)).transpose()
    }

    /// All resources, or those of one application, by name.
    pub async fn list_resources(&self, app: Option<&str>) -> Result<Vec<ResourceRow>> {
        let raws: Vec<RawResource> = match app {
            Some(app) => {
                sqlx::query_as(&format!(
                    "{SELECT_RESOURCE} WHERE a.name = ? ORDER BY r.name"
                ))
                .bind(app)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as(&format!("{SELECT_RESOURCE} ORDER BY r.name"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        raws.into_iter().map(|r| self.resource_from(r)).collect()
    }

    /// Moves a resource to `to` only if it is still in `from` (a compare-and-set, so two
    /// requests cannot both start an operation). Returns whether it moved.
    pub async fn set_resource_status(
        &self,
        id: i64,
        from: ResourceStatus,
        to: ResourceStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE resources SET status = ?, status_reason = ?, updated_at = ? WHERE id = ? AND status = ?",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now())
        .bind(id)
        .bind(from.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a resource's row (its attachments and events go with it; its snapshots stay).
    /// Refused while it is attached to an environment.
    pub async fn delete_resource(&self, id: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        // Attachments to terminated environments no longer count.
        sqlx::query(
            "DELETE FROM resource_attachments WHERE resource_id = ? AND env_id IN
                 (SELECT id FROM environments WHERE status = ?)",
        )
        .bind(id)
        .bind(EnvStatus::Terminated.as_str())
        .execute(&mut *tx)
        .await?;
        let (attached,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM resource_attachments WHERE resource_id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if attached > 0 {
            return Err(StoreError::Conflict(format!(
                "resource {id} is still attached to {attached} environment(s)"
            )));
        }
        sqlx::query("DELETE FROM resources WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Attaches a resource to an environment. Attaching twice is a conflict.
    pub async fn attach_resource(
        &self,
        resource_id: i64,
        env_id: i64,
        prefix: Option<&VarPrefix>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO resource_attachments (resource_id, env_id, prefix, state, attached_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(resource_id)
        .bind(env_id)
        .bind(prefix.map(VarPrefix::as_str))
        .bind(AttachmentState::Attaching.as_str())
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| unique_or(e, || "the resource is already attached to that environment".to_string()))?;
        Ok(())
    }

    /// Starts a detach (`detaching`: instances started from now on lack the variables);
    /// returns whether there was an attachment not already detaching.
    pub async fn detach_resource(&self, resource_id: i64, env_id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE resource_attachments SET state = ?1
             WHERE resource_id = ?2 AND env_id = ?3 AND state <> ?1",
        )
        .bind(AttachmentState::Detaching.as_str())
        .bind(resource_id)
        .bind(env_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The environment has rolled: an attaching attachment is `attached`, a detaching one goes.
    pub async fn attachment_rolled(&self, resource_id: i64, env_id: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM resource_attachments WHERE resource_id = ? AND env_id = ? AND state = ?",
        )
        .bind(resource_id)
        .bind(env_id)
        .bind(AttachmentState::Detaching.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE resource_attachments SET state = ?
             WHERE resource_id = ? AND env_id = ? AND state = ?",
        )
        .bind(AttachmentState::Attached.as_str())
        .bind(resource_id)
        .bind(env_id)
        .bind(AttachmentState::Attaching.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The attachments of a resource, or of an environment.
    pub async fn attachments(
        &self,
        resource_id: Option<i64>,
        env_id: Option<i64>,
    ) -> Result<Vec<AttachmentRow>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            String,
            i64,
            String,
            Option<String>,
            String,
            DateTime<Utc>,
        )> = sqlx::query_as(
            "SELECT t.resource_id, r.name, t.env_id, e.name, t.prefix, t.state, t.attached_at
             FROM resource_attachments t
             JOIN resources r ON r.id = t.resource_id
             JOIN environments e ON e.id = t.env_id
             WHERE (?1 IS NULL OR t.resource_id = ?1) AND (?2 IS NULL OR t.env_id = ?2)
               AND e.status <> ?3
             ORDER BY r.name, e.name",
        )
        .bind(resource_id)
        .bind(env_id)
        .bind(EnvStatus::Terminated.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(
                |(resource_id, resource, env_id, env, prefix, state, attached_at)| {
                    let prefix = prefix
                        .map(|p| {
                            VarPrefix::parse(&p).map_err(|e| StoreError::Corrupt {
                                table: "resource_attachments",
                                id: format!("{resource_id}/{env_id}"),
                                field: "prefix",
                                reason: e.to_string(),
                            })
                        })
                        .transpose()?;
                    let id = format!("{resource_id}/{env_id}");
                    let state = parse_field("resource_attachments", id, "state", &state)?;
                    Ok(AttachmentRow {
                        resource_id,
                        resource,
                        env_id,
                        env,
                        prefix,
                        state,
                        attached_at,
                    })
                },
            )
            .collect()
    }

    /// Starts a snapshot's row (`creating`); `file` is relative to the data directory.
    pub async fn begin_snapshot(
        &self,
        resource: &ResourceRow,
        file_for: impl FnOnce(i64) -> String,
        final_snapshot: bool,
    ) -> Result<SnapshotRow> {
        let mut tx = self.pool().begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO resource_snapshots (app_id, resource_name, kind, status, file, final, created_at)
             VALUES (?, ?, ?, ?, '', ?, ?) RETURNING id",
        )
        .bind(resource.app_id)
        .bind(&resource.name)
        .bind(resource.kind.as_str())
        .bind(SnapshotStatus::Creating.as_str())
        .bind(final_snapshot)
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE resource_snapshots SET file = ? WHERE id = ?")
            .bind(file_for(id))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.snapshot(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("snapshot {id} not found")))
    }

    /// Ends a snapshot: `available` with its size, or `failed`.
    pub async fn finish_snapshot(&self, id: i64, size_bytes: Option<u64>) -> Result<()> {
        let status = if size_bytes.is_some() {
            SnapshotStatus::Available
        } else {
            SnapshotStatus::Failed
        };
        let size = size_bytes.and_then(|s| i64::try_from(s).ok());
        sqlx::query(
            "UPDATE resource_snapshots SET status = ?, size_bytes = ?, finished_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(size)
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn snapshot(&self, id: i64) -> Result<Option<SnapshotRow>> {
        Ok(sqlx::query_as(&format!("{SELECT_SNAPSHOT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The snapshots taken of resources of that name (they outlive the resource), newest first.
    pub async fn snapshots_of(&self, resource_name: &str) -> Result<Vec<SnapshotRow>> {
        Ok(sqlx::query_as(&format!(
            "{SELECT_SNAPSHOT} WHERE resource_name = ? ORDER BY id DESC"
        ))
        .bind(resource_name)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn add_resource_event(
        &self,
        resource_id: i64,
        severity: Severity,
        message: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO resource_events (resource_id, severity, message, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(resource_id)
        .bind(severity.as_str())
        .bind(message)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A resource's events, oldest first.
    pub async fn resource_events(&self, resource_id: i64) -> Result<Vec<ResourceEventRow>> {
        Ok(sqlx::query_as(
            "SELECT id, severity, message, created_at FROM resource_events WHERE resource_id = ? ORDER BY id",
        )
        .bind(resource_id)
        .fetch_all(self.pool())
        .await?)
    }
}
