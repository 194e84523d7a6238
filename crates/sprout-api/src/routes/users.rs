//! Users (admin), API tokens (everyone, for themselves), logout and the audit log.

use super::{created, ApiResult, JsonBody, PathParams, QueryParams};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sprout_core::api::{
    ApiToken, AuditEntry, ChangePassword, CreateToken, CreateUser, CreatedToken, PasswordChanged,
    User,
};
use sprout_core::auth::Role;
use sprout_core::Username;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(list_users, create_user))
        .routes(routes!(remove_user))
        .routes(routes!(change_password))
        .routes(routes!(revoke_user_tokens))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit))
}

fn user_view(row: sprout_store::UserRow) -> ApiResult<User> {
    Ok(User {
        role: row
            .role
            .parse()
            .map_err(|_| ApiError::internal(format!("user {}: bad stored role", row.username)))?,
        username: row.username,
        created_at: row.created_at,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "auth",
    operation_id = "logout",
    responses((status = 204, description = "The token used for this call no longer works"))
)]
async fn logout(State(s): State<AppState>, c: Caller) -> ApiResult<StatusCode> {
    auth::logout(&s, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "list_users",
    responses((status = 200, description = "Users", body = Vec<User>))
)]
async fn list_users(State(s): State<AppState>, c: Caller) -> ApiResult<Json<Vec<User>>> {
    c.require_admin()?;
    let rows = s.control.store().list_users().await?;
    Ok(Json(
        rows.into_iter().map(user_view).collect::<ApiResult<_>>()?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "create_user",
    request_body = CreateUser,
    responses((status = 201, description = "Created", body = User))
)]
async fn create_user(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    c.require_admin()?;
    let name = Username::parse(&req.username).map_err(|e| ApiError::invalid(e.to_string()))?;
    auth::check_password(&req.password)?;
    let password = req.password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let row = s
        .control
        .store()
        .create_user(name.as_str(), &hash, req.role.as_str())
        .await?;
    tracing::info!(user = %row.username, role = %row.role, by = %c.username, "user added");
    Ok(created(user_view(row)?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "users",
    operation_id = "remove_user",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Removed, with every token of the user"))
)]
async fn remove_user(
    State(s): State<AppState>,
    c: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    s.control.store().delete_user(&name).await?;
    tracing::info!(user = %name, by = %c.username, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{name}/password",
    tag = "users",
    operation_id = "change_password",
    params(("name" = String, Path, description = "User name")),
    request_body = ChangePassword,
    responses((status = 200, description = "Changed; every token of the user is revoked. \
        Users changing their own password get a new session token in `session`.", body = PasswordChanged))
)]
async fn change_password(
    State(s): State<AppState>,
    c: Caller,
    PathParams(name): PathParams<String>,
    JsonBody(req): JsonBody<ChangePassword>,
) -> ApiResult<Json<PasswordChanged>> {
    Ok(Json(
        auth::change_password(&s, &c, &name, &req.password).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}/tokens",
    tag = "users",
    operation_id = "revoke_user_tokens",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Every token of the user (sessions and API tokens) stops working at once"))
)]
async fn revoke_user_tokens(
    State(s): State<AppState>,
    c: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<StatusCode> {
    auth::revoke_all_tokens(&s, &c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenListQuery {
    /// Admins only: every user's tokens.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    params(TokenListQuery),
    responses((status = 200, description = "Named API tokens (never the tokens themselves)", body = Vec<ApiToken>))
)]
async fn list_tokens(
    State(s): State<AppState>,
    c: Caller,
    QueryParams(q): QueryParams<TokenListQuery>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let owner = if q.all {
        c.require_admin()?;
        None
    } else {
        Some(c.username.as_str())
    };
    let rows = s.control.store().list_tokens(owner).await?;
    Ok(Json(
        rows.into_iter()
            .map(auth::token_view)
            .collect::<ApiResult<_>>()?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "create_token",
    request_body = CreateToken,
    responses((status = 201, description = "The token, shown this once", body = CreatedToken))
)]
async fn create_token(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(req): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let token = auth::create_api_token(&s, &c, &req).await?;
    tracing::info!(token = %token.info.name, user = %c.username, "API token created");
    Ok(created(token))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{token}",
    tag = "tokens",
    operation_id = "revoke_token",
    params(("token" = String, Path, description = "Token id or name")),
    responses((status = 200, description = "Revoked; it stops working at once", body = ApiToken))
)]
async fn revoke_token(
    State(s): State<AppState>,
    c: Caller,
    PathParams(token): PathParams<String>,
) -> ApiResult<Json<ApiToken>> {
    // Admins may revoke anyone's token; others only their own.
    let owner = (!c.role.allows(Role::Admin)).then_some(c.username.as_str());
    let row = s.control.store().revoke_token(&token, owner).await?;
    tracing::info!(token = %row.name, user = %row.username, by = %c.username, "API token revoked");
    Ok(Json(auth::token_view(row)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Newest entries to return (default 100, at most 10000).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "users",
    operation_id = "audit",
    params(AuditQuery),
    responses((status = 200, description = "Changes made through the API, oldest first", body = Vec<AuditEntry>))
)]
async fn audit(
    State(s): State<AppState>,
    c: Caller,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    c.require_admin()?;
    let limit = i64::from(q.limit.unwrap_or(100).min(10_000));
    let rows = s.control.store().list_audit(limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                time: r.created_at,
                actor: r.actor,
                method: r.method,
                path: r.path,
                status: u16::try_from(r.status).unwrap_or(0),
            })
            .collect(),
    ))
}
