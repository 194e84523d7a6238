//! What a new user hits in the first hour (issue 19): read verbs take the application either
//! way, and the server's log says each thing once.

use crate::harness::{require_docker, unique, TestServer, ADMIN_PASSWORD};
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
