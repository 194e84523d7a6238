//! Human output: tables on stdout, spinners and bars on stderr.

use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sprout_core::api::{
    App, AttachedResource, ConfigView, Deployment, Environment, EnvironmentDetail, Event,
    HealthReport, Metrics, Version,
};
use sprout_core::properties;
use std::io::IsTerminal;
use std::time::Duration;

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

/// A table as text without the preset's edge padding: no leading column of spaces, no
/// trailing blanks.
pub(crate) fn render(t: &Table) -> String {
    let text = t.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let strip_lead = lines.iter().all(|l| l.is_empty() || l.starts_with(' '));
    lines
        .iter()
        .map(|l| {
            if strip_lead {
                l.strip_prefix(' ').unwrap_or(l)
            } else {
                l
            }
            .trim_end()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".to_string())
}

/// What a verb shows a person (without `--json`).
pub(crate) enum View {
    /// Text for stdout.
    Text(String),
    /// Nothing to list: a note for stderr, so stdout stays empty.
    Empty(String),
}

impl From<Table> for View {
    fn from(t: Table) -> View {
        View::Text(render(&t))
    }
}

impl From<String> for View {
    fn from(s: String) -> View {
        View::Text(s)
    }
}

/// `value` as pretty JSON with `--json`, else as `human` shows it: every verb that takes
/// `--json` decides here.
pub(crate) fn view<T: Serialize, V: Into<View>>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> V,
) -> View {
    if !json {
        return human(value).into();
    }
    match serde_json::to_string_pretty(value) {
        Ok(s) => View::Text(s),
        Err(e) => View::Empty(format!("warning: cannot print JSON: {e}")),
    }
}

/// Prints [`view`]'s choice: text on stdout, a note on stderr.
pub(crate) fn show<T: Serialize, V: Into<View>>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> V,
) {
    match view(json, value, human) {
        View::Text(text) => println!("{text}"),
        View::Empty(note) => eprintln!("{note}"),
    }
}

/// A list's table, or `empty` (for stderr) when the list is.
pub(crate) fn listing<T>(items: &[T], empty: &str, table: impl FnOnce(&[T]) -> Table) -> View {
    if items.is_empty() {
        View::Empty(empty.to_string())
    } else {
        table(items).into()
    }
}

pub(crate) fn apps_table(apps: &[App]) -> Table {
    let mut t = table(&["NAME", "VERSIONS", "ENVIRONMENTS", "CREATED"]);
    for a in apps {
        t.add_row(vec![
            a.name.clone(),
            a.versions.to_string(),
            a.environments.to_string(),
            time(&a.created_at),
        ]);
    }
    t
}

pub(crate) fn versions_table(versions: &[Version]) -> Table {
    let mut t = table(&["LABEL", "STATUS", "PLATFORM", "SIZE", "CREATED", "ERROR"]);
    for v in versions {
        t.add_row(vec![
            v.label.clone(),
            v.status.to_string(),
            v.platform.clone(),
            HumanBytes(v.size_bytes).to_string(),
            time(&v.created_at),
            v.error
                .as_deref()
                .map(crate::error::one_line)
                .unwrap_or_default(),
        ]);
    }
    t
}

pub(crate) fn envs_table(envs: &[Environment]) -> Table {
    let mut t = table(&[
        "NAME",
        "APP",
        "VERSION",
        "TIER",
        "MODE",
        "STATUS",
        "HEALTH",
        "INSTANCES",
        "URL",
    ]);
    for e in envs {
        t.add_row(vec![
            e.name.clone(),
            e.app.clone(),
            e.version.clone(),
            e.tier.to_string(),
            e.mode.to_string(),
            e.status.to_string(),
            e.health.clone(),
            e.desired.to_string(),
            opt(&e.url),
        ]);
    }
    t
}

/// `sprout status`: the environment's fields, then its instances.
pub(crate) fn status_text(d: &EnvironmentDetail) -> String {
    let e = &d.environment;
    let mut fields = Table::new();
    fields
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    let mut row = |k: &str, v: String| {
        fields.add_row(vec![format!("{k}:"), v]);
    };
    row("Environment", e.name.clone());
    row("Application", e.app.clone());
    row("Version", e.version.clone());
    row("Tier", e.tier.to_string());
    row("Mode", e.mode.to_string());
    row("Status", e.status.to_string());
    row("Health", e.health.clone());
    row("Health status", e.health_status.to_string());
    row("Deployment policy", e.policy.to_string());
    row("CNAME", e.cname.clone());
    row("URL", opt(&e.url));
    row("Instance type", e.instance_type.to_string());
    row("Bootstrap", e.bootstrap.to_string());
    row(
        "Instances",
        format!("{} (min {}, max {})", e.desired, e.min, e.max),
    );
    if !e.env.is_empty() {
        let props: Vec<String> = e.env.keys().cloned().collect();
        row("Properties", props.join(", "));
    }
    row("Created", time(&e.created_at));
    row("Updated", time(&e.updated_at));
    if let Some(op) = &e.operation {
        let mut s = format!("{} {}", op.kind, outcome(op.outcome));
        if let Some(v) = &op.version {
            s.push_str(&format!(" (version {v})"));
        }
        s.push_str(&format!(", started {}", time(&op.started_at)));
        if let Some(by) = &op.started_by {
            s.push_str(&format!(" by {by}"));
        }
        if let Some(m) = &op.message {
            s.push_str(&format!(": {}", crate::error::one_line(m)));
        }
        row("Operation", s);
    }
    let mut out = render(&fields);
    out.push_str("\n\n");
    if d.instances.is_empty() {
        out.push_str("no instances");
    } else {
        let mut t = table(&[
            "ID",
            "ZONE",
            "VERSION",
            "STATE",
            "HEALTH",
            "START→HEALTHY",
            "ADDRESS",
        ]);
        for i in &d.instances {
            t.add_row(vec![
                i.id.clone(),
                i.zone.clone(),
                i.version.clone(),
                i.state.clone(),
                i.health.to_string(),
                i.start_to_healthy_ms.map(millis).unwrap_or_else(dash),
                opt(&i.address),
            ]);
        }
        out.push_str(&render(&t));
    }
    push_resources(&mut out, &d.resources);
    out
}

/// Appends the attached resources' table (nothing when there are none).
fn push_resources(out: &mut String, resources: &[AttachedResource]) {
    if resources.is_empty() {
        return;
    }
    out.push_str("\n\nresources\n");
    let mut t = table(&[
        "NAME",
        "KIND",
        "STATUS",
        "HEALTH",
        "CHECKED",
        "AS",
        "ATTACHMENT",
    ]);
    for r in resources {
        t.add_row(vec![
            r.name.clone(),
            r.kind.to_string(),
            r.status.to_string(),
            opt(&r.health),
            r.health_checked_at.as_ref().map(time).unwrap_or_else(dash),
            opt(&r.prefix),
            r.attachment.to_string(),
        ]);
    }
    out.push_str(&render(&t));
}

fn dash() -> String {
    "-".to_string()
}

/// A duration in milliseconds, in seconds with one decimal: `1.8 s`; minutes past 100 s.
pub(crate) fn millis(ms: i64) -> String {
    seconds(ms as f64 / 1000.0)
}

/// A duration in seconds: `0.4 s`, `12.0 s`, `2m 05s`, `1h 02m`.
pub(crate) fn seconds(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return dash();
    }
    if secs < 100.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, whole % 3600 / 60)
    }
}

/// How long something has been up: `45s`, `12m`, `3h 04m`, `2d 05h`.
pub(crate) fn uptime(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A latency: `0.8 ms`, `12 ms`, `1.25 s`.
pub(crate) fn latency(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        dash()
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// `part` of `whole` as a share: `97.5 %`; `-` when there is nothing to share.
pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        dash()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// Requests per second: `12.3`.
pub(crate) fn rate(r: f64) -> String {
    format!("{r:.1}")
}

/// `sprout config ENV`: the settings (in `sprout config`'s order), then the properties
/// with secret values masked.
pub(crate) fn config_text(c: &ConfigView) -> String {
    let mut t = table(&["KEY", "VALUE"]);
    let known = sprout_core::settings::KEYS;
    for key in known {
        if let Some(v) = c.settings.get(*key) {
            t.add_row(vec![key.to_string(), v.clone()]);
        }
    }
    for (k, v) in &c.settings {
        if !known.contains(&k.as_str()) {
            t.add_row(vec![k.clone(), v.clone()]);
        }
    }
    let mut out = render(&t);
    out.push_str("\n\n");
    if c.properties.is_empty() {
        out.push_str("no environment properties");
    } else {
        let mut p = table(&["PROPERTY", "VALUE"]);
        for (k, v) in &c.properties {
            p.add_row(vec![k.clone(), properties::shown(k, v).to_string()]);
        }
        out.push_str(&render(&p));
    }
    out
}

fn metrics_table(m: &Metrics) -> Table {
    let mut t = table(&[
        "REQ/S", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "P50", "P90", "P99", "P99.9",
    ]);
    let quiet = m.count == 0;
    let lat = |ms: f64| if quiet { dash() } else { latency(ms) };
    t.add_row(vec![
        rate(m.requests_per_sec),
        m.count.to_string(),
        percent(m.status_2xx, m.count),
        percent(m.status_3xx, m.count),
        percent(m.status_4xx, m.count),
        percent(m.status_5xx, m.count),
        lat(m.p50_ms),
        lat(m.p90_ms),
        lat(m.p99_ms),
        lat(m.p999_ms),
    ]);
    t
}

/// `sprout health ENV`, like `eb health`: the environment's verdict and causes, its
/// requests over the window, then one row per instance.
pub(crate) fn health_text(h: &HealthReport) -> String {
    let mut out = format!(
        "{}  {}  {} ({})",
        h.environment, h.status, h.health, h.color
    );
    for cause in &h.causes {
        out.push_str(&format!("\n  {}", crate::error::one_line(cause)));
    }
    let window = if h.metrics.window_secs > 0.0 {
        format!(" (last {:.0} s)", h.metrics.window_secs)
    } else {
        String::new()
    };
    out.push_str(&format!("\n\nrequests{window}\n"));
    out.push_str(&render(&metrics_table(&h.metrics)));
    out.push_str("\n\n");
    if h.instances.is_empty() {
        out.push_str("no instances");
        push_resources(&mut out, &h.resources);
        return out;
    }
    let mut t = table(&[
        "ID",
        "ZONE",
        "VERSION",
        "HEALTH",
        "CAUSES",
        "REQ/S",
        "5XX",
        "P50",
        "P99",
        "IN FLIGHT",
        "START→HEALTHY",
        "UPTIME",
    ]);
    for i in &h.instances {
        let quiet = i.count == 0;
        let lat = |ms: f64| if quiet { dash() } else { latency(ms) };
        t.add_row(vec![
            i.id.clone(),
            i.zone.clone(),
            i.version.clone(),
            i.health.to_string(),
            if i.causes.is_empty() {
                dash()
            } else {
                crate::error::one_line(&i.causes.join("; "))
            },
            rate(i.requests_per_sec),
            percent(i.status_5xx, i.count),
            lat(i.p50_ms),
            lat(i.p99_ms),
            i.in_flight.to_string(),
            i.start_to_healthy_ms.map(millis).unwrap_or_else(dash),
            i.uptime_secs.map(uptime).unwrap_or_else(dash),
        ]);
    }
    out.push_str(&render(&t));
    push_resources(&mut out, &h.resources);
    out
}

pub(crate) fn deployments_table(ds: &[Deployment]) -> Table {
    let mut t = table(&[
        "ID", "KIND", "VERSION", "POLICY", "BATCH", "OUTCOME", "STARTED", "DURATION", "REQUESTS",
        "FAILED", "BY", "MESSAGE",
    ]);
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(dash);
    for d in ds {
        // "~": the control plane crashed meanwhile and lost a moment of counts.
        let num = |n: Option<i64>| match (n, d.approximate) {
            (Some(n), true) => format!("~{n}"),
            _ => num(n),
        };
        t.add_row(vec![
            d.id.to_string(),
            d.kind.clone(),
            opt(&d.version),
            opt(&d.policy),
            opt(&d.batch),
            outcome(d.outcome).to_string(),
            time(&d.started_at),
            d.duration_secs.map(seconds).unwrap_or_else(dash),
            num(d.requests),
            num(d.failed),
            opt(&d.started_by),
            d.message
                .as_deref()
                .map(crate::error::one_line)
                .unwrap_or_else(dash),
        ]);
    }
    t
}

pub(crate) fn outcome(o: sprout_core::api::OperationOutcome) -> &'static str {
    o.as_str()
}

pub(crate) fn event_line(e: &Event) -> String {
    format!(
        "{}  {:<5}  {}",
        time(&e.time),
        e.severity.as_str(),
        e.message
    )
}

pub(crate) fn events_table(events: &[Event]) -> Table {
    let mut t = table(&["TIME", "SEVERITY", "MESSAGE"]);
    for e in events {
        t.add_row(vec![
            time(&e.time),
            e.severity.to_string(),
            e.message.clone(),
        ]);
    }
    t
}

pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A byte progress bar on stderr; hidden when stderr is not a terminal.
pub(crate) fn bytes_bar(message: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// A spinner on stderr. When stderr is not a terminal it prints each new message as a line
/// instead, so logs still show the progress.
pub(crate) struct Spinner {
    pb: ProgressBar,
    visible: bool,
    last: String,
}

impl Spinner {
    pub(crate) fn new(message: &str) -> Spinner {
        let visible = stderr_is_terminal();
        let pb = if visible {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner:.green} {elapsed:>4} {wide_msg}")
            {
                pb.set_style(style);
            }
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        } else {
            ProgressBar::hidden()
        };
        let mut s = Spinner {
            pb,
            visible,
            last: String::new(),
        };
        s.set(message);
        s
    }

    pub(crate) fn set(&mut self, message: &str) {
        if message == self.last {
            return;
        }
        self.last = message.to_string();
        if self.visible {
            self.pb.set_message(message.to_string());
        } else {
            eprintln!("{message}");
        }
    }

    /// Prints a line on stderr above the spinner.
    pub(crate) fn println(&self, line: &str) {
        if self.visible {
            self.pb.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }

    pub(crate) fn finish(self) {
        self.pb.finish_and_clear();
    }
}

/// The last `n` lines of a text.
pub(crate) fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprout_core::api::{InstanceHealth, OperationOutcome};
    use sprout_core::{EnvStatus, HealthStatus};
    use std::collections::BTreeMap;

    #[test]
    fn secrets_are_masked() {
        for key in [
            "SECRET_KEY_BASE",
            "DB_PASSWORD",
            "github_token",
            "API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "KEYCLOAK_URL",
        ] {
            assert!(properties::is_secret(key), "{key}");
            assert_eq!(properties::shown(key, "hunter2"), properties::MASKED);
        }
        for key in ["DATABASE_URL", "PORT", "LOG_LEVEL", "PASS"] {
            assert!(!properties::is_secret(key), "{key}");
            assert_eq!(properties::shown(key, "v"), "v");
        }
    }

    #[test]
    fn config_lists_settings_in_order_and_masks_properties() {
        let view = ConfigView {
            environment: "web".into(),
            settings: BTreeMap::from([
                ("policy".to_string(), "rolling".to_string()),
                ("min".to_string(), "2".to_string()),
                ("zz_new".to_string(), "x".to_string()),
                ("instance_type".to_string(), "micro".to_string()),
            ]),
            properties: BTreeMap::from([
                ("DB_PASSWORD".to_string(), "hunter2".to_string()),
                ("PORT".to_string(), "8000".to_string()),
            ]),
        };
        let text = config_text(&view);
        let keys: Vec<&str> = text
            .lines()
            .take(5)
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(keys, ["KEY", "instance_type", "min", "policy", "zz_new"]);
        assert!(text.contains("DB_PASSWORD  ****"), "{text}");
        assert!(text.contains("PORT         8000"), "{text}");
        assert!(!text.contains("hunter2"));
        let empty = ConfigView {
            properties: BTreeMap::new(),
            ..view
        };
        assert!(config_text(&empty).ends_with("no environment properties"));
    }

    #[test]
    fn durations_and_shares() {
        assert_eq!(millis(1800), "1.8 s");
        assert_eq!(millis(250), "0.2 s");
        assert_eq!(seconds(12.04), "12.0 s");
        assert_eq!(seconds(125.0), "2m 05s");
        assert_eq!(seconds(3720.0), "1h 02m");
        assert_eq!(seconds(-1.0), "-");
        assert_eq!(uptime(45), "45s");
        assert_eq!(uptime(720), "12m");
        assert_eq!(uptime(3 * 3600 + 4 * 60), "3h 04m");
        assert_eq!(uptime(2 * 86400 + 5 * 3600), "2d 05h");
        assert_eq!(latency(0.84), "0.8 ms");
        assert_eq!(latency(12.4), "12 ms");
        assert_eq!(latency(1250.0), "1.25 s");
        assert_eq!(percent(1, 8), "12.5 %");
        assert_eq!(percent(0, 0), "-");
        assert_eq!(percent(3, 3), "100.0 %");
        assert_eq!(rate(2.46), "2.5");
    }

    #[test]
    fn health_report_text() {
        let report = HealthReport {
            environment: "web".into(),
            status: EnvStatus::Ready,
            health: HealthStatus::Warning,
            color: "Yellow".into(),
            causes: vec!["1 of 2 instances is not serving".into()],
            metrics: Metrics {
                window_secs: 10.0,
                requests_per_sec: 4.0,
                count: 40,
                status_2xx: 38,
                status_5xx: 2,
                p50_ms: 3.0,
                p90_ms: 12.0,
                p99_ms: 40.0,
                p999_ms: 1500.0,
                ..Default::default()
            },
            instances: vec![InstanceHealth {
                id: "i-1".into(),
                version: "v2".into(),
                zone: "zone-a".into(),
                health: HealthStatus::Ok,
                color: "Green".into(),
                causes: vec![],
                requests_per_sec: 4.0,
                count: 40,
                status_5xx: 2,
                p50_ms: 3.0,
                p99_ms: 40.0,
                in_flight: 1,
                start_to_healthy_ms: Some(1800),
                uptime_secs: Some(90),
            }],
            resources: vec![],
        };
        let text = health_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "web  Ready  Warning (Yellow)");
        assert_eq!(lines[1], "  1 of 2 instances is not serving");
        assert!(text.contains("requests (last 10 s)"), "{text}");
        assert!(text.contains("95.0 %"), "{text}");
        assert!(text.contains("1.50 s"), "{text}");
        let row = lines.last().unwrap();
        for cell in ["i-1", "zone-a", "v2", "Ok", "5.0 %", "1.8 s", "1m"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
    }

    #[test]
    fn health_report_lists_attached_resources_after_instances() {
        let report = HealthReport {
            environment: "web".into(),
            status: EnvStatus::Ready,
            health: HealthStatus::Warning,
            color: "Yellow".into(),
            causes: vec!["resource cache (redis) is failing its health checks".into()],
            metrics: Metrics::default(),
            instances: vec![],
            resources: vec![AttachedResource {
                name: "cache".into(),
                kind: sprout_core::resource::ResourceKind::Redis,
                status: sprout_core::resource::ResourceStatus::Available,
                health: Some("unhealthy".into()),
                health_checked_at: None,
                prefix: Some("SESSIONS".into()),
                attachment: sprout_core::resource::AttachmentState::Attached,
            }],
        };
        let text = health_text(&report);
        assert!(text.contains("no instances\n\nresources\n"), "{text}");
        let row = text.lines().last().unwrap();
        for cell in [
            "cache",
            "redis",
            "Available",
            "unhealthy",
            "SESSIONS",
            "attached",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
    }

    #[test]
    fn deployments_rows() {
        let d = Deployment {
            id: 7,
            kind: "deploy".into(),
            version: Some("v2".into()),
            policy: Some("rolling".into()),
            batch: Some("50%".into()),
            started_by: Some("admin".into()),
            started_at: Utc::now(),
            finished_at: None,
            duration_secs: Some(42.3),
            outcome: OperationOutcome::Failed,
            message: Some("deploy 7 failed:\nunhealthy".into()),
            requests: Some(120),
            failed: None,
            approximate: true,
        };
        let text = render(&deployments_table(&[d]));
        let row = text.lines().nth(1).unwrap();
        for cell in [
            "deploy", "rolling", "50%", "failed", "42.3 s", "~120", "admin",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(row.ends_with("deploy 7 failed: unhealthy"), "{row}");
    }
}
