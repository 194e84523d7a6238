//! The platform catalogue and the offline build of its images.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::RuntimeError;

/// The build script, embedded so the binary works without the source tree.
const BUILD_SCRIPT: &str = include_str!("../../../docker/build-platform.sh");
/// The resource images' entrypoint, which the script installs next to itself.
pub(crate) const RESOURCE_ENTRYPOINT: &str = include_str!("../../../docker/resource-entrypoint.sh");

/// (platform name, image repository) of the catalogue.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("python", "sprout/platform-python"),
    ("static", "sprout/platform-static"),
];

/// (resource kind, image repository) of the resource images the same script builds.
pub const RESOURCE_IMAGES: &[(&str, &str)] = &[
    ("postgres", "sprout/resource-postgres"),
    ("mysql", "sprout/resource-mysql"),
    ("redis", "sprout/resource-redis"),
];

/// The script argument (platform or resource kind) that builds `image`, if it builds it.
pub fn buildable_image(image: &str) -> Option<&'static str> {
    let repo = image.strip_suffix(":latest").unwrap_or(image);
    catalogue_platform(image).or_else(|| {
        RESOURCE_IMAGES
            .iter()
            .find(|(_, r)| *r == repo)
            .map(|(name, _)| *name)
    })
}

/// The catalogue platform name an image reference stands for, if any.
/// Accepts the bare repository or `:latest` (the tag the script creates).
pub fn catalogue_platform(image: &str) -> Option<&'static str> {
    let repo = image.strip_suffix(":latest").unwrap_or(image);
    CATALOGUE
        .iter()
        .find(|(_, r)| *r == repo)
        .map(|(name, _)| *name)
}

/// Runs the build script for `platform`, streaming its output to `log` and tracing.
pub(crate) async fn build(
    platform: &str,
    image: &str,
    docker_host: Option<&str>,
    log: &UnboundedSender<String>,
) -> Result<(), RuntimeError> {
    let fail = |detail: String| RuntimeError::PlatformBuild {
        image: image.to_string(),
        detail,
    };
    let dir = tempfile::tempdir().map_err(|e| RuntimeError::Io {
        context: "creating a temporary directory for the platform build".to_string(),
        source: e,
    })?;
    let script = dir.path().join("build-platform.sh");
    tokio::fs::write(&script, BUILD_SCRIPT)
        .await
        .map_err(|e| RuntimeError::Io {
            context: format!("writing {}", script.display()),
            source: e,
        })?;
    let entrypoint = dir.path().join("resource-entrypoint.sh");
    tokio::fs::write(&entrypoint, RESOURCE_ENTRYPOINT)
        .await
        .map_err(|e| RuntimeError::Io {
            context: format!("writing {}", entrypoint.display()),
            source: e,
        })?;

    info!(%platform, %image, "building platform image");
    let _ = log.send(format!(
        "building platform image {image} (this can take minutes)"
    ));
    let mut cmd = Command::new("sh");
    cmd.arg(&script)
        .arg(platform)
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(host) = docker_host {
        // The script's `docker import` must land on the engine this runtime talks to.
        cmd.env("DOCKER_HOST", host);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run sh: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (_, _, status) = tokio::join!(
        forward(stdout, platform, "stdout", log),
        forward(stderr, platform, "stderr", log),
        child.wait()
    );
    let status = status.map_err(|e| fail(format!("waiting for the script: {e}")))?;
    if !status.success() {
        let code = status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| format!("exit code {c}"));
        warn!(%platform, %image, %code, "platform build failed");
        return Err(fail(format!("build-platform.sh ended with {code}")));
    }
    info!(%platform, %image, "platform image built");
    Ok(())
}

async fn forward<R: AsyncRead + Unpin>(
    reader: Option<R>,
    platform: &str,
    stream: &'static str,
    log: &UnboundedSender<String>,
) {
    let Some(reader) = reader else { return };
    let mut lines = BufReader::new(reader).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                info!(%platform, stream, line = %line, "platform build");
                // A dropped receiver just means nobody is watching any more.
                let _ = log.send(line);
            }
            Ok(None) => break,
            Err(e) => {
                warn!(%platform, stream, error = %e, "reading build output failed");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_lookup() {
        assert_eq!(catalogue_platform("sprout/platform-python"), Some("python"));
        assert_eq!(
            catalogue_platform("sprout/platform-static:latest"),
            Some("static")
        );
        assert_eq!(catalogue_platform("sprout/platform-static:v2"), None);
        assert_eq!(catalogue_platform("debian:bookworm"), None);
        assert_eq!(
            buildable_image("sprout/resource-postgres"),
            Some("postgres")
        );
        assert_eq!(
            buildable_image("sprout/platform-python:latest"),
            Some("python")
        );
        assert_eq!(buildable_image("sprout/resource-mongo"), None);
    }

    #[test]
    fn script_is_embedded() {
        assert!(BUILD_SCRIPT.contains("docker import"));
        assert!(BUILD_SCRIPT.contains("resource-entrypoint.sh"));
        assert!(RESOURCE_ENTRYPOINT.contains("sprout-resource"));
    }
}
