//! Auto Scaling groups: self-healing, triggers, vertical scaling, zones on two engines.

use crate::harness::*;
use sprout_core::api::{CreateEnvironment, ScaleRequest};
use sprout_core::Mode;
use std::collections::BTreeMap;
use std::time::Duration;

async fn env_with(
    server: &TestServer,
    app: &str,
    env: &str,
    instances: u32,
    settings: &[(&str, &str)],
) {
    let mut map: BTreeMap<String, String> =
        BTreeMap::from([("health_check_interval".into(), "300ms".into())]);
    for (k, v) in settings {
        map.insert(k.to_string(), v.to_string());
    }
    server
        .client
        .create_environment(&CreateEnvironment {
            name: env.into(),
            app: app.into(),
            version: "v1".into(),
            mode: Some(Mode::Prod),
            instances: Some(instances),
            instance_type: Some(sprout_core::InstanceType::Nano),
            settings: map,
            ..Default::default()
        })
        .await
        .expect("create");
    wait_ready(server, env, Duration::from_secs(120)).await;
}

async fn setup(server: &TestServer, prefix: &str) -> String {
    let app = unique(prefix);
    server.client.create_app(&app).await.expect("app");
    push(server, &testapp_dir(), &app, "v1");
    app
}

async fn healthy_count(server: &TestServer, env: &str) -> usize {
    server
        .client
        .get_environment(env)
        .await
        .map(|d| {
            d.instances
                .iter()
                .filter(|i| i.healthy && i.state == "running")
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_and_failing_instances_are_replaced_without_a_failed_request() {
    let server = TestServer::start().await;
    let app = setup(&server, "heal").await;
    let env = unique("heal");
    env_with(&server, &app, &env, 2, &[]).await;
    let load = Load::start(&server.balancer, &server.host(&env), "/", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = server.containers(&format!("sprout.env={env}"))[0].clone();
    assert!(std::process::Command::new("docker")
        .args(["kill", &victim])
        .status()
        .expect("docker")
        .success());
    let healed = eventually(Duration::from_secs(15), || async {
        let gone = !server
            .containers(&format!("sprout.env={env}"))
            .contains(&victim);
        (gone && healthy_count(&server, &env).await == 2).then_some(())
    })
    .await;
    assert!(healed.is_some(), "the killed instance was replaced");
    // One instance's health check starts failing: it is replaced.
    let sick = server.containers(&format!("sprout.env={env}"))[0].clone();
    let broke = std::process::Command::new("docker")
        .args(["exec", &sick, "sh", "-c", "echo 500 > /app/health_status"])
        .status()
        .expect("docker exec");
    assert!(broke.success());
    let replaced = eventually(Duration::from_secs(20), || async {
        let gone = !server
            .containers(&format!("sprout.env={env}"))
            .contains(&sick);
        (gone && healthy_count(&server, &env).await == 2).then_some(())
    })
    .await;
    let report = load.stop().await;
    assert!(replaced.is_some(), "the failing instance was replaced");
    assert_eq!(report.failed, 0, "no request failed: {:?}", report.failures);
    let events = server.client.events(&env, Some(300)).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("fails its health checks")),
        "the reason is an event"
    );
    assert!(events.iter().any(|e| e.message.contains("replacing it")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_scales_out_and_quiet_scales_in_to_min() {
    let server = TestServer::start().await;
    let app = setup(&server, "auto").await;
    let env = unique("auto");
    let trigger = [
        ("scaling_metric", "requests"),
        ("scaling_period", "1s"),
        ("breach_duration", "3s"),
        ("upper_threshold", "20"),
        ("lower_threshold", "2"),
        ("cooldown", "4s"),
    ];
    env_with(&server, &app, &env, 1, &trigger).await;
    server
        .client
        .scale(
            &env,
            &ScaleRequest {
                instances: None,
                min: Some(1),
                max: Some(3),
            },
        )
        .await
        .expect("bounds");
    let started = std::time::Instant::now();
    let load = Load::start(&server.balancer, &server.host(&env), "/", 6);
    let out = eventually(Duration::from_secs(15), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.desired >= 2).then_some(d)
    })
    .await;
    assert!(out.is_some(), "scaled out within 15 s");
    eprintln!("scale out decided after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let back = eventually(Duration::from_secs(40), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.desired == 1 && d.instances.len() == 1).then_some(d)
    })
    .await;
    assert!(back.is_some(), "scaled back in to min after the cooldown");
    let events = server.client.events(&env, Some(300)).await.expect("events");
    let out_event = events.iter().find(|e| {
        e.message
            .starts_with("scale out 1→2: requests/s per instance")
    });
    assert!(
        out_event.is_some(),
        "the decision explains itself: {:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    assert!(events
        .iter()
        .any(|e| e.message.starts_with("scale in ") && e.message.contains("→1")));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        server
            .client
            .get_environment(&env)
            .await
            .expect("env")
            .environment
            .desired,
        1,
        "never below min"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_the_instance_type_replaces_instances_without_a_failed_request() {
    let server = TestServer::start().await;
    let app = setup(&server, "vert").await;
    let env = unique("vert");
    env_with(&server, &app, &env, 2, &[]).await;
    let load = Load::start(&server.balancer, &server.host(&env), "/", 4);
    let out = server.cli(&["config", &env, "--set", "instance_type=small", "--wait"]);
    let report = load.stop().await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let containers = server.containers(&format!("sprout.env={env}"));
    assert_eq!(containers.len(), 2);
    for c in containers {
        let limits = docker_lines(&[
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            &c,
        ]);
        assert_eq!(
            limits,
            vec![format!("1000000000 {}", 512u64 << 20)],
            "small: 1 CPU, 512 MiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_zones_on_two_engines_fail_and_restore() {
    let engine_b = SecondEngine::start().await;
    let zones = format!("a,b={}", engine_b.endpoint);
    let server = TestServer::start_with(&[("SPROUT_ZONES", &zones)]).await;
    let app = setup(&server, "zones").await;
    let env = unique("zones");
    env_with(&server, &app, &env, 4, &[]).await;
    let label = format!("sprout.env={env}");
    assert_eq!(
        server.containers(&label).len(),
        2,
        "two instances on the local engine (zone a)"
    );
    assert_eq!(
        engine_b.containers(&label).len(),
        2,
        "two on the second engine (zone b)"
    );
    // Instances in zone b serve through the balancer.
    let probe = Load::start(&server.balancer, &server.host(&env), "/", 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = probe.stop().await;
    assert_eq!(
        probe.instances.len(),
        4,
        "all four instances answered: {:?}",
        probe.instances
    );

    let load = Load::start(&server.balancer, &server.host(&env), "/", 4);
    let out = server.cli(&["zone", "fail", "b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = eventually(Duration::from_secs(60), || async {
        (server.containers(&label).len() == 4
            && engine_b.containers(&label).is_empty()
            && healthy_count(&server, &env).await == 4)
            .then_some(())
    })
    .await;
    assert!(moved.is_some(), "4 instances in zone a");
    let out = server.cli(&["zone", "restore", "b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spread = eventually(Duration::from_secs(60), || async {
        (server.containers(&label).len() == 2
            && engine_b.containers(&label).len() == 2
            && healthy_count(&server, &env).await == 4)
            .then_some(())
    })
    .await;
    let report = load.stop().await;
    assert!(spread.is_some(), "2/2 again after restore");
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let out = server.cli(&["zone", "list", "--json"]);
    let zones: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("zones json");
    assert_eq!(zones.len(), 2);
    assert!(zones.iter().all(|z| z["available"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_backlog_scales_out_and_back_in_when_drained() {
    let server = TestServer::start().await;
    let app = unique("backlog");
    let env = unique("backlog");
    // Two connections per instance and 200 ms per job: one instance does ~10 jobs/s.
    crate::worker::launch_worker(&server, &app, &env, 1, None, &["SQSD_HTTP_CONNECTIONS=2"]).await;
    let out = server.cli(&[
        "config",
        &env,
        "--set",
        "scaling_metric=backlog",
        "--set",
        "scaling_period=1s",
        "--set",
        "breach_duration=2s",
        "--set",
        "upper_threshold=10",
        "--set",
        "lower_threshold=1",
        "--set",
        "cooldown=3s",
        "--wait",
    ]);
    assert!(out.status.success(), "config: {}", stderr(&out));
    server
        .client
        .scale(
            &env,
            &ScaleRequest {
                instances: None,
                min: Some(1),
                max: Some(3),
            },
        )
        .await
        .expect("bounds");
    const JOBS: usize = 150;
    for i in 0..JOBS {
        server
            .client
            .queue_send(
                &env,
                &sprout_core::queue::SendRequest {
                    body: format!("{{\"sleep\": 0.2, \"n\": {i}}}"),
                    ..Default::default()
                },
            )
            .await
            .expect("send");
    }
    let out = eventually(Duration::from_secs(30), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.desired >= 2).then_some(())
    })
    .await;
    assert!(out.is_some(), "a backlog scales the workers out");
    let drained = eventually(Duration::from_secs(90), || async {
        let s = server.client.queue_stats(&env).await.ok()?;
        (s.visible == 0 && s.in_flight == 0 && s.delayed == 0).then_some(s)
    })
    .await
    .expect("the backlog drained");
    assert_eq!(drained.dead, 0, "no job failed");
    let back = eventually(Duration::from_secs(40), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.desired == 1 && d.instances.len() == 1).then_some(())
    })
    .await;
    assert!(back.is_some(), "scaled back in once drained");
    let events = server.client.events(&env, Some(300)).await.expect("events");
    let messages: Vec<&String> = events.iter().map(|e| &e.message).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("scale out 1→2: queue backlog per instance")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("scale in ")),
        "{messages:?}"
    );
}
