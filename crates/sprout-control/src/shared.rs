//! The handles every component of the control plane shares: the store, the Docker engines
//! (one per zone that has its own), the balancer, the settings, and the reconciler's wake-up
//! bell. Also the few lookups every component makes (an environment by name, its containers,
//! its network). No component's private state lives here.

use crate::config::ControlConfig;
use crate::engines::Engines;
use crate::error::{ControlError, Result};
use sprout_core::plan::revision;
use sprout_core::{EnvName, EnvStatus};
use sprout_proxy::Balancer;
use sprout_runtime::{ContainerInfo, Runtime};
use sprout_store::EnvironmentStore as _;
use sprout_store::{EnvRow, InstanceRow, Store};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

pub(crate) struct Shared {
    store: Store,
    /// The Docker engines of the zones, and whether they answer.
    engines: Engines,
    balancer: Arc<Balancer>,
    config: ControlConfig,
    server_id: String,
    /// Wakes the reconciler when desired state changed, so it need not wait for its tick.
    pub(crate) wake: Notify,
}

impl Shared {
    /// Connects to every zone's engine; an engine that cannot be reached is an error.
    pub(crate) async fn connect(
        store: Store,
        runtime: Runtime,
        balancer: Arc<Balancer>,
        config: ControlConfig,
    ) -> Result<Self> {
        let server_id = store.server_id().await?;
        tokio::fs::create_dir_all(config.bundles_dir().join("tmp")).await?;
        let engines = Engines::connect(store.clone(), runtime, &config.zone_endpoints).await?;
        Ok(Self {
            store,
            engines,
            balancer,
            config,
            server_id,
            wake: Notify::new(),
        })
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The local engine: builds, platform images, and every zone without its own engine.
    pub(crate) fn runtime(&self) -> &Runtime {
        self.engines.local()
    }

    /// The engine a zone's instances run on.
    pub(crate) fn runtime_for(&self, zone: &str) -> &Runtime {
        self.engines.runtime_for(zone)
    }

    /// Every distinct engine once, the local one first.
    pub(crate) fn engines(&self) -> &[Runtime] {
        self.engines.all()
    }

    /// Identifies a zone's engine: zones with the same key share one engine.
    pub(crate) fn engine_key<'a>(&'a self, zone: &'a str) -> &'a str {
        self.engines.engine_key(zone)
    }

    /// Containers with these labels on every engine (see [`Engines::list_containers`]).
    pub(crate) async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>> {
        self.engines.list_containers(labels).await
    }

    /// Adds an event to `env` for each zone of its instances whose engine stopped answering,
    /// or answers again, since the last call.
    pub(crate) async fn note_engine_reach(
        &self,
        env: &EnvRow,
        rows: &[&InstanceRow],
    ) -> Result<()> {
        self.engines.note_engine_reach(env, rows).await
    }

    pub(crate) fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }

    pub(crate) fn config(&self) -> &ControlConfig {
        &self.config
    }

    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Asks the reconciler for a pass now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Where a version's unpacked bundle lives.
    pub(crate) fn bundle_dir(&self, sha256: &str) -> PathBuf {
        self.config.bundles_dir().join(sha256)
    }

    pub(crate) fn host_of(&self, cname: &str) -> String {
        format!("{cname}.{}", self.config.domain)
    }

    pub(crate) fn network_of(&self, env: &EnvRow) -> String {
        format!("sprout-{}-{}-{}", self.server_id, env.name, env.id)
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
        self.balancer.metrics(env).map(|m| {
            let t = m.totals;
            (
                i64::try_from(t.requests).unwrap_or(i64::MAX),
                i64::try_from(t.status_5xx).unwrap_or(i64::MAX),
            )
        })
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
        self.store
            .get_environment(name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("environment '{name}' not found")))
    }

    /// The containers of an environment, on every engine.
    pub(crate) async fn env_containers(&self, env: &EnvRow) -> Result<Vec<ContainerInfo>> {
        let env_id = env.id.to_string();
        self.list_containers(&[
            ("sprout.server", self.server_id()),
            ("sprout.env-id", &env_id),
        ])
        .await
    }
}
