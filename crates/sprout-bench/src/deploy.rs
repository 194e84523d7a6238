//! Parts 4 and 6 of the issue: deploy and scale figures from the real control plane on
//! Docker — create → Green, a rolling deploy under load, and healing (killed instance,
//! scaling trigger, zone failure).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sprout_core::api::{CreateEnvironment, DeployRequest, ScaleRequest};
use sprout_core::{Bootstrap, InstanceType, Mode, Policy};

use crate::control::{self, Load, LoadReport, Server};
use crate::report::{secs, Section, Table};
use crate::Opts;

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_cell(r: &LoadReport) -> String {
    format!("{} served, {} failed", r.ok, r.failed)
}

/// Settings of the prod environments below, printed with the figures.
const PROD: [(&str, &str); 2] = [
    ("health_check_interval", "250ms"),
    ("deregistration_delay", "1s"),
];

pub async fn run_deploy(_opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("dep");
    let envs = [
        control::name("golden"),
        control::name("userdata"),
        control::name("roll"),
    ];
    let result = deploy_figures(&server, &app, &envs).await;
    server.cleanup(&app, &envs).await;
    result
}

async fn deploy_figures(server: &Server, app: &str, envs: &[String; 3]) -> Result<Section> {
    let bundle = control::upstream_bundle()?;
    let mib = std::fs::metadata(bundle.path().join("sprout-bench"))?.len() as f64 / 1048576.0;
    let mut table = Table::new(&["figure", "value", "target"]);
    for label in ["v1", "v2"] {
        let t0 = Instant::now();
        server.push(app, bundle.path(), label).await?;
        if label == "v1" {
            table.row(vec![
                format!("push + golden image bake ({mib:.0} MiB bundle)"),
                secs(t0.elapsed()),
                "—".into(),
            ]);
        }
    }

    // create → Green, one dev instance, each bootstrap.
    for (env, bootstrap) in [
        (&envs[0], Bootstrap::Golden),
        (&envs[1], Bootstrap::UserData),
    ] {
        let t0 = Instant::now();
        server
            .create(CreateEnvironment {
                name: env.clone(),
                app: app.into(),
                version: "v1".into(),
                mode: Some(Mode::Dev),
                bootstrap: Some(bootstrap),
                ..Default::default()
            })
            .await?;
        let green = control::until(Duration::from_secs(120), || async {
            let d = server.client.get_environment(env).await.ok()?;
            (d.environment.health == "Green").then_some(())
        })
        .await;
        let took = t0.elapsed();
        if green.is_none() {
            bail!("{env} ({bootstrap}) was not Green within 120 s");
        }
        let target = if bootstrap == Bootstrap::Golden {
            "< 3 s"
        } else {
            "—"
        };
        table.row(vec![
            format!("env create → Green, {bootstrap} (dev, 1 instance)"),
            secs(took),
            target.into(),
        ]);
        let _ = server.client.terminate(env).await;
    }

    // A 4-instance rolling deploy under steady load.
    let env = &envs[2];
    server
        .create(CreateEnvironment {
            name: env.clone(),
            app: app.into(),
            version: "v1".into(),
            mode: Some(Mode::Prod),
            instances: Some(4),
            instance_type: Some(InstanceType::Nano),
            settings: settings(&PROD),
            ..Default::default()
        })
        .await?;
    server.wait_ready(env, Duration::from_secs(180)).await?;
    let load = Load::paced(
        &server.balancer,
        &server.host(env),
        "/",
        4,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    server
        .client
        .deploy_with(
            env,
            &DeployRequest {
                version: "v2".into(),
                policy: Some(Policy::Rolling),
                batch: Some("1".into()),
                ..Default::default()
            },
        )
        .await?;
    let detail = server.wait_ready(env, Duration::from_secs(180)).await?;
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    let outcome = detail
        .environment
        .operation
        .map(|o| format!("{:?}", o.outcome))
        .unwrap_or_default();
    let record = server
        .client
        .deployments(env)
        .await?
        .into_iter()
        .find(|d| d.kind == sprout_core::OpKind::Deploy.as_str());
    table.row(vec![
        "rolling deploy, 4 instances, batch 1 (POST → done)".into(),
        format!("{} ({outcome})", secs(took)),
        "< 10 s".into(),
    ]);
    table.row(vec![
        "  requests during it, seen by 4 clients".into(),
        load_cell(&report),
        "0 failed".into(),
    ]);
    if let Some(d) = record {
        table.row(vec![
            "  requests during it, balancer's record".into(),
            format!(
                "{} served, {} failed",
                d.requests.unwrap_or(0),
                d.failed.unwrap_or(0)
            ),
            "0 failed".into(),
        ]);
    }
    if !report.failures.is_empty() {
        eprintln!("  deploy failures: {:?}", report.failures);
    }

    Ok(Section {
        title: "Deploys".into(),
        intro: "The real control plane (`sprout server`, release build) on Docker, driven \
                through `sprout-cli`'s client. The app is this crate's `upstream` binary on \
                the python platform. The prod environment uses `health_check_interval=250ms`, \
                `deregistration_delay=1s` (instead of 1 s and 20 s) so the figure shows the \
                control plane rather than the waits; steady load: 4 clients, one request \
                every 5 ms each."
            .into(),
        tables: vec![table],
        notes: Vec::new(),
    })
}

pub async fn run_heal(_opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("heal");
    let envs = [
        control::name("kill"),
        control::name("scale"),
        control::name("zone"),
    ];
    let result = heal_figures(&server, &app, &envs).await;
    // Leave zone b available for whoever looks at this server next (it is going away anyway).
    let _ = server.client.zone_action("b", "restore").await;
    server.cleanup(&app, &envs).await;
    result
}

async fn prod_env(
    server: &Server,
    app: &str,
    env: &str,
    n: u32,
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut s = settings(&PROD);
    s.extend(settings(extra));
    server
        .create(CreateEnvironment {
            name: env.into(),
            app: app.into(),
            version: "v1".into(),
            mode: Some(Mode::Prod),
            instances: Some(n),
            instance_type: Some(InstanceType::Nano),
            settings: s,
            ..Default::default()
        })
        .await?;
    server.wait_ready(env, Duration::from_secs(180)).await?;
    Ok(())
}

async fn heal_figures(server: &Server, app: &str, envs: &[String; 3]) -> Result<Section> {
    let bundle = control::upstream_bundle()?;
    server.push(app, bundle.path(), "v1").await?;
    let mut table = Table::new(&["figure", "value", "target"]);

    // Kill an instance → its replacement serves.
    let env = &envs[0];
    prod_env(server, app, env, 2, &[]).await?;
    let before: HashSet<String> = server
        .healthy(env)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect();
    let before = &before;
    let victim = server
        .client
        .get_environment(env)
        .await?
        .instances
        .into_iter()
        .find_map(|i| i.container)
        .context("no container to kill")?;
    let load = Load::paced(
        &server.balancer,
        &server.host(env),
        "/",
        4,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let killed = std::process::Command::new("docker")
        .args(["kill", &victim])
        .output()?;
    anyhow::ensure!(killed.status.success(), "docker kill {victim} failed");
    let replaced = control::until(Duration::from_secs(60), || async {
        let healthy = server.healthy(env).await;
        (healthy.len() == 2 && healthy.iter().any(|i| !before.contains(&i.id))).then_some(())
    })
    .await;
    let took = t0.elapsed();
    let report = load.stop().await;
    table.row(vec![
        "kill an instance → replacement serving (2 instances)".into(),
        if replaced.is_some() {
            secs(took)
        } else {
            "not within 60 s".into()
        },
        "< 3 s".into(),
    ]);
    table.row(vec![
        "  requests meanwhile (4 clients)".into(),
        load_cell(&report),
        "0 failed".into(),
    ]);
    let _ = server.client.terminate(env).await;

    // Trigger breach → a new instance serves.
    let env = &envs[1];
    let trigger = [
        ("scaling_metric", "requests"),
        ("scaling_period", "1s"),
        ("breach_duration", "2s"),
        ("upper_threshold", "20"),
        ("lower_threshold", "1"),
        ("cooldown", "60s"),
    ];
    prod_env(server, app, env, 1, &trigger).await?;
    server
        .client
        .scale(
            env,
            &ScaleRequest {
                instances: None,
                min: Some(1),
                max: Some(2),
            },
        )
        .await?;
    server.wait_ready(env, Duration::from_secs(60)).await?;
    let t0 = Instant::now();
    let load = Load::paced(
        &server.balancer,
        &server.host(env),
        "/",
        4,
        Duration::from_millis(5),
    );
    let decided = control::until(Duration::from_secs(60), || async {
        let d = server.client.get_environment(env).await.ok()?;
        (d.environment.desired >= 2).then(|| t0.elapsed())
    })
    .await;
    let serving = control::until(Duration::from_secs(60), || async {
        (server.healthy(env).await.len() >= 2).then(|| t0.elapsed())
    })
    .await;
    let report = load.stop().await;
    let show = |d: Option<Duration>| d.map_or_else(|| "not within 60 s".into(), secs);
    table.row(vec![
        "load starts → scale-out decided (requests/s > 20 for 2 s)".into(),
        show(decided),
        "—".into(),
    ]);
    table.row(vec![
        "load starts → new instance serving".into(),
        show(serving),
        "breach + < 3 s".into(),
    ]);
    if let (Some(d), Some(s)) = (decided, serving) {
        table.row(vec![
            "  decision → new instance serving".into(),
            secs(s.saturating_sub(d)),
            "< 3 s".into(),
        ]);
    }
    table.row(vec![
        "  requests meanwhile (4 clients)".into(),
        load_cell(&report),
        "0 failed".into(),
    ]);
    let _ = server.client.terminate(env).await;

    // Zone b fails → full capacity in zone a.
    let env = &envs[2];
    prod_env(server, app, env, 4, &[]).await?;
    let load = Load::paced(
        &server.balancer,
        &server.host(env),
        "/",
        4,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    server.client.zone_action("b", "fail").await?;
    let full = control::until(Duration::from_secs(90), || async {
        let healthy = server.healthy(env).await;
        (healthy.len() == 4 && healthy.iter().all(|i| i.zone == "a")).then(|| t0.elapsed())
    })
    .await;
    let t1 = Instant::now();
    server.client.zone_action("b", "restore").await?;
    let spread = control::until(Duration::from_secs(90), || async {
        let healthy = server.healthy(env).await;
        let in_b = healthy.iter().filter(|i| i.zone == "b").count();
        (healthy.len() == 4 && in_b == 2).then(|| t1.elapsed())
    })
    .await;
    let report = load.stop().await;
    table.row(vec![
        "zone b fails → 4 healthy instances in zone a".into(),
        full.map_or_else(|| "not within 90 s".into(), secs),
        "—".into(),
    ]);
    table.row(vec![
        "zone b restored → spread 2/2 again".into(),
        spread.map_or_else(|| "not within 90 s".into(), secs),
        "—".into(),
    ]);
    table.row(vec![
        "  requests meanwhile (4 clients)".into(),
        load_cell(&report),
        "0 failed".into(),
    ]);

    Ok(Section {
        title: "Healing and scaling".into(),
        intro: "Same control plane and app as above; prod environments of nano instances with \
                `health_check_interval=250ms`, `deregistration_delay=1s`. Zones are the default \
                `a,b` on one engine. Times run from the event (docker kill, the first request \
                of the load, `sprout zone fail b`) until the API shows the instances healthy \
                (= in the balancer's rotation)."
            .into(),
        tables: vec![table],
        notes: Vec::new(),
    })
}
