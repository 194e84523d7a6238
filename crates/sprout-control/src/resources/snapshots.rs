//! Snapshots of resources: manual, final (on delete) and automated (on a backup schedule,
//! pruned to the newest `keep`); restoring one into a new resource; deleting a resource.

use sprout_core::auth::Role;
use sprout_core::resource::api;
use sprout_core::resource::{
    self as domain, DeletionPolicy, ResourceKind, ResourceOp, ResourceStatus, SnapshotStatus,
};
use sprout_core::{EnvName, ResourceName, Severity};
use sprout_store::{ResourceRow, SnapshotRow};

use super::conflict;
use crate::{Control, ControlError, Result};

impl Control {
    /// Takes a logical snapshot (`Available` → `Snapshotting` → `Available`).
    pub async fn snapshot_resource(
        &self,
        app: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<api::Snapshot> {
        let r = self.resource_of(app, name).await?;
        let snap = self.begin_snapshot(&r, false).await?;
        let who = by.unwrap_or("system");
        self.resource_event(
            &r,
            Severity::Info,
            &format!("snapshot {} started (by {who})", snap.id),
        )
        .await;
        let control = self.clone();
        let view = self.snapshot_view(&snap, &r.app)?;
        tokio::spawn(async move {
            control.take_snapshot(&r, &snap).await;
            let _ = control
                .store()
                .set_resource_status(
                    r.id,
                    ResourceStatus::Snapshotting,
                    ResourceStatus::Available,
                    None,
                )
                .await;
        });
        Ok(view)
    }

    pub(super) async fn begin_snapshot(
        &self,
        r: &ResourceRow,
        final_snapshot: bool,
    ) -> Result<SnapshotRow> {
        let to = domain::transition(r.status, ResourceOp::Snapshot).map_err(conflict)?;
        if !self
            .store()
            .set_resource_status(r.id, r.status, to, None)
            .await?
        {
            return Err(ControlError::Conflict(format!(
                "resource '{}' changed meanwhile; try again",
                r.name
            )));
        }
        let ext = r.kind.dump_file();
        let name = r.name.clone();
        Ok(self
            .store()
            .begin_snapshot(
                r,
                move |id| format!("snapshots/{id}-{name}-{ext}"),
                final_snapshot,
            )
            .await?)
    }

    /// Dumps into the snapshot's file and records the outcome. Returns whether it worked.
    pub(super) async fn take_snapshot(&self, r: &ResourceRow, snap: &SnapshotRow) -> bool {
        let path = self.snapshot_path(&snap.file);
        match self
            .runtime()
            .snapshot_resource(&r.container, r.kind, &path)
            .await
        {
            Ok(size) => {
                let _ = self.store().finish_snapshot(snap.id, Some(size)).await;
                self.resource_event(
                    r,
                    Severity::Info,
                    &format!("snapshot {} taken ({size} bytes)", snap.id),
                )
                .await;
                true
            }
            Err(e) => {
                let _ = self.store().finish_snapshot(snap.id, None).await;
                self.resource_event(
                    r,
                    Severity::Error,
                    &format!("snapshot {} failed: {e}", snap.id),
                )
                .await;
                false
            }
        }
    }

    pub async fn resource_snapshots(&self, app: &str, name: &str) -> Result<Vec<api::Snapshot>> {
        let name = ResourceName::parse(name)?;
        let app_row = self
            .store()
            .get_app(app)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        self.store()
            .snapshots_of(name.as_str())
            .await?
            .iter()
            .filter(|s| s.app_id == app_row.id)
            .map(|s| self.snapshot_view(s, app))
            .collect()
    }

    /// A new resource from a snapshot (`Restoring` → `Available`), same kind and application.
    pub async fn restore_snapshot(
        &self,
        snapshot_id: i64,
        req: &api::RestoreRequest,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let to = ResourceName::parse(&req.to)?;
        let snap =
            self.store().snapshot(snapshot_id).await?.ok_or_else(|| {
                ControlError::NotFound(format!("snapshot {snapshot_id} not found"))
            })?;
        if snap.status != SnapshotStatus::Available.as_str() {
            return Err(ControlError::Conflict(format!(
                "snapshot {snapshot_id} is {}, not available",
                snap.status
            )));
        }
        let file = self.snapshot_path(&snap.file);
        if !tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return Err(ControlError::Conflict(format!(
                "snapshot {snapshot_id}'s file is missing from the data directory"
            )));
        }
        let kind: ResourceKind = snap
            .kind
            .parse()
            .map_err(|e| ControlError::Internal(format!("snapshot {snapshot_id}: {e}")))?;
        let app = self
            .store()
            .list_apps()
            .await?
            .into_iter()
            .find(|a| a.id == snap.app_id)
            .ok_or_else(|| {
                ControlError::NotFound(format!("snapshot {snapshot_id}'s application is gone"))
            })?;
        self.check_instance_type(kind.default_size()).await?;
        let row = self
            .insert_resource(
                &app.name,
                &to,
                kind,
                kind.default_size(),
                DeletionPolicy::default(),
                Some(snapshot_id),
                false,
            )
            .await?;
        let who = by.unwrap_or("system");
        self.resource_event(
            &row,
            Severity::Info,
            &format!(
                "restoring snapshot {snapshot_id} of '{}' (by {who})",
                snap.resource_name
            ),
        )
        .await;
        self.spawn_provision(row.clone(), Some(file), 0);
        self.resource_view(&row, Role::Admin).await
    }

    /// Deletes a resource no environment uses: a final snapshot first (unless skipped or
    /// its policy says `delete`), then the container and its data.
    pub async fn delete_resource(
        &self,
        app: &str,
        name: &str,
        skip_final_snapshot: bool,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let r = self.resource_of(app, name).await?;
        let attached: Vec<EnvName> = self
            .store()
            .attachments(Some(r.id), None)
            .await?
            .iter()
            .filter_map(|a| EnvName::parse(&a.env).ok())
            .collect();
        domain::check_delete(&ResourceName::parse(&r.name)?, &attached).map_err(conflict)?;
        let to = domain::transition(r.status, ResourceOp::Delete).map_err(conflict)?;
        let final_snapshot = domain::final_snapshot(r.deletion_policy, skip_final_snapshot)
            .unwrap_or(!skip_final_snapshot)
            && r.status == ResourceStatus::Available;
        // The final snapshot's row is made before the status moves, so it is listed at once.
        let snap = if final_snapshot {
            let ext = r.kind.dump_file();
            let n = r.name.clone();
            Some(
                self.store()
                    .begin_snapshot(&r, move |id| format!("snapshots/{id}-{n}-{ext}"), true)
                    .await?,
            )
        } else {
            None
        };
        if !self
            .store()
            .set_resource_status(r.id, r.status, to, None)
            .await?
        {
            if let Some(s) = &snap {
                let _ = self.store().finish_snapshot(s.id, None).await;
            }
            return Err(ControlError::Conflict(format!(
                "resource '{}' changed meanwhile; try again",
                r.name
            )));
        }
        let who = by.unwrap_or("system");
        self.resource_event(&r, Severity::Info, &format!("deleting (by {who})"))
            .await;
        let view = self
            .resource_view(&self.store().resource_by_id(r.id).await?, Role::Admin)
            .await?;
        let control = self.clone();
        tokio::spawn(async move {
            if let Some(snap) = snap {
                if !control.take_snapshot(&r, &snap).await {
                    let _ = control
                        .store()
                        .set_resource_status(
                            r.id,
                            ResourceStatus::Deleting,
                            ResourceStatus::Failed,
                            Some("the final snapshot failed; nothing was deleted"),
                        )
                        .await;
                    return;
                }
            }
            match control.remove_resource_containers(&r).await {
                Ok(()) => {
                    if let Err(e) = control.store().delete_resource(r.id).await {
                        tracing::warn!(resource = %r.name, error = %e, "removing the resource's row failed");
                    }
                }
                Err(e) => {
                    let reason = format!("removing the container failed: {e}");
                    let _ = control
                        .store()
                        .set_resource_status(
                            r.id,
                            ResourceStatus::Deleting,
                            ResourceStatus::Failed,
                            Some(&reason),
                        )
                        .await;
                }
            }
        });
        Ok(view)
    }

    /// Removes a resource's replicas, its primary (with their volumes) and its private
    /// network.
    async fn remove_resource_containers(&self, r: &ResourceRow) -> Result<()> {
        let gone = |e: sprout_runtime::RuntimeError| ControlError::Unavailable(e.to_string());
        for rep in self.store().replicas(r.id).await? {
            self.runtime()
                .remove_resource_container(&rep.container)
                .await
                .map_err(gone)?;
        }
        self.runtime()
            .remove_resource(&r.container)
            .await
            .map_err(gone)?;
        // After a promotion the primary is not the container the network is named after.
        self.runtime()
            .remove_network(&super::private_network(r)?)
            .await
            .map_err(gone)
    }
}
