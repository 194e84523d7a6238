//! Resource containers: a database or cache in its own container, its data in a volume.
//!
//! Isolation (the seed's security groups): the container starts on a private, internal
//! network of its own and no published port; attaching an environment connects it to that
//! environment's network (where it answers to the resource's name) and detaching
//! disconnects it. Nothing else shares a network with it, so only the instances of attached
//! environments can open a connection. Health, dumps and restores run by `exec` of the
//! image's entrypoint (`sprout-resource health|dump FILE`, docker/resource-entrypoint.sh).
//! The entrypoint this binary carries is copied into every resource container before it
//! starts, so an image built by an older Sprout still runs the current one.
//!
//! Read replicas (postgres) are more containers of the same image, each with its own volume,
//! on the resource's private network (where they reach the primary by its container name).

use std::collections::HashMap;
use std::path::Path;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, ExecConfig, HostConfig, Mount, MountTypeEnum,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, RestartPolicyNameEnum,
    VolumeCreateOptions,
};
use bollard::query_parameters::{
    DownloadFromContainerOptions, InspectContainerOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StartContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use sprout_core::resource::ResourceKind;
use tracing::{debug, info, warn};

use crate::error::{is_not_found, status_of};
use crate::{on_network, Runtime, RuntimeError, Size};

/// Where a snapshot is put inside the volume before the first start of a restored resource
/// (the entrypoint loads it, then deletes it).
const RESTORE_PATH: &str = "/data/.sprout-restore";
/// Where a dump is written inside the container before it is copied out.
const DUMP_DIR: &str = "/data/.sprout-dump";
/// The entrypoint inside a resource image.
const ENTRYPOINT_PATH: &str = "/usr/local/bin/sprout-resource";
/// Output of an exec kept for an error message.
const MAX_EXEC_OUTPUT: usize = 4096;

/// One resource container to create and start.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    /// Container and volume name (`sprout-res-<app>-<name>`, `…-r1` for a replica).
    pub container: String,
    /// The resource's private network (`sprout-res-<app>-<name>`), shared by its replicas.
    pub network: String,
    /// The host name instances reach it by on attached networks (the resource's name).
    pub alias: String,
    pub kind: ResourceKind,
    pub image: String,
    /// `SPROUT_RESOURCE_*` (see `Credentials::container_env`).
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub millicpus: u32,
    pub memory_mib: u32,
    pub pids: u32,
    /// A dump (a snapshot's file) loaded into the new database before it first serves.
    pub restore_from: Option<std::path::PathBuf>,
}

/// What one exec in a resource container ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub code: i64,
    pub output: String,
}

impl Runtime {
    /// Creates the volume, the private network and the container of a resource, and starts
    /// it. Idempotent on the volume and network; a container of that name already present is
    /// an error (a resource is created once). Returns the container id.
    pub async fn create_resource(&self, spec: &ResourceSpec) -> Result<String, RuntimeError> {
        self.ensure_volume(&spec.container, &spec.labels).await?;
        self.ensure_private_network(&spec.network, &spec.labels)
            .await?;
        // A database that crashes comes back by itself, on its data.
        let (host_config, networking) = on_network(
            HostConfig {
                mounts: Some(vec![Mount {
                    target: Some("/data".to_string()),
                    source: Some(spec.container.clone()),
                    typ: Some(MountTypeEnum::VOLUME),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            &spec.network,
            Size {
                millicpus: spec.millicpus,
                memory_mib: spec.memory_mib,
                pids: spec.pids,
            },
            RestartPolicyNameEnum::UNLESS_STOPPED,
        );
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            host_config: Some(host_config),
            networking_config: Some(networking),
            ..Default::default()
        };
        let created = self.create_named(&spec.container, body).await?;
        let id = created.id;
        if let Err(e) = self.finish_resource_start(&id, spec).await {
            if let Err(cleanup) = self.remove_resource_container(&spec.container).await {
                warn!(container = %spec.container, error = %cleanup, "cleanup after failed resource start failed");
            }
            return Err(e);
        }
        info!(container = %spec.container, kind = %spec.kind, image = %spec.image, "resource started");
        Ok(id)
    }

    async fn finish_resource_start(
        &self,
        id: &str,
        spec: &ResourceSpec,
    ) -> Result<(), RuntimeError> {
        let entrypoint = single_file_tar(
            ENTRYPOINT_PATH.trim_start_matches('/'),
            crate::platform::RESOURCE_ENTRYPOINT.as_bytes(),
            0o755,
        )?;
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                bollard::body_full(entrypoint.into()),
            )
            .await
            .map_err(|e| {
                RuntimeError::docker(format!("upload the entrypoint to {}", spec.container), e)
            })?;
        if let Some(dump) = &spec.restore_from {
            let data = tokio::fs::read(dump).await.map_err(|e| RuntimeError::Io {
                context: format!("reading snapshot {}", dump.display()),
                source: e,
            })?;
            let tar = single_file_tar(RESTORE_PATH.trim_start_matches('/'), &data, 0o644)?;
            self.docker
                .upload_to_container(
                    id,
                    Some(UploadToContainerOptions {
                        path: "/".to_string(),
                        ..Default::default()
                    }),
                    bollard::body_full(tar.into()),
                )
                .await
                .map_err(|e| {
                    RuntimeError::docker(format!("upload snapshot to {}", spec.container), e)
                })?;
        }
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| RuntimeError::docker(format!("start container {}", spec.container), e))
    }

    async fn ensure_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        self.docker
            .create_volume(VolumeCreateOptions {
                name: Some(name.to_string()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::docker(format!("create volume {name}"), e))
    }

    /// The resource's own network: internal (no route out) and shared with nobody but its
    /// replicas. An existing one is kept (Docker would make a second of the same name).
    async fn ensure_private_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        if self.network_id(name).await?.is_some() {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            internal: Some(true),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(RuntimeError::docker(format!("create network {name}"), e)),
        }
    }

    /// Whether the resource's engine answers (`pg_isready`, `mariadb-admin ping`, `PING`).
    pub async fn resource_healthy(&self, container: &str) -> Result<bool, RuntimeError> {
        match self
            .exec_in(container, vec!["sprout-resource".into(), "health".into()])
            .await
        {
            Ok(out) => Ok(out.code == 0),
            // Not running (yet, or any more) is "not healthy", not an error.
            Err(RuntimeError::Docker { source, .. }) if status_of(&source) == Some(409) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the resource's container is there and running.
    pub async fn resource_running(&self, container: &str) -> Result<bool, RuntimeError> {
        match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(RuntimeError::docker(format!("inspect {container}"), e)),
        }
    }

    /// Connects the resource to an environment's network, where it answers to `alias`.
    /// Already connected is fine.
    pub async fn attach_resource(
        &self,
        container: &str,
        network: &str,
        alias: &str,
    ) -> Result<(), RuntimeError> {
        self.attach_resource_as(container, network, &[alias.to_string()])
            .await
    }

    /// Connects a resource's container to a network where it answers to each of `aliases`
    /// (a replica: its own host name and the one all replicas share). Already connected is
    /// fine (the aliases are then those it had).
    pub async fn attach_resource_as(
        &self,
        container: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<(), RuntimeError> {
        let req = NetworkConnectRequest {
            container: Some(container.to_string()),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, req).await {
            Ok(()) => {
                info!(%container, %network, ?aliases, "resource attached to network");
                Ok(())
            }
            Err(e) if already_connected(&e) => Ok(()),
            Err(e) => Err(RuntimeError::docker(
                format!("connect {container} to {network}"),
                e,
            )),
        }
    }

    /// Disconnects the resource from an environment's network; fine if it was not on it.
    pub async fn detach_resource(
        &self,
        container: &str,
        network: &str,
    ) -> Result<(), RuntimeError> {
        let req = NetworkDisconnectRequest {
            container: Some(container.to_string()),
            force: Some(true),
        };
        match self.docker.disconnect_network(network, req).await {
            Ok(()) => {
                info!(%container, %network, "resource detached from network");
                Ok(())
            }
            Err(e) if is_not_found(&e) || not_connected(&e) => Ok(()),
            Err(e) => Err(RuntimeError::docker(
                format!("disconnect {container} from {network}"),
                e,
            )),
        }
    }

    /// The networks the resource's container is on (its private one included).
    pub async fn resource_networks(&self, container: &str) -> Result<Vec<String>, RuntimeError> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| RuntimeError::docker(format!("inspect {container}"), e))?;
        let mut names: Vec<String> = c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        names.sort();
        Ok(names)
    }

    /// Writes a logical snapshot of the resource to `dest` on this host (`pg_dump -Fc`,
    /// `mariadb-dump`, an RDB). Returns its size in bytes.
    pub async fn snapshot_resource(
        &self,
        container: &str,
        kind: ResourceKind,
        dest: &Path,
    ) -> Result<u64, RuntimeError> {
        let inside = format!("{DUMP_DIR}/{}", kind.dump_file());
        let prepare = self
            .exec_in(
                container,
                vec![
                    "sh".into(),
                    "-c".into(),
                    format!("rm -rf {DUMP_DIR} && mkdir -p {DUMP_DIR}"),
                ],
            )
            .await?;
        check_exec(container, "prepare the dump directory", prepare)?;
        let dump = self
            .exec_in(
                container,
                vec!["sprout-resource".into(), "dump".into(), inside.clone()],
            )
            .await?;
        check_exec(container, "dump", dump)?;
        let result = self.copy_out(container, &inside, dest).await;
        // The dump inside the volume is only a staging copy.
        if let Err(e) = self
            .exec_in(container, vec!["rm".into(), "-rf".into(), DUMP_DIR.into()])
            .await
        {
            warn!(%container, error = %e, "removing the staging dump failed");
        }
        result
    }

    /// Copies one file out of a container to `dest` (through a temporary file, so `dest`
    /// appears whole or not at all).
    async fn copy_out(
        &self,
        container: &str,
        path: &str,
        dest: &Path,
    ) -> Result<u64, RuntimeError> {
        let mut stream = self.docker.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| RuntimeError::docker(format!("copy {container}:{path}"), e))?;
            tar_bytes.extend_from_slice(&chunk);
        }
        let dest = dest.to_path_buf();
        let context = format!("writing snapshot {}", dest.display());
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
            let mut entries = archive.entries()?;
            let mut entry = entries
                .next()
                .ok_or_else(|| std::io::Error::other("the engine sent an empty archive"))??;
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = dest.with_extension("partial");
            let mut file = std::fs::File::create(&tmp)?;
            let n = std::io::copy(&mut entry, &mut file)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &dest)?;
            Ok(n)
        })
        .await
        .map_err(|e| RuntimeError::Io {
            context: context.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| RuntimeError::Io { context, source })?;
        debug!(%container, bytes = written, "snapshot copied out");
        Ok(written)
    }

    /// Removes the resource's container, its volume (its data) and its private network.
    /// Whatever is already gone is fine.
    pub async fn remove_resource(&self, container: &str) -> Result<(), RuntimeError> {
        self.remove_resource_container(container).await?;
        self.remove_network(container).await?;
        info!(%container, "resource removed");
        Ok(())
    }

    /// Stops a resource's container (a clean shutdown of its engine, up to 60 s); it stays
    /// stopped (its restart policy is `unless-stopped`). Fine if it is gone or stopped.
    pub async fn stop_resource(&self, container: &str) -> Result<(), RuntimeError> {
        let opts = bollard::query_parameters::StopContainerOptions {
            signal: None,
            t: Some(60),
        };
        match self.docker.stop_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(RuntimeError::docker(format!("stop {container}"), e)),
        }
    }

    /// Removes one container of a resource (the primary or a replica) and its volume, not
    /// the private network its replicas may still be on. Whatever is already gone is fine.
    pub async fn remove_resource_container(&self, container: &str) -> Result<(), RuntimeError> {
        match self
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptions {
                    force: true,
                    v: false,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(RuntimeError::docker(format!("remove {container}"), e)),
        }
        match self
            .docker
            .remove_volume(container, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(RuntimeError::docker(
                    format!("remove volume {container}"),
                    e,
                ))
            }
        }
        info!(%container, "resource container removed");
        Ok(())
    }

    /// Runs `cmd` in a running container as root and waits for it.
    pub async fn exec_in(
        &self,
        container: &str,
        cmd: Vec<String>,
    ) -> Result<ExecOutcome, RuntimeError> {
        let what = cmd.join(" ");
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| RuntimeError::docker(format!("exec '{what}' in {container}"), e))?;
        let started = self
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|e| RuntimeError::docker(format!("start exec '{what}' in {container}"), e))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = started
        {
            while let Some(item) = out.next().await {
                match item {
                    Ok(log) => {
                        if output.len() < MAX_EXEC_OUTPUT {
                            output.push_str(&String::from_utf8_lossy(&log.into_bytes()));
                        }
                    }
                    Err(e) => {
                        return Err(RuntimeError::docker(
                            format!("read exec '{what}' in {container}"),
                            e,
                        ))
                    }
                }
            }
        }
        let inspect = self.docker.inspect_exec(&exec.id).await.map_err(|e| {
            RuntimeError::docker(format!("inspect exec '{what}' in {container}"), e)
        })?;
        output.truncate(MAX_EXEC_OUTPUT);
        Ok(ExecOutcome {
            code: inspect.exit_code.unwrap_or(-1),
            output,
        })
    }
}

fn check_exec(container: &str, step: &str, out: ExecOutcome) -> Result<(), RuntimeError> {
    if out.code == 0 {
        return Ok(());
    }
    Err(RuntimeError::ResourceCommand {
        container: container.to_string(),
        step: step.to_string(),
        code: out.code,
        output: out.output.trim().to_string(),
    })
}

fn already_connected(e: &bollard::errors::Error) -> bool {
    e.to_string().contains("already exists in network")
}

fn not_connected(e: &bollard::errors::Error) -> bool {
    e.to_string().contains("is not connected")
}

/// A tar holding one file at `path` (relative to the archive's root).
fn single_file_tar(path: &str, data: &[u8], mode: u32) -> Result<Vec<u8>, RuntimeError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    let io = |source| RuntimeError::Io {
        context: "packing a snapshot for upload".to_string(),
        source,
    };
    builder.append_data(&mut header, path, data).map_err(io)?;
    builder.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_tar_round_trips() {
        let tar = single_file_tar("data/.sprout-restore", b"hello", 0o644).unwrap();
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
        let mut entries = archive.entries().unwrap();
        let entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("data/.sprout-restore"));
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        assert_eq!(entry.size(), 5);
    }
}
