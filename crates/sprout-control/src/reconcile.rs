//! The reconciler: a level-triggered loop. Each pass compares every environment's desired
//! state (store) with what Docker runs (found by labels), takes one step towards it with
//! the running operation's deployment policy, keeps the balancer's routes in line, drains
//! instances before they stop, and closes operations that are done, failed or out of time
//! (a failed deployment rolls back).

use crate::environments::instance_labels;
use crate::{Control, ControlError, Result};
use sprout_core::api::OperationOutcome;
use sprout_core::manifest::platform_image;
use sprout_core::plan::{plan, Desired, Observed, RemoveReason, Rollout};
use sprout_core::{
    Bootstrap, EnvSettings, EnvStatus, HealthStatus, OpKind, Policy, Severity, Tier,
};
use sprout_proxy::{BackendSpec, HealthCheck, RouteSpec, Split};
use sprout_runtime::{ContainerInfo, InstanceSpec};
use sprout_store::{
    CorruptEnv, EnvRow, EnvironmentStore, InstanceRow, OperationRow, OperationState,
};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// After a failed start, wait this long before trying again (no event storm).
const START_BACKOFF: Duration = Duration::from_secs(5);

fn new_instance_id() -> String {
    format!("i-{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

fn revision_label(c: &ContainerInfo) -> String {
    c.labels
        .get("sprout.revision")
        .or_else(|| c.labels.get("sprout.version"))
        .cloned()
        .unwrap_or_default()
}

/// What one pass saw of an environment, for deciding how its operation stands.
struct Seen<'a> {
    env: &'a EnvRow,
    status: EnvStatus,
    settings: &'a EnvSettings,
    target: &'a str,
    observed: &'a [Observed],
    rows: &'a HashMap<String, InstanceRow>,
    containers_left: usize,
    /// Instances still draining: an operation ends only once they are gone.
    draining: usize,
}

impl Control {
    /// Runs until `shutdown`; a pass every `reconcile_interval`, or sooner when woken.
    pub async fn run_reconciler(&self, shutdown: CancellationToken) {
        tracing::info!(server = %self.server_id(), "reconciler started");
        let mut saved = None;
        loop {
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            // What a restarted server starts routing with (see `restore_routes`).
            match self.checkpoint_health(saved.as_deref()).await {
                Ok(now) => saved = Some(now),
                Err(e) => tracing::warn!(error = %e, "could not record backend health"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config().reconcile_interval) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
        tracing::info!("reconciler stopped");
    }

    fn is_removing(&self, id: &str) -> bool {
        self.inner
            .removing
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    /// One pass over every environment.
    pub async fn reconcile_all(&self) -> Result<()> {
        let active = self.store().active_environments().await?;
        let envs = active.envs;
        self.report_corrupt(&active.corrupt).await;
        let containers = match self
            .list_containers(&[("sprout.server", self.server_id())])
            .await
        {
            Ok(containers) => containers,
            Err(e) => {
                // The local engine does not answer: say so to every environment on it.
                for env in &envs {
                    let rows = self.store().live_instances(env.id).await?;
                    self.note_engine_reach(env, &rows.iter().collect::<Vec<_>>())
                        .await?;
                }
                return Err(e);
            }
        };
        let mut by_env: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        for c in containers {
            let env_id = c.label("sprout.env-id").to_string();
            by_env.entry(env_id).or_default().push(c);
        }

        // A corrupt environment is left alone: its containers are not orphans.
        let active: HashSet<String> = envs
            .iter()
            .map(|e| e.id)
            .chain(active.corrupt.iter().map(|c| c.id))
            .map(|id| id.to_string())
            .collect();
        // Containers of environments that no longer exist: a crash mid-terminate, or a
        // store restored from a backup. Never leave an orphan.
        for (env_id, orphans) in by_env.iter().filter(|(id, _)| !active.contains(*id)) {
            for c in orphans {
                tracing::warn!(env_id = %env_id, container = %c.name, "removing an orphaned instance");
                if let Err(e) = self
                    .runtime_for(c.zone())
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
                if let Err(e) = control.reconcile_env(env.clone(), observed).await {
                    // Counted against the running operation, which fails if it keeps failing.
                    if let Err(e) = control.step_failed(&env, &e).await {
                        tracing::warn!(env = %env.name, error = %e, "could not record a failed step");
                    }
                }
            }
        });
        futures_util::future::join_all(passes).await;
        Ok(())
    }

    /// Says once (a warning and an event) that an environment's row cannot be read; the
    /// reconciler leaves it alone until it is mended.
    async fn report_corrupt(&self, corrupt: &[CorruptEnv]) {
        let ids: HashSet<i64> = corrupt.iter().map(|c| c.id).collect();
        let fresh: Vec<&CorruptEnv> = match self.inner.corrupt.lock() {
            Ok(mut reported) => {
                reported.retain(|id| ids.contains(id));
                corrupt.iter().filter(|c| reported.insert(c.id)).collect()
            }
            Err(_) => return,
        };
        for c in fresh {
            tracing::error!(env = %c.name, env_id = c.id, error = %c.error, "environment left alone: its row cannot be read");
            let message = format!(
                "the control plane leaves this environment alone until its record is mended: {}",
                c.error
            );
            if let Err(e) = self
                .store()
                .add_event(c.id, Severity::Error, &message)
                .await
            {
                tracing::warn!(env = %c.name, error = %e, "could not record the event");
            }
        }
    }

    /// The balancer route of an environment: every running instance (draining ones stay
    /// listed until they are gone, so their in-flight requests are tracked).
    pub(crate) fn route_for(
        &self,
        env: &EnvRow,
        live: bool,
        containers: &[&ContainerInfo],
    ) -> RouteSpec {
        let (manifest, settings) = (&env.manifest, &env.settings);
        let web = env.tier == Tier::Web;
        let hosts = if web && live {
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
                    version: revision_label(c),
                })
            })
            .collect();
        let path = settings
            .health_check_path
            .clone()
            .unwrap_or_else(|| manifest.config.health_check().to_string());
        RouteSpec {
            env: env.name.clone(),
            hosts,
            health: HealthCheck {
                path,
                interval: settings.health_check_interval,
                timeout: settings.health_check_timeout,
                healthy_threshold: settings.healthy_threshold,
                unhealthy_threshold: settings.unhealthy_threshold,
                success_codes: settings.health_check_success_codes,
            },
            backends,
        }
    }

    async fn reconcile_env(&self, env: EnvRow, containers: Vec<ContainerInfo>) -> Result<()> {
        let status = env.status;
        let settings = env.settings();
        let target = self.revision_of(&env);
        let rows: HashMap<String, InstanceRow> = self
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        self.note_engine_reach(&env, &rows.values().collect::<Vec<_>>())
            .await?;

        // Keep the balancer in line with what runs before deciding anything: adopted
        // instances (after a restart) get health-checked and routed at once.
        let all: Vec<&ContainerInfo> = containers.iter().collect();
        self.balancer()
            .set_route(self.route_for(&env, status.is_live(), &all));
        let web = env.tier == Tier::Web;
        self.balancer()
            .set_sticky(&env.name, settings.sticky.filter(|_| web));

        // Served, then failed its checks past the unhealthy threshold: to be replaced.
        let failing: HashSet<String> = self
            .balancer()
            .backends(&env.name)
            .into_iter()
            .filter(|b| b.state == sprout_proxy::BackendState::Unhealthy)
            .map(|b| b.id)
            .collect();
        let zones = self.available_zones().await?;
        let mut observed = Vec::with_capacity(containers.len());
        let mut by_instance: HashMap<String, &ContainerInfo> = HashMap::new();
        for c in &containers {
            let Some(id) = c.labels.get("sprout.instance").cloned() else {
                continue;
            };
            if self.is_removing(&id) {
                continue;
            }
            let healthy = c.running && self.balancer().is_healthy(&env.name, &id);
            if healthy
                && rows.get(&id).is_some_and(|r| r.healthy_at.is_none())
                && self.store().instance_healthy(&id).await?
            {
                if let Some(row) = rows.get(&id) {
                    let secs =
                        (chrono::Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
                    let message = format!(
                        "instance {id} (zone {}) is healthy, {secs:.1} s after start",
                        row.zone
                    );
                    self.store()
                        .add_event(env.id, Severity::Info, &message)
                        .await?;
                }
            }
            observed.push(Observed {
                id: id.clone(),
                revision: revision_label(c),
                zone: c.zone().to_string(),
                running: c.running,
                healthy,
                failing: c.running && failing.contains(&id),
                seq: rows.get(&id).map(|r| r.seq).unwrap_or(c.created),
            });
            by_instance.insert(id, c);
        }

        let operation = self
            .store()
            .current_operation(env.id)
            .await?
            .filter(OperationRow::is_running);
        let state = match &operation {
            Some(op) => self.store().operation_state(op.id).await?,
            None => OperationState::default(),
        };
        let desired_count = u32::try_from(env.desired).unwrap_or(0);
        let rollout = match (&operation, status) {
            (Some(op), EnvStatus::Updating) => {
                // An operation recorded without a policy (none before deployments had
                // one) rolls out with the environment's.
                let policy = op.policy.unwrap_or(settings.policy);
                let batch = op.batch.unwrap_or(settings.batch).resolve(desired_count);
                let mut rollout = Rollout::for_policy(policy, batch, desired_count);
                if policy == Policy::TrafficSplitting {
                    rollout.promote = self
                        .canary_step(&env, op, &settings, &observed, &target)
                        .await?;
                }
                rollout
            }
            _ => Rollout::steady(),
        };
        let desired = Desired {
            count: desired_count,
            revision: target.clone(),
            live: status.is_live(),
            zones,
            rollout,
        };
        let step = plan(&desired, &observed);

        for (id, reason) in &step.remove {
            let Some(c) = by_instance.get(id) else {
                continue;
            };
            if *reason == RemoveReason::Exited {
                self.remove_exited(&env, id, c, operation.as_ref().map(|op| op.id), &target)
                    .await?;
            } else {
                self.spawn_drain(&env, id, c, *reason, &settings).await?;
            }
        }

        // A pass held back after a failed start is no new attempt: the count stays.
        let mut attempted = true;
        if !step.start.is_empty() && status.is_live() {
            attempted = self.start_instances(&env, &target, &step.start).await?;
        }
        if let Some(op) = operation.as_ref().filter(|_| attempted) {
            if state.step_failures > 0 {
                self.store().clear_step_failures(op.id).await?;
            }
        }

        let seen = Seen {
            env: &env,
            status,
            settings: &settings,
            target: &target,
            observed: &observed,
            rows: &rows,
            containers_left: containers.len(),
            draining: containers
                .iter()
                .filter(|c| {
                    c.labels
                        .get("sprout.instance")
                        .is_some_and(|id| self.is_removing(id))
                })
                .count(),
        };
        self.settle_operation(&seen, step.converged, operation, &state)
            .await?;
        self.track_health(&env, status).await
    }

    /// Traffic splitting: the new set gets `canary_percent` of requests; once all of it
    /// serves, it is evaluated for `evaluation`, then promoted (returns true).
    async fn canary_step(
        &self,
        env: &EnvRow,
        op: &OperationRow,
        settings: &EnvSettings,
        observed: &[Observed],
        target: &str,
    ) -> Result<bool> {
        self.balancer().set_split(
            &env.name,
            Some(Split {
                version: target.to_string(),
                percent: settings.canary_percent,
            }),
        );
        let serving = observed
            .iter()
            .filter(|o| o.revision == target && o.healthy)
            .count() as i64;
        if serving < env.desired {
            return Ok(false);
        }
        let Some(since) = self.store().canary_serving(op.id).await? else {
            return Ok(false);
        };
        let evaluated = (chrono::Utc::now() - since).to_std().unwrap_or_default();
        Ok(evaluated >= settings.evaluation)
    }

    async fn remove_exited(
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
        self.store()
            .add_event(env.id, Severity::Warn, &message)
            .await?;
        if let Some(op) = op.filter(|_| revision_label(c) == target) {
            self.store().record_exit(op).await?;
        }
        let zone = c
            .labels
            .get("sprout.zone")
            .map(String::as_str)
            .unwrap_or_default();
        self.runtime_for(zone)
            .remove_instance(&c.id, Duration::from_secs(1))
            .await
            .map_err(|e| ControlError::Unavailable(format!("docker: {e}")))?;
        self.store()
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
            .inner
            .removing
            .lock()
            .map(|mut s| s.insert(id.to_string()))
            .unwrap_or(false);
        if !fresh {
            return Ok(());
        }
        self.balancer().drain(&env.name, id);
        let version = c.label("sprout.version").to_string();
        let message = format!("draining instance {id} ({version}): {}", reason.describe());
        let severity = match reason {
            RemoveReason::Unhealthy | RemoveReason::ZoneUnavailable => Severity::Warn,
            _ => Severity::Info,
        };
        let message = match reason {
            RemoveReason::Unhealthy => {
                let why = self
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
        self.store().add_event(env.id, severity, &message).await?;
        let control = self.clone();
        let (env_name, id, container) = (env.name.clone(), id.to_string(), c.id.clone());
        let zone = c.zone().to_string();
        let (delay, grace) = (settings.deregistration_delay, settings.stop_grace);
        tokio::spawn(async move {
            let deadline = Instant::now() + delay;
            let mut in_flight = control.balancer().in_flight(&env_name, &id);
            while in_flight > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                in_flight = control.balancer().in_flight(&env_name, &id);
            }
            if in_flight > 0 {
                tracing::warn!(env = %env_name, instance = %id, in_flight, "deregistration delay over with requests in flight");
            }
            match control
                .runtime_for(&zone)
                .remove_instance(&container, grace)
                .await
            {
                Ok(()) => {
                    if let Err(e) = control
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
            if let Ok(mut s) = control.inner.removing.lock() {
                s.remove(&id);
            }
            control.wake();
        });
        Ok(())
    }

    /// Starts instances in `zones`; false when held back after a failed start. A network
    /// that cannot be made or a start that fails is an error (and holds the next back).
    async fn start_instances(&self, env: &EnvRow, target: &str, zones: &[String]) -> Result<bool> {
        let blocked = self
            .inner
            .start_backoff
            .lock()
            .map(|m| m.get(&env.id).is_some_and(|until| Instant::now() < *until))
            .unwrap_or(false);
        if blocked {
            return Ok(false);
        }
        let started = self.try_start_instances(env, target, zones).await;
        if started.is_err() {
            if let Ok(mut m) = self.inner.start_backoff.lock() {
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
    ) -> Result<()> {
        let network = self.network_of(env);
        let labels = HashMap::from([
            ("sprout.server".to_string(), self.server_id().to_string()),
            ("sprout.env-id".to_string(), env.id.to_string()),
        ]);
        let mut engines_done: Vec<&str> = Vec::new();
        for zone in zones {
            // Zones sharing an engine share the network.
            let key = self.engine_key(zone);
            if engines_done.contains(&key) {
                continue;
            }
            engines_done.push(key);
            self.runtime_for(zone)
                .ensure_network(&network, &labels)
                .await
                .map_err(|e| {
                    ControlError::Unavailable(format!("docker network in zone {zone}: {e}"))
                })?;
        }
        let starts = zones
            .iter()
            .map(|zone| self.start_one(env, target, &network, zone));
        let results = futures_util::future::join_all(starts).await;
        let mut first_error = None;
        for r in results {
            if let Err(e) = r {
                let message = format!("could not start an instance: {e}");
                self.store()
                    .add_event(env.id, Severity::Error, &message)
                    .await?;
                first_error.get_or_insert(ControlError::Unavailable(message));
            }
        }
        self.wake();
        first_error.map_or(Ok(()), Err)
    }

    async fn start_one(&self, env: &EnvRow, target: &str, network: &str, zone: &str) -> Result<()> {
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
        // The scripts run in a subshell so their `set -e` does not leak into the process.
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
        // DATABASE_URL, RDS_*, REDIS_URL, ... of the attached resources.
        envs.extend(self.resource_env_vars(env).await);
        let limits = env.settings().instance_type.limits();
        let spec = InstanceSpec {
            name: format!("sprout-{}-{id}", env.name),
            image,
            network: network.to_string(),
            labels: instance_labels(self.server_id(), env, target, zone, &id),
            env: envs,
            cmd: vec!["/bin/sh".into(), "-c".into(), cmd],
            millicpus: limits.millicpus,
            memory_mib: limits.memory_mib,
            pids: limits.pids,
            user: manifest.config.user.clone(),
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
        let runtime = self.runtime_for(zone);
        if !runtime.image_exists(&spec.image).await.unwrap_or(false) {
            // A zone on another engine: bring the image there (no registry needed).
            if let Err(e) = self.runtime().copy_image_to(&spec.image, runtime).await {
                self.store()
                    .instance_removed(&id, "failed to start")
                    .await?;
                return Err(ControlError::Unavailable(format!("zone {zone}: {e}")));
            }
        }
        match runtime.start_instance(&spec).await {
            Ok(started) => {
                let address = started.address.map(|a| a.to_string());
                self.store()
                    .instance_started(&id, &started.container_id, address.as_deref())
                    .await?;
                let message = format!("started instance {id} ({}) in zone {zone}", env.version);
                self.store()
                    .add_event(env.id, Severity::Info, &message)
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

    /// Why the running operation has failed, if it has: out of time, instances that keep
    /// exiting, a new instance that does not pass its checks in time, a sick canary.
    fn failure(
        &self,
        seen: &Seen<'_>,
        op: &OperationRow,
        state: &OperationState,
    ) -> Option<String> {
        let exits = state.exits;
        if exits > 2 * seen.env.desired.max(1) {
            return Some(format!(
                "instances of version {} keep exiting ({exits} exits); see `sprout logs {}`",
                seen.env.version, seen.env.name
            ));
        }
        if let Some(why) = self.timed_out(op, seen.settings) {
            return Some(why);
        }
        let now = chrono::Utc::now();
        let judged = self.judge_instances(seen.env);
        for o in seen
            .observed
            .iter()
            .filter(|o| o.revision == seen.target && o.running && !o.healthy)
        {
            let Some(row) = seen.rows.get(&o.id) else {
                continue;
            };
            let age = (now - row.created_at).to_std().unwrap_or_default();
            if row.healthy_at.is_none() && age > seen.settings.health_grace {
                let last = judged
                    .get(&o.id)
                    .map(|j| j.verdict.causes.join("; "))
                    .unwrap_or_default();
                let backend = self
                    .balancer()
                    .backends(&seen.env.name)
                    .into_iter()
                    .find(|b| b.id == o.id);
                let check = backend
                    .and_then(|b| {
                        b.last_error.or(b
                            .last_status
                            .map(|s| format!("the health check answered {s}")))
                    })
                    .unwrap_or(last);
                return Some(format!(
                    "instance {} of version {} did not pass its health check within {} s ({check})",
                    o.id,
                    seen.env.version,
                    seen.settings.health_grace.as_secs()
                ));
            }
        }
        let splitting = op.policy == Some(Policy::TrafficSplitting);
        if splitting && seen.status == EnvStatus::Updating {
            for o in seen
                .observed
                .iter()
                .filter(|o| o.revision == seen.target && o.healthy)
            {
                if let Some(j) = judged.get(&o.id) {
                    if matches!(
                        j.verdict.status,
                        HealthStatus::Degraded | HealthStatus::Severe
                    ) {
                        return Some(format!(
                            "the canary instance {} is {}: {}",
                            o.id,
                            j.verdict.status,
                            j.verdict.causes.join("; ")
                        ));
                    }
                }
            }
        }
        None
    }

    /// Closes the running operation when the environment reached its goal, or when it
    /// failed (a deployment then rolls back, if the environment says so).
    async fn settle_operation(
        &self,
        seen: &Seen<'_>,
        converged: bool,
        operation: Option<OperationRow>,
        state: &OperationState,
    ) -> Result<()> {
        let (env, status) = (seen.env, seen.status);
        if !status.is_transitional() {
            return Ok(());
        }
        let op_id = operation.as_ref().map(|op| op.id);
        let took = operation
            .as_ref()
            .map(|op| {
                format!(
                    "{:.1} s",
                    (chrono::Utc::now() - op.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let traffic = || {
            let (requests, failed) = match (self.totals(&env.name), operation.as_ref()) {
                // Never below zero, should totals have lost a crash's last second.
                (Some((r, f)), Some(op)) => (
                    (r - op.requests_before.unwrap_or(0)).max(0),
                    (f - op.failed_before.unwrap_or(0)).max(0),
                ),
                _ => (0, 0),
            };
            format!("{requests} requests, {failed} failed")
        };
        let done = converged
            && seen.draining == 0
            && (status != EnvStatus::Terminating || seen.containers_left == 0);
        if done {
            let n = env.desired;
            let kind = operation.as_ref().map(|op| op.kind);
            let id = op_id.unwrap_or(0);
            let message = match (status, kind) {
                (EnvStatus::Terminating, _) => {
                    self.balancer().remove_route(&env.name);
                    for engine in &self.inner.engines {
                        let _ = engine.remove_network(&self.network_of(env)).await;
                    }
                    format!("terminateEnvironment completed successfully in {took}")
                }
                (EnvStatus::Launching, _) => format!(
                    "Successfully launched environment: {} (version {} on {n}/{n} healthy instances in {took})",
                    env.name, env.version
                ),
                (_, Some(OpKind::Rollback)) => format!(
                    "rollback {id} finished: back on {} on {n}/{n} instances in {took}, {}",
                    env.version,
                    traffic()
                ),
                (_, Some(OpKind::Configure)) => format!("configuration {id} applied on {n}/{n} instances in {took}, {}", traffic()),
                _ => format!(
                    "deployment {id} finished: {} on {n}/{n} instances in {took}, {}",
                    env.version,
                    traffic()
                ),
            };
            self.balancer().set_split(&env.name, None);
            return self
                .finish(
                    env,
                    status,
                    op_id,
                    status.success(kind),
                    OperationOutcome::Succeeded,
                    &message,
                )
                .await;
        }
        let Some(op) = operation else { return Ok(()) };
        let why = if status == EnvStatus::Terminating {
            self.timed_out(&op, seen.settings)
        } else {
            self.failure(seen, &op, state)
        };
        match why {
            Some(why) => {
                self.fail_operation(env, status, &op, seen.settings, &why)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Records health transitions as events.
    async fn track_health(&self, env: &EnvRow, status: EnvStatus) -> Result<()> {
        let verdict = self.judge_environment(env, status);
        if verdict.status.as_str() == env.health {
            return Ok(());
        }
        let worse = matches!(
            verdict.status,
            HealthStatus::Warning | HealthStatus::Degraded | HealthStatus::Severe
        );
        let severity = if worse {
            Severity::Warn
        } else {
            Severity::Info
        };
        let causes = if verdict.causes.is_empty() {
            String::new()
        } else {
            format!(": {}", verdict.causes.join("; "))
        };
        let message = format!(
            "environment health has transitioned from {} to {} ({}){causes}",
            env.health,
            verdict.status,
            verdict.status.color()
        );
        self.store()
            .set_health(env, verdict.status.as_str(), severity, &message)
            .await?;
        Ok(())
    }
}
