//! The loops that turn desired state (the store) into actual state (Docker and the balancer),
//! and the operations users ask for, checked against the domain rules before anything changes.

mod apps;
mod autoscale;
mod bundle_io;
mod cron;
mod dataplane;
mod dispatch;
mod engines;
mod environments;
pub mod history;
mod observe;
mod operations;
pub mod queues;
mod reconcile;
mod resources;
mod restart;
mod schedule;
mod versions;
mod zones;

use sprout_core::bundle::{BundleError, BundleLimits};
use sprout_proxy::Balancer;
use sprout_runtime::Runtime;
use sprout_store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub use bundle_io::{unpack_bundle, UnpackedBundle};
pub use environments::instance_labels;
pub use observe::Usage;
pub use versions::IncomingBundle;

/// Settings the control plane runs with.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    /// Host names are `<cname>.<domain>`.
    pub domain: String,
    /// Port the balancer listens on, for the URLs shown to users.
    pub balancer_port: u16,
    pub zones: Vec<String>,
    /// Zones on their own Docker engine (`unix:///…` or `tcp://…`); the others use the
    /// local engine.
    pub zone_endpoints: std::collections::BTreeMap<String, String>,
    pub limits: BundleLimits,
    /// What a version's build container may use and how long it may run.
    pub build_limits: sprout_core::model::BuildLimits,
    /// How long any operation may take before it is declared failed (a deploy rolls back);
    /// an environment's shorter `command_timeout` wins.
    pub operation_timeout: Duration,
    /// Port instances listen on (`$PORT`).
    pub instance_port: u16,
    /// Time a stopping instance gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    pub reconcile_interval: Duration,
    /// Where the SQS-compatible endpoint listens (None: not running).
    pub sqs_addr: Option<std::net::SocketAddr>,
    /// What each application's queues may hold.
    pub queue_quota: sprout_core::queue::QueueQuota,
}

impl ControlConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            domain: "localhost".into(),
            balancer_port: 8000,
            zones: vec!["a".into(), "b".into()],
            zone_endpoints: Default::default(),
            limits: BundleLimits::default(),
            build_limits: Default::default(),
            operation_timeout: Duration::from_secs(300),
            instance_port: 8080,
            stop_grace: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(1),
            sqs_addr: None,
            queue_quota: Default::default(),
        }
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the bundle is over the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Quota(#[from] sprout_core::queue::QuotaError),
    /// A stored record that does not parse, named (the control plane leaves it alone).
    #[error("{0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<sprout_core::LifecycleError> for ControlError {
    fn from(e: sprout_core::LifecycleError) -> Self {
        ControlError::Conflict(e.to_string())
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ControlError::Conflict(m),
            StoreError::NotFound(m) => ControlError::NotFound(m),
            e @ StoreError::Corrupt { .. } => ControlError::Corrupt(e.to_string()),
            StoreError::Quota(q) => ControlError::Quota(q),
            other => ControlError::Store(other),
        }
    }
}

impl From<sprout_core::NameError> for ControlError {
    fn from(e: sprout_core::NameError) -> Self {
        ControlError::Invalid(e.to_string())
    }
}

impl From<std::io::Error> for ControlError {
    fn from(e: std::io::Error) -> Self {
        ControlError::Internal(format!("i/o: {e}"))
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// The control plane: shared by the API handlers and the loops.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    runtime: Runtime,
    /// Runtimes of zones on their own engine.
    zone_runtimes: std::collections::HashMap<String, Runtime>,
    /// Every distinct engine once (the local one first), for listing containers.
    engines: Vec<Runtime>,
    /// Per environment: the autoscaler's samples and last decision.
    scaling: std::sync::Mutex<std::collections::HashMap<i64, autoscale::ScaleState>>,
    /// Scheduled actions' jobs, by (environment id, action name).
    schedules: tokio::sync::Mutex<schedule::Schedules>,
    balancer: Arc<Balancer>,
    config: ControlConfig,
    server_id: String,
    /// Wakes the reconciler when desired state changed, so it need not wait for its tick.
    wake: Notify,
    /// Per environment: no new start before this instant (after a failed start).
    start_backoff: std::sync::Mutex<std::collections::HashMap<i64, std::time::Instant>>,
    /// Environments whose row cannot be read, already reported (event once).
    corrupt: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Instances being drained and removed by a background task.
    removing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Held while an upload moves its bundle into place and records its version, so two
    /// uploads of one label cannot both get that far (see `upload_version`).
    placing: tokio::sync::Mutex<()>,
    /// Wakes long polls and the dispatcher when messages arrive.
    queues: queues::QueueSignals,
    /// `engine_key` of each of `engines`.
    engine_keys: Vec<String>,
    /// Which engines answer (see `engines`).
    reach: std::sync::Mutex<engines::Reach>,
}

impl Control {
    pub async fn new(
        store: Store,
        runtime: Runtime,
        balancer: Arc<Balancer>,
        config: ControlConfig,
    ) -> Result<Self> {
        let server_id = store.server_id().await?;
        tokio::fs::create_dir_all(config.bundles_dir().join("tmp")).await?;
        let mut zone_runtimes = std::collections::HashMap::new();
        let mut engines = vec![runtime.clone()];
        let mut engine_keys = vec!["local".to_string()];
        let mut by_endpoint: std::collections::HashMap<String, Runtime> =
            std::collections::HashMap::new();
        for (zone, endpoint) in &config.zone_endpoints {
            let rt = match by_endpoint.get(endpoint) {
                Some(rt) => rt.clone(),
                None => {
                    let rt = Runtime::connect(endpoint).await.map_err(|e| {
                        ControlError::Unavailable(format!(
                            "zone {zone}: cannot reach {endpoint}: {e}"
                        ))
                    })?;
                    by_endpoint.insert(endpoint.clone(), rt.clone());
                    engines.push(rt.clone());
                    engine_keys.push(endpoint.clone());
                    rt
                }
            };
            zone_runtimes.insert(zone.clone(), rt);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                zone_runtimes,
                engines,
                scaling: Default::default(),
                schedules: Default::default(),
                balancer,
                config,
                server_id,
                wake: Notify::new(),
                start_backoff: Default::default(),
                removing: Default::default(),
                corrupt: Default::default(),
                placing: Default::default(),
                queues: Default::default(),
                engine_keys,
                reach: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The local engine: builds, platform images, and every zone without its own engine.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The engine a zone's instances run on.
    pub fn runtime_for(&self, zone: &str) -> &Runtime {
        self.inner
            .zone_runtimes
            .get(zone)
            .unwrap_or(&self.inner.runtime)
    }

    /// Identifies a zone's engine: zones with the same key share one engine.
    pub(crate) fn engine_key<'a>(&'a self, zone: &'a str) -> &'a str {
        self.inner
            .config
            .zone_endpoints
            .get(zone)
            .map(String::as_str)
            .unwrap_or("local")
    }

    /// Containers with these labels on every engine. An engine that does not answer is
    /// skipped (and logged): its zone's instances are then replaced elsewhere.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<sprout_runtime::ContainerInfo>> {
        let mut all = Vec::new();
        for (i, engine) in self.inner.engines.iter().enumerate() {
            let key = self.inner.engine_keys.get(i).map(String::as_str);
            match engine.list_instances(labels).await {
                Ok(found) => {
                    all.extend(found);
                    if let Some(key) = key {
                        self.engine_answered(key, true);
                    }
                }
                Err(e) => {
                    if let Some(key) = key {
                        self.engine_answered(key, false);
                    }
                    if i == 0 {
                        return Err(ControlError::Unavailable(format!("docker: {e}")));
                    }
                    tracing::debug!(error = %e, "a zone's Docker engine does not answer");
                }
            }
        }
        Ok(all)
    }
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.inner.balancer
    }
    pub fn config(&self) -> &ControlConfig {
        &self.inner.config
    }
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// Asks the reconciler for a pass now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
}
