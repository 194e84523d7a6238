//! Instances coming and going: starting them (network, image, variables, labels), removing
//! those that exited, and draining those the plan removes.

use super::{instance_labels, revision_label, InstanceVars, Reconciler, START_BACKOFF};
use crate::error::{ControlError, Result};
use sprout_core::manifest::platform_image;
use sprout_core::plan::RemoveReason;
use sprout_core::{Bootstrap, EnvSettings, Severity};
use sprout_runtime::{ContainerInfo, InstanceSpec};
use sprout_store::{EnvRow, InstanceRow};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn new_instance_id() -> String {
    format!("i-{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

impl Reconciler {
    pub(super) async fn remove_exited(
        &self,
        env: &EnvRow,
        id: &str,
        c: &ContainerInfo,
        op: Option<i64>,
        target: &str,
    ) -> Result<()> {
        let version = c.label("sprout.version").to_string();
        let message = format!(
            "instance {id} ({version}) stopped ({}); replacing it",
            c.state
        );
        self.shared
            .store()
            .add_event(env.id, Severity::Warn, &message)
            .await?;
        if let Some(op) = op.filter(|_| revision_label(c) == target) {
            self.shared.store().record_exit(op).await?;
        }
        let zone = c
            .labels
            .get("sprout.zone")
            .map(String::as_str)
            .unwrap_or_default();
        self.shared
            .runtime_for(zone)
            .remove_instance(&c.id, Duration::from_secs(1))
            .await
            .map_err(|e| ControlError::Unavailable(format!("docker: {e}")))?;
        self.shared
            .store()
            .instance_removed(id, RemoveReason::Exited.describe())
            .await?;
        tracing::info!(env = %env.name, instance = %id, "exited instance removed");
        Ok(())
    }

    /// Takes an instance out of rotation at once, then (in the background) lets its
    /// in-flight requests finish for up to the deregistration delay, then stops it.
    pub(crate) async fn spawn_drain(
        &self,
        env: &EnvRow,
        id: &str,
        c: &ContainerInfo,
        reason: RemoveReason,
        settings: &EnvSettings,
    ) -> Result<()> {
        let fresh = self
            .removing
            .lock()
            .map(|mut s| s.insert(id.to_string()))
            .unwrap_or(false);
        if !fresh {
            return Ok(());
        }
        self.shared.balancer().drain(&env.name, id);
        let version = c.label("sprout.version").to_string();
        let message = format!("draining instance {id} ({version}): {}", reason.describe());
        let severity = match reason {
            RemoveReason::Unhealthy | RemoveReason::ZoneUnavailable => Severity::Warn,
            _ => Severity::Info,
        };
        let message = match reason {
            RemoveReason::Unhealthy => {
                let why = self
                    .shared
                    .balancer()
                    .backends(&env.name)
                    .into_iter()
                    .find(|b| b.id == id)
                    .and_then(|b| {
                        b.last_error.or(b
                            .last_status
                            .map(|s| format!("the health check answered {s}")))
                    })
                    .unwrap_or_default();
                format!("instance {id} ({version}) fails its health checks ({why}); replacing it")
            }
            _ => message,
        };
        self.shared
            .store()
            .add_event(env.id, severity, &message)
            .await?;
        let control = self.clone();
        let (env_name, id, container) = (env.name.clone(), id.to_string(), c.id.clone());
        let zone = c.zone().to_string();
        let (delay, grace) = (settings.deregistration_delay, settings.stop_grace);
        tokio::spawn(async move {
            let deadline = Instant::now() + delay;
            let mut in_flight = control.shared.balancer().in_flight(&env_name, &id);
            while in_flight > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                in_flight = control.shared.balancer().in_flight(&env_name, &id);
            }
            if in_flight > 0 {
                tracing::warn!(env = %env_name, instance = %id, in_flight, "deregistration delay over with requests in flight");
            }
            match control
                .shared
                .runtime_for(&zone)
                .remove_instance(&container, grace)
                .await
            {
                Ok(()) => {
                    if let Err(e) = control
                        .shared
                        .store()
                        .instance_removed(&id, reason.describe())
                        .await
                    {
                        tracing::warn!(instance = %id, error = %e, "could not record the removal");
                    }
                    tracing::info!(env = %env_name, instance = %id, ?reason, "instance drained and removed");
                }
                Err(e) => {
                    tracing::warn!(env = %env_name, instance = %id, error = %e, "could not remove a drained instance")
                }
            }
            if let Ok(mut s) = control.removing.lock() {
                s.remove(&id);
            }
            control.shared.wake();
        });
        Ok(())
    }

    /// Starts instances in `zones`; false when held back after a failed start. A network
    /// that cannot be made or a start that fails is an error (and holds the next back).
    pub(super) async fn start_instances(
        &self,
        env: &EnvRow,
        target: &str,
        zones: &[String],
        vars: &dyn InstanceVars,
    ) -> Result<bool> {
        let blocked = self
            .start_backoff
            .lock()
            .map(|m| m.get(&env.id).is_some_and(|until| Instant::now() < *until))
            .unwrap_or(false);
        if blocked {
            return Ok(false);
        }
        let started = self.try_start_instances(env, target, zones, vars).await;
        if started.is_err() {
            if let Ok(mut m) = self.start_backoff.lock() {
                m.insert(env.id, Instant::now() + START_BACKOFF);
            }
        }
        started.map(|()| true)
    }

    async fn try_start_instances(
        &self,
        env: &EnvRow,
        target: &str,
        zones: &[String],
        vars: &dyn InstanceVars,
    ) -> Result<()> {
        let network = self.shared.network_of(env);
        let labels = HashMap::from([
            (
                "sprout.server".to_string(),
                self.shared.server_id().to_string(),
            ),
            ("sprout.env-id".to_string(), env.id.to_string()),
        ]);
        let mut engines_done: Vec<&str> = Vec::new();
        for zone in zones {
            // Zones sharing an engine share the network.
            let key = self.shared.engine_key(zone);
            if engines_done.contains(&key) {
                continue;
            }
            engines_done.push(key);
            self.shared
                .runtime_for(zone)
                .ensure_network(&network, &labels)
                .await
                .map_err(|e| {
                    ControlError::Unavailable(format!("docker network in zone {zone}: {e}"))
                })?;
        }
        let starts = zones
            .iter()
            .map(|zone| self.start_one(env, target, &network, zone, vars));
        let results = futures_util::future::join_all(starts).await;
        let mut first_error = None;
        for r in results {
            if let Err(e) = r {
                let message = format!("could not start an instance: {e}");
                self.shared
                    .store()
                    .add_event(env.id, Severity::Error, &message)
                    .await?;
                first_error.get_or_insert(ControlError::Unavailable(message));
            }
        }
        self.shared.wake();
        first_error.map_or(Ok(()), Err)
    }

    async fn start_one(
        &self,
        env: &EnvRow,
        target: &str,
        network: &str,
        zone: &str,
        vars: &dyn InstanceVars,
    ) -> Result<()> {
        let manifest = &env.manifest;
        let command = manifest
            .command_for(env.tier)
            .map_err(|e| ControlError::Invalid(e.to_string()))?
            .to_string();
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
        let (image, bundle_dir, mut script) = match env.bootstrap {
            Bootstrap::Golden | Bootstrap::Hybrid => {
                let image = env.image.clone().ok_or_else(|| {
                    ControlError::Conflict(format!("version {} has no image yet", env.version))
                })?;
                (image, None, String::new())
            }
            Bootstrap::UserData => {
                let sha = self
                    .shared
                    .store()
                    .version_by_id(env.version_id)
                    .await?
                    .sha256;
                (
                    platform_image(manifest.config.platform()),
                    Some(self.shared.bundle_dir(&sha)),
                    build.unwrap_or_default(),
                )
            }
        };
        if let Some(boot) = boot {
            script.push_str(&boot);
        }
        // The scripts run in a subshell so their `set -e` does not leak into the process.
        let cmd = if script.is_empty() {
            format!("exec {command}")
        } else {
            format!("( {script} ) || exit $?\nexec {command}")
        };

        let id = new_instance_id();
        let port = self.shared.config().instance_port;
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
        envs.extend(self.queues.queue_env_vars(env, network).await);
        // DATABASE_URL, RDS_*, REDIS_URL, ... of the attached resources.
        envs.extend(vars.resource_vars(env).await);
        let limits = env.settings().instance_type.limits();
        let spec = InstanceSpec {
            name: format!("sprout-{}-{id}", env.name),
            image,
            network: network.to_string(),
            labels: instance_labels(self.shared.server_id(), env, target, zone, &id),
            env: envs,
            cmd: vec!["/bin/sh".into(), "-c".into(), cmd],
            millicpus: limits.millicpus,
            memory_mib: limits.memory_mib,
            pids: limits.pids,
            user: manifest.config.user.clone(),
            bundle_dir,
        };
        self.shared
            .store()
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
        let runtime = self.shared.runtime_for(zone);
        if !runtime.image_exists(&spec.image).await.unwrap_or(false) {
            // A zone on another engine: bring the image there (no registry needed).
            if let Err(e) = self
                .shared
                .runtime()
                .copy_image_to(&spec.image, runtime)
                .await
            {
                self.shared
                    .store()
                    .instance_removed(&id, "failed to start")
                    .await?;
                return Err(ControlError::Unavailable(format!("zone {zone}: {e}")));
            }
        }
        match runtime.start_instance(&spec).await {
            Ok(started) => {
                let address = started.address.map(|a| a.to_string());
                self.shared
                    .store()
                    .instance_started(&id, &started.container_id, address.as_deref())
                    .await?;
                let message = format!("started instance {id} ({}) in zone {zone}", env.version);
                self.shared
                    .store()
                    .add_event(env.id, Severity::Info, &message)
                    .await?;
                tracing::info!(env = %env.name, instance = %id, %zone, address = ?address, "instance started");
                Ok(())
            }
            Err(e) => {
                self.shared
                    .store()
                    .instance_removed(&id, "failed to start")
                    .await?;
                Err(ControlError::Unavailable(e.to_string()))
            }
        }
    }
}
