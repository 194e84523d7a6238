//! The Docker driver of Sprout: platform images, golden bakes, networks, instance
//! containers and their logs. It is the only crate that speaks to a Docker engine.

mod bake;
mod container;
mod error;
mod gateway;
mod instance;
mod logs;
mod network;
mod platform;
mod resource;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use bollard::query_parameters::{ImportImageOptions, RemoveImageOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;
use tracing::{info, warn};

pub(crate) use container::{confined, on_network, Size};
use error::is_not_found;
pub use error::RuntimeError;
pub use instance::{ContainerInfo, InstanceSpec, StartedInstance};
pub(crate) use logs::LineSplitter;
pub use platform::{buildable_image, catalogue_platform, CATALOGUE, RESOURCE_IMAGES};
pub use resource::{ExecOutcome, ResourceSpec};
pub use sprout_core::model::BuildLimits;

/// Seconds bollard waits for response headers. Generous because commits of big images
/// and stops with long grace periods are legitimately slow; streams are not bounded by it.
const CLIENT_TIMEOUT_SECS: u64 = 300;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
