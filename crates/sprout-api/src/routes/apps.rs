//! Applications, their versions (upload, build) and the platform images they build on.

use super::{accepted, created, ApiResult, AppPath, JsonBody, PathParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use sprout_control::IncomingBundle;
use sprout_core::api::{self, CreateApp, UploadQuery};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, delete_app))
        .routes(routes!(list_versions, upload_version))
        .routes(routes!(get_version, delete_version))
        .routes(routes!(build_platform))
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
    Ok(created(s.control.create_app(&req.name).await?))
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
    Ok(accepted(s.control.upload_version(incoming).await?))
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
