//! Attached resources through the real binary, Docker and PostgreSQL: create, attach (the
//! environment rolls; the app reads DATABASE_URL and keeps rows through the balancer),
//! snapshot → write more → restore into a new resource → exactly the snapshot's rows;
//! viewers see masked credentials; bad input changes nothing.

use crate::auth::{call, login};
use crate::harness::*;
use serde_json::{json, Value};
use sprout_core::api::CreateEnvironment;
use sprout_core::resource::api::{Resource, Snapshot};
use sprout_core::resource::ResourceStatus;
use sprout_core::Mode;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) fn dbapp_dir() -> PathBuf {
    testapp_dir().join("../dbapp")
}

/// The resource images are built by .ci/run (docker/build-platform.sh postgres); a missing
/// one fails the test rather than spending minutes building it here.
pub(crate) fn require_resource_images() {
    if let Err(missing) = sprout_testkit::docker_ready(&["sprout/resource-postgres"]) {
        panic!("resource image missing ({missing:?}): run docker/build-platform.sh postgres (.ci/run does)");
    }
}

pub(crate) fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", stderr(out));
    stdout(out)
}

pub(crate) fn fails_with(out: &std::process::Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        stdout(out)
    );
    let err = stderr(out);
    assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

pub(crate) fn show(server: &TestServer, name: &str) -> Resource {
    let out = server.cli(&["resource", "show", name, "--json"]);
    serde_json::from_str(&ok(&out, "resource show")).expect("resource json")
}

pub(crate) async fn get_json(server: &TestServer, host: &str, path: &str) -> Value {
    let r = server
        .get_via_balancer(host, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_attached_snapshot_restore_and_bad_input() {
    require_resource_images();
    let server = TestServer::start().await;
    let app = unique("resapp");
    let env = unique("resweb");
    let db = unique("orders");
    let copy = unique("ordcopy");
    ok(&server.cli(&["app", "create", &app]), "app create");
    push(&server, &dbapp_dir(), &app, "v1");
    server
        .client
        .create_environment(&CreateEnvironment {
            name: env.clone(),
            app: app.clone(),
            version: "v1".to_string(),
            mode: Some(Mode::Prod),
            instances: Some(2),
            instance_type: Some(sprout_core::InstanceType::Nano),
            settings: {
                // A roomier grace than the deployment tests': the engines share the machine.
                let mut s = crate::deploys::fast_settings();
                s.insert("health_grace".into(), "60s".into());
                s
            },
            ..Default::default()
        })
        .await
        .expect("create env");
    wait_ready(&server, &env, Duration::from_secs(120)).await;
    let host = server.host(&env);

    // Create and wait: Available, a container with no published port, a volume.
    ok(
        &server.cli(&[
            "resource", "create", &db, "--app", &app, "--kind", "postgres", "--size", "micro",
            "--wait",
        ]),
        "resource create",
    );
    let r = show(&server, &db);
    assert_eq!(r.status, ResourceStatus::Available);
    assert_eq!(r.password.len(), 32);
    let container = format!("sprout-res-{app}-{db}");
    let ports = docker_lines(&["port", &container]);
    assert!(ports.is_empty(), "published: {ports:?}");
    assert_eq!(
        docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={container}")
        ])
        .len(),
        1
    );

    // Before attaching, instances have no DATABASE_URL.
    let vars = get_json(&server, &host, "/vars").await;
    assert_eq!(vars["vars"], json!([]), "{vars}");

    // Attach: the environment rolls, every instance gets the variables.
    ok(
        &server.cli(&["resource", "attach", &db, &env, "--wait"]),
        "attach",
    );
    for _ in 0..6 {
        let vars = get_json(&server, &host, "/vars").await;
        assert_eq!(
            vars["vars"],
            json!([
                "DATABASE_URL",
                "RDS_DB_NAME",
                "RDS_HOSTNAME",
                "RDS_PASSWORD",
                "RDS_PORT",
                "RDS_USERNAME"
            ]),
            "{vars}"
        );
    }
    for name in ["apple", "bread"] {
        get_json(&server, &host, &format!("/add?name={name}")).await;
    }
    assert_eq!(
        get_json(&server, &host, "/list").await["items"],
        json!(["apple", "bread"])
    );

    // Snapshot, write more, restore into a new resource: exactly the snapshot's rows.
    ok(
        &server.cli(&["resource", "snapshot", &db, "--wait"]),
        "snapshot",
    );
    get_json(&server, &host, "/add?name=cheese").await;
    let snaps: Vec<Snapshot> = serde_json::from_str(&ok(
        &server.cli(&["resource", "snapshots", &db, "--json"]),
        "snapshots",
    ))
    .expect("snapshots json");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].status, "available");
    assert!(snaps[0].size_bytes.unwrap_or(0) > 0);
    let id = snaps[0].id.to_string();
    ok(
        &server.cli(&["resource", "restore", &id, "--to", &copy, "--wait"]),
        "restore",
    );
    assert_eq!(show(&server, &copy).restored_from, Some(snaps[0].id));
    ok(
        &server.cli(&["resource", "attach", &copy, &env, "--as", "COPY", "--wait"]),
        "attach copy",
    );
    assert_eq!(
        get_json(&server, &host, "/list?db=copy").await["items"],
        json!(["apple", "bread"])
    );
    assert_eq!(
        get_json(&server, &host, "/list").await["items"],
        json!(["apple", "bread", "cheese"])
    );

    // Viewers see masked credentials.
    add_user(&server, "vic", "viewer", "vic-password");
    let vic = login(&server, "vic", "vic-password").await;
    let (s, body) = call(
        &server,
        Some(&vic),
        "GET",
        &format!("/api/v1/apps/{app}/resources/{db}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["password"], "********");
    assert!(
        !body.to_string().contains(&r.password),
        "the password leaked to a viewer"
    );
    let (s, _) = call(
        &server,
        Some(&vic),
        "POST",
        &format!("/api/v1/apps/{app}/resources/{db}/snapshots"),
        None,
    )
    .await;
    assert_eq!(s, 403);

    // Bad input: clear errors, nothing changed.
    let before = ok(
        &server.cli(&["resources", "--app", &app, "--json"]),
        "resources",
    );
    fails_with(
        &server.cli(&[
            "resource", "create", "x1", "--app", &app, "--kind", "mongodb",
        ]),
        "unknown resource kind 'mongodb'",
    );
    fails_with(
        &server.cli(&["resource", "create", &db, "--app", &app, "--kind", "redis"]),
        "already exists",
    );
    fails_with(&server.cli(&["resource", "delete", &db]), "detach it first");
    let (s, body) = call(
        &server,
        Some(&server.token),
        "DELETE",
        &format!("/api/v1/apps/{app}/resources/{db}"),
        None,
    )
    .await;
    assert_eq!(s, 409, "{body}");
    fails_with(
        &server.cli(&["resource", "restore", "999999", "--to", "nope-x"]),
        "snapshot 999999 not found",
    );
    fails_with(
        &server.cli(&["resource", "attach", &db, &env, "--as", "X"]),
        "already attached",
    );
    let other = unique("resother");
    ok(&server.cli(&["app", "create", &other]), "app create other");
    let stranger = unique("stranger");
    ok(
        &server.cli(&[
            "resource", "create", &stranger, "--app", &other, "--kind", "postgres",
        ]),
        "create stranger",
    );
    fails_with(
        &server.cli(&["resource", "attach", &stranger, &env]),
        "a resource attaches only to environments of its application",
    );
    let after = ok(
        &server.cli(&["resources", "--app", &app, "--json"]),
        "resources",
    );
    let strip = |s: &str| -> Vec<(String, String, usize)> {
        let v: Vec<Resource> = serde_json::from_str(s).expect("json");
        v.into_iter()
            .map(|r| (r.name, r.status.to_string(), r.attachments.len()))
            .collect()
    };
    assert_eq!(strip(&before), strip(&after), "bad input changed something");

    // Detach and delete the copy: the environment rolls without COPY_*, the container and its
    // data go; the snapshot stays.
    ok(
        &server.cli(&["resource", "detach", &copy, &env, "--wait"]),
        "detach",
    );
    let vars = get_json(&server, &host, "/vars").await;
    assert!(!vars.to_string().contains("COPY_"), "{vars}");
    ok(
        &server.cli(&[
            "resource",
            "delete",
            &copy,
            "--skip-final-snapshot",
            "--wait",
        ]),
        "delete",
    );
    let copy_container = format!("sprout-res-{app}-{copy}");
    assert!(docker_lines(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("name=^{copy_container}$")
    ])
    .is_empty());
    assert!(docker_lines(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{copy_container}$")
    ])
    .is_empty());
    let snaps: Vec<Snapshot> = serde_json::from_str(&ok(
        &server.cli(&["resource", "snapshots", &db, "--json"]),
        "snapshots",
    ))
    .expect("json");
    assert_eq!(snaps.len(), 1, "the snapshot outlives the restored copy");
}
