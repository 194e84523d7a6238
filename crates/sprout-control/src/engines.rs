//! Whether each Docker engine answers, and the events that tell an environment's users when
//! the engine its instances run on stops answering and when it answers again (a `dockerd`
//! restart, a host reboot). Nothing else changes for it: no operation fails, and once the
//! engine answers the reconciler replaces what died with it (see README, "Docker engine
//! restarts").

use crate::error::{ControlError, Result};
use sprout_core::Severity;
use sprout_runtime::{ContainerInfo, Runtime};
use sprout_store::{EnvRow, InstanceRow, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

/// Engines that did not answer their last listing (by `engine_key`), and per environment
/// the zones it was told are out of reach.
#[derive(Default)]
pub(crate) struct Reach {
    down: HashSet<String>,
    told: HashSet<(i64, String)>,
}

/// The Docker engines: the local one, and those of zones on their own engine.
pub(crate) struct Engines {
    store: Store,
    local: Runtime,
    /// Runtimes of zones on their own engine.
    by_zone: HashMap<String, Runtime>,
    /// Zones on their own engine, and its endpoint (the engine's key).
    zone_endpoints: BTreeMap<String, String>,
    /// Every distinct engine once (the local one first), for listing containers.
    all: Vec<Runtime>,
    /// `engine_key` of each of `all`.
    keys: Vec<String>,
    /// Which engines answer.
    reach: Mutex<Reach>,
}

impl Engines {
    /// Connects to every zone's engine; an engine that cannot be reached is an error.
    pub(crate) async fn connect(
        store: Store,
        local: Runtime,
        zone_endpoints: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut by_zone = HashMap::new();
        let mut all = vec![local.clone()];
        let mut keys = vec!["local".to_string()];
        let mut by_endpoint: HashMap<String, Runtime> = HashMap::new();
        for (zone, endpoint) in zone_endpoints {
            let rt = match by_endpoint.get(endpoint) {
                Some(rt) => rt.clone(),
                None => {
                    let rt = Runtime::connect(endpoint).await.map_err(|e| {
                        ControlError::Unavailable(format!(
                            "zone {zone}: cannot reach {endpoint}: {e}"
                        ))
                    })?;
                    by_endpoint.insert(endpoint.clone(), rt.clone());
                    all.push(rt.clone());
                    keys.push(endpoint.clone());
                    rt
                }
            };
            by_zone.insert(zone.clone(), rt);
        }
        Ok(Self {
            store,
            local,
            by_zone,
            zone_endpoints: zone_endpoints.clone(),
            all,
            keys,
            reach: Default::default(),
        })
    }

    /// The local engine: builds, platform images, and every zone without its own engine.
    pub(crate) fn local(&self) -> &Runtime {
        &self.local
    }

    /// The engine a zone's instances run on.
    pub(crate) fn runtime_for(&self, zone: &str) -> &Runtime {
        self.by_zone.get(zone).unwrap_or(&self.local)
    }

    /// Every distinct engine once, the local one first.
    pub(crate) fn all(&self) -> &[Runtime] {
        &self.all
    }

    /// Identifies a zone's engine: zones with the same key share one engine.
    pub(crate) fn engine_key<'a>(&'a self, zone: &'a str) -> &'a str {
        self.zone_endpoints
            .get(zone)
            .map(String::as_str)
            .unwrap_or("local")
    }

    /// Containers with these labels on every engine. An engine that does not answer is
    /// skipped (and logged): its zone's instances are then replaced elsewhere.
    pub(crate) async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>> {
        let mut all = Vec::new();
        for (i, engine) in self.all.iter().enumerate() {
            let key = self.keys.get(i).map(String::as_str);
            match engine.list_instances(labels).await {
                Ok(found) => {
                    all.extend(found);
                    if let Some(key) = key {
                        self.engine_answered(key, true);
                    }
                }
                Err(e) => {
                    if let Some(key) = key {
                        self.engine_answered(key, false);
                    }
                    if i == 0 {
                        return Err(ControlError::Unavailable(format!("docker: {e}")));
                    }
                    tracing::debug!(error = %e, "a zone's Docker engine does not answer");
                }
            }
        }
        Ok(all)
    }

    /// Records the outcome of listing engine `key`'s containers.
    pub(crate) fn engine_answered(&self, key: &str, answered: bool) {
        let Ok(mut reach) = self.reach.lock() else {
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
            let Ok(mut reach) = self.reach.lock() else {
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
            self.store.add_event(env.id, severity, &message).await?;
        }
        Ok(())
    }
}
