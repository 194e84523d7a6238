//! The resources' loop (run by the leader with the other loops): automated backups when
//! their schedule fires, pruned to the newest `keep`; and health checks of every Available
//! resource (`pg_isready`, `mariadb-admin ping`, redis `PING` by exec), a change of health
//! being an event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use sprout_core::resource::ResourceStatus;
use sprout_core::Severity;
use sprout_store::ResourceRow;
use tokio_util::sync::CancellationToken;

use crate::Control;

/// How often the loop looks at the resources (the finest backup schedule is per second).
const TICK: Duration = Duration::from_secs(1);
/// How often each resource's engine is health-checked.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

pub(super) const HEALTHY: &str = "healthy";
pub(super) const UNHEALTHY: &str = "unhealthy";

impl Control {
    /// Runs until `shutdown`: backups and health checks of the resources.
    pub async fn run_resource_upkeep(&self, shutdown: CancellationToken) {
        tracing::info!("resource upkeep started");
        let mut checked: HashMap<i64, Instant> = HashMap::new();
        loop {
            match self.store().list_resources(None).await {
                Ok(resources) => {
                    for r in resources {
                        self.backup_if_due(&r).await;
                        let due = match checked.get(&r.id) {
                            Some(at) => at.elapsed() >= HEALTH_EVERY,
                            None => true,
                        };
                        if due && r.status == ResourceStatus::Available {
                            checked.insert(r.id, Instant::now());
                            self.check_resource_health(&r).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the resources"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        tracing::info!("resource upkeep stopped");
    }

    /// Starts an automated snapshot when the schedule fired since the last one (or since
    /// the resource was created) and the resource is Available; afterwards prunes the
    /// automated snapshots beyond `keep`. A resource busy at that moment is backed up as soon
    /// as it is Available again.
    async fn backup_if_due(&self, r: &ResourceRow) {
        let Some(policy) = &r.backup else { return };
        let now = Utc::now();
        let last = r.backup_last_at.unwrap_or(r.created_at);
        if r.status != ResourceStatus::Available || !policy.due(last, now) {
            return;
        }
        match self.store().claim_backup(r.id, r.backup_last_at, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(resource = %r.name, error = %e, "cannot record a backup");
                return;
            }
        }
        let snap = match self.begin_snapshot(r, false).await {
            Ok(s) => s,
            Err(e) => {
                self.resource_event(r, Severity::Warn, &format!("scheduled backup skipped: {e}"))
                    .await;
                return;
            }
        };
        if let Err(e) = self.store().set_snapshot_automated(snap.id).await {
            tracing::warn!(resource = %r.name, error = %e, "cannot mark the snapshot automated");
        }
        self.resource_event(
            r,
            Severity::Info,
            &format!(
                "scheduled backup: snapshot {} started ('{}')",
                snap.id, policy.schedule
            ),
        )
        .await;
        let control = self.clone();
        let r = r.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let taken = control.take_snapshot(&r, &snap).await;
            let _ = control
                .store()
                .set_resource_status(
                    r.id,
                    ResourceStatus::Snapshotting,
                    ResourceStatus::Available,
                    None,
                )
                .await;
            if taken {
                control.prune_backups(&r, &policy).await;
            }
        });
    }

    /// Deletes the automated snapshots (files and rows) beyond the newest `keep`.
    async fn prune_backups(
        &self,
        r: &ResourceRow,
        policy: &sprout_core::resource_ha::BackupPolicy,
    ) {
        let snaps = match self
            .store()
            .automated_snapshots(r.app_id, &r.name, r.created_at)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(resource = %r.name, error = %e, "cannot list backups to prune");
                return;
            }
        };
        let ids: Vec<i64> = snaps.iter().map(|s| s.id).collect();
        for id in policy.to_prune(&ids) {
            let Some(snap) = snaps.iter().find(|s| s.id == id) else {
                continue;
            };
            let path = self.snapshot_path(&snap.file);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(resource = %r.name, snapshot = id, error = %e, "cannot delete a pruned snapshot's file");
                    continue;
                }
            }
            if let Err(e) = self.store().delete_snapshot(id).await {
                tracing::warn!(resource = %r.name, snapshot = id, error = %e, "cannot delete a pruned snapshot");
                continue;
            }
            self.resource_event(
                r,
                Severity::Info,
                &format!(
                    "snapshot {id} pruned (automated backups keep the newest {})",
                    policy.keep
                ),
            )
            .await;
        }
    }

    /// Checks the engine answers; records the outcome and, when it changed, an event.
    async fn check_resource_health(&self, r: &ResourceRow) {
        let (health, detail) = match self.runtime().resource_healthy(&r.container).await {
            Ok(true) => (HEALTHY, String::new()),
            Ok(false) => (UNHEALTHY, "the engine does not answer".to_string()),
            Err(e) => (UNHEALTHY, e.to_string()),
        };
        // The status may have moved while we checked (a snapshot, a promotion): only an
        // Available resource's health is recorded.
        match self.store().resource_by_id(r.id).await {
            Ok(now) if now.status == ResourceStatus::Available => {}
            _ => return,
        }
        let before = match self.store().set_resource_health(r.id, health).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(resource = %r.name, error = %e, "cannot record health");
                return;
            }
        };
        if before.as_deref() == Some(health) {
            return;
        }
        match (before.as_deref(), health) {
            (_, UNHEALTHY) => {
                self.resource_event(r, Severity::Warn, &format!("unhealthy: {detail}"))
                    .await
            }
            (Some(UNHEALTHY), _) => {
                self.resource_event(r, Severity::Info, "healthy again")
                    .await
            }
            _ => {}
        }
    }
}
