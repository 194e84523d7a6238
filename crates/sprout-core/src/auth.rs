//! Who may do what: the three roles, the lifetime of API tokens and the login throttle.
//! Pure: callers pass the clock in.

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
    fn success_clears_failures() {
        let now = Instant::now();
        let mut t = LoginThrottle::new(2, Duration::from_secs(60));
        t.record_failure("a", now);
        t.record_success("a");
        t.record_failure("a", now);
        assert!(t.check("a", now).is_ok());
    }
}
