//! The dashboard's session: a JWT from `Auth::issue` in an HttpOnly, SameSite=Strict cookie
//! (Secure behind TLS), a CSRF token bound to it on every form, and a limit on failed logins.

use crate::auth::{self, Caller};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
            Ok(caller) => Ok(Session {
                csrf: csrf_for(token),
                caller,
            }),
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

/// Failed logins per key (user name, client address) in a sliding window.
pub struct LoginLimiter {
    window: Duration,
    max_failures: usize,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            max_failures: 5,
            failures: Mutex::default(),
        }
    }
}

impl LoginLimiter {
    /// A client address may fail more often than one user name (several users behind one
    /// address), but not without bound.
    fn limit_for(&self, key: &str) -> usize {
        if key.starts_with("addr:") {
            self.max_failures * 4
        } else {
            self.max_failures
        }
    }

    /// None when the keys may try; otherwise how long until they may.
    pub fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut all = self.failures.lock().ok()?;
        let mut wait = None;
        for key in keys {
            if let Some(times) = all.get_mut(key) {
                times.retain(|t| now.duration_since(*t) < self.window);
                if times.len() >= self.limit_for(key) {
                    let oldest = times.first().copied().unwrap_or(now);
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, keys: &[String]) {
        if let Ok(mut all) = self.failures.lock() {
            let now = Instant::now();
            for key in keys {
                all.entry(key.clone()).or_default().push(now);
            }
            // Bound the memory an attacker cycling names can take.
            if all.len() > 10_000 {
                all.retain(|_, t| {
                    t.last()
                        .is_some_and(|l| now.duration_since(*l) < self.window)
                });
            }
        }
    }

    /// A success clears its user name's failures, not its address's: one known account
    /// must not reset the count of guesses at the others.
    pub fn succeeded(&self, keys: &[String]) {
        if let Ok(mut all) = self.failures.lock() {
            for key in keys.iter().filter(|k| !k.starts_with("addr:")) {
                all.remove(key);
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
    fn limiter_blocks_after_five_failures_and_forgets_on_success() {
        let l = LoginLimiter::default();
        let keys = vec!["user:admin".to_string()];
        for _ in 0..4 {
            l.failed(&keys);
            assert!(l.blocked(&keys).is_none());
        }
        l.failed(&keys);
        assert!(l.blocked(&keys).is_some());
        assert!(l.blocked(&["user:other".to_string()]).is_none());
        l.succeeded(&keys);
        assert!(l.blocked(&keys).is_none());
    }

    #[test]
    fn csrf_token_depends_on_the_session() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
