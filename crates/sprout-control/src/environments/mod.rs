//! Environment operations as users ask for them: checked against the domain rules, then
//! written to the store in one transaction; the reconciler does the rest. One file per job:
//! `create`, `deploy` (and abort), `configure` (settings, properties, scale), `swap`,
//! `terminate`, `restart`, and the read-only `views`, `operation` and `observe`.

use crate::error::{ControlError, Result};
use crate::reconcile::Reconciler;
use crate::scaling::Scaling;
use crate::shared::Shared;
use sprout_core::auth::Role;
use sprout_core::{
    AppName, EnvOp, InstanceType, LifecycleError, Tier, Transition, VersionLabel, VersionStatus,
};
use sprout_store::{EnvRow, EnvironmentStore, OperationRow, VersionRow};
use std::collections::BTreeMap;
use std::sync::Arc;

mod attached;
mod configure;
mod create;
mod deploy;
mod observe;
mod operation;
mod restart;
mod swap;
mod terminate;
mod views;

/// CPU (in cores, 1.0 = one full core) and memory (bytes) of one instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// The operations users ask of environments, and what they read of them.
#[derive(Clone)]
pub(crate) struct Environments {
    shared: Arc<Shared>,
    /// Restarts drain instances the reconciler's way; a swap routes with its routes.
    reconciler: Reconciler,
    /// `sprout scale` changes bounds the way the autoscaler and scheduled actions do.
    scaling: Scaling,
}

impl Environments {
    pub(crate) fn new(shared: Arc<Shared>, reconciler: Reconciler, scaling: Scaling) -> Self {
        Self {
            shared,
            reconciler,
            scaling,
        }
    }

    /// Refuses an instance type bigger than the smallest zone engine's host: Docker would
    /// refuse every container of it, and the environment would never settle. An engine that
    /// does not answer is not held against the type (its zone is failed over anyway).
    pub(crate) async fn check_instance_type(&self, wanted: InstanceType) -> Result<()> {
        let mut smallest: Option<u32> = None;
        for zone in &self.shared.config().zones {
            if let Ok(cpus) = self.shared.runtime_for(zone).cpus().await {
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

    pub(crate) async fn ready_version(
        &self,
        app: &AppName,
        label: &VersionLabel,
        tier: Tier,
    ) -> Result<VersionRow> {
        let version = self
            .shared
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

    /// The lifecycle's transition for `op`, or why the environment cannot start it now
    /// (409), naming what runs.
    pub(crate) async fn begin(&self, env: &EnvRow, op: EnvOp) -> Result<Transition> {
        let status = env.status;
        match status.begin(op) {
            Ok(t) => Ok(t),
            Err(LifecycleError::Busy { .. }) => {
                let running = self
                    .shared
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
}

fn check_property_key(key: &str) -> Result<()> {
    sprout_core::properties::check_key(key).map_err(|e| ControlError::Invalid(e.to_string()))
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
