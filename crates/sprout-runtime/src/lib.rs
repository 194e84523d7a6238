//! The Docker driver of Sprout: platform images, golden bakes, networks, instance
//! containers and their logs. It is the only crate that speaks to a Docker engine.

mod bake;
mod error;
mod gateway;
mod platform;
mod resource;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkCreateRequest,
    NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ImportImageOptions, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
    RemoveImageOptions, StartContainerOptions, StatsOptions, StopContainerOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

pub use error::RuntimeError;
use error::{is_not_found, status_of};
pub use platform::{buildable_image, catalogue_platform, CATALOGUE, RESOURCE_IMAGES};
pub use resource::{ExecOutcome, ResourceSpec};
pub use sprout_core::model::BuildLimits;

/// Seconds bollard waits for response headers. Generous because commits of big images
/// and stops with long grace periods are legitimately slow; streams are not bounded by it.
const CLIENT_TIMEOUT_SECS: u64 = 300;

/// How long `start_instance` waits for the engine to report an address.
const ADDRESS_WAIT: Duration = Duration::from_secs(3);

/// Capabilities Docker grants by default that neither an instance nor a build needs, and
/// that help an attacker inside one (raw sockets for spoofing, device nodes, chroot escapes,
/// file capabilities, audit writes).
const DROPPED_CAPABILITIES: [&str; 5] =
    ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"];

/// Docker's own log of a container is a file on the host: bounded, so a chatty or hostile
/// process cannot fill the disk.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILES: &str = "2";

/// The confinement every container Sprout starts gets on top of `host`: no privilege gained
/// through setuid binaries, fewer capabilities, at most `pids` processes, a bounded log.
pub(crate) fn confined(host: HostConfig, pids: u32) -> HostConfig {
    HostConfig {
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        cap_drop: Some(DROPPED_CAPABILITIES.map(String::from).to_vec()),
        pids_limit: Some(i64::from(pids)),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        ..host
    }
}

/// What `bake` turns into a golden image.
#[derive(Debug, Clone)]
pub struct BakeSpec {
    pub base_image: String,
    /// `repo:tag` (tag defaults to `latest` when absent).
    pub image: String,
    pub bundle_dir: PathBuf,
    pub build_script: Option<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub limits: BuildLimits,
}

/// One instance container to create and start.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub name: String,
    pub image: String,
    pub network: String,
    pub labels: HashMap<String, String>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub millicpus: u32,
    pub memory_mib: u32,
    /// Most processes and threads at once.
    pub pids: u32,
    /// The user the process runs as (`sprout.yaml: user:`); the image's when `None`.
    pub user: Option<String>,
    /// User-data bootstrap: the bundle copied to /app before the container starts.
    pub bundle_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedInstance {
    pub container_id: String,
    pub address: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Docker's state word: running, exited, created, paused, restarting, removing, dead.
    pub state: String,
    pub running: bool,
    pub address: Option<IpAddr>,
    /// Unix seconds.
    pub created: i64,
}

impl ContainerInfo {
    /// The value of one of Sprout's labels (`sprout.instance`, `sprout.version`, …); empty
    /// when the container lacks it.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or_default()
    }

    /// The zone the instance was placed in.
    pub fn zone(&self) -> &str {
        self.label("sprout.zone")
    }
}

/// A handle on one Docker engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    docker: Docker,
    /// Where the engine is, so the platform build script's `docker` CLI targets the same one.
    endpoint: Option<String>,
}

/// Serialises work that must not run twice at once for the same key (platform builds,
/// network creation: Docker happily creates two networks with the same name).
fn key_lock(key: String) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        OnceLock::new();
    let map = LOCKS.get_or_init(|| StdMutex::new(HashMap::new()));
    // A poisoned map only means another thread panicked while inserting; the map is still usable.
    let mut guard = match map.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard.entry(key).or_default().clone()
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    if !labels.is_empty() {
        filters.insert(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }
    filters
}

fn first_address(
    networks: Option<&HashMap<String, EndpointSettings>>,
    prefer: Option<&str>,
) -> Option<IpAddr> {
    let networks = networks?;
    let parse = |ep: &EndpointSettings| {
        ep.ip_address
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse::<IpAddr>().ok())
    };
    if let Some(name) = prefer {
        return networks.get(name).and_then(parse);
    }
    // Instances sit on exactly one network; sort for a stable answer if someone added more.
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names
        .into_iter()
        .find_map(|n| networks.get(n).and_then(parse))
}

impl Runtime {
    /// Local engine (DOCKER_HOST or the default unix socket), version negotiated, pinged.
    pub async fn connect_local() -> Result<Self, RuntimeError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => Self::connect(host.trim()).await,
            _ => {
                let endpoint = "unix:///var/run/docker.sock".to_string();
                let docker = Docker::connect_with_local_defaults()
                    .map_err(|source| RuntimeError::Connect {
                        endpoint: endpoint.clone(),
                        source,
                    })?
                    .with_timeout(Duration::from_secs(CLIENT_TIMEOUT_SECS));
                Self::finish_connect(docker, endpoint, None).await
            }
        }
    }

    /// An engine at "unix:///path" or "tcp://host:port".
    pub async fn connect(endpoint: &str) -> Result<Self, RuntimeError> {
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(RuntimeError::InvalidEndpoint(endpoint.to_string()));
            }
            Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if let Some(rest) = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
        {
            if rest.trim_end_matches('/').is_empty() {
                return Err(RuntimeError::InvalidEndpoint(endpoint.to_string()));
            }
            Docker::connect_with_http(endpoint, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(RuntimeError::InvalidEndpoint(endpoint.to_string()));
        }
        .map_err(|source| RuntimeError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?;
        Self::finish_connect(docker, endpoint.to_string(), Some(endpoint.to_string())).await
    }

    async fn finish_connect(
        docker: Docker,
        endpoint: String,
        docker_host: Option<String>,
    ) -> Result<Self, RuntimeError> {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|source| RuntimeError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        let rt = Runtime {
            docker,
            endpoint: docker_host,
        };
        rt.docker
            .ping()
            .await
            .map_err(|source| RuntimeError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        info!(%endpoint, api = %rt.docker.client_version(), "connected to Docker engine");
        Ok(rt)
    }

    /// The underlying bollard handle, for what this crate does not wrap yet.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::docker("ping", e))
    }

    /// CPUs the engine's host has: the most any one container can be given.
    pub async fn cpus(&self) -> Result<u32, RuntimeError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| RuntimeError::docker("info", e))?;
        Ok(info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(1))
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(RuntimeError::docker(format!("inspect image {image}"), e)),
        }
    }

    /// Removes an image (untags it); fine if it is already gone.
    pub async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let opts = RemoveImageOptions {
            force: false,
            noprune: false,
        };
        match self.docker.remove_image(image, Some(opts), None).await {
            Ok(_) => {
                info!(%image, "image removed");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RuntimeError::docker(format!("remove image {image}"), e)),
        }
    }

    /// Builds a missing catalogue platform image (or resource image) with
    /// docker/build-platform.sh; any other missing image is an error, since there is no
    /// registry to pull from.
    pub async fn ensure_platform(
        &self,
        image: &str,
        log: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), RuntimeError> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        let Some(platform) = buildable_image(image) else {
            return Err(RuntimeError::ImageMissing {
                image: image.to_string(),
            });
        };
        let key = format!(
            "platform|{}|{}",
            self.endpoint.as_deref().unwrap_or("local"),
            platform
        );
        let lock = key_lock(key);
        let _guard = lock.lock().await;
        // Someone else may have built it while we waited for the lock.
        if self.image_exists(image).await? {
            return Ok(());
        }
        platform::build(platform, image, self.endpoint.as_deref(), log).await?;
        if !self.image_exists(image).await? {
            return Err(RuntimeError::PlatformBuild {
                image: image.to_string(),
                detail: "the build script finished but the image is not there".to_string(),
            });
        }
        Ok(())
    }

    /// Bakes a golden image from a base image, a bundle and an optional build script.
    pub async fn bake(
        &self,
        spec: &BakeSpec,
        log: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), RuntimeError> {
        bake::bake(self, spec, log).await
    }

    /// Creates the bridge network if missing (idempotent), with labels. Returns its id.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, RuntimeError> {
        let lock = key_lock(format!(
            "network|{}|{name}",
            self.endpoint.as_deref().unwrap_or("local")
        ));
        let _guard = lock.lock().await;
        if let Some(id) = self.network_id(name).await? {
            return Ok(id);
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(resp) => {
                info!(network = %name, id = %resp.id, "network created");
                Ok(resp.id)
            }
            // Another control plane may have created it between inspect and create.
            Err(e) if status_of(&e) == Some(409) => self
                .network_id(name)
                .await?
                .ok_or_else(|| RuntimeError::docker(format!("create network {name}"), e)),
            Err(e) => Err(RuntimeError::docker(format!("create network {name}"), e)),
        }
    }

    async fn network_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            // Inspect also matches id prefixes; only an exact name counts.
            Ok(net) if net.name.as_deref() == Some(name) => Ok(net.id),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(RuntimeError::docker(format!("inspect network {name}"), e)),
        }
    }

    /// Removes a network; fine if it is already gone.
    pub async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_network(name).await {
            Ok(()) => {
                info!(network = %name, "network removed");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RuntimeError::docker(format!("remove network {name}"), e)),
        }
    }

    /// Names of networks having all these labels.
    pub async fn list_networks(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<String>, RuntimeError> {
        let opts = ListNetworksOptions {
            filters: Some(label_filters(labels)),
        };
        let nets = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| RuntimeError::docker("list networks", e))?;
        let mut names: Vec<String> = nets.into_iter().filter_map(|n| n.name).collect();
        names.sort();
        Ok(names)
    }

    /// Creates and starts one instance container on `spec.network` only, with limits and
    /// no published ports. Returns its id and address on that network.
    pub async fn start_instance(
        &self,
        spec: &InstanceSpec,
    ) -> Result<StartedInstance, RuntimeError> {
        let memory = i64::from(spec.memory_mib) * 1024 * 1024;
        let host_config = confined(
            HostConfig {
                nano_cpus: Some(i64::from(spec.millicpus) * 1_000_000),
                memory: Some(memory),
                // Equal to memory: no swap on top of the limit, so an instance type means what it says.
                memory_swap: Some(memory),
                network_mode: Some(spec.network.clone()),
                // The control plane replaces dead instances; Docker restarting them would fight it.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                publish_all_ports: Some(false),
                ..Default::default()
            },
            spec.pids,
        );
        let mut endpoints = HashMap::new();
        endpoints.insert(spec.network.clone(), EndpointSettings::default());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            cmd: if spec.cmd.is_empty() {
                None
            } else {
                Some(spec.cmd.clone())
            },
            labels: Some(spec.labels.clone()),
            user: spec.user.clone(),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        };
        let created = self.create_named(&spec.name, body).await?;
        let id = created.id;
        for w in created.warnings {
            warn!(container = %spec.name, warning = %w, "engine warning on create");
        }

        // Never leave a half-made container behind: it would hold the name and look like an instance.
        if let Err(e) = self.finish_start(&id, spec).await {
            if let Err(cleanup) = self.force_remove(&id).await {
                warn!(container = %id, error = %cleanup, "cleanup after failed start failed");
            }
            return Err(e);
        }

        let address = self.wait_address(&id, &spec.network).await?;
        info!(container = %spec.name, id = %id, image = %spec.image, network = %spec.network,
              address = ?address, "instance started");
        Ok(StartedInstance {
            container_id: id,
            address,
        })
    }

    async fn finish_start(&self, id: &str, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        if let Some(dir) = &spec.bundle_dir {
            self.upload_bundle(id, dir).await?;
        }
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| RuntimeError::docker(format!("start container {}", spec.name), e))
    }

    /// The address on `network`, polled briefly because the engine may assign it a bit late.
    async fn wait_address(&self, id: &str, network: &str) -> Result<Option<IpAddr>, RuntimeError> {
        let deadline = tokio::time::Instant::now() + ADDRESS_WAIT;
        loop {
            let inspect = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| RuntimeError::docker(format!("inspect container {id}"), e))?;
            let addr = first_address(
                inspect
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref()),
                Some(network),
            );
            let running = inspect
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false);
            // A container that already exited will never get an address.
            if addr.is_some() || !running || tokio::time::Instant::now() >= deadline {
                if addr.is_none() {
                    debug!(container = %id, running, "no address reported");
                }
                return Ok(addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every container (running or not) having all these labels, with state and address.
    pub async fn list_instances(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(label_filters(labels)),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| RuntimeError::docker("list containers", e))?;
        let mut out: Vec<ContainerInfo> = list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                let address = first_address(
                    c.network_settings
                        .as_ref()
                        .and_then(|n| n.networks.as_ref()),
                    None,
                );
                Some(ContainerInfo {
                    id,
                    name,
                    labels: c.labels.unwrap_or_default(),
                    running: state == "running",
                    state,
                    address,
                    created: c.created.unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Stops (SIGTERM, then kill after `grace`) and removes; fine if already gone.
    pub async fn remove_instance(
        &self,
        container: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        // Round up so a sub-second grace still gives the process a moment.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let t = i32::try_from(secs).unwrap_or(i32::MAX);
        let opts = StopContainerOptions {
            signal: None,
            t: Some(t),
        };
        match self.docker.stop_container(container, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(e) if status_of(&e) == Some(304) => {}
            Err(e) => {
                // Still try to remove: a stuck stop should not leave the container around.
                warn!(%container, error = %e, "stop failed; forcing removal");
            }
        }
        self.force_remove(container).await?;
        info!(%container, "instance removed");
        Ok(())
    }

    async fn force_remove(&self, container: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: removal already in progress, which is what we want anyway.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(RuntimeError::docker(
                format!("remove container {container}"),
                e,
            )),
        }
    }

    /// Copies an image to another engine (a zone on another host): exported here,
    /// streamed into `to`. No registry needed.
    pub async fn copy_image_to(&self, image: &str, to: &Runtime) -> Result<(), RuntimeError> {
        info!(%image, "copying image to another engine");
        let export = self
            .docker
            .export_image(image)
            .filter_map(|chunk| async move {
                match chunk {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        // A broken export leaves a truncated tar, which the import refuses.
                        warn!(error = %e, "image export interrupted");
                        None
                    }
                }
            });
        let mut import = to.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            export,
            None,
        );
        while let Some(step) = import.next().await {
            let info =
                step.map_err(|e| RuntimeError::docker(format!("import image {image}"), e))?;
            if let Some(err) = info.error {
                return Err(RuntimeError::ImageCopy {
                    image: image.to_string(),
                    detail: err,
                });
            }
        }
        if !to.image_exists(image).await? {
            return Err(RuntimeError::ImageCopy {
                image: image.to_string(),
                detail: "it did not arrive".into(),
            });
        }
        Ok(())
    }

    /// CPU a running container used over about a second, in cores (1.0 = one full core),
    /// and its memory use in bytes. None when the engine reports nothing (it stopped).
    pub async fn usage(&self, container: &str) -> Result<Option<(f64, u64)>, RuntimeError> {
        let opts = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut stream = self.docker.stats(container, Some(opts));
        let Some(stats) = stream.next().await else {
            return Ok(None);
        };
        let stats = match stats {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(RuntimeError::docker(format!("stats {container}"), e)),
        };
        let total = |c: &Option<bollard::models::ContainerCpuStats>| {
            c.as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let system = |c: &Option<bollard::models::ContainerCpuStats>| {
            c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0)
        };
        let cpu_delta = total(&stats.cpu_stats).saturating_sub(total(&stats.precpu_stats)) as f64;
        let system_delta =
            system(&stats.cpu_stats).saturating_sub(system(&stats.precpu_stats)) as f64;
        let online = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.online_cpus)
            .unwrap_or(1)
            .max(1) as f64;
        let cores = if system_delta > 0.0 {
            cpu_delta / system_delta * online
        } else {
            0.0
        };
        let memory = stats
            .memory_stats
            .as_ref()
            .and_then(|m| m.usage)
            .unwrap_or(0);
        Ok(Some((cores, memory)))
    }

    /// The last `tail` lines of stdout+stderr of a container.
    pub async fn logs(&self, container: &str, tail: usize) -> Result<Vec<String>, RuntimeError> {
        if tail == 0 {
            return Ok(Vec::new());
        }
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            follow: false,
            tail: tail.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut lines = LineSplitter::default();
        while let Some(item) = stream.next().await {
            let chunk =
                item.map_err(|e| RuntimeError::docker(format!("logs of {container}"), e))?;
            lines.push(chunk.as_ref());
        }
        let mut all = lines.finish();
        if all.len() > tail {
            all.drain(..all.len() - tail);
        }
        Ok(all)
    }

    /// Uploads the contents of `dir` as /app of a created container.
    async fn upload_bundle(&self, container: &str, dir: &Path) -> Result<(), RuntimeError> {
        let tar = bake::tar_dir(dir.to_path_buf(), "app").await?;
        bake::upload_app(&self.docker, container, tar).await
    }
}

/// Longest line kept whole; a longer one is cut into pieces this long, so output without
/// newlines cannot grow memory.
const MAX_LINE: usize = 16 * 1024;

/// Turns arbitrary output chunks into whole lines (chunks need not end at a newline).
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl LineSplitter {
    /// Adds a chunk; returns how many complete lines are now available.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> usize {
        let before = self.lines.len();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.lines.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    let piece = std::mem::take(&mut self.partial);
                    self.lines
                        .push(String::from_utf8_lossy(&piece).into_owned());
                }
            }
        }
        self.lines.len() - before
    }

    pub(crate) fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        self.lines
    }
}

impl Runtime {
    /// Creates container `name` from `body`; a missing image is [`RuntimeError::ImageMissing`]
    /// (the engine says "No such image" with 404 on create).
    pub(crate) async fn create_named(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<bollard::models::ContainerCreateResponse, RuntimeError> {
        let image = body.image.clone().unwrap_or_default();
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    RuntimeError::ImageMissing { image }
                } else {
                    RuntimeError::docker(format!("create container {name}"), e)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_cuts_endless_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(&vec![b'a'; MAX_LINE * 2 + 5]), 2);
        assert!(s.take_lines().iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(s.finish(), vec!["aaaaa".to_string()]);
    }

    #[test]
    fn splitter_handles_partial_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), 0);
        assert_eq!(s.push(b"lo\r\nwor"), 1);
        assert_eq!(s.take_lines(), vec!["hello".to_string()]);
        assert_eq!(s.push(b"ld\n\nx"), 2);
        assert_eq!(
            s.finish(),
            vec!["world".to_string(), String::new(), "x".to_string()]
        );
    }

    #[test]
    fn label_filter_format() {
        let f = label_filters(&[("sprout.app", "a"), ("sprout.env", "e")]);
        assert_eq!(
            f.get("label"),
            Some(&vec![
                "sprout.app=a".to_string(),
                "sprout.env=e".to_string()
            ])
        );
        assert!(label_filters(&[]).is_empty());
    }

    #[tokio::test]
    async fn bad_endpoints_are_rejected() {
        for ep in ["", "ftp://x", "unix://", "tcp://"] {
            assert!(matches!(
                Runtime::connect(ep).await,
                Err(RuntimeError::InvalidEndpoint(_))
            ));
        }
    }
}
