//! Resources are visible where environments are: an attached redis shows, with its health,
//! in `sprout status` (text and `--json`), `sprout health`, the dashboard's environment and
//! application pages and the environment's architecture picture; when its engine stops, the
//! health check turns it unhealthy and the environment's health names it.

use crate::dashboard::{http_session, page_text};
use crate::harness::*;
use crate::resources::ok;
use sprout_core::api::{EnvironmentDetail, HealthReport};
use sprout_core::resource::{AttachmentState, ResourceKind, ResourceStatus};
use sprout_core::HealthStatus;
use std::time::Duration;

fn status_json(server: &TestServer, env: &str) -> EnvironmentDetail {
    let out = server.cli(&["status", env, "--json"]);
    serde_json::from_str(&ok(&out, "status --json")).expect("status json")
}

fn health_json(server: &TestServer, env: &str) -> HealthReport {
    let out = server.cli(&["health", env, "--json"]);
    serde_json::from_str(&ok(&out, "health --json")).expect("health json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attached_redis_shows_in_status_health_and_dashboard() {
    if let Err(missing) = sprout_testkit::docker_ready(&["sprout/resource-redis"]) {
        panic!("resource image missing ({missing:?}): run docker/build-platform.sh redis (.ci/run does)");
    }
    let server = TestServer::start().await;
    let app = unique("visapp");
    let env = unique("visweb");
    let cache = unique("cache");
    ok(&server.cli(&["app", "create", &app]), "app create");
    push(&server, &testapp_dir(), &app, "v1");
    ok(
        &server.cli(&[
            "env",
            "create",
            &env,
            "--app",
            &app,
            "--version",
            "v1",
            "--wait",
        ]),
        "env create",
    );
    // Nothing attached yet: the JSON says so, the text has no Resources section.
    assert!(status_json(&server, &env).resources.is_empty());
    ok(
        &server.cli(&[
            "resource", "create", &cache, "--app", &app, "--kind", "redis", "--wait",
        ]),
        "resource create",
    );
    ok(
        &server.cli(&[
            "resource", "attach", &cache, &env, "--as", "SESSIONS", "--wait",
        ]),
        "attach",
    );

    // `sprout status --json`: the resource, its kind, status, prefix and (within a few
    // checks) its health.
    let detail = eventually(Duration::from_secs(60), || async {
        let d = status_json(&server, &env);
        (d.resources.first()?.health.as_deref() == Some("healthy")).then_some(d)
    })
    .await
    .expect("the attached resource never showed healthy in `sprout status --json`");
    assert_eq!(detail.resources.len(), 1);
    let r = &detail.resources[0];
    assert_eq!(r.name, cache);
    assert_eq!(r.kind, ResourceKind::Redis);
    assert_eq!(r.status, ResourceStatus::Available);
    assert_eq!(r.prefix.as_deref(), Some("SESSIONS"));
    assert_eq!(r.attachment, AttachmentState::Attached);
    assert!(r.health_checked_at.is_some());

    // `sprout status` (text): a resources table after the instances.
    let text = ok(&server.cli(&["status", &env]), "status");
    let section = text
        .split("\n\nresources\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no resources section:\n{text}"));
    let row = section
        .lines()
        .find(|l| l.contains(&cache))
        .unwrap_or_else(|| panic!("no row for {cache}:\n{text}"));
    for cell in ["redis", "Available", "healthy", "SESSIONS", "attached"] {
        assert!(row.contains(cell), "{cell} in {row}");
    }

    // `sprout health`: the resource next to the instances; a healthy one is no cause.
    let h = health_json(&server, &env);
    assert_eq!(h.resources.len(), 1);
    assert_eq!(h.resources[0].health.as_deref(), Some("healthy"));
    assert!(
        !h.causes.iter().any(|c| c.contains(&cache)),
        "{:?}",
        h.causes
    );
    let text = ok(&server.cli(&["health", &env]), "health");
    assert!(text.contains("\n\nresources\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(&cache) && l.contains("healthy")),
        "{text}"
    );

    // The dashboard: the environment page lists it with its health, and the picture draws
    // it behind the instances inside its security group; the application page lists it.
    let (admin, status, _) = http_session(&server.api, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let page = page_text(&admin, &format!("{}/envs/{env}", server.api)).await;
    let row = page
        .split(&format!("<tr data-resource=\"{cache}\">"))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for {cache} on the environment page:\n{page}"));
    for cell in [
        ">redis<",
        ">Available<",
        ">healthy<",
        ">SESSIONS<",
        ">attached<",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    let picture = page
        .split("<svg class=\"arch\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no architecture picture:\n{page}"));
    assert!(
        picture.contains(&format!("{cache} · redis")),
        "the picture lacks the resource: {picture}"
    );
    assert!(picture.contains("Available, healthy"), "{picture}");
    assert!(
        picture.contains("security group: resources (from this environment&#39;s instances only)"),
        "{picture}"
    );
    assert!(
        picture.contains("security group: instances (from the balancer"),
        "{picture}"
    );
    let app_page = page_text(&admin, &format!("{}/apps/{app}", server.api)).await;
    assert!(
        app_page.contains(&format!("data-resource=\"{cache}\"")),
        "the application page lacks the resource"
    );
    assert!(app_page.contains(&format!("<a href=\"/envs/{env}\">{env}</a></td></tr>")));

    // The engine stops: the health check turns it unhealthy, and the environment's health
    // becomes a warning naming it, in `sprout health` and the dashboard.
    let container = format!("sprout-res-{app}-{cache}");
    docker_lines(&["stop", &container]);
    let h = eventually(Duration::from_secs(60), || async {
        let h = health_json(&server, &env);
        (h.resources.first()?.health.as_deref() == Some("unhealthy")).then_some(h)
    })
    .await
    .expect("a stopped engine stayed healthy in `sprout health`");
    let cause = format!("resource {cache} (redis) is failing its health checks");
    assert!(h.causes.contains(&cause), "{:?}", h.causes);
    assert!(
        !matches!(h.health, HealthStatus::Ok | HealthStatus::Info),
        "an unhealthy resource left the environment {}",
        h.health
    );
    let text = ok(&server.cli(&["health", &env]), "health");
    let head: Vec<&str> = text.lines().take(4).collect();
    assert!(head.iter().any(|l| l.trim() == cause), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(&cache) && l.contains("unhealthy")),
        "{text}"
    );
    let page = page_text(&admin, &format!("{}/envs/{env}", server.api)).await;
    assert!(
        page.contains(">unhealthy<"),
        "the table lacks the new health"
    );
    assert!(
        page.contains("Available, unhealthy"),
        "the picture lacks it"
    );
}
