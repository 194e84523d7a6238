//! Applications: named containers for versions and environments.

use super::Versions;
use crate::error::{ControlError, Result};
use sprout_core::api;
use sprout_core::AppName;
use sprout_store::AppRow;

fn app_view(row: &AppRow) -> api::App {
    api::App {
        name: row.name.clone(),
        created_at: row.created_at,
        versions: u32::try_from(row.versions).unwrap_or(0),
        environments: u32::try_from(row.environments).unwrap_or(0),
    }
}

impl Versions {
    pub(crate) async fn create_app(&self, name: &str) -> Result<api::App> {
        let name = AppName::parse(name)?;
        let row = self.shared.store().create_app(name.as_str()).await?;
        tracing::info!(app = %name, "application created");
        Ok(app_view(&row))
    }

    pub(crate) async fn list_apps(&self) -> Result<Vec<api::App>> {
        Ok(self
            .shared
            .store()
            .list_apps()
            .await?
            .iter()
            .map(app_view)
            .collect())
    }

    /// Deletes an application with no environment left, and its versions' images.
    pub(crate) async fn delete_app(&self, name: &str) -> Result<()> {
        let name = AppName::parse(name)?;
        let images = self.shared.store().delete_app(name.as_str()).await?;
        for image in images {
            if let Err(e) = self.shared.runtime().remove_image(&image).await {
                tracing::warn!(%image, error = %e, "could not remove a deleted version's image");
            }
        }
        tracing::info!(app = %name, "application deleted");
        Ok(())
    }

    pub(crate) async fn require_app(&self, name: &str) -> Result<AppRow> {
        let name = AppName::parse(name)?;
        self.shared
            .store()
            .get_app(name.as_str())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("application '{name}' not found")))
    }
}
