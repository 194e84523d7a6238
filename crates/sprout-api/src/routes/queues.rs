//! Sprout's own queue API, under the environment: send, stats, the dead-letter queue and its
//! redrive, and the SQS credentials for clients outside Sprout.

use super::{created, ApiResult, EnvPath, JsonBody, PathParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sprout_core::queue::{
    Credentials, DeadMessage, QueueStats, RedriveResponse, SendRequest, SendResponse,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(send))
        .routes(routes!(dead))
        .routes(routes!(redrive))
        .routes(routes!(credentials))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/queue",
    tag = "queue",
    operation_id = "stats",
    responses((status = 200, description = "Queue counts", body = QueueStats)),
    params(EnvPath)
)]
async fn stats(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(s.control.queue_stats(&env).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/queue/messages",
    tag = "queue",
    operation_id = "send",
    responses((status = 201, description = "Sent", body = SendResponse)),
    params(EnvPath), request_body = SendRequest
)]
async fn send(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    c.require_write()?;
    Ok(created(s.control.queue_send(&env, req).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/queue/dlq",
    tag = "queue",
    operation_id = "dead",
    responses((status = 200, description = "Dead messages with their bodies, oldest first: at most 1,000 and 16 MiB of bodies", body = Vec<DeadMessage>)),
    params(EnvPath)
)]
async fn dead(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<Vec<DeadMessage>>> {
    Ok(Json(s.control.queue_dead(&env).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/queue/dlq/redrive",
    tag = "queue",
    operation_id = "redrive",
    responses((status = 200, description = "Messages moved back", body = RedriveResponse)),
    params(EnvPath)
)]
async fn redrive(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<RedriveResponse>> {
    c.require_write()?;
    Ok(Json(s.control.queue_redrive(&env).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/queue/credentials",
    tag = "queue",
    operation_id = "credentials",
    responses((status = 200, description = "SQS endpoint and keys", body = Credentials)),
    params(EnvPath)
)]
async fn credentials(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<Credentials>> {
    // Secrets: the same right as changing the environment.
    c.require_write()?;
    Ok(Json(s.control.queue_credentials(&env).await?))
}
