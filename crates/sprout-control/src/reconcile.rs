//! The reconciler: a level-triggered loop. Each pass compares every environment's desired
//! state (store) with what Docker runs (found by labels), takes one step towards it, keeps
//! the balancer's routes in line, and closes operations that are done or out of time.

use crate::environments::instance_labels;
use crate::{Control, ControlError, Result};
use sprout_core::api::OperationOutcome;
use sprout_core::manifest::{platform_image, BundleManifest};
use sprout_core::plan::{plan, Desired, Observed, RemoveReason};
use sprout_core::{Bootstrap, EnvStatus, InstanceType, Severity, Tier};
use sprout_proxy::{BackendSpec, HealthCheck, RouteSpec};
use sprout_runtime::{ContainerInfo, InstanceSpec};
use sprout_store::{EnvRow, InstanceRow};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// After a failed start, wait this long before trying again (no event storm).
const START_BACKOFF: Duration = Duration::from_secs(5);

fn new_instance_id() -> String {
    format!("i-{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

impl Control {
    /// Runs until `shutdown`; a pass every `reconcile_interval`, or sooner when woken.
    pub async fn run_reconciler(&self, shutdown: CancellationToken) {
        tracing::info!(server = %self.server_id(), "reconciler started");
        loop {
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config().reconcile_interval) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over every environment.
    pub async fn reconcile_all(&self) -> Result<()> {
        let envs = self.store().active_environments().await?;
        let containers = self
            .runtime()
            .list_instances(&[("sprout.server", self.server_id())])
            .await
            .map_err(|e| ControlError::Unavailable(format!("docker: {e}")))?;
        let mut by_env: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        for c in containers {
            let env_id = c.labels.get("sprout.env-id").cloned().unwrap_or_default();
            by_env.entry(env_id).or_default().push(c);
        }

        let active: HashSet<String> = envs.iter().map(|e| e.id.to_string()).collect();
        // Containers of environments that no longer exist: a crash mid-terminate, or a
        // store restored from a backup. Never leave an orphan.
        for (env_id, orphans) in by_env.iter().filter(|(id, _)| !active.contains(*id)) {
            for c in orphans {
                tracing::warn!(env_id = %env_id, container = %c.name, "removing an orphaned instance");
                if let Err(e) = self
                    .runtime()
                    .remove_instance(&c.id, Duration::from_secs(1))
                    .await
                {
                    tracing::warn!(container = %c.name, error = %e, "could not remove orphan");
                }
            }
        }

        let passes = envs.into_iter().map(|env| {
            let observed = by_env.remove(&env.id.to_string()).unwrap_or_default();
            let control = self.clone();
            async move {
                let name = env.name.clone();
                if let Err(e) = control.reconcile_env(env, observed).await {
                    tracing::warn!(env = %name, error = %e, "reconcile of environment failed");
                }
            }
        });
        futures_util::future::join_all(passes).await;
        Ok(())
    }

    fn route_for(
        &self,
        env: &EnvRow,
        tier: Tier,
        live: bool,
        containers: &[&ContainerInfo],
    ) -> RouteSpec {
        let manifest: BundleManifest = serde_json::from_str(&env.manifest).unwrap_or_default();
        let hosts = if tier == Tier::Web && live {
            vec![self.host_of(&env.cname)]
        } else {
            Vec::new()
        };
        let port = self.config().instance_port;
        let backends = containers
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| {
                Some(BackendSpec {
                    id: c.labels.get("sprout.instance")?.clone(),
                    addr: SocketAddr::new(c.address?, port),
                    version: c.labels.get("sprout.version").cloned().unwrap_or_default(),
                })
            })
            .collect();
        RouteSpec {
            env: env.name.clone(),
            hosts,
            health: HealthCheck {
                path: manifest.config.health_check().to_string(),
                ..HealthCheck::default()
            },
            backends,
        }
    }

    async fn reconcile_env(&self, env: EnvRow, containers: Vec<ContainerInfo>) -> Result<()> {
        let status = env.status()?;
        let tier: Tier = env.tier.parse().unwrap_or(Tier::Web);
        let rows: HashMap<String, InstanceRow> = self
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();

        // Keep the balancer in line with what runs before deciding anything: adopted
        // instances (after a restart) get health-checked and routed at once.
        let all: Vec<&ContainerInfo> = containers.iter().collect();
        self.balancer()
            .set_route(self.route_for(&env, tier, status.is_live(), &all));

        let mut observed = Vec::with_capacity(containers.len());
        let mut by_instance: HashMap<String, &ContainerInfo> = HashMap::new();
        for c in &containers {
            let Some(id) = c.labels.get("sprout.instance").cloned() else {
                continue;
            };
            let healthy = c.running && self.balancer().is_healthy(&env.name, &id);
            if healthy
                && rows.get(&id).is_some_and(|r| r.healthy_at.is_none())
                && self.store().instance_healthy(&id).await?
            {
                if let Some(row) = rows.get(&id) {
                    let secs =
                        (chrono::Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
                    self.store()
                        .add_event(
                            env.id,
                            Severity::Info,
                            &format!(
                                "instance {id} (zone {}) is healthy, {secs:.1} s after start",
                                row.zone
                            ),
                        )
                        .await?;
                }
            }
            observed.push(Observed {
                id: id.clone(),
                version: c.labels.get("sprout.version").cloned().unwrap_or_default(),
                zone: c.labels.get("sprout.zone").cloned().unwrap_or_default(),
                running: c.running,
                healthy,
                seq: rows.get(&id).map(|r| r.seq).unwrap_or(c.created),
            });
            by_instance.insert(id, c);
        }

        let desired = Desired {
            count: u32::try_from(env.desired).unwrap_or(0),
            version: env.version.clone(),
            live: status.is_live(),
            zones: self.config().zones.clone(),
        };
        let step = plan(&desired, &observed);
        let operation = self
            .store()
            .current_operation(env.id)
            .await?
            .filter(|op| op.outcome() == OperationOutcome::Running);

        // Removals: out of the route first, so no new request reaches them.
        if !step.remove.is_empty() {
            let leaving: HashSet<&str> = step.remove.iter().map(|(id, _)| id.as_str()).collect();
            let staying: Vec<&ContainerInfo> = containers
                .iter()
                .filter(|c| {
                    c.labels
                        .get("sprout.instance")
                        .is_none_or(|id| !leaving.contains(id.as_str()))
                })
                .collect();
            self.balancer()
                .set_route(self.route_for(&env, tier, status.is_live(), &staying));
            let removals = step.remove.iter().filter_map(|(id, reason)| {
                let c = by_instance.get(id)?;
                Some(self.remove_one(&env, id, c, *reason, operation.as_ref().map(|op| op.id)))
            });
            for result in futures_util::future::join_all(removals).await {
                result?;
            }
        }

        if !step.start.is_empty() && status.is_live() {
            let blocked = self
                .inner
                .start_backoff
                .lock()
                .map(|m| m.get(&env.id).is_some_and(|until| Instant::now() < *until))
                .unwrap_or(false);
            if !blocked {
                let network = self.network_of(&env);
                let labels = HashMap::from([
                    ("sprout.server".to_string(), self.server_id().to_string()),
                    ("sprout.env-id".to_string(), env.id.to_string()),
                ]);
                self.runtime()
                    .ensure_network(&network, &labels)
                    .await
                    .map_err(|e| ControlError::Unavailable(format!("docker network: {e}")))?;
                let starts = step
                    .start
                    .iter()
                    .map(|zone| self.start_one(&env, tier, &network, zone));
                let results = futures_util::future::join_all(starts).await;
                if results.iter().any(|r| r.is_err()) {
                    if let Ok(mut m) = self.inner.start_backoff.lock() {
                        m.insert(env.id, Instant::now() + START_BACKOFF);
                    }
                }
                for r in results {
                    if let Err(e) = r {
                        self.store()
                            .add_event(
                                env.id,
                                Severity::Error,
                                &format!("could not start an instance: {e}"),
                            )
                            .await?;
                    }
                }
                self.wake();
            }
        }

        self.settle_operation(&env, status, step.converged, operation)
            .await
    }

    async fn remove_one(
        &self,
        env: &EnvRow,
        id: &str,
        container: &ContainerInfo,
        reason: RemoveReason,
        op_id: Option<i64>,
    ) -> Result<()> {
        let severity = if reason == RemoveReason::Exited {
            Severity::Warn
        } else {
            Severity::Info
        };
        let version = container
            .labels
            .get("sprout.version")
            .cloned()
            .unwrap_or_default();
        let message = match reason {
            RemoveReason::Exited => format!(
                "instance {id} ({version}) stopped ({}); replacing it",
                container.state
            ),
            _ => format!("removing instance {id} ({version}): {}", reason.describe()),
        };
        self.store().add_event(env.id, severity, &message).await?;
        if reason == RemoveReason::Exited && version == env.version {
            if let (Some(op), Ok(mut exits)) = (op_id, self.inner.exits.lock()) {
                *exits.entry(op).or_insert(0) += 1;
            }
        }
        let grace = if reason == RemoveReason::Exited {
            Duration::from_secs(1)
        } else {
            self.config().stop_grace
        };
        self.runtime()
            .remove_instance(&container.id, grace)
            .await
            .map_err(|e| ControlError::Unavailable(format!("docker: {e}")))?;
        self.store().instance_removed(id, reason.describe()).await?;
        tracing::info!(env = %env.name, instance = %id, ?reason, "instance removed");
        Ok(())
    }

    async fn start_one(&self, env: &EnvRow, tier: Tier, network: &str, zone: &str) -> Result<()> {
        let manifest: BundleManifest = serde_json::from_str(&env.manifest)
            .map_err(|e| ControlError::Internal(format!("manifest: {e}")))?;
        let command = manifest
            .command_for(tier)
            .map_err(|e| ControlError::Invalid(e.to_string()))?
            .to_string();
        let bootstrap: Bootstrap = env.bootstrap.parse().unwrap_or(Bootstrap::Golden);
        let boot = manifest
            .config
            .boot
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_shell());
        let build = manifest
            .config
            .build
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_shell());
        let (image, bundle_dir, mut script) = match bootstrap {
            Bootstrap::Golden | Bootstrap::Hybrid => {
                let image = env.image.clone().ok_or_else(|| {
                    ControlError::Conflict(format!("version {} has no image yet", env.version))
                })?;
                (image, None, String::new())
            }
            Bootstrap::UserData => {
                let sha = self.store().version_by_id(env.version_id).await?.sha256;
                (
                    platform_image(manifest.config.platform()),
                    Some(self.bundle_dir(&sha)),
                    build.unwrap_or_default(),
                )
            }
        };
        if let Some(boot) = boot {
            script.push_str(&boot);
        }
        // Run the boot script in a subshell so its `set -e` does not leak into the process.
        let cmd = if script.is_empty() {
            format!("exec {command}")
        } else {
            format!("( {script} ) || exit $?\nexec {command}")
        };

        let id = new_instance_id();
        let port = self.config().instance_port;
        let mut envs = vec![
            format!("PORT={port}"),
            format!("SPROUT_APP={}", env.app),
            format!("SPROUT_ENV={}", env.name),
            format!("SPROUT_VERSION={}", env.version),
            format!("SPROUT_INSTANCE={id}"),
            format!("SPROUT_ZONE={zone}"),
        ];
        envs.extend(
            env.properties()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        // The SQS endpoint, keys and queue URL of the application's worker queue.
        envs.extend(self.queue_env_vars(env, network).await);
        let limits = env
            .instance_type
            .parse::<InstanceType>()
            .unwrap_or(InstanceType::Micro)
            .limits();
        let spec = InstanceSpec {
            name: format!("sprout-{}-{id}", env.name),
            image,
            network: network.to_string(),
            labels: instance_labels(self.server_id(), env, &env.version, zone, &id),
            env: envs,
            cmd: vec!["/bin/sh".into(), "-c".into(), cmd],
            millicpus: limits.millicpus,
            memory_mib: limits.memory_mib,
            bundle_dir,
        };
        self.store()
            .insert_instance(&InstanceRow {
                id: id.clone(),
                env_id: env.id,
                version_label: env.version.clone(),
                zone: zone.to_string(),
                container_id: None,
                address: None,
                seq: 0,
                created_at: chrono::Utc::now(),
                healthy_at: None,
                removed_at: None,
                removed_why: None,
            })
            .await?;
        match self.runtime().start_instance(&spec).await {
            Ok(started) => {
                let address = started.address.map(|a| a.to_string());
                self.store()
                    .instance_started(&id, &started.container_id, address.as_deref())
                    .await?;
                self.store()
                    .add_event(
                        env.id,
                        Severity::Info,
                        &format!("started instance {id} ({}) in zone {zone}", env.version),
                    )
                    .await?;
                tracing::info!(env = %env.name, instance = %id, %zone, address = ?address, "instance started");
                Ok(())
            }
            Err(e) => {
                self.store()
                    .instance_removed(&id, "failed to start")
                    .await?;
                Err(ControlError::Unavailable(e.to_string()))
            }
        }
    }

    /// Closes the running operation when the environment reached its goal, or when it ran
    /// out of time (a deploy then rolls back to the version it replaced).
    async fn settle_operation(
        &self,
        env: &EnvRow,
        status: EnvStatus,
        converged: bool,
        operation: Option<sprout_store::OperationRow>,
    ) -> Result<()> {
        if !status.is_transitional() {
            return Ok(());
        }
        let elapsed = operation
            .as_ref()
            .map(|op| {
                (chrono::Utc::now() - op.started_at)
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let took = format!("{:.1} s", elapsed.as_secs_f64());
        if converged {
            let message = match status {
                EnvStatus::Terminating => {
                    self.balancer().remove_route(&env.name);
                    let _ = self.runtime().remove_network(&self.network_of(env)).await;
                    format!("terminateEnvironment completed successfully in {took}")
                }
                EnvStatus::Launching => format!(
                    "createEnvironment completed successfully: version {} on {n}/{n} healthy instances in {took}",
                    env.version,
                    n = env.desired
                ),
                _ => format!(
                    "deployment finished: version {} on {n}/{n} healthy instances in {took}",
                    env.version,
                    n = env.desired
                ),
            };
            self.forget_operation(operation.as_ref());
            return self
                .finish(
                    env,
                    status,
                    operation.as_ref().map(|op| op.id),
                    status.finish(),
                    OperationOutcome::Succeeded,
                    false,
                    &message,
                )
                .await;
        }
        if status == EnvStatus::Terminating {
            return Ok(());
        }
        let exits = operation
            .as_ref()
            .and_then(|op| {
                self.inner
                    .exits
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&op.id).copied())
            })
            .unwrap_or(0);
        let crashing = exits > 2 * u32::try_from(env.desired).unwrap_or(1).max(1);
        let timed_out = elapsed > self.config().operation_timeout;
        if !(crashing || timed_out) {
            return Ok(());
        }
        let why = if crashing {
            format!(
                "instances of version {} keep exiting ({exits} exits); see `sprout logs {}`",
                env.version, env.name
            )
        } else {
            format!(
                "instances of version {} did not pass health checks within {} s",
                env.version,
                self.config().operation_timeout.as_secs()
            )
        };
        self.forget_operation(operation.as_ref());
        if status == EnvStatus::Updating && env.previous_version_id.is_some() {
            let message = format!("deployment failed: {why}; rolling back to the previous version");
            self.finish(
                env,
                status,
                operation.as_ref().map(|op| op.id),
                EnvStatus::Ready,
                OperationOutcome::Failed,
                true,
                &message,
            )
            .await?;
        } else {
            let message = format!("createEnvironment failed: {why}");
            self.finish(
                env,
                status,
                operation.as_ref().map(|op| op.id),
                EnvStatus::Ready,
                OperationOutcome::Failed,
                false,
                &message,
            )
            .await?;
        }
        self.wake();
        Ok(())
    }

    fn forget_operation(&self, op: Option<&sprout_store::OperationRow>) {
        if let (Some(op), Ok(mut exits)) = (op, self.inner.exits.lock()) {
            exits.remove(&op.id);
        }
    }
}
