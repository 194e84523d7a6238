//! Resources' automated backups and read replicas through the real binary, Docker and
//! PostgreSQL: a backup schedule every few seconds (a six-field cron with seconds) makes
//! snapshots listed as taken by the schedule and pruned to `--keep` while a user's snapshot
//! stays; a streaming replica serves DATABASE_READ_URL and is promoted to primary, attached
//! instances then writing to it.

use crate::auth::call;
use crate::harness::*;
use crate::resources::{dbapp_dir, fails_with, get_json, ok, require_resource_images, show};
use serde_json::json;
use sprout_core::api::CreateEnvironment;
use sprout_core::resource::api::{ResourceEvent, Snapshot};
use sprout_core::resource::ResourceStatus;
use sprout_core::Mode;
use std::time::{Duration, Instant};

fn snapshots(server: &TestServer, name: &str) -> Vec<Snapshot> {
    serde_json::from_str(&ok(
        &server.cli(&["resource", "snapshots", name, "--json"]),
        "snapshots",
    ))
    .expect("snapshots json")
}

fn events(server: &TestServer, name: &str) -> Vec<String> {
    let out = ok(
        &server.cli(&["resource", "events", name, "--json"]),
        "events",
    );
    let events: Vec<ResourceEvent> = serde_json::from_str(&out).expect("events json");
    events.into_iter().map(|e| e.message).collect()
}

/// `psql` as the engine's superuser inside one of the resource's containers.
fn psql_in(container: &str, sql: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "exec", "-u", "postgres", container, "psql", "-h", "/tmp", "-tA", "-d", "postgres",
            "-c", sql,
        ])
        .output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "psql in {container}: {}",
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_automated_backups_keep_the_newest() {
    require_resource_images();
    let server = TestServer::start().await;
    let app = unique("bkapp");
    let db = unique("bkdb");
    ok(&server.cli(&["app", "create", &app]), "app create");

    // Bad schedules and counts: clear errors, nothing created.
    fails_with(
        &server.cli(&[
            "resource",
            "create",
            &db,
            "--app",
            &app,
            "--kind",
            "postgres",
            "--backup",
            "61 * * * *",
        ]),
        "backup schedule '61 * * * *'",
    );
    fails_with(
        &server.cli(&[
            "resource",
            "create",
            &db,
            "--app",
            &app,
            "--kind",
            "postgres",
            "--backup",
            "0 3 * * *",
            "--keep",
            "0",
        ]),
        "--keep must be between 1 and 100",
    );
    let (s, body) = call(
        &server,
        Some(&server.token),
        "POST",
        &format!("/api/v1/apps/{app}/resources"),
        Some(json!({"name": db, "kind": "postgres", "keep": 3})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("--keep needs a backup schedule"),
        "{body}"
    );
    let none = ok(&server.cli(&["resources", "--app", &app, "--json"]), "list");
    assert_eq!(none.trim(), "[]");

    // A backup every 3 seconds, keeping 2.
    ok(
        &server.cli(&[
            "resource",
            "create",
            &db,
            "--app",
            &app,
            "--kind",
            "postgres",
            "--size",
            "nano",
            "--backup",
            "*/3 * * * * *",
            "--keep",
            "2",
            "--wait",
        ]),
        "resource create",
    );
    let r = show(&server, &db);
    let backups = r.backups.expect("backups shown");
    assert_eq!(
        (backups.schedule.as_str(), backups.keep),
        ("*/3 * * * * *", 2)
    );
    let text = ok(&server.cli(&["resource", "show", &db]), "show");
    assert!(
        text.contains("backups   '*/3 * * * * *' (UTC), keeping the newest 2"),
        "{text}"
    );

    // A user's snapshot (retried while a scheduled one runs): never pruned.
    let deadline = Instant::now() + Duration::from_secs(60);
    let manual = loop {
        let out = server.cli(&["resource", "snapshot", &db, "--wait"]);
        if out.status.success() {
            let snaps = snapshots(&server, &db);
            break snaps
                .iter()
                .filter(|s| !s.automated)
                .map(|s| s.id)
                .max()
                .expect("the user's snapshot");
        }
        assert!(
            stderr(&out).contains("Snapshotting"),
            "snapshot: {}",
            stderr(&out)
        );
        assert!(Instant::now() < deadline, "no free moment for a snapshot");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Wait until the schedule made at least 4 snapshots, so at least 2 were pruned.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (kept, pruned) = loop {
        let snaps = snapshots(&server, &db);
        let kept: Vec<i64> = snaps
            .iter()
            .filter(|s| s.automated && s.status == "available")
            .map(|s| s.id)
            .collect();
        assert!(
            kept.len() <= 3,
            "more than keep (+1 being pruned): {snaps:?}"
        );
        let pruned: Vec<i64> = events(&server, &db)
            .iter()
            .filter_map(|m| {
                m.strip_prefix("snapshot ")?
                    .strip_suffix(" pruned (automated backups keep the newest 2)")?
                    .parse()
                    .ok()
            })
            .collect();
        if pruned.len() >= 2 && kept.len() == 2 {
            break (kept, pruned);
        }
        assert!(
            Instant::now() < deadline,
            "no pruning: {snaps:?} {:?}",
            events(&server, &db)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let snaps = snapshots(&server, &db);
    assert!(
        snaps
            .iter()
            .any(|s| s.id == manual && !s.automated && s.status == "available"),
        "the user's snapshot was pruned: {snaps:?}"
    );
    // The newest are kept; the pruned are gone from the list and from the data directory.
    assert!(
        kept.iter().all(|k| pruned.iter().all(|p| k > p)),
        "{kept:?} {pruned:?}"
    );
    for p in &pruned {
        assert!(snaps.iter().all(|s| s.id != *p), "{p} still listed");
    }
    let files: Vec<String> = std::fs::read_dir(server.data.join("snapshots"))
        .expect("snapshots dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for p in &pruned {
        assert!(
            !files.iter().any(|f| f.starts_with(&format!("{p}-"))),
            "{p}'s file stayed: {files:?}"
        );
    }
    assert!(files.iter().any(|f| f.starts_with(&format!("{manual}-"))));
    let table = ok(&server.cli(&["resource", "snapshots", &db]), "snapshots");
    assert!(
        table.contains("backup schedule") && table.contains("user"),
        "{table}"
    );
    let all = events(&server, &db);
    assert!(
        all.iter()
            .any(|m| m.starts_with("scheduled backup: snapshot")),
        "{all:?}"
    );

    // Health: checked every few seconds once Available; an engine that stops answering is
    // unhealthy (an event, and in `resources`), and healthy again once it answers.
    let health = |want: &'static str| {
        let server = &server;
        let db = db.clone();
        async move {
            eventually(Duration::from_secs(60), || async {
                (show(server, &db).health.as_deref() == Some(want)).then_some(())
            })
            .await
            .is_some()
        }
    };
    assert!(health("healthy").await, "never healthy");
    let container = format!("sprout-res-{app}-{db}");
    docker_lines(&["stop", &container]);
    assert!(health("unhealthy").await, "a stopped engine stayed healthy");
    let table = ok(&server.cli(&["resources", "--app", &app]), "resources");
    assert!(table.contains("unhealthy"), "{table}");
    docker_lines(&["start", &container]);
    assert!(health("healthy").await, "never healthy again");
    let all = events(&server, &db);
    assert!(all.iter().any(|m| m.starts_with("unhealthy: ")), "{all:?}");
    assert!(all.iter().any(|m| m == "healthy again"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_read_replica_serves_reads_and_is_promoted() {
    require_resource_images();
    let server = TestServer::start().await;
    let app = unique("rpapp");
    let env = unique("rpweb");
    let db = unique("ledger");
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
                let mut s = crate::deploys::fast_settings();
                s.insert("health_grace".into(), "60s".into());
                s
            },
            ..Default::default()
        })
        .await
        .expect("create env");

    // Replicas are for postgres only.
    let cache = unique("cache");
    fails_with(
        &server.cli(&[
            "resource",
            "create",
            &cache,
            "--app",
            &app,
            "--kind",
            "redis",
            "--replicas",
            "1",
        ]),
        "read replicas are for postgres resources only; a redis resource cannot have any",
    );
    let (s, body) = call(
        &server,
        Some(&server.token),
        "POST",
        &format!("/api/v1/apps/{app}/resources"),
        Some(json!({"name": cache, "kind": "mysql", "replicas": 2})),
    )
    .await;
    assert_eq!(s, 400, "{body}");

    ok(
        &server.cli(&[
            "resource",
            "create",
            &db,
            "--app",
            &app,
            "--kind",
            "postgres",
            "--size",
            "nano",
            "--replicas",
            "1",
            "--wait",
        ]),
        "resource create",
    );
    wait_ready(&server, &env, Duration::from_secs(120)).await;
    let host = server.host(&env);
    let r = show(&server, &db);
    assert_eq!(r.replicas.len(), 1, "{r:?}");
    assert_eq!(r.replicas[0].host, format!("{db}-r1"));
    assert_eq!(r.read_host.as_deref(), Some(format!("{db}-read").as_str()));
    assert!(r.variables["DATABASE_READ_URL"].contains(&format!("@{db}-read:5432/")));
    let primary = format!("sprout-res-{app}-{db}");
    let replica = format!("{primary}-r1");
    assert_eq!(psql_in(&replica, "SELECT pg_is_in_recovery()"), "t");
    assert!(
        docker_lines(&["port", &replica]).is_empty(),
        "a replica publishes a port"
    );

    ok(
        &server.cli(&["resource", "attach", &db, &env, "--as", "LEDGER", "--wait"]),
        "attach",
    );
    let vars = get_json(&server, &host, "/vars").await;
    for v in [
        "LEDGER_DATABASE_READ_URL",
        "LEDGER_RDS_READ_HOSTNAME",
        "LEDGER_DATABASE_URL",
    ] {
        assert!(
            vars["vars"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(v))),
            "{v}: {vars}"
        );
    }

    // A row written to the primary is read from the replica (DATABASE_READ_URL).
    get_json(&server, &host, "/add?name=apple&db=ledger").await;
    // Replication is asynchronous: until the replica has the table, the read is a 503.
    let read = eventually(Duration::from_secs(30), || async {
        let r = server
            .get_via_balancer(&host, "/list?db=ledger&read=1")
            .await
            .ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        (body["items"] == json!(["apple"])).then_some(body)
    })
    .await;
    assert!(read.is_some(), "the replica never had the row");
    assert_eq!(
        psql_in(&replica, "SELECT count(*) FROM pg_stat_wal_receiver"),
        "1"
    );

    // Promote: a missing replica is refused; replica 1 becomes the primary.
    fails_with(
        &server.cli(&["resource", "promote", &db, "--replica", "2"]),
        "has no replica 2 (its replicas: 1)",
    );
    ok(
        &server.cli(&["resource", "promote", &db, "--replica", "1", "--wait"]),
        "promote",
    );
    let r = show(&server, &db);
    assert_eq!(r.status, ResourceStatus::Available);
    assert_eq!(r.host, format!("{db}-r1"));
    assert!(r.replicas.is_empty() && r.read_host.is_none(), "{r:?}");
    assert_eq!(psql_in(&replica, "SELECT pg_is_in_recovery()"), "f");
    assert!(
        docker_lines(&["ps", "-aq", "--filter", &format!("name=^{primary}$")]).is_empty(),
        "the old primary stayed"
    );
    let vars = get_json(&server, &host, "/vars").await;
    assert!(!vars.to_string().contains("READ"), "{vars}");
    // Writes now go to the new primary, which has the old one's rows.
    get_json(&server, &host, "/add?name=bread&db=ledger").await;
    assert_eq!(
        get_json(&server, &host, "/list?db=ledger").await["items"],
        json!(["apple", "bread"])
    );
    let all = events(&server, &db);
    assert!(
        all.iter()
            .any(|m| m.contains("replica 1 promoted; the primary is now")),
        "{all:?}"
    );

    // Delete: the promoted primary, its volume and the private network go.
    ok(
        &server.cli(&["resource", "detach", &db, &env, "--wait"]),
        "detach",
    );
    ok(
        &server.cli(&["resource", "delete", &db, "--skip-final-snapshot", "--wait"]),
        "delete",
    );
    assert!(docker_lines(&["ps", "-aq", "--filter", &format!("name={primary}")]).is_empty());
    assert!(docker_lines(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{primary}$")
    ])
    .is_empty());
    assert!(
        docker_lines(&["volume", "ls", "-q", "--filter", &format!("name={primary}")]).is_empty()
    );
}
