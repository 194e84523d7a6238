//! Environment properties (passed to instances as environment variables): which names are
//! allowed, and which values are hidden from whom. The server, the CLI and the dashboard
//! all ask here.
//!
//! Two rules, one place: a reader who may not read secrets (a viewer) gets every value not
//! marked public replaced by [`MASKED`] ([`redact`], applied by the server); and a person
//! looking at a table or the dashboard sees [`MASKED`] for a value whose name speaks of a
//! secret even when allowed to read it ([`shown`]), so it does not end up on a screen share.

use crate::auth::Role;
use std::collections::{BTreeMap, BTreeSet};

/// What stands in for a value its reader may not (or need not) see.
pub const MASKED: &str = "********";

/// The longest property name accepted.
pub const MAX_KEY_LEN: usize = 128;

/// Why a property name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyKeyError {
    #[error("invalid property name '{0}': letters, digits and '_', not starting with a digit")]
    Invalid(String),
    #[error("property '{0}' is reserved: Sprout sets it")]
    Reserved(String),
}

/// A shell-style variable name: ASCII letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Checks a property name: a variable name of at most [`MAX_KEY_LEN`] bytes that is not
/// one Sprout sets itself (`PORT`, `SPROUT_*`).
pub fn check_key(key: &str) -> Result<(), PropertyKeyError> {
    if !is_variable_name(key) || key.len() > MAX_KEY_LEN {
        return Err(PropertyKeyError::Invalid(key.to_string()));
    }
    if key == "PORT" || key.starts_with("SPROUT_") {
        return Err(PropertyKeyError::Reserved(key.to_string()));
    }
    Ok(())
}

/// Whether a property's value is hidden in human output (tables, the dashboard): its name
/// speaks of a secret, password, token, key or credential.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Masks, for a `reader` who may not read secrets, every property value not in `public`.
/// Values are secret by default: a key is shown only once it is marked public.
pub fn redact(properties: &mut BTreeMap<String, String>, public: &BTreeSet<String>, reader: Role) {
    if reader.reads_secrets() {
        return;
    }
    for (key, value) in properties.iter_mut() {
        if !public.contains(key) {
            *value = MASKED.to_string();
        }
    }
}

/// A value as a table or the dashboard shows it: [`MASKED`] when its name is a secret's.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        MASKED
    } else {
        value
    }
}

/// Whether a value is hidden where it is shown: a secret's name, or masked by the server.
pub fn is_hidden(key: &str, value: &str) -> bool {
    is_secret(key) || value == MASKED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names() {
        for ok in ["A", "_X", "DB_URL", "a1", &"K".repeat(MAX_KEY_LEN)] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "ÄB",
            "A B",
            "A=B",
            &"K".repeat(MAX_KEY_LEN + 1),
        ] {
            assert!(
                matches!(check_key(bad), Err(PropertyKeyError::Invalid(_))),
                "{bad}"
            );
        }
        for reserved in ["PORT", "SPROUT_ENV", "SPROUT_"] {
            assert_eq!(
                check_key(reserved),
                Err(PropertyKeyError::Reserved(reserved.into()))
            );
        }
        // Only the exact name is reserved.
        assert_eq!(check_key("PORTS"), Ok(()));
        assert!(is_variable_name("PORT") && !is_variable_name("9"));
    }

    #[test]
    fn viewers_see_only_public_values() {
        let props: BTreeMap<String, String> =
            [("DATABASE_URL", "postgres://u:pw@db"), ("MODE", "fast")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let public: BTreeSet<String> = ["MODE".to_string()].into();
        let mut seen = props.clone();
        redact(&mut seen, &public, Role::Viewer);
        assert_eq!(seen["DATABASE_URL"], MASKED);
        assert_eq!(seen["MODE"], "fast");
        let mut none_public = props.clone();
        redact(&mut none_public, &BTreeSet::new(), Role::Viewer);
        assert!(none_public.values().all(|v| v == MASKED));
        for role in [Role::Deployer, Role::Admin] {
            let mut seen = props.clone();
            redact(&mut seen, &BTreeSet::new(), role);
            assert_eq!(seen, props);
        }
    }

    #[test]
    fn shown_values() {
        assert_eq!(shown("DB_PASSWORD", "hunter2"), MASKED);
        assert_eq!(shown("MODE", "fast"), "fast");
        assert!(is_hidden("MODE", MASKED) && is_hidden("API_KEY", "x") && !is_hidden("MODE", "x"));
    }

    #[test]
    fn secret_names() {
        for key in [
            "SECRET_KEY_BASE",
            "DB_PASSWORD",
            "github_token",
            "API_KEY",
            "KEYCLOAK_URL",
            "SMTP_PASSWD",
            "GCP_CREDENTIALS",
            "PRIVATE_PEM",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["DATABASE_URL", "PORT", "LOG_LEVEL", "PASS", "MODE"] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
