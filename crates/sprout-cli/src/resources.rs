//! Attached resources, as [`Client`] calls (`sprout resource …`).

use crate::client::Client;
use crate::error::CliError;
use reqwest::Method;
use sprout_core::resource::api::{
    AttachRequest, CreateResource, PromoteRequest, Resource, ResourceEvent, RestoreRequest,
    Snapshot,
};

impl Client {
    /// `GET /resources[?app=APP]`.
    pub async fn list_resources(&self, app: Option<&str>) -> Result<Vec<Resource>, CliError> {
        let query: Vec<(&str, String)> = app.map(|a| ("app", a.to_string())).into_iter().collect();
        self.get_json(&["resources"], &query).await
    }

    /// The application a resource belongs to: `app` if given, else found by name.
    pub async fn resource_app(&self, name: &str, app: Option<&str>) -> Result<String, CliError> {
        if let Some(app) = app {
            return Ok(app.to_string());
        }
        self.list_resources(None)
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.app)
            .ok_or_else(|| CliError::Usage(format!("resource '{name}' not found")))
    }

    pub async fn get_resource(&self, app: &str, name: &str) -> Result<Resource, CliError> {
        self.get_json(&["apps", app, "resources", name], &[]).await
    }

    pub async fn create_resource(
        &self,
        app: &str,
        req: &CreateResource,
    ) -> Result<Resource, CliError> {
        self.send_json(Method::POST, &["apps", app, "resources"], Some(req))
            .await
    }

    pub async fn attach_resource(
        &self,
        app: &str,
        name: &str,
        req: &AttachRequest,
    ) -> Result<Resource, CliError> {
        self.send_json(
            Method::POST,
            &["apps", app, "resources", name, "attachments"],
            Some(req),
        )
        .await
    }

    pub async fn detach_resource(
        &self,
        app: &str,
        name: &str,
        env: &str,
    ) -> Result<Resource, CliError> {
        self.send_json::<(), _>(
            Method::DELETE,
            &["apps", app, "resources", name, "attachments", env],
            None,
        )
        .await
    }

    pub async fn promote_resource(
        &self,
        app: &str,
        name: &str,
        replica: u32,
    ) -> Result<Resource, CliError> {
        self.send_json(
            Method::POST,
            &["apps", app, "resources", name, "promote"],
            Some(&PromoteRequest { replica }),
        )
        .await
    }

    pub async fn snapshot_resource(&self, app: &str, name: &str) -> Result<Snapshot, CliError> {
        self.send_json::<(), _>(
            Method::POST,
            &["apps", app, "resources", name, "snapshots"],
            None,
        )
        .await
    }

    pub async fn resource_snapshots(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Vec<Snapshot>, CliError> {
        self.get_json(&["apps", app, "resources", name, "snapshots"], &[])
            .await
    }

    pub async fn resource_events(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Vec<ResourceEvent>, CliError> {
        self.get_json(&["apps", app, "resources", name, "events"], &[])
            .await
    }

    pub async fn restore_snapshot(&self, id: i64, to: &str) -> Result<Resource, CliError> {
        self.send_json(
            Method::POST,
            &["snapshots", &id.to_string(), "restore"],
            Some(&RestoreRequest { to: to.to_string() }),
        )
        .await
    }

    pub async fn delete_resource(
        &self,
        app: &str,
        name: &str,
        skip_final_snapshot: bool,
    ) -> Result<Resource, CliError> {
        let url = self.api_url(&["apps", app, "resources", name])?;
        let req = self
            .request(Method::DELETE, url)
            .query(&[("skip_final_snapshot", skip_final_snapshot.to_string())]);
        crate::client::decode(self.send(req).await?).await
    }
}
