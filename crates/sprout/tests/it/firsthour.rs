//! What a new user hits in the first hour (issue 19): read verbs take the application either
//! way.

use crate::harness::{unique, TestServer};

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
