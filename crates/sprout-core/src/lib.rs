//! Sprout's domain: the objects, their names, the bundle rules, the environment lifecycle
//! and the reconcile plan. Pure: no I/O, no clocks, no randomness — callers pass them in.

pub mod api;
pub mod auth;
pub mod bundle;
pub mod cron;
pub mod health;
pub mod lifecycle;
pub mod manifest;
pub mod model;
pub mod names;
pub mod plan;
pub mod properties;
pub mod queue;
pub mod resource;
pub mod resource_ha;
pub mod resource_health;
pub mod scaling;
pub mod settings;
pub mod sigv4;

pub use health::HealthStatus;
pub use lifecycle::{EnvOp, EnvStatus, LifecycleError, OpKind, Transition};
pub use model::{Bootstrap, InstanceType, Mode, Severity, Tier, VersionStatus};
pub use names::{
    AppName, Cname, EnvName, NameError, RequestPath, ResourceName, Username, VersionLabel,
};
pub use settings::{BatchSize, EnvSettings, Policy};
