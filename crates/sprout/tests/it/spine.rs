//! The spine, end to end: push → environment of two → balanced → deploy → kill → restart
//! → terminate, through the real binary, Docker and SQLite.

use crate::harness::*;
use sprout_core::api::{CreateEnvironment, OperationOutcome};
use sprout_core::{EnvStatus, Mode};
use std::collections::HashSet;
use std::time::Duration;

async fn instances_answering(
    server: &TestServer,
    host: &str,
    requests: usize,
) -> (Vec<serde_json::Value>, usize) {
    let mut bodies = Vec::new();
    let mut failed = 0;
    for _ in 0..requests {
        match server.get_via_balancer(host, "/").await {
            Ok(r) if r.status().is_success() => {
                let header_instance = r
                    .headers()
                    .get("x-sprout-instance")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                assert!(
                    r.headers().get("x-request-id").is_some(),
                    "the balancer adds a request id"
                );
                let body: serde_json::Value = r.json().await.expect("json body");
                assert_eq!(
                    body["instance"].as_str(),
                    header_instance.as_deref(),
                    "header and body name the same instance"
                );
                bodies.push(body);
            }
            _ => failed += 1,
        }
    }
    (bodies, failed)
}

fn distinct(bodies: &[serde_json::Value], key: &str) -> HashSet<String> {
    bodies
        .iter()
        .filter_map(|b| b[key].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_launch_balance_deploy_kill_restart_terminate() {
    let mut server = TestServer::start().await;
    let app = unique("spine");
    let env = unique("web");
    let example = example_dir();
    let example = example.to_str().expect("utf-8 path");

    // The user's path, through the CLI.
    let out = server.cli(&["app", "create", &app]);
    assert!(out.status.success(), "app create: {}", stderr(&out));
    let out = server.cli(&["push", example, "--app", &app, "--label", "v1"]);
    assert!(out.status.success(), "push v1: {}", stderr(&out));
    let v1 = server.client.get_version(&app, "v1").await.expect("v1");
    assert_eq!(
        v1.status,
        sprout_core::VersionStatus::Ready,
        "build log:\n{:?}",
        v1.build_log
    );
    assert_eq!(
        v1.image.as_deref(),
        Some(format!("sprout/{app}:v1").as_str())
    );
    assert_eq!(v1.sha256.len(), 64);
    assert!(
        server
            .data
            .join("bundles")
            .join(format!("{}.tar.gz", v1.sha256))
            .is_file(),
        "bundle stored by sha256"
    );

    let out = server.cli(&[
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--mode",
        "prod",
        "--instances",
        "2",
        "--wait",
    ]);
    assert!(out.status.success(), "env create: {}", stderr(&out));
    let detail = server.client.get_environment(&env).await.expect("env");
    assert_eq!(detail.environment.status, EnvStatus::Ready);
    assert_eq!(detail.environment.health, "Green");
    assert_eq!(detail.environment.mode, Mode::Prod);
    assert_eq!(detail.instances.len(), 2);

    // Docker: two labelled containers with limits, on the env's own network, no published port.
    let containers = server.containers(&format!("sprout.env={env}"));
    assert_eq!(containers.len(), 2, "two containers");
    for c in &containers {
        let inspect = docker_lines(&[
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{json .HostConfig.PortBindings}} {{index .Config.Labels \"sprout.app\"}} {{index .Config.Labels \"sprout.version\"}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            c,
        ]);
        let fields: Vec<&str> = inspect
            .first()
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        assert!(fields.len() >= 5, "inspect of {c}: {inspect:?}");
        assert_eq!(fields[0], "1000000000", "small = 1 CPU");
        assert_eq!(fields[1], (512u64 << 20).to_string(), "small = 512 MiB");
        assert!(
            fields[2] == "{}" || fields[2] == "null",
            "no published ports: {}",
            fields[2]
        );
        assert!(inspect.len() == 1, "inspect answered: {inspect:?}");
        assert_eq!(fields[3], app);
        assert_eq!(fields[4], "v1");
        assert_eq!(fields.len(), 6, "exactly one network: {fields:?}");
        assert!(
            fields[5].starts_with("sprout-") && fields[5].contains(&env),
            "the environment's own network"
        );
        let envs = docker_lines(&[
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            c,
        ]);
        for key in [
            "PORT=8080",
            &format!("SPROUT_ENV={env}"),
            &format!("SPROUT_APP={app}"),
            "SPROUT_VERSION=v1",
        ] {
            assert!(envs.iter().any(|e| e == key), "{key} in {envs:?}");
        }
    }

    // Twenty requests through the balancer reach both instances.
    let host = server.host(&env);
    let (bodies, failed) = instances_answering(&server, &host, 20).await;
    assert_eq!(failed, 0);
    assert_eq!(
        distinct(&bodies, "instance").len(),
        2,
        "both instances answered"
    );

    // Unknown host: 404.
    let r = server
        .get_via_balancer("nobody-here.localhost", "/")
        .await
        .expect("404 answer");
    assert_eq!(r.status(), 404);

    // Deploy v2: every answer then comes from v2, with no failed request during it.
    let out = server.cli(&["push", example, "--app", &app, "--label", "v2"]);
    assert!(out.status.success(), "push v2: {}", stderr(&out));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (balancer, host, stop) = (server.balancer.clone(), host.clone(), stop.clone());
        tokio::spawn(async move {
            let client = http_client();
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client
                    .get(format!("{balancer}/health"))
                    .header("host", &host)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        })
    };
    let out = server.cli(&["deploy", &env, "--version", "v2", "--wait"]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load task");
    assert!(ok > 20, "the load ran during the deploy ({ok} requests)");
    assert_eq!(
        failed, 0,
        "no request failed during the deploy ({ok} served)"
    );
    let (bodies, failed) = instances_answering(&server, &host, 20).await;
    assert_eq!(failed, 0);
    assert_eq!(
        distinct(&bodies, "version"),
        HashSet::from(["v2".to_string()]),
        "every answer from v2"
    );
    assert_eq!(distinct(&bodies, "instance").len(), 2);
    let detail = server.client.get_environment(&env).await.expect("env");
    assert_eq!(detail.environment.version, "v2");
    let op = detail.environment.operation.expect("operation");
    assert_eq!(
        (op.kind.as_str(), op.outcome),
        ("deploy", OperationOutcome::Succeeded)
    );
    assert_eq!(
        server.containers(&format!("sprout.env={env}")).len(),
        2,
        "old instances are gone"
    );

    // docker kill one instance: a new one serves within 10 s.
    let victim = server.containers(&format!("sprout.env={env}"))[0].clone();
    let killed_at = std::time::Instant::now();
    assert!(std::process::Command::new("docker")
        .args(["kill", &victim])
        .status()
        .expect("docker")
        .success());
    let replaced = eventually(Duration::from_secs(10), || async {
        let detail = server.client.get_environment(&env).await.ok()?;
        let healthy: Vec<_> = detail
            .instances
            .iter()
            .filter(|i| i.healthy && i.state == "running")
            .collect();
        let victim_gone = !server
            .containers(&format!("sprout.env={env}"))
            .contains(&victim);
        (healthy.len() == 2 && victim_gone).then_some(())
    })
    .await;
    assert!(
        replaced.is_some(),
        "a replacement serves within 10 s (waited {:?})",
        killed_at.elapsed()
    );
    let (bodies, failed) = instances_answering(&server, &host, 10).await;
    assert_eq!(failed, 0);
    assert_eq!(distinct(&bodies, "instance").len(), 2);
    let events = server.client.events(&env, Some(500)).await.expect("events");
    assert!(
        events.iter().any(|e| e.message.contains("replacing it")),
        "the replacement is an event"
    );

    // Restart the server: the same containers, no duplicates, events kept.
    let mut before = server.containers(&format!("sprout.env={env}"));
    before.sort();
    let events_before = events.len();
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a few reconcile passes
    let mut after = server.containers(&format!("sprout.env={env}"));
    after.sort();
    assert_eq!(
        before, after,
        "the restarted server adopted the same containers"
    );
    let events_after = server.client.events(&env, Some(500)).await.expect("events");
    assert!(
        events_after.len() >= events_before,
        "events survive a restart"
    );
    let host = server.host(&env);
    let served = eventually(Duration::from_secs(10), || async {
        let (bodies, failed) = instances_answering(&server, &host, 4).await;
        (failed == 0 && distinct(&bodies, "instance").len() == 2).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "the adopted instances serve through the new balancer"
    );

    // Events through the CLI, as a table and as JSON.
    let out = server.cli(&["events", &env, "--json"]);
    assert!(out.status.success());
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("events json");
    assert!(listed.iter().any(|e| e["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("deployment ") && m.contains(" finished: v2"))));

    // Terminate: no container, network or route left.
    let out = server.cli(&["terminate", &env, "--wait"]);
    assert!(out.status.success(), "terminate: {}", stderr(&out));
    assert!(
        server.containers(&format!("sprout.env={env}")).is_empty(),
        "no container left"
    );
    assert!(server.networks().is_empty(), "no network left");
    let r = server.get_via_balancer(&host, "/").await.expect("answer");
    assert_eq!(r.status(), 404, "no route left");
    let detail = server
        .client
        .get_environment(&env)
        .await
        .expect("terminated env still readable");
    assert_eq!(detail.environment.status, EnvStatus::Terminated);

    // The application can go now, with its images.
    let out = server.cli(&["app", "delete", &app]);
    assert!(out.status.success(), "app delete: {}", stderr(&out));
    let images = docker_lines(&["image", "ls", "-q", &format!("sprout/{app}")]);
    assert!(images.is_empty(), "images removed: {images:?}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_data_bootstrap_and_api_create() {
    let server = TestServer::start().await;
    let app = unique("boot");
    let env = unique("ud");
    server.client.create_app(&app).await.expect("app");
    let out = server.cli(&[
        "push",
        example_dir().to_str().unwrap_or_default(),
        "--app",
        &app,
        "--label",
        "v1",
    ]);
    assert!(out.status.success(), "push: {}", stderr(&out));
    let created = server
        .client
        .create_environment(&CreateEnvironment {
            name: env.clone(),
            app: app.clone(),
            version: "v1".into(),
            bootstrap: Some(sprout_core::Bootstrap::UserData),
            instance_type: Some(sprout_core::InstanceType::Nano),
            ..Default::default()
        })
        .await
        .expect("create");
    assert_eq!(created.status, EnvStatus::Launching);
    assert_eq!(created.desired, 1, "dev mode: one instance");
    let ready = eventually(Duration::from_secs(60), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.status == EnvStatus::Ready).then_some(d)
    })
    .await
    .expect("Ready");
    assert_eq!(
        ready.environment.operation.map(|o| o.outcome),
        Some(OperationOutcome::Succeeded)
    );
    let containers = server.containers(&format!("sprout.env={env}"));
    assert_eq!(containers.len(), 1);
    let image = docker_lines(&["inspect", "-f", "{{.Config.Image}}", &containers[0]]);
    assert_eq!(
        image,
        vec!["sprout/platform-python".to_string()],
        "user-data starts from the platform image"
    );
    let r = server
        .get_via_balancer(&server.host(&env), "/")
        .await
        .expect("answer");
    assert!(r.status().is_success());
}
