//! Whether each Docker engine answers, and the events that tell an environment's users when
//! the engine its instances run on stops answering and when it answers again (a `dockerd`
//! restart, a host reboot). Nothing else changes for it: no operation fails, and once the
//! engine answers the reconciler replaces what died with it (see README, "Docker engine
//! restarts").

use crate::{Control, Result};
use sprout_core::Severity;
use sprout_store::{EnvRow, InstanceRow};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Engines that did not answer their last listing (by `engine_key`), and per environment
/// the zones it was told are out of reach.
#[derive(Default)]
pub(crate) struct Reach {
    down: HashSet<String>,
    told: HashSet<(i64, String)>,
}

impl Control {
    /// Records the outcome of listing engine `key`'s containers.
    pub(crate) fn engine_answered(&self, key: &str, answered: bool) {
        let Ok(mut reach) = self.inner.reach.lock() else {
            return;
        };
        if answered {
            if reach.down.remove(key) {
                tracing::info!(engine = %key, "a Docker engine answers again");
            }
        } else if reach.down.insert(key.to_string()) {
            tracing::warn!(engine = %key, "a Docker engine does not answer");
        }
    }

    /// Adds an event to `env` for each zone of its instances whose engine stopped answering,
    /// or answers again, since the last call.
    pub(crate) async fn note_engine_reach(
        &self,
        env: &EnvRow,
        rows: &[&InstanceRow],
    ) -> Result<()> {
        let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for row in rows {
            by_zone.entry(row.zone.as_str()).or_default().push(&row.id);
        }
        let mut messages = Vec::new();
        {
            let Ok(mut reach) = self.inner.reach.lock() else {
                return Ok(());
            };
            let zones: BTreeSet<String> = by_zone
                .keys()
                .map(|z| z.to_string())
                .chain(
                    reach
                        .told
                        .iter()
                        .filter(|(id, _)| *id == env.id)
                        .map(|(_, z)| z.clone()),
                )
                .collect();
            for zone in zones {
                let down = reach.down.contains(self.engine_key(&zone));
                let key = (env.id, zone.clone());
                if down && !reach.told.contains(&key) {
                    let ids = by_zone.get(zone.as_str()).cloned().unwrap_or_default();
                    messages.push((
                        Severity::Warn,
                        format!(
                            "the Docker engine of zone {zone} does not answer: instance(s) {} out of reach; Sprout replaces what died with it once it answers",
                            ids.join(", ")
                        ),
                    ));
                    reach.told.insert(key);
                } else if !down && reach.told.remove(&key) {
                    messages.push((
                        Severity::Info,
                        format!("the Docker engine of zone {zone} answers again"),
                    ));
                }
            }
        }
        for (severity, message) in messages {
            self.store().add_event(env.id, severity, &message).await?;
        }
        Ok(())
    }
}
