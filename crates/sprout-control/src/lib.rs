//! The loops that turn desired state (the store) into actual state (Docker and the balancer),
//! and the operations users ask for, checked against the domain rules before anything changes.

mod apps;
mod bundle_io;
mod cron;
mod dispatch;
mod environments;
pub mod queues;
mod reconcile;
mod versions;

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
    pub limits: BundleLimits,
    /// How long a launch or deploy may take before it is declared failed (and rolled back).
    pub operation_timeout: Duration,
    /// Port instances listen on (`$PORT`).
    pub instance_port: u16,
    /// Time a stopping instance gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    pub reconcile_interval: Duration,
    /// Where the SQS-compatible endpoint listens (None: not running).
    pub sqs_addr: Option<std::net::SocketAddr>,
}

impl ControlConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            domain: "localhost".into(),
            balancer_port: 8000,
            zones: vec!["a".into(), "b".into()],
            limits: BundleLimits::default(),
            operation_timeout: Duration::from_secs(300),
            instance_port: 8080,
            stop_grace: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(1),
            sqs_addr: None,
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
    #[error("store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ControlError::Conflict(m),
            StoreError::NotFound(m) => ControlError::NotFound(m),
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
    balancer: Arc<Balancer>,
    config: ControlConfig,
    server_id: String,
    /// Wakes the reconciler when desired state changed, so it need not wait for its tick.
    wake: Notify,
    /// Per environment: no new start before this instant (after a failed start).
    start_backoff: std::sync::Mutex<std::collections::HashMap<i64, std::time::Instant>>,
    /// Per running operation: instances of the target version that exited during it.
    exits: std::sync::Mutex<std::collections::HashMap<i64, u32>>,
    /// Wakes long polls and the dispatcher when messages arrive.
    queues: queues::QueueSignals,
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
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                balancer,
                config,
                server_id,
                wake: Notify::new(),
                start_backoff: Default::default(),
                exits: Default::default(),
                queues: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
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
