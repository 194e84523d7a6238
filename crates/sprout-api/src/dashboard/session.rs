//! The dashboard's session: a JWT from `Auth::issue` in an HttpOnly, SameSite=Strict cookie
//! (Secure behind TLS), a CSRF token bound to it on every form, and a limit on failed logins.

use crate::auth::{self, Caller};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "sprout_session";
pub const LOGIN_CSRF_COOKIE: &str = "sprout_login_csrf";
/// Header the upload's XMLHttpRequest carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_MAX_AGE_SECS: i64 = 7 * 24 * 3600;

/// A signed-in user of the dashboard.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The CSRF token of this session, for the forms of the page.
    pub csrf: String,
}

impl Session {
    pub fn can_write(&self) -> bool {
        self.caller.require_write().is_ok()
    }

    /// Whether `given` is this session's CSRF token (constant-time).
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), self.csrf.as_bytes()))
    }
}

/// The CSRF token of a session: a digest of its (secret, HttpOnly) token, so a page from
/// another origin cannot know it, and it dies with the session.
pub fn csrf_for(token: &str) -> String {
    let digest = Sha256::digest(format!("sprout-dashboard-csrf:{token}").as_bytes());
    hex::encode(&digest[..16])
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so).
fn on_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> String {
    let secure = if on_tls(headers) { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

pub fn session_cookie(headers: &HeaderMap, token: &str) -> String {
    set_cookie(headers, SESSION_COOKIE, token, "/", SESSION_MAX_AGE_SECS)
}

pub fn clear_session_cookie(headers: &HeaderMap) -> String {
    set_cookie(headers, SESSION_COOKIE, "", "/", 0)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(Redirect::to("/login").into_response());
        };
        match auth::authenticate(state, token).await {
            Ok(caller) => {
                // Changes made from the dashboard are audited like the API's.
                if let Some(slot) = parts.extensions.get::<auth::AuditSlot>() {
                    let _ = slot.0.set(caller.username.clone());
                }
                Ok(Session {
                    csrf: csrf_for(token),
                    caller,
                })
            }
            Err(e) => {
                tracing::info!(reason = %e.detail, "dashboard session refused");
                Err((
                    [(header::SET_COOKIE, clear_session_cookie(&parts.headers))],
                    Redirect::to("/login?expired=1"),
                )
                    .into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; sprout_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn session_cookie_is_strict_and_secure_only_on_tls() {
        let mut h = HeaderMap::new();
        let c = session_cookie(&h, "t");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(session_cookie(&h, "t").contains("; Secure"));
    }

    #[test]
    fn csrf_token_depends_on_the_session() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
