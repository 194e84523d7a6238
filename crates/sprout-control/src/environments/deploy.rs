//! Deploying a version (with the environment's policy or the one asked for), and aborting
//! a running deployment (it rolls back).

use super::Environments;
use crate::error::{setting, ControlError, Result};
use sprout_core::api;
use sprout_core::settings::parse_duration;
use sprout_core::{AppName, BatchSize, EnvOp, VersionLabel};
use sprout_store::{EnvironmentStore, OperationRow, OperationStart};

impl Environments {
    pub async fn deploy(
        &self,
        env_name: &str,
        req: &api::DeployRequest,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        let env = self.shared.live_env(env_name).await?;
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
        self.shared
            .store()
            .begin_operation(
                &env,
                &transition,
                &OperationStart {
                    new_version: Some((version.id, &version.label)),
                    new_settings: (settings != before).then_some(&settings),
                    policy: Some(policy),
                    batch: Some(batch),
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

    /// Stops the running deployment and rolls back to what ran before it.
    pub async fn abort(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        let env = self.shared.live_env(env_name).await?;
        let running = self
            .shared
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
            .shared
            .store()
            .fail_and_roll_back(
                &env,
                &op,
                &rollback,
                self.shared.totals(&env.name),
                &message,
            )
            .await?
            .is_none()
        {
            return Err(ControlError::Conflict(format!(
                "{} {} finished before it could be aborted",
                op.kind, op.id
            )));
        }
        self.shared.balancer().set_split(&env.name, None);
        self.shared.wake();
        self.environment_view(&self.shared.store().environment_by_id(env.id).await?)
            .await
    }
}
