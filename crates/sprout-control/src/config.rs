//! Settings the control plane runs with.

use sprout_core::bundle::BundleLimits;
use std::path::PathBuf;
use std::time::Duration;

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
