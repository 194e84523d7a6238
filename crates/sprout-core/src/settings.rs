//! Every setting of an environment, its defaults per mode, and how users name and change
//! them (`sprout config ENV --set KEY=VALUE`). Names follow Beanstalk's option names,
//! in snake case.

use crate::model::{string_enum, InstanceType, Mode};
use crate::scaling::{Metric, Statistic, Trigger};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

string_enum!(
    /// How a new version (or a configuration that needs new instances) reaches the fleet.
    Policy, "deployment policy", {
        AllAtOnce => "all-at-once",
        Rolling => "rolling",
        RollingWithAdditionalBatch => "rolling-with-additional-batch",
        Immutable => "immutable",
        TrafficSplitting => "traffic-splitting",
    }
);

/// A batch: a number of instances or a share of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BatchSize {
    Fixed(u32),
    Percent(u8),
}

impl BatchSize {
    pub fn parse(text: &str) -> Result<Self, SettingError> {
        let bad = || SettingError::Invalid {
            key: "batch".into(),
            reason: format!("'{text}' is not N or N% (N > 0)"),
        };
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(bad());
            }
            Ok(BatchSize::Percent(p))
        } else {
            let n: u32 = text.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(BatchSize::Fixed(n))
        }
    }

    /// Instances per batch for a fleet of `desired` (at least one, at most the fleet).
    pub fn resolve(self, desired: u32) -> u32 {
        let n = match self {
            BatchSize::Fixed(n) => n,
            BatchSize::Percent(p) => (desired * u32::from(p)).div_ceil(100),
        };
        n.clamp(1, desired.max(1))
    }
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchSize::Fixed(n) => write!(f, "{n}"),
            BatchSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for BatchSize {
    type Err = SettingError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BatchSize::parse(text)
    }
}

impl TryFrom<String> for BatchSize {
    type Error = SettingError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        BatchSize::parse(&value)
    }
}

impl From<BatchSize> for String {
    fn from(b: BatchSize) -> String {
        b.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting '{0}' (see `sprout config ENV` for the list)")]
    Unknown(String),
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Parses `20s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, SettingError> {
    let bad = || SettingError::Invalid {
        key: key.into(),
        reason: format!("'{text}' is not a duration like 20s, 500ms or 2m"),
    };
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => value,
        "s" | "" => value * 1000.0,
        "m" => value * 60_000.0,
        "h" => value * 3_600_000.0,
        _ => return Err(bad()),
    };
    if !millis.is_finite() || !(0.0..=86_400_000.0).contains(&millis) {
        return Err(bad());
    }
    Ok(Duration::from_millis(millis as u64))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// An environment's settings. `min`/`max` bound the instance count; the desired count
/// lives beside them in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvSettings {
    pub instance_type: InstanceType,
    pub min: u32,
    pub max: u32,
    pub policy: Policy,
    pub batch: BatchSize,
    /// `None`: the bundle's `health_check` (or `/`).
    pub health_check_path: Option<String>,
    #[serde(with = "millis")]
    pub health_check_interval: Duration,
    #[serde(with = "millis")]
    pub health_check_timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Inclusive range of statuses that pass a health check.
    pub health_check_success_codes: (u16, u16),
    /// Sticky sessions: the cookie's lifetime, or off.
    #[serde(with = "opt_millis")]
    pub sticky: Option<Duration>,
    /// How long a leaving instance may finish in-flight requests (Beanstalk's DeregistrationDelay).
    #[serde(with = "millis")]
    pub deregistration_delay: Duration,
    /// Between SIGTERM and SIGKILL.
    #[serde(with = "millis")]
    pub stop_grace: Duration,
    /// How long a deployment may run before it fails and rolls back.
    #[serde(with = "millis")]
    pub command_timeout: Duration,
    /// How long a new instance may take to pass its first health checks.
    #[serde(with = "millis")]
    pub health_grace: Duration,
    /// Traffic splitting: the new version's share while it is evaluated.
    pub canary_percent: u8,
    #[serde(with = "millis")]
    pub evaluation: Duration,
    /// Roll back automatically when a deployment fails.
    pub rollback: bool,
    /// Scaling trigger (Beanstalk's `aws:autoscaling:trigger`).
    pub scaling_metric: Metric,
    pub scaling_statistic: Statistic,
    #[serde(with = "millis")]
    pub scaling_period: Duration,
    #[serde(with = "millis")]
    pub breach_duration: Duration,
    pub upper_threshold: f64,
    pub lower_threshold: f64,
    pub upper_increment: u32,
    pub lower_increment: u32,
    #[serde(with = "millis")]
    pub cooldown: Duration,
    /// Property keys whose values viewers may read (`sprout setenv ENV --public KEY`); every
    /// other value is masked for them. Kept with the settings so saved configurations and
    /// rollbacks carry it; changed by `setenv`, not `config --set`.
    pub public_properties: BTreeSet<String>,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

impl Default for EnvSettings {
    fn default() -> Self {
        Self::for_mode(Mode::Dev)
    }
}

/// The names `sprout config` shows and accepts, in display order.
pub const KEYS: &[&str] = &[
    "instance_type",
    "min",
    "max",
    "policy",
    "batch",
    "health_check_path",
    "health_check_interval",
    "health_check_timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "health_check_success_codes",
    "sticky",
    "deregistration_delay",
    "stop_grace",
    "command_timeout",
    "health_grace",
    "canary_percent",
    "evaluation",
    "rollback",
    "scaling_metric",
    "scaling_statistic",
    "scaling_period",
    "breach_duration",
    "upper_threshold",
    "lower_threshold",
    "upper_increment",
    "lower_increment",
    "cooldown",
];

impl EnvSettings {
    /// Dev: one instance, all at once, fast checks, short draining. Prod: two or more,
    /// rolling with an additional batch, rollback on.
    pub fn for_mode(mode: Mode) -> Self {
        let dev = mode == Mode::Dev;
        Self {
            instance_type: mode.default_instance_type(),
            min: mode.default_instances(),
            max: mode.default_instances(),
            policy: if dev {
                Policy::AllAtOnce
            } else {
                Policy::RollingWithAdditionalBatch
            },
            batch: if dev {
                BatchSize::Percent(100)
            } else {
                BatchSize::Percent(25)
            },
            health_check_path: None,
            health_check_interval: Duration::from_millis(if dev { 500 } else { 1000 }),
            health_check_timeout: Duration::from_secs(2),
            healthy_threshold: if dev { 1 } else { 2 },
            unhealthy_threshold: 3,
            health_check_success_codes: (200, 399),
            sticky: None,
            deregistration_delay: Duration::from_secs(if dev { 2 } else { 20 }),
            stop_grace: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            health_grace: Duration::from_secs(if dev { 30 } else { 60 }),
            canary_percent: 10,
            evaluation: Duration::from_secs(if dev { 5 } else { 60 }),
            rollback: true,
            scaling_metric: if dev { Metric::None } else { Metric::Cpu },
            scaling_statistic: Statistic::Average,
            scaling_period: Duration::from_secs(60),
            breach_duration: Duration::from_secs(300),
            upper_threshold: 80.0,
            lower_threshold: 20.0,
            upper_increment: 1,
            lower_increment: 1,
            cooldown: Duration::from_secs(360),
            public_properties: BTreeSet::new(),
        }
    }

    /// The scaling trigger these settings describe.
    pub fn trigger(&self) -> Trigger {
        Trigger {
            metric: self.scaling_metric,
            statistic: self.scaling_statistic,
            period: self.scaling_period,
            breach_duration: self.breach_duration,
            upper: self.upper_threshold,
            lower: self.lower_threshold,
            step_up: self.upper_increment,
            step_down: self.lower_increment,
            cooldown: self.cooldown,
        }
    }

    pub fn get(&self, key: &str) -> Result<String, SettingError> {
        Ok(match key {
            "instance_type" => self.instance_type.to_string(),
            "min" => self.min.to_string(),
            "max" => self.max.to_string(),
            "policy" => self.policy.to_string(),
            "batch" => self.batch.to_string(),
            "health_check_path" => self
                .health_check_path
                .clone()
                .unwrap_or_else(|| "(from the bundle)".into()),
            "health_check_interval" => format_duration(self.health_check_interval),
            "health_check_timeout" => format_duration(self.health_check_timeout),
            "healthy_threshold" => self.healthy_threshold.to_string(),
            "unhealthy_threshold" => self.unhealthy_threshold.to_string(),
            "health_check_success_codes" => {
                let (lo, hi) = self.health_check_success_codes;
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            }
            "sticky" => self
                .sticky
                .map(format_duration)
                .unwrap_or_else(|| "off".into()),
            "deregistration_delay" => format_duration(self.deregistration_delay),
            "stop_grace" => format_duration(self.stop_grace),
            "command_timeout" => format_duration(self.command_timeout),
            "health_grace" => format_duration(self.health_grace),
            "canary_percent" => self.canary_percent.to_string(),
            "evaluation" => format_duration(self.evaluation),
            "rollback" => self.rollback.to_string(),
            "scaling_metric" => self.scaling_metric.to_string(),
            "scaling_statistic" => self.scaling_statistic.to_string(),
            "scaling_period" => format_duration(self.scaling_period),
            "breach_duration" => format_duration(self.breach_duration),
            "upper_threshold" => self.upper_threshold.to_string(),
            "lower_threshold" => self.lower_threshold.to_string(),
            "upper_increment" => self.upper_increment.to_string(),
            "lower_increment" => self.lower_increment.to_string(),
            "cooldown" => format_duration(self.cooldown),
            other => return Err(SettingError::Unknown(other.into())),
        })
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        KEYS.iter()
            .filter_map(|k| self.get(k).ok().map(|v| (k.to_string(), v)))
            .collect()
    }

    /// Applies one `KEY=VALUE`. Cross-field rules are checked by [`EnvSettings::validate`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let invalid = |reason: String| SettingError::Invalid {
            key: key.into(),
            reason,
        };
        let count = |v: &str| -> Result<u32, SettingError> {
            v.trim()
                .parse::<u32>()
                .map_err(|_| invalid(format!("'{v}' is not a whole number")))
        };
        let value = value.trim();
        match key {
            "instance_type" => {
                self.instance_type = value
                    .parse()
                    .map_err(|e: crate::model::UnknownValue| invalid(e.to_string()))?
            }
            "min" => self.min = count(value)?,
            "max" => self.max = count(value)?,
            "policy" => {
                self.policy = value
                    .parse()
                    .map_err(|e: crate::model::UnknownValue| invalid(e.to_string()))?
            }
            "batch" => self.batch = BatchSize::parse(value)?,
            "health_check_path" => {
                if value.is_empty() || value == "default" {
                    self.health_check_path = None;
                } else if let Err(e) = crate::names::RequestPath::parse(value) {
                    return Err(invalid(format!("'{value}' is not {}", e.rule)));
                } else {
                    self.health_check_path = Some(value.into());
                }
            }
            "health_check_interval" => self.health_check_interval = parse_duration(key, value)?,
            "health_check_timeout" => self.health_check_timeout = parse_duration(key, value)?,
            "healthy_threshold" => self.healthy_threshold = count(value)?,
            "unhealthy_threshold" => self.unhealthy_threshold = count(value)?,
            "health_check_success_codes" => {
                let (lo, hi) = value.split_once('-').unwrap_or((value, value));
                let code = |c: &str| {
                    c.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..600).contains(c))
                };
                match (code(lo), code(hi)) {
                    (Some(lo), Some(hi)) if lo <= hi => self.health_check_success_codes = (lo, hi),
                    _ => {
                        return Err(invalid(format!(
                            "'{value}' is not a status or range like 200-399"
                        )))
                    }
                }
            }
            "sticky" => {
                self.sticky = match value {
                    "off" | "false" | "no" | "0" => None,
                    "on" | "true" | "yes" => Some(Duration::from_secs(86_400)),
                    d => Some(parse_duration(key, d)?),
                }
            }
            "deregistration_delay" => self.deregistration_delay = parse_duration(key, value)?,
            "stop_grace" => self.stop_grace = parse_duration(key, value)?,
            "command_timeout" => self.command_timeout = parse_duration(key, value)?,
            "health_grace" => self.health_grace = parse_duration(key, value)?,
            "canary_percent" => {
                self.canary_percent = value
                    .parse::<u8>()
                    .ok()
                    .filter(|p| (1..=99).contains(p))
                    .ok_or_else(|| invalid(format!("'{value}' is not a percentage from 1 to 99")))?
            }
            "evaluation" => self.evaluation = parse_duration(key, value)?,
            "rollback" => {
                self.rollback = match value {
                    "true" | "on" | "yes" => true,
                    "false" | "off" | "no" => false,
                    _ => return Err(invalid(format!("'{value}' is not true or false"))),
                }
            }
            "scaling_metric" => {
                self.scaling_metric = value
                    .parse()
                    .map_err(|e: crate::model::UnknownValue| invalid(e.to_string()))?
            }
            "scaling_statistic" => {
                self.scaling_statistic = value
                    .parse()
                    .map_err(|e: crate::model::UnknownValue| invalid(e.to_string()))?
            }
            "scaling_period" => self.scaling_period = parse_duration(key, value)?,
            "breach_duration" => self.breach_duration = parse_duration(key, value)?,
            "upper_threshold" | "lower_threshold" => {
                let v: f64 = value
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| invalid(format!("'{value}' is not a non-negative number")))?;
                if key == "upper_threshold" {
                    self.upper_threshold = v;
                } else {
                    self.lower_threshold = v;
                }
            }
            "upper_increment" => self.upper_increment = count(value)?.max(1),
            "lower_increment" => self.lower_increment = count(value)?.max(1),
            "cooldown" => self.cooldown = parse_duration(key, value)?,
            other => return Err(SettingError::Unknown(other.into())),
        }
        Ok(())
    }

    /// Rules across settings.
    pub fn validate(&self, max_instances: u32) -> Result<(), SettingError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if self.min == 0 || self.min > self.max || self.max > max_instances {
            return invalid(
                "min",
                format!(
                    "need 1 <= min ({}) <= max ({}) <= {max_instances}",
                    self.min, self.max
                ),
            );
        }
        if self.healthy_threshold == 0 || self.unhealthy_threshold == 0 {
            return invalid("healthy_threshold", "thresholds must be at least 1".into());
        }
        if self.health_check_interval < Duration::from_millis(100) {
            return invalid("health_check_interval", "must be at least 100ms".into());
        }
        if self.health_check_timeout.is_zero()
            || self.health_check_timeout > Duration::from_secs(60)
        {
            return invalid("health_check_timeout", "must be between 1ms and 60s".into());
        }
        if self.lower_threshold >= self.upper_threshold {
            return invalid(
                "lower_threshold",
                format!("must be below upper_threshold ({})", self.upper_threshold),
            );
        }
        if self.scaling_period < Duration::from_millis(500) {
            return invalid("scaling_period", "must be at least 500ms".into());
        }
        if self.command_timeout < Duration::from_secs(1) {
            return invalid("command_timeout", "must be at least 1s".into());
        }
        Ok(())
    }

    /// Whether going from `self` to `next` needs new instances (rolled out with the policy).
    pub fn needs_new_instances(&self, next: &EnvSettings) -> bool {
        self.instance_type != next.instance_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_set_defaults() {
        let dev = EnvSettings::for_mode(Mode::Dev);
        let prod = EnvSettings::for_mode(Mode::Prod);
        assert_eq!((dev.min, dev.policy), (1, Policy::AllAtOnce));
        assert_eq!(
            (prod.min, prod.policy),
            (2, Policy::RollingWithAdditionalBatch)
        );
        assert!(dev.deregistration_delay < prod.deregistration_delay);
        assert!(prod.rollback);
    }

    #[test]
    fn batches() {
        assert_eq!(BatchSize::parse("2").unwrap().resolve(4), 2);
        assert_eq!(BatchSize::parse("25%").unwrap().resolve(4), 1);
        assert_eq!(BatchSize::parse("30%").unwrap().resolve(4), 2, "rounds up");
        assert_eq!(
            BatchSize::parse("10").unwrap().resolve(4),
            4,
            "never above the fleet"
        );
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(BatchSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("k", "20s").unwrap(), Duration::from_secs(20));
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("k", "3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("k", "3 parsecs").is_err());
        assert!(parse_duration("k", "-1s").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn get_and_set_every_key() {
        let mut s = EnvSettings::for_mode(Mode::Prod);
        for key in KEYS {
            let value = s.get(key).unwrap();
            if *key != "health_check_path" {
                s.set(key, &value)
                    .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
            }
        }
        assert_eq!(s, EnvSettings::for_mode(Mode::Prod), "get/set round-trips");
        s.set("sticky", "1h").unwrap();
        assert_eq!(s.sticky, Some(Duration::from_secs(3600)));
        s.set("health_check_success_codes", "200").unwrap();
        assert_eq!(s.get("health_check_success_codes").unwrap(), "200");
        assert!(matches!(s.set("nope", "1"), Err(SettingError::Unknown(_))));
        assert!(s.set("policy", "yolo").is_err());
        assert!(s.set("canary_percent", "100").is_err());
        assert!(s.set("health_check_path", "health").is_err());
    }

    #[test]
    fn validation() {
        let mut s = EnvSettings::for_mode(Mode::Prod);
        s.min = 3;
        s.max = 2;
        assert!(s.validate(20).is_err());
        s.max = 30;
        assert!(s.validate(20).is_err());
        s.max = 4;
        assert!(s.validate(20).is_ok());
    }

    #[test]
    fn serde_round_trip() {
        let mut s = EnvSettings::for_mode(Mode::Prod);
        s.sticky = Some(Duration::from_secs(60));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<EnvSettings>(&json).unwrap(), s);
        let partial: EnvSettings = serde_json::from_str("{\"policy\":\"immutable\"}").unwrap();
        assert_eq!(partial.policy, Policy::Immutable);
    }
}
