//! Attached resources (issue 15): create, attach, detach (here), snapshots, restore, delete
//! and automated backups (`snapshots`), read replicas and promotion (`replicas`), the loop of
//! backups and health checks (`upkeep`). The rules are in `sprout_core::resource` and
//! `sprout_core::resource_ha`; the container work in `sprout_runtime`; this module orders the
//! steps, records them, and rolls environments whose variables change.

mod replicas;
mod snapshots;
mod upkeep;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sprout_core::auth::Role;
use sprout_core::resource::api;
use sprout_core::resource::{
    self as domain, AttachedAs, AttachmentState, Credentials, DeletionPolicy, Endpoint,
    ResourceKind, ResourceOp, ResourceStatus, VarPrefix,
};
use sprout_core::resource_ha::{self as ha, BackupPolicy};
use sprout_core::{EnvName, InstanceType, ResourceName, Severity};
use sprout_runtime::ResourceSpec;
use sprout_store::{EnvRow, NewResource, ReplicaRow, ResourceRow, SnapshotRow};

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

/// Where instances reach a resource's primary, on every attached environment's network: its
/// name, or a promoted replica's host name.
fn endpoint(r: &ResourceRow) -> Endpoint {
    Endpoint {
        host: primary_host(r),
        port: r.kind.port(),
    }
}

fn primary_host(r: &ResourceRow) -> String {
    r.host.clone().unwrap_or_else(|| r.name.clone())
}

/// Where instances read from when the resource has replicas (all of them answer to it).
fn read_endpoint(r: &ResourceRow, replicas: &[ReplicaRow]) -> Option<Endpoint> {
    (!replicas.is_empty()).then(|| Endpoint {
        host: ha::read_host(&r.name),
        port: r.kind.port(),
    })
}

/// The resource's private network: named after its first container, shared by its replicas,
/// kept when a replica is promoted.
fn private_network(r: &ResourceRow) -> Result<String> {
    Ok(domain::container_name(
        &r.app,
        &ResourceName::parse(&r.name)?,
    ))
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
        let replicas = self.store().replicas(r.id).await?;
        let read = read_endpoint(r, &replicas);
        let variables: BTreeMap<String, String> =
            domain::variables(r.kind, &creds, &endpoint(r), read.as_ref(), None)
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
            host: primary_host(r),
            port: r.kind.port(),
            database: creds.database.clone(),
            username: creds.username.clone(),
            password: creds.password.clone(),
            variables,
            attachments,
            backups: r.backup.as_ref().map(|b| api::Backups {
                schedule: b.schedule.clone(),
                keep: b.keep,
                next_at: b.next_after(
                    r.backup_last_at
                        .unwrap_or(r.created_at)
                        .max(chrono::Utc::now()),
                ),
                last_at: r.backup_last_at,
            }),
            replicas: replicas
                .iter()
                .map(|rep| api::Replica {
                    index: u32::try_from(rep.idx).unwrap_or(0),
                    host: ha::replica_host(&r.name, u32::try_from(rep.idx).unwrap_or(0)),
                    created_at: rep.created_at,
                })
                .collect(),
            read_host: read.map(|e| e.host),
            health: r.health.clone(),
            health_checked_at: r.health_at,
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
            automated: s.automated,
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
        let replicas = req.replicas.unwrap_or(0);
        ha::check_replicas(kind, name.as_str(), replicas).map_err(invalid)?;
        let backup = BackupPolicy::parse(req.backup.as_deref(), req.keep).map_err(invalid)?;
        self.check_instance_type(size).await?;
        let row = self
            .insert_resource(app, &name, kind, size, policy, None, replicas > 0)
            .await?;
        if let Some(b) = &backup {
            self.store().set_resource_backup(row.id, Some(b)).await?;
        }
        let row = self.store().resource_by_id(row.id).await?;
        let who = by.unwrap_or("system");
        let mut extra = String::new();
        if replicas > 0 {
            extra.push_str(&format!(", {replicas} read replica(s)"));
        }
        if let Some(b) = &backup {
            extra.push_str(&format!(", backups on '{}' keeping {}", b.schedule, b.keep));
        }
        self.resource_event(
            &row,
            Severity::Info,
            &format!("creating {kind} resource '{name}' ({size}{extra}) (by {who})"),
        )
        .await;
        self.spawn_provision(row.clone(), None, replicas);
        self.resource_view(&row, Role::Admin).await
    }

    // The columns of a new resource, each its own argument (a struct would only rename them).
    #[allow(clippy::too_many_arguments)]
    async fn insert_resource(
        &self,
        app: &str,
        name: &ResourceName,
        kind: ResourceKind,
        size: InstanceType,
        policy: DeletionPolicy,
        restored_from: Option<i64>,
        replication: bool,
    ) -> Result<ResourceRow> {
        let mut creds = Credentials::new(name, password()).map_err(invalid)?;
        if replication {
            creds = creds.with_replication(password()).map_err(invalid)?;
        }
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

    fn spawn_provision(&self, row: ResourceRow, restore: Option<PathBuf>, replicas: u32) {
        let control = self.clone();
        tokio::spawn(async move {
            let from = row.status;
            let mut done = control.provision(&row, restore).await;
            for index in 1..=replicas {
                if done.is_err() {
                    break;
                }
                done = control.add_replica(&row, index).await;
            }
            match done {
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

    /// The container of a resource (its primary, or a replica): its limits, labels and
    /// private network.
    fn resource_spec(
        &self,
        r: &ResourceRow,
        container: &str,
        env: Vec<String>,
        restore_from: Option<PathBuf>,
    ) -> Result<ResourceSpec> {
        let limits = r.size.limits();
        Ok(ResourceSpec {
            container: container.to_string(),
            network: private_network(r)?,
            alias: r.name.clone(),
            kind: r.kind,
            image: r.kind.image().to_string(),
            env,
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
            restore_from,
        })
    }

    /// Starts a resource container and waits until its engine answers.
    async fn start_resource_container(&self, r: &ResourceRow, spec: &ResourceSpec) -> Result<()> {
        self.runtime()
            .create_resource(spec)
            .await
            .map_err(|e| ControlError::Unavailable(e.to_string()))?;
        let deadline = Instant::now() + self.config().operation_timeout;
        loop {
            match self.runtime().resource_healthy(&spec.container).await {
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
        let spec = self.resource_spec(
            r,
            &r.container,
            r.credentials.container_env(r.kind),
            restore,
        )?;
        self.start_resource_container(r, &spec).await
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
        for a in attachments
            .into_iter()
            .filter(|a| a.state != AttachmentState::Detaching)
        {
            let found = match self.store().resource_by_id(a.resource_id).await {
                Ok(r) => match self.store().replicas(r.id).await {
                    Ok(replicas) => Ok((r, replicas)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match found {
                Ok((r, replicas)) => vars.extend(
                    domain::variables(
                        r.kind,
                        &r.credentials,
                        &endpoint(&r),
                        read_endpoint(&r, &replicas).as_ref(),
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
        self.connect_resource(&r, &self.network_of(&env)).await?;
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
        self.spawn_roll(env, r.id, Vec::new());
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
        let mut containers = vec![r.container.clone()];
        containers.extend(
            self.store()
                .replicas(r.id)
                .await?
                .into_iter()
                .map(|rep| rep.container),
        );
        self.spawn_roll(env, r.id, containers);
        self.resource_view(&r, Role::Admin).await
    }

    /// Replaces the environment's instances one at a time (like a restart), so each new one
    /// gets the current variables; then, for a detach, disconnects the resource.
    fn spawn_roll(&self, env: EnvRow, resource_id: i64, disconnect: Vec<String>) {
        let control = self.clone();
        tokio::spawn(async move {
            control.roll_instances(&env).await;
            for container in disconnect {
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

    /// Replaces the environment's running instances one at a time so each new one gets the
    /// current variables. A roll that stops is an event, not an error.
    async fn roll_instances(&self, env: &EnvRow) {
        let ids: Vec<String> = match self.env_containers(env).await {
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
        if let Err(e) = self.rolling_restart(env, ids).await {
            tracing::warn!(env = %env.name, error = %e, "rolling for a resource change stopped");
            let _ = self
                .store()
                .add_event(env.id, Severity::Warn, &format!("rolling stopped: {e}"))
                .await;
        }
    }
}
