//! Parsers of the arguments' values (`KEY=VALUE`, batch sizes, durations), shared by the
//! verbs' flags; key rules come from `sprout-core`, the server's own.

use sprout_core::{properties, BatchSize};

/// Splits `KEY=VALUE` at the first `=` (the value may hold more).
fn split_key_value(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

/// Parses `KEY=VALUE` whose key is a shell-style variable name (a queue message attribute).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = split_key_value(s)?;
    if !properties::is_variable_name(key) {
        return Err(format!(
            "invalid key '{key}': use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses an environment property's `KEY=VALUE`; the key must pass the server's own rule.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    let (key, value) = split_key_value(s)?;
    properties::check_key(key).map_err(|e| e.to_string())?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses a setting's `KEY=VALUE` (the server checks the name and the value).
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (key, value) = split_key_value(s)?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got '{s}'"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// Checks a batch size, `N` or `N%`.
pub fn parse_batch(s: &str) -> Result<String, String> {
    BatchSize::parse(s)
        .map(|b| b.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a duration like `20s`, `500ms`, `2m` or `1h`.
pub fn parse_duration_arg(s: &str) -> Result<String, String> {
    sprout_core::settings::parse_duration("duration", s)
        .map(|_| s.trim().to_string())
        .map_err(|_| format!("'{s}' is not a duration like 20s, 500ms or 2m"))
}

/// `--sticky`'s value: `on`, `off` or a cookie lifetime.
pub fn parse_sticky(s: &str) -> Result<String, String> {
    match s.trim() {
        v @ ("on" | "off") => Ok(v.to_string()),
        d => {
            parse_duration_arg(d).map_err(|_| format!("'{s}' is not on, off or a duration like 1h"))
        }
    }
}
