//! The REST API (axum) and its auth. Handlers are thin: parse, check the caller, call
//! `sprout-control`, shape the answer.

pub mod auth;
pub mod dashboard;
pub mod error;
mod queue_routes;
mod routes;
pub mod sqs;

use auth::Auth;
use axum::Router;
use sprout_control::Control;

pub use auth::ensure_admin;
pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub auth: Auth,
    /// The dashboard's charts history and login limiter.
    pub dashboard: dashboard::Dashboard,
}

/// The whole HTTP surface: API under `/api/v1`, `/healthz`, and the dashboard.
pub fn router(state: AppState) -> Router {
    routes::router()
        .merge(queue_routes::router())
        .merge(dashboard::router())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
