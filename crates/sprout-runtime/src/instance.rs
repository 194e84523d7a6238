//! Instance containers: started on their environment's network, listed by label, measured,
//! removed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, RestartPolicyNameEnum};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
    StatsOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::error::{is_not_found, status_of};
use crate::{bake, label_filters, on_network, Runtime, RuntimeError, Size};

/// How long `start_instance` waits for the engine to report an address.
const ADDRESS_WAIT: Duration = Duration::from_secs(3);

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
    /// Creates and starts one instance container on `spec.network` only, with limits and
    /// no published ports. Returns its id and address on that network.
    pub async fn start_instance(
        &self,
        spec: &InstanceSpec,
    ) -> Result<StartedInstance, RuntimeError> {
        // The control plane replaces dead instances; Docker restarting them would fight it.
        let (host_config, networking) = on_network(
            HostConfig::default(),
            &spec.network,
            Size {
                millicpus: spec.millicpus,
                memory_mib: spec.memory_mib,
                pids: spec.pids,
            },
            RestartPolicyNameEnum::NO,
        );
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
            networking_config: Some(networking),
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

    /// Uploads the contents of `dir` as /app of a created container.
    async fn upload_bundle(&self, container: &str, dir: &Path) -> Result<(), RuntimeError> {
        let tar = bake::tar_dir(dir.to_path_buf(), "app").await?;
        bake::upload_app(&self.docker, container, tar).await
    }
}
