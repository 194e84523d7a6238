use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use sprout_control::IncomingBundle;
use sprout_core::api::{
    self, ConfigUpdate, CreateApp, CreateEnvironment, DeployRequest, LoginRequest, SaveConfig,
    ScaleRequest, ScheduledAction, SetProperties, SwapRequest, UploadQuery,
};

type ApiResult<T> = Result<T, ApiError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(api::HEALTHZ, get(|| async { "ok" }))
        .route("/api/v1/login", post(login))
        .route("/api/v1/apps", get(list_apps).post(create_app))
        .route("/api/v1/apps/{app}", get(get_app).delete(delete_app))
        .route(
            "/api/v1/apps/{app}/versions",
            get(list_versions).post(upload_version),
        )
        .route("/api/v1/apps/{app}/versions/{label}", get(get_version))
        .route(
            "/api/v1/environments",
            get(list_environments).post(create_environment),
        )
        .route(
            "/api/v1/environments/{env}",
            get(get_environment).delete(terminate),
        )
        .route("/api/v1/environments/{env}/deploy", post(deploy))
        .route("/api/v1/environments/{env}/abort", post(abort))
        .route("/api/v1/environments/{env}/health", get(health))
        .route(
            "/api/v1/environments/{env}/config",
            get(get_config).patch(configure),
        )
        .route("/api/v1/environments/{env}/config/save", post(save_config))
        .route(
            "/api/v1/environments/{env}/properties",
            post(set_properties),
        )
        .route("/api/v1/environments/{env}/swap", post(swap))
        .route("/api/v1/environments/{env}/deployments", get(deployments))
        .route("/api/v1/environments/{env}/scale", post(scale))
        .route(
            "/api/v1/environments/{env}/schedules",
            get(list_schedules).post(add_schedule),
        )
        .route(
            "/api/v1/environments/{env}/schedules/{name}",
            axum::routing::delete(remove_schedule),
        )
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/zones/{zone}/fail", post(fail_zone))
        .route("/api/v1/zones/{zone}/restore", post(restore_zone))
        .route("/metrics", get(metrics))
        .route("/api/v1/environments/{env}/events", get(events))
        .route("/api/v1/environments/{env}/logs", get(logs))
        .route("/api/v1/platforms/{name}/build", post(build_platform))
        .fallback(|| async { ApiError::not_found("no such route") })
}

/// JSON bodies whose errors are problems too (axum's default rejection is plain text).
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<api::LoginResponse>> {
    Ok(Json(auth::login(&state, &req).await?))
}

async fn list_apps(State(s): State<AppState>, _c: Caller) -> ApiResult<Json<Vec<api::App>>> {
    Ok(Json(s.control.list_apps().await?))
}

async fn get_app(
    State(s): State<AppState>,
    _c: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<api::App>> {
    s.control.require_app(&app).await?;
    let apps = s.control.list_apps().await?;
    apps.into_iter()
        .find(|a| a.name == app)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("application '{app}' not found")))
}

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

async fn delete_app(
    State(s): State<AppState>,
    c: Caller,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control.delete_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_versions(
    State(s): State<AppState>,
    _c: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<api::Version>>> {
    Ok(Json(s.control.list_versions(&app).await?))
}

async fn get_version(
    State(s): State<AppState>,
    _c: Caller,
    Path((app, label)): Path<(String, String)>,
) -> ApiResult<Json<api::Version>> {
    Ok(Json(s.control.get_version(&app, &label).await?))
}

async fn upload_version(
    State(s): State<AppState>,
    c: Caller,
    Path(app): Path<String>,
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

#[derive(Deserialize)]
struct EnvListQuery {
    app: Option<String>,
}

async fn list_environments(
    State(s): State<AppState>,
    _c: Caller,
    Query(q): Query<EnvListQuery>,
) -> ApiResult<Json<Vec<api::Environment>>> {
    Ok(Json(s.control.list_environments(q.app.as_deref()).await?))
}

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

async fn get_environment(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<api::EnvironmentDetail>> {
    Ok(Json(s.control.get_environment(&env).await?))
}

async fn deploy(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.deploy(&env, &req, Some(&c.username)).await?),
    ))
}

async fn abort(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.abort(&env, Some(&c.username)).await?),
    ))
}

async fn health(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<api::HealthReport>> {
    Ok(Json(s.control.health_report(&env).await?))
}

async fn get_config(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<api::ConfigView>> {
    Ok(Json(s.control.get_config(&env).await?))
}

async fn configure(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
    JsonBody(req): JsonBody<ConfigUpdate>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.configure(&env, &req, Some(&c.username)).await?),
    ))
}

async fn save_config(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
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

async fn set_properties(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
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

async fn swap(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
    JsonBody(req): JsonBody<SwapRequest>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control.swap(&env, &req.with, Some(&c.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deployments(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<Vec<api::Deployment>>> {
    Ok(Json(s.control.deployments(&env).await?))
}

/// Prometheus text exposition of the balancer's metrics.
async fn metrics(State(s): State<AppState>, _c: Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.control.balancer().prometheus(),
    )
        .into_response()
}

async fn terminate(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.terminate(&env, Some(&c.username)).await?),
    ))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn events(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<api::Event>>> {
    Ok(Json(
        s.control
            .events(&env, q.after, q.limit.unwrap_or(100))
            .await?,
    ))
}

#[derive(Deserialize)]
struct LogsQuery {
    tail: Option<usize>,
}

async fn logs(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let text = s.control.logs(&env, q.tail.unwrap_or(100)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Builds a catalogue platform image, streaming the build's output as it happens.
async fn build_platform(
    State(s): State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    c.require_write()?;
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

async fn scale(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
    JsonBody(req): JsonBody<ScaleRequest>,
) -> ApiResult<(StatusCode, Json<api::Environment>)> {
    c.require_write()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.control.scale(&env, &req, Some(&c.username)).await?),
    ))
}

async fn list_schedules(
    State(s): State<AppState>,
    _c: Caller,
    Path(env): Path<String>,
) -> ApiResult<Json<Vec<ScheduledAction>>> {
    Ok(Json(s.control.list_schedules(&env).await?))
}

async fn add_schedule(
    State(s): State<AppState>,
    c: Caller,
    Path(env): Path<String>,
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

async fn remove_schedule(
    State(s): State<AppState>,
    c: Caller,
    Path((env, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    c.require_write()?;
    s.control
        .remove_schedule(&env, &name, Some(&c.username))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn zones(State(s): State<AppState>, _c: Caller) -> ApiResult<Json<Vec<api::Zone>>> {
    Ok(Json(s.control.zones().await?))
}

async fn fail_zone(
    State(s): State<AppState>,
    c: Caller,
    Path(zone): Path<String>,
) -> ApiResult<Json<Vec<api::Zone>>> {
    c.require_write()?;
    Ok(Json(s.control.fail_zone(&zone, Some(&c.username)).await?))
}

async fn restore_zone(
    State(s): State<AppState>,
    c: Caller,
    Path(zone): Path<String>,
) -> ApiResult<Json<Vec<api::Zone>>> {
    c.require_write()?;
    Ok(Json(
        s.control.restore_zone(&zone, Some(&c.username)).await?,
    ))
}
