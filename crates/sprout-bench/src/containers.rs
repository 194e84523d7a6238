//! Part 3: the proxy comparison through real containers — Sprout's control plane routing to
//! its own two instances vs nginx and HAProxy routed to the same container addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sprout_core::api::CreateEnvironment;
use sprout_core::{InstanceType, Mode};

use crate::control::{self, Server};
use crate::proxy::{self, Kind, Target};
use crate::report::Section;
use crate::tools;
use crate::Opts;

pub async fn run(opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("ctr");
    let env = control::name("ctr-web");
    let result = measure(opts, &server, &app, &env).await;
    server.cleanup(&app, std::slice::from_ref(&env)).await;
    result
}

async fn measure(opts: &Opts, server: &Server, app: &str, env: &str) -> Result<Section> {
    let bundle = control::upstream_bundle()?;
    server.push(app, bundle.path(), "v1").await?;
    server
        .create(CreateEnvironment {
            name: env.into(),
            app: app.into(),
            version: "v1".into(),
            mode: Some(Mode::Prod),
            instances: Some(2),
            // No CPU quota below the machine's size: the proxies are measured, not the limit.
            instance_type: Some(InstanceType::Medium),
            ..Default::default()
        })
        .await?;
    let detail = server.wait_ready(env, Duration::from_secs(180)).await?;
    let upstreams: Vec<SocketAddr> = detail
        .instances
        .iter()
        .filter_map(|i| i.address.as_ref())
        .filter_map(|a| format!("{a}:8080").parse().ok())
        .collect();
    anyhow::ensure!(
        upstreams.len() == 2,
        "expected two instance addresses, got {upstreams:?}"
    );
    // The control plane's balancer runs one runtime per core: give the others as many.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::Builder::new().prefix("sprout-bench-").tempdir()?;
    let host = server.host(env);
    let mut targets = vec![
        Target {
            name: "instance direct (one of two)".into(),
            url: format!("http://{}/", upstreams[0]),
            pid: None,
            kind: Kind::Direct,
        },
        Target {
            name: "Sprout (control plane's balancer)".into(),
            url: format!("{}/", server.balancer),
            // The whole control plane: its balancer threads do nearly all the work here.
            pid: server.pid(),
            kind: Kind::Sprout,
        },
    ];
    let (mut procs, others) = proxy::nginx_and_haproxy(dir.path(), threads, &upstreams)?;
    targets.extend(others);
    for t in &targets {
        tools::wait_http(&t.url, Some(&host), Duration::from_secs(20))
            .await
            .with_context(|| format!("{} did not come up", t.name))?;
    }
    for p in &mut procs {
        p.check_running()?;
    }
    let results = proxy::compare(opts, &targets, &host).await?;
    drop(procs);
    let mut section = Section {
        title: "Through real containers".into(),
        intro: format!(
            "A prod environment of two instances (type medium: 2 CPUs, so no CPU quota below this \
             machine's) running this crate's `upstream` in the python platform image. Sprout's \
             own balancer routes to them by Host; nginx and HAProxy are pointed at the same \
             two container addresses, {threads} worker thread(s) each like Sprout's balancer \
             (one runtime per core), configured to do the same job (forwarded headers and a \
             request id, as in the loopback comparison). wrk `-t1 -c{c} -d{d}s`, {w} s warm-up, {r} rounds in \
             turns, medians.",
            c = opts.connections,
            d = opts.duration,
            w = opts.warmup,
            r = opts.rounds
        ),
        ..Default::default()
    };
    section
        .tables
        .push(proxy::table(&targets, &results, threads));
    section.notes.push(
        "Container traffic crosses the Docker bridge (a veth pair per instance), \
         so direct figures sit below the loopback ones."
            .into(),
    );
    Ok(section)
}
