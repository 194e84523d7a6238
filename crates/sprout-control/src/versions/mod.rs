//! Application versions: receiving a bundle (streamed to disk, hashed as it arrives),
//! checking it, storing it content-addressed, and baking its golden image.

use crate::error::{ControlError, Result};
use crate::shared::Shared;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sprout_core::api;
use sprout_core::bundle::ArchiveFormat;
use sprout_core::manifest::platform_image;
use sprout_core::{AppName, VersionLabel, VersionStatus};
use sprout_runtime::BakeSpec;
use sprout_store::{NewVersion, VersionRow};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

mod apps;
mod bundle_io;

pub use bundle_io::{unpack_bundle, UnpackedBundle};

/// An upload as the API hands it over.
pub struct IncomingBundle<S> {
    pub app: String,
    pub label: String,
    pub description: Option<String>,
    /// `Content-Length`, when the client sent one: lets an oversized upload fail before it is read.
    pub declared_size: Option<u64>,
    pub body: S,
    pub started_by: Option<String>,
}

/// Removes a path when dropped unless defused: nothing half-written survives an error.
struct Cleanup(Option<PathBuf>);

impl Cleanup {
    fn defuse(&mut self) {
        self.0 = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

pub(crate) fn version_view(row: &VersionRow, with_log: bool) -> api::Version {
    let manifest = &row.manifest;
    api::Version {
        app: row.app.clone(),
        label: row.label.clone(),
        status: row.status,
        sha256: row.sha256.clone(),
        size_bytes: u64::try_from(row.size_bytes).unwrap_or(0),
        platform: row.platform.clone(),
        image: row.image.clone(),
        processes: manifest.procfile.processes.keys().cloned().collect(),
        error: row.error.clone(),
        created_at: row.created_at,
        built_at: row.built_at,
        build_log: with_log.then(|| row.build_log.clone()),
    }
}

pub(crate) fn golden_image(app: &str, label: &str) -> String {
    format!("sprout/{app}:{label}")
}

/// Applications and their versions: bundle intake and builds. Owns the lock that lets one
/// upload at a time place its bundle and record its version.
#[derive(Clone)]
pub(crate) struct Versions {
    shared: Arc<Shared>,
    /// Held while an upload moves its bundle into place and records its version, so two
    /// uploads of one label cannot both get that far (see `upload_version`).
    placing: Arc<tokio::sync::Mutex<()>>,
}

impl Versions {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            placing: Default::default(),
        }
    }

    /// Receives, checks and stores a bundle, records the version (`processing`) and starts
    /// its build. Bad input changes nothing: no row, no file.
    pub(crate) async fn upload_version<S, E>(
        &self,
        incoming: IncomingBundle<S>,
    ) -> Result<api::Version>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let app_name = AppName::parse(&incoming.app)?;
        let label = VersionLabel::parse(&incoming.label)?;
        let app = self
            .shared
            .store()
            .get_app(app_name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app_name}' not found")))?;
        // A label whose build failed may be pushed again: the new upload replaces it.
        if self
            .shared
            .store()
            .get_version(app_name.as_str(), label.as_str())
            .await?
            .is_some_and(|v| v.status != VersionStatus::Failed)
        {
            return Err(ControlError::Conflict(format!(
                "version '{label}' of '{app_name}' already exists"
            )));
        }
        let limit = self.shared.config().limits.max_archive_bytes;
        if incoming.declared_size.is_some_and(|size| size > limit) {
            return Err(ControlError::TooLarge { limit });
        }

        let tmp_dir = self.shared.config().bundles_dir().join("tmp");
        let nonce = format!("{:016x}", rand::random::<u64>());
        let tmp_archive = tmp_dir.join(format!("{nonce}.upload"));
        let mut archive_guard = Cleanup(Some(tmp_archive.clone()));
        let (sha256, size) = receive(incoming.body, &tmp_archive, limit).await?;

        let staging = tmp_dir.join(format!("{nonce}.unpacked"));
        let mut staging_guard = Cleanup(Some(staging.clone()));
        let limits = self.shared.config().limits;
        let (archive, dest) = (tmp_archive.clone(), staging.clone());
        let unpacked =
            tokio::task::spawn_blocking(move || bundle_io::unpack_bundle(&archive, &dest, limits))
                .await
                .map_err(|e| ControlError::Internal(format!("unpack task: {e}")))??;

        let ext = match unpacked.format {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        };
        // From here to the row, one upload at a time: the label is checked again (another
        // upload of it may have finished meanwhile), and bundle files this upload places are
        // removed unless its row is recorded, while no other upload can come to rely on them.
        let _placing = self.placing.lock().await;
        if let Some(existing) = self
            .shared
            .store()
            .get_version(app_name.as_str(), label.as_str())
            .await?
        {
            let replaced = existing.status == VersionStatus::Failed
                && self
                    .shared
                    .store()
                    .delete_failed_version(existing.id)
                    .await?;
            if !replaced {
                return Err(ControlError::Conflict(format!(
                    "version '{label}' of '{app_name}' already exists"
                )));
            }
            tracing::info!(app = %app_name, label = %label, "replacing a version whose build failed");
        }
        let final_dir = self.shared.bundle_dir(&sha256);
        let final_archive = self
            .shared
            .config()
            .bundles_dir()
            .join(format!("{sha256}.{ext}"));
        let mut placed_dir = Cleanup(None);
        let mut placed_archive = Cleanup(None);
        if !final_dir.exists() {
            tokio::fs::rename(&staging, &final_dir).await?;
            staging_guard.defuse();
            placed_dir = Cleanup(Some(final_dir));
        }
        if !final_archive.exists() {
            tokio::fs::rename(&tmp_archive, &final_archive).await?;
            archive_guard.defuse();
            placed_archive = Cleanup(Some(final_archive));
        }
        drop(staging_guard);
        drop(archive_guard);

        let manifest_json = serde_json::to_string(&unpacked.manifest)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let row = self
            .shared
            .store()
            .insert_version(&NewVersion {
                app_id: app.id,
                label: label.as_str(),
                description: incoming.description.as_deref(),
                sha256: &sha256,
                size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                format: ext,
                manifest: &manifest_json,
                platform: unpacked.manifest.config.platform(),
            })
            .await?;
        placed_dir.defuse();
        placed_archive.defuse();
        drop(_placing);
        tracing::info!(app = %app_name, label = %label, %sha256, size, entries = unpacked.entries, "version uploaded");
        self.spawn_build(row.clone());
        Ok(version_view(&row, false))
    }

    /// Deletes a version (refused while an environment runs it) and reclaims its image and,
    /// when no other version shares it, its bundle.
    pub(crate) async fn delete_version(&self, app: &str, label: &str) -> Result<()> {
        let app = AppName::parse(app)?;
        let label = VersionLabel::parse(label)?;
        // Under the upload lock: no upload is placing (and relying on) this bundle meanwhile.
        let _placing = self.placing.lock().await;
        let deleted = self
            .shared
            .store()
            .delete_version(app.as_str(), label.as_str())
            .await?;
        if let Some((sha256, format)) = &deleted.bundle {
            let dir = self.shared.bundle_dir(sha256);
            let archive = self
                .shared
                .config()
                .bundles_dir()
                .join(format!("{sha256}.{format}"));
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted version's bundle");
            }
            if let Err(e) = tokio::fs::remove_file(&archive).await {
                tracing::warn!(file = %archive.display(), error = %e, "could not remove a deleted version's archive");
            }
        }
        drop(_placing);
        if let Some(image) = &deleted.image {
            if let Err(e) = self.shared.runtime().remove_image(image).await {
                tracing::warn!(%image, error = %e, "could not remove a deleted version's image");
            }
        }
        tracing::info!(app = %app, label = %label, "version deleted");
        Ok(())
    }

    /// Builds in the background; the version row says how it went.
    pub(crate) fn spawn_build(&self, row: VersionRow) {
        let versions = self.clone();
        tokio::spawn(async move {
            let (app, label) = (row.app.clone(), row.label.clone());
            if let Err(e) = versions.build_version(row).await {
                tracing::error!(%app, %label, error = %e, "could not record the build's outcome");
            }
        });
    }

    /// Rebuilds versions a stopped control plane left `processing`.
    pub(crate) async fn resume_builds(&self) -> Result<()> {
        for row in self.shared.store().processing_versions().await? {
            tracing::info!(app = %row.app, label = %row.label, "resuming an interrupted build");
            self.spawn_build(row);
        }
        Ok(())
    }

    async fn build_version(&self, row: VersionRow) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let collector = tokio::spawn(async move {
            let mut log = String::new();
            while let Some(line) = rx.recv().await {
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        let image = golden_image(&row.app, &row.label);
        let outcome = self.bake(&row, &image, &tx).await;
        drop(tx);
        let log = collector.await.unwrap_or_default();
        match outcome {
            Ok(()) => {
                tracing::info!(app = %row.app, label = %row.label, %image, "version built");
                self.shared
                    .store()
                    .version_built(row.id, &image, &log)
                    .await?;
            }
            Err(e) => {
                tracing::warn!(app = %row.app, label = %row.label, error = %e, "version build failed");
                // A failed build leaves no image behind.
                let _ = self.shared.runtime().remove_image(&image).await;
                self.shared.store().version_failed(row.id, &e, &log).await?;
            }
        }
        Ok(())
    }

    async fn bake(
        &self,
        row: &VersionRow,
        image: &str,
        log: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> std::result::Result<(), String> {
        let manifest = &row.manifest;
        let base = platform_image(manifest.config.platform());
        let _ = log.send(format!("--> platform {base}"));
        self.shared
            .runtime()
            .ensure_platform(&base, log)
            .await
            .map_err(|e| e.to_string())?;
        let bundle_dir = self.shared.bundle_dir(&row.sha256);
        if !bundle_dir.is_dir() {
            return Err(format!(
                "the bundle {} is missing from the data directory",
                row.sha256
            ));
        }
        let labels = HashMap::from([
            (
                "sprout.server".to_string(),
                self.shared.server_id().to_string(),
            ),
            ("sprout.app".to_string(), row.app.clone()),
            ("sprout.version".to_string(), row.label.clone()),
        ]);
        let build_script = manifest
            .config
            .build
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_shell());
        let _ = log.send(format!("--> baking {image}"));
        let spec = BakeSpec {
            base_image: base,
            image: image.to_string(),
            bundle_dir,
            build_script,
            env: Vec::new(),
            labels,
            limits: self.shared.config().build_limits,
        };
        self.shared
            .runtime()
            .bake(&spec, log)
            .await
            .map_err(|e| e.to_string())?;
        let _ = log.send(format!("--> image {image} ready"));
        Ok(())
    }

    pub(crate) async fn list_versions(&self, app: &str) -> Result<Vec<api::Version>> {
        let app = AppName::parse(app)?;
        self.shared
            .store()
            .get_app(app.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{app}' not found")))?;
        Ok(self
            .shared
            .store()
            .list_versions(app.as_str())
            .await?
            .iter()
            .map(|r| version_view(r, false))
            .collect())
    }

    pub(crate) async fn get_version(&self, app: &str, label: &str) -> Result<api::Version> {
        let row = self
            .shared
            .store()
            .get_version(app, label)
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!("version '{label}' of '{app}' not found"))
            })?;
        Ok(version_view(&row, true))
    }
}

/// Streams the body to `path`, hashing it, and stops at `limit` bytes.
async fn receive<S, E>(mut body: S, path: &Path, limit: u64) -> Result<(String, u64)>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            // The API layer reports its own body limit as an error; surface it as 413.
            let text = e.to_string();
            if text.contains("length limit") {
                ControlError::TooLarge { limit }
            } else {
                ControlError::Invalid(format!("the upload was interrupted: {text}"))
            }
        })?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ControlError::TooLarge { limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    if size == 0 {
        return Err(ControlError::Bundle(
            sprout_core::bundle::BundleError::Empty,
        ));
    }
    Ok((hex::encode(hasher.finalize()), size))
}
