//! Issue 5's figure: messages per second end to end through a worker environment with a
//! no-op handler, next to what the store alone does with the dispatcher's pattern.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt};
use sprout_core::api::CreateEnvironment;
use sprout_core::queue::SendRequest;
use sprout_core::{Mode, Tier};
use sprout_store::{NewMessage, QueueSettings, Store};

use crate::control::{self, Server};
use crate::report::{secs, thousands, Section, Table};
use crate::Opts;

pub async fn run(opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let n = opts.messages.max(10);
    let store_only = store_only(n).await?;
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("wrk");
    let env = control::name("worker");
    let result = measure(&server, &app, &env, n, store_only).await;
    server.cleanup(&app, std::slice::from_ref(&env)).await;
    result
}

/// A worker bundle whose handler is this binary's `upstream`: 200 to every POST, at once.
fn worker_bundle() -> Result<tempfile::TempDir> {
    let dir = control::upstream_bundle()?;
    std::fs::write(
        dir.path().join("Procfile"),
        "worker: /app/sprout-bench upstream\n",
    )?;
    Ok(dir)
}

async fn measure(
    server: &Server,
    app: &str,
    env: &str,
    n: usize,
    store_only: f64,
) -> Result<Section> {
    let bundle = worker_bundle()?;
    server.push(app, bundle.path(), "v1").await?;
    server
        .create(CreateEnvironment {
            name: env.into(),
            app: app.into(),
            version: "v1".into(),
            tier: Some(Tier::Worker),
            mode: Some(Mode::Prod),
            instances: Some(2),
            ..Default::default()
        })
        .await?;
    server.wait_ready(env, Duration::from_secs(180)).await?;
    control::until(Duration::from_secs(60), || async {
        (server.healthy(env).await.len() == 2).then_some(())
    })
    .await
    .context("the worker instances did not become healthy")?;

    let t0 = Instant::now();
    let failed_sends = stream::iter(0..n)
        .map(|i| async move {
            let req = SendRequest {
                body: format!("{{\"job\": {i}}}"),
                ..Default::default()
            };
            server.client.queue_send(env, &req).await.is_err()
        })
        .buffer_unordered(50)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let sent = t0.elapsed();
    let drained = control::until(Duration::from_secs(300), || async {
        let s = server.client.queue_stats(env).await.ok()?;
        (s.visible + s.in_flight + s.delayed == 0).then(|| (t0.elapsed(), s.dead))
    })
    .await;
    let mut table = Table::new(&["figure", "value"]);
    table.row(vec![
        format!("send {n} messages via the API (50 concurrent)"),
        format!(
            "{} ({} msg/s, {failed_sends} failed)",
            secs(sent),
            thousands(n as f64 / sent.as_secs_f64())
        ),
    ]);
    match drained {
        Some((took, dead)) => {
            table.row(vec![
                "first send → queue drained (end to end)".into(),
                format!(
                    "{} ({} msg/s, {dead} dead)",
                    secs(took),
                    thousands(n as f64 / took.as_secs_f64())
                ),
            ]);
            table.row(vec![
                "  of which after the last send".into(),
                secs(took.saturating_sub(sent)),
            ]);
        }
        None => table.row(vec![
            "first send → queue drained".into(),
            "not within 300 s".into(),
        ]),
    }
    table.row(vec![
        "store alone: claim 10 + delete each (the dispatcher's pattern)".into(),
        format!("{} msg/s", thousands(store_only)),
    ]);
    Ok(Section {
        title: "Worker throughput".into(),
        intro: "A worker environment (`--tier worker`, prod, 2 instances) whose handler is \
                this crate's `upstream`: 200 to every POST at once, so the figure is Sprout's \
                queue and dispatcher, not the app. Messages go in through the REST API \
                (`POST /environments/{env}/queue/messages`) while the dispatcher already \
                delivers them. The store-only figure is the same SQLite queue driven directly \
                (as `cargo bench -p sprout-store --bench queue` does) in the same run."
            .into(),
        tables: vec![table],
        notes: vec![
            "Target: the dispatcher is not the bottleneck — end to end should approach the \
             rate at which the API accepts messages."
                .into(),
        ],
    })
}

/// Messages/s the store sustains for claim(10) + delete by receipt, after `n` sends.
async fn store_only(n: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("bench.db")).await?;
    let app = store.create_app("bench").await?;
    let q = store
        .create_queue(app.id, "bench", QueueSettings::default(), 0)
        .await?;
    for chunk in 0..n.div_ceil(10) {
        let batch: Vec<NewMessage> = (0..10)
            .map(|i| NewMessage {
                message_id: format!("m-{chunk}-{i}"),
                body: format!("{{\"job\": {i}}}"),
                md5: String::new(),
                attributes: "{}".into(),
                delay_ms: 0,
            })
            .collect();
        store.send_messages(&q, &batch, 0).await?;
    }
    let t0 = Instant::now();
    let mut done = 0usize;
    loop {
        let got = store.claim(&q, 10, 30_000, Some("bench"), 0).await?;
        if got.is_empty() {
            break;
        }
        for m in got {
            if let Some(r) = m.receipt {
                store.delete_by_receipt(q.id, &r).await?;
                done += 1;
            }
        }
    }
    Ok(done as f64 / t0.elapsed().as_secs_f64())
}
