//! Health, as Beanstalk's enhanced health reports it: the rules in one place.
//!
//! Instance: `Pending` until it first passes its health check; `Severe` while it fails it;
//! `Draining` while it leaves the pool; otherwise judged on its last 10 s of requests:
//! 5xx share ≥ 10 % → `Degraded`, ≥ 1 % or p99 ≥ 3 s → `Warning`, else `Ok`.
//!
//! Environment (in this order): `Unknown` when terminated; `Pending` while launching
//! (as Beanstalk's), or while no instance has been checked yet; `Severe` when no instance serves or ≥ 25 % of requests are 5xx;
//! `Degraded` when fewer than half the desired instances serve or ≥ 10 % are 5xx;
//! `Warning` when some desired instances do not serve, ≥ 1 % are 5xx, or any instance is
//! Warning/Degraded; `Info` while an operation is running and all is well; else `Ok`.
//! Colours: Ok/Info Green, Warning Yellow, Degraded/Severe Red, Pending/Unknown Grey.
//! Requests are judged only once there are at least [`MIN_REQUESTS`] in the window.

use crate::lifecycle::EnvStatus;
use crate::model::string_enum;
use serde::{Deserialize, Serialize};

string_enum!(
    HealthStatus, "health status", {
        Ok => "Ok",
        Info => "Info",
        Warning => "Warning",
        Degraded => "Degraded",
        Severe => "Severe",
        Pending => "Pending",
        Unknown => "Unknown",
        Draining => "Draining",
    }
);

impl HealthStatus {
    pub fn color(self) -> &'static str {
        match self {
            HealthStatus::Ok | HealthStatus::Info => "Green",
            HealthStatus::Warning => "Yellow",
            HealthStatus::Degraded | HealthStatus::Severe => "Red",
            HealthStatus::Pending | HealthStatus::Unknown | HealthStatus::Draining => "Grey",
        }
    }

    /// Whether an instance in this state serves requests.
    pub fn serving(self) -> bool {
        matches!(
            self,
            HealthStatus::Ok | HealthStatus::Info | HealthStatus::Warning | HealthStatus::Degraded
        )
    }
}

/// Fewer requests than this in the window say nothing about error rates.
pub const MIN_REQUESTS: u64 = 10;
const SLOW_P99_MS: f64 = 3000.0;

/// What the balancer's health check says of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Pending,
    Healthy,
    Unhealthy,
    Draining,
}

/// Requests over the sliding window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub count: u64,
    pub status_5xx: u64,
    pub p99_ms: f64,
}

impl Window {
    fn share_5xx(&self) -> Option<f64> {
        (self.count >= MIN_REQUESTS).then(|| self.status_5xx as f64 / self.count as f64)
    }
}

/// A verdict with the reason a person would want to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: HealthStatus,
    pub causes: Vec<String>,
}

impl Verdict {
    fn new(status: HealthStatus, cause: impl Into<Option<String>>) -> Self {
        Self {
            status,
            causes: cause.into().into_iter().collect(),
        }
    }
}

fn pct(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

pub fn instance_health(check: CheckState, window: &Window) -> Verdict {
    match check {
        CheckState::Draining => {
            return Verdict::new(HealthStatus::Draining, "leaving the pool".to_string())
        }
        CheckState::Pending => {
            return Verdict::new(
                HealthStatus::Pending,
                "waiting for its first health checks".to_string(),
            )
        }
        CheckState::Unhealthy => {
            return Verdict::new(
                HealthStatus::Severe,
                "failing its health checks".to_string(),
            )
        }
        CheckState::Healthy => {}
    }
    match window.share_5xx() {
        Some(s) if s >= 0.10 => Verdict::new(
            HealthStatus::Degraded,
            format!("{} of requests failing with 5xx", pct(s)),
        ),
        Some(s) if s >= 0.01 => Verdict::new(
            HealthStatus::Warning,
            format!("{} of requests failing with 5xx", pct(s)),
        ),
        _ if window.count > 0 && window.p99_ms >= SLOW_P99_MS => Verdict::new(
            HealthStatus::Warning,
            format!("p99 latency {:.0} ms", window.p99_ms),
        ),
        _ => Verdict::new(HealthStatus::Ok, None),
    }
}

pub fn environment_health(
    status: EnvStatus,
    desired: u32,
    instances: &[HealthStatus],
    window: &Window,
) -> Verdict {
    if status == EnvStatus::Terminated || status == EnvStatus::Terminating {
        return Verdict::new(
            HealthStatus::Unknown,
            format!("the environment is {status}"),
        );
    }
    // As Beanstalk's: Pending for the whole launch, so the first transition, once the
    // launch has ended, is from Pending to what the environment is (Ok, mostly).
    if status == EnvStatus::Launching {
        return Verdict::new(HealthStatus::Pending, "launching".to_string());
    }
    let serving = instances.iter().filter(|h| h.serving()).count() as u32;
    let share = window.share_5xx();
    let mut causes = Vec::new();
    if let Some(s) = share.filter(|s| *s >= 0.01) {
        causes.push(format!("{} of requests failing with 5xx", pct(s)));
    }
    if serving < desired {
        causes.push(format!("{serving} of {desired} instances serving"));
    }
    let verdict = |status| Verdict {
        status,
        causes: causes.clone(),
    };
    if serving == 0
        && !instances.is_empty()
        && instances.iter().all(|h| *h == HealthStatus::Pending)
    {
        // Nothing has been checked yet (a fresh start of the control plane): no verdict.
        return Verdict::new(
            HealthStatus::Pending,
            "waiting for the first health checks".to_string(),
        );
    }
    if serving == 0 || share.is_some_and(|s| s >= 0.25) {
        return verdict(HealthStatus::Severe);
    }
    if serving * 2 < desired || share.is_some_and(|s| s >= 0.10) {
        return verdict(HealthStatus::Degraded);
    }
    let struggling = instances
        .iter()
        .any(|h| matches!(h, HealthStatus::Warning | HealthStatus::Degraded));
    if struggling {
        causes.push("some instances are struggling".into());
    }
    if serving < desired || share.is_some_and(|s| s >= 0.01) || struggling {
        return Verdict {
            status: HealthStatus::Warning,
            causes,
        };
    }
    if status.is_transitional() {
        return Verdict::new(
            HealthStatus::Info,
            "an operation is in progress".to_string(),
        );
    }
    Verdict::new(HealthStatus::Ok, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn w(count: u64, status_5xx: u64) -> Window {
        Window {
            count,
            status_5xx,
            p99_ms: 5.0,
        }
    }

    #[test]
    fn instance_rules() {
        assert_eq!(
            instance_health(CheckState::Pending, &w(0, 0)).status,
            Pending
        );
        assert_eq!(
            instance_health(CheckState::Unhealthy, &w(100, 0)).status,
            Severe
        );
        assert_eq!(
            instance_health(CheckState::Draining, &w(0, 0)).status,
            Draining
        );
        assert_eq!(instance_health(CheckState::Healthy, &w(100, 0)).status, Ok);
        assert_eq!(
            instance_health(CheckState::Healthy, &w(100, 2)).status,
            Warning
        );
        assert_eq!(
            instance_health(CheckState::Healthy, &w(100, 20)).status,
            Degraded
        );
        assert_eq!(
            instance_health(CheckState::Healthy, &w(5, 5)).status,
            Ok,
            "too few requests to judge"
        );
        let slow = Window {
            count: 50,
            status_5xx: 0,
            p99_ms: 4000.0,
        };
        assert_eq!(instance_health(CheckState::Healthy, &slow).status, Warning);
    }

    #[test]
    fn environment_rules() {
        let all_ok = [Ok, Ok];
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &all_ok, &w(100, 0)).status,
            Ok
        );
        assert_eq!(
            environment_health(EnvStatus::Updating, 2, &all_ok, &w(100, 0)).status,
            Info
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &[Ok, Severe], &w(100, 0)).status,
            Warning
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 4, &[Ok, Severe, Severe, Severe], &w(0, 0)).status,
            Degraded
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &[Severe, Severe], &w(0, 0)).status,
            Severe
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &all_ok, &w(100, 50)).status,
            Severe
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &all_ok, &w(100, 15)).status,
            Degraded
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &all_ok, &w(100, 2)).status,
            Warning
        );
        assert_eq!(
            environment_health(EnvStatus::Launching, 2, &[Pending], &w(0, 0)).status,
            Pending
        );
        // Serving already, but still launching: no "operation in progress" Info yet.
        assert_eq!(
            environment_health(EnvStatus::Launching, 2, &[Ok, Ok], &w(10, 0)).status,
            Pending
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &[Pending, Pending], &w(0, 0)).status,
            Pending
        );
        assert_eq!(
            environment_health(EnvStatus::Ready, 2, &[Pending, Severe], &w(0, 0)).status,
            Severe
        );
        assert_eq!(
            environment_health(EnvStatus::Terminated, 2, &[], &w(0, 0)).status,
            Unknown
        );
        let v = environment_health(EnvStatus::Ready, 2, &all_ok, &w(100, 50));
        assert!(v.causes[0].contains("50.0 %"), "{:?}", v.causes);
    }

    #[test]
    fn colours() {
        assert_eq!(Ok.color(), "Green");
        assert_eq!(Info.color(), "Green");
        assert_eq!(Warning.color(), "Yellow");
        assert_eq!(Degraded.color(), "Red");
        assert_eq!(Severe.color(), "Red");
        assert_eq!(Pending.color(), "Grey");
    }
}
