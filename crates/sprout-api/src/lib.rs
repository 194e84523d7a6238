//! The REST API (axum) and its auth. Handlers are thin: parse, check the caller, call
//! `sprout-control`, shape the answer.

pub mod auth;
pub mod dashboard;
pub mod error;
mod openapi;
mod routes;
pub mod serve;
pub mod sqs;

use auth::Auth;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sprout_control::Control;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

pub use auth::ensure_admin;
pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub auth: Auth,
    /// The dashboard's charts history and login limiter.
    pub dashboard: dashboard::Dashboard,
}

/// The REST routes and the OpenAPI document that describes them, built together so they
/// cannot drift apart.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::router())
        .routes(utoipa_axum::routes!(routes::health::healthz))
        .split_for_parts();
    (routes, openapi::finish(doc))
}

/// The whole HTTP surface: API under `/api/v1`, `/healthz`, the OpenAPI document and the
/// dashboard.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .merge(dashboard::router())
    .fallback(|| async { ApiError::not_found("no such route") })
    .layer(axum::middleware::map_response(problem_for_bare_errors))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::audit_changes,
    ))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}

/// axum answers a wrong method (405) with an empty body; make it a problem like every other
/// error.
async fn problem_for_bare_errors(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut problem = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            sprout_core::api::problem_types::INVALID_INPUT,
            "this route does not take that method",
        )
        .into_response();
        if let Some(allow) = allow {
            problem.headers_mut().insert(header::ALLOW, allow);
        }
        return problem;
    }
    response
}
