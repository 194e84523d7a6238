//! Attached resources (issue 15): create, attach, detach, snapshot, restore, delete. The
//! rules are in `sprout_core::resource`; the container work in `sprout_runtime`; this module
//! orders the steps, records them, and rolls environments whose variables change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sprout_core::auth::Role;
use sprout_core::resource::api;
use sprout_core::resource::{
    self as domain, AttachedAs, Credentials, DeletionPolicy, Endpoint, ResourceKind, ResourceOp,
    ResourceStatus, VarPrefix,
};
use sprout_core::{EnvName, InstanceType, ResourceName, Severity};
use sprout_runtime::ResourceSpec;
use sprout_store::{EnvRow, NewResource, ResourceRow, SnapshotRow};

use crate::{Control, ControlError, Result};

/// The label naming the server a resource's container, volume and network belong to.
pub const RESOURCE_OF: &str = "sprout.resource-of";

/// Length of a generated password (letters and digits).
const PASSWORD_LEN: usize = 32;

fn password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..PASSWORD_LEN)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

fn invalid(e: impl std::fmt::Display) -> ControlError {
    ControlError::Invalid(e.to_string())
}

fn conflict(e: domain::ResourceError) -> ControlError {
    ControlError::Conflict(e.to_string())
}

/// Where instances reach a resource: its name, on every attached environment's network.
fn endpoint(r: &ResourceRow) -> Endpoint {
    Endpoint {
        host: r.name.clone(),
        port: r.kind.port(),
    }
}

impl Control {
    fn snapshot_path(&self, file: &str) -> PathBuf {
        self.config().data_dir.join(file)
    }

    /// A resource of `app` by name; one of another application is "not found" there.
    async fn resource_of(&self, app: &str, name: &str) -> Result<ResourceRow> {
        let name = ResourceName::parse(name)?;
        match self.store().get_resource(name.as_str()).await? {
            Some(r) if r.app == app => Ok(r),
            _ => Err(ControlError::NotFound(format!(
                "resource '{name}' not found in application '{app}'"
            ))),
        }
    }

    async fn resource_view(&self, r: &ResourceRow, reader: Role) -> Result<api::Resource> {
        let creds = if reader.reads_secrets() {
            r.credentials.clone()
        } else {
            r.credentials.masked()
        };
        let variables: BTreeMap<String, String> =
            domain::variables(r.kind, &creds, &endpoint(r), None, None)
                .into_iter()
                .collect();
        let attachments = self
            .store()
            .attachments(Some(r.id), None)
            .await?
            .into_iter()
            .map(|a| api::Attachment {
                environment: a.env,
                prefix: a.prefix.map(|p| p.as_str().to_string()),
                state: a.state,
                attached_at: a.attached_at,
            })
            .collect();
        Ok(api::Resource {
            app: r.app.clone(),
            name: r.name.clone(),
            kind: r.kind,
            size: r.size,
            status: r.status,
            status_reason: r.status_reason.clone(),
            deletion_policy: r.deletion_policy,
            host: r.name.clone(),
            port: r.kind.port(),
            database: creds.database.clone(),
            username: creds.username.clone(),
            password: creds.password.clone(),
            variables,
            attachments,
            restored_from: r.restored_from,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    fn snapshot_view(&self, s: &SnapshotRow, app: &str) -> Result<api::Snapshot> {
        Ok(api::Snapshot {
            id: s.id,
            app: app.to_string(),
            resource: s.resource_name.clone(),
            kind: s
                .kind
                .parse()
                .map_err(|e| ControlError::Internal(format!("snapshot {}: {e}", s.id)))?,
            status: s.status.clone(),
            size_bytes: s.size_bytes,
            final_snapshot: s.final_snapshot,
            created_at: s.created_at,
            finished_at: s.finished_at,
        })
    }

    async fn resource_event(&self, r: &ResourceRow, severity: Severity, message: &str) {
        tracing::info!(resource = %r.name, app = %r.app, %message, "resource event");
        if let Err(e) = self
            .store()
            .add_resource_event(r.id, severity, message)
            .await
        {
            tracing::warn!(resource = %r.name, error = %e, "recording a resource event failed");
        }
    }

    pub async fn list_resources(
        &self,
        app: Option<&str>,
        reader: Role,
    ) -> Result<Vec<api::Resource>> {
        if let Some(app) = app {
            self.store()
                .get_app(app)
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        }
        let mut out = Vec::new();
        for r in self.store().list_resources(app).await? {
            out.push(self.resource_view(&r, reader).await?);
        }
        Ok(out)
    }

    pub async fn get_resource(&self, app: &str, name: &str, reader: Role) -> Result<api::Resource> {
        let r = self.resource_of(app, name).await?;
        self.resource_view(&r, reader).await
    }

    pub async fn resource_events(&self, app: &str, name: &str) -> Result<Vec<api::ResourceEvent>> {
        let r = self.resource_of(app, name).await?;
        self.store()
            .resource_events(r.id)
            .await?
            .into_iter()
            .map(|e| {
                Ok(api::ResourceEvent {
                    time: e.created_at,
                    severity: e
                        .severity
                        .parse()
                        .map_err(|e| ControlError::Internal(format!("resource event: {e}")))?,
                    message: e.message,
                })
            })
            .collect()
    }

    /// Records a new resource and starts it in the background (`Creating` → `Available`).
    pub async fn create_resource(
        &self,
        app: &str,
        req: &api::CreateResource,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let name = ResourceName::parse(&req.name)?;
        let kind: ResourceKind = req.kind.parse().map_err(invalid)?;
        let size: InstanceType = match &req.size {
            Some(s) => s.parse().map_err(invalid)?,
            None => kind.default_size(),
        };
        let policy: DeletionPolicy = match &req.deletion_policy {
            Some(p) => p.parse().map_err(invalid)?,
            None => DeletionPolicy::default(),
        };
        self.check_instance_type(size).await?;
        let row = self
            .insert_resource(app, &name, kind, size, policy, None)
            .await?;
        let who = by.unwrap_or("system");
        self.resource_event(
            &row,
            Severity::Info,
            &format!("creating {kind} resource '{name}' ({size}) (by {who})"),
        )
        .await;
        self.spawn_provision(row.clone(), None);
        self.resource_view(&row, Role::Admin).await
    }

    async fn insert_resource(
        &self,
        app: &str,
        name: &ResourceName,
        kind: ResourceKind,
        size: InstanceType,
        policy: DeletionPolicy,
        restored_from: Option<i64>,
    ) -> Result<ResourceRow> {
        let creds = Credentials::new(name, password()).map_err(invalid)?;
        let container = domain::container_name(app, name);
        Ok(self
            .store()
            .create_resource(&NewResource {
                app,
                name: name.as_str(),
                kind,
                size,
                credentials: &creds,
                container: &container,
                deletion_policy: policy,
                coupled_env_id: None,
                restored_from,
            })
            .await?)
    }

    fn spawn_provision(&self, row: ResourceRow, restore: Option<PathBuf>) {
        let control = self.clone();
        tokio::spawn(async move {
            let from = row.status;
            match control.provision(&row, restore).await {
                Ok(()) => {
                    let _ = control
                        .store()
                        .set_resource_status(row.id, from, ResourceStatus::Available, None)
                        .await;
                    control
                        .resource_event(&row, Severity::Info, "available")
                        .await;
                }
                Err(e) => {
                    let reason = e.to_string();
                    let _ = control
                        .store()
                        .set_resource_status(row.id, from, ResourceStatus::Failed, Some(&reason))
                        .await;
                    control
                        .resource_event(&row, Severity::Error, &format!("failed: {reason}"))
                        .await;
                }
            }
        });
    }

    /// Builds the image if missing, starts the container, waits until the engine answers.
    async fn provision(&self, r: &ResourceRow, restore: Option<PathBuf>) -> Result<()> {
        let image = r.kind.image();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let build = async move { self.runtime().ensure_platform(image, &tx).await };
        let log = async {
            while let Some(line) = rx.recv().await {
                self.resource_event(r, Severity::Info, &line).await;
            }
        };
        let (built, ()) = tokio::join!(build, log);
        built.map_err(|e| ControlError::Unavailable(e.to_string()))?;
        let limits = r.size.limits();
        let spec = ResourceSpec {
            container: r.container.clone(),
            alias: r.name.clone(),
            kind: r.kind,
            image: image.to_string(),
            env: r.credentials.container_env(r.kind),
            // Not `sprout.server`: the instance loops own what carries that label and would
            // remove a container of no environment as an orphan.
            labels: BTreeMap::from([
                (RESOURCE_OF.to_string(), self.server_id().to_string()),
                ("sprout.app".to_string(), r.app.clone()),
                ("sprout.resource".to_string(), r.name.clone()),
            ])
            .into_iter()
            .collect(),
            millicpus: limits.millicpus,
            memory_mib: limits.memory_mib,
            pids: limits.pids.max(256),
            restore_from: restore,
        };
        self.runtime()
            .create_resource(&spec)
            .await
            .map_err(|e| ControlError::Unavailable(e.to_string()))?;
        let deadline = Instant::now() + self.config().operation_timeout;
        loop {
            match self.runtime().resource_healthy(&r.container).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::debug!(resource = %r.name, error = %e, "health check failed"),
            }
            if Instant::now() > deadline {
                return Err(ControlError::Unavailable(format!(
                    "resource '{}' did not answer its health check in time",
                    r.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The variables an instance of `env` gets from its attached resources. A resource that
    /// cannot be read is left out (and logged): it is never a reason not to start.
    pub(crate) async fn resource_env_vars(&self, env: &EnvRow) -> Vec<String> {
        let attachments = match self.store().attachments(None, Some(env.id)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(env = %env.name, error = %e, "cannot read the environment's resources");
                return Vec::new();
            }
        };
        let mut vars = Vec::new();
        for a in attachments.into_iter().filter(|a| a.state != "detaching") {
            match self.store().resource_by_id(a.resource_id).await {
                Ok(r) => vars.extend(
                    domain::variables(
                        r.kind,
                        &r.credentials,
                        &endpoint(&r),
                        None,
                        a.prefix.as_ref(),
                    )
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}")),
                ),
                Err(e) => {
                    tracing::warn!(env = %env.name, resource = %a.resource, error = %e, "resource left out")
                }
            }
        }
        vars
    }

    /// Attaches a resource to an environment of its application: its network joins the
    /// environment's, and the environment rolls so every instance gets the variables.
    pub async fn attach_resource(
        &self,
        app: &str,
        name: &str,
        req: &api::AttachRequest,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let r = self.resource_of(app, name).await?;
        let env_name = EnvName::parse(&req.environment)?;
        let env = self.live_env(env_name.as_str()).await?;
        if env.app != r.app {
            return Err(ControlError::Conflict(format!(
                "environment '{}' belongs to application '{}', resource '{}' to '{}': a resource attaches only to environments of its application",
                env.name, env.app, r.name, r.app
            )));
        }
        let prefix = req.prefix.as_deref().map(VarPrefix::parse).transpose()?;
        domain::transition(r.status, ResourceOp::Attach).map_err(conflict)?;
        let existing = self.attached_as(&env).await?;
        let new = AttachedAs {
            resource: ResourceName::parse(&r.name)?,
            kind: r.kind,
            prefix: prefix.clone(),
        };
        domain::check_attach(&env_name, &existing, &new).map_err(conflict)?;
        let status = env.status;
        if status.is_transitional() {
            return Err(ControlError::Conflict(format!(
                "environment '{}' is {status}; attach once that ends",
                env.name
            )));
        }
        self.runtime()
            .attach_resource(&r.container, &self.network_of(&env), &r.name)
            .await
            .map_err(|e| ControlError::Unavailable(e.to_string()))?;
        self.store()
            .attach_resource(r.id, env.id, prefix.as_ref())
            .await?;
        let who = by.unwrap_or("system");
        let shown = prefix
            .as_ref()
            .map(|p| format!(" as {}", p.as_str()))
            .unwrap_or_default();
        let message = format!(
            "resource '{}' attached{shown} (by {who}); rolling instances",
            r.name
        );
        self.store()
            .add_event(env.id, Severity::Info, &message)
            .await?;
        self.resource_event(
            &r,
            Severity::Info,
            &format!("attached to '{}'{shown} (by {who})", env.name),
        )
        .await;
        self.spawn_roll(env, r.id, None);
        self.resource_view(&r, Role::Admin).await
    }

    async fn attached_as(&self, env: &EnvRow) -> Result<Vec<AttachedAs>> {
        let mut out = Vec::new();
        for a in self.store().attachments(None, Some(env.id)).await? {
            let r = self.store().resource_by_id(a.resource_id).await?;
            out.push(AttachedAs {
                resource: ResourceName::parse(&r.name)?,
                kind: r.kind,
                prefix: a.prefix,
            });
        }
        Ok(out)
    }

    /// Detaches: the environment rolls without the variables, then the resource leaves its
    /// network.
    pub async fn detach_resource(
        &self,
        app: &str,
        name: &str,
        env_name: &str,
        by: Option<&str>,
    ) -> Result<api::Resource> {
        let r = self.resource_of(app, name).await?;
        let env = self.live_env(env_name).await?;
        domain::transition(r.status, ResourceOp::Detach).map_err(conflict)?;
        if !self.store().detach_resource(r.id, env.id).await? {
            return Err(ControlError::NotFound(format!(
                "resource '{}' is not attached to environment '{}'",
                r.name, env.name
            )));
        }
        let who = by.unwrap_or("system");
        self.store()
            .add_event(
                env.id,
                Severity::Info,
                &format!(
                    "resource '{}' detached (by {who}); rolling instances",
                    r.name
                ),
            )
            .await?;
        self.resource_event(
            &r,
            Severity::Info,
            &format!("detached from '{}' (by {who})", env.name),
        )
        .await;
        self.spawn_roll(env, r.id, Some(r.container.clone()));
        self.resource_view(&r, Role::Admin).await
    }

    /// Replaces the environment's instances one at a time (like a restart), so each new one
    /// gets the current variables; then, for a detach, disconnects the resource.
    fn spawn_roll(&self, env: EnvRow, resource_id: i64, disconnect: Option<String>) {
        let control = self.clone();
        tokio::spawn(async move {
            let ids: Vec<String> = match control.env_containers(&env).await {
                Ok(cs) => cs
                    .iter()
                    .filter(|c| c.running)
                    .filter_map(|c| c.labels.get("sprout.instance").cloned())
                    .collect(),
                Err(e) => {
                    tracing::warn!(env = %env.name, error = %e, "cannot list instances to roll");
                    Vec::new()
                }
            };
            if let Err(e) = control.rolling_restart(&env, ids).await {
                tracing::warn!(env = %env.name, error = %e, "rolling for a resource change stopped");
                let _ = control
                    .store()
                    .add_event(env.id, Severity::Warn, &format!("rolling stopped: {e}"))
                    .await;
            }
            if let Some(container) = disconnect {
                if let Err(e) = control
                    .runtime()
                    .detach_resource(&container, &control.network_of(&env))
                    .await
                {
                    tracing::warn!(env = %env.name, error = %e, "disconnecting the resource failed");
                }
            }
            if let Err(e) = control.store().attachment_rolled(resource_id, env.id).await {
                tracing::warn!(env = %env.name, error = %e, "recording the end of the roll failed");
            }
        });
    }

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

    async fn begin_snapshot(&self, r: &ResourceRow, final_snapshot: bool) -> Result<SnapshotRow> {
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
    async fn take_snapshot(&self, r: &ResourceRow, snap: &SnapshotRow) -> bool {
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
        if snap.status != "available" {
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
        self.spawn_provision(row.clone(), Some(file));
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
            match control.runtime().remove_resource(&r.container).await {
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
}
