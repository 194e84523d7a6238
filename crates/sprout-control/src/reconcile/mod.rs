//! The reconciler: a level-triggered loop. Each pass compares every environment's desired
//! state (store) with what Docker runs (found by labels), takes one step towards it with
//! the running operation's deployment policy, keeps the balancer's routes in line, drains
//! instances before they stop, and closes operations that are done, failed or out of time
//! (a failed deployment rolls back).

use crate::error::Result;
use crate::queues::Queues;
use crate::shared::Shared;
use futures_util::future::BoxFuture;
use sprout_core::plan::{plan, Desired, Observed, RemoveReason, Rollout};
use sprout_core::{EnvSettings, EnvStatus, Policy, Severity, Tier};
use sprout_runtime::ContainerInfo;
use sprout_store::{
    CorruptEnv, EnvRow, EnvironmentStore, InstanceRow, OperationRow, OperationState,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod instances;
mod outcome;
mod routes;
mod settle;

/// After a failed start, wait this long before trying again (no event storm).
const START_BACKOFF: Duration = Duration::from_secs(5);

/// The Docker labels of an instance; the reconciler finds its containers by them.
pub fn instance_labels(
    server_id: &str,
    env: &EnvRow,
    revision: &str,
    zone: &str,
    instance: &str,
) -> HashMap<String, String> {
    HashMap::from([
        ("sprout.server".to_string(), server_id.to_string()),
        ("sprout.app".to_string(), env.app.clone()),
        ("sprout.env".to_string(), env.name.clone()),
        ("sprout.env-id".to_string(), env.id.to_string()),
        ("sprout.version".to_string(), env.version.clone()),
        ("sprout.revision".to_string(), revision.to_string()),
        ("sprout.zone".to_string(), zone.to_string()),
        ("sprout.instance".to_string(), instance.to_string()),
    ])
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

/// What the reconciler asks of the rest of the control plane when it starts an instance:
/// the variables of the environment's attached resources (see `resources.rs`).
pub(crate) trait InstanceVars: Send + Sync {
    fn resource_vars<'a>(&'a self, env: &'a EnvRow) -> BoxFuture<'a, Vec<String>>;
}

/// The reconciler. Owns what a pass remembers between passes: which instances are being
/// drained, which environments are held back after a failed start, which corrupt rows were
/// already reported. What must survive a restart (an operation's step failures, exits and
/// canary start) is on the operation's row instead.
#[derive(Clone)]
pub(crate) struct Reconciler {
    shared: Arc<Shared>,
    /// Instances get the SQS endpoint and keys of their application's worker queue.
    queues: Queues,
    /// Per environment: no new start before this instant (after a failed start).
    start_backoff: Arc<Mutex<HashMap<i64, Instant>>>,
    /// Environments whose row cannot be read, already reported (event once).
    corrupt: Arc<Mutex<HashSet<i64>>>,
    /// Instances being drained and removed by a background task.
    removing: Arc<Mutex<HashSet<String>>>,
}

impl Reconciler {
    pub(crate) fn new(shared: Arc<Shared>, queues: Queues) -> Self {
        Self {
            shared,
            queues,
            start_backoff: Default::default(),
            corrupt: Default::default(),
            removing: Default::default(),
        }
    }

    fn is_removing(&self, id: &str) -> bool {
        self.removing
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    /// One pass over every environment.
    pub(crate) async fn reconcile_all(&self, vars: &dyn InstanceVars) -> Result<()> {
        let active = self.shared.store().active_environments().await?;
        let envs = active.envs;
        self.report_corrupt(&active.corrupt).await;
        let containers = match self
            .shared
            .list_containers(&[("sprout.server", self.shared.server_id())])
            .await
        {
            Ok(containers) => containers,
            Err(e) => {
                // The local engine does not answer: say so to every environment on it.
                for env in &envs {
                    let rows = self.shared.store().live_instances(env.id).await?;
                    self.shared
                        .note_engine_reach(env, &rows.iter().collect::<Vec<_>>())
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
                    .shared
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
            let reconciler = self;
            async move {
                if let Err(e) = reconciler.reconcile_env(env.clone(), observed, vars).await {
                    // Counted against the running operation, which fails if it keeps failing.
                    if let Err(e) = reconciler.step_failed(&env, &e).await {
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
        let fresh: Vec<&CorruptEnv> = match self.corrupt.lock() {
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
                .shared
                .store()
                .add_event(c.id, Severity::Error, &message)
                .await
            {
                tracing::warn!(env = %c.name, error = %e, "could not record the event");
            }
        }
    }

    async fn reconcile_env(
        &self,
        env: EnvRow,
        containers: Vec<ContainerInfo>,
        vars: &dyn InstanceVars,
    ) -> Result<()> {
        let status = env.status;
        let settings = env.settings();
        let target = self.shared.revision_of(&env);
        let rows: HashMap<String, InstanceRow> = self
            .shared
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        self.shared
            .note_engine_reach(&env, &rows.values().collect::<Vec<_>>())
            .await?;

        // Keep the balancer in line with what runs before deciding anything: adopted
        // instances (after a restart) get health-checked and routed at once.
        let all: Vec<&ContainerInfo> = containers.iter().collect();
        self.shared
            .balancer()
            .set_route(self.route_for(&env, status.is_live(), &all));
        let web = env.tier == Tier::Web;
        self.shared
            .balancer()
            .set_sticky(&env.name, settings.sticky.filter(|_| web));

        // Served, then failed its checks past the unhealthy threshold: to be replaced.
        let failing: HashSet<String> = self
            .shared
            .balancer()
            .backends(&env.name)
            .into_iter()
            .filter(|b| b.state == sprout_proxy::BackendState::Unhealthy)
            .map(|b| b.id)
            .collect();
        let zones = self.shared.available_zones().await?;
        let mut observed = Vec::with_capacity(containers.len());
        let mut by_instance: HashMap<String, &ContainerInfo> = HashMap::new();
        for c in &containers {
            let Some(id) = c.labels.get("sprout.instance").cloned() else {
                continue;
            };
            if self.is_removing(&id) {
                continue;
            }
            let healthy = c.running && self.shared.balancer().is_healthy(&env.name, &id);
            if healthy
                && rows.get(&id).is_some_and(|r| r.healthy_at.is_none())
                && self.shared.store().instance_healthy(&id).await?
            {
                if let Some(row) = rows.get(&id) {
                    let secs =
                        (chrono::Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
                    let message = format!(
                        "instance {id} (zone {}) is healthy, {secs:.1} s after start",
                        row.zone
                    );
                    self.shared
                        .store()
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
            .shared
            .store()
            .current_operation(env.id)
            .await?
            .filter(OperationRow::is_running);
        let state = match &operation {
            Some(op) => self.shared.store().operation_state(op.id).await?,
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
            attempted = self
                .start_instances(&env, &target, &step.start, vars)
                .await?;
        }
        if let Some(op) = operation.as_ref().filter(|_| attempted) {
            if state.step_failures > 0 {
                self.shared.store().clear_step_failures(op.id).await?;
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
}
