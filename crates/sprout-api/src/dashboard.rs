//! The dashboard's entry page (the full dashboard is its own issue). Templates live in
//! `web/templates` and are embedded in the binary.

use crate::AppState;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../web/templates/index.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    let mut context = tera::Context::new();
    context.insert("version", env!("CARGO_PKG_VERSION"));
    match tera::Tera::one_off(INDEX, &context, true) {
        Ok(html) => Html(html).into_response(),
        Err(e) => crate::ApiError::internal(format!("template: {e}")).into_response(),
    }
}
