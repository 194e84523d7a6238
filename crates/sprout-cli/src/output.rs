//! Human output: tables on stdout, spinners and bars on stderr.

use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sprout_core::api::{App, Environment, EnvironmentDetail, Event, Version};
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

/// Prints a value as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("warning: cannot print JSON: {e}"),
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
        let mut t = table(&["ID", "ZONE", "VERSION", "STATE", "HEALTHY", "ADDRESS"]);
        for i in &d.instances {
            t.add_row(vec![
                i.id.clone(),
                i.zone.clone(),
                i.version.clone(),
                i.state.clone(),
                if i.healthy { "yes" } else { "no" }.to_string(),
                opt(&i.address),
            ]);
        }
        out.push_str(&render(&t));
    }
    out
}

pub(crate) fn outcome(o: sprout_core::api::OperationOutcome) -> &'static str {
    use sprout_core::api::OperationOutcome::*;
    match o {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
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

    pub(crate) fn finish(self) {
        self.pb.finish_and_clear();
    }
}

/// The last `n` lines of a text.
pub(crate) fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}
