//! The reconcile plan: given what the store wants and what Docker runs, the next step.
//! Level-triggered: the same inputs always give the same plan, so a restarted control plane
//! picks up where the last one stopped.

use crate::settings::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far a rollout may move from the desired count while it replaces instances:
/// Kubernetes' surge/unavailable, with Beanstalk's policies mapped onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Instances allowed above the desired count.
    pub max_surge: u32,
    /// Serving instances allowed below the desired count.
    pub max_unavailable: u32,
    /// Old instances leave only once the whole new set serves (immutable, traffic splitting).
    pub switch_at_once: bool,
    /// With `switch_at_once`: the new set has been accepted (traffic splitting's evaluation).
    pub promote: bool,
}

impl Rollout {
    /// No rollout in progress: replace what died, follow the count.
    pub fn steady() -> Self {
        Self {
            max_surge: 0,
            max_unavailable: 0,
            switch_at_once: false,
            promote: true,
        }
    }

    pub fn for_policy(policy: Policy, batch: u32, desired: u32) -> Self {
        let batch = batch.clamp(1, desired.max(1));
        let all = desired.max(1);
        match policy {
            Policy::AllAtOnce => Self {
                max_surge: all,
                max_unavailable: all,
                switch_at_once: false,
                promote: true,
            },
            Policy::Rolling => Self {
                max_surge: 0,
                max_unavailable: batch,
                switch_at_once: false,
                promote: true,
            },
            Policy::RollingWithAdditionalBatch => Self {
                max_surge: batch,
                max_unavailable: 0,
                switch_at_once: false,
                promote: true,
            },
            Policy::Immutable => Self {
                max_surge: all,
                max_unavailable: 0,
                switch_at_once: true,
                promote: true,
            },
            Policy::TrafficSplitting => Self {
                max_surge: all,
                max_unavailable: 0,
                switch_at_once: true,
                promote: false,
            },
        }
    }
}

/// What the store says an environment should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub count: u32,
    /// The revision every instance should run: the version plus the settings baked into
    /// an instance (type, properties, bootstrap).
    pub revision: String,
    /// False once the environment is terminating: every instance goes.
    pub live: bool,
    pub zones: Vec<String>,
    pub rollout: Rollout,
}

/// One instance as the runtime and the balancer report it. Draining instances are not
/// observed: they are already leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub revision: String,
    pub zone: String,
    pub running: bool,
    /// Passed its health check and serves (false while starting).
    pub healthy: bool,
    /// Served, then failed its health check past the unhealthy threshold.
    pub failing: bool,
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
    /// Runs a revision the environment no longer wants.
    Replaced,
    /// The environment is terminating.
    Terminating,
    /// Its health check fails (after it served).
    Unhealthy,
    /// Its zone is not available.
    ZoneUnavailable,
    /// Moves to a less loaded zone.
    Rebalance,
    /// A user restarted the environment's instances.
    Restart,
}

impl RemoveReason {
    pub fn describe(self) -> &'static str {
        match self {
            RemoveReason::Exited => "the container exited",
            RemoveReason::Surplus => "more instances than desired",
            RemoveReason::Replaced => "replaced by the new revision",
            RemoveReason::Terminating => "the environment is terminating",
            RemoveReason::Unhealthy => "it fails its health checks",
            RemoveReason::ZoneUnavailable => "its zone is not available",
            RemoveReason::Rebalance => "evening out the spread over the zones",
            RemoveReason::Restart => "restarted by a user",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Zones of the instances to start, one entry per instance, all of the desired revision.
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

/// The revision of an environment's instances: what, when it changes, needs new
/// instances (the version, the instance type, the bootstrap and the properties).
pub fn revision(
    version: &str,
    instance_type: &str,
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain(b"\0") {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(instance_type.as_bytes());
    feed(bootstrap.as_bytes());
    for (k, v) in properties {
        feed(k.as_bytes());
        feed(v.as_bytes());
    }
    format!("{version}.{hash:08x}")
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
/// Old-revision instances leave only while enough instances still serve
/// (`count - max_unavailable`); new ones start only while the fleet stays within
/// `count + max_surge`. Old instances that do not serve anyway may always go. Instances
/// whose health check fails after they served are replaced; instances in a zone that is not
/// available are replaced elsewhere first; with nothing else to do, an uneven spread over
/// the zones is evened out one instance at a time.
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
    let mut rollout = desired.rollout;
    let want = desired.count as usize;
    let zone_ok = |o: &Observed| desired.zones.contains(&o.zone);

    for dead in observed.iter().filter(|o| !o.running) {
        out.remove.push((dead.id.clone(), RemoveReason::Exited));
    }
    for sick in observed.iter().filter(|o| o.running && o.failing) {
        out.remove.push((sick.id.clone(), RemoveReason::Unhealthy));
    }
    let alive = |o: &&Observed| o.running && !o.failing;
    let mut current: Vec<&Observed> = observed
        .iter()
        .filter(alive)
        .filter(|o| o.revision == desired.revision && zone_ok(o))
        .collect();
    let mut old: Vec<&Observed> = observed
        .iter()
        .filter(alive)
        .filter(|o| o.revision != desired.revision || !zone_ok(o))
        .collect();
    if rollout == Rollout::steady() {
        // Outside a deployment, instances to move (a zone went away) are replaced first.
        rollout.max_surge = rollout.max_surge.max(old.len() as u32);
    }

    let zone_load = |set: &[&Observed]| {
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for o in set {
            *per_zone.entry(o.zone.clone()).or_insert(0) += 1;
        }
        per_zone
    };

    while current.len() > want {
        // Scale-in: an instance that does not serve yet first, else the newest of the most
        // loaded zone, one at a time so the spread stays even.
        let load = zone_load(&current);
        let pick = current
            .iter()
            .enumerate()
            .max_by_key(|(_, o)| (!o.healthy, load.get(&o.zone).copied().unwrap_or(0), o.seq))
            .map(|(i, _)| i);
        let Some(i) = pick else { break };
        let extra = current.remove(i);
        out.remove.push((extra.id.clone(), RemoveReason::Surplus));
    }

    let new_healthy = current.iter().filter(|o| o.healthy).count();
    let mut leaving = 0usize;
    if !old.is_empty() {
        // Oldest first; instances that do not serve go before those that do.
        old.sort_by_key(|o| (o.healthy, o.seq));
        let old_healthy = old.iter().filter(|o| o.healthy).count();
        let removable = if rollout.switch_at_once {
            if new_healthy >= want && rollout.promote {
                old.len()
            } else {
                old.iter().filter(|o| !o.healthy).count()
            }
        } else {
            let min_serving = want.saturating_sub(rollout.max_unavailable as usize);
            let spare = (old_healthy + new_healthy).saturating_sub(min_serving);
            old.iter().filter(|o| !o.healthy).count() + spare.min(old_healthy)
        };
        for o in old.iter().take(removable) {
            let reason = if zone_ok(o) {
                RemoveReason::Replaced
            } else {
                RemoveReason::ZoneUnavailable
            };
            out.remove.push((o.id.clone(), reason));
            leaving += 1;
        }
    }

    if current.len() < want {
        let fleet = current.len() + old.len() - leaving;
        let room = (want + rollout.max_surge as usize).saturating_sub(fleet);
        let n = (want - current.len()).min(room);
        out.start = place(n, &desired.zones, &zone_load(&current));
    }

    let settled = out.is_idle() && old.is_empty() && current.len() == want && new_healthy == want;
    if settled && rollout == Rollout::steady() && desired.zones.len() > 1 {
        // Even out the spread (after a zone came back): one instance leaves the most loaded
        // zone; the next pass starts its replacement in the least loaded one.
        let load = zone_load(&current);
        let count = |z: &String| load.get(z).copied().unwrap_or(0);
        let most = desired.zones.iter().max_by_key(|z| count(z));
        let least = desired.zones.iter().min_by_key(|z| count(z));
        if let (Some(most), Some(least)) = (most, least) {
            if count(most) > count(least) + 1 {
                if let Some(o) = current
                    .iter()
                    .filter(|o| o.zone == *most)
                    .max_by_key(|o| o.seq)
                {
                    out.remove.push((o.id.clone(), RemoveReason::Rebalance));
                }
            }
        }
    }
    out.converged = out.is_idle() && settled;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn want(count: u32, revision: &str) -> Desired {
        Desired {
            count,
            revision: revision.into(),
            live: true,
            zones: zones(),
            rollout: Rollout::steady(),
        }
    }
    fn deploy(count: u32, revision: &str, policy: Policy, batch: u32) -> Desired {
        Desired {
            rollout: Rollout::for_policy(policy, batch, count),
            ..want(count, revision)
        }
    }
    fn inst(
        id: &str,
        revision: &str,
        zone: &str,
        running: bool,
        healthy: bool,
        seq: i64,
    ) -> Observed {
        Observed {
            id: id.into(),
            revision: revision.into(),
            zone: zone.into(),
            running,
            healthy,
            failing: false,
            seq,
        }
    }
    fn fleet(prefix: &str, revision: &str, n: usize, healthy: bool, seq0: i64) -> Vec<Observed> {
        (0..n)
            .map(|i| {
                inst(
                    &format!("{prefix}{i}"),
                    revision,
                    if i % 2 == 0 { "a" } else { "b" },
                    true,
                    healthy,
                    seq0 + i as i64,
                )
            })
            .collect()
    }

    /// Runs a rollout to the end: starts become instances (healthy on the next step),
    /// removals go. Returns the lowest number of serving instances seen and the highest fleet.
    fn simulate(d: &Desired, mut obs: Vec<Observed>) -> (usize, usize, usize) {
        let (mut min_serving, mut max_fleet, mut steps) = (usize::MAX, 0, 0);
        let mut seq = 100;
        loop {
            steps += 1;
            assert!(steps < 50, "rollout does not converge: {obs:?}");
            let p = plan(d, &obs);
            if p.converged {
                return (min_serving, max_fleet, steps);
            }
            obs.retain(|o| !p.remove.iter().any(|(id, _)| *id == o.id));
            min_serving = min_serving.min(obs.iter().filter(|o| o.healthy).count());
            for o in obs.iter_mut() {
                o.healthy = true; // started instances pass their checks by the next step
            }
            for zone in p.start {
                seq += 1;
                obs.push(inst(
                    &format!("n{seq}"),
                    &d.revision,
                    &zone,
                    true,
                    false,
                    seq,
                ));
            }
            max_fleet = max_fleet.max(obs.len());
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
        let obs = fleet("i", "v1", 2, true, 1);
        let p = plan(&want(2, "v1"), &obs);
        assert!(p.is_idle());
        assert!(p.converged);
    }

    #[test]
    fn starting_instances_are_not_converged() {
        let mut obs = fleet("i", "v1", 2, true, 1);
        obs[0].healthy = false;
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
    fn rolling_keeps_capacity_minus_one_batch() {
        let (min_serving, max_fleet, _) = simulate(
            &deploy(4, "v2", Policy::Rolling, 1),
            fleet("o", "v1", 4, true, 1),
        );
        assert_eq!(min_serving, 3);
        assert_eq!(max_fleet, 4);
        let (min_serving, _, _) = simulate(
            &deploy(4, "v2", Policy::Rolling, 2),
            fleet("o", "v1", 4, true, 1),
        );
        assert_eq!(min_serving, 2);
    }

    #[test]
    fn additional_batch_never_drops_capacity() {
        let (min_serving, max_fleet, _) = simulate(
            &deploy(4, "v2", Policy::RollingWithAdditionalBatch, 1),
            fleet("o", "v1", 4, true, 1),
        );
        assert_eq!(min_serving, 4);
        assert_eq!(max_fleet, 5);
    }

    #[test]
    fn immutable_switches_at_once() {
        let d = deploy(4, "v2", Policy::Immutable, 1);
        let old = fleet("o", "v1", 4, true, 1);
        let p = plan(&d, &old);
        assert_eq!(p.start.len(), 4, "a full new set beside the old one");
        assert!(p.remove.is_empty());
        let mut mid = old.clone();
        mid.extend(fleet("n", "v2", 4, false, 10));
        mid[7].healthy = true;
        assert!(
            plan(&d, &mid).remove.is_empty(),
            "old stays until all new serve"
        );
        for o in mid.iter_mut() {
            o.healthy = true;
        }
        assert_eq!(plan(&d, &mid).remove.len(), 4);
        let (min_serving, max_fleet, _) = simulate(&d, old);
        assert_eq!((min_serving, max_fleet), (4, 8));
    }

    #[test]
    fn traffic_splitting_waits_for_promotion() {
        let mut d = deploy(2, "v2", Policy::TrafficSplitting, 1);
        let mut obs = fleet("o", "v1", 2, true, 1);
        obs.extend(fleet("n", "v2", 2, true, 10));
        assert!(
            plan(&d, &obs).is_idle(),
            "both sets serve while the canary is evaluated"
        );
        assert!(!plan(&d, &obs).converged);
        d.rollout.promote = true;
        assert_eq!(plan(&d, &obs).remove.len(), 2);
    }

    #[test]
    fn all_at_once_replaces_everything() {
        let p = plan(
            &deploy(3, "v2", Policy::AllAtOnce, 1),
            &fleet("o", "v1", 3, true, 1),
        );
        assert_eq!((p.start.len(), p.remove.len()), (3, 3));
    }

    #[test]
    fn rollback_of_a_failed_immutable_deploy_keeps_the_old_set() {
        // The deploy to v2 failed: the target is v1 again, whose set is complete.
        let mut obs = fleet("o", "v1", 2, true, 1);
        obs.extend(fleet("n", "v2", 2, false, 10));
        let p = plan(&deploy(2, "v1", Policy::Immutable, 1), &obs);
        assert!(p.start.is_empty());
        assert_eq!(p.remove.len(), 2);
        assert!(p.remove.iter().all(|(id, _)| id.starts_with('n')));
    }

    #[test]
    fn rollback_of_a_rolling_deploy_replaces_the_broken_batch_first() {
        let mut obs = fleet("o", "v1", 3, true, 1);
        obs.push(inst("n0", "v2", "a", true, false, 10));
        let p = plan(&deploy(4, "v1", Policy::Rolling, 1), &obs);
        assert_eq!(p.remove, vec![("n0".to_string(), RemoveReason::Replaced)]);
        assert_eq!(p.start.len(), 1);
    }

    #[test]
    fn scale_in_removes_newest() {
        let obs = fleet("i", "v1", 3, true, 1);
        let p = plan(&want(2, "v1"), &obs);
        assert_eq!(p.remove, vec![("i2".to_string(), RemoveReason::Surplus)]);
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
    fn revisions_change_with_what_instances_carry() {
        let props = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let r = revision("v1", "small", "golden", &props);
        assert!(r.starts_with("v1."));
        assert_eq!(r, revision("v1", "small", "golden", &props), "stable");
        assert_ne!(r, revision("v2", "small", "golden", &props));
        assert_ne!(r, revision("v1", "large", "golden", &props));
        assert_ne!(r, revision("v1", "small", "golden", &BTreeMap::new()));
    }

    #[test]
    fn a_failing_instance_is_replaced() {
        let mut obs = fleet("i", "v1", 2, true, 1);
        obs[0].healthy = false;
        obs[0].failing = true;
        let p = plan(&want(2, "v1"), &obs);
        assert_eq!(p.remove, vec![("i0".to_string(), RemoveReason::Unhealthy)]);
        assert_eq!(p.start, vec!["a"]);
    }

    #[test]
    fn scale_in_takes_the_most_loaded_zone_newest_first() {
        let obs = vec![
            inst("a1", "v1", "a", true, true, 1),
            inst("b1", "v1", "b", true, true, 2),
            inst("a2", "v1", "a", true, true, 3),
            inst("b2", "v1", "b", true, true, 4),
            inst("a3", "v1", "a", true, true, 5),
        ];
        let p = plan(&want(3, "v1"), &obs);
        let removed: Vec<&str> = p.remove.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            removed,
            vec!["a3", "b2"],
            "zone a (3) first, then the tie goes to the newest"
        );
    }

    #[test]
    fn a_lost_zone_is_evacuated_with_replacements_first() {
        let obs = vec![
            inst("a1", "v1", "a", true, true, 1),
            inst("b1", "v1", "b", true, true, 2),
            inst("a2", "v1", "a", true, true, 3),
            inst("b2", "v1", "b", true, true, 4),
        ];
        let mut d = want(4, "v1");
        d.zones = vec!["a".into()];
        let p = plan(&d, &obs);
        assert_eq!(
            p.start,
            vec!["a", "a"],
            "replacements start while zone b still serves"
        );
        assert!(p.remove.is_empty());
        let (min_serving, _, _) = simulate(&d, obs);
        assert_eq!(min_serving, 4, "capacity never drops");
    }

    #[test]
    fn a_restored_zone_is_rebalanced_one_at_a_time() {
        let obs = fleet("a", "v1", 4, true, 1).into_iter().map(|mut o| {
            o.zone = "a".into();
            o
        });
        let obs: Vec<Observed> = obs.collect();
        let d = want(4, "v1");
        let p = plan(&d, &obs);
        assert_eq!(p.remove, vec![("a3".to_string(), RemoveReason::Rebalance)]);
        assert!(!p.converged);
        let (_, _, _) = simulate(&d, obs.clone());
        // After the rebalance converges the spread is 2/2.
        let mut state = obs;
        for _ in 0..20 {
            let p = plan(&d, &state);
            if p.converged {
                break;
            }
            state.retain(|o| !p.remove.iter().any(|(id, _)| *id == o.id));
            for o in state.iter_mut() {
                o.healthy = true;
            }
            for (n, zone) in p.start.into_iter().enumerate() {
                state.push(inst(
                    &format!("n{n}{}", state.len()),
                    "v1",
                    &zone,
                    true,
                    false,
                    100 + state.len() as i64,
                ));
            }
        }
        let in_b = state.iter().filter(|o| o.zone == "b").count();
        assert_eq!(in_b, 2, "{state:?}");
    }

    #[test]
    fn placement_is_even() {
        let mut cur = BTreeMap::new();
        cur.insert("a".to_string(), 2);
        assert_eq!(place(3, &zones(), &cur), vec!["b", "b", "a"]);
        assert!(place(2, &[], &cur).is_empty());
    }
}
