//! The dashboard's pages (GET). Each reads through `sprout-control` and renders a template.

use super::resources;
use super::session::{self, Session};
use super::svg::{self, Architecture, InstanceNode, Series};
use super::{render, PageResult};
use crate::auth;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect};
use serde::{Deserialize, Serialize};
use sprout_control::history::Sample;
use sprout_core::api;
use sprout_core::auth::Role;
use sprout_core::properties;
use sprout_core::{Policy, Tier};
use std::time::Instant;

/// `?notice=…` / `?error=…`: what the last action did (escaped like any other text).
#[derive(Deserialize, Default)]
pub struct Flash {
    notice: Option<String>,
    error: Option<String>,
    expired: Option<String>,
}

fn base_context(s: &Session, flash: &Flash) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("user", &s.caller.username);
    c.insert("role", &s.caller.role);
    c.insert("csrf", &s.csrf);
    c.insert("can_write", &s.can_write());
    c.insert("notice", &flash.notice);
    c.insert("error", &flash.error);
    c.insert("version", env!("CARGO_PKG_VERSION"));
    c
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> PageResult {
    let cookies = state.dashboard.cookies;
    if let Some(token) = session::cookie(&headers, cookies.session_name()) {
        if !token.is_empty() && auth::authenticate(&state, token).await.is_ok() {
            return Ok(Redirect::to("/").into_response());
        }
    }
    login_form(
        cookies,
        None,
        flash.expired.is_some(),
        axum::http::StatusCode::OK,
    )
}

/// The login form with a fresh CSRF pair (cookie + hidden field).
pub fn login_form(
    cookies: session::CookiePolicy,
    error: Option<&str>,
    expired: bool,
    status: axum::http::StatusCode,
) -> PageResult {
    let token: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut c = tera::Context::new();
    c.insert("csrf", &token);
    c.insert("login_error", &error);
    c.insert("expired", &expired);
    c.insert("version", env!("CARGO_PKG_VERSION"));
    let page = render("login.html", &c)?;
    Ok((
        status,
        [(header::SET_COOKIE, cookies.login_csrf(&token))],
        page,
    )
        .into_response())
}

#[derive(Serialize)]
struct AppRow {
    name: String,
    versions: u32,
    environments: Vec<EnvBadge>,
}

#[derive(Serialize)]
struct EnvBadge {
    name: String,
    health: String,
    status: String,
    version: String,
    tier: String,
}

fn badge(e: &api::Environment) -> EnvBadge {
    EnvBadge {
        name: e.name.clone(),
        health: e.health.clone(),
        status: e.status.to_string(),
        version: e.version.clone(),
        tier: e.tier.to_string(),
    }
}

pub async fn apps(
    State(state): State<AppState>,
    s: Session,
    Query(flash): Query<Flash>,
) -> PageResult {
    let apps = state.control.list_apps().await?;
    let envs = state.control.list_environments(None, s.caller.role).await?;
    let rows: Vec<AppRow> = apps
        .iter()
        .map(|a| AppRow {
            name: a.name.clone(),
            versions: a.versions,
            environments: envs.iter().filter(|e| e.app == a.name).map(badge).collect(),
        })
        .collect();
    let mut c = base_context(&s, &flash);
    c.insert("apps", &rows);
    render("apps.html", &c)
}

#[derive(Serialize)]
struct VersionRow {
    label: String,
    status: String,
    platform: String,
    processes: String,
    size: String,
    created: String,
    error: Option<String>,
}

pub async fn app(
    State(state): State<AppState>,
    s: Session,
    Path(app): Path<String>,
    Query(flash): Query<Flash>,
) -> PageResult {
    state.control.require_app(&app).await?;
    let versions = state.control.list_versions(&app).await?;
    let envs = state
        .control
        .list_environments(Some(&app), s.caller.role)
        .await?;
    let rows: Vec<VersionRow> = versions
        .iter()
        .map(|v| VersionRow {
            label: v.label.clone(),
            status: v.status.to_string(),
            platform: v.platform.clone(),
            processes: v.processes.join(", "),
            size: bytes(v.size_bytes),
            created: time(v.created_at),
            error: v.error.clone(),
        })
        .collect();
    let mut c = base_context(&s, &flash);
    c.insert("app", &app);
    c.insert("versions", &rows);
    c.insert("environments", &envs.iter().map(badge).collect::<Vec<_>>());
    let app_resources = state
        .control
        .list_resources(Some(&app), s.caller.role)
        .await?;
    c.insert("resources", &resources::app_rows(&app_resources));
    c.insert("tiers", &["web", "worker"]);
    c.insert("modes", &["dev", "prod"]);
    render("app.html", &c)
}

pub async fn version(
    State(state): State<AppState>,
    s: Session,
    Path((app, label)): Path<(String, String)>,
    Query(flash): Query<Flash>,
) -> PageResult {
    let v = state.control.get_version(&app, &label).await?;
    let mut c = base_context(&s, &flash);
    c.insert("app", &app);
    c.insert("label", &v.label);
    c.insert("status", &v.status.to_string());
    c.insert("platform", &v.platform);
    c.insert("image", &v.image);
    c.insert("sha256", &v.sha256);
    c.insert("size", &bytes(v.size_bytes));
    c.insert("error_line", &v.error);
    c.insert("build_log", &v.build_log.unwrap_or_default());
    render("version.html", &c)
}

pub async fn environment(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    Query(flash): Query<Flash>,
) -> PageResult {
    let mut c = base_context(&s, &flash);
    env_context(&state, &env, s.caller.role, &mut c).await?;
    // Only the full page has the forms' choices.
    let detail = state.control.get_environment(&env, s.caller.role).await?;
    let e = &detail.environment;
    let versions: Vec<String> = state
        .control
        .list_versions(&e.app)
        .await?
        .into_iter()
        .filter(|v| v.status == sprout_core::VersionStatus::Ready)
        .map(|v| v.label)
        .collect();
    let others: Vec<String> = state
        .control
        .list_environments(Some(&e.app), s.caller.role)
        .await?
        .into_iter()
        .filter(|o| o.name != e.name && o.tier == e.tier)
        .map(|o| o.name)
        .collect();
    let config = state.control.get_config(&env, s.caller.role).await?;
    c.insert("deployable", &versions);
    c.insert("swap_with", &others);
    c.insert(
        "policies",
        &Policy::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
    );
    c.insert("settings", &config.settings);
    render("env.html", &c)
}

/// The live part of the environment page, polled by the page every few seconds.
pub async fn environment_live(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
) -> PageResult {
    let mut c = base_context(&s, &Flash::default());
    env_context(&state, &env, s.caller.role, &mut c).await?;
    render("env_live.html", &c)
}

#[derive(Deserialize)]
pub struct LogsQuery {
    tail: Option<usize>,
}

/// The last lines of each instance's log, grouped by instance, as plain text.
pub async fn logs(
    State(state): State<AppState>,
    s: Session,
    Path(env): Path<String>,
    Query(q): Query<LogsQuery>,
) -> PageResult {
    let text = state
        .control
        .logs(&env, q.tail.unwrap_or(50).clamp(1, 1000))
        .await?;
    // Every running instance gets its section, even before it printed anything.
    let mut by_instance: Vec<(String, Vec<String>)> = state
        .control
        .get_environment(&env, s.caller.role)
        .await?
        .instances
        .into_iter()
        .filter(|i| i.state == "running")
        .map(|i| (i.id, Vec::new()))
        .collect();
    for line in text.lines() {
        let (id, rest) = line.split_once(" | ").unwrap_or(("", line));
        match by_instance.iter_mut().find(|(i, _)| i == id) {
            Some((_, lines)) => lines.push(rest.to_string()),
            None => by_instance.push((id.to_string(), vec![rest.to_string()])),
        }
    }
    let mut out = String::new();
    for (id, lines) in by_instance {
        out.push_str(&format!("── {id} ──\n"));
        if lines.is_empty() {
            out.push_str("(no output yet)\n");
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(no instance is running)\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response())
}

#[derive(Serialize)]
struct InstanceRow {
    id: String,
    zone: String,
    version: String,
    health: String,
    color: String,
    state: String,
    uptime: String,
    start_to_healthy: String,
    cpu: String,
    memory: String,
}

#[derive(Serialize)]
struct EventRow {
    time: String,
    severity: String,
    message: String,
}

#[derive(Serialize)]
struct Property {
    key: String,
    value: String,
    secret: bool,
}

#[derive(Serialize)]
struct Progress {
    kind: String,
    version: Option<String>,
    message: Option<String>,
    started: String,
    done: u32,
    of: u32,
}

#[derive(Serialize)]
struct DeploymentRow {
    id: i64,
    kind: String,
    version: String,
    policy: String,
    started: String,
    duration: String,
    outcome: String,
    by: String,
}

#[derive(Serialize)]
struct DeadRow {
    id: String,
    body: String,
    receives: i64,
}

/// Everything the environment page and its live part show.
async fn env_context(
    state: &AppState,
    env: &str,
    reader: Role,
    c: &mut tera::Context,
) -> Result<(), super::DashError> {
    let control = &state.control;
    let detail = control.get_environment(env, reader).await?;
    let e = &detail.environment;
    let usage = state.dashboard.history.usage(&e.name);
    let now = chrono::Utc::now();
    let instances: Vec<InstanceRow> = detail
        .instances
        .iter()
        .map(|i| {
            let u = usage.get(&i.id);
            InstanceRow {
                id: i.id.clone(),
                zone: i.zone.clone(),
                version: i.version.clone(),
                health: i.health.to_string(),
                color: i.health.color().to_string(),
                state: i.state.clone(),
                uptime: i
                    .started_at
                    .map(|t| duration((now - t).num_seconds()))
                    .unwrap_or_else(|| "—".into()),
                start_to_healthy: i
                    .start_to_healthy_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "—".into()),
                cpu: u
                    .map(|u| format!("{:.1} %", u.cpu_cores * 100.0))
                    .unwrap_or_else(|| "—".into()),
                memory: u
                    .map(|u| bytes(u.memory_bytes))
                    .unwrap_or_else(|| "—".into()),
            }
        })
        .collect();
    let events: Vec<EventRow> = control
        .events(&e.name, 0, 30)
        .await?
        .into_iter()
        .rev()
        .map(|ev| EventRow {
            time: time(ev.time),
            severity: ev.severity.to_string(),
            message: ev.message,
        })
        .collect();
    let properties: Vec<Property> = e
        .env
        .iter()
        .map(|(k, v)| Property {
            key: k.clone(),
            secret: properties::is_hidden(k, v),
            value: properties::shown(k, v).to_string(),
        })
        .collect();
    let progress = e
        .operation
        .as_ref()
        .filter(|o| o.outcome == api::OperationOutcome::Running)
        .map(|o| Progress {
            kind: o.kind.clone(),
            version: o.version.clone(),
            message: o.message.clone(),
            started: time(o.started_at),
            done: detail
                .instances
                .iter()
                .filter(|i| i.version == e.version && i.healthy)
                .count() as u32,
            of: e.desired,
        });
    let deployments: Vec<DeploymentRow> = control
        .deployments(&e.name)
        .await?
        .into_iter()
        .take(6)
        .map(|d| DeploymentRow {
            id: d.id,
            kind: d.kind,
            version: d.version.unwrap_or_default(),
            policy: d.policy.unwrap_or_default(),
            started: time(d.started_at),
            duration: d
                .duration_secs
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "running".into()),
            outcome: format!("{:?}", d.outcome).to_lowercase(),
            by: d.started_by.unwrap_or_default(),
        })
        .collect();

    // Worker side: this environment's queue, or the worker the web side feeds.
    let is_worker = e.tier == Tier::Worker;
    let siblings = control.list_environments(Some(&e.app), reader).await?;
    let worker = siblings
        .iter()
        .find(|o| o.tier == Tier::Worker && o.name != e.name && o.status.is_live());
    let queue = if is_worker {
        control.queue_stats(&e.name).await.ok()
    } else if let Some(w) = worker {
        control.queue_stats(&w.name).await.ok()
    } else {
        None
    };
    if is_worker {
        let dead: Vec<DeadRow> = control
            .queue_dead(&e.name)
            .await
            .unwrap_or_default()
            .into_iter()
            .take(10)
            .map(|d| DeadRow {
                id: d.message_id,
                body: d.body.chars().take(200).collect(),
                receives: d.receive_count,
            })
            .collect();
        c.insert("dead", &dead);
        c.insert("queue", &queue);
        c.insert(
            "cron",
            &control.cron_tasks(&e.name).await.unwrap_or_default(),
        );
    }

    let mut zones: Vec<(String, Vec<InstanceNode>)> = control
        .config()
        .zones
        .iter()
        .map(|z| (z.clone(), Vec::new()))
        .collect();
    for i in &detail.instances {
        let node = InstanceNode {
            id: i.id.clone(),
            version: i.version.clone(),
            color: i.health.color().to_string(),
        };
        match zones.iter_mut().find(|(z, _)| *z == i.zone) {
            Some((_, list)) => list.push(node),
            None => zones.push((i.zone.clone(), vec![node])),
        }
    }
    let worker_count = match worker {
        Some(w) => control
            .get_environment(&w.name, reader)
            .await
            .map(|d| d.instances.len())
            .unwrap_or(0),
        None => 0,
    };
    let picture = svg::architecture(&Architecture {
        environment: e.name.clone(),
        host: (!is_worker).then(|| {
            e.url
                .as_deref()
                .map(host_of)
                .unwrap_or_else(|| e.cname.clone())
        }),
        zones,
        queue: queue.as_ref().map(|q| (q.queue.clone(), q.visible)),
        worker: worker.map(|w| (w.name.clone(), w.health.clone(), worker_count)),
        resources: resources::picture_nodes(&detail.resources),
    });

    let samples = state.dashboard.history.samples(&e.name);
    let charts = charts(&samples, is_worker);

    c.insert("env", e);
    c.insert("status", &e.status.to_string());
    c.insert("health_status", &e.health_status.to_string());
    c.insert("is_worker", &is_worker);
    c.insert("instances", &instances);
    c.insert("resources", &resources::attached_rows(&detail.resources));
    c.insert("events", &events);
    c.insert("properties", &properties);
    c.insert("progress", &progress);
    c.insert("deployments", &deployments);
    c.insert("architecture", &picture);
    c.insert("charts", &charts);
    c.insert("updated", &now.format("%H:%M:%S UTC").to_string());
    Ok(())
}

fn charts(samples: &[Sample], is_worker: bool) -> Vec<String> {
    let now = Instant::now();
    let series = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .map(|s| (now.duration_since(s.at).as_secs_f64(), f(s)))
            .collect()
    };
    let mut out = Vec::new();
    if !is_worker {
        out.push(svg::line_chart(
            "Requests per second",
            "",
            &[Series {
                name: "req/s",
                color: "#2e7d32",
                points: series(|s| s.requests_per_sec),
            }],
        ));
        out.push(svg::line_chart(
            "Latency",
            " ms",
            &[
                Series {
                    name: "p50",
                    color: "#1565c0",
                    points: series(|s| s.p50_ms),
                },
                Series {
                    name: "p99",
                    color: "#ef6c00",
                    points: series(|s| s.p99_ms),
                },
            ],
        ));
        out.push(svg::line_chart(
            "5xx responses",
            " %",
            &[Series {
                name: "5xx %",
                color: "#c62828",
                points: series(|s| s.error_pct),
            }],
        ));
    }
    out.push(svg::line_chart(
        "Instances",
        "",
        &[Series {
            name: "running",
            color: "#6a1b9a",
            points: series(|s| s.instances as f64),
        }],
    ));
    out
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(7300), "2h 1m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert!(
            properties::is_secret("DB_PASSWORD")
                && properties::is_secret("api_key")
                && !properties::is_secret("MODE")
        );
    }
}
