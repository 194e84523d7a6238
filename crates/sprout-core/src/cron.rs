//! `cron.yaml`, Beanstalk's format for periodic tasks of a worker environment:
//!
//! ```yaml
//! version: 1
//! cron:
//!   - name: "backup"
//!     url: "/backup"
//!     schedule: "0 */12 * * *"
//! ```
//!
//! A schedule has Beanstalk's five fields (minute hour day month weekday), or six with a
//! leading seconds field (a Sprout extension, for tasks more often than once a minute).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("cron.yaml: {0}")]
    Yaml(String),
    #[error("cron.yaml: task '{name}': {reason}")]
    Task { name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronTask {
    pub name: String,
    pub url: String,
    pub schedule: String,
}

impl CronTask {
    /// The schedule with a seconds field, as tokio-cron-scheduler (croner) wants it.
    pub fn schedule_with_seconds(&self) -> String {
        let fields: Vec<&str> = self.schedule.split_whitespace().collect();
        if fields.len() == 5 {
            format!("0 {}", fields.join(" "))
        } else {
            fields.join(" ")
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronYaml {
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub cron: Vec<CronTask>,
}

impl CronYaml {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let parsed: CronYaml =
            serde_yaml::from_str(text).map_err(|e| CronError::Yaml(e.to_string()))?;
        if parsed.version.is_some_and(|v| v != 1) {
            return Err(CronError::Yaml("only `version: 1` is known".into()));
        }
        let mut names = std::collections::HashSet::new();
        for task in &parsed.cron {
            let bad = |reason: &str| CronError::Task {
                name: task.name.clone(),
                reason: reason.to_string(),
            };
            if task.name.trim().is_empty()
                || task.name.len() > 100
                || !task.name.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(bad("the name must be 1-100 visible ASCII characters"));
            }
            if !names.insert(task.name.as_str()) {
                return Err(bad("the name is used twice"));
            }
            // The dispatcher requests this path from the instance (see `RequestPath`).
            if let Err(e) = crate::names::RequestPath::parse(&task.url) {
                return Err(bad(&format!("url must be {}", e.rule)));
            }
            if let Err(reason) = validate_schedule(&task.schedule) {
                return Err(bad(&reason));
            }
        }
        Ok(parsed)
    }
}

/// Checks a schedule (five fields, or six with seconds first) the way `cron.yaml`'s are
/// checked, and returns it with a seconds field. The error is a sentence for the user.
pub fn validate_schedule(schedule: &str) -> Result<String, String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 && fields.len() != 6 {
        return Err(
            "schedule needs 5 fields (minute hour day month weekday), or 6 with seconds first"
                .to_string(),
        );
    }
    if !schedule
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " */,-?LW#".contains(c))
    {
        return Err("schedule holds characters cron does not know".to_string());
    }
    let six = if fields.len() == 5 {
        format!("0 {}", fields.join(" "))
    } else {
        fields.join(" ")
    };
    parse_schedule(&six).map_err(|e| format!("schedule '{schedule}': {e}"))?;
    Ok(six)
}

/// The first time after `after` a schedule (five or six fields) fires, in UTC; `None` for a
/// schedule [`validate_schedule`] refuses.
pub fn next_after(
    schedule: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_schedule(&validate_schedule(schedule).ok()?)
        .ok()?
        .find_next_occurrence(&after, false)
        .ok()
}

/// Parses a six-field schedule with the settings tokio-cron-scheduler's `Job::new_async`
/// uses, so a schedule accepted here is one the scheduler takes.
fn parse_schedule(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_beanstalk_format() {
        let c = CronYaml::parse(
            "version: 1\ncron:\n - name: backup\n   url: /backup\n   schedule: \"0 */12 * * *\"\n - name: tick\n   url: /tick\n   schedule: \"*/3 * * * * *\"\n",
        )
        .expect("parse");
        assert_eq!(c.cron.len(), 2);
        assert_eq!(c.cron[0].schedule_with_seconds(), "0 0 */12 * * *");
        assert_eq!(c.cron[1].schedule_with_seconds(), "*/3 * * * * *");
        assert_eq!(CronYaml::parse("").map(|c| c.cron.len()), Ok(0));
    }

    #[test]
    fn refuses_bad_tasks() {
        for bad in [
            "cron:\n - name: a\n   url: nope\n   schedule: \"* * * * *\"\n",
            "cron:\n - name: a\n   url: \"@127.0.0.1:9999/ssrf\"\n   schedule: \"* * * * *\"\n",
            "cron:\n - name: a\n   url: \"//127.0.0.1:9999/ssrf\"\n   schedule: \"* * * * *\"\n",
            "cron:\n - name: a\n   url: /a\n   schedule: \"* * *\"\n",
            "cron:\n - name: a\n   url: /a\n   schedule: \"* * * * *\"\n - name: a\n   url: /b\n   schedule: \"* * * * *\"\n",
            "cron:\n - name: a\n   url: /a\n   schedule: \"61 * * * *\"\n",
            "cron:\n - name: a\n   url: /a\n   schedule: \"* * * 13 *\"\n",
            "cron:\n - name: a\n   url: /a\n   schedule: \"*/0 * * * *\"\n",
            "version: 2\n",
            "cron: 3\n",
        ] {
            assert!(CronYaml::parse(bad).is_err(), "{bad}");
        }
    }
}
