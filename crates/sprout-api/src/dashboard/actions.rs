//! The dashboard's forms (POST). Each checks the session, its CSRF token and the caller's
//! role, calls the same `sprout-control` function as the REST route, then redirects back
//! with a notice; a refusal is a page with the API's status and message, nothing changed.

use super::pages::login_form;
use super::session::{self, Session};
use super::{DashError, PageResult};
use crate::auth::{self, ClientAddr};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use sprout_control::IncomingBundle;
use sprout_core::api::{
    self, ConfigUpdate, CreateEnvironment, DeployRequest, LoginRequest, ScaleRequest, SetProperties,
};
use std::collections::{BTreeMap, HashMap};

/// A form's fields; a body that is not a form is a clear 400, not axum's plain text.
pub struct Fields(HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = DashError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Form::<HashMap<String, String>>::from_request(req, state)
            .await
            .map(|Form(f)| Fields(f))
            .map_err(|e| {
                DashError(ApiError::invalid(format!(
                    "not a form post: {}",
                    e.body_text()
                )))
            })
    }
}

impl Fields {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
    fn required(&self, key: &str) -> Result<&str, DashError> {
        self.get(key)
            .ok_or_else(|| DashError(ApiError::invalid(format!("'{key}' is required"))))
    }
    fn number(&self, key: &str) -> Result<Option<u32>, DashError> {
        self.get(key)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    DashError(ApiError::invalid(format!(
                        "'{key}' must be a whole number, not '{v}'"
                    )))
                })
            })
            .transpose()
    }
}

/// Session + CSRF + write permission, in that order: a forged post is refused before
/// anything else is looked at.
fn allowed(s: &Session, fields: &Fields) -> Result<(), DashError> {
    if !s.csrf_ok(fields.get("csrf")) {
        return Err(csrf_refused());
    }
    s.caller.require_write()?;
    Ok(())
}

fn csrf_refused() -> DashError {
    DashError(ApiError::forbidden(
        "the form's CSRF token is missing or wrong; reload the page and try again",
    ))
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn back(path: &str, notice: &str) -> Response {
    Redirect::to(&format!("{path}?notice={}", encode(notice))).into_response()
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(addr): ClientAddr,
    fields: Fields,
) -> PageResult {
    let cookies = state.dashboard.cookies;
    let cookie = session::cookie(&headers, cookies.login_csrf_name());
    let csrf_ok = matches!((cookie, fields.get("csrf")), (Some(c), Some(f)) if session::constant_time_eq(c.as_bytes(), f.as_bytes()));
    if !csrf_ok {
        return login_form(
            cookies,
            Some("The form had expired (missing or wrong CSRF token). Please try again."),
            false,
            StatusCode::FORBIDDEN,
        );
    }
    let username = fields.get("username").unwrap_or_default().to_string();
    let password = fields.0.get("password").cloned().unwrap_or_default();
    match auth::login(
        &state,
        &LoginRequest { username, password },
        addr.map(|a| a.ip()),
    )
    .await
    {
        Ok(login) => {
            // Two cookies: AppendHeaders, as a plain array would keep only the last.
            Ok((
                AppendHeaders([
                    (header::SET_COOKIE, cookies.session(&login.token)),
                    (header::SET_COOKIE, cookies.clear_login_csrf()),
                ]),
                Redirect::to("/"),
            )
                .into_response())
        }
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            let msg = format!(
                "Too many failed attempts. Try again in {} s.",
                e.retry_after.unwrap_or(60)
            );
            login_form(cookies, Some(&msg), false, StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            // The same words whichever part was wrong.
            login_form(
                cookies,
                Some("Wrong user name or password."),
                false,
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(State(state): State<AppState>, s: Session, fields: Fields) -> PageResult {
    if !s.csrf_ok(fields.get("csrf")) {
        return Err(csrf_refused());
    }
    // The session token stops working on the server too, not only in this browser.
    auth::logout(&state, &s.caller).await?;
    Ok((
        [(header::SET_COOKIE, state.dashboard.cookies.clear_session())],
        Redirect::to("/login"),
    )
        .into_response())
}

pub async fn create_app(State(state): State<AppState>, s: Session, fields: Fields) -> PageResult {
    allowed(&s, &fields)?;
    let app = state.control.create_app(fields.required("name")?).await?;
    Ok(back(
        &format!("/apps/{}", app.name),
        &format!("application {} created", app.name),
    ))
}

#[derive(serde::Deserialize)]
pub struct UploadQuery {
    label: Option<String>,
    description: Option<String>,
}

/// The upload form's XMLHttpRequest (so the page can show progress): the body is the
/// archive, the CSRF token in a header; answers JSON like the REST route.
pub async fn upload(
    State(state): State<AppState>,
    s: Session,
    Path(app): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = headers
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    if !s.csrf_ok(token) {
        return Err(ApiError::forbidden(
            "the upload's CSRF token is missing or wrong; reload the page and try again",
        ));
    }
    s.caller.require_write()?;
    let label = q
        .label
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("a version label is required"))?;
    let declared_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let version = state
        .control
        .upload_version(IncomingBundle {
            app,
            label: label.trim().to_string(),
            description: q.description.filter(|d| !d.trim().is_empty()),
            declared_size,
            body: body.into_data_stream(),
            started_by: Some(s.caller.username.clone()),
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(version)).into_response())
}

pub async fn create_environment(
    State(state): State<AppState>,
    s: Session,
    Path(app): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let parse = |key: &str| -> Result<Option<String>, DashError> {
        Ok(fields.get(key).map(str::to_string))
    };
    let tier = match fields.get("tier") {
        Some(t) => Some(t.parse().map_err(|e: sprout_core::model::UnknownValue| {
            DashError(ApiError::invalid(e.to_string()))
        })?),
        None => None,
    };
    let mode = match fields.get("mode") {
        Some(m) => Some(m.parse().map_err(|e: sprout_core::model::UnknownValue| {
            DashError(ApiError::invalid(e.to_string()))
        })?),
        None => None,
    };
    let req = CreateEnvironment {
        name: fields.required("name")?.to_string(),
        app,
        version: fields.required("version")?.to_string(),
        tier,
        mode,
        instances: fields.number("instances")?,
        cname: parse("cname")?,
        ..Default::default()
    };
    let env = state
        .control
        .create_environment(req, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/envs/{}", env.name),
        &format!("environment {} is launching", env.name),
    ))
}

pub async fn deploy(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let policy = match fields.get("policy") {
        Some("default") | None => None,
        Some(p) => Some(p.parse().map_err(|e: sprout_core::model::UnknownValue| {
            DashError(ApiError::invalid(e.to_string()))
        })?),
    };
    let req = DeployRequest {
        version: fields.required("version")?.to_string(),
        policy,
        ..Default::default()
    };
    let e = state
        .control
        .deploy(&env, &req, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/envs/{}", e.name),
        &format!("deploying {} to {}", req.version, e.name),
    ))
}

pub async fn scale(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let req = ScaleRequest {
        instances: fields.number("instances")?,
        min: fields.number("min")?,
        max: fields.number("max")?,
    };
    if req.instances.is_none() && req.min.is_none() && req.max.is_none() {
        return Err(DashError(ApiError::invalid(
            "give an instance count, or min and max",
        )));
    }
    let e = state
        .control
        .scale(&env, &req, Some(&s.caller.username))
        .await?;
    Ok(back(&format!("/envs/{}", e.name), "scaling"))
}

pub async fn properties(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let mut req = SetProperties::default();
    let notice = if let Some(key) = fields.get("unset") {
        req.unset.push(key.to_string());
        format!("property {key} removed")
    } else {
        let key = fields.required("key")?;
        // An empty value is a value (`KEY=`), so read it untrimmed and unfiltered.
        let value = fields.0.get("value").cloned().unwrap_or_default();
        req.set = BTreeMap::from([(key.to_string(), value)]);
        format!("property {key} set")
    };
    let e = state
        .control
        .set_properties(&env, &req, Some(&s.caller.username))
        .await?;
    Ok(back(&format!("/envs/{}", e.name), &notice))
}

pub async fn configure(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let key = fields.required("key")?;
    let value = fields.required("value")?;
    let update = ConfigUpdate {
        set: BTreeMap::from([(key.to_string(), value.to_string())]),
    };
    let e = state
        .control
        .configure(&env, &update, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/envs/{}", e.name),
        &format!("{key} set to {value}"),
    ))
}

pub async fn swap(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let with = fields.required("with")?;
    state
        .control
        .swap(&env, with, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/envs/{env}"),
        &format!("CNAMEs of {env} and {with} swapped"),
    ))
}

pub async fn restart(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let n = state
        .control
        .restart(&env, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/envs/{env}"),
        &format!("restarting {n} instance(s), one at a time"),
    ))
}

pub async fn terminate(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    if fields.get("confirm") != Some(env.as_str()) {
        return Err(DashError(ApiError::invalid(format!(
            "to terminate, type the environment's name ({env}) in the confirmation box"
        ))));
    }
    let e: api::Environment = state
        .control
        .terminate(&env, Some(&s.caller.username))
        .await?;
    Ok(back(
        &format!("/apps/{}", e.app),
        &format!("environment {} is terminating", e.name),
    ))
}

pub async fn abort(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    state.control.abort(&env, Some(&s.caller.username)).await?;
    Ok(back(
        &format!("/envs/{env}"),
        "deployment aborted; rolling back",
    ))
}

pub async fn redrive(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    fields: Fields,
) -> PageResult {
    allowed(&s, &fields)?;
    let r = state.control.queue_redrive(&env).await?;
    Ok(back(
        &format!("/envs/{env}"),
        &format!("{} message(s) moved back to the queue", r.moved),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn notices_are_percent_encoded() {
        assert_eq!(super::encode("a b&<c>"), "a%20b%26%3Cc%3E");
    }
}
