//! Zones: failure domains instances spread over. A zone is a Docker engine (or shares the
//! local one); `fail` takes it out of use (its instances are replaced elsewhere first),
//! `restore` brings it back (the reconciler evens the spread out again).

use crate::error::{ControlError, Result};
use crate::shared::Shared;
use sprout_core::api::Zone as ZoneView;
use sprout_store::EnvironmentStore as _;

impl Shared {
    /// Configured zones that are not marked failed.
    pub(crate) async fn available_zones(&self) -> Result<Vec<String>> {
        let failed = self.store().failed_zones().await?;
        Ok(self
            .config()
            .zones
            .iter()
            .filter(|z| !failed.contains(z))
            .cloned()
            .collect())
    }

    pub(crate) async fn zones(&self) -> Result<Vec<ZoneView>> {
        let failed = self.store().failed_zones().await?;
        let containers = self
            .list_containers(&[("sprout.server", self.server_id())])
            .await?;
        Ok(self
            .config()
            .zones
            .iter()
            .map(|z| ZoneView {
                name: z.clone(),
                engine: self.engine_key(z).to_string(),
                available: !failed.contains(z),
                instances: containers
                    .iter()
                    .filter(|c| c.running && c.zone() == z.as_str())
                    .count(),
            })
            .collect())
    }

    /// Simulates (or declares) an outage: Sprout stops using the zone.
    pub(crate) async fn fail_zone(&self, zone: &str, by: Option<&str>) -> Result<Vec<ZoneView>> {
        self.require_zone(zone)?;
        let available = self.available_zones().await?;
        if available.len() == 1 && available[0] == zone {
            return Err(ControlError::Conflict(format!(
                "zone {zone} is the last available zone; restore another first"
            )));
        }
        self.store().set_zone_failed(zone, true).await?;
        self.zone_event(&format!(
            "zone {zone} marked failed by {}: its instances move to the other zones",
            by.unwrap_or("system")
        ))
        .await?;
        self.wake();
        self.zones().await
    }

    pub(crate) async fn restore_zone(&self, zone: &str, by: Option<&str>) -> Result<Vec<ZoneView>> {
        self.require_zone(zone)?;
        self.store().set_zone_failed(zone, false).await?;
        self.zone_event(&format!(
            "zone {zone} restored by {}: instances spread over it again",
            by.unwrap_or("system")
        ))
        .await?;
        self.wake();
        self.zones().await
    }

    fn require_zone(&self, zone: &str) -> Result<()> {
        if self.config().zones.iter().any(|z| z == zone) {
            Ok(())
        } else {
            Err(ControlError::NotFound(format!(
                "zone '{zone}' not found (zones: {})",
                self.config().zones.join(", ")
            )))
        }
    }

    /// A zone change concerns every live environment: each gets the event.
    async fn zone_event(&self, message: &str) -> Result<()> {
        tracing::warn!(message, "zone change");
        let active = self.store().active_environments().await?;
        let ids = active
            .envs
            .iter()
            .map(|e| e.id)
            .chain(active.corrupt.iter().map(|c| c.id));
        for id in ids {
            self.store()
                .add_event(id, sprout_core::Severity::Warn, message)
                .await?;
        }
        Ok(())
    }
}
