//! Creating an environment: the request, a saved configuration and the mode's defaults
//! make its settings; the store records it with its launch operation.

use super::{check_property_key, Environments};
use crate::error::{setting, ControlError, Result};
use crate::scaling::MAX_INSTANCES;
use sprout_core::api;
use sprout_core::{AppName, Bootstrap, Cname, EnvName, EnvSettings, Mode, Tier, VersionLabel};
use sprout_store::{EnvironmentStore, NewEnvironment};
use std::collections::BTreeMap;

impl Environments {
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
            .shared
            .store()
            .get_app(app.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        let saved = match &req.config {
            Some(config) => Some(
                self.shared
                    .store()
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
        let (env, _op) = self.shared.store().create_environment(&new).await?;
        tracing::info!(env = %env.name, app = %env.app, version = %env.version, instances = env.desired, "environment created");
        self.shared.wake();
        self.environment_view(&env).await
    }
}
