//! The REST API's routes, one module per resource, each handler described by its
//! `#[utoipa::path]` (so none can be missing from the OpenAPI document); the path parameters
//! and extractors they share are here.

mod apps;
mod environments;
pub(crate) mod health;
mod queues;
mod resources;
mod scaling;
mod settings;
mod users;

use crate::auth;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sprout_core::api::{self, LoginRequest};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Every REST route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .merge(apps::router())
        .merge(environments::router())
        .merge(settings::router())
        .merge(scaling::router())
        .merge(health::router())
        .merge(queues::router())
        .merge(resources::router())
        .merge(users::router())
}

/// `202 Accepted` with the JSON of what now runs.
pub(crate) fn accepted<T>(value: T) -> (StatusCode, Json<T>) {
    (StatusCode::ACCEPTED, Json(value))
}

/// `201 Created` with the JSON of what was made.
pub(crate) fn created<T>(value: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(value))
}

/// The `{env}` of every environment route.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EnvPath {
    /// Environment name
    pub env: String,
}

/// The `{id}` of the operation route.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationPath {
    /// Operation id (as in an environment's `operation.id` or its deployment records)
    pub id: i64,
}

/// The `{app}` of every application route.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// Application name
    pub app: String,
}

/// JSON bodies whose errors are problems too (axum's default rejection is plain text).
#[derive(axum::extract::FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Query strings whose errors are problems too.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Path parameters whose errors (e.g. bad UTF-8) are problems too.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "auth",
    operation_id = "login",
    responses((status = 200, description = "A session token", body = api::LoginResponse)),
    request_body = LoginRequest, security(())
)]
async fn login(
    State(state): State<AppState>,
    auth::ClientAddr(client): auth::ClientAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<api::LoginResponse>> {
    Ok(Json(
        auth::login(&state, &req, client.map(|a| a.ip())).await?,
    ))
}
