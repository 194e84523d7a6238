//! Scaling triggers, in the shape of Beanstalk's `aws:autoscaling:trigger`: a metric, a
//! statistic over each period, a breach that must last `breach_duration`, upper and lower
//! thresholds with their steps, and a cooldown. [`decide`] is the whole rule.

use crate::model::string_enum;
use serde::{Deserialize, Serialize};
use std::time::Duration;

string_enum!(
    /// What a trigger watches. Per instance where that is meaningful.
    Metric, "scaling metric", {
        None => "none",
        Cpu => "cpu",
        Requests => "requests",
        Latency => "latency",
        Backlog => "backlog",
    }
);

impl Metric {
    /// How a value of this metric reads in an event.
    pub fn describe(self, value: f64) -> String {
        match self {
            Metric::None => String::new(),
            Metric::Cpu => format!("CPU {value:.0} % of the instance's limit"),
            Metric::Requests => format!("requests/s per instance {value:.0}"),
            Metric::Latency => format!("p99 latency {value:.0} ms"),
            Metric::Backlog => format!("queue backlog per instance {value:.0}"),
        }
    }
}

string_enum!(
    Statistic, "scaling statistic", { Average => "average", Maximum => "maximum", Minimum => "minimum" }
);

impl Statistic {
    /// Reduces one period's readings (e.g. one per instance) to a value.
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Statistic::Average => values.iter().sum::<f64>() / values.len() as f64,
            Statistic::Maximum => values.iter().copied().fold(f64::MIN, f64::max),
            Statistic::Minimum => values.iter().copied().fold(f64::MAX, f64::min),
        })
    }
}

/// A trigger's settings (kept in `EnvSettings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub metric: Metric,
    pub statistic: Statistic,
    pub period: Duration,
    pub breach_duration: Duration,
    pub upper: f64,
    pub lower: f64,
    pub step_up: u32,
    pub step_down: u32,
    pub cooldown: Duration,
}

/// One period's value, `at` in milliseconds on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub from: u32,
    pub to: u32,
    /// Explains itself: "scale out 2→3: requests/s per instance 412 > 300 for 10 s".
    pub reason: String,
}

/// The fleet's bounds and the time of the last scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub last_scaled_ms: Option<u64>,
}

/// Scale out when every sample of the last `breach_duration` is above `upper`; scale in
/// when every one is below `lower`; never outside min..=max, never within the cooldown.
/// Samples are oldest first; the breach needs samples covering the whole duration.
pub fn decide(
    trigger: &Trigger,
    samples: &[Sample],
    now_ms: u64,
    fleet: Fleet,
) -> Option<Decision> {
    if trigger.metric == Metric::None {
        return None;
    }
    if let Some(last) = fleet.last_scaled_ms {
        if now_ms.saturating_sub(last) < trigger.cooldown.as_millis() as u64 {
            return None;
        }
    }
    let span = trigger.breach_duration.as_millis() as u64;
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| now_ms.saturating_sub(s.at_ms) <= span)
        .collect();
    let oldest = window.first()?;
    // The samples must reach back (almost) the whole breach duration: one period of slack.
    let covered = now_ms.saturating_sub(oldest.at_ms) + trigger.period.as_millis() as u64;
    if covered < span || window.is_empty() {
        return None;
    }
    let secs = trigger.breach_duration.as_secs_f64();
    let latest = window.last().map(|s| s.value).unwrap_or_default();
    if window.iter().all(|s| s.value > trigger.upper) && fleet.desired < fleet.max {
        let to = (fleet.desired + trigger.step_up.max(1)).min(fleet.max);
        return Some(Decision {
            from: fleet.desired,
            to,
            reason: format!(
                "scale out {}→{to}: {} > {} for {secs:.0} s",
                fleet.desired,
                trigger.metric.describe(latest),
                trigger.upper
            ),
        });
    }
    if window.iter().all(|s| s.value < trigger.lower) && fleet.desired > fleet.min {
        let to = fleet
            .desired
            .saturating_sub(trigger.step_down.max(1))
            .max(fleet.min);
        return Some(Decision {
            from: fleet.desired,
            to,
            reason: format!(
                "scale in {}→{to}: {} < {} for {secs:.0} s",
                fleet.desired,
                trigger.metric.describe(latest),
                trigger.lower
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Trigger {
        Trigger {
            metric: Metric::Requests,
            statistic: Statistic::Average,
            period: Duration::from_secs(1),
            breach_duration: Duration::from_secs(5),
            upper: 300.0,
            lower: 50.0,
            step_up: 1,
            step_down: 1,
            cooldown: Duration::from_secs(30),
        }
    }

    fn series(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                at_ms: i as u64 * 1000,
                value: *v,
            })
            .collect()
    }

    fn fleet(desired: u32) -> Fleet {
        Fleet {
            desired,
            min: 2,
            max: 4,
            last_scaled_ms: None,
        }
    }

    #[test]
    fn sustained_breach_scales_out_and_explains() {
        let s = series(&[400.0, 410.0, 420.0, 412.0, 415.0, 412.0]);
        let d = decide(&trigger(), &s, 5000, fleet(2)).expect("scale out");
        assert_eq!((d.from, d.to), (2, 3));
        assert_eq!(
            d.reason,
            "scale out 2→3: requests/s per instance 412 > 300 for 5 s"
        );
    }

    #[test]
    fn a_short_or_broken_breach_does_nothing() {
        assert_eq!(
            decide(&trigger(), &series(&[400.0, 400.0]), 1000, fleet(2)),
            None,
            "too short"
        );
        let s = series(&[400.0, 400.0, 100.0, 400.0, 400.0, 400.0]);
        assert_eq!(
            decide(&trigger(), &s, 5000, fleet(2)),
            None,
            "one sample in range breaks it"
        );
    }

    #[test]
    fn bounds_and_cooldown() {
        let hot = series(&[400.0; 6]);
        assert_eq!(decide(&trigger(), &hot, 5000, fleet(4)), None, "at max");
        let cold = series(&[10.0; 6]);
        assert_eq!(decide(&trigger(), &cold, 5000, fleet(2)), None, "at min");
        let d = decide(&trigger(), &cold, 5000, fleet(3)).expect("scale in");
        assert_eq!((d.from, d.to), (3, 2));
        assert!(d.reason.starts_with("scale in 3→2"));
        let recently = Fleet {
            last_scaled_ms: Some(1000),
            ..fleet(3)
        };
        assert_eq!(
            decide(&trigger(), &cold, 5000, recently),
            None,
            "cooling down"
        );
        let mut big = trigger();
        big.step_up = 5;
        assert_eq!(
            decide(&big, &hot, 5000, fleet(2)).map(|d| d.to),
            Some(4),
            "capped at max"
        );
    }

    #[test]
    fn statistics() {
        assert_eq!(Statistic::Average.apply(&[1.0, 3.0]), Some(2.0));
        assert_eq!(Statistic::Maximum.apply(&[1.0, 3.0]), Some(3.0));
        assert_eq!(Statistic::Minimum.apply(&[1.0, 3.0]), Some(1.0));
        assert_eq!(Statistic::Average.apply(&[]), None);
        assert_eq!(
            decide(
                &Trigger {
                    metric: Metric::None,
                    ..trigger()
                },
                &series(&[999.0; 6]),
                5000,
                fleet(2)
            ),
            None
        );
    }
}
