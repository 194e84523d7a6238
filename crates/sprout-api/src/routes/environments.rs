//! Environments and their operations: launch, deploy, abort, swap, terminate, the
//! operation records, events and logs.

use super::{accepted, ApiResult, EnvPath, JsonBody, OperationPath, PathParams, QueryParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sprout_core::api::{self, CreateEnvironment, DeployRequest, SwapRequest};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_environments, create_environment))
        .routes(routes!(get_environment, terminate))
        .routes(routes!(deploy))
        .routes(routes!(abort))
        .routes(routes!(swap))
        .routes(routes!(deployments))
        .routes(routes!(get_operation))
        .routes(routes!(events))
        .routes(routes!(logs))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EnvListQuery {
    app: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/environments",
    tag = "environments",
    operation_id = "list_environments",
    responses((status = 200, description = "Environments; for viewers, property values not marked public read `********`", body = Vec<api::Environment>)),
    params(EnvListQuery)
)]
async fn list_environments(
    State(s): State<AppState>,
    c: Caller,
    QueryParams(q): QueryParams<EnvListQuery>,
) -> ApiResult<Json<Vec<api::Environment>>> {
    Ok(Json(
        s.control
            .list_environments(q.app.as_deref(), c.role)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments",
    tag = "environments",
    operation_id = "create_environment",
    responses((status = 202, description = "Accepted; the environment is launching", body = api::Environment)),
    request_body = CreateEnvironment
)]
async fn create_environment(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(req): JsonBody<CreateEnvironment>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control.create_environment(req, Some(&c.username)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}",
    tag = "environments",
    operation_id = "get_environment",
    responses((status = 200, description = "The environment and its instances; for viewers, property values not marked public read `********`", body = api::EnvironmentDetail)),
    params(EnvPath)
)]
async fn get_environment(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<api::EnvironmentDetail>> {
    Ok(Json(s.control.get_environment(&env, c.role).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/deploy",
    tag = "environments",
    operation_id = "deploy",
    responses((status = 202, description = "Accepted; the deployment runs", body = api::Environment)),
    params(EnvPath), request_body = DeployRequest
)]
async fn deploy(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control.deploy(&env, &req, Some(&c.username)).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/abort",
    tag = "environments",
    operation_id = "abort",
    responses((status = 202, description = "Accepted; the running operation rolls back", body = api::Environment)),
    params(EnvPath)
)]
async fn abort(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(s.control.abort(&env, Some(&c.username)).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/swap",
    tag = "environments",
    operation_id = "swap",
    responses((status = 204, description = "Host names swapped")),
    params(EnvPath), request_body = SwapRequest
)]
async fn swap(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    JsonBody(req): JsonBody<SwapRequest>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control.swap(&env, &req.with, Some(&c.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/deployments",
    tag = "environments",
    operation_id = "deployments",
    responses((status = 200, description = "Deployment records", body = Vec<api::Deployment>)),
    params(EnvPath)
)]
async fn deployments(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<Json<Vec<api::Deployment>>> {
    Ok(Json(s.control.deployments(&env).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/operations/{id}",
    tag = "environments",
    operation_id = "get_operation",
    responses((status = 200, description = "The operation: its outcome, phase, progress, the rollback that followed it, and the requests served and failed while it ran", body = api::OperationStatus)),
    params(OperationPath)
)]
async fn get_operation(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(OperationPath { id }): PathParams<OperationPath>,
) -> ApiResult<Json<api::OperationStatus>> {
    Ok(Json(s.control.operation(id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/environments/{env}",
    tag = "environments",
    operation_id = "terminate",
    responses((status = 202, description = "Accepted; the environment is terminating", body = api::Environment)),
    params(EnvPath)
)]
async fn terminate(
    State(s): State<AppState>,
    c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok(accepted(
        s.control.terminate(&env, Some(&c.username)).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/events",
    tag = "environments",
    operation_id = "events",
    responses((status = 200, description = "Events, oldest first", body = Vec<api::Event>)),
    params(EnvPath, EventsQuery)
)]
async fn events(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    QueryParams(q): QueryParams<EventsQuery>,
) -> ApiResult<Json<Vec<api::Event>>> {
    Ok(Json(
        s.control
            .events(&env, q.after, q.limit.unwrap_or(100))
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    tail: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/logs",
    tag = "environments",
    operation_id = "logs",
    responses((status = 200, description = "The last lines of each instance's log", body = String, content_type = "text/plain")),
    params(EnvPath, LogsQuery)
)]
async fn logs(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(EnvPath { env }): PathParams<EnvPath>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> ApiResult<Response> {
    let text = s.control.logs(&env, q.tail.unwrap_or(100)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
