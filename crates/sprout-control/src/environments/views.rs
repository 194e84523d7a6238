//! What users read of environments: the environment with its instances, the list, events,
//! logs, the health report and the deployment history.

use super::{properties_for, Environments};
use crate::error::{ControlError, Result};
use sprout_core::api;
use sprout_core::auth::Role;
use sprout_core::health::Verdict;
use sprout_core::resource_health;
use sprout_core::{AppName, HealthStatus, Tier};
use sprout_proxy::EnvMetrics;
use sprout_store::{EnvRow, EnvironmentStore, OperationRow};
use std::collections::HashMap;

pub(crate) fn operation_view(op: &OperationRow) -> api::Operation {
    api::Operation {
        id: op.id,
        kind: op.kind.to_string(),
        version: op.version_label.clone(),
        started_by: op.started_by.clone(),
        started_at: op.started_at,
        finished_at: op.finished_at,
        outcome: op.outcome,
        message: op.message.clone(),
    }
}

/// `gaps`: when the counts lost requests (see `Store::count_gaps`).
fn deployment_view(op: &OperationRow, gaps: &[chrono::DateTime<chrono::Utc>]) -> api::Deployment {
    api::Deployment {
        id: op.id,
        kind: op.kind.to_string(),
        version: op.version_label.clone(),
        policy: op.policy.map(|p| p.to_string()),
        batch: op.batch.map(|b| b.to_string()),
        started_by: op.started_by.clone(),
        started_at: op.started_at,
        finished_at: op.finished_at,
        duration_secs: op
            .finished_at
            .map(|f| (f - op.started_at).num_milliseconds() as f64 / 1000.0),
        outcome: op.outcome,
        message: op.message.clone(),
        requests: op.requests,
        failed: op.failed,
        approximate: gaps
            .iter()
            .any(|at| *at >= op.started_at && op.finished_at.is_none_or(|f| *at <= f)),
    }
}

pub(crate) fn metrics_view(m: Option<&EnvMetrics>) -> api::Metrics {
    let Some(m) = m else {
        return api::Metrics::default();
    };
    api::Metrics {
        window_secs: m.window_secs,
        requests_per_sec: m.requests_per_sec,
        count: m.count,
        status_2xx: m.status_2xx,
        status_3xx: m.status_3xx,
        status_4xx: m.status_4xx,
        status_5xx: m.status_5xx,
        failed: m.failed,
        p50_ms: m.p50_ms,
        p90_ms: m.p90_ms,
        p99_ms: m.p99_ms,
        p999_ms: m.p999_ms,
    }
}

impl Environments {
    pub async fn deployments(&self, env_name: &str) -> Result<Vec<api::Deployment>> {
        let env = self.shared.any_env(env_name).await?;
        let gaps = self.shared.store().count_gaps().await?;
        Ok(self
            .shared
            .store()
            .operations(env.id, 100)
            .await?
            .iter()
            .map(|op| deployment_view(op, &gaps))
            .collect())
    }

    /// The environment and its instances, as `reader` may see them (property values masked
    /// for viewers).
    pub async fn get_environment(
        &self,
        name: &str,
        reader: Role,
    ) -> Result<api::EnvironmentDetail> {
        let env = self.shared.any_env(name).await?;
        let operation = self.shared.store().current_operation(env.id).await?;
        let environment = self.environment_view_with(&env, operation.as_ref(), reader)?;
        let instances = self.instance_views(&env).await?;
        let resources = self.attached_resources(env.id).await?;
        Ok(api::EnvironmentDetail {
            environment,
            instances,
            resources,
        })
    }

    /// Environments, as `reader` may see them (property values masked for viewers).
    pub async fn list_environments(
        &self,
        app: Option<&str>,
        reader: Role,
    ) -> Result<Vec<api::Environment>> {
        if let Some(app) = app {
            let app = AppName::parse(app)?;
            self.shared
                .store()
                .get_app(app.as_str())
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        }
        let rows = self.shared.store().list_environments(app, false).await?;
        let operations = self.shared.store().latest_operations().await?;
        rows.iter()
            .map(|env| self.environment_view_with(env, operations.get(&env.id), reader))
            .collect()
    }

    pub async fn events(&self, name: &str, after: i64, limit: i64) -> Result<Vec<api::Event>> {
        let env = self.shared.any_env(name).await?;
        let rows = self
            .shared
            .store()
            .env_events(env.id, after, limit.clamp(1, 10_000))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| api::Event {
                id: r.id,
                time: r.created_at,
                severity: r.severity,
                environment: r.environment,
                app: r.app,
                message: r.message,
            })
            .collect())
    }

    /// The last `tail` log lines of every instance, each prefixed with its instance id.
    pub async fn logs(&self, name: &str, tail: usize) -> Result<String> {
        let env = self.shared.live_env(name).await?;
        let containers = self.shared.env_containers(&env).await?;
        let mut out = String::new();
        for c in containers {
            let instance = c
                .labels
                .get("sprout.instance")
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            let zone = c
                .labels
                .get("sprout.zone")
                .map(String::as_str)
                .unwrap_or_default();
            match self
                .shared
                .runtime_for(zone)
                .logs(&c.id, tail.clamp(1, 10_000))
                .await
            {
                Ok(lines) => {
                    for line in lines {
                        out.push_str(&format!("{instance} | {line}\n"));
                    }
                }
                Err(e) => out.push_str(&format!("{instance} | (logs unavailable: {e})\n")),
            }
        }
        Ok(out)
    }

    pub async fn health_report(&self, name: &str) -> Result<api::HealthReport> {
        let env = self.shared.live_env(name).await?;
        let status = env.status;
        let resources = self.attached_resources(env.id).await?;
        let verdict = resource_health::with_resources(
            self.shared.judge_environment(&env, status),
            &resources,
        );
        let judged = self.shared.judge_instances(&env);
        let rows: HashMap<String, sprout_store::InstanceRow> = self
            .shared
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let now = chrono::Utc::now();
        let mut instances: Vec<api::InstanceHealth> = self
            .shared
            .balancer()
            .backends(&env.name)
            .into_iter()
            .map(|b| {
                let j = judged.get(&b.id);
                let m = j.and_then(|j| j.metrics.clone());
                let row = rows.get(&b.id);
                let verdict = j.map(|j| j.verdict.clone()).unwrap_or(Verdict {
                    status: HealthStatus::Unknown,
                    causes: vec![],
                });
                api::InstanceHealth {
                    id: b.id.clone(),
                    version: row
                        .map(|r| r.version_label.clone())
                        .unwrap_or_else(|| b.version.clone()),
                    zone: row.map(|r| r.zone.clone()).unwrap_or_default(),
                    color: verdict.status.color().to_string(),
                    health: verdict.status,
                    causes: verdict.causes,
                    requests_per_sec: m.as_ref().map(|m| m.requests_per_sec).unwrap_or(0.0),
                    count: m.as_ref().map(|m| m.count).unwrap_or(0),
                    status_5xx: m.as_ref().map(|m| m.status_5xx).unwrap_or(0),
                    p50_ms: m.as_ref().map(|m| m.p50_ms).unwrap_or(0.0),
                    p99_ms: m.as_ref().map(|m| m.p99_ms).unwrap_or(0.0),
                    in_flight: m.as_ref().map(|m| m.in_flight).unwrap_or(0),
                    start_to_healthy_ms: row
                        .and_then(|r| r.healthy_at.map(|h| (h - r.created_at).num_milliseconds())),
                    uptime_secs: row.map(|r| (now - r.created_at).num_seconds()),
                }
            })
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(api::HealthReport {
            environment: env.name.clone(),
            status,
            color: verdict.status.color().to_string(),
            health: verdict.status,
            causes: verdict.causes,
            metrics: metrics_view(self.shared.balancer().metrics(&env.name).as_ref()),
            instances,
            resources,
        })
    }

    pub(crate) async fn instance_views(&self, env: &EnvRow) -> Result<Vec<api::Instance>> {
        let containers = self.shared.env_containers(env).await.unwrap_or_default();
        let rows: HashMap<String, sprout_store::InstanceRow> = self
            .shared
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let judged = self.shared.judge_instances(env);
        let mut out: Vec<api::Instance> = containers
            .iter()
            .map(|c| {
                let id = c.label("sprout.instance").to_string();
                let row = rows.get(&id);
                api::Instance {
                    healthy: c.running && self.shared.balancer().is_healthy(&env.name, &id),
                    health: judged
                        .get(&id)
                        .map(|j| j.verdict.status)
                        .unwrap_or(HealthStatus::Unknown),
                    version: c.label("sprout.version").to_string(),
                    zone: c.zone().to_string(),
                    state: c.state.clone(),
                    address: c.address.map(|a| a.to_string()),
                    container: Some(c.id.chars().take(12).collect()),
                    started_at: row.map(|r| r.created_at),
                    start_to_healthy_ms: row
                        .and_then(|r| r.healthy_at.map(|h| (h - r.created_at).num_milliseconds())),
                    id,
                }
            })
            .collect();
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The view of an environment for the deployer or admin who just changed it.
    pub async fn environment_view(&self, env: &EnvRow) -> Result<api::Environment> {
        let operation = self.shared.store().current_operation(env.id).await?;
        self.environment_view_with(env, operation.as_ref(), Role::Deployer)
    }

    /// The API's view of an environment, given its newest operation, as `reader` may see it.
    fn environment_view_with(
        &self,
        env: &EnvRow,
        operation: Option<&OperationRow>,
        reader: Role,
    ) -> Result<api::Environment> {
        let (status, tier, settings) = (env.status, env.tier, &env.settings);
        let operation = operation.map(operation_view);
        let port = self.shared.config().balancer_port;
        let url = (tier == Tier::Web).then(|| match port {
            80 => format!("http://{}/", self.shared.host_of(&env.cname)),
            p => format!("http://{}:{p}/", self.shared.host_of(&env.cname)),
        });
        let verdict = self.shared.judge_environment(env, status);
        Ok(api::Environment {
            name: env.name.clone(),
            app: env.app.clone(),
            version: env.version.clone(),
            tier,
            mode: env.mode,
            status,
            health: verdict.status.color().to_string(),
            health_status: verdict.status,
            policy: settings.policy,
            cname: env.cname.clone(),
            url,
            instance_type: settings.instance_type,
            bootstrap: env.bootstrap,
            min: settings.min,
            max: settings.max,
            desired: u32::try_from(env.desired).unwrap_or(0),
            env: properties_for(env, reader),
            created_at: env.created_at,
            updated_at: env.updated_at,
            operation,
        })
    }
}
