//! What Sprout reads from a bundle: the `Procfile` and `sprout.yaml`.

use crate::model::Tier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("Procfile line {line}: {reason}")]
    Procfile { line: usize, reason: String },
    #[error("sprout.yaml: {0}")]
    SproutYaml(String),
    #[error("a {tier} environment needs a '{tier}' process in the Procfile (e.g. `{tier}: python3 app.py`)")]
    MissingProcess { tier: Tier },
    #[error(transparent)]
    Cron(#[from] crate::cron::CronError),
}

/// `name: command` lines; the app listens on `$PORT`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procfile {
    pub processes: BTreeMap<String, String>,
}

impl Procfile {
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let mut processes = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, command)) = line.split_once(':') else {
                return Err(ManifestError::Procfile {
                    line: line_no,
                    reason: "expected `name: command`".into(),
                });
            };
            let name = name.trim();
            let command = command.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ManifestError::Procfile {
                    line: line_no,
                    reason: format!("invalid process name '{name}' (letters, digits, '_' or '-')"),
                });
            }
            if command.is_empty() {
                return Err(ManifestError::Procfile {
                    line: line_no,
                    reason: format!("process '{name}' has no command"),
                });
            }
            if processes
                .insert(name.to_string(), command.to_string())
                .is_some()
            {
                return Err(ManifestError::Procfile {
                    line: line_no,
                    reason: format!("process '{name}' is defined twice"),
                });
            }
        }
        Ok(Self { processes })
    }

    pub fn command(&self, process: &str) -> Option<&str> {
        self.processes.get(process).map(String::as_str)
    }
}

/// Commands given either as one script or as a list of lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Script {
    One(String),
    Lines(Vec<String>),
}

impl Script {
    /// The script as one `sh` program that stops at the first failing command.
    pub fn to_shell(&self) -> String {
        let body = match self {
            Script::One(text) => text.clone(),
            Script::Lines(lines) => lines.join("\n"),
        };
        format!("set -e\n{body}\n")
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Script::One(text) => text.trim().is_empty(),
            Script::Lines(lines) => lines.iter().all(|l| l.trim().is_empty()),
        }
    }
}

/// `sprout.yaml`: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SproutYaml {
    /// A catalogue platform (`python`, `static`) or any local image reference.
    pub platform: Option<String>,
    /// Baked into the golden image at version build.
    pub build: Option<Script>,
    /// Run at every instance start (user-data), before the process.
    pub boot: Option<Script>,
    /// Path the balancer checks; defaults to `/`.
    pub health_check: Option<String>,
    /// The user instances run their process as (`name`, `uid`, `name:group` or
    /// `uid:gid`); the image's own user (root on the catalogue's platforms) when absent.
    /// Build steps still run as root, so they can install packages.
    #[serde(default, deserialize_with = "user_name_or_id")]
    pub user: Option<String>,
    /// Lifecycle hooks, kept for later issues (`predeploy`, `postdeploy`).
    #[serde(default)]
    pub hooks: BTreeMap<String, Script>,
}

pub const DEFAULT_PLATFORM: &str = "python";
pub const DEFAULT_HEALTH_CHECK: &str = "/";

impl SproutYaml {
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let parsed: SproutYaml =
            serde_yaml::from_str(text).map_err(|e| ManifestError::SproutYaml(e.to_string()))?;
        if let Some(path) = &parsed.health_check {
            if let Err(e) = crate::names::RequestPath::parse(path) {
                return Err(ManifestError::SproutYaml(format!(
                    "health_check must be {}, got '{path}'",
                    e.rule
                )));
            }
        }
        if let Some(user) = &parsed.user {
            if !valid_user(user) {
                return Err(ManifestError::SproutYaml(format!(
                    "user must be a user name or id, optionally with ':group' (e.g. 'app' or \
                     '1000:1000'), got '{user}'"
                )));
            }
        }
        if let Some(platform) = &parsed.platform {
            if platform.trim().is_empty() || platform.chars().any(|c| c.is_whitespace()) {
                return Err(ManifestError::SproutYaml(format!(
                    "invalid platform '{platform}'"
                )));
            }
        }
        Ok(parsed)
    }

    pub fn platform(&self) -> &str {
        self.platform.as_deref().unwrap_or(DEFAULT_PLATFORM)
    }

    pub fn health_check(&self) -> &str {
        self.health_check.as_deref().unwrap_or(DEFAULT_HEALTH_CHECK)
    }
}

/// `user: 1000` is a number to YAML: take it as the id it means.
fn user_name_or_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrId {
        Id(u32),
        Name(String),
    }
    Ok(Option::<NameOrId>::deserialize(d)?.map(|u| match u {
        NameOrId::Id(id) => id.to_string(),
        NameOrId::Name(name) => name,
    }))
}

/// `name`, `uid`, `name:group` or `uid:gid`: POSIX portable names (letters, digits, `.`,
/// `_`, `-`, not starting with `-`), at most 32 characters each.
fn valid_user(user: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match user.split_once(':') {
        Some((name, group)) => part(name) && part(group),
        None => part(user),
    }
}

/// Everything Sprout learned from a bundle, stored with its version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub procfile: Procfile,
    pub config: SproutYaml,
    /// Periodic tasks from `cron.yaml` (worker environments).
    #[serde(default)]
    pub cron: crate::cron::CronYaml,
}

impl BundleManifest {
    pub fn parse(procfile: Option<&str>, sprout_yaml: Option<&str>) -> Result<Self, ManifestError> {
        Ok(Self {
            procfile: procfile
                .map(Procfile::parse)
                .transpose()?
                .unwrap_or_default(),
            config: sprout_yaml
                .map(SproutYaml::parse)
                .transpose()?
                .unwrap_or_default(),
            cron: Default::default(),
        })
    }

    /// Adds the bundle's `cron.yaml`, if it has one.
    pub fn with_cron(mut self, cron_yaml: Option<&str>) -> Result<Self, ManifestError> {
        if let Some(text) = cron_yaml {
            self.cron = crate::cron::CronYaml::parse(text)?;
        }
        Ok(self)
    }

    /// The command instances of `tier` run, or why this bundle cannot serve that tier.
    pub fn command_for(&self, tier: Tier) -> Result<&str, ManifestError> {
        self.procfile
            .command(tier.as_str())
            .ok_or(ManifestError::MissingProcess { tier })
    }
}

/// The platform catalogue: names users write in `sprout.yaml` → local image references.
pub fn platform_image(platform: &str) -> String {
    match platform {
        "python" | "static" => format!("sprout/platform-{platform}"),
        other => other.to_string(),
    }
}

/// Catalogue platforms Sprout can build itself from Debian packages.
pub fn catalogue_platform(image: &str) -> Option<&'static str> {
    match image.strip_suffix(":latest").unwrap_or(image) {
        "sprout/platform-python" => Some("python"),
        "sprout/platform-static" => Some("static"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_parses_processes() {
        let p = Procfile::parse(
            "# comment\nweb: python3 app.py --port $PORT\n\nworker:  python3 w.py\n",
        )
        .unwrap();
        assert_eq!(p.command("web"), Some("python3 app.py --port $PORT"));
        assert_eq!(p.command("worker"), Some("python3 w.py"));
    }

    #[test]
    fn procfile_rejects_garbage() {
        assert!(matches!(
            Procfile::parse("web python3"),
            Err(ManifestError::Procfile { line: 1, .. })
        ));
        assert!(Procfile::parse("web:").is_err());
        assert!(Procfile::parse("we b: x").is_err());
        assert!(Procfile::parse("web: a\nweb: b").is_err());
    }

    #[test]
    fn command_contains_colons() {
        let p = Procfile::parse("web: gunicorn -b 0.0.0.0:$PORT app:app").unwrap();
        assert_eq!(p.command("web"), Some("gunicorn -b 0.0.0.0:$PORT app:app"));
    }

    #[test]
    fn sprout_yaml_forms() {
        let y = SproutYaml::parse("platform: static\nbuild:\n  - echo a\n  - echo b\nboot: echo hi\nhealth_check: /health\n").unwrap();
        assert_eq!(y.platform(), "static");
        assert_eq!(
            y.build.as_ref().map(Script::to_shell).as_deref(),
            Some("set -e\necho a\necho b\n")
        );
        assert_eq!(y.health_check(), "/health");
        assert_eq!(SproutYaml::parse("").unwrap().platform(), "python");
    }

    #[test]
    fn sprout_yaml_rejects_bad() {
        assert!(SproutYaml::parse("health_check: health").is_err());
        assert!(SproutYaml::parse("unknown_key: 1").is_err());
        assert!(SproutYaml::parse("build: [1, [2]]").is_err());
    }

    #[test]
    fn user_names_and_ids() {
        let user = |text: &str| SproutYaml::parse(text).map(|y| y.user);
        assert_eq!(user("user: nobody").unwrap().as_deref(), Some("nobody"));
        assert_eq!(user("user: 1000").unwrap().as_deref(), Some("1000"));
        assert_eq!(
            user("user: '1000:1000'").unwrap().as_deref(),
            Some("1000:1000")
        );
        assert_eq!(
            user("user: app:staff").unwrap().as_deref(),
            Some("app:staff")
        );
        assert_eq!(user("platform: python").unwrap(), None);
        for bad in [
            "user: ''",
            "user: 'a b'",
            "user: -x",
            "user: 'a:'",
            "user: 'a:b:c'",
            "user: [1]",
        ] {
            assert!(user(bad).is_err(), "{bad}");
        }
        // Stored manifests are JSON, where the id is already a string.
        let stored: SproutYaml = serde_json::from_str(r#"{"user":"1000"}"#).unwrap();
        assert_eq!(stored.user.as_deref(), Some("1000"));
    }

    #[test]
    fn web_tier_needs_web_process() {
        let m = BundleManifest::parse(Some("worker: x"), None).unwrap();
        assert!(matches!(
            m.command_for(Tier::Web),
            Err(ManifestError::MissingProcess { tier: Tier::Web })
        ));
        assert_eq!(m.command_for(Tier::Worker).ok(), Some("x"));
        let none = BundleManifest::parse(None, None).unwrap();
        assert!(none.command_for(Tier::Web).is_err());
    }

    #[test]
    fn catalogue() {
        assert_eq!(platform_image("python"), "sprout/platform-python");
        assert_eq!(platform_image("myorg/img:1"), "myorg/img:1");
        assert_eq!(
            catalogue_platform("sprout/platform-static:latest"),
            Some("static")
        );
        assert_eq!(catalogue_platform("debian"), None);
    }
}
