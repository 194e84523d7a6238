//! An environment's settings and properties, and saved configurations.

use super::{accepted, created, ApiResult, EnvPath, JsonBody, PathParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sprout_core::api::{self, ConfigUpdate, SaveConfig, SetProperties};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config, configure))
        .routes(routes!(save_config))
        .routes(routes!(set_properties))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/config",
    tag = "settings",
    operation_id = "get_config",
    responses((status = 200, description = "Every setting and property; for viewers, property values not marked public read `********`", body = api::ConfigView)),
    params(EnvPath)
)]
async fn get_config(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<api::ConfigView>> {
    Ok(Json(s.control.get_config(&env, c.role).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/environments/{env}/config",
    tag = "settings",
    operation_id = "configure",
    responses((status = 202, description = "Accepted; the change rolls out", body = api::Environment)),
    params(EnvPath), request_body = ConfigUpdate
)]
async fn configure(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<ConfigUpdate>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control.configure(&env, &req, Some(&c.username)).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/config/save",
    tag = "settings",
    operation_id = "save_config",
    responses((status = 201, description = "Saved", body = api::SavedConfig)),
    params(EnvPath), request_body = SaveConfig
)]
async fn save_config(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<SaveConfig>,
) -> ApiResult<(StatusCode, Json<api::SavedConfig>)> {
    c.require_write()?;
    Ok(created(
        s.control
            .save_config(&env, &req.name, Some(&c.username))
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/properties",
    tag = "settings",
    operation_id = "set_properties",
    responses((status = 202, description = "Accepted; the change rolls out", body = api::Environment)),
    params(EnvPath), request_body = SetProperties
)]
async fn set_properties(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<SetProperties>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control
            .set_properties(&env, &req, Some(&c.username))
            .await?,
    ))
}
