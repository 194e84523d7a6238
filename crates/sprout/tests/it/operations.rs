//! Every operation ends (issue 13): a step Docker keeps refusing fails the operation, with
//! its reason in the events, in bounded time; and the operation resource,
//! `GET /api/v1/operations/{id}`, tells how each one stands.

use crate::auth::{call, login};
use crate::harness::*;
use bollard::models::NetworkCreateRequest;
use bollard::Docker;
use sprout_core::api::{problem_types as types, Event, OperationOutcome, OperationPhase};
use sprout_core::{EnvStatus, Severity};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Two Docker networks with one name: Docker before 25 lets the API create the second
/// (no duplicate check unless asked), and then refuses every use of the name as
/// ambiguous. Removed on drop.
struct AmbiguousNetwork {
    docker: Docker,
    ids: Vec<String>,
}

impl AmbiguousNetwork {
    async fn create(name: &str, server_id: &str) -> Self {
        let docker = Docker::connect_with_local_defaults()
            .expect("docker")
            .negotiate_version()
            .await
            .expect("docker version");
        let mut ids = Vec::new();
        for _ in 0..2 {
            let created = docker
                .create_network(NetworkCreateRequest {
                    name: name.to_string(),
                    driver: Some("bridge".into()),
                    // So the server's clean-up finds them too, should this test panic.
                    labels: Some(HashMap::from([(
                        "sprout.server".to_string(),
                        server_id.to_string(),
                    )])),
                    ..Default::default()
                })
                .await
                .expect("create network");
            ids.push(created.id);
        }
        let refused = docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await;
        assert!(
            refused.is_err(),
            "this Docker keeps one network per name; the test cannot make it refuse"
        );
        Self { docker, ids }
    }

    async fn remove(self) {
        for id in &self.ids {
            let _ = self.docker.remove_network(id).await;
        }
    }
}

async fn events(server: &TestServer, env: &str) -> Vec<Event> {
    let out = server.cli(&["events", env, "--json"]);
    assert!(out.status.success(), "events: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("events as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_docker_keeps_refusing_fails_the_operation_with_its_reason() {
    let server = TestServer::start().await;
    let app = unique("opsfail");
    let env = unique("web");
    let out = server.cli(&["app", "create", &app]);
    assert!(out.status.success(), "app create: {}", stderr(&out));
    push(&server, &testapp_dir(), &app, "v1");

    // The environment's network (see `network_of`), made unusable before it exists: the
    // first environment of a fresh server has id 1.
    let network = format!("sprout-{}-{env}-1", server.server_id);
    let ambiguous = AmbiguousNetwork::create(&network, &server.server_id).await;

    let started = Instant::now();
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
        "--wait",
    ]);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "the launch cannot succeed: {err}");
    assert!(
        err.contains("createEnvironment failed") && err.contains("ambiguous"),
        "--wait fails with the operation's reason: {err}"
    );
    assert!(
        took < Duration::from_secs(90),
        "failed within bounded time, not at a timeout: {took:?}"
    );

    // The user sees why in the events.
    let failed: Vec<Event> = events(&server, &env)
        .await
        .into_iter()
        .filter(|e| e.severity == Severity::Error && e.message.contains("createEnvironment failed"))
        .collect();
    assert_eq!(failed.len(), 1, "one failure event: {failed:?}");
    assert!(
        failed[0].message.contains("ambiguous")
            && failed[0].message.contains("3 attempts in a row"),
        "{}",
        failed[0].message
    );

    // The operation resource says the same, to any reader (a viewer too).
    let detail = server.client.get_environment(&env).await.expect("env");
    assert_eq!(detail.environment.status, EnvStatus::Ready);
    let launch = detail.environment.operation.expect("the launch operation");
    add_user(&server, "vera", "viewer", "vera-password");
    let vera = login(&server, "vera", "vera-password").await;
    let (status, op) = call(
        &server,
        Some(&vera),
        "GET",
        &format!("/api/v1/operations/{}", launch.id),
        None,
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["environment"], env.as_str());
    assert_eq!(op["kind"], "launch");
    assert_eq!(op["outcome"], "failed");
    assert_eq!(op["phase"], "failed");
    assert_eq!(op["environment_status"], "Ready");
    assert_eq!(op["step_failures"], 3);
    assert!(op["rolled_back_by"].is_null(), "{op}");
    assert!(op["progress"].is_null(), "{op}");
    assert!(op["finished_at"].is_string(), "{op}");
    assert!(
        op["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("ambiguous"),
        "{op}"
    );
    assert_eq!(op["message"].as_str(), failed[0].message.as_str().into());

    // Terminating needs no network: it succeeds, and its resource says so.
    let out = server.cli(&["terminate", &env, "--wait"]);
    assert!(out.status.success(), "terminate: {}", stderr(&out));
    let ops = server.client.deployments(&env).await.expect("records");
    let terminate = ops
        .iter()
        .find(|d| d.kind == "terminate")
        .expect("terminate");
    let op = server
        .client
        .get_operation(terminate.id)
        .await
        .expect("operation");
    assert_eq!(
        (op.outcome, op.phase, op.environment_status),
        (
            OperationOutcome::Succeeded,
            OperationPhase::Succeeded,
            EnvStatus::Terminated
        )
    );
    assert_eq!(op.environment, env);
    assert!(op.duration_secs.is_some());

    // Unknown operations are 404 problems; no token, 401.
    let (status, p) = call(
        &server,
        Some(&vera),
        "GET",
        "/api/v1/operations/999999",
        None,
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (404, Some(types::NOT_FOUND)),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("999999"),
        "{p}"
    );
    let (status, _) = call(
        &server,
        None,
        "GET",
        &format!("/api/v1/operations/{}", launch.id),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, p) = call(
        &server,
        Some(&vera),
        "GET",
        "/api/v1/operations/seven",
        None,
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (400, Some(types::INVALID_INPUT)),
        "{p}"
    );

    ambiguous.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_servers_operation_timeout_ends_a_launch_that_never_gets_healthy() {
    let server = TestServer::start_with(&[("SPROUT_OPERATION_TIMEOUT", "6")]).await;
    let app = unique("opstime");
    let env = unique("web");
    let out = server.cli(&["app", "create", &app]);
    assert!(out.status.success(), "app create: {}", stderr(&out));
    let sick = testapp_with_health(500);
    push(&server, sick.path(), &app, "v1");

    // Its instances would have ten minutes to pass their checks; the server allows 6 s.
    let started = Instant::now();
    let out = server.cli(&[
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--set",
        "health_grace=10m",
        "--wait",
    ]);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "never healthy, so never launched: {err}"
    );
    assert!(
        err.contains("createEnvironment failed: not done within the operation timeout (6 s)"),
        "{err}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        events(&server, &env)
            .await
            .iter()
            .any(|e| e.severity == Severity::Error
                && e.message
                    .contains("not done within the operation timeout (6 s)")),
        "the reason is in the events"
    );
}
