//! Changing an environment: its settings (rolled out when instances carry them), its
//! properties, its scaling bounds; reading and saving its configuration.

use super::{check_property_key, list_or_none, properties_for, Environments};
use crate::error::{setting, ControlError, Result};
use crate::scaling::MAX_INSTANCES;
use sprout_core::api;
use sprout_core::auth::Role;
use sprout_core::EnvOp;
use sprout_store::{EnvironmentStore, NewSavedConfig, OperationStart};

impl Environments {
    /// Every setting and property, as `reader` may see them (values masked for viewers).
    pub async fn get_config(&self, env_name: &str, reader: Role) -> Result<api::ConfigView> {
        let env = self.shared.live_env(env_name).await?;
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
        let env = self.shared.live_env(env_name).await?;
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
            self.shared
                .store()
                .begin_operation(
                    &env,
                    &transition,
                    &OperationStart {
                        new_settings: Some(&settings),
                        new_desired: Some(desired),
                        policy: Some(settings.policy),
                        batch: Some(settings.batch),
                        totals: self.shared.totals(&env.name),
                        started_by: by,
                        message: &format!("{message}; replacing instances ({})", settings.policy),
                        ..Default::default()
                    },
                )
                .await?;
        } else {
            let transition = self.begin(&env, EnvOp::ConfigureNow).await?;
            self.shared
                .store()
                .apply_settings(&env, &transition, &settings, by, &message)
                .await?;
            if desired != env.desired {
                self.shared
                    .store()
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
        self.shared.wake();
        self.environment_view(&self.shared.store().environment_by_id(env.id).await?)
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
        let env = self.shared.live_env(env_name).await?;
        let transition = self.begin(&env, EnvOp::Scale).await?;
        self.scaling
            .scale_to(
                &env,
                &transition,
                req,
                req.instances,
                by.unwrap_or("system"),
            )
            .await?;
        self.shared.wake();
        self.environment_view(&self.shared.store().environment_by_id(env.id).await?)
            .await
    }

    /// Sets and removes environment properties: new instances get them, rolled out with the
    /// environment's policy.
    pub async fn set_properties(
        &self,
        env_name: &str,
        req: &api::SetProperties,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.shared.live_env(env_name).await?;
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
                self.shared
                    .store()
                    .apply_settings(&env, &transition, &settings, by, &message)
                    .await?;
                return self
                    .environment_view(&self.shared.store().environment_by_id(env.id).await?)
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
        self.shared
            .store()
            .begin_operation(
                &env,
                &transition,
                &OperationStart {
                    new_properties: Some(&properties),
                    new_settings: (settings != before).then_some(&settings),
                    policy: Some(settings.policy),
                    batch: Some(settings.batch),
                    totals: self.shared.totals(&env.name),
                    started_by: by,
                    message: &message,
                    ..Default::default()
                },
            )
            .await?;
        self.shared.wake();
        self.environment_view(&self.shared.store().environment_by_id(env.id).await?)
            .await
    }

    pub async fn save_config(
        &self,
        env_name: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<api::SavedConfig> {
        let env = self.shared.live_env(env_name).await?;
        let config_name = sprout_core::EnvName::parse(name).map_err(|e| {
            ControlError::Invalid(
                e.to_string()
                    .replace("environment name", "configuration name"),
            )
        })?;
        let settings = env.settings();
        let row = self
            .shared
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
        self.shared
            .store()
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
}
