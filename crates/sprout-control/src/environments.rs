//! Environment operations as users ask for them: checked against the domain rules, then
//! written to the store in one transaction; the reconciler does the rest.

use crate::{Control, ControlError, Result};
use sprout_core::api::{self, OperationOutcome};
use sprout_core::auth::Role;
use sprout_core::health::{self, CheckState, Verdict, Window};
use sprout_core::plan::revision;
use sprout_core::settings::{parse_duration, SettingError};
use sprout_core::{
    AppName, BatchSize, Bootstrap, Cname, EnvName, EnvOp, EnvSettings, EnvStatus, HealthStatus,
    InstanceType, LifecycleError, Mode, Tier, Transition, VersionLabel, VersionStatus,
};
use sprout_proxy::{BackendState, EnvMetrics};
use sprout_store::{
    EnvRow, EnvironmentStore, NewEnvironment, NewSavedConfig, OperationEnd, OperationRow,
    OperationStart, VersionRow,
};
use std::collections::{BTreeMap, HashMap};

/// Most instances one environment may ask for (a guard against typos like `--instances 200`).
pub const MAX_INSTANCES: u32 = 20;

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

fn setting(e: SettingError) -> ControlError {
    ControlError::Invalid(e.to_string())
}

impl Control {
    /// Refuses an instance type bigger than the smallest zone engine's host: Docker would
    /// refuse every container of it, and the environment would never settle. An engine that
    /// does not answer is not held against the type (its zone is failed over anyway).
    pub(crate) async fn check_instance_type(&self, wanted: InstanceType) -> Result<()> {
        let mut smallest: Option<u32> = None;
        for zone in &self.config().zones {
            if let Ok(cpus) = self.runtime_for(zone).cpus().await {
                smallest = Some(smallest.map_or(cpus, |s| s.min(cpus)));
            }
        }
        match smallest {
            Some(cpus) if !wanted.fits(cpus) => {
                let fitting: Vec<&str> = InstanceType::fitting(cpus)
                    .into_iter()
                    .map(InstanceType::as_str)
                    .collect();
                Err(ControlError::Invalid(format!(
                    "instance type {wanted} needs {} CPUs, but a zone's engine has only {cpus}; \
                     types that fit: {}",
                    wanted.limits().millicpus / 1000,
                    fitting.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

fn check_property_key(key: &str) -> Result<()> {
    sprout_core::properties::check_key(key).map_err(|e| ControlError::Invalid(e.to_string()))
}

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

/// What the balancer knows of one instance, judged by the health rules.
pub(crate) struct InstanceJudgement {
    pub verdict: Verdict,
    pub metrics: Option<sprout_proxy::BackendMetrics>,
}

impl Control {
    pub(crate) fn host_of(&self, cname: &str) -> String {
        format!("{cname}.{}", self.config().domain)
    }

    pub(crate) fn network_of(&self, env: &EnvRow) -> String {
        format!("sprout-{}-{}-{}", self.server_id(), env.name, env.id)
    }

    /// The revision the environment's instances should run.
    pub(crate) fn revision_of(&self, env: &EnvRow) -> String {
        revision(
            &env.version,
            env.settings.instance_type.as_str(),
            env.bootstrap.as_str(),
            &env.properties,
        )
    }

    /// The balancer's totals for an environment (requests, failed), for deployment records.
    pub(crate) fn totals(&self, env: &str) -> Option<(i64, i64)> {
        self.balancer().metrics(env).map(|m| {
            let t = m.totals;
            (
                i64::try_from(t.requests).unwrap_or(i64::MAX),
                i64::try_from(t.status_5xx).unwrap_or(i64::MAX),
            )
        })
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
        match version.status {
            VersionStatus::Ready => {}
            VersionStatus::Processing => {
                return Err(ControlError::Conflict(format!(
                    "version '{label}' is still being built; try again when it is ready"
                )))
            }
            VersionStatus::Failed => {
                return Err(ControlError::Invalid(format!(
                    "version '{label}' failed to build: {}",
                    version.error.as_deref().unwrap_or("see `sprout versions`")
                )))
            }
        }
        version
            .manifest
            .command_for(tier)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        Ok(version)
    }

    /// An environment by name that is not terminated.
    pub(crate) async fn live_env(&self, name: &str) -> Result<EnvRow> {
        self.env_where(name, |s| s != EnvStatus::Terminated).await
    }

    /// An environment by name whose status passes `keep`; otherwise "not found".
    pub(crate) async fn env_where(
        &self,
        name: &str,
        keep: impl Fn(EnvStatus) -> bool,
    ) -> Result<EnvRow> {
        let env = self.any_env(name).await?;
        if keep(env.status) {
            Ok(env)
        } else {
            Err(ControlError::NotFound(format!(
                "environment '{}' not found",
                env.name
            )))
        }
    }

    /// An environment by name, terminated ones included (their records stay readable).
    pub(crate) async fn any_env(&self, name: &str) -> Result<EnvRow> {
        let name = EnvName::parse(name)?;
        self.store()
            .get_environment(name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("environment '{name}' not found")))
    }

    /// The lifecycle's transition for `op`, or why the environment cannot start it now
    /// (409), naming what runs.
    pub(crate) async fn begin(&self, env: &EnvRow, op: EnvOp) -> Result<Transition> {
        let status = env.status;
        match status.begin(op) {
            Ok(t) => Ok(t),
            Err(LifecycleError::Busy { .. }) => {
                let running = self
                    .store()
                    .current_operation(env.id)
                    .await?
                    .filter(OperationRow::is_running);
                let what = match running {
                    Some(o) => format!(
                        "{} {} ({}{}, started by {}) is running",
                        o.kind,
                        o.id,
                        o.version_label.as_deref().unwrap_or("-"),
                        o.policy.map(|p| format!(", {p}")).unwrap_or_default(),
                        o.started_by.as_deref().unwrap_or("sprout")
                    ),
                    None => format!("the environment is {status}"),
                };
                Err(ControlError::Conflict(format!(
                    "cannot {} '{}' now: {what}; wait for it or stop it with `sprout abort {}`",
                    op.as_str(),
                    env.name,
                    env.name
                )))
            }
            Err(e) => Err(ControlError::Conflict(e.to_string())),
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
        let app_row = self
            .store()
            .get_app(app.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        let saved = match &req.config {
            Some(config) => Some(
                self.store()
                    .saved_config(app_row.id, config)
                    .await?
                    .ok_or_else(|| {
                        ControlError::NotFound(format!(
                            "saved configuration '{config}' of '{app}' not found"
                        ))
                    })?,
            ),
            None => None,
        };
        // What the request does not say comes from the saved configuration, else the defaults.
        let tier = req
            .tier
            .or(saved.as_ref().map(|s| s.tier))
            .unwrap_or(Tier::Web);
        let mode = req
            .mode
            .or(saved.as_ref().map(|s| s.mode))
            .unwrap_or(Mode::Dev);
        let bootstrap = req
            .bootstrap
            .or(saved.as_ref().map(|s| s.bootstrap))
            .unwrap_or(Bootstrap::Golden);
        let mut settings = match &saved {
            Some(s) => s.settings.clone(),
            None => EnvSettings::for_mode(mode),
        };
        let mut properties: BTreeMap<String, String> = saved
            .as_ref()
            .map(|s| s.properties.clone())
            .unwrap_or_default();
        properties.extend(req.env.clone());
        match (req.instances, req.min, req.max) {
            (Some(n), None, None) => (settings.min, settings.max) = (n, n),
            (None, min, max) => {
                if let Some(min) = min {
                    settings.min = min;
                    settings.max = settings.max.max(min);
                }
                if let Some(max) = max {
                    settings.max = max;
                }
            }
            (Some(_), _, _) => {
                return Err(ControlError::Invalid(
                    "give --instances or --min/--max, not both".into(),
                ))
            }
        }
        if let Some(t) = req.instance_type {
            settings.instance_type = t;
        }
        if let Some(sticky) = &req.sticky {
            settings.set("sticky", sticky).map_err(setting)?;
        }
        for (key, value) in &req.settings {
            settings.set(key, value).map_err(setting)?;
        }
        settings.validate(MAX_INSTANCES).map_err(setting)?;
        self.check_instance_type(settings.instance_type).await?;
        for key in properties.keys() {
            check_property_key(key)?;
        }
        let version = self.ready_version(&app, &label, tier).await?;
        let new = NewEnvironment {
            name: name.to_string(),
            app_id: app_row.id,
            version_id: version.id,
            version_label: label.to_string(),
            tier,
            mode,
            cname: cname.to_string(),
            bootstrap,
            desired: i64::from(settings.min),
            settings,
            properties,
            started_by: by.map(str::to_string),
        };
        let (env, _op) = self.store().create_environment(&new).await?;
        tracing::info!(env = %env.name, app = %env.app, version = %env.version, instances = env.desired, "environment created");
        self.wake();
        self.environment_view(&env).await
    }

    pub async fn deploy(
        &self,
        env_name: &str,
        req: &api::DeployRequest,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let label = VersionLabel::parse(&req.version)?;
        let app = AppName::parse(&env.app)?;
        let transition = self.begin(&env, EnvOp::Deploy).await?;
        let version = self.ready_version(&app, &label, env.tier).await?;
        let mut settings = env.settings();
        let before = settings.clone();
        if let Some(p) = req.canary_percent {
            settings
                .set("canary_percent", &p.to_string())
                .map_err(setting)?;
        }
        if let Some(e) = &req.evaluation {
            settings.evaluation = parse_duration("evaluation", e).map_err(setting)?;
        }
        let policy = req.policy.unwrap_or(settings.policy);
        let batch = match &req.batch {
            Some(b) => BatchSize::parse(b).map_err(setting)?,
            None => settings.batch,
        };
        let who = by.unwrap_or("system");
        let message = format!(
            "deploying version {} over {} ({policy}, batch {batch}, by {who})",
            version.label, env.version
        );
        self.store()
            .begin_operation(
                &env,
                &transition,
                &OperationStart {
                    new_version: Some((version.id, &version.label)),
                    new_settings: (settings != before).then_some(&settings),
                    policy: Some(policy),
                    batch: Some(batch),
                    totals: self.totals(&env.name),
                    started_by: by,
                    message: &message,
                    ..Default::default()
                },
            )
            .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    pub async fn terminate(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let transition = self.begin(&env, EnvOp::Terminate).await?;
        let who = by.unwrap_or("system");
        let message = format!("terminateEnvironment is starting (by {who})");
        let start = OperationStart {
            started_by: by,
            message: &message,
            ..Default::default()
        };
        self.store()
            .begin_operation(&env, &transition, &start)
            .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    /// Stops the running deployment and rolls back to what ran before it.
    pub async fn abort(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let running = self
            .store()
            .current_operation(env.id)
            .await?
            .filter(OperationRow::is_running);
        let nothing = || {
            ControlError::Conflict(format!(
                "no deployment of '{}' is running; nothing to abort",
                env.name
            ))
        };
        let Some(op) = running.filter(|o| o.kind.abortable()) else {
            return Err(nothing());
        };
        let rollback = env.status.begin(EnvOp::Abort).map_err(|_| nothing())?;
        let who = by.unwrap_or("system");
        let message = format!("{} {} aborted by {who}", op.kind, op.id);
        if self
            .store()
            .fail_and_roll_back(&env, &op, &rollback, self.totals(&env.name), &message)
            .await?
            .is_none()
        {
            return Err(ControlError::Conflict(format!(
                "{} {} finished before it could be aborted",
                op.kind, op.id
            )));
        }
        self.balancer().set_split(&env.name, None);
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    /// Every setting and property, as `reader` may see them (values masked for viewers).
    pub async fn get_config(&self, env_name: &str, reader: Role) -> Result<api::ConfigView> {
        let env = self.live_env(env_name).await?;
        Ok(api::ConfigView {
            environment: env.name.clone(),
            settings: env.settings.to_map(),
            properties: properties_for(&env, reader),
        })
    }

    /// Changes settings. Those an instance carries (its type) roll out with the
    /// environment's policy; the others (health checks, stickiness, …) apply at once.
    pub async fn configure(
        &self,
        env_name: &str,
        update: &api::ConfigUpdate,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        if update.set.is_empty() {
            return Err(ControlError::Invalid(
                "nothing to change: give KEY=VALUE settings".into(),
            ));
        }
        let before = env.settings();
        let mut settings = before.clone();
        for (key, value) in &update.set {
            settings.set(key, value).map_err(setting)?;
        }
        settings.validate(MAX_INSTANCES).map_err(setting)?;
        self.check_instance_type(settings.instance_type).await?;
        let desired = env
            .desired
            .clamp(i64::from(settings.min), i64::from(settings.max));
        let who = by.unwrap_or("system");
        let changes: Vec<String> = update
            .set
            .keys()
            .filter_map(|k| {
                let (old, new) = (before.get(k).ok()?, settings.get(k).ok()?);
                (old != new).then(|| format!("{k}: {old} → {new}"))
            })
            .collect();
        if changes.is_empty() {
            return self.environment_view(&env).await;
        }
        let message = format!("configuration changed by {who}: {}", changes.join(", "));
        if before.needs_new_instances(&settings) {
            let transition = self.begin(&env, EnvOp::Configure).await?;
            self.store()
                .begin_operation(
                    &env,
                    &transition,
                    &OperationStart {
                        new_settings: Some(&settings),
                        new_desired: Some(desired),
                        policy: Some(settings.policy),
                        batch: Some(settings.batch),
                        totals: self.totals(&env.name),
                        started_by: by,
                        message: &format!("{message}; replacing instances ({})", settings.policy),
                        ..Default::default()
                    },
                )
                .await?;
        } else {
            let transition = self.begin(&env, EnvOp::ConfigureNow).await?;
            self.store()
                .apply_settings(&env, &transition, &settings, by, &message)
                .await?;
            if desired != env.desired {
                self.store()
                    .set_desired(
                        &env,
                        &transition,
                        desired,
                        &format!(
                            "desired instances {} → {desired} (min {}, max {})",
                            env.desired, settings.min, settings.max
                        ),
                    )
                    .await?;
            }
        }
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    /// `sprout scale ENV N` (min = max = N) or `--min A --max B`: bounds for the autoscaler,
    /// the desired count kept within them. Instances start or drain at once.
    pub async fn scale(
        &self,
        env_name: &str,
        req: &api::ScaleRequest,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        let transition = self.begin(&env, EnvOp::Scale).await?;
        self.scale_to(
            &env,
            &transition,
            req,
            req.instances,
            by.unwrap_or("system"),
        )
        .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    pub(crate) async fn scale_to(
        &self,
        env: &EnvRow,
        transition: &Transition,
        req: &api::ScaleRequest,
        desired: Option<u32>,
        who: &str,
    ) -> Result<()> {
        let before = env.settings();
        let mut settings = before.clone();
        match (req.instances, req.min, req.max) {
            (None, None, None) if desired.is_none() => {
                return Err(ControlError::Invalid(
                    "give an instance count, or --min and/or --max".into(),
                ))
            }
            (Some(n), None, None) => (settings.min, settings.max) = (n, n),
            (Some(_), _, _) => {
                return Err(ControlError::Invalid(
                    "give an instance count or --min/--max, not both".into(),
                ))
            }
            (None, min, max) => {
                if let Some(min) = min {
                    settings.min = min;
                }
                if let Some(max) = max {
                    settings.max = max;
                }
            }
        }
        settings.validate(MAX_INSTANCES).map_err(setting)?;
        let desired = desired
            .map(i64::from)
            .unwrap_or(env.desired)
            .clamp(i64::from(settings.min), i64::from(settings.max));
        if settings != before {
            let message = format!(
                "scaling bounds changed by {who}: min {} → {}, max {} → {}",
                before.min, settings.min, before.max, settings.max
            );
            self.store()
                .apply_settings(env, transition, &settings, Some(who), &message)
                .await?;
        }
        if desired != env.desired {
            let message = format!("desired instances {} → {desired} (by {who})", env.desired);
            self.store()
                .set_desired(env, transition, desired, &message)
                .await?;
        }
        self.wake();
        Ok(())
    }

    /// Sets and removes environment properties: new instances get them, rolled out with the
    /// environment's policy.
    pub async fn set_properties(
        &self,
        env_name: &str,
        req: &api::SetProperties,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.live_env(env_name).await?;
        if req.set.is_empty()
            && req.unset.is_empty()
            && req.public.is_empty()
            && req.secret.is_empty()
        {
            return Err(ControlError::Invalid(
                "nothing to change: give KEY=VALUE properties".into(),
            ));
        }
        for key in req
            .set
            .keys()
            .chain(&req.unset)
            .chain(&req.public)
            .chain(&req.secret)
        {
            check_property_key(key)?;
        }
        if let Some(key) = req.public.iter().find(|k| req.secret.contains(k)) {
            return Err(ControlError::Invalid(format!(
                "property '{key}' cannot be made both public and secret"
            )));
        }
        let mut properties = env.properties();
        for key in &req.unset {
            properties.remove(key);
        }
        properties.extend(req.set.clone());
        let before = env.settings();
        let mut settings = before.clone();
        for key in &req.public {
            if !properties.contains_key(key) {
                return Err(ControlError::Invalid(format!(
                    "no property '{key}' to make public; set it first"
                )));
            }
            settings.public_properties.insert(key.clone());
        }
        for key in &req.secret {
            settings.public_properties.remove(key);
        }
        // A removed property is secret again if it comes back.
        settings
            .public_properties
            .retain(|k| properties.contains_key(k));
        let who = by.unwrap_or("system");
        if properties == env.properties() {
            if settings != before {
                let message = format!(
                    "properties shown to viewers changed by {who}: {}",
                    list_or_none(&settings.public_properties)
                );
                let transition = self.begin(&env, EnvOp::ConfigureNow).await?;
                self.store()
                    .apply_settings(&env, &transition, &settings, by, &message)
                    .await?;
                return self
                    .environment_view(&self.store().environment_by_id(env.id).await?)
                    .await;
            }
            return self.environment_view(&env).await;
        }
        let transition = self.begin(&env, EnvOp::Configure).await?;
        let mut names: Vec<String> = req.set.keys().cloned().collect();
        names.extend(req.unset.iter().map(|k| format!("-{k}")));
        let message = format!(
            "properties changed by {who}: {}; replacing instances ({})",
            names.join(", "),
            settings.policy
        );
        self.store()
            .begin_operation(
                &env,
                &transition,
                &OperationStart {
                    new_properties: Some(&properties),
                    new_settings: (settings != before).then_some(&settings),
                    policy: Some(settings.policy),
                    batch: Some(settings.batch),
                    totals: self.totals(&env.name),
                    started_by: by,
                    message: &message,
                    ..Default::default()
                },
            )
            .await?;
        self.wake();
        self.environment_view(&self.store().environment_by_id(env.id).await?)
            .await
    }

    pub async fn save_config(
        &self,
        env_name: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<api::SavedConfig> {
        let env = self.live_env(env_name).await?;
        let config_name = sprout_core::EnvName::parse(name).map_err(|e| {
            ControlError::Invalid(
                e.to_string()
                    .replace("environment name", "configuration name"),
            )
        })?;
        let settings = env.settings();
        let row = self
            .store()
            .save_config(&NewSavedConfig {
                app_id: env.app_id,
                name: config_name.as_str(),
                settings: &settings,
                properties: &env.properties,
                tier: env.tier,
                mode: env.mode,
                bootstrap: env.bootstrap,
                by,
            })
            .await?;
        self.store()
            .add_event(
                env.id,
                sprout_core::Severity::Info,
                &format!(
                    "configuration saved as '{}' (revision {})",
                    row.name, row.revision
                ),
            )
            .await?;
        Ok(api::SavedConfig {
            app: env.app.clone(),
            name: row.name,
            revision: row.revision,
            settings: settings.to_map(),
            created_at: row.created_at,
        })
    }

    /// Exchanges two web environments' CNAMEs (blue/green), atomically in the balancer.
    pub async fn swap(&self, a: &str, b: &str, by: Option<&str>) -> Result<()> {
        let env_a = self.live_env(a).await?;
        let env_b = self.live_env(b).await?;
        if env_a.id == env_b.id {
            return Err(ControlError::Invalid(
                "swap needs two different environments".into(),
            ));
        }
        for env in [&env_a, &env_b] {
            if env.tier != Tier::Web {
                return Err(ControlError::Invalid(format!(
                    "'{}' is a worker environment: it has no CNAME to swap",
                    env.name
                )));
            }
        }
        let transition = self.begin(&env_a, EnvOp::Swap).await?;
        let other = self.begin(&env_b, EnvOp::Swap).await?;
        if other.from != transition.from {
            return Err(ControlError::Conflict(format!(
                "'{}' is {} and '{}' is {}; swap them when both are Ready",
                env_a.name, transition.from, env_b.name, other.from
            )));
        }
        self.store()
            .swap_cnames(&env_a, &env_b, &transition, by)
            .await?;
        let env_a = self.store().environment_by_id(env_a.id).await?;
        let env_b = self.store().environment_by_id(env_b.id).await?;
        let mut routes = Vec::new();
        for env in [&env_a, &env_b] {
            let containers = self.env_containers(env).await?;
            let all: Vec<&sprout_runtime::ContainerInfo> = containers.iter().collect();
            routes.push(self.route_for(env, true, &all));
        }
        self.balancer().set_routes(routes);
        tracing::info!(a = %env_a.name, b = %env_b.name, "CNAMEs swapped");
        Ok(())
    }

    pub async fn deployments(&self, env_name: &str) -> Result<Vec<api::Deployment>> {
        let env = self.any_env(env_name).await?;
        let gaps = self.store().count_gaps().await?;
        Ok(self
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
        let env = self.any_env(name).await?;
        let operation = self.store().current_operation(env.id).await?;
        let environment = self.environment_view_with(&env, operation.as_ref(), reader)?;
        let instances = self.instance_views(&env).await?;
        Ok(api::EnvironmentDetail {
            environment,
            instances,
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
            self.store()
                .get_app(app.as_str())
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        }
        let rows = self.store().list_environments(app, false).await?;
        let operations = self.store().latest_operations().await?;
        rows.iter()
            .map(|env| self.environment_view_with(env, operations.get(&env.id), reader))
            .collect()
    }

    pub async fn events(&self, name: &str, after: i64, limit: i64) -> Result<Vec<api::Event>> {
        let env = self.any_env(name).await?;
        let rows = self
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
        let env = self.live_env(name).await?;
        let containers = self.env_containers(&env).await?;
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

    pub(crate) async fn env_containers(
        &self,
        env: &EnvRow,
    ) -> Result<Vec<sprout_runtime::ContainerInfo>> {
        let env_id = env.id.to_string();
        self.list_containers(&[
            ("sprout.server", self.server_id()),
            ("sprout.env-id", &env_id),
        ])
        .await
    }

    /// Every instance of the balancer's route, judged by the health rules.
    pub(crate) fn judge_instances(&self, env: &EnvRow) -> HashMap<String, InstanceJudgement> {
        let metrics = self.balancer().metrics(&env.name);
        let mut per_backend: HashMap<String, sprout_proxy::BackendMetrics> = metrics
            .map(|m| m.backends.into_iter().map(|b| (b.id.clone(), b)).collect())
            .unwrap_or_default();
        self.balancer()
            .backends(&env.name)
            .into_iter()
            .map(|b| {
                let m = per_backend.remove(&b.id);
                let check = match b.state {
                    BackendState::Pending => CheckState::Pending,
                    BackendState::Healthy => CheckState::Healthy,
                    BackendState::Unhealthy => CheckState::Unhealthy,
                    BackendState::Draining => CheckState::Draining,
                };
                let window = m
                    .as_ref()
                    .map(|m| Window {
                        count: m.count,
                        status_5xx: m.status_5xx,
                        p99_ms: m.p99_ms,
                    })
                    .unwrap_or_default();
                let mut verdict = health::instance_health(check, &window);
                if check == CheckState::Unhealthy {
                    if let Some(why) = b
                        .last_error
                        .clone()
                        .or(b.last_status.map(|s| format!("health check answered {s}")))
                    {
                        verdict.causes.push(why);
                    }
                }
                (
                    b.id.clone(),
                    InstanceJudgement {
                        verdict,
                        metrics: m,
                    },
                )
            })
            .collect()
    }

    /// The environment's health by the rules in `sprout_core::health`.
    pub(crate) fn judge_environment(&self, env: &EnvRow, status: EnvStatus) -> Verdict {
        let judged = self.judge_instances(env);
        let states: Vec<HealthStatus> = judged.values().map(|j| j.verdict.status).collect();
        let window = self
            .balancer()
            .metrics(&env.name)
            .map(|m| Window {
                count: m.count,
                status_5xx: m.status_5xx,
                p99_ms: m.p99_ms,
            })
            .unwrap_or_default();
        health::environment_health(
            status,
            u32::try_from(env.desired).unwrap_or(0),
            &states,
            &window,
        )
    }

    pub async fn health_report(&self, name: &str) -> Result<api::HealthReport> {
        let env = self.live_env(name).await?;
        let status = env.status;
        let verdict = self.judge_environment(&env, status);
        let judged = self.judge_instances(&env);
        let rows: HashMap<String, sprout_store::InstanceRow> = self
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let now = chrono::Utc::now();
        let mut instances: Vec<api::InstanceHealth> = self
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
            metrics: metrics_view(self.balancer().metrics(&env.name).as_ref()),
            instances,
        })
    }

    pub(crate) async fn instance_views(&self, env: &EnvRow) -> Result<Vec<api::Instance>> {
        let containers = self.env_containers(env).await.unwrap_or_default();
        let rows: HashMap<String, sprout_store::InstanceRow> = self
            .store()
            .live_instances(env.id)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let judged = self.judge_instances(env);
        let mut out: Vec<api::Instance> = containers
            .iter()
            .map(|c| {
                let id = c.label("sprout.instance").to_string();
                let row = rows.get(&id);
                api::Instance {
                    healthy: c.running && self.balancer().is_healthy(&env.name, &id),
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
        let operation = self.store().current_operation(env.id).await?;
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
        let port = self.config().balancer_port;
        let url = (tier == Tier::Web).then(|| match port {
            80 => format!("http://{}/", self.host_of(&env.cname)),
            p => format!("http://{}:{p}/", self.host_of(&env.cname)),
        });
        let verdict = self.judge_environment(env, status);
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

    /// Closes the running operation if the environment is still where this pass saw it.
    pub(crate) async fn finish(
        &self,
        env: &EnvRow,
        from: EnvStatus,
        operation: Option<i64>,
        status: EnvStatus,
        outcome: OperationOutcome,
        message: &str,
    ) -> Result<()> {
        let end = OperationEnd {
            from,
            operation,
            to: status,
            outcome,
            totals: self.totals(&env.name),
            message,
        };
        if self.store().finish_operation(env, &end).await? {
            tracing::info!(env = %env.name, %status, ?outcome, message, "operation finished");
        } else {
            tracing::debug!(env = %env.name, "state moved on before the operation could be closed");
        }
        Ok(())
    }
}

/// An environment's properties as `reader` may see them: values not marked public are masked
/// for viewers.
fn properties_for(env: &EnvRow, reader: Role) -> BTreeMap<String, String> {
    let mut properties = env.properties();
    sprout_core::properties::redact(&mut properties, &env.settings.public_properties, reader);
    properties
}

fn list_or_none(keys: &std::collections::BTreeSet<String>) -> String {
    if keys.is_empty() {
        "none".into()
    } else {
        keys.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}
