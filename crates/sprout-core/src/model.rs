//! The small vocabularies of the domain: tiers, modes, bootstraps, instance types, severities.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}' (expected one of: {expected})")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a string-backed enum with `Display`/`FromStr` and serde as lowercase strings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $ty:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $ty {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        // By hand: the derive does not see serde renames passed through a macro.
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($ty))
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::model::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err($crate::model::UnknownValue {
                        kind: $kind,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// `web` sits behind the balancer; `worker` is fed from its queue and has no public route.
    Tier, "tier", { Web => "web", Worker => "worker" }
);
string_enum!(
    /// `dev`: one instance, fast iteration. `prod`: balanced, at least two instances.
    Mode, "mode", { Dev => "dev", Prod => "prod" }
);
string_enum!(
    /// How an instance gets its code: a baked golden image, a boot script at every start, or both.
    Bootstrap, "bootstrap", { Golden => "golden", UserData => "user-data", Hybrid => "hybrid" }
);
string_enum!(
    Severity, "severity", { Info => "INFO", Warn => "WARN", Error => "ERROR" }
);
string_enum!(
    /// A version is `processing` while its bundle is checked and its image baked.
    VersionStatus, "version status", { Processing => "processing", Ready => "ready", Failed => "failed" }
);
string_enum!(
    /// Named sizes, applied as Docker CPU and memory limits (see [`InstanceType::limits`]).
    InstanceType, "instance type", {
        Nano => "nano", Micro => "micro", Small => "small", Medium => "medium", Large => "large"
    }
);

/// CPU and memory limits of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU in thousandths of a core (Docker's NanoCpus / 1e6).
    pub millicpus: u32,
    pub memory_mib: u32,
    /// Most processes and threads at once (Docker's PidsLimit): a fork bomb stops here.
    pub pids: u32,
}

/// What a version's build container may use: a build step runs the bundle's own commands
/// as root, so it is confined like an instance and stopped when it runs too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    pub millicpus: u32,
    pub memory_mib: u32,
    pub pids: u32,
    /// A build running longer is stopped and the version fails.
    pub timeout: std::time::Duration,
    /// The build log kept with the version; output past it is left out (and said so).
    pub max_log_bytes: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        Self {
            millicpus: 1000,
            memory_mib: 1024,
            pids: 1024,
            timeout: std::time::Duration::from_secs(15 * 60),
            max_log_bytes: 1 << 20,
        }
    }
}

impl InstanceType {
    /// The documented size table (README "Instance types").
    pub fn limits(self) -> Limits {
        let (millicpus, memory_mib, pids) = match self {
            InstanceType::Nano => (250, 128, 128),
            InstanceType::Micro => (500, 256, 256),
            InstanceType::Small => (1000, 512, 512),
            InstanceType::Medium => (2000, 1024, 1024),
            InstanceType::Large => (4000, 2048, 2048),
        };
        Limits {
            millicpus,
            memory_mib,
            pids,
        }
    }
}

impl InstanceType {
    /// Whether an engine whose host has `cpus` CPUs can run this type at all (Docker refuses
    /// a CPU limit above the host's count).
    pub fn fits(self, cpus: u32) -> bool {
        self.limits().millicpus <= cpus.saturating_mul(1000)
    }

    /// The types an engine with `cpus` CPUs can run, smallest first.
    pub fn fitting(cpus: u32) -> Vec<InstanceType> {
        Self::ALL.iter().copied().filter(|t| t.fits(cpus)).collect()
    }
}

impl Mode {
    /// Instances an environment of this mode gets when the user names no count.
    pub fn default_instances(self) -> u32 {
        match self {
            Mode::Dev => 1,
            Mode::Prod => 2,
        }
    }
    pub fn default_instance_type(self) -> InstanceType {
        match self {
            Mode::Dev => InstanceType::Micro,
            Mode::Prod => InstanceType::Small,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_types_fit_the_host() {
        use super::InstanceType;
        assert!(InstanceType::Medium.fits(2));
        assert!(!InstanceType::Large.fits(2));
        assert!(InstanceType::Large.fits(4));
        assert_eq!(
            InstanceType::fitting(1),
            vec![InstanceType::Nano, InstanceType::Micro, InstanceType::Small]
        );
    }

    use super::*;

    #[test]
    fn round_trip_strings() {
        for t in InstanceType::ALL {
            assert_eq!(t.as_str().parse::<InstanceType>().ok(), Some(*t));
        }
        assert_eq!(
            "user-data".parse::<Bootstrap>().ok(),
            Some(Bootstrap::UserData)
        );
        let err = "huge".parse::<InstanceType>().unwrap_err();
        assert!(err.to_string().contains("nano micro small medium large"));
        assert_eq!(
            serde_json::to_string(&Severity::Warn).ok().as_deref(),
            Some("\"WARN\"")
        );
    }

    #[test]
    fn sizes_grow() {
        let sizes: Vec<Limits> = InstanceType::ALL.iter().map(|t| t.limits()).collect();
        assert!(sizes.windows(2).all(|w| w[0].millicpus < w[1].millicpus
            && w[0].memory_mib < w[1].memory_mib
            && w[0].pids < w[1].pids));
    }
}
