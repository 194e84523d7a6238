//! Attached resources (issue 15): `/api/v1/apps/{app}/resources`, their attachments and
//! snapshots, and `/api/v1/snapshots/{id}/restore`. Viewers see masked credentials.

use super::{accepted, ApiResult, AppPath, JsonBody, PathParams, QueryParams};
use crate::auth::Caller;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sprout_core::resource::api::{
    AttachRequest, CreateResource, DeleteQuery, ListQuery, PromoteRequest, Resource, ResourceEvent,
    RestoreRequest, Snapshot,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all))
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(attach))
        .routes(routes!(detach))
        .routes(routes!(snapshots, snapshot))
        .routes(routes!(events))
        .routes(routes!(restore))
        .routes(routes!(promote))
}

/// `{app}` and `{name}` of a resource route.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ResourcePath {
    /// Application name
    pub app: String,
    /// Resource name
    pub name: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AttachmentPath {
    /// Application name
    pub app: String,
    /// Resource name
    pub name: String,
    /// Environment name
    pub env: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SnapshotPath {
    /// Snapshot id
    pub id: i64,
}

#[utoipa::path(
    get, path = "/api/v1/resources", tag = "resources", operation_id = "list_all_resources",
    responses((status = 200, description = "Every resource, or one application's", body = Vec<Resource>)),
    params(ListQuery)
)]
async fn list_all(
    State(s): State<AppState>,
    c: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<Resource>>> {
    Ok(Json(
        s.control.list_resources(q.app.as_deref(), c.role).await?,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/resources", tag = "resources", operation_id = "list_resources",
    responses((status = 200, description = "The application's resources", body = Vec<Resource>)),
    params(AppPath)
)]
async fn list(
    State(s): State<AppState>,
    c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
) -> ApiResult<Json<Vec<Resource>>> {
    Ok(Json(s.control.list_resources(Some(&app), c.role).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/resources", tag = "resources", operation_id = "create_resource",
    responses((status = 202, description = "Creating; poll until Available", body = Resource)),
    params(AppPath), request_body = CreateResource
)]
async fn create(
    State(s): State<AppState>,
    c: Caller,
    PathParams(AppPath { app }): PathParams<AppPath>,
    JsonBody(req): JsonBody<CreateResource>,
) -> ApiResult<(StatusCode, Json<Resource>)> {
    c.require_write()?;
    let r = s
        .control
        .create_resource(&app, &req, Some(&c.username))
        .await?;
    Ok(accepted(r))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/resources/{name}", tag = "resources", operation_id = "show_resource",
    responses((status = 200, description = "The resource (credentials masked for viewers)", body = Resource)),
    params(ResourcePath)
)]
async fn show(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<ResourcePath>,
) -> ApiResult<Json<Resource>> {
    Ok(Json(s.control.get_resource(&p.app, &p.name, c.role).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/resources/{name}", tag = "resources", operation_id = "delete_resource",
    responses((status = 202, description = "Deleting (after a final snapshot unless skipped)", body = Resource)),
    params(ResourcePath, DeleteQuery)
)]
async fn delete(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<ResourcePath>,
    QueryParams(q): QueryParams<DeleteQuery>,
) -> ApiResult<(StatusCode, Json<Resource>)> {
    c.require_write()?;
    let r = s
        .control
        .delete_resource(&p.app, &p.name, q.skip_final_snapshot, Some(&c.username))
        .await?;
    Ok(accepted(r))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/resources/{name}/attachments", tag = "resources", operation_id = "attach_resource",
    responses((status = 200, description = "Attached; the environment rolls", body = Resource)),
    params(ResourcePath), request_body = AttachRequest
)]
async fn attach(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<ResourcePath>,
    JsonBody(req): JsonBody<AttachRequest>,
) -> ApiResult<Json<Resource>> {
    c.require_write()?;
    Ok(Json(
        s.control
            .attach_resource(&p.app, &p.name, &req, Some(&c.username))
            .await?,
    ))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/resources/{name}/attachments/{env}", tag = "resources", operation_id = "detach_resource",
    responses((status = 200, description = "Detached; the environment rolls", body = Resource)),
    params(AttachmentPath)
)]
async fn detach(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<AttachmentPath>,
) -> ApiResult<Json<Resource>> {
    c.require_write()?;
    Ok(Json(
        s.control
            .detach_resource(&p.app, &p.name, &p.env, Some(&c.username))
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/resources/{name}/snapshots", tag = "resources", operation_id = "list_snapshots",
    responses((status = 200, description = "Snapshots of resources of that name, newest first", body = Vec<Snapshot>)),
    params(ResourcePath)
)]
async fn snapshots(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(p): PathParams<ResourcePath>,
) -> ApiResult<Json<Vec<Snapshot>>> {
    Ok(Json(s.control.resource_snapshots(&p.app, &p.name).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/resources/{name}/snapshots", tag = "resources", operation_id = "snapshot_resource",
    responses((status = 202, description = "Snapshot started", body = Snapshot)),
    params(ResourcePath)
)]
async fn snapshot(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<ResourcePath>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    c.require_write()?;
    let snap = s
        .control
        .snapshot_resource(&p.app, &p.name, Some(&c.username))
        .await?;
    Ok(accepted(snap))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/resources/{name}/events", tag = "resources", operation_id = "resource_events",
    responses((status = 200, description = "The resource's events, oldest first", body = Vec<ResourceEvent>)),
    params(ResourcePath)
)]
async fn events(
    State(s): State<AppState>,
    _c: Caller,
    PathParams(p): PathParams<ResourcePath>,
) -> ApiResult<Json<Vec<ResourceEvent>>> {
    Ok(Json(s.control.resource_events(&p.app, &p.name).await?))
}

#[utoipa::path(
    post, path = "/api/v1/snapshots/{id}/restore", tag = "resources", operation_id = "restore_snapshot",
    responses((status = 202, description = "A new resource, Restoring", body = Resource)),
    params(SnapshotPath), request_body = RestoreRequest
)]
async fn restore(
    State(s): State<AppState>,
    c: Caller,
    PathParams(SnapshotPath { id }): PathParams<SnapshotPath>,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> ApiResult<(StatusCode, Json<Resource>)> {
    c.require_write()?;
    let r = s
        .control
        .restore_snapshot(id, &req, Some(&c.username))
        .await?;
    Ok(accepted(r))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/resources/{name}/promote", tag = "resources", operation_id = "promote_replica",
    responses((status = 202, description = "Promoting: the old primary stops, the replica becomes the primary, attached environments roll onto it (Modifying until done); 400 for a resource that is not postgres, 409 for a missing replica or a resource not Available", body = Resource)),
    params(ResourcePath), request_body = PromoteRequest
)]
async fn promote(
    State(s): State<AppState>,
    c: Caller,
    PathParams(p): PathParams<ResourcePath>,
    JsonBody(req): JsonBody<PromoteRequest>,
) -> ApiResult<(StatusCode, Json<Resource>)> {
    c.require_write()?;
    let r = s
        .control
        .promote_resource(&p.app, &p.name, &req, Some(&c.username))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}
