//! Who may do what: the three roles, what a viewer may read, the lifetime of API tokens,
//! the login throttle and the dashboard's cookie names. Pure: callers pass the clock in.

use crate::model::string_enum;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

string_enum!(
    /// `viewer` reads; `deployer` also changes apps, versions and environments; `admin` also
    /// manages users, zones and platforms.
    Role, "role", { Viewer => "viewer", Deployer => "deployer", Admin => "admin" }
);

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Deployer => 1,
            Role::Admin => 2,
        }
    }

    /// Whether this role may do what `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    /// Whether this role reads secrets: property values not marked public, queue credentials.
    /// Viewers do not; those who may change an environment do.
    pub fn reads_secrets(self) -> bool {
        self.allows(Role::Deployer)
    }
}

/// Longest lifetime a named API token may have.
pub const MAX_TOKEN_DAYS: u64 = 3650;
/// Lifetime of a named API token when none is given.
pub const DEFAULT_TOKEN_TTL: &str = "90d";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a token lifetime like 30d, 12h, 90m or 45s (at most {MAX_TOKEN_DAYS}d)")]
pub struct BadTtl(pub String);

/// Parses a token lifetime: `30d`, `12h`, `90m`, `45s`.
pub fn parse_token_ttl(text: &str) -> Result<Duration, BadTtl> {
    let bad = || BadTtl(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 || secs > MAX_TOKEN_DAYS * 86_400 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// Failed logins allowed per user name (and per client address) within [`LoginThrottle::window`]
/// before further attempts are refused without checking the password.
#[derive(Debug)]
pub struct LoginThrottle {
    pub max_failures: usize,
    pub window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

impl LoginThrottle {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: HashMap::new(),
        }
    }

    fn prune(&mut self, key: &str, now: Instant) {
        if let Some(times) = self.failures.get_mut(key) {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.is_empty() {
                self.failures.remove(key);
            }
        }
    }

    /// `Err(retry_after)` when `key` has used up its failures in the window.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        self.prune(key, now);
        match self.failures.get(key) {
            Some(times) if times.len() >= self.max_failures => {
                let oldest = times.front().copied().unwrap_or(now);
                Err(self.window.saturating_sub(now.duration_since(oldest)))
            }
            _ => Ok(()),
        }
    }

    /// Takes back the newest attempt counted for `key` (it turned out to be a success).
    pub fn forgive_one(&mut self, key: &str) {
        if let Some(times) = self.failures.get_mut(key) {
            times.pop_back();
            if times.is_empty() {
                self.failures.remove(key);
            }
        }
    }

    pub fn record_failure(&mut self, key: &str, now: Instant) {
        self.prune(key, now);
        self.failures
            .entry(key.to_string())
            .or_default()
            .push_back(now);
        // Keep the map from growing without bound under a spray of user names.
        if self.failures.len() > 10_000 {
            let window = self.window;
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
    }

    pub fn record_success(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// The dashboard's session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "sprout_session";
/// The dashboard's session cookie when the server knows it is served over HTTPS: the
/// `__Host-` prefix makes browsers refuse it unless it is `Secure`, has `Path=/` and no
/// `Domain`, so no other host (an app under `*.domain`) can set or shadow it.
pub const SESSION_COOKIE_HTTPS: &str = "__Host-sprout_session";
/// Every name the session cookie may have: what the balancer strips from requests it
/// forwards to apps, so an app never sees a dashboard login.
pub const SESSION_COOKIE_NAMES: [&str; 2] = [SESSION_COOKIE, SESSION_COOKIE_HTTPS];

/// The session cookie's name: [`SESSION_COOKIE_HTTPS`] over HTTPS, else [`SESSION_COOKIE`].
pub fn session_cookie_name(https: bool) -> &'static str {
    if https {
        SESSION_COOKIE_HTTPS
    } else {
        SESSION_COOKIE
    }
}

/// Login attempts counted per user name and per client address (several users may share an
/// address, so it gets four times the tries, but not without bound).
#[derive(Debug)]
pub struct LoginThrottles {
    pub users: LoginThrottle,
    pub addresses: LoginThrottle,
}

impl Default for LoginThrottles {
    fn default() -> Self {
        let base = LoginThrottle::default();
        Self {
            addresses: LoginThrottle::new(4 * base.max_failures, base.window),
            users: base,
        }
    }
}

impl LoginThrottles {
    /// Admits a login attempt and counts it as a failure at once, before its password is
    /// checked: parallel guesses cannot all pass the check before any of them is counted.
    /// `Err(retry_after)`, and nothing counted, when the user name or the address has used
    /// up its attempts. A right password then calls [`LoginThrottles::succeeded`].
    pub fn begin(
        &mut self,
        user: &str,
        address: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        let user_wait = self.users.check(user, now).err();
        let address_wait = address.and_then(|a| self.addresses.check(a, now).err());
        if let Some(wait) = user_wait.max(address_wait) {
            return Err(wait);
        }
        self.users.record_failure(user, now);
        if let Some(a) = address {
            self.addresses.record_failure(a, now);
        }
        Ok(())
    }

    /// The attempt had the right password: the user name's count is cleared, and the address
    /// gets back only this attempt (one known account must not reset the count of guesses at
    /// the others).
    pub fn succeeded(&mut self, user: &str, address: Option<&str>) {
        self.users.record_success(user);
        if let Some(a) = address {
            self.addresses.forgive_one(a);
        }
    }
}

string_enum!(
    /// `session`: issued by `sprout login` or the dashboard's login form. `api`: a named API
    /// token (`sprout token create`), for CI.
    TokenKind, "token kind", { Session => "session", Api => "api" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Deployer));
        assert!(Role::Deployer.allows(Role::Deployer));
        assert!(Role::Deployer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Deployer));
        assert!(!Role::Deployer.allows(Role::Admin));
        assert_eq!("deployer".parse::<Role>().ok(), Some(Role::Deployer));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn token_lifetimes() {
        assert_eq!(parse_token_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_token_ttl("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_token_ttl("90m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "d",
            "0d",
            "5",
            "5w",
            "-1d",
            "99999d",
            "18446744073709551615d",
        ] {
            assert!(parse_token_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn throttle_blocks_after_failures_and_forgets_after_the_window() {
        let start = Instant::now();
        let mut t = LoginThrottle::new(3, Duration::from_secs(60));
        for i in 0..3 {
            assert!(t.check("alice", start).is_ok(), "attempt {i}");
            t.record_failure("alice", start);
        }
        let retry = t.check("alice", start + Duration::from_secs(10));
        assert_eq!(retry, Err(Duration::from_secs(50)));
        assert!(
            t.check("bob", start).is_ok(),
            "other users are not affected"
        );
        assert!(t.check("alice", start + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn an_attempt_counts_before_the_password_is_checked() {
        let now = Instant::now();
        let mut t = LoginThrottles::default();
        // 300 attempts begun before any password is checked: only 5 get to a password.
        let admitted = (0..300)
            .filter(|_| t.begin("admin", Some("10.0.0.1"), now).is_ok())
            .count();
        assert_eq!(admitted, 5);
        // Refused attempts were not counted against the address.
        assert!(t.begin("bob", Some("10.0.0.1"), now).is_ok());
    }

    #[test]
    fn a_right_password_takes_back_only_its_own_attempt() {
        let now = Instant::now();
        let mut t = LoginThrottles::default();
        for user in ["a", "b", "c", "d"] {
            for _ in 0..4 {
                t.begin(user, Some("ip"), now).unwrap();
            }
        }
        // The address has used 16 of its 20; a success gives back one, not all.
        t.begin("e", Some("ip"), now).unwrap();
        t.succeeded("e", Some("ip"));
        for _ in 0..4 {
            t.begin("f", Some("ip"), now).unwrap();
        }
        assert!(t.begin("g", Some("ip"), now).is_err());
        // The user name's own count is cleared by a success.
        t.begin("a", None, now).unwrap();
        t.succeeded("a", None);
        for _ in 0..5 {
            t.begin("a", None, now).unwrap();
        }
        assert!(t.begin("a", None, now).is_err());
    }

    #[test]
    fn the_session_cookie_is_host_prefixed_over_https() {
        assert_eq!(session_cookie_name(false), "sprout_session");
        assert_eq!(session_cookie_name(true), "__Host-sprout_session");
        assert!(SESSION_COOKIE_NAMES.contains(&session_cookie_name(true)));
        assert!(SESSION_COOKIE_NAMES.contains(&session_cookie_name(false)));
    }

    #[test]
    fn success_clears_failures() {
        let now = Instant::now();
        let mut t = LoginThrottle::new(2, Duration::from_secs(60));
        t.record_failure("a", now);
        t.record_success("a");
        t.record_failure("a", now);
        assert!(t.check("a", now).is_ok());
    }
}
