//! What a new user hits in the first hour (issue 19): read verbs take the application either
//! way, and the server's log says each thing once.

use crate::harness::{
    eventually, example_dir, push, require_docker, unique, TestServer, ADMIN_PASSWORD,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ok_stdout(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn read_verbs_take_the_app_as_argument_or_flag() {
    let server = TestServer::start().await;
    let app = unique("fh-args");
    ok_stdout(&server.cli(&["app", "create", &app]), "app create");

    let positional = ok_stdout(&server.cli(&["versions", &app, "--json"]), "versions APP");
    let flag = ok_stdout(
        &server.cli(&["versions", "--app", &app, "--json"]),
        "versions --app APP",
    );
    assert_eq!(positional, flag);
    assert_eq!(positional.trim(), "[]", "a new app has no versions");
    // A missing app is named either way, not "unexpected argument".
    let ghost = unique("fh-ghost");
    let out = server.cli(&["versions", &ghost]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&ghost), "{err}");
    assert!(!err.contains("unexpected argument"), "{err}");
    // Both at once is refused.
    assert!(!server
        .cli(&["versions", &app, "--app", &app])
        .status
        .success());

    let positional = ok_stdout(&server.cli(&["envs", &app, "--json"]), "envs APP");
    let flag = ok_stdout(
        &server.cli(&["envs", "--app", &app, "--json"]),
        "envs --app APP",
    );
    assert_eq!(positional, flag);
    assert_eq!(positional.trim(), "[]", "a new app has no environments");
}

/// Runs the real server with stdout and stderr into one file (as a terminal shows them),
/// stops it, and checks that no address is announced twice.
#[test]
fn server_log_says_each_line_once() {
    require_docker();
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = sprout_testkit::server_command(
        std::path::Path::new(env!("CARGO_BIN_EXE_sprout")),
        &dir.path().join("data"),
        ADMIN_PASSWORD,
    )
    .env("SPROUT_HANDOVER_WAIT", "0")
    .env("NO_COLOR", "1")
    .stdout(Stdio::from(log.try_clone().expect("clone log")))
    .stderr(Stdio::from(log))
    .spawn()
    .expect("start sprout server");
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !read().contains("server id ") {
        assert!(
            Instant::now() < deadline,
            "no addresses in 30 s:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1)); // the loops log their start
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("server exit");
    assert!(status.success(), "server exited with {status}");
    let text = read();

    let address = |prefix: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no '{prefix}' line:\n{text}"))
            .trim_start_matches("http://")
            .to_string()
    };
    for prefix in [
        "api listening on ",
        "balancer listening on ",
        "sqs listening on ",
    ] {
        let addr = address(prefix);
        // Announced once while starting ("balancer stopped addr=…" at the end is news).
        let starting = text.split(" stopping").next().unwrap_or_default();
        assert_eq!(
            starting.matches(&addr).count(),
            1,
            "{addr} ({prefix}) is said more than once:\n{text}"
        );
    }
    assert_eq!(text.matches("listening").count(), 3, "{text}");
    // No message is logged twice in a row (a log line printed by two paths).
    let messages: Vec<&str> = text
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, m)| m))
        .collect();
    for pair in messages.windows(2) {
        assert_ne!(pair[0], pair[1], "said twice:\n{text}");
    }
}

/// A launch's events read like Beanstalk's: it starts, each instance starts once, it ends
/// with "Successfully launched environment: NAME", and health goes from Pending to Ok with
/// no "operation in progress" step in between.
#[tokio::test]
async fn a_launch_reads_like_beanstalks() {
    let server = TestServer::start().await;
    let app = unique("fh-ev");
    let env = unique("fh-ev");
    assert!(server.cli(&["app", "create", &app]).status.success());
    push(&server, &example_dir(), &app, "v1");
    let out = server.cli(&[
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--instances",
        "2",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "env create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = eventually(Duration::from_secs(30), || async {
        let mut events = server.client.events(&env, Some(100)).await.ok()?;
        events.sort_by_key(|e| e.id);
        let messages: Vec<String> = events.into_iter().map(|e| e.message).collect();
        messages
            .iter()
            .any(|m| m.contains("health has transitioned"))
            .then_some(messages)
    })
    .await
    .expect("a health transition after the launch");
    let all = messages.join("\n");
    assert!(
        messages[0].starts_with("createEnvironment is starting"),
        "{all}"
    );
    let started: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("started instance"))
        .collect();
    assert_eq!(started.len(), 2, "one event per instance start:\n{all}");
    let mut ids: Vec<&str> = started
        .iter()
        .filter_map(|m| m.split_whitespace().nth(2))
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "two different instances:\n{all}");
    let launched = messages
        .iter()
        .position(|m| m.starts_with(&format!("Successfully launched environment: {env}")))
        .unwrap_or_else(|| panic!("no 'Successfully launched environment':\n{all}"));
    assert!(
        messages[..launched]
            .iter()
            .all(|m| !m.contains("health has transitioned")),
        "the launch ends before any health transition:\n{all}"
    );
    assert_eq!(
        messages[launched + 1],
        "environment health has transitioned from Pending to Ok (Green)",
        "{all}"
    );
    assert!(!all.contains("operation is in progress"), "{all}");

    let out = server.cli(&["terminate", &env, "--wait"]);
    assert!(out.status.success(), "terminate");
}

/// A version whose build failed does not hold its label: pushing the label again replaces
/// it; a label that built stays taken.
#[tokio::test]
async fn a_failed_label_can_be_pushed_again() {
    let server = TestServer::start().await;
    let app = unique("fh-fail");
    assert!(server.cli(&["app", "create", &app]).status.success());
    let broken = tempfile::tempdir().expect("temp dir");
    std::fs::write(broken.path().join("Procfile"), "web: python3 app.py\n").expect("write");
    std::fs::write(broken.path().join("app.py"), "print('hi')\n").expect("write");
    std::fs::write(
        broken.path().join("sprout.yaml"),
        "platform: python\nbuild: exit 3\n",
    )
    .expect("write");
    let push_v1 = |dir: &std::path::Path| {
        server.cli(&[
            "push",
            dir.to_str().unwrap_or_default(),
            "--app",
            &app,
            "--label",
            "v1",
        ])
    };
    assert!(
        !push_v1(broken.path()).status.success(),
        "a build that exits 3"
    );
    let failed = server.client.get_version(&app, "v1").await.expect("row");
    assert_eq!(failed.status, sprout_core::VersionStatus::Failed);

    let out = push_v1(&example_dir());
    assert!(
        out.status.success(),
        "re-push of a failed label: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let versions = server.client.list_versions(&app).await.expect("versions");
    assert_eq!(
        versions.len(),
        1,
        "the failed row is replaced: {versions:?}"
    );
    assert_eq!(versions[0].status, sprout_core::VersionStatus::Ready);
    assert_ne!(versions[0].sha256, failed.sha256, "the new bundle");

    // A label that built is still taken.
    let out = push_v1(&example_dir());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
}

/// `sprout version delete APP LABEL`: refused (409, naming the environment) while an
/// environment runs the version; otherwise the row, the bundle and the image are gone.
#[tokio::test]
async fn a_version_is_deleted_unless_an_environment_runs_it() {
    let server = TestServer::start().await;
    let app = unique("fh-del");
    let env = unique("fh-del");
    assert!(server.cli(&["app", "create", &app]).status.success());
    push(&server, &example_dir(), &app, "v1");
    let out = server.cli(&[
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--wait",
    ]);
    assert!(out.status.success(), "env create");

    // In use: refused through the CLI and the REST API, nothing changed.
    let out = server.cli(&["version", "delete", &app, "v1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&env) && err.contains("in use"), "{err}");
    let resp = crate::harness::http_client()
        .delete(format!("{}/api/v1/apps/{app}/versions/v1", server.api))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 409);
    let problem: serde_json::Value = resp.json().await.expect("problem+json");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&env),
        "{problem}"
    );
    let v1 = server
        .client
        .get_version(&app, "v1")
        .await
        .expect("v1 kept");

    // Not in use: deleted, with its bundle and image.
    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(example_dir()).expect("example") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
        }
    }
    std::fs::write(copy.path().join("extra.txt"), "another bundle\n").expect("write");
    push(&server, copy.path(), &app, "v2");
    let v2 = server.client.get_version(&app, "v2").await.expect("v2");
    assert_ne!(v2.sha256, v1.sha256);
    let image = v2.image.clone().expect("v2 built an image");
    let bundle = server.data.join("bundles").join(&v2.sha256);
    assert!(bundle.exists(), "{}", bundle.display());
    let out = server.cli(&["version", "delete", &app, "v2"]);
    assert!(
        out.status.success(),
        "delete v2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels: Vec<String> = server
        .client
        .list_versions(&app)
        .await
        .expect("versions")
        .into_iter()
        .map(|v| v.label)
        .collect();
    assert_eq!(labels, ["v1"]);
    assert!(!bundle.exists(), "bundle reclaimed");
    assert!(
        crate::harness::docker_lines(&["images", "-q", &image]).is_empty(),
        "image {image} reclaimed"
    );
    assert!(server.data.join("bundles").join(&v1.sha256).exists());
    assert!(!server
        .cli(&["version", "delete", &app, "v2"])
        .status
        .success());

    assert!(server.cli(&["terminate", &env, "--wait"]).status.success());
}
