//! The control plane: the loops that turn desired state (the store) into actual state
//! (Docker and the balancer), and the operations users ask for, checked against the domain
//! rules before anything changes.
//!
//! It is made of components, each owning its state and its methods, wired together here:
//! - [`Shared`](shared::Shared): the handles every component uses (store, engines, balancer,
//!   settings) and the engines' reach (`engines.rs`), zones (`zones.rs`), health (`health.rs`);
//! - `Environments` (`environments/`): the operations users ask for and what they read;
//! - `Reconciler` (`reconcile/`): desired → actual, and how operations end;
//! - `Versions` (`versions/`): applications, bundle intake and builds;
//! - `Queues` (`queues/`): worker queues, the dispatcher (sqsd) and periodic tasks (cron);
//! - `Scaling` (`scaling/`): the autoscaler and scheduled actions.
//!
//! [`Control`] is the facade the API and the binary use: its methods delegate.

mod config;
mod dataplane;
mod engines;
mod environments;
mod error;
mod health;
pub mod history;
pub mod queues;
mod reconcile;
mod resources;
mod scaling;
mod shared;
mod versions;
mod zones;

use bytes::Bytes;
use environments::Environments;
use futures_util::Stream;
use queues::Queues;
use reconcile::{InstanceVars, Reconciler};
use scaling::Scaling;
use shared::Shared;
use sprout_core::api;
use sprout_core::auth::Role;
use sprout_core::cron::CronTask;
use sprout_core::queue::{
    Credentials, DeadMessage, QueueStats, SendRequest, SendResponse, SqsdSettings,
};
use sprout_core::InstanceType;
use sprout_proxy::{Balancer, RouteSpec};
use sprout_runtime::{ContainerInfo, Runtime};
use sprout_store::{
    AccessKeyRow, AppRow, EnvRow, MessageRow, NewMessage, QueueRow, QueueSettings, Store,
    VersionRow,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use versions::Versions;

pub use config::ControlConfig;
pub use environments::Usage;
pub use error::{ControlError, Result};
pub use reconcile::instance_labels;
pub use versions::{unpack_bundle, IncomingBundle, UnpackedBundle};

/// The control plane: shared by the API handlers and the loops.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

/// The components, each with the shared handles it needs and its own state.
struct Inner {
    shared: Arc<Shared>,
    environments: Environments,
    reconciler: Reconciler,
    versions: Versions,
    queues: Queues,
    scaling: Scaling,
}

impl Control {
    pub async fn new(
        store: Store,
        runtime: Runtime,
        balancer: Arc<Balancer>,
        config: ControlConfig,
    ) -> Result<Self> {
        let shared = Arc::new(Shared::connect(store, runtime, balancer, config).await?);
        let queues = Queues::new(shared.clone());
        let scaling = Scaling::new(shared.clone(), queues.clone());
        let reconciler = Reconciler::new(shared.clone(), queues.clone());
        let environments = Environments::new(shared.clone(), reconciler.clone(), scaling.clone());
        let versions = Versions::new(shared.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                environments,
                reconciler,
                versions,
                queues,
                scaling,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        self.inner.shared.store()
    }

    /// The local engine: builds, platform images, and every zone without its own engine.
    pub fn runtime(&self) -> &Runtime {
        self.inner.shared.runtime()
    }

    /// The engine a zone's instances run on.
    pub fn runtime_for(&self, zone: &str) -> &Runtime {
        self.inner.shared.runtime_for(zone)
    }

    /// Containers with these labels on every engine. An engine that does not answer is
    /// skipped (and logged): its zone's instances are then replaced elsewhere.
    pub async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        self.inner.shared.list_containers(labels).await
    }

    pub fn balancer(&self) -> &Arc<Balancer> {
        self.inner.shared.balancer()
    }

    pub fn config(&self) -> &ControlConfig {
        self.inner.shared.config()
    }

    pub fn server_id(&self) -> &str {
        self.inner.shared.server_id()
    }

    /// Asks the reconciler for a pass now.
    pub fn wake(&self) {
        self.inner.shared.wake();
    }

    pub fn bundle_dir(&self, sha256: &str) -> PathBuf {
        self.inner.shared.bundle_dir(sha256)
    }

    // ----- the reconciler -----

    /// Runs until `shutdown`; a pass every `reconcile_interval`, or sooner when woken.
    pub async fn run_reconciler(&self, shutdown: CancellationToken) {
        tracing::info!(server = %self.server_id(), "reconciler started");
        let mut saved = None;
        loop {
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            // What a restarted server starts routing with (see `restore_routes`).
            match self.checkpoint_health(saved.as_deref()).await {
                Ok(now) => saved = Some(now),
                Err(e) => tracing::warn!(error = %e, "could not record backend health"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config().reconcile_interval) => {}
                _ = self.inner.shared.wake.notified() => {}
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over every environment.
    pub async fn reconcile_all(&self) -> Result<()> {
        self.inner.reconciler.reconcile_all(self).await
    }

    /// The balancer route of an environment (see `dataplane.rs`).
    pub(crate) fn route_for(
        &self,
        env: &EnvRow,
        live: bool,
        containers: &[&ContainerInfo],
    ) -> RouteSpec {
        self.inner.reconciler.route_for(env, live, containers)
    }

    // ----- what resources.rs and the dashboard's views use -----

    pub(crate) async fn live_env(&self, name: &str) -> Result<EnvRow> {
        self.inner.shared.live_env(name).await
    }

    pub(crate) async fn env_containers(&self, env: &EnvRow) -> Result<Vec<ContainerInfo>> {
        self.inner.shared.env_containers(env).await
    }

    pub(crate) fn network_of(&self, env: &EnvRow) -> String {
        self.inner.shared.network_of(env)
    }

    pub(crate) async fn check_instance_type(&self, wanted: InstanceType) -> Result<()> {
        self.inner.environments.check_instance_type(wanted).await
    }

    pub(crate) async fn rolling_restart(&self, env: &EnvRow, ids: Vec<String>) -> Result<()> {
        self.inner.environments.rolling_restart(env, ids).await
    }

    // ----- environments, versions, queues, scaling, zones -----

    /// CPU and memory of each running instance of an environment, by instance id.
    pub async fn instance_usage(&self, env_name: &str) -> Result<HashMap<String, Usage>> {
        self.inner.environments.instance_usage(env_name).await
    }

    /// The periodic tasks (`cron.yaml`) of the version an environment runs.
    pub async fn cron_tasks(&self, env_name: &str) -> Result<Vec<CronTask>> {
        self.inner.environments.cron_tasks(env_name).await
    }

    pub async fn create_environment(
        &self,
        req: api::CreateEnvironment,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        self.inner.environments.create_environment(req, by).await
    }

    pub async fn deploy(
        &self,
        env_name: &str,
        req: &api::DeployRequest,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        self.inner.environments.deploy(env_name, req, by).await
    }

    /// Stops the running deployment and rolls back to what ran before it.
    pub async fn abort(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        self.inner.environments.abort(env_name, by).await
    }

    pub async fn terminate(&self, env_name: &str, by: Option<&str>) -> Result<api::Environment> {
        self.inner.environments.terminate(env_name, by).await
    }

    /// Every setting and property, as `reader` may see them (values masked for viewers).
    pub async fn get_config(&self, env_name: &str, reader: Role) -> Result<api::ConfigView> {
        self.inner.environments.get_config(env_name, reader).await
    }

    /// Changes settings. Those an instance carries (its type) roll out with the
    /// environment's policy; the others (health checks, stickiness, …) apply at once.
    pub async fn configure(
        &self,
        env_name: &str,
        update: &api::ConfigUpdate,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        self.inner
            .environments
            .configure(env_name, update, by)
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
        self.inner.environments.scale(env_name, req, by).await
    }

    /// Sets and removes environment properties: new instances get them, rolled out with the
    /// environment's policy.
    pub async fn set_properties(
        &self,
        env_name: &str,
        req: &api::SetProperties,
        by: Option<&str>,
    ) -> Result<api::Environment> {
        self.inner
            .environments
            .set_properties(env_name, req, by)
            .await
    }

    pub async fn save_config(
        &self,
        env_name: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<api::SavedConfig> {
        self.inner
            .environments
            .save_config(env_name, name, by)
            .await
    }

    /// Exchanges two web environments' CNAMEs (blue/green), atomically in the balancer.
    pub async fn swap(&self, a: &str, b: &str, by: Option<&str>) -> Result<()> {
        self.inner.environments.swap(a, b, by).await
    }

    pub async fn restart(&self, env_name: &str, by: Option<&str>) -> Result<usize> {
        self.inner.environments.restart(env_name, by).await
    }

    pub async fn deployments(&self, env_name: &str) -> Result<Vec<api::Deployment>> {
        self.inner.environments.deployments(env_name).await
    }

    /// The environment and its instances, as `reader` may see them (property values masked
    /// for viewers).
    pub async fn get_environment(
        &self,
        name: &str,
        reader: Role,
    ) -> Result<api::EnvironmentDetail> {
        self.inner.environments.get_environment(name, reader).await
    }

    /// Environments, as `reader` may see them (property values masked for viewers).
    pub async fn list_environments(
        &self,
        app: Option<&str>,
        reader: Role,
    ) -> Result<Vec<api::Environment>> {
        self.inner.environments.list_environments(app, reader).await
    }

    pub async fn events(&self, name: &str, after: i64, limit: i64) -> Result<Vec<api::Event>> {
        self.inner.environments.events(name, after, limit).await
    }

    /// The last `tail` log lines of every instance, each prefixed with its instance id.
    pub async fn logs(&self, name: &str, tail: usize) -> Result<String> {
        self.inner.environments.logs(name, tail).await
    }

    pub async fn health_report(&self, name: &str) -> Result<api::HealthReport> {
        self.inner.environments.health_report(name).await
    }

    /// The view of an environment for the deployer or admin who just changed it.
    pub async fn environment_view(&self, env: &EnvRow) -> Result<api::Environment> {
        self.inner.environments.environment_view(env).await
    }

    /// `GET /operations/{id}`: the operation, where it stands and how it ended.
    pub async fn operation(&self, id: i64) -> Result<api::OperationStatus> {
        self.inner.environments.operation(id).await
    }

    /// Receives, checks and stores a bundle, records the version (`processing`) and starts
    /// its build. Bad input changes nothing: no row, no file.
    pub async fn upload_version<S, E>(&self, incoming: IncomingBundle<S>) -> Result<api::Version>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.inner.versions.upload_version(incoming).await
    }

    /// Deletes a version (refused while an environment runs it) and reclaims its image and,
    /// when no other version shares it, its bundle.
    pub async fn delete_version(&self, app: &str, label: &str) -> Result<()> {
        self.inner.versions.delete_version(app, label).await
    }

    /// Builds in the background; the version row says how it went.
    pub fn spawn_build(&self, row: VersionRow) {
        self.inner.versions.spawn_build(row)
    }

    /// Rebuilds versions a stopped control plane left `processing`.
    pub async fn resume_builds(&self) -> Result<()> {
        self.inner.versions.resume_builds().await
    }

    pub async fn list_versions(&self, app: &str) -> Result<Vec<api::Version>> {
        self.inner.versions.list_versions(app).await
    }

    pub async fn get_version(&self, app: &str, label: &str) -> Result<api::Version> {
        self.inner.versions.get_version(app, label).await
    }

    pub async fn create_app(&self, name: &str) -> Result<api::App> {
        self.inner.versions.create_app(name).await
    }

    pub async fn list_apps(&self) -> Result<Vec<api::App>> {
        self.inner.versions.list_apps().await
    }

    /// Deletes an application with no environment left, and its versions' images.
    pub async fn delete_app(&self, name: &str) -> Result<()> {
        self.inner.versions.delete_app(name).await
    }

    pub async fn require_app(&self, name: &str) -> Result<AppRow> {
        self.inner.versions.require_app(name).await
    }

    /// Tells long polls and the dispatcher that messages are there.
    pub fn queue_changed(&self) {
        self.inner.queues.queue_changed()
    }

    /// The SQS endpoint as seen from the host (for clients outside Sprout).
    pub fn sqs_endpoint(&self) -> Result<String> {
        self.inner.queues.sqs_endpoint()
    }

    /// The queue (and DLQ) of a worker environment, made on first use.
    pub async fn ensure_worker_queue(&self, env: &EnvRow) -> Result<QueueRow> {
        self.inner.queues.ensure_worker_queue(env).await
    }

    /// The worker environment whose queue `env` uses: itself if a worker, else its
    /// application's first live worker environment.
    pub async fn queue_env_of(&self, env: &EnvRow) -> Result<EnvRow> {
        self.inner.queues.queue_env_of(env).await
    }

    /// The environment's access key for the SQS endpoint, made on first use.
    pub async fn access_key_of(&self, env: &EnvRow) -> Result<AccessKeyRow> {
        self.inner.queues.access_key_of(env).await
    }

    /// `sprout queue credentials ENV`.
    pub async fn queue_credentials(&self, env_name: &str) -> Result<Credentials> {
        self.inner.queues.queue_credentials(env_name).await
    }

    /// Appends checked messages to a queue (one transaction) and wakes its consumers, if
    /// its application's quota has room for all of them.
    pub async fn enqueue(&self, queue: &QueueRow, messages: &[NewMessage]) -> Result<()> {
        self.inner.queues.enqueue(queue, messages).await
    }

    /// An extra queue of an application (SQS CreateQueue): the existing one of that name, or
    /// a new one if the application's quota has room.
    pub async fn create_queue(
        &self,
        app_id: i64,
        name: &str,
        settings: QueueSettings,
    ) -> Result<QueueRow> {
        self.inner.queues.create_queue(app_id, name, settings).await
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first (long poll).
    pub async fn receive(
        &self,
        queue: &QueueRow,
        max: i64,
        visibility_secs: i64,
        wait: Duration,
    ) -> Result<Vec<MessageRow>> {
        self.inner
            .queues
            .receive(queue, max, visibility_secs, wait)
            .await
    }

    /// A queue's counts, and its DLQ's size.
    pub async fn queue_counts(&self, queue: &QueueRow) -> Result<(sprout_store::QueueCounts, i64)> {
        self.inner.queues.queue_counts(queue).await
    }

    pub async fn queue_send(&self, env_name: &str, req: SendRequest) -> Result<SendResponse> {
        self.inner.queues.queue_send(env_name, req).await
    }

    pub async fn queue_stats(&self, env_name: &str) -> Result<QueueStats> {
        self.inner.queues.queue_stats(env_name).await
    }

    pub async fn queue_dead(&self, env_name: &str) -> Result<Vec<DeadMessage>> {
        self.inner.queues.queue_dead(env_name).await
    }

    pub async fn queue_redrive(
        &self,
        env_name: &str,
    ) -> Result<sprout_core::queue::RedriveResponse> {
        self.inner.queues.queue_redrive(env_name).await
    }

    /// Runs until `shutdown`. Messages a previous process held are released first: their
    /// requests died with it.
    pub async fn run_dispatcher(&self, shutdown: CancellationToken) {
        self.inner.queues.run_dispatcher(shutdown).await
    }

    pub async fn run_cron(&self, shutdown: CancellationToken) {
        self.inner.queues.run_cron(shutdown).await
    }

    pub async fn run_autoscaler(&self, shutdown: CancellationToken) {
        self.inner.scaling.run_autoscaler(shutdown).await
    }

    /// Starts the scheduler with every stored action.
    pub async fn start_schedules(&self) -> Result<()> {
        self.inner.scaling.start_schedules().await
    }

    /// Stops running scheduled actions (a next server takes them over); `start_schedules`
    /// starts them again.
    pub async fn stop_schedules(&self) {
        self.inner.scaling.stop_schedules().await
    }

    pub async fn add_schedule(
        &self,
        env_name: &str,
        action: &api::ScheduledAction,
        by: Option<&str>,
    ) -> Result<api::ScheduledAction> {
        self.inner.scaling.add_schedule(env_name, action, by).await
    }

    pub async fn list_schedules(&self, env_name: &str) -> Result<Vec<api::ScheduledAction>> {
        self.inner.scaling.list_schedules(env_name).await
    }

    pub async fn remove_schedule(
        &self,
        env_name: &str,
        name: &str,
        by: Option<&str>,
    ) -> Result<()> {
        self.inner.scaling.remove_schedule(env_name, name, by).await
    }

    /// Configured zones that are not marked failed.
    pub async fn available_zones(&self) -> Result<Vec<String>> {
        self.inner.shared.available_zones().await
    }

    pub async fn zones(&self) -> Result<Vec<api::Zone>> {
        self.inner.shared.zones().await
    }

    /// Simulates (or declares) an outage: Sprout stops using the zone.
    pub async fn fail_zone(&self, zone: &str, by: Option<&str>) -> Result<Vec<api::Zone>> {
        self.inner.shared.fail_zone(zone, by).await
    }

    pub async fn restore_zone(&self, zone: &str, by: Option<&str>) -> Result<Vec<api::Zone>> {
        self.inner.shared.restore_zone(zone, by).await
    }

    /// A queue's URL under an endpoint: `<endpoint>/<app>/<queue>`; only the last segment
    /// matters to the endpoint.
    pub fn queue_url(endpoint: &str, app: &str, queue: &str) -> String {
        Queues::queue_url(endpoint, app, queue)
    }

    /// The sqsd settings of a worker environment, from its properties.
    pub fn sqsd_settings(env: &EnvRow) -> Result<SqsdSettings> {
        Queues::sqsd_settings(env)
    }
}

/// Instances the reconciler starts get the variables of their attached resources.
impl InstanceVars for Control {
    fn resource_vars<'a>(
        &'a self,
        env: &'a EnvRow,
    ) -> futures_util::future::BoxFuture<'a, Vec<String>> {
        Box::pin(self.resource_env_vars(env))
    }
}
