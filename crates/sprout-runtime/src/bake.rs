//! Golden image bakes: base image + bundle in /app + build step, committed as one image.

use std::path::PathBuf;

use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

use crate::error::is_not_found;
use crate::{BakeSpec, BuildLimits, LineSplitter, Runtime, RuntimeError};

/// Archives the contents of `dir` under `prefix/` (so the upload creates the directory
/// even on a base image without it). Ownership is normalised to root and mtimes fixed,
/// so the image does not depend on who unpacked the bundle on the host; symlinks are
/// kept as links (bundle validation, upstream, rejects those that leave the bundle).
pub(crate) async fn tar_dir(dir: PathBuf, prefix: &'static str) -> Result<Vec<u8>, RuntimeError> {
    let path = dir.clone();
    let res = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a directory",
            ));
        }
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        builder.append_dir_all(prefix, &dir)?;
        builder.into_inner()
    })
    .await;
    match res {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(source)) => Err(RuntimeError::Bundle { path, source }),
        Err(join) => Err(RuntimeError::Bundle {
            path,
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

/// Uploads a tar (entries under `app/`) at the container's root.
pub(crate) async fn upload_app(
    docker: &Docker,
    container: &str,
    tar: Vec<u8>,
) -> Result<(), RuntimeError> {
    let opts = UploadToContainerOptions {
        path: "/".to_string(),
        ..Default::default()
    };
    debug!(%container, bytes = tar.len(), "uploading bundle to /app");
    docker
        .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| RuntimeError::docker(format!("upload bundle to {container}:/app"), e))
}

/// Splits `repo[:tag]` (a registry port is not a tag); the tag defaults to `latest`.
pub(crate) fn split_reference(image: &str) -> Option<(String, String)> {
    if image.is_empty() || image.contains('@') || image.chars().any(char::is_whitespace) {
        return None;
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    };
    if repo.is_empty() || repo.ends_with('/') || tag.is_empty() {
        return None;
    }
    Some((repo.to_string(), tag.to_string()))
}

/// `base` with every `KEY=...` of `overrides` replacing or appended.
fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_string();
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| !overrides.iter().any(|o| key(o) == key(b)))
        .cloned()
        .collect();
    out.extend(overrides.iter().cloned());
    out
}

/// Removes the build container when dropped, so a cancelled bake (a timeout around the
/// future) still leaves nothing behind.
struct BuildContainer {
    docker: Docker,
    id: String,
    armed: bool,
}

impl BuildContainer {
    async fn remove(mut self) {
        self.armed = false;
        remove_quietly(&self.docker, &self.id).await;
    }
}

impl Drop for BuildContainer {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { remove_quietly(&docker, &id).await });
        }
    }
}

async fn remove_quietly(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => debug!(container = %id, "build container removed"),
        Err(e) if is_not_found(&e) => {}
        Err(e) => warn!(container = %id, error = %e, "could not remove build container"),
    }
}

/// The build container's limits, and the confinement every container gets.
fn build_host_config(limits: &BuildLimits) -> HostConfig {
    let memory = i64::from(limits.memory_mib) * 1024 * 1024;
    crate::confined(
        HostConfig {
            nano_cpus: Some(i64::from(limits.millicpus) * 1_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            ..Default::default()
        },
        limits.pids,
    )
}

/// Passes build output on to the version's log up to `max` bytes, then says once that
/// the rest was left out (the build itself goes on; its exit code decides).
struct CappedLog<'a> {
    log: &'a UnboundedSender<String>,
    left: usize,
    max: usize,
    capped: bool,
}

impl CappedLog<'_> {
    fn send(&mut self, line: String) {
        if self.capped {
            return;
        }
        if line.len() + 1 > self.left {
            self.capped = true;
            let _ = self.log.send(format!(
                "[build log capped at {} bytes: the rest of the output is left out]",
                self.max
            ));
            return;
        }
        self.left -= line.len() + 1;
        let _ = self.log.send(line);
    }
}

pub(crate) async fn bake(
    rt: &Runtime,
    spec: &BakeSpec,
    log: &UnboundedSender<String>,
) -> Result<(), RuntimeError> {
    let (repo, tag) = split_reference(&spec.image)
        .ok_or_else(|| RuntimeError::InvalidImage(spec.image.clone()))?;
    let docker = &rt.docker;
    let base = match docker.inspect_image(&spec.base_image).await {
        Ok(b) => b,
        Err(e) if is_not_found(&e) => {
            return Err(RuntimeError::ImageMissing {
                image: spec.base_image.clone(),
            })
        }
        Err(e) => {
            return Err(RuntimeError::docker(
                format!("inspect image {}", spec.base_image),
                e,
            ))
        }
    };
    let base_cfg = base.config.unwrap_or_default();
    let base_entrypoint = base_cfg.entrypoint.filter(|e| !e.is_empty());
    // Archive first: a bad bundle should fail before anything exists on the engine.
    let tar = tar_dir(spec.bundle_dir.clone(), "app").await?;

    info!(image = %spec.image, base = %spec.base_image, "baking golden image");
    let _ = log.send(format!("baking {} from {}", spec.image, spec.base_image));

    let build_cmd = spec
        .build_script
        .as_ref()
        .map(|s| vec!["sh".to_string(), "-c".to_string(), s.clone()]);
    let body = ContainerCreateBody {
        image: Some(spec.base_image.clone()),
        cmd: build_cmd.clone(),
        // The base's entrypoint would swallow `sh -c`; an empty string clears it.
        entrypoint: match (&build_cmd, &base_entrypoint) {
            (Some(_), Some(_)) => Some(vec![String::new()]),
            _ => None,
        },
        working_dir: Some("/app".to_string()),
        env: Some(spec.env.clone()),
        host_config: Some(build_host_config(&spec.limits)),
        ..Default::default()
    };
    let created = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|e| RuntimeError::docker("create build container", e))?;
    let container = BuildContainer {
        docker: docker.clone(),
        id: created.id,
        armed: true,
    };
    // Past the time limit the build's future is dropped and its container removed below.
    let limit = spec.limits.timeout;
    let result = tokio::time::timeout(limit, run_build(docker, &container.id, spec, tar, log))
        .await
        .unwrap_or_else(|_| {
            Err(RuntimeError::BuildTimedOut {
                image: spec.image.clone(),
                secs: limit.as_secs(),
            })
        });
    let result = match result {
        Ok(()) => {
            commit(
                docker,
                &container.id,
                spec,
                &repo,
                &tag,
                base_cfg.cmd,
                base_entrypoint,
                base_cfg.env,
            )
            .await
        }
        Err(e) => Err(e),
    };
    container.remove().await;
    match &result {
        Ok(()) => {
            info!(image = %spec.image, "golden image baked");
            let _ = log.send(format!("image {} ready", spec.image));
        }
        Err(e) => {
            warn!(image = %spec.image, error = %e, "bake failed");
            let _ = log.send(format!("bake of {} failed: {e}", spec.image));
        }
    }
    result
}

async fn run_build(
    docker: &Docker,
    id: &str,
    spec: &BakeSpec,
    tar: Vec<u8>,
    log: &UnboundedSender<String>,
) -> Result<(), RuntimeError> {
    upload_app(docker, id, tar).await?;
    if spec.build_script.is_none() {
        return Ok(());
    }
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await
        .map_err(|e| RuntimeError::docker("start build container", e))?;

    // Follow the logs until the container stops; they include everything since start.
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".to_string(),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(opts));
    let mut splitter = LineSplitter::default();
    let max = spec.limits.max_log_bytes;
    let mut capped = CappedLog {
        log,
        left: max,
        max,
        capped: false,
    };
    let mut emit = |lines: Vec<String>| {
        for line in lines {
            debug!(image = %spec.image, line = %line, "build output");
            capped.send(line);
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                if splitter.push(chunk.as_ref()) > 0 {
                    emit(splitter.take_lines());
                }
            }
            Err(e) => {
                // Losing the log stream is not a build failure; the exit code decides.
                warn!(image = %spec.image, error = %e, "build log stream broke");
                break;
            }
        }
    }
    emit(splitter.finish());

    let wait = WaitContainerOptions {
        condition: "not-running".to_string(),
    };
    let mut waits = docker.wait_container(id, Some(wait));
    let code = match waits.next().await {
        Some(Ok(resp)) => resp.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        Some(Err(e)) => return Err(RuntimeError::docker("wait for build container", e)),
        None => {
            return Err(RuntimeError::docker(
                "wait for build container",
                bollard::errors::Error::DockerStreamError {
                    error: "wait stream ended without a status".to_string(),
                },
            ))
        }
    };
    if code != 0 {
        return Err(RuntimeError::BuildFailed {
            image: spec.image.clone(),
            code,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn commit(
    docker: &Docker,
    id: &str,
    spec: &BakeSpec,
    repo: &str,
    tag: &str,
    base_cmd: Option<Vec<String>>,
    base_entrypoint: Option<Vec<String>>,
    base_env: Option<Vec<String>>,
) -> Result<(), RuntimeError> {
    // The engine fills unset fields from the build container's config, whose Cmd is the
    // build script: set Cmd/Entrypoint back to the base's so the image does not rerun it.
    let cmd = base_cmd
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string()]);
    let config = ContainerConfig {
        working_dir: Some("/app".to_string()),
        env: Some(merge_env(&base_env.unwrap_or_default(), &spec.env)),
        labels: Some(spec.labels.clone()),
        cmd: Some(cmd),
        entrypoint: base_entrypoint,
        ..Default::default()
    };
    let opts = CommitContainerOptions {
        container: Some(id.to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        comment: Some("sprout golden image".to_string()),
        pause: false,
        ..Default::default()
    };
    docker
        .commit_container(opts, config)
        .await
        .map(|_| ())
        .map_err(|e| RuntimeError::docker(format!("commit {}", spec.image), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(split_reference("sprout/app:v1"), s("sprout/app", "v1"));
        assert_eq!(split_reference("sprout/app"), s("sprout/app", "latest"));
        assert_eq!(
            split_reference("reg:5000/sprout/app"),
            s("reg:5000/sprout/app", "latest")
        );
        assert_eq!(split_reference("reg:5000/app:2"), s("reg:5000/app", "2"));
        assert_eq!(split_reference(""), None);
        assert_eq!(split_reference("app:"), None);
        assert_eq!(split_reference(":x"), None);
        assert_eq!(split_reference("a b"), None);
    }

    #[test]
    fn build_log_is_capped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut log = CappedLog {
                log: &tx,
                left: 10,
                max: 10,
                capped: false,
            };
            for line in ["abcd", "efgh", "ijkl", "m"] {
                log.send(line.to_string());
            }
        }
        let mut got = Vec::new();
        while let Ok(line) = rx.try_recv() {
            got.push(line);
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(&got[..2], ["abcd", "efgh"]);
        assert!(got[2].contains("capped at 10 bytes"), "{got:?}");
    }

    #[test]
    fn env_merge_overrides_by_key() {
        let base = vec!["PATH=/bin".to_string(), "LANG=C".to_string()];
        let over = vec!["LANG=C.UTF-8".to_string(), "X=1".to_string()];
        assert_eq!(
            merge_env(&base, &over),
            vec!["PATH=/bin", "LANG=C.UTF-8", "X=1"]
        );
    }
}
