//! The REST API's request and response bodies, shared by the server and the CLI so the
//! two cannot drift apart. Paths are relative to [`API_PREFIX`].

use crate::auth::{Role, TokenKind};
use crate::health::HealthStatus;
use crate::lifecycle::EnvStatus;
use crate::model::{Bootstrap, InstanceType, Mode, Severity, Tier, VersionStatus};
use crate::resource::{ResourceKind, ResourceStatus};
use crate::settings::Policy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_PREFIX: &str = "/api/v1";
/// Liveness probe; the only route that needs no token.
pub const HEALTHZ: &str = "/healthz";
/// Media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Response header naming the instance that served a request through the balancer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub username: String,
    pub role: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateApp {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct App {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub versions: u32,
    pub environments: u32,
}

/// Query of `POST /apps/{app}/versions`; the body is the archive itself (tar.gz or zip).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    pub label: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Version {
    pub app: String,
    pub label: String,
    pub status: VersionStatus,
    pub sha256: String,
    pub size_bytes: u64,
    pub platform: String,
    /// The golden image, once baked.
    pub image: Option<String>,
    /// Processes from the Procfile (`web`, `worker`, …).
    pub processes: Vec<String>,
    /// Why the build failed, in one line.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub built_at: Option<DateTime<Utc>>,
    /// The build's output; present on `GET /apps/{app}/versions/{label}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_log: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateEnvironment {
    pub name: String,
    pub app: String,
    pub version: String,
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Fixed instance count (min = max = N).
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub instance_type: Option<InstanceType>,
    #[serde(default)]
    pub cname: Option<String>,
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    /// Environment properties, passed to instances as environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Sticky sessions: a cookie lifetime (`1h`, `30m`, `on` = 1 day).
    #[serde(default)]
    pub sticky: Option<String>,
    /// Start from a saved configuration of the application (`sprout config ENV --save NAME`).
    #[serde(default)]
    pub config: Option<String>,
    /// Any other setting, as `sprout config` names them (`policy`, `batch`, …).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployRequest {
    pub version: String,
    /// This deployment's policy (default: the environment's).
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Instances per batch, `N` or `N%` (default: the environment's).
    #[serde(default)]
    pub batch: Option<String>,
    /// Traffic splitting: the new version's share while evaluated (sets the environment's).
    #[serde(default)]
    pub canary_percent: Option<u8>,
    /// Traffic splitting: how long the canary is evaluated, e.g. `30s`.
    #[serde(default)]
    pub evaluation: Option<String>,
}

/// `PATCH /environments/{env}/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigUpdate {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// `GET /environments/{env}/config`: every setting, by the names `--set` takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ConfigView {
    pub environment: String,
    pub settings: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SaveConfig {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SavedConfig {
    pub app: String,
    pub name: String,
    pub revision: i64,
    pub settings: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// `POST /environments/{env}/properties`: set and remove environment properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SetProperties {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
    /// Keys whose values viewers may read. Values are secret (masked for viewers) by default.
    #[serde(default)]
    pub public: Vec<String>,
    /// Keys made secret again (masked for viewers).
    #[serde(default)]
    pub secret: Vec<String>,
}

/// `POST /environments/{env}/swap`: exchange CNAMEs with another environment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SwapRequest {
    pub with: String,
}

/// A deployment record (launch, deploy, configure, rollback, terminate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Deployment {
    pub id: i64,
    pub kind: String,
    pub version: Option<String>,
    pub policy: Option<String>,
    pub batch: Option<String>,
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    pub outcome: OperationOutcome,
    pub message: Option<String>,
    /// Requests the balancer served for the environment while it ran.
    pub requests: Option<i64>,
    /// Of those, answered 5xx or not answered.
    pub failed: Option<i64>,
    /// The counts miss some requests: the control plane crashed while it ran, losing what it
    /// had counted since its last checkpoint (at most 250 ms).
    #[serde(default)]
    pub approximate: bool,
}

/// Balancer figures over the sliding window (10 s).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Metrics {
    pub window_secs: f64,
    pub requests_per_sec: f64,
    pub count: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct InstanceHealth {
    pub id: String,
    pub version: String,
    pub zone: String,
    pub health: HealthStatus,
    pub color: String,
    pub causes: Vec<String>,
    pub requests_per_sec: f64,
    pub count: u64,
    pub status_5xx: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub in_flight: u64,
    pub start_to_healthy_ms: Option<i64>,
    pub uptime_secs: Option<i64>,
}

/// `GET /environments/{env}/health`, like `eb health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HealthReport {
    pub environment: String,
    pub status: EnvStatus,
    pub health: HealthStatus,
    pub color: String,
    pub causes: Vec<String>,
    pub metrics: Metrics,
    pub instances: Vec<InstanceHealth>,
    /// The resources attached to the environment, with their last health check; one that
    /// failed it (or is `Failed`) is named in `causes` and turns `Ok` into `Warning`.
    #[serde(default)]
    pub resources: Vec<AttachedResource>,
}

/// A resource attached to an environment, as `sprout status` and `sprout health` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AttachedResource {
    pub name: String,
    pub kind: ResourceKind,
    pub status: ResourceStatus,
    /// The last health check once Available (`healthy` or `unhealthy`); none before it.
    pub health: Option<String>,
    pub health_checked_at: Option<DateTime<Utc>>,
    /// `--as PREFIX`: the variables are `PREFIX_DATABASE_URL`, ...; none for the plain names.
    #[serde(rename = "as")]
    pub prefix: Option<String>,
    /// `attaching` (the environment is rolling to get the variables), `attached`, or
    /// `detaching`.
    pub attachment: crate::resource::AttachmentState,
}

/// An operation (launch, deploy, terminate, …) and how it ended; `--wait` follows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Operation {
    pub id: i64,
    pub kind: String,
    pub version: Option<String>,
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: OperationOutcome,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationOutcome {
    Running,
    Succeeded,
    Failed,
}

/// `GET /operations/{id}`: one operation, where it stands and how it ended. `--wait`
/// follows it (and, after a failure, the rollback it names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct OperationStatus {
    pub id: i64,
    /// The environment it acts on.
    pub environment: String,
    /// `launch`, `deploy`, `configure`, `rollback`, `terminate`, …
    pub kind: String,
    pub version: Option<String>,
    pub policy: Option<String>,
    pub batch: Option<String>,
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    pub outcome: OperationOutcome,
    pub phase: OperationPhase,
    /// The environment's status now.
    pub environment_status: EnvStatus,
    /// How it ended (or why it failed).
    pub message: Option<String>,
    /// Where the environment's instances stand, while it runs.
    pub progress: Option<OperationProgress>,
    /// The rollback that followed its failure (or abort).
    pub rolled_back_by: Option<i64>,
    /// Requests the balancer served for the environment while it ran (so far).
    pub requests: Option<i64>,
    /// Of those, answered 5xx or not answered.
    pub failed: Option<i64>,
    /// Passes in a row whose step failed; at [`STEP_ATTEMPTS`] the operation fails.
    pub step_failures: u32,
    /// The newest step failure.
    pub last_error: Option<String>,
}

/// A step of an operation that fails this many passes in a row fails the operation.
pub const STEP_ATTEMPTS: u32 = 3;

/// The environment's instances while an operation runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OperationProgress {
    /// Instances the environment should have.
    pub desired: u32,
    /// Running instances of the version the operation moves to.
    pub on_version: u32,
    /// Of those, passing the balancer's health checks (web tier).
    pub healthy: u32,
}

/// Where an operation stands, read together with the rollback that followed it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OperationPhase {
    /// Still running.
    InProgress,
    /// A traffic-splitting deployment whose new set serves its share, being evaluated.
    Evaluating,
    Succeeded,
    /// Failed, and nothing follows it.
    Failed,
    /// Failed (or aborted); its rollback runs.
    RollingBack,
    /// Failed (or aborted); its rollback brought the environment back.
    RolledBack,
    /// Failed (or aborted), and so did its rollback.
    RollbackFailed,
}

impl OperationPhase {
    /// The phase of an operation with `outcome`, given whether its canary is being
    /// evaluated and the outcome of the rollback that followed it, if one did.
    pub fn of(
        outcome: OperationOutcome,
        evaluating: bool,
        rollback: Option<OperationOutcome>,
    ) -> Self {
        match (outcome, rollback) {
            (OperationOutcome::Running, _) if evaluating => OperationPhase::Evaluating,
            (OperationOutcome::Running, _) => OperationPhase::InProgress,
            (OperationOutcome::Succeeded, _) => OperationPhase::Succeeded,
            (OperationOutcome::Failed, None) => OperationPhase::Failed,
            (OperationOutcome::Failed, Some(OperationOutcome::Running)) => {
                OperationPhase::RollingBack
            }
            (OperationOutcome::Failed, Some(OperationOutcome::Succeeded)) => {
                OperationPhase::RolledBack
            }
            (OperationOutcome::Failed, Some(OperationOutcome::Failed)) => {
                OperationPhase::RollbackFailed
            }
        }
    }

    /// Whether nothing more will happen to it (its rollback, if any, ended too).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            OperationPhase::InProgress | OperationPhase::Evaluating | OperationPhase::RollingBack
        )
    }
}

impl OperationOutcome {
    pub const ALL: &'static [OperationOutcome] = &[
        OperationOutcome::Running,
        OperationOutcome::Succeeded,
        OperationOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationOutcome::Running => "running",
            OperationOutcome::Succeeded => "succeeded",
            OperationOutcome::Failed => "failed",
        }
    }
}

impl std::str::FromStr for OperationOutcome {
    type Err = crate::model::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperationOutcome::ALL
            .iter()
            .copied()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| crate::model::UnknownValue {
                kind: "operation outcome",
                value: s.to_string(),
                expected: "running succeeded failed",
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Environment {
    pub name: String,
    pub app: String,
    /// The version the environment runs (or is moving to while Updating).
    pub version: String,
    pub tier: Tier,
    pub mode: Mode,
    pub status: EnvStatus,
    /// Grey, Green, Yellow or Red.
    pub health: String,
    /// Ok, Info, Warning, Degraded, Severe, Pending or Unknown.
    pub health_status: HealthStatus,
    pub policy: Policy,
    pub cname: String,
    /// Where the environment answers through the balancer (web tier).
    pub url: Option<String>,
    pub instance_type: InstanceType,
    pub bootstrap: Bootstrap,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub env: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub operation: Option<Operation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Instance {
    pub id: String,
    pub version: String,
    pub zone: String,
    /// Docker's state: created, running, exited, …
    pub state: String,
    pub healthy: bool,
    pub address: Option<String>,
    pub container: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub health: HealthStatus,
    /// From start to its first passed health check.
    pub start_to_healthy_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EnvironmentDetail {
    #[serde(flatten)]
    pub environment: Environment,
    pub instances: Vec<Instance>,
    /// The resources attached to the environment.
    #[serde(default)]
    pub resources: Vec<AttachedResource>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub severity: Severity,
    pub environment: Option<String>,
    pub app: Option<String>,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `type` URIs of problems, stable for scripts.
pub mod problem_types {
    pub const INVALID_INPUT: &str = "https://sprout.dev/problems/invalid-input";
    pub const NOT_FOUND: &str = "https://sprout.dev/problems/not-found";
    pub const CONFLICT: &str = "https://sprout.dev/problems/conflict";
    pub const UNAUTHORIZED: &str = "https://sprout.dev/problems/unauthorized";
    pub const FORBIDDEN: &str = "https://sprout.dev/problems/forbidden";
    pub const TOO_LARGE: &str = "https://sprout.dev/problems/too-large";
    pub const BAD_BUNDLE: &str = "https://sprout.dev/problems/bad-bundle";
    pub const INTERNAL: &str = "https://sprout.dev/problems/internal";
    pub const UNAVAILABLE: &str = "https://sprout.dev/problems/unavailable";
    pub const RATE_LIMITED: &str = "https://sprout.dev/problems/rate-limited";
    pub const QUOTA_EXCEEDED: &str = "https://sprout.dev/problems/quota-exceeded";
    /// A stored record does not parse (500); the detail names the row and the field.
    pub const CORRUPT_RECORD: &str = "https://sprout.dev/problems/corrupt-record";
}

/// `GET /zones`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Zone {
    pub name: String,
    /// `local`, or the zone's own Docker engine endpoint.
    pub engine: String,
    pub available: bool,
    /// Running instances of this server in the zone.
    pub instances: usize,
}

/// `POST /environments/{env}/scale`: `instances` fixes the count (min = max = N, like
/// `eb scale`); otherwise `min`/`max` bound it and the autoscaler moves within.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScaleRequest {
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
}

/// A scheduled scaling action (`POST /environments/{env}/schedules`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScheduledAction {
    pub name: String,
    /// Cron, five fields (minute first) or six (seconds first), UTC.
    pub cron: String,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub desired: Option<u32>,
}

/// `POST /users` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// `PUT /users/{name}/password`: an admin for anyone, or a user for itself.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangePassword {
    pub password: String,
}

/// The answer to a password change: every other token of the user is revoked. When users
/// change their own password, `session` is a new session token that replaces the one the
/// call came with (which is revoked too).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasswordChanged {
    pub username: String,
    #[serde(default)]
    pub session: Option<LoginResponse>,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// `POST /tokens`: a named API token for the calling user, with the caller's role.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateToken {
    pub name: String,
    /// Lifetime such as `30d`, `12h`, `90m`; 90 days when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// The answer to `POST /tokens`: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiToken,
}

/// A token as `GET /tokens` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub username: String,
    pub role: Role,
    pub kind: TokenKind,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One change made through the API: who, what, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_phases() {
        use OperationOutcome::*;
        use OperationPhase as P;
        assert_eq!(OperationPhase::of(Running, false, None), P::InProgress);
        assert_eq!(OperationPhase::of(Running, true, None), P::Evaluating);
        assert_eq!(OperationPhase::of(Succeeded, true, None), P::Succeeded);
        assert_eq!(OperationPhase::of(Failed, false, None), P::Failed);
        assert_eq!(
            OperationPhase::of(Failed, true, Some(Running)),
            P::RollingBack
        );
        assert_eq!(
            OperationPhase::of(Failed, false, Some(Succeeded)),
            P::RolledBack
        );
        assert_eq!(
            OperationPhase::of(Failed, false, Some(Failed)),
            P::RollbackFailed
        );
        for p in [P::InProgress, P::Evaluating, P::RollingBack] {
            assert!(!p.is_final(), "{p:?}");
        }
        for p in [P::Succeeded, P::Failed, P::RolledBack, P::RollbackFailed] {
            assert!(p.is_final(), "{p:?}");
        }
        assert_eq!(
            serde_json::to_string(&P::RollingBack).unwrap(),
            "\"rolling-back\""
        );
    }
}
