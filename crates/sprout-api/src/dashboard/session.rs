//! The dashboard's session: a JWT from `Auth::issue` in an HttpOnly, SameSite=Strict cookie
//! (`__Host-` prefixed and Secure when served over HTTPS), a CSRF token bound to it on every
//! form, and a limit on failed logins.

use crate::auth::{self, Caller};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use sprout_core::auth::session_cookie_name;

/// Header the upload's XMLHttpRequest carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_MAX_AGE_SECS: i64 = 7 * 24 * 3600;

/// How the dashboard's cookies are named and flagged, from what the server knows: whether
/// browsers reach it over HTTPS (`sprout server --https`, for TLS here or at a proxy in
/// front). Over HTTPS the session cookie is `__Host-sprout_session` (Secure, Path=/, no
/// Domain: no other host, an app under the same domain included, can set or shadow it) and
/// the login form's CSRF cookie `__Secure-sprout_login_csrf`. A request header never decides
/// this: a client could claim HTTPS over plain HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookiePolicy {
    pub https: bool,
}

impl CookiePolicy {
    /// The session cookie's name; [`sprout_core::auth::SESSION_COOKIE_NAMES`] lists both.
    pub fn session_name(self) -> &'static str {
        session_cookie_name(self.https)
    }

    pub fn login_csrf_name(self) -> &'static str {
        if self.https {
            "__Secure-sprout_login_csrf"
        } else {
            "sprout_login_csrf"
        }
    }

    /// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
    pub fn set(self, name: &str, value: &str, path: &str, max_age: i64) -> String {
        let secure = if self.https { "; Secure" } else { "" };
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }

    pub fn session(self, token: &str) -> String {
        self.set(self.session_name(), token, "/", SESSION_MAX_AGE_SECS)
    }

    pub fn clear_session(self) -> String {
        self.set(self.session_name(), "", "/", 0)
    }

    pub fn login_csrf(self, token: &str) -> String {
        self.set(self.login_csrf_name(), token, "/login", 3600)
    }

    pub fn clear_login_csrf(self) -> String {
        self.set(self.login_csrf_name(), "", "/login", 0)
    }
}

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

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let cookies = state.dashboard.cookies;
        let Some(token) = cookie(&parts.headers, cookies.session_name()).filter(|t| !t.is_empty())
        else {
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
                    [(header::SET_COOKIE, cookies.clear_session())],
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
        assert_eq!(
            cookie(&h, CookiePolicy::default().session_name()),
            Some("tok")
        );
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn over_http_the_session_cookie_is_strict_and_not_secure() {
        let c = CookiePolicy { https: false }.session("t");
        assert_eq!(
            c,
            "sprout_session=t; Path=/; Max-Age=604800; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn over_https_the_session_cookie_is_host_prefixed_and_secure() {
        let https = CookiePolicy { https: true };
        let c = https.session("t");
        // What browsers demand of a __Host- cookie: Secure, Path=/, no Domain.
        assert!(c.starts_with("__Host-sprout_session=t;"), "{c}");
        assert!(c.contains("; Path=/;") && c.contains("; Secure") && !c.contains("Domain"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(https.clear_session().starts_with("__Host-sprout_session=;"));
        assert!(https.clear_session().contains("Max-Age=0"));
        let csrf = https.login_csrf("x");
        assert!(csrf.starts_with("__Secure-sprout_login_csrf=x;") && csrf.contains("; Secure"));
        // A client's claim of HTTPS changes nothing: only the server's setting does.
        assert!(!CookiePolicy::default().session("t").contains("Secure"));
    }

    #[test]
    fn csrf_token_depends_on_the_session() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
