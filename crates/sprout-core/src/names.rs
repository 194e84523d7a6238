//! Names that are valid by construction ("parse, don't validate").

use once_cell::sync::Lazy;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} '{value}': {rule}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

static APP_OR_ENV: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^[a-z][a-z0-9-]{1,62}$").expect("static regex"));
static LABEL: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$").expect("static regex"));
static USER: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^[a-z][a-z0-9_.-]{0,31}$").expect("static regex"));

macro_rules! name_type {
    ($ty:ident, $kind:literal, $re:ident, $rule:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                if $re.is_match(value) && !value.ends_with('-') {
                    Ok(Self(value.to_string()))
                } else {
                    Err(NameError {
                        kind: $kind,
                        value: value.to_string(),
                        rule: $rule,
                    })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    AppName,
    "application name",
    APP_OR_ENV,
    "2-63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'"
);
name_type!(
    EnvName,
    "environment name",
    APP_OR_ENV,
    "2-63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'"
);
name_type!(
    Cname,
    "CNAME prefix",
    APP_OR_ENV,
    "2-63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'"
);
name_type!(
    ResourceName,
    "resource name",
    APP_OR_ENV,
    "2-63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'"
);
name_type!(
    VersionLabel,
    "version label",
    LABEL,
    "1-100 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
);
name_type!(
    Username,
    "user name",
    USER,
    "1-32 characters: a lowercase letter, then lowercase letters, digits, '_', '.' or '-'"
);

/// A path (with an optional query) Sprout requests from an instance: the sqsd path, a
/// periodic task's URL, a health check. Only an absolute path: `/`, then RFC 3986 path and
/// query characters. Never a scheme, an authority (`//host`, `user@host:port`) nor a fragment,
/// so whatever an instance's address is joined to, the request goes to that address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestPath(String);

const REQUEST_PATH_RULE: &str =
    "an absolute path: '/' then letters, digits or -._~!$&'()*+,;=:@/?% \
     (no scheme, no host, no '//' at the start, no spaces, no '#'; at most 2048 characters)";

impl RequestPath {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let bytes = value.as_bytes();
        let escapes_ok = bytes.iter().enumerate().all(|(i, b)| {
            *b != b'%'
                || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
        let ok = value.starts_with('/')
            && !value.starts_with("//")
            && value.len() <= 2048
            && escapes_ok
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(b));
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(NameError {
                kind: "request path",
                value: value.to_string(),
                rule: REQUEST_PATH_RULE,
            })
        }
    }

    /// `/`.
    pub fn root() -> Self {
        Self("/".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `?`.
    pub fn path(&self) -> &str {
        self.0.split_once('?').map_or(self.0.as_str(), |(p, _)| p)
    }

    /// The part after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.0.split_once('?').map(|(_, q)| q)
    }
}

impl Default for RequestPath {
    fn default() -> Self {
        Self::root()
    }
}

impl fmt::Display for RequestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RequestPath {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RequestPath> for String {
    fn from(p: RequestPath) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!(AppName::parse("whatisthetime").is_ok());
        assert!(AppName::parse("a1-b2").is_ok());
        for bad in [
            "",
            "a",
            "A1",
            "1abc",
            "ab_c",
            "abc-",
            "ab c",
            &"a".repeat(64),
        ] {
            assert!(AppName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(AppName::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn labels() {
        for good in ["v1", "1.2.3", "release_7-rc.1", "V2"] {
            assert!(VersionLabel::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-v1", ".v1", "v/1", "v 1", "../x", &"v".repeat(101)] {
            assert!(VersionLabel::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_says_what_and_why() {
        let e = EnvName::parse("Bad").unwrap_err();
        assert_eq!(e.kind, "environment name");
        assert!(e.to_string().contains("'Bad'"));
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<AppName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<AppName>("\"NO\"").is_err());
    }

    #[test]
    fn request_paths_are_absolute_paths_only() {
        for good in ["/", "/jobs", "/tasks/tick?x=1&y=%2F", "/a@b/c:d", "/~u/-._"] {
            let p = RequestPath::parse(good);
            assert!(p.is_ok(), "{good}");
        }
        let p = RequestPath::parse("/a/b?q=1").unwrap_or_default();
        assert_eq!((p.path(), p.query()), ("/a/b", Some("q=1")));
        for bad in [
            "",
            "jobs",
            "@127.0.0.1:9999/ssrf",
            "//127.0.0.1:9999/ssrf",
            "http://127.0.0.1/",
            "/a b",
            "/a\nb",
            "/a#frag",
            "/a\\b",
            "/%zz",
            "/%4",
            "/caf\u{e9}",
            &format!("/{}", "a".repeat(2048)),
        ] {
            assert!(
                RequestPath::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(serde_json::from_str::<RequestPath>("\"@h:1/x\"").is_err());
    }
}
