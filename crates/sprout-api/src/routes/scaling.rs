//! Scaling: an environment's size, its scheduled actions, and the zones instances spread over.

use super::{accepted, created, ApiResult, EnvPath, JsonBody, PathParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sprout_core::api::{self, ScaleRequest, ScheduledAction};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scale))
        .routes(routes!(list_schedules, add_schedule))
        .routes(routes!(remove_schedule))
        .routes(routes!(zones))
        .routes(routes!(fail_zone))
        .routes(routes!(restore_zone))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/scale",
    tag = "scaling",
    operation_id = "scale",
    responses((status = 202, description = "Accepted", body = api::Environment)),
    params(EnvPath), request_body = ScaleRequest
)]
async fn scale(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<ScaleRequest>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control.scale(&env, &req, Some(&c.username)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/schedules",
    tag = "scaling",
    operation_id = "list_schedules",
    responses((status = 200, description = "Scheduled actions", body = Vec<ScheduledAction>)),
    params(EnvPath)
)]
async fn list_schedules(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<Vec<ScheduledAction>>> {
    Ok(Json(s.control.list_schedules(&env).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/schedules",
    tag = "scaling",
    operation_id = "add_schedule",
    responses((status = 201, description = "Created", body = ScheduledAction)),
    params(EnvPath), request_body = ScheduledAction
)]
async fn add_schedule(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<ScheduledAction>,
) -> ApiResult<(StatusCode, Json<ScheduledAction>)> {
    c.require_write()?;
    Ok(created(
        s.control
            .add_schedule(&env, &req, Some(&c.username))
            .await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/environments/{env}/schedules/{name}",
    tag = "scaling",
    operation_id = "remove_schedule",
    responses((status = 204, description = "Removed")),
    params(EnvPath, ("name" = String, Path, description = "Action name"))
)]
async fn remove_schedule(
    State(s): State<AppState>,
    c: Caller,
    PathParams((env, name)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control
        .remove_schedule(&env, &name, Some(&c.username))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/zones",
    tag = "zones",
    operation_id = "zones",
    responses((status = 200, description = "Zones", body = Vec<api::Zone>))
)]
async fn zones(State(s): State<AppState>, _c: Caller) -> ApiResult<Json<Vec<api::Zone>>> {
    Ok(Json(s.control.zones().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/zones/{zone}/fail",
    tag = "zones",
    operation_id = "fail_zone",
    responses((status = 200, description = "Zones after the change", body = Vec<api::Zone>)),
    params(("zone" = String, Path, description = "Zone name"))
)]
async fn fail_zone(
    State(s): State<AppState>,
    c: Caller,
    PathParams(zone): PathParams<String>,
) -> ApiResult<Json<Vec<api::Zone>>> {
    c.require_admin()?;
    Ok(Json(s.control.fail_zone(&zone, Some(&c.username)).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/zones/{zone}/restore",
    tag = "zones",
    operation_id = "restore_zone",
    responses((status = 200, description = "Zones after the change", body = Vec<api::Zone>)),
    params(("zone" = String, Path, description = "Zone name"))
)]
async fn restore_zone(
    State(s): State<AppState>,
    c: Caller,
    PathParams(zone): PathParams<String>,
) -> ApiResult<Json<Vec<api::Zone>>> {
    c.require_admin()?;
    Ok(Json(
        s.control.restore_zone(&zone, Some(&c.username)).await?,
    ))
}
