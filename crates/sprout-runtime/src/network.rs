//! The per-environment bridge networks instances are confined to.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use tracing::info;

use crate::error::{is_not_found, status_of};
use crate::{key_lock, label_filters, Runtime, RuntimeError};

impl Runtime {
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

    pub(crate) async fn network_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
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
}
