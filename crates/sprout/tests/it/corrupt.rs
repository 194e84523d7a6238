//! A corrupt record: an environment whose stored tier is garbage is reported as such (CLI,
//! API problem+json naming the row), never taken for a web environment, and left alone by
//! the control loops (its instance is not reaped as an orphan), while another environment
//! of the same server goes on serving.

use crate::auth::call;
use crate::harness::*;
use sprout_core::api::CreateEnvironment;
use sprout_core::EnvStatus;
use std::time::Duration;

async fn launch(server: &TestServer, app: &str, env: &str) {
    server
        .client
        .create_environment(&CreateEnvironment {
            name: env.to_string(),
            app: app.to_string(),
            version: "v1".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create {env}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_environment_is_an_error_and_left_alone_while_another_serves() {
    let server = TestServer::start().await;
    let app = unique("rot");
    let (bad, good) = (unique("rotbad"), unique("rotgood"));
    let out = server.cli(&["app", "create", &app]);
    assert!(out.status.success(), "app create: {}", stderr(&out));
    push(&server, &testapp_dir(), &app, "v1");
    launch(&server, &app, &bad).await;
    launch(&server, &app, &good).await;
    for env in [&bad, &good] {
        let detail = wait_ready(&server, env, Duration::from_secs(120)).await;
        assert_eq!(detail.environment.status, EnvStatus::Ready, "{env}");
    }
    let bad_containers = server.containers(&format!("sprout.env={bad}"));
    assert_eq!(bad_containers.len(), 1, "one instance of {bad}");

    // Corrupt one row behind the server's back.
    let bad_id = {
        let store = sprout_store::Store::open(&server.data.join("sprout.db"))
            .await
            .expect("store");
        let (id,): (i64,) =
            sqlx::query_as("UPDATE environments SET tier = 'bogus' WHERE name = ? RETURNING id")
                .bind(&bad)
                .fetch_one(store.pool())
                .await
                .expect("corrupt the tier");
        store.close().await;
        id
    };

    // The CLI: one clear line naming the row and the field, non-zero exit.
    let out = server.cli(&["status", &bad]);
    assert!(!out.status.success(), "status of a corrupt env succeeded");
    let err = stderr(&out);
    for needle in ["environments", &bad_id.to_string(), "tier", "bogus"] {
        assert!(err.contains(needle), "'{needle}' not in: {err}");
    }
    assert!(!stdout(&out).contains("web"), "taken for a web environment");

    // The API: problem+json, 500, type corrupt-record, the row named.
    let (status, body) = call(
        &server,
        Some(&server.token),
        "GET",
        &format!("/api/v1/environments/{bad}"),
        None,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["type"], "https://sprout.dev/problems/corrupt-record",
        "{body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("tier") && detail.contains(&bad_id.to_string()),
        "{body}"
    );

    // The other environment is fine and serves through the balancer.
    let out = server.cli(&["status", &good]);
    assert!(out.status.success(), "status {good}: {}", stderr(&out));
    let served = eventually(Duration::from_secs(20), || async {
        let r = server
            .get_via_balancer(&server.host(&good), "/")
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(served.is_some(), "{good} does not serve");

    // The reconciler left the corrupt one alone (its instance is no orphan) and said why,
    // once, in its events (read straight from the store: the API refuses the row).
    let said = eventually(Duration::from_secs(20), || async {
        let store = sprout_store::Store::open(&server.data.join("sprout.db"))
            .await
            .ok()?;
        let events = store.env_events(bad_id, 0, 100).await.ok()?;
        store.close().await;
        let n = events
            .iter()
            .filter(|e| e.message.contains("leaves this environment alone"))
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(said, Some(1), "the reconciler reports the corrupt row once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.containers(&format!("sprout.env={bad}")),
        bad_containers,
        "the corrupt environment's instance was touched"
    );

    // Mended, it is an ordinary environment again (and can be terminated).
    let store = sprout_store::Store::open(&server.data.join("sprout.db"))
        .await
        .expect("store");
    sqlx::query("UPDATE environments SET tier = 'web' WHERE id = ?")
        .bind(bad_id)
        .execute(store.pool())
        .await
        .expect("mend");
    store.close().await;
    let detail = server.client.get_environment(&bad).await.expect("mended");
    assert_eq!(detail.environment.tier, sprout_core::Tier::Web);
    for env in [&bad, &good] {
        let out = server.cli(&["terminate", env, "--wait"]);
        assert!(out.status.success(), "terminate {env}: {}", stderr(&out));
    }
}
