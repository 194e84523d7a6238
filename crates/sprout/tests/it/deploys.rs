//! Zero-downtime deployments under steady load: every policy, failures and rollbacks,
//! draining, one operation at a time, stickiness, CNAME swaps, health colours.

use crate::harness::*;
use sprout_core::api::{CreateEnvironment, DeployRequest, OperationOutcome};
use sprout_core::{EnvStatus, Mode, Policy};
use std::collections::BTreeMap;
use std::time::Duration;

/// Settings that keep the tests quick without changing what they prove.
pub(crate) fn fast_settings() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("health_check_interval".to_string(), "300ms".to_string()),
        ("health_grace".to_string(), "10s".to_string()),
        ("evaluation".to_string(), "2s".to_string()),
        ("canary_percent".to_string(), "25".to_string()),
    ])
}

async fn prod_env(server: &TestServer, app: &str, env: &str, instances: u32, version: &str) {
    server
        .client
        .create_environment(&CreateEnvironment {
            name: env.to_string(),
            app: app.to_string(),
            version: version.to_string(),
            mode: Some(Mode::Prod),
            instances: Some(instances),
            instance_type: Some(sprout_core::InstanceType::Nano),
            settings: fast_settings(),
            ..Default::default()
        })
        .await
        .expect("create");
    let d = wait_ready(server, env, Duration::from_secs(90)).await;
    assert_eq!(
        d.environment.operation.map(|o| o.outcome),
        Some(OperationOutcome::Succeeded)
    );
}

async fn deploy(server: &TestServer, env: &str, version: &str, policy: Policy) {
    let req = DeployRequest {
        version: version.to_string(),
        policy: Some(policy),
        batch: Some("1".into()),
        ..Default::default()
    };
    server
        .client
        .deploy_with(env, &req)
        .await
        .expect("deploy accepted");
}

async fn setup(prefix: &str, instances: u32) -> (TestServer, String, String) {
    let server = TestServer::start().await;
    let app = unique(prefix);
    let env = unique("env");
    server.client.create_app(&app).await.expect("app");
    push(&server, &testapp_dir(), &app, "v1");
    push(&server, &testapp_dir(), &app, "v2");
    prod_env(&server, &app, &env, instances, "v1").await;
    (server, app, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_policy_deploys_under_load_without_a_failed_request() {
    let (server, _app, env) = setup("policies", 4).await;
    let host = server.host(&env);
    let plan = [
        ("v2", Policy::Rolling),
        ("v1", Policy::RollingWithAdditionalBatch),
        ("v2", Policy::Immutable),
        ("v1", Policy::TrafficSplitting),
    ];
    for (version, policy) in plan {
        let load = Load::start(&server.balancer, &host, "/", 4);
        tokio::time::sleep(Duration::from_millis(300)).await;
        deploy(&server, &env, version, policy).await;
        let d = wait_ready(&server, &env, Duration::from_secs(120)).await;
        let report = load.stop().await;
        let op = d.environment.operation.clone().expect("operation");
        assert_eq!(
            op.outcome,
            OperationOutcome::Succeeded,
            "{policy}: {:?}",
            op.message
        );
        assert_eq!(d.environment.version, version);
        assert!(report.ok > 50, "{policy}: the load ran ({} ok)", report.ok);
        assert_eq!(
            report.failed, 0,
            "{policy}: failed requests: {:?}",
            report.failures
        );
        assert_eq!(d.instances.len(), 4, "{policy}: four instances at the end");
        assert!(
            d.instances.iter().all(|i| i.version == version),
            "{policy}: all on {version}"
        );
        // Every answer after the deploy comes from the new version.
        let after = Load::start(&server.balancer, &host, "/", 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = after.stop().await;
        assert_eq!(
            after.versions.keys().collect::<Vec<_>>(),
            vec![version],
            "{policy}: {:?}",
            after.versions
        );
        if policy == Policy::TrafficSplitting {
            assert!(
                report.versions.len() == 2,
                "both versions answered during the canary: {:?}",
                report.versions
            );
        }
    }
    let deployments = server.client.deployments(&env).await.expect("deployments");
    let deploys: Vec<_> = deployments.iter().filter(|d| d.kind == "deploy").collect();
    assert_eq!(deploys.len(), 4);
    for d in deploys {
        assert_eq!(d.outcome, OperationOutcome::Succeeded);
        assert_eq!(d.failed, Some(0), "deployment {} recorded no failure", d.id);
        assert!(
            d.requests.unwrap_or(0) > 0,
            "deployment {} recorded its requests",
            d.id
        );
        assert!(
            d.message.as_deref().unwrap_or("").contains("0 failed"),
            "{:?}",
            d.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_failing_its_health_check_rolls_back_under_every_policy() {
    let (server, app, env) = setup("rollback", 2).await;
    let bad = testapp_with_health(500);
    push(&server, bad.path(), &app, "bad");
    let host = server.host(&env);
    for policy in [
        Policy::Immutable,
        Policy::TrafficSplitting,
        Policy::RollingWithAdditionalBatch,
        Policy::Rolling,
        Policy::AllAtOnce,
    ] {
        let load = Load::start(&server.balancer, &host, "/", 3);
        deploy(&server, &env, "bad", policy).await;
        let d = wait_ready(&server, &env, Duration::from_secs(120)).await;
        let report = load.stop().await;
        assert_eq!(d.environment.status, EnvStatus::Ready);
        assert_eq!(d.environment.version, "v1", "{policy}: back on v1");
        assert!(
            d.instances.iter().all(|i| i.version == "v1"),
            "{policy}: {:?}",
            d.instances
        );
        let deployments = server.client.deployments(&env).await.expect("deployments");
        let failed = deployments
            .iter()
            .find(|d| d.kind == "deploy")
            .expect("the deploy");
        assert_eq!(failed.outcome, OperationOutcome::Failed, "{policy}");
        let why = failed.message.clone().unwrap_or_default();
        assert!(
            why.contains("did not pass its health check") && why.contains("500"),
            "{policy}: {why}"
        );
        assert_eq!(deployments[0].kind, "rollback");
        assert_eq!(deployments[0].outcome, OperationOutcome::Succeeded);
        if matches!(
            policy,
            Policy::Immutable
                | Policy::TrafficSplitting
                | Policy::RollingWithAdditionalBatch
                | Policy::Rolling
        ) {
            assert_eq!(
                report.failed, 0,
                "{policy}: failed requests during a failed deploy: {:?}",
                report.failures
            );
        }
    }
    let events = server.client.events(&env, Some(500)).await.expect("events");
    assert!(events
        .iter()
        .any(|e| e.message.contains("rolling back to version v1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_lets_in_flight_requests_finish() {
    let (server, _app, env) = setup("drain", 2).await;
    let host = server.host(&env);
    // Slow requests on every instance; the app drops them if stopped (it exits on SIGTERM).
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (url, host) = (format!("{}/slow?ms=4000", server.balancer), host.clone());
            tokio::spawn(async move {
                http_client()
                    .get(url)
                    .header("host", host)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    deploy(&server, &env, "v2", Policy::Immutable).await;
    for s in slow {
        assert_eq!(
            s.await.expect("task").expect("slow request answered"),
            200,
            "in-flight request completed"
        );
    }
    let d = wait_ready(&server, &env, Duration::from_secs(90)).await;
    assert_eq!(d.environment.version, "v2");
    let events = server.client.events(&env, Some(200)).await.expect("events");
    assert!(events
        .iter()
        .any(|e| e.message.contains("draining instance")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_operation_at_a_time_and_abort_rolls_back() {
    let (server, _app, env) = setup("abort", 2).await;
    server
        .client
        .deploy_with(
            &env,
            &DeployRequest {
                version: "v2".into(),
                policy: Some(Policy::TrafficSplitting),
                evaluation: Some("60s".into()),
                ..Default::default()
            },
        )
        .await
        .expect("deploy");
    let second = server.client.deploy(&env, "v1").await;
    let err = second.expect_err("a second deploy is refused");
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("is running"), "{err}");
    let out = server.cli(&["deploy", &env, "--version", "v1"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one line: {}",
        stderr(&out)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = Load::start(&server.balancer, &server.host(&env), "/", 3);
    server.client.abort(&env).await.expect("abort");
    let d = wait_ready(&server, &env, Duration::from_secs(60)).await;
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(d.environment.version, "v1");
    let deployments = server.client.deployments(&env).await.expect("deployments");
    assert!(deployments.iter().any(|d| d.kind == "deploy"
        && d.message
            .as_deref()
            .unwrap_or("")
            .contains("aborted by admin")));
    assert_eq!(deployments[0].kind, "rollback");
    assert!(
        server.client.abort(&env).await.is_err(),
        "nothing left to abort"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sticky_sessions_hold_and_move_when_the_instance_dies() {
    let (server, _app, env) = setup("sticky", 2).await;
    let out = server.cli(&["config", &env, "--set", "sticky=1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = server.host(&env);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let get = || {
        client
            .get(format!("{}/", server.balancer))
            .header("host", &host)
            .send()
    };
    // Stickiness is applied by the reconciler's next pass.
    let first = eventually(Duration::from_secs(5), || async {
        let r = get().await.ok()?;
        r.headers().get("set-cookie").is_some().then(|| {
            r.headers()
                .get("x-sprout-instance")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })?
    })
    .await
    .expect("a sticky cookie");
    for _ in 0..50 {
        let r = get().await.expect("request");
        assert_eq!(
            r.headers()
                .get("x-sprout-instance")
                .and_then(|v| v.to_str().ok()),
            Some(first.as_str())
        );
    }
    let container = server.containers(&format!("sprout.instance={first}"));
    assert_eq!(container.len(), 1);
    assert!(std::process::Command::new("docker")
        .args(["kill", &container[0]])
        .status()
        .expect("docker")
        .success());
    // Moved = the balancer hands the client a cookie for another instance.
    let moved = eventually(Duration::from_secs(10), || async {
        let r = get().await.ok()?;
        let instance = r
            .headers()
            .get("x-sprout-instance")
            .and_then(|v| v.to_str().ok())?
            .to_string();
        let new_cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains(&format!("SPROUT_STICKY={instance}")));
        (r.status().is_success() && instance != first && new_cookie).then_some(instance)
    })
    .await
    .expect("moved to another instance");
    for _ in 0..20 {
        let r = get().await.expect("request");
        assert_eq!(
            r.headers()
                .get("x-sprout-instance")
                .and_then(|v| v.to_str().ok()),
            Some(moved.as_str()),
            "sticks to the new one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swap_moves_the_hostname_without_a_failed_request() {
    let (server, app, blue) = setup("swap", 2).await;
    let green = unique("green");
    prod_env(&server, &app, &green, 2, "v2").await;
    let host = server.host(&blue);
    let load = Load::start(&server.balancer, &host, "/", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = server.cli(&["swap", &blue, &green]);
    assert!(out.status.success(), "swap: {}", stderr(&out));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(
        report.versions.contains_key("v1") && report.versions.contains_key("v2"),
        "{:?}",
        report.versions
    );
    let after = Load::start(&server.balancer, &host, "/", 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = after.stop().await;
    assert_eq!(
        after.versions.keys().collect::<Vec<_>>(),
        vec!["v2"],
        "{blue}'s hostname now reaches green"
    );
    let b = server.client.get_environment(&blue).await.expect("blue");
    let g = server.client.get_environment(&green).await.expect("green");
    assert_eq!(
        (b.environment.cname.as_str(), g.environment.cname.as_str()),
        (green.as_str(), blue.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_turns_red_on_5xx_and_green_again() {
    let (server, _app, env) = setup("health", 2).await;
    let host = server.host(&env);
    let green = server.client.health_report(&env).await.expect("health");
    assert_eq!(green.color, "Green", "{green:?}");
    let errors = Load::start(&server.balancer, &host, "/?status=500", 3);
    let red = eventually(Duration::from_secs(10), || async {
        let h = server.client.health_report(&env).await.ok()?;
        (h.color == "Red").then_some(h)
    })
    .await;
    errors.stop().await;
    let red = red.expect("health turns Red while most requests fail");
    assert!(
        red.causes.iter().any(|c| c.contains("5xx")),
        "{:?}",
        red.causes
    );
    assert!(red.metrics.status_5xx > 0);
    // The window is 10 s: with good traffic the errors age out.
    let good = Load::start(&server.balancer, &host, "/", 2);
    let back = eventually(Duration::from_secs(20), || async {
        let h = server.client.health_report(&env).await.ok()?;
        (h.color == "Green").then_some(h)
    })
    .await;
    good.stop().await;
    assert!(back.is_some(), "Green again");
    let events = server.client.events(&env, Some(200)).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("transitioned") && e.message.contains("Red")),
        "the transition is an event"
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.api))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("sprout_requests_total") && text.contains(&env),
        "prometheus text"
    );
}
