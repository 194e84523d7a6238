//! The resources attached to an environment, as its status, health and dashboard show them.

use super::Environments;
use crate::error::Result;
use sprout_core::api;

impl Environments {
    /// The resources attached to the environment `env_id`, by name, with their last health
    /// check (attachments of every state: `attaching`, `attached`, `detaching`).
    pub(crate) async fn attached_resources(
        &self,
        env_id: i64,
    ) -> Result<Vec<api::AttachedResource>> {
        let store = self.shared.store();
        let mut out = Vec::new();
        for a in store.attachments(None, Some(env_id)).await? {
            let r = store.resource_by_id(a.resource_id).await?;
            out.push(api::AttachedResource {
                name: r.name,
                kind: r.kind,
                status: r.status,
                health: r.health,
                health_checked_at: r.health_at,
                prefix: a.prefix.map(String::from),
                attachment: a.state,
            });
        }
        Ok(out)
    }
}
