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
