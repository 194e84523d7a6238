//! How attached resources weigh on an environment's health (`sprout health`).
//!
//! A resource counts against its environment when it is `Failed`, or `Available` with its
//! last health check failed (`unhealthy`). Each such resource adds a cause naming it; an
//! environment otherwise `Ok` or `Info` becomes `Warning` (the instances may still serve,
//! but whatever needs the resource fails). Worse verdicts (`Degraded`, `Severe`) and those
//! that say nothing yet (`Pending`, `Unknown`) keep their status and gain the cause.
//! Resources still `Creating`, `Modifying`, `Snapshotting`, `Restoring` or `Deleting`, or
//! not checked yet, do not count: their state is reported, not judged.

use crate::api::AttachedResource;
use crate::health::{HealthStatus, Verdict};
use crate::resource::ResourceStatus;

/// The health check's word for a resource that failed its last check.
pub const UNHEALTHY: &str = "unhealthy";
/// The health check's word for a resource that passed its last check.
pub const HEALTHY: &str = "healthy";

/// Why `r` counts against its environment, or None when it does not.
pub fn resource_problem(r: &AttachedResource) -> Option<String> {
    match r.status {
        ResourceStatus::Failed => Some(format!("resource {} ({}) has failed", r.name, r.kind)),
        ResourceStatus::Available if r.health.as_deref() == Some(UNHEALTHY) => Some(format!(
            "resource {} ({}) is failing its health checks",
            r.name, r.kind
        )),
        _ => None,
    }
}

/// The health colour of a resource (as an instance's): Green when its last check passed,
/// Red when it failed or the resource is `Failed`, Grey otherwise (not checked yet, or busy).
pub fn resource_color(r: &AttachedResource) -> &'static str {
    status_color(r.status, r.health.as_deref())
}

/// The colour of a resource's status and last health check (attached or not).
pub fn status_color(status: ResourceStatus, health: Option<&str>) -> &'static str {
    match (status, health) {
        (ResourceStatus::Failed, _) | (ResourceStatus::Available, Some(UNHEALTHY)) => "Red",
        (ResourceStatus::Available, Some(HEALTHY)) => "Green",
        _ => "Grey",
    }
}

/// The environment's verdict once its attached resources are taken into account.
pub fn with_resources(mut verdict: Verdict, resources: &[AttachedResource]) -> Verdict {
    let problems: Vec<String> = resources.iter().filter_map(resource_problem).collect();
    if problems.is_empty() {
        return verdict;
    }
    if matches!(verdict.status, HealthStatus::Ok | HealthStatus::Info) {
        verdict.status = HealthStatus::Warning;
    }
    verdict.causes.extend(problems);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceKind;

    fn res(name: &str, status: ResourceStatus, health: Option<&str>) -> AttachedResource {
        AttachedResource {
            name: name.to_string(),
            kind: ResourceKind::Redis,
            status,
            health: health.map(str::to_string),
            health_checked_at: None,
            prefix: None,
            attachment: crate::resource::AttachmentState::Attached,
        }
    }

    fn verdict(status: HealthStatus) -> Verdict {
        Verdict {
            status,
            causes: vec![],
        }
    }

    #[test]
    fn healthy_or_unjudged_resources_change_nothing() {
        let rs = [
            res("cache", ResourceStatus::Available, Some(HEALTHY)),
            res("fresh", ResourceStatus::Available, None),
            res("busy", ResourceStatus::Snapshotting, Some(UNHEALTHY)),
            res("new", ResourceStatus::Creating, None),
        ];
        assert_eq!(
            with_resources(verdict(HealthStatus::Ok), &rs),
            verdict(HealthStatus::Ok)
        );
    }

    #[test]
    fn an_unhealthy_resource_turns_ok_into_warning_and_is_named() {
        let rs = [
            res("cache", ResourceStatus::Available, Some(UNHEALTHY)),
            res("orders", ResourceStatus::Available, Some(HEALTHY)),
        ];
        let v = with_resources(verdict(HealthStatus::Ok), &rs);
        assert_eq!(v.status, HealthStatus::Warning);
        assert_eq!(
            v.causes,
            vec!["resource cache (redis) is failing its health checks".to_string()]
        );
        assert_eq!(
            with_resources(verdict(HealthStatus::Info), &rs).status,
            HealthStatus::Warning
        );
    }

    #[test]
    fn colours_follow_the_last_check() {
        let c = |st, h| resource_color(&res("r", st, h));
        assert_eq!(c(ResourceStatus::Available, Some(HEALTHY)), "Green");
        assert_eq!(c(ResourceStatus::Available, Some(UNHEALTHY)), "Red");
        assert_eq!(c(ResourceStatus::Failed, None), "Red");
        assert_eq!(c(ResourceStatus::Available, None), "Grey");
        assert_eq!(c(ResourceStatus::Snapshotting, Some(HEALTHY)), "Grey");
    }

    #[test]
    fn a_failed_resource_counts_whatever_its_last_check() {
        let v = with_resources(
            verdict(HealthStatus::Ok),
            &[res("db", ResourceStatus::Failed, Some(HEALTHY))],
        );
        assert_eq!(v.status, HealthStatus::Warning);
        assert_eq!(v.causes, vec!["resource db (redis) has failed".to_string()]);
    }

    #[test]
    fn worse_or_unknown_verdicts_keep_their_status_and_gain_the_cause() {
        let rs = [res("cache", ResourceStatus::Available, Some(UNHEALTHY))];
        for s in [
            HealthStatus::Warning,
            HealthStatus::Degraded,
            HealthStatus::Severe,
            HealthStatus::Pending,
            HealthStatus::Unknown,
        ] {
            let mut before = verdict(s);
            before
                .causes
                .push("5 % of requests failing with 5xx".to_string());
            let v = with_resources(before, &rs);
            assert_eq!(v.status, s);
            assert_eq!(v.causes.len(), 2, "{s}");
            assert!(v.causes[1].contains("cache"));
        }
    }
}
