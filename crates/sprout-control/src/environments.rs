//! Environment operations as users ask for them: checked against the domain rules, then
//! written to the store in one transaction; the reconciler does the rest.

use crate::{Control, ControlError, Result};
use sprout_core::api::{self, OperationOutcome};
use sprout_core::manifest::BundleManifest;
use sprout_core::{
    AppName, Bootstrap, Cname, EnvName, EnvOp, EnvStatus, InstanceType, LifecycleError, Mode, Tier,
    VersionLabel, VersionStatus,
};
use sprout_store::{EnvRow, NewEnvironment, OperationRow, VersionRow};
use std::collections::{BTreeMap, HashMap};

/// Most instances one environment may ask for (a guard against typos like `--instances 200`).
pub const MAX_INSTANCES: u32 = 20;

/// The Docker labels of an instance; the reconciler finds its containers by them.
pub fn instance_labels(
    server_id: &str,
    env: &EnvRow,
    version: &str,
    zone: &str,
    instance: &str,
) -> HashMap<String, String> {
    HashMap::from([
        ("sprout.server".to_string(), server_id.to_string()),
        ("sprout.app".to_string(), env.app.clone()),
        ("sprout.env".to_string(), env.name.clone()),
        ("sprout.env-id".to_string(), env.id.to_string()),
        ("sprout.version".to_string(), version.to_string()),
        ("sprout.zone".to_string(), zone.to_string()),
        ("sprout.instance".to_string(), instance.to_string()),
    ])
}

fn lifecycle(e: LifecycleError) -> ControlError {
    ControlError::Conflict(e.to_string())
}

fn check_property_key(key: &str) -> Result<()> {
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 128;
    if !valid {
        return Err(ControlError::Invalid(format!(
            "invalid property name '{key}': letters, digits and '_', not starting with a digit"
        )));
    }
    if key == "PORT" || key.starts_with("SPROUT_") {
        return Err(ControlError::Invalid(format!(
            "property '{key}' is reserved: Sprout sets it"
        )));
    }
    Ok(())
}

pub(crate) fn operation_view(op: &OperationRow) -> api::Operation {
    api::Operation {
        id: op.id,
        kind: op.kind.clone(),
        version: op.version_label.clone(),
        started_by: op.started_by.clone(),
        started_at: op.started_at,
        finished_at: op.finished_at,
        outcome: op.outcome(),
        message: op.message.clone(),
    }
}

impl Control {
    pub(crate) fn host_of(&self, cname: &str) -> String {
        format!("{cname}.{}", self.config().domain)
    }

    pub(crate) fn network_of(&self, env: &EnvRow) -> String {
        format!("sprout-{}-{}-{}", self.server_id(), env.name, env.id)
    }

    async fn ready_version(
        &self,
        app: &AppName,
        label: &VersionLabel,
        tier: Tier,
    ) -> Result<VersionRow> {
        let version = self
            .store()
            .get_version(app.as_str(), label.as_str())
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!("version '{label}' of '{app}' not found"))
            })?;
        match version.status.parse::<VersionStatus>() {
            Ok(VersionStatus::Ready) => {}
            Ok(VersionStatus::Processing) => {
                return Err(ControlError::Conflict(format!(
                    "version '{label}' is still being built; try again when it is ready"
                )))
            }
            _ => {
                return Err(ControlError::Invalid(format!(
                    "version '{label}' failed to build: {}",
                    version.error.as_deref().unwrap_or("see `sprout versions`")
                )))
            }
        }
        let manifest: BundleManifest = serde_json::from_str(&version.manifest)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        manifest
            .command_for(tier)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        Ok(version)
    }

    async fn live_env(&self, name: &str) -> Result<EnvRow> {
        let name = EnvName::parse(name)?;
        match self.store().get_environment(name.as_str()).await? {
            Some(env) if env.status()? != EnvStatus::Terminated => Ok(env),
            _ => Err(ControlError::NotFound(format!(
                "environment '{name}' not found"
            ))),
        }
    }

    pub async fn create_environment(
        &self,
        req: api::CreateEnvironment,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let name = EnvName::parse(&req.name)?;
        let app = AppName::parse(&req.app)?;
        let label = VersionLabel::parse(&req.version)?;
        let cname = Cname::parse(req.cname.as_deref().unwrap_or(name.as_str()))?;
        let tier = req.tier.unwrap_or(Tier::Web);
        let mode = req.mode.unwrap_or(Mode::Dev);
        let (min, max) = match (req.instances, req.min, req.max) {
            (Some(n), None, None) => (n, n),
            (None, None, None) => (mode.default_instances(), mode.default_instances()),
            (None, min, max) => {
                let min = min.unwrap_or(mode.default_instances());
                (min, max.unwrap_or(min.max(mode.default_instances())))
            }
            (Some(_), _, _) => {
                return Err(ControlError::Invalid(
                    "give --instances or --min/--max, not both".into(),
                ))
            }
        };
        if min == 0 || min > max || max > MAX_INSTANCES {
            return Err(ControlError::Invalid(format!(
                "instance counts must satisfy 1 <= min ({min}) <= max ({max}) <= {MAX_INSTANCES}"
            )));
        }
        for key in req.env.keys() {
            check_property_key(key)?;
        }
        let app_row = self
            .store()
            .get_app(app.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        let version = self.ready_version(&app, &label, tier).await?;
        let instance_type = req.instance_type.unwrap_or(mode.default_instance_type());
        let new = NewEnvironment {
            name: name.to_string(),
            app_id: app_row.id,
            version_id: version.id,
            version_label: label.to_string(),
            tier: tier.to_string(),
            mode: mode.to_string(),
            cname: cname.to_string(),
            instance_type: instance_type.to_string(),
            bootstrap: req.bootstrap.unwrap_or(Bootstrap::Golden).to_string(),
            min_instances: i64::from(min),
            max_instances: i64::from(max),
            desired: i64::from(min),
            properties: req.env.clone(),
            started_by: by.map(str::to_string),
        };
        let (env, _op) = self.store().create_environment(&new).await?;
        tracing::info!(env = %env.name, app = %env.app, version = %env.version, instances = min, "environment created");
        self.wake();
        self.environment_view(&env).await
    }

    pub async fn deploy(
        &self,
        env_name: &str,
        version: &str,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let label = VersionLabel::parse(version)?;
        let app = AppName::parse(&env.app)?;
        let tier: Tier = env
            .tier
            .parse()
            .map_err(|e: sprout_core::model::UnknownValue| ControlError::Internal(e.to_string()))?;
        let status = env.status()?;
        status.begin(EnvOp::Deploy).map_err(lifecycle)?;
        let version = self.ready_version(&app, &label, tier).await?;
        let who = by.unwrap_or("system");
        self.store()
            .begin_operation(
                &env,
                status,
                EnvStatus::Updating,
                "deploy",
                Some((version.id, &version.label)),
                by,
                &format!(
                    "Deploying version {} over {} (all at once, by {who})",
                    version.label, env.version
                ),
            )
            .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    pub async fn terminate(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let status = env.status()?;
        let to = status.begin(EnvOp::Terminate).map_err(lifecycle)?;
        let who = by.unwrap_or("system");
        self.store()
            .begin_operation(
                &env,
                status,
                to,
                "terminate",
                None,
                by,
                &format!("terminateEnvironment is starting (by {who})"),
            )
            .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    pub async fn get_environment(&self, name: &str) -> Result<api::EnvironmentDetail> {
        let name = EnvName::parse(name)?;
        let env = self
            .store()
            .get_environment(name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("environment '{name}' not found")))?;
        let environment = self.environment_view(&env).await?;
        let instances = self.instance_views(&env).await?;
        Ok(api::EnvironmentDetail {
            environment,
            instances,
        })
    }

    pub async fn list_environments(&self, app: Option<&str>) -> Result<Vec<api::Environment>> {
        if let Some(app) = app {
            let app = AppName::parse(app)?;
            self.store()
                .get_app(app.as_str())
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        }
        let rows = self.store().list_environments(app, false).await?;
        let mut out = Vec::with_capacity(rows.len());
        for env in &rows {
            out.push(self.environment_view(env).await?);
        }
        Ok(out)
    }

    pub async fn events(&self, name: &str, after: i64, limit: i64) -> Result<Vec<api::Event>> {
        let name = EnvName::parse(name)?;
        let env = self
            .store()
            .get_environment(name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("environment '{name}' not found")))?;
        let rows = self
            .store()
            .env_events(env.id, after, limit.clamp(1, 10_000))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| api::Event {
                id: r.id,
                time: r.created_at,
                severity: r.severity.parse().unwrap_or(sprout_core::Severity::Info),
                environment: r.environment,
                app: r.app,
                message: r.message,
            })
            .collect())
    }

    /// The last `tail` log lines of every instance, each prefixed with its instance id.
    pub async fn logs(&self, name: &str, tail: usize) -> Result<String> {
        let env = self.live_env(name).await?;
        let containers = self.env_containers(&env).await?;
        let mut out = String::new();
        for c in containers {
            let instance = c
                .labels
                .get("sprout.instance")
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            match self.runtime().logs(&c.id, tail.clamp(1, 10_000)).await {
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

    pub(crate) async fn env_containers(
        &self,
        env: &EnvRow,
    ) -> Result<Vec<sprout_runtime::ContainerInfo>> {
        let env_id = env.id.to_string();
        self.runtime()
            .list_instances(&[
                ("sprout.server", self.server_id()),
                ("sprout.env-id", &env_id),
            ])
            .await
            .map_err(|e| ControlError::Unavailable(format!("docker: {e}")))
    }

    async fn instance_views(&self, env: &EnvRow) -> Result<Vec<api::Instance>> {
        let containers = self.env_containers(env).await.unwrap_or_default();
        let rows: HashMap<String, sprout_store::InstanceRow> = self
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut out: Vec<api::Instance> = containers
            .iter()
            .map(|c| {
                let id = c.labels.get("sprout.instance").cloned().unwrap_or_default();
                let row = rows.get(&id);
                api::Instance {
                    healthy: self.balancer().is_healthy(&env.name, &id),
                    version: c.labels.get("sprout.version").cloned().unwrap_or_default(),
                    zone: c.labels.get("sprout.zone").cloned().unwrap_or_default(),
                    state: c.state.clone(),
                    address: c.address.map(|a| a.to_string()),
                    container: Some(c.id.chars().take(12).collect()),
                    started_at: row.map(|r| r.created_at),
                    id,
                }
            })
            .collect();
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Green when every desired instance of the current version is healthy, Yellow when some
    /// are, Red when none are, Grey while launching or when there is nothing to judge.
    fn health_of(&self, env: &EnvRow, status: EnvStatus) -> &'static str {
        if !status.is_live() || status == EnvStatus::Launching {
            return "Grey";
        }
        let healthy = self
            .balancer()
            .backends(&env.name)
            .iter()
            // While updating, old and new instances both serve; judge the whole pool.
            .filter(|b| b.healthy && (status == EnvStatus::Updating || b.version == env.version))
            .count() as i64;
        match healthy {
            0 => "Red",
            n if n >= env.desired => "Green",
            _ => "Yellow",
        }
    }

    pub async fn environment_view(&self, env: &EnvRow) -> Result<api::Environment> {
        let status = env.status()?;
        let tier: Tier = env.tier.parse().unwrap_or(Tier::Web);
        let operation = self
            .store()
            .current_operation(env.id)
            .await?
            .as_ref()
            .map(operation_view);
        let port = self.config().balancer_port;
        let url = (tier == Tier::Web).then(|| match port {
            80 => format!("http://{}/", self.host_of(&env.cname)),
            p => format!("http://{}:{p}/", self.host_of(&env.cname)),
        });
        Ok(api::Environment {
            name: env.name.clone(),
            app: env.app.clone(),
            version: env.version.clone(),
            tier,
            mode: env.mode.parse().unwrap_or(Mode::Dev),
            status,
            health: self.health_of(env, status).to_string(),
            cname: env.cname.clone(),
            url,
            instance_type: env.instance_type.parse().unwrap_or(InstanceType::Micro),
            bootstrap: env.bootstrap.parse().unwrap_or(Bootstrap::Golden),
            min: u32::try_from(env.min_instances).unwrap_or(0),
            max: u32::try_from(env.max_instances).unwrap_or(0),
            desired: u32::try_from(env.desired).unwrap_or(0),
            env: env.properties().into_iter().collect::<BTreeMap<_, _>>(),
            created_at: env.created_at,
            updated_at: env.updated_at,
            operation,
        })
    }

    /// Operation outcome helper for the loops.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish(
        &self,
        env: &EnvRow,
        from: EnvStatus,
        operation: Option<i64>,
        status: EnvStatus,
        outcome: OperationOutcome,
        roll_back: bool,
        message: &str,
    ) -> Result<()> {
        if self
            .store()
            .finish_operation(env, from, operation, status, outcome, roll_back, message)
            .await?
        {
            tracing::info!(env = %env.name, %status, ?outcome, message, "operation finished");
        } else {
            tracing::debug!(env = %env.name, "state moved on before the operation could be closed");
        }
        Ok(())
    }
}
