//! Sprout's own queue API, under the environment: send, stats, the dead-letter queue and its
//! redrive, and the SQS credentials for clients outside Sprout.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::JsonBody;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use sprout_core::queue::{
    Credentials, DeadMessage, QueueStats, RedriveResponse, SendRequest, SendResponse,
};

type ApiResult<T> = Result<T, ApiError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/environments/{env}/queue", get(stats))
        .route("/api/v1/environments/{env}/queue/messages", post(send))
        .route("/api/v1/environments/{env}/queue/dlq", get(dead))
        .route(
            "/api/v1/environments/{env}/queue/dlq/redrive",
            post(redrive),
        )
        .route(
            "/api/v1/environments/{env}/queue/credentials",
            get(credentials),
        )
}

async fn stats(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(s.control.queue_stats(&env).await?))
}

async fn send(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    c.require_write()?;
    Ok((
        StatusCode::CREATED,
        Json(s.control.queue_send(&env, req).await?),
    ))
}

async fn dead(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<Vec<DeadMessage>>> {
    Ok(Json(s.control.queue_dead(&env).await?))
}

async fn redrive(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<RedriveResponse>> {
    c.require_write()?;
    Ok(Json(s.control.queue_redrive(&env).await?))
}

async fn credentials(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<Credentials>> {
    // Secrets: the same right as changing the environment.
    c.require_write()?;
    Ok(Json(s.control.queue_credentials(&env).await?))
}
