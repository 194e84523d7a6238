//! Part 5: the control plane's footprint — resident memory idle and with 20 environments /
//! 60 instances, and the API's latency under 50 concurrent clients.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use sprout_core::api::CreateEnvironment;
use sprout_core::{InstanceType, Mode};

use crate::control::{self, Server};
use crate::report::{thousands, Section, Table};
use crate::tools::Wrk;
use crate::Opts;

const ENVS: usize = 20;
const PER_ENV: u32 = 3;

pub async fn run(opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("fp");
    let envs: Vec<String> = (0..ENVS)
        .map(|i| format!("{}-{i:02}", control::name("fp")))
        .collect();
    let result = measure(opts, &server, &app, &envs).await;
    server.cleanup(&app, &envs).await;
    result
}

async fn api_latency(opts: &Opts, server: &Server) -> Result<String> {
    let url = format!("{}/api/v1/environments", server.api);
    let r = Wrk {
        url: &url,
        host: None,
        headers: vec![format!("Authorization: Bearer {}", server.token)],
        threads: 1,
        connections: 50,
        duration: opts.duration(),
    }
    .run()
    .await?;
    Ok(format!(
        "p99 {:.2} ms, p50 {:.2} ms, {} req/s, {} non-2xx/errors",
        r.p99_ms,
        r.p50_ms,
        thousands(r.rps),
        r.non_2xx + r.errors
    ))
}

async fn measure(opts: &Opts, server: &Server, app: &str, envs: &[String]) -> Result<Section> {
    let mut table = Table::new(&["figure", "value", "target"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    table.row(vec![
        "control plane RSS, idle (no environment)".into(),
        format!("{:.1} MiB", server.rss_mib()?),
        "< 40 MiB".into(),
    ]);
    table.row(vec![
        "GET /api/v1/environments, 50 clients, no environment".into(),
        api_latency(opts, server).await?,
        "—".into(),
    ]);

    let bundle = control::upstream_bundle()?;
    server.push(app, bundle.path(), "v1").await?;
    stream::iter(envs)
        .map(|env| async move {
            server
                .create(CreateEnvironment {
                    name: env.clone(),
                    app: app.into(),
                    version: "v1".into(),
                    mode: Some(Mode::Prod),
                    instances: Some(PER_ENV),
                    instance_type: Some(InstanceType::Nano),
                    ..Default::default()
                })
                .await?;
            server.wait_ready(env, Duration::from_secs(600)).await
        })
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await?;
    let mut instances = 0;
    for env in envs {
        instances += server.healthy(env).await.len();
    }
    // Let the launch traffic settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    table.row(vec![
        format!("control plane RSS, {ENVS} environments / {instances} healthy instances"),
        format!(
            "{:.1} MiB",
            server.rss_mib().context("read the server's RSS")?
        ),
        "—".into(),
    ]);
    table.row(vec![
        format!("GET /api/v1/environments, 50 clients, {ENVS} environments"),
        api_latency(opts, server).await?,
        "—".into(),
    ]);
    Ok(Section {
        title: "Control-plane footprint".into(),
        intro: format!(
            "`sprout server` (release build) on a fresh data directory: resident memory \
             (VmRSS) after 5 s idle, then with {ENVS} prod environments of {PER_ENV} nano \
             instances each (this crate's `upstream` app), launched 4 at a time. API latency: \
             wrk `-t1 -c50 -d{d}s` on `GET /api/v1/environments` with an admin token.",
            d = opts.duration
        ),
        tables: vec![table],
        notes: Vec::new(),
    })
}
