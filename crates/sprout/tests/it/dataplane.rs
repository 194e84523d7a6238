//! The data plane outlives the control plane (issue 14): restarting or upgrading `sprout
//! server` under steady load fails no request, and deployment records survive a crash.

use crate::harness::*;
use sprout_core::api::{CreateEnvironment, DeployRequest, OperationOutcome};
use sprout_core::{Mode, Policy};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

async fn serving_env(server: &TestServer, instances: u32) -> (String, String) {
    let app = unique("dp");
    let env = unique("env");
    server.client.create_app(&app).await.expect("app");
    push(server, &testapp_dir(), &app, "v1");
    server
        .client
        .create_environment(&CreateEnvironment {
            name: env.clone(),
            app: app.clone(),
            version: "v1".to_string(),
            mode: Some(Mode::Prod),
            instances: Some(instances),
            instance_type: Some(sprout_core::InstanceType::Nano),
            settings: BTreeMap::from([("health_check_interval".to_string(), "300ms".to_string())]),
            ..Default::default()
        })
        .await
        .expect("create");
    let d = wait_ready(server, &env, Duration::from_secs(90)).await;
    assert_eq!(
        d.environment.operation.map(|o| o.outcome),
        Some(OperationOutcome::Succeeded)
    );
    (app, env)
}

/// Instances of the environment running in Docker.
fn running_instances(server: &TestServer, env: &str) -> usize {
    docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=sprout.server={}", server.server_id),
        "--filter",
        &format!("label=sprout.env={env}"),
    ])
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_and_upgrade_under_load_fail_no_request() {
    let mut server = TestServer::start_with(&[("SPROUT_HANDOVER_WAIT", "20")]).await;
    let (_app, env) = serving_env(&server, 4).await;
    let host = server.host(&env);
    let balancer = server.balancer.clone();
    let api = server.api.clone();

    // SIGTERM, then a new server at once: it takes the sockets over from the stopping one.
    let load = Load::start(&balancer, &host, "/", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .take_over(Path::new(env!("CARGO_BIN_EXE_sprout")), true)
        .await;
    assert_eq!(server.balancer, balancer, "the balancer kept its address");
    assert_eq!(server.api, api, "the API kept its address");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    assert!(report.ok > 50, "the load ran ({} ok)", report.ok);
    println!("restart: {} ok, {} failed", report.ok, report.failed);
    assert_eq!(report.failed, 0, "restart: {:?}", report.failures);

    // An upgrade: another binary started while the server runs, no signal at all.
    let dir = tempfile::tempdir().expect("temp dir");
    let upgraded = dir.path().join("sprout-next");
    std::fs::copy(env!("CARGO_BIN_EXE_sprout"), &upgraded).expect("copy the binary");
    let load = Load::start(&balancer, &host, "/", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.take_over(&upgraded, false).await;
    assert_eq!(server.balancer, balancer, "the balancer kept its address");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    assert!(report.ok > 50, "the load ran ({} ok)", report.ok);
    println!("upgrade: {} ok, {} failed", report.ok, report.failed);
    assert_eq!(report.failed, 0, "upgrade: {:?}", report.failures);

    // The new server adopted the instances: no duplicate, no orphan, environment healthy.
    let d = wait_ready(&server, &env, Duration::from_secs(30)).await;
    assert_eq!(d.instances.len(), 4, "{:?}", d.instances);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running_instances(&server, &env), 4, "no duplicate instance");
    let r = server.get_via_balancer(&host, "/").await.expect("answer");
    assert!(r.status().is_success(), "{}", r.status());
    // Hand-overs lose no count: no record is marked approximate.
    let deployments = server.client.deployments(&env).await.expect("deployments");
    assert!(
        deployments.iter().all(|d| !d.approximate),
        "{deployments:?}"
    );
}

/// A crash (`kill -9`) of the control plane in the middle of a rolling deploy, then a start:
/// the deploy finishes and its record counts what the balancer served, never negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_deploy_leaves_a_true_record() {
    let mut server = TestServer::start().await;
    let (app, env) = serving_env(&server, 4).await;
    push(&server, &testapp_dir(), &app, "v2");
    let host = server.host(&env);

    server
        .client
        .deploy_with(
            &env,
            &DeployRequest {
                version: "v2".to_string(),
                policy: Some(Policy::Rolling),
                batch: Some("1".into()),
                ..Default::default()
            },
        )
        .await
        .expect("deploy accepted");
    // The load runs only while the deploy does, so it sees what its record should count.
    let load = Load::start(&server.balancer, &host, "/", 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.kill9();
    // A fresh start on the same data directory (the balancer's port may change).
    server.restart().await;
    let load_before = load.stop().await;
    let load = Load::start(&server.balancer, &host, "/", 4);
    let d = wait_ready(&server, &env, Duration::from_secs(120)).await;
    let load_after = load.stop().await;
    assert_eq!(d.environment.version, "v2");
    assert_eq!(d.instances.len(), 4, "{:?}", d.instances);
    assert_eq!(
        running_instances(&server, &env),
        4,
        "no duplicate, no orphan"
    );
    assert_eq!(
        load_after.failed, 0,
        "after the restart: {:?}",
        load_after.failures
    );

    let deployments = server.client.deployments(&env).await.expect("deployments");
    let record = deployments.first().expect("the deploy's record");
    assert!(
        record.approximate,
        "the crash lost a moment of counts: the record says it is approximate"
    );
    let launch = deployments.last().expect("the launch's record");
    assert!(
        !launch.approximate,
        "the launch finished before the crash: its counts are exact"
    );
    let (requests, failed) = (
        record.requests.expect("requests"),
        record.failed.expect("failed"),
    );
    assert!(
        requests >= 0 && failed >= 0,
        "{requests} requests, {failed} failed"
    );
    // Answered by a balancer while the deploy ran (the load's connection errors while no
    // server ran never reached one); a crash loses at most 250 ms of counts.
    let answered = load_before.ok + load_after.ok;
    println!(
        "crash mid-deploy: record {requests} requests, {failed} failed; load saw {answered} answered, {} connection errors",
        load_before.failed
    );
    let diff = (requests - i64::try_from(answered).unwrap_or(0)).abs();
    assert!(
        diff * 100 <= i64::try_from(answered).unwrap_or(0) * 10,
        "record {requests} vs load {answered}"
    );
}

/// The Docker engine restarts (a `systemctl restart docker` without live restore: the
/// instances die with it). The control plane keeps running while the engine is away and
/// brings the environment back to its desired state once it answers, with no command; the
/// balancer routes to the new instances. Done on a second engine started by the test (the
/// only zone), never the machine's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_docker_engine_restart_brings_environments_back() {
    let mut engine = SecondEngine::start().await;
    let zones = format!("b={}", engine.endpoint);
    let mut server = TestServer::start_with(&[("SPROUT_ZONES", &zones)]).await;
    let (_app, env) = serving_env(&server, 2).await;
    let host = server.host(&env);
    let label = format!("sprout.env={env}");
    let before = engine.containers(&label);
    assert_eq!(before.len(), 2, "both instances on the second engine");

    engine.stop();
    // The engine is away: the server neither crashes nor fails an operation over it, and
    // its API answers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        server.is_running(),
        "the server survives the engine going away"
    );
    let d = server
        .client
        .get_environment(&env)
        .await
        .expect("the API answers");
    assert_eq!(
        d.environment.operation.map(|o| o.outcome),
        Some(OperationOutcome::Succeeded),
        "no operation failed while the engine was away"
    );

    let started = std::time::Instant::now();
    engine.start_again().await;
    let back = eventually(Duration::from_secs(120), || async {
        let running = engine.containers(&label);
        let d = server.client.get_environment(&env).await.ok()?;
        let healthy = d
            .instances
            .iter()
            .filter(|i| i.healthy && i.state == "running")
            .count();
        let answer = server.get_via_balancer(&host, "/").await.ok()?;
        (running.len() == 2 && healthy == 2 && answer.status().is_success()).then_some(running)
    })
    .await;
    let running = back.expect("two healthy instances serving through the balancer again");
    println!(
        "docker engine restart: serving again {:.1} s after the engine answered",
        started.elapsed().as_secs_f64()
    );
    assert!(
        running.iter().all(|c| !before.contains(c)),
        "the instances that died with the engine were replaced: {before:?} → {running:?}"
    );
    assert!(
        server.is_running(),
        "the server survived the engine restart"
    );
    // Nothing left behind: the dead containers are gone, no duplicate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = docker_lines(&[
        "-H",
        &engine.endpoint,
        "ps",
        "-aq",
        "--filter",
        &format!("label={label}"),
    ]);
    assert_eq!(all.len(), 2, "no dead or duplicate container left: {all:?}");
    let d = server.client.get_environment(&env).await.expect("env");
    assert_eq!(d.instances.len(), 2, "{:?}", d.instances);
    assert_eq!(
        d.environment.operation.map(|o| o.outcome),
        Some(OperationOutcome::Succeeded),
        "no operation failed for the restart"
    );
    let events = server.client.events(&env, Some(100)).await.expect("events");
    let messages: Vec<&String> = events.iter().map(|e| &e.message).collect();
    println!("events: {messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("the Docker engine of zone b does not answer")),
        "an event says the engine went away: {messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.as_str() == "the Docker engine of zone b answers again"),
        "an event says it came back: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("replacing it")),
        "an event says the dead instances were replaced: {messages:?}"
    );
}
