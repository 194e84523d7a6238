//! The web dashboard: tera templates (`web/templates`) and assets (`web/static`), embedded
//! in the binary. Another thin edge over `sprout-control`, like the REST handlers: every page
//! reads through control and every form calls the same control functions. A session cookie
//! carries the login; every form carries a CSRF token; viewers see no actions and are
//! refused them.

mod actions;
mod pages;
mod resources;
pub mod session;
pub mod svg;

use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sprout_control::history::History;
use std::sync::{Arc, LazyLock};

/// What the dashboard keeps between requests: the charts' history, and how its cookies are
/// named and flagged.
#[derive(Clone, Default)]
pub struct Dashboard {
    pub history: Arc<History>,
    pub cookies: session::CookiePolicy,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../../web/templates/base.html"),
    ),
    (
        "login.html",
        include_str!("../../../../web/templates/login.html"),
    ),
    (
        "apps.html",
        include_str!("../../../../web/templates/apps.html"),
    ),
    (
        "app.html",
        include_str!("../../../../web/templates/app.html"),
    ),
    (
        "version.html",
        include_str!("../../../../web/templates/version.html"),
    ),
    (
        "env.html",
        include_str!("../../../../web/templates/env.html"),
    ),
    (
        "env_live.html",
        include_str!("../../../../web/templates/env_live.html"),
    ),
    (
        "error.html",
        include_str!("../../../../web/templates/error.html"),
    ),
];
const CSS: &str = include_str!("../../../../web/static/sprout.css");
const JS: &str = include_str!("../../../../web/static/sprout.js");
const ICON: &str = include_str!("../../../../web/static/sprout.svg");

/// Parsed once; `.html` templates autoescape every value (user input included).
static TERA: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut t = tera::Tera::default();
    t.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| format!("{e:?}"))?;
    Ok(t)
});

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::apps))
        .route("/login", get(pages::login_page).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/static/sprout.css", get(|| asset(CSS, "text/css")))
        .route("/static/sprout.js", get(|| asset(JS, "text/javascript")))
        .route("/static/sprout.svg", get(|| asset(ICON, "image/svg+xml")))
        .route("/apps", post(actions::create_app))
        .route("/apps/{app}", get(pages::app))
        .route("/apps/{app}/upload", post(actions::upload))
        .route("/apps/{app}/versions/{label}", get(pages::version))
        .route(
            "/apps/{app}/environments",
            post(actions::create_environment),
        )
        .route("/envs/{env}", get(pages::environment))
        .route("/envs/{env}/live", get(pages::environment_live))
        .route("/envs/{env}/logs", get(pages::logs))
        .route("/envs/{env}/deploy", post(actions::deploy))
        .route("/envs/{env}/scale", post(actions::scale))
        .route("/envs/{env}/properties", post(actions::properties))
        .route("/envs/{env}/config", post(actions::configure))
        .route("/envs/{env}/swap", post(actions::swap))
        .route("/envs/{env}/restart", post(actions::restart))
        .route("/envs/{env}/terminate", post(actions::terminate))
        .route("/envs/{env}/abort", post(actions::abort))
        .route("/envs/{env}/redrive", post(actions::redrive))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Renders a template; a template error is a 500 (logged once by `ApiError`).
pub(crate) fn render(name: &str, context: &tera::Context) -> Result<Response, DashError> {
    let tera = TERA
        .as_ref()
        .map_err(|e| ApiError::internal(format!("templates: {e}")))?;
    let html = tera
        .render(name, context)
        .map_err(|e| ApiError::internal(format!("template {name}: {e:?}")))?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response())
}

/// An error shown as a page: the same status and message as the REST API would give.
#[derive(Debug)]
pub struct DashError(pub ApiError);

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<sprout_control::ControlError> for DashError {
    fn from(e: sprout_control::ControlError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let e = self.0;
        let detail = if e.status.is_server_error() && e.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = e.status.as_u16(), error = %e.detail, "dashboard request failed");
            "internal error; the server log has the details".to_string()
        } else {
            e.detail.clone()
        };
        let mut context = tera::Context::new();
        context.insert("status", &e.status.as_u16());
        context.insert("title", e.status.canonical_reason().unwrap_or("Error"));
        context.insert("detail", &detail);
        let body = TERA
            .as_ref()
            .ok()
            .and_then(|t| t.render("error.html", &context).ok())
            .unwrap_or_else(|| format!("{} {}", e.status, svg::esc(&detail)));
        (e.status, Html(body)).into_response()
    }
}

pub type PageResult = Result<Response, DashError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert!(TERA.is_ok(), "{:?}", TERA.as_ref().err());
    }
}
