use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use sprout_control::IncomingBundle;
use sprout_core::api::{
    self, ConfigUpdate, CreateApp, CreateEnvironment, DeployRequest, LoginRequest, SaveConfig,
    ScaleRequest, ScheduledAction, SetProperties, SwapRequest, UploadQuery,
};
use utoipa_axum::{router::OpenApiRouter, routes};

type ApiResult<T> = Result<T, ApiError>;

/// Every REST route, each described by its `#[utoipa::path]` (so none can be missing from
/// the OpenAPI document).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, delete_app))
        .routes(routes!(list_versions, upload_version))
        .routes(routes!(get_version, delete_version))
        .routes(routes!(list_environments, create_environment))
        .routes(routes!(get_environment, terminate))
        .routes(routes!(deploy))
        .routes(routes!(abort))
        .routes(routes!(health))
        .routes(routes!(get_config, configure))
        .routes(routes!(save_config))
        .routes(routes!(set_properties))
        .routes(routes!(swap))
        .routes(routes!(deployments))
        .routes(routes!(get_operation))
        .routes(routes!(scale))
        .routes(routes!(list_schedules, add_schedule))
        .routes(routes!(remove_schedule))
        .routes(routes!(zones))
        .routes(routes!(fail_zone))
        .routes(routes!(restore_zone))
        .routes(routes!(metrics))
        .routes(routes!(events))
        .routes(routes!(logs))
        .routes(routes!(build_platform))
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

#[utoipa::path(
    get,
    path = "/api/v1/apps",
    tag = "apps",
    operation_id = "list_apps",
    responses((status = 200, description = "Applications", body = Vec<api::App>))
)]
async fn list_apps(State(s): State<AppState>, _c: Caller) -> ApiResult<Json<Vec<api::App>>> {
    Ok(Json(s.control.list_apps().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}",
    tag = "apps",
    operation_id = "get_app",
    responses((status = 200, description = "The application", body = api::App)),
    params(AppPath)
)]
async fn get_app(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
) -> ApiResult<Json<api::App>> {
    s.control.require_app(&app).await?;
    let apps = s.control.list_apps().await?;
    apps.into_iter()
        .find(|a| a.name == app)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("application '{app}' not found")))
}

#[utoipa::path(
    post,
    path = "/api/v1/apps",
    tag = "apps",
    operation_id = "create_app",
    responses((status = 201, description = "Created", body = api::App)),
    request_body = CreateApp
)]
async fn create_app(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(req): JsonBody<CreateApp>,
) -> ApiResult<(StatusCode, Json<api::App>)> {
    c.require_write()?;
    Ok((
        StatusCode::CREATED,
        Json(s.control.create_app(&req.name).await?),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}",
    tag = "apps",
    operation_id = "delete_app",
    responses((status = 204, description = "Deleted")),
    params(AppPath)
)]
async fn delete_app(
    State(s): State<AppState>,
    c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control.delete_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/versions",
    tag = "versions",
    operation_id = "list_versions",
    responses((status = 200, description = "Versions", body = Vec<api::Version>)),
    params(AppPath)
)]
async fn list_versions(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
) -> ApiResult<Json<Vec<api::Version>>> {
    Ok(Json(s.control.list_versions(&app).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/versions/{label}",
    tag = "versions",
    operation_id = "get_version",
    responses((status = 200, description = "The version, with its build log", body = api::Version)),
    params(AppPath, ("label" = String, Path, description = "Version label"))
)]
async fn get_version(
    State(s): State<AppState>,
    _c: Caller,
    PathParams((app, label)): PathParams<(String, String)>,
) -> ApiResult<Json<api::Version>> {
    Ok(Json(s.control.get_version(&app, &label).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/versions/{label}",
    tag = "versions",
    operation_id = "delete_version",
    responses(
        (status = 204, description = "Deleted; its image and bundle are reclaimed"),
        (status = 409, description = "An environment runs the version (or may roll back to it)")
    ),
    params(AppPath, ("label" = String, Path, description = "Version label"))
)]
async fn delete_version(
    State(s): State<AppState>,
    c: Caller,
    PathParams((app, label)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control.delete_version(&app, &label).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/versions",
    tag = "versions",
    operation_id = "upload_version",
    responses((status = 202, description = "Accepted; the version is processing", body = api::Version)),
    params(AppPath, UploadQuery), request_body(content = Vec<u8>, description = "The bundle: a .tar.gz or .zip archive", content_type = "application/octet-stream")
)]
async fn upload_version(
    State(s): State<AppState>,
    c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<api::Version>)> {
    c.require_write()?;
    let Query(query) = query
        .map_err(|e| ApiError::invalid(format!("{}: `?label=LABEL` is required", e.body_text())))?;
    let declared_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let incoming = IncomingBundle {
        app,
        label: query.label,
        description: query.description,
        declared_size,
        body: body.into_data_stream(),
        started_by: Some(c.username.clone()),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.upload_version(incoming).await?),
    ))
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.create_environment(req, Some(&c.username)).await?),
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.deploy(&env, &req, Some(&c.username)).await?),
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.abort(&env, Some(&c.username)).await?),
    ))
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.configure(&env, &req, Some(&c.username)).await?),
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
    Ok((
        StatusCode::CREATED,
        Json(
            s.control
                .save_config(&env, &req.name, Some(&c.username))
                .await?,
        ),
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
    Ok((
        StatusCode::ACCEPTED,
        Json(
            s.control
                .set_properties(&env, &req, Some(&c.username))
                .await?,
        ),
    ))
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.terminate(&env, Some(&c.username)).await?),
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

#[utoipa::path(
    post,
    path = "/api/v1/platforms/{name}/build",
    tag = "platforms",
    operation_id = "build_platform",
    responses((status = 200, description = "The build's output, streamed", body = String, content_type = "text/plain")),
    params(("name" = String, Path, description = "Catalogue platform: python or static"))
)]
/// Builds a catalogue platform image, streaming the build's output as it happens.
async fn build_platform(
    State(s): State<AppState>,
    c: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    c.require_admin()?;
    let image = sprout_core::manifest::platform_image(&name);
    if sprout_core::manifest::catalogue_platform(&image).is_none() {
        return Err(ApiError::not_found(format!(
            "unknown platform '{name}' (catalogue: python, static)"
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let control = s.control.clone();
    tokio::spawn(async move {
        let _ = tx.send(format!("building {image}"));
        match control.runtime().ensure_platform(&image, &tx).await {
            Ok(()) => {
                let _ = tx.send(format!("{image} is ready"));
            }
            Err(e) => {
                let _ = tx.send(format!("error: {e}"));
            }
        }
    });
    let stream =
        tokio_stream_lines(rx).map(|line| Ok::<_, std::convert::Infallible>(format!("{line}\n")));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn tokio_stream_lines(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl futures_util::Stream<Item = String> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
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
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.scale(&env, &req, Some(&c.username)).await?),
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
    Ok((
        StatusCode::CREATED,
        Json(
            s.control
                .add_schedule(&env, &req, Some(&c.username))
                .await?,
        ),
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
