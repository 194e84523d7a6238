//! The reconcile plan: given what the store wants and what Docker runs, the next step.
//! Level-triggered: the same inputs always give the same plan, so a restarted control plane
//! picks up where the last one stopped.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the store says an environment should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub count: u32,
    pub version: String,
    /// False once the environment is terminating: every instance goes.
    pub live: bool,
    pub zones: Vec<String>,
}

/// One instance as the runtime and the balancer report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub version: String,
    pub zone: String,
    pub running: bool,
    /// Passed its health check (always false for an instance still starting).
    pub healthy: bool,
    /// Orders instances by age: larger is newer.
    pub seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveReason {
    /// The container exited or was killed.
    Exited,
    /// More instances than desired.
    Surplus,
    /// Runs a version the environment no longer wants, and the new set is healthy.
    Replaced,
    /// The environment is terminating.
    Terminating,
}

impl RemoveReason {
    pub fn describe(self) -> &'static str {
        match self {
            RemoveReason::Exited => "the container exited",
            RemoveReason::Surplus => "more instances than desired",
            RemoveReason::Replaced => "replaced by the new version",
            RemoveReason::Terminating => "the environment is terminating",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Zones of the instances to start, one entry per instance, all of the desired version.
    pub start: Vec<String>,
    pub remove: Vec<(String, RemoveReason)>,
    /// True when nothing is left to do and every desired instance is healthy.
    pub converged: bool,
}

impl Plan {
    pub fn is_idle(&self) -> bool {
        self.start.is_empty() && self.remove.is_empty()
    }
}

/// Picks zones for `n` new instances so the spread stays even (skew ≤ 1).
/// Ties go to the zone listed first, so placement is deterministic.
pub fn place(n: usize, zones: &[String], current: &BTreeMap<String, usize>) -> Vec<String> {
    if zones.is_empty() {
        return Vec::new();
    }
    let mut counts: Vec<(String, usize)> = zones
        .iter()
        .map(|z| (z.clone(), current.get(z).copied().unwrap_or(0)))
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some((zone, count)) = counts
            .iter_mut()
            .enumerate()
            .min_by_key(|(i, (_, c))| (*c, *i))
            .map(|(_, entry)| entry)
        else {
            break;
        };
        *count += 1;
        out.push(zone.clone());
    }
    out
}

/// The next step for one environment.
///
/// New instances start beside the old ones; old-version instances leave only once the full
/// desired count of the new version is healthy, so a deploy never empties the pool.
pub fn plan(desired: &Desired, observed: &[Observed]) -> Plan {
    let mut out = Plan::default();
    if !desired.live {
        out.remove = observed
            .iter()
            .map(|o| (o.id.clone(), RemoveReason::Terminating))
            .collect();
        out.converged = observed.is_empty();
        return out;
    }

    for dead in observed.iter().filter(|o| !o.running) {
        out.remove.push((dead.id.clone(), RemoveReason::Exited));
    }
    let mut current: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.running && o.version == desired.version)
        .collect();
    let old: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.running && o.version != desired.version)
        .collect();
    let want = desired.count as usize;

    if current.len() > want {
        // Newest first, so the instances that proved themselves stay.
        current.sort_by_key(|o| std::cmp::Reverse(o.seq));
        let surplus = current.len() - want;
        for extra in current.drain(..surplus) {
            out.remove.push((extra.id.clone(), RemoveReason::Surplus));
        }
    } else if current.len() < want {
        let mut per_zone = BTreeMap::new();
        for o in &current {
            *per_zone.entry(o.zone.clone()).or_insert(0) += 1;
        }
        out.start = place(want - current.len(), &desired.zones, &per_zone);
    }

    let new_set_healthy = current.len() == want && current.iter().all(|o| o.healthy);
    if new_set_healthy {
        for o in &old {
            out.remove.push((o.id.clone(), RemoveReason::Replaced));
        }
    }
    out.converged = out.is_idle() && old.is_empty() && new_set_healthy;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn want(count: u32, version: &str) -> Desired {
        Desired {
            count,
            version: version.into(),
            live: true,
            zones: zones(),
        }
    }
    fn inst(
        id: &str,
        version: &str,
        zone: &str,
        running: bool,
        healthy: bool,
        seq: i64,
    ) -> Observed {
        Observed {
            id: id.into(),
            version: version.into(),
            zone: zone.into(),
            running,
            healthy,
            seq,
        }
    }

    #[test]
    fn launch_spreads_over_zones() {
        let p = plan(&want(3, "v1"), &[]);
        assert_eq!(p.start, vec!["a", "b", "a"]);
        assert!(!p.converged);
    }

    #[test]
    fn steady_state_converges() {
        let obs = [
            inst("i1", "v1", "a", true, true, 1),
            inst("i2", "v1", "b", true, true, 2),
        ];
        let p = plan(&want(2, "v1"), &obs);
        assert!(p.is_idle());
        assert!(p.converged);
    }

    #[test]
    fn starting_instances_are_not_converged() {
        let obs = [
            inst("i1", "v1", "a", true, false, 1),
            inst("i2", "v1", "b", true, true, 2),
        ];
        let p = plan(&want(2, "v1"), &obs);
        assert!(p.is_idle());
        assert!(!p.converged);
    }

    #[test]
    fn dead_instance_replaced_in_its_zone_gap() {
        let obs = [
            inst("i1", "v1", "a", false, false, 1),
            inst("i2", "v1", "b", true, true, 2),
        ];
        let p = plan(&want(2, "v1"), &obs);
        assert_eq!(p.remove, vec![("i1".to_string(), RemoveReason::Exited)]);
        assert_eq!(p.start, vec!["a"]);
    }

    #[test]
    fn deploy_keeps_old_until_new_healthy() {
        let old = [
            inst("i1", "v1", "a", true, true, 1),
            inst("i2", "v1", "b", true, true, 2),
        ];
        let p = plan(&want(2, "v2"), &old);
        assert_eq!(p.start.len(), 2);
        assert!(p.remove.is_empty());

        let mid = [
            old[0].clone(),
            old[1].clone(),
            inst("i3", "v2", "a", true, true, 3),
            inst("i4", "v2", "b", true, false, 4),
        ];
        let p = plan(&want(2, "v2"), &mid);
        assert!(p.is_idle(), "old stays while a new one is unhealthy: {p:?}");

        let done = [
            old[0].clone(),
            old[1].clone(),
            inst("i3", "v2", "a", true, true, 3),
            inst("i4", "v2", "b", true, true, 4),
        ];
        let p = plan(&want(2, "v2"), &done);
        assert_eq!(p.remove.len(), 2);
        assert!(p.remove.iter().all(|(_, r)| *r == RemoveReason::Replaced));
        assert!(!p.converged);
    }

    #[test]
    fn scale_in_removes_newest() {
        let obs = [
            inst("i1", "v1", "a", true, true, 1),
            inst("i2", "v1", "b", true, true, 2),
            inst("i3", "v1", "a", true, true, 3),
        ];
        let p = plan(&want(2, "v1"), &obs);
        assert_eq!(p.remove, vec![("i3".to_string(), RemoveReason::Surplus)]);
    }

    #[test]
    fn terminate_removes_all() {
        let obs = [inst("i1", "v1", "a", true, true, 1)];
        let mut d = want(2, "v1");
        d.live = false;
        let p = plan(&d, &obs);
        assert_eq!(
            p.remove,
            vec![("i1".to_string(), RemoveReason::Terminating)]
        );
        assert!(!p.converged);
        assert!(plan(&d, &[]).converged);
    }

    #[test]
    fn placement_is_even() {
        let mut cur = BTreeMap::new();
        cur.insert("a".to_string(), 2);
        assert_eq!(place(3, &zones(), &cur), vec!["b", "b", "a"]);
        assert!(place(2, &[], &cur).is_empty());
    }
}
