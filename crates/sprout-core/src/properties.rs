//! Environment properties (passed to instances as environment variables): which names are
//! allowed, and which values are hidden when shown. The server, the CLI and the dashboard
//! all ask here.

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
