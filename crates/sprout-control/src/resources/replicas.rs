//! Read replicas of a postgres resource: containers that copy the primary (pg_basebackup -R)
//! over the resource's private network and stream from it; on attached environments' networks
//! each answers to its own host (`NAME-rN`) and to the host all replicas share (`NAME-read`,
//! `DATABASE_READ_URL`). Promoting one stops the primary (its last WAL reaches the replicas),
//! makes the replica the primary, points the other replicas at it, rolls the attached
//! environments onto the new `DATABASE_URL`, and removes the old primary.

use sprout_core::auth::Role;
use sprout_core::resource::api;
use sprout_core::resource::{self as domain, ResourceKind, ResourceOp, ResourceStatus};
use sprout_core::resource_ha as ha;
use sprout_core::Severity;
use sprout_store::ResourceRow;

use super::{conflict, invalid};
use crate::{Control, ControlError, Result};

fn unavailable(e: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(e.to_string())
}

fn index_of(idx: i64) -> u32 {
    u32::try_from(idx).unwrap_or(0)
}

impl Control {
    /// Connects the resource's primary and its replicas to an environment's network, each
    /// under its host names.
    pub(super) async fn connect_resource(&self, r: &ResourceRow, network: &str) -> Result<()> {
        self.runtime()
            .attach_resource(&r.container, network, &super::primary_host(r))
            .await
            .map_err(unavailable)?;
        for rep in self.store().replicas(r.id).await? {
            let aliases = [
                ha::replica_host(&r.name, index_of(rep.idx)),
                ha::read_host(&r.name),
            ];
            self.runtime()
                .attach_resource_as(&rep.container, network, &aliases)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Starts replica `index` of a resource whose primary answers, waits until it streams,
    /// and records it.
    pub(super) async fn add_replica(&self, r: &ResourceRow, index: u32) -> Result<()> {
        let base = super::private_network(r)?;
        let container = ha::replica_container(&base, index);
        let env = r.credentials.replica_env(r.kind, &r.container);
        let spec = self.resource_spec(r, &container, env, None)?;
        self.resource_event(
            r,
            Severity::Info,
            &format!("starting read replica {index} (pg_basebackup from the primary)"),
        )
        .await;
        self.start_resource_container(r, &spec).await?;
        self.store().add_replica(r.id, index, &container).await?;
        self.resource_event(
            r,
            Severity::Info,
            &format!(
                "read replica {index} streaming (host {})",
                ha::replica_host(&r.name, index)
            ),
        )
        .await;
        Ok(())
    }

    /// `sprout resource promote NAME --replica N`: starts the promotion in the background
    /// (`Available` → `Modifying` → `Available`).
    pub async fn promote_resource(
        &self,
        app: &str,
        name: &str,
        req: &api::PromoteRequest,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let r = self.resource_of(app, name).await?;
        if r.kind != ResourceKind::Postgres {
            return Err(invalid(ha::HaError::ReplicasNotSupported { kind: r.kind }));
        }
        let replicas = self.store().replicas(r.id).await?;
        let indexes: Vec<u32> = replicas.iter().map(|rep| index_of(rep.idx)).collect();
        ha::check_promote(&r.name, &indexes, req.replica)
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        let to = domain::transition(r.status, ResourceOp::Promote).map_err(conflict)?;
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
        let who = by.unwrap_or("system");
        self.resource_event(
            &r,
            Severity::Info,
            &format!(
                "promoting read replica {} to primary (by {who})",
                req.replica
            ),
        )
        .await;
        let view = self
            .resource_view(&self.store().resource_by_id(r.id).await?, Role::Admin)
            .await?;
        let control = self.clone();
        let index = req.replica;
        tokio::spawn(async move {
            let outcome = control.promote(&r, index).await;
            let (status, reason, severity, message) = match &outcome {
                Ok(()) => (
                    ResourceStatus::Available,
                    None,
                    Severity::Info,
                    format!("replica {index} is the primary"),
                ),
                Err(e) => (
                    ResourceStatus::Failed,
                    Some(format!("promoting replica {index} failed: {e}")),
                    Severity::Error,
                    format!("promoting replica {index} failed: {e}"),
                ),
            };
            let _ = control
                .store()
                .set_resource_status(r.id, ResourceStatus::Modifying, status, reason.as_deref())
                .await;
            control.resource_event(&r, severity, &message).await;
        });
        Ok(view)
    }

    async fn promote(&self, r: &ResourceRow, index: u32) -> Result<()> {
        let replicas = self.store().replicas(r.id).await?;
        let Some(chosen) = replicas.iter().find(|rep| index_of(rep.idx) == index) else {
            return Err(ControlError::NotFound(format!("replica {index} is gone")));
        };
        let host = ha::replica_host(&r.name, index);
        let envs = self.store().attachments(Some(r.id), None).await?;
        // Fence the old primary: a clean stop sends its last WAL to the replicas first.
        self.runtime()
            .stop_resource(&r.container)
            .await
            .map_err(unavailable)?;
        self.resource_event(r, Severity::Info, "old primary stopped")
            .await;
        let out = self
            .runtime()
            .exec_in(
                &chosen.container,
                vec!["sprout-resource".into(), "promote".into()],
            )
            .await
            .map_err(unavailable)?;
        if out.code != 0 {
            return Err(ControlError::Unavailable(format!(
                "pg_ctl promote ended with {}: {}",
                out.code,
                out.output.trim()
            )));
        }
        // On attached networks the new primary answers to its own host only (no longer to
        // the replicas' read host).
        for a in &envs {
            let env = self.live_env(&a.env).await?;
            let network = self.network_of(&env);
            self.runtime()
                .detach_resource(&chosen.container, &network)
                .await
                .map_err(unavailable)?;
            self.runtime()
                .attach_resource(&chosen.container, &network, &host)
                .await
                .map_err(unavailable)?;
        }
        self.store().promote_replica(r.id, index, &host).await?;
        self.resource_event(
            r,
            Severity::Info,
            &format!("replica {index} promoted; the primary is now {host}"),
        )
        .await;
        for other in replicas.iter().filter(|rep| rep.idx != chosen.idx) {
            let out = self
                .runtime()
                .exec_in(
                    &other.container,
                    vec![
                        "sprout-resource".into(),
                        "follow".into(),
                        chosen.container.clone(),
                    ],
                )
                .await
                .map_err(unavailable)?;
            let (severity, message) = if out.code == 0 {
                (
                    Severity::Info,
                    format!("replica {} now streams from {host}", other.idx),
                )
            } else {
                (
                    Severity::Warn,
                    format!(
                        "replica {} could not follow {host}: {}",
                        other.idx,
                        out.output.trim()
                    ),
                )
            };
            self.resource_event(r, severity, &message).await;
        }
        for a in &envs {
            let env = self.live_env(&a.env).await?;
            let _ = self
                .store()
                .add_event(
                    env.id,
                    Severity::Info,
                    &format!(
                        "resource '{}': replica {index} promoted to primary; rolling instances",
                        r.name
                    ),
                )
                .await;
            self.roll_instances(&env).await;
        }
        self.runtime()
            .remove_resource_container(&r.container)
            .await
            .map_err(unavailable)?;
        self.resource_event(r, Severity::Info, "old primary removed")
            .await;
        Ok(())
    }
}
