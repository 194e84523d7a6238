//! Health: the liveness probe, an environment's enhanced health and the balancer's metrics.

use super::{ApiResult, EnvPath, PathParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprout_core::api;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
}

/// Liveness probe: answers without a token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/health",
    tag = "health",
    operation_id = "health",
    responses((status = 200, description = "Enhanced health", body = api::HealthReport)),
    params(EnvPath)
)]
async fn health(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<api::HealthReport>> {
    Ok(Json(s.control.health_report(&env).await?))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition of the balancer's metrics", body = String, content_type = "text/plain"))
)]
/// Prometheus text exposition of the balancer's metrics.
async fn metrics(State(s): State<AppState>, _c: Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.control.balancer().prometheus(),
    )
        .into_response()
}
