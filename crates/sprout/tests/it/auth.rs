//! Users and roles, API tokens (expiry, revocation), logout, the login throttle and the
//! audit log, through the real binary and its CLI.

use crate::harness::*;
use serde_json::{json, Value};
use sprout_cli::Client;
use sprout_core::api::problem_types as types;

pub(crate) async fn status_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(
            ctype, "application/problem+json",
            "errors are problems: {body}"
        );
    }
    (status, body)
}

pub(crate) async fn call(
    server: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http_client().request(method, format!("{}{path}", server.api));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    status_of(req.send().await.expect("answered")).await
}

pub(crate) async fn login(server: &TestServer, name: &str, password: &str) -> String {
    Client::new(&server.api, None)
        .login(name, password)
        .await
        .unwrap_or_else(|e| panic!("login {name}: {e}"))
        .token
}

/// Runs a CLI verb as the holder of `token`.
pub(crate) fn cli_as(server: &TestServer, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sprout"))
        .args(args)
        .env("SPROUT_URL", &server.api)
        .env("SPROUT_TOKEN", token)
        .env("SPROUT_CONFIG_DIR", server.config_dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sprout")
}

#[tokio::test]
async fn roles_decide_what_each_user_may_do_and_every_change_is_audited() {
    let server = TestServer::start().await;
    add_user(&server, "dora", "deployer", "dora-password");
    add_user(&server, "vic", "viewer", "vic-password");

    let users: Value =
        serde_json::from_str(&stdout(&server.cli(&["user", "list", "--json"]))).expect("json");
    let roles: Vec<(String, String)> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap_or_default().into(),
                u["role"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("dora".into(), "deployer".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("vic".into(), "viewer".into())),
        "{roles:?}"
    );

    let dora = login(&server, "dora", "dora-password").await;
    let vic = login(&server, "vic", "vic-password").await;
    let app = unique("authapp");

    // No token, a forged token: 401.
    assert_eq!(
        call(&server, None, "GET", "/api/v1/apps", None).await.0,
        401
    );
    let (s, p) = call(&server, Some("not-a-jwt"), "GET", "/api/v1/apps", None).await;
    assert_eq!((s, p["type"].as_str()), (401, Some(types::UNAUTHORIZED)));

    // The viewer reads, and changes nothing.
    assert_eq!(
        call(&server, Some(&vic), "GET", "/api/v1/apps", None)
            .await
            .0,
        200
    );
    let (s, p) = call(
        &server,
        Some(&vic),
        "POST",
        "/api/v1/apps",
        Some(json!({"name": app})),
    )
    .await;
    assert_eq!(
        (s, p["type"].as_str()),
        (403, Some(types::FORBIDDEN)),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("viewer"),
        "{p}"
    );
    assert_eq!(
        call(&server, Some(&vic), "GET", "/api/v1/users", None)
            .await
            .0,
        403
    );
    let out = cli_as(&server, &vic, &["app", "create", &app]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("viewer"), "{}", stderr(&out));
    assert_eq!(
        call(
            &server,
            Some(&vic),
            "GET",
            &format!("/api/v1/apps/{app}"),
            None
        )
        .await
        .0,
        404,
        "nothing was made"
    );

    // The deployer changes apps, not users or zones.
    let (s, _) = call(
        &server,
        Some(&dora),
        "POST",
        "/api/v1/apps",
        Some(json!({"name": app})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        call(&server, Some(&dora), "GET", "/api/v1/users", None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(
            &server,
            Some(&dora),
            "POST",
            "/api/v1/users",
            Some(json!({"username": "eve", "password": "eve-password", "role": "admin"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&server, Some(&dora), "POST", "/api/v1/zones/a/fail", None)
            .await
            .0,
        403
    );
    let zones: Value = serde_json::from_str(&stdout(&server.cli(&["zone", "list", "--json"])))
        .expect("zones json");
    assert!(
        zones
            .as_array()
            .expect("zones")
            .iter()
            .all(|z| z["available"] == json!(true)),
        "{zones}"
    );

    // The audit log names who did what, refused attempts included.
    let audit: Value =
        serde_json::from_str(&stdout(&server.cli(&["audit", "--json"]))).expect("audit json");
    let entries = audit.as_array().expect("entries");
    let has = |actor: &str, path: &str, status: u64| {
        entries.iter().any(|e| {
            e["actor"] == json!(actor)
                && e["method"] == json!("POST")
                && e["path"] == json!(path)
                && e["status"] == json!(status)
        })
    };
    assert!(has("dora", "/api/v1/apps", 201), "{audit}");
    assert!(has("vic", "/api/v1/apps", 403), "{audit}");
    assert!(has("admin", "/api/v1/users", 201), "{audit}");
    assert!(
        entries.iter().all(|e| e["method"] != json!("GET")),
        "reads are not audited: {audit}"
    );
    assert_eq!(
        call(&server, Some(&dora), "GET", "/api/v1/audit", None)
            .await
            .0,
        403
    );

    // Removing a user ends its sessions at once; the last admin cannot be removed.
    let out = server.cli(&["user", "remove", "vic"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        call(&server, Some(&vic), "GET", "/api/v1/apps", None)
            .await
            .0,
        401
    );
    let out = server.cli(&["user", "remove", "admin"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("last admin"), "{}", stderr(&out));
    assert_eq!(
        call(&server, Some(&server.token), "GET", "/api/v1/users", None)
            .await
            .0,
        200
    );

    // Bad input changes nothing.
    for bad in [
        json!({"username": "Bad Name", "password": "long-enough", "role": "viewer"}),
        json!({"username": "shorty", "password": "short", "role": "viewer"}),
        json!({"username": "rooty", "password": "long-enough", "role": "root"}),
        json!({"username": "dora", "password": "long-enough", "role": "viewer"}),
    ] {
        let (s, p) = call(
            &server,
            Some(&server.token),
            "POST",
            "/api/v1/users",
            Some(bad.clone()),
        )
        .await;
        assert!(s == 400 || s == 409, "{bad} → {s} {p}");
    }
    let users: Value =
        serde_json::from_str(&stdout(&server.cli(&["user", "list", "--json"]))).expect("json");
    assert_eq!(
        users.as_array().map(Vec::len),
        Some(2),
        "admin and dora only: {users}"
    );
}

#[tokio::test]
async fn api_tokens_expire_and_revoked_tokens_stop_working_at_once() {
    let server = TestServer::start().await;
    add_user(&server, "cici", "deployer", "cici-password");
    let cici = login(&server, "cici", "cici-password").await;

    let out = cli_as(
        &server,
        &cici,
        &["token", "create", "ci", "--expires", "1h"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ci_token = stdout(&out).trim().to_string();
    assert!(
        stderr(&out).contains("shown only this once"),
        "{}",
        stderr(&out)
    );
    let app = unique("tokapp");
    assert_eq!(
        call(
            &server,
            Some(&ci_token),
            "POST",
            "/api/v1/apps",
            Some(json!({"name": app}))
        )
        .await
        .0,
        201,
        "the token carries cici's role"
    );

    let listed: Value = serde_json::from_str(&stdout(&cli_as(
        &server,
        &cici,
        &["token", "list", "--json"],
    )))
    .expect("json");
    let entry = &listed.as_array().expect("tokens")[0];
    assert_eq!(
        (
            entry["name"].as_str(),
            entry["role"].as_str(),
            entry["kind"].as_str()
        ),
        (Some("ci"), Some("deployer"), Some("api"))
    );
    assert!(
        entry.get("token").is_none(),
        "a listing never shows the token: {entry}"
    );
    assert!(!listed.to_string().contains(&ci_token));

    // Another deployer cannot revoke cici's token; cici can, and it fails on the next call.
    add_user(&server, "dan", "deployer", "dan-password");
    let dan = login(&server, "dan", "dan-password").await;
    assert_eq!(
        call(&server, Some(&dan), "DELETE", "/api/v1/tokens/ci", None)
            .await
            .0,
        404
    );
    let out = cli_as(&server, &cici, &["token", "revoke", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (s, p) = call(&server, Some(&ci_token), "GET", "/api/v1/apps", None).await;
    assert_eq!(s, 401);
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("revoked"),
        "{p}"
    );

    // A token that expires stops working when it expires.
    let out = cli_as(
        &server,
        &cici,
        &["token", "create", "brief", "--expires", "1s"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let brief = stdout(&out).trim().to_string();
    let expired = eventually(std::time::Duration::from_secs(10), || {
        let server = &server;
        let brief = brief.clone();
        async move {
            let (s, p) = call(server, Some(&brief), "GET", "/api/v1/apps", None).await;
            (s == 401).then_some(p)
        }
    })
    .await
    .expect("the 1 s token expired");
    assert!(
        expired["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{expired}"
    );

    // Bad lifetimes and duplicate names are refused.
    for args in [
        ["token", "create", "x", "--expires", "forever"],
        ["token", "create", "x", "--expires", "0d"],
    ] {
        let out = cli_as(&server, &cici, &args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("token lifetime"), "{}", stderr(&out));
    }
    let out = cli_as(&server, &cici, &["token", "create", "brief"]);
    assert!(
        stderr(&out).contains("already has a token named"),
        "{}",
        stderr(&out)
    );

    // Logout revokes the saved session on the server.
    let config = tempfile::tempdir().expect("dir");
    let run = |args: &[&str], stdin: &str| cli_saved(&server, config.path(), args, stdin);
    let out = run(
        &["login", "--user", "cici", "--password-stdin"],
        "cici-password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: Value = serde_json::from_slice(
        &std::fs::read(config.path().join("login.json")).expect("saved login"),
    )
    .expect("json");
    let session = saved["token"].as_str().expect("token").to_string();
    assert_eq!(
        call(&server, Some(&session), "GET", "/api/v1/apps", None)
            .await
            .0,
        200
    );
    let out = run(&["logout"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        call(&server, Some(&session), "GET", "/api/v1/apps", None)
            .await
            .0,
        401
    );
    assert!(!config.path().join("login.json").exists());
}

#[tokio::test]
async fn wrong_passwords_give_no_hint_and_are_rate_limited() {
    let server = TestServer::start().await;
    add_user(&server, "lou", "viewer", "lou-password");
    let attempt = |user: &'static str, password: &'static str| {
        let api = server.api.clone();
        async move {
            let resp = http_client()
                .post(format!("{api}/api/v1/login"))
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .expect("answered");
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (s, p) = status_of(resp).await;
            (
                s,
                p["detail"].as_str().unwrap_or_default().to_string(),
                retry_after,
            )
        }
    };
    let (s1, wrong_password, _) = attempt("lou", "nope").await;
    let (s2, no_such_user, _) = attempt("nobody-here", "nope").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_password, no_such_user, "no hint which part was wrong");
    for _ in 0..4 {
        assert_eq!(attempt("lou", "nope").await.0, 401);
    }
    // Five failures: even the right password is refused for now.
    let (s, detail, retry_after) = attempt("lou", "lou-password").await;
    assert_eq!(s, 429, "{detail}");
    assert!(detail.contains("too many failed logins"), "{detail}");
    let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    // Other users are not locked out by it.
    assert_eq!(attempt("admin", ADMIN_PASSWORD).await.0, 200);
}

/// A status code per call: `GET /apps` with each token.
async fn statuses(server: &TestServer, tokens: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for t in tokens {
        out.push(call(server, Some(t), "GET", "/api/v1/apps", None).await.0);
    }
    out
}

/// A CLI run with its own config directory (a saved login), no SPROUT_TOKEN.
fn cli_saved(
    server: &TestServer,
    config: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sprout"))
        .args(args)
        .env("SPROUT_URL", &server.api)
        .env_remove("SPROUT_TOKEN")
        .env("SPROUT_CONFIG_DIR", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sprout");
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("output")
}

#[tokio::test]
async fn a_user_removed_and_added_again_does_not_get_its_old_tokens_back() {
    let server = TestServer::start().await;
    add_user(&server, "bob", "deployer", "bob-password");
    // T1: logged out. T2: a session never logged out. API: a named token.
    let t1 = login(&server, "bob", "bob-password").await;
    let t2 = login(&server, "bob", "bob-password").await;
    let out = cli_as(&server, &t2, &["token", "create", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let api = stdout(&out).trim().to_string();
    assert_eq!(
        call(&server, Some(&t1), "POST", "/api/v1/logout", None)
            .await
            .0,
        204
    );
    assert_eq!(statuses(&server, &[&t1, &t2, &api]).await, [401, 200, 200]);

    let out = server.cli(&["user", "remove", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(statuses(&server, &[&t1, &t2, &api]).await, [401, 401, 401]);
    // The same name, role and password again: a new user, none of the old tokens.
    add_user(&server, "bob", "deployer", "bob-password");
    let (s, p) = call(&server, Some(&t1), "GET", "/api/v1/apps", None).await;
    assert_eq!(s, 401, "the logged-out token came back: {p}");
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("revoked"),
        "{p}"
    );
    assert_eq!(statuses(&server, &[&t2, &api]).await, [401, 401]);
    let fresh = login(&server, "bob", "bob-password").await;
    assert_eq!(statuses(&server, &[&fresh]).await, [200]);
}

#[tokio::test]
async fn passwd_revokes_the_users_other_tokens_and_an_admin_can_revoke_them_all() {
    let server = TestServer::start().await;
    add_user(&server, "pat", "viewer", "pat-password");
    add_user(&server, "quin", "deployer", "quin-password");
    let config = tempfile::tempdir().expect("dir");
    let out = cli_saved(
        &server,
        config.path(),
        &["login", "--user", "pat", "--password-stdin"],
        "pat-password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let saved_token = |dir: &std::path::Path| -> String {
        let saved: Value =
            serde_json::from_slice(&std::fs::read(dir.join("login.json")).expect("saved login"))
                .expect("json");
        saved["token"].as_str().expect("token").to_string()
    };
    let before = saved_token(config.path());
    let other = login(&server, "pat", "pat-password").await;
    let out = cli_as(&server, &other, &["token", "create", "laptop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let api = stdout(&out).trim().to_string();
    assert_eq!(
        statuses(&server, &[&before, &other, &api]).await,
        [200, 200, 200]
    );

    // A viewer may change its own password, not another user's; bad input changes nothing.
    let quin = login(&server, "quin", "quin-password").await;
    let (s, _) = call(
        &server,
        Some(&other),
        "PUT",
        "/api/v1/users/quin/password",
        Some(json!({"password": "stolen-password"})),
    )
    .await;
    assert_eq!(s, 403);
    let out = cli_saved(
        &server,
        config.path(),
        &["user", "passwd", "pat", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("8 to 1024"), "{}", stderr(&out));
    assert_eq!(
        statuses(&server, &[&before, &other, &api, &quin]).await,
        [200, 200, 200, 200]
    );

    // Pat changes its own password from the saved login: every other token dies, the saved
    // login keeps working with its new session token.
    let out = cli_saved(
        &server,
        config.path(),
        &["user", "passwd", "pat", "--password-stdin"],
        "pat-new-password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("this login stays"),
        "{}",
        stdout(&out)
    );
    let after = saved_token(config.path());
    assert_ne!(after, before);
    assert_eq!(
        statuses(&server, &[&before, &other, &api, &after, &quin]).await,
        [401, 401, 401, 200, 200]
    );
    let listed: Value = serde_json::from_str(&stdout(&cli_as(
        &server,
        &after,
        &["token", "list", "--json"],
    )))
    .expect("json");
    assert!(
        listed[0]["revoked_at"].is_string(),
        "the API token is listed as revoked: {listed}"
    );
    let old = Client::new(&server.api, None)
        .login("pat", "pat-password")
        .await;
    assert!(old.is_err(), "the old password no longer works");
    let newer = login(&server, "pat", "pat-new-password").await;

    // The admin sets pat's password: all of pat's tokens die, the admin's stay.
    let out = server.cli_with_stdin(
        &["user", "passwd", "pat", "--password-stdin"],
        Some("pat-third-password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        statuses(&server, &[&after, &newer, &server.token]).await,
        [401, 401, 200]
    );

    // The admin revokes everything quin holds, without touching its password.
    let out = server.cli(&["user", "revoke-tokens", "quin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(statuses(&server, &[&quin, &server.token]).await, [401, 200]);
    let quin_again = login(&server, "quin", "quin-password").await;
    assert_eq!(statuses(&server, &[&quin_again]).await, [200]);
    // Only an admin revokes another user's tokens; nobody's for a user who does not exist.
    let (s, _) = call(
        &server,
        Some(&quin_again),
        "DELETE",
        "/api/v1/users/pat/tokens",
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(
        &server,
        Some(&server.token),
        "DELETE",
        "/api/v1/users/nobody/tokens",
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn three_hundred_parallel_wrong_logins_get_at_most_five_answers_of_401() {
    let server = TestServer::start().await;
    // Long enough for hundreds of argon2 runs on a small machine, so a server that checks
    // them all shows up as a count of 401s rather than as timeouts.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .expect("client");
    let url = format!("{}/api/v1/login", server.api);
    let attempts = (0..300).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(&url)
                .json(&json!({"username": "admin", "password": format!("guess-{i}")}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let count = |code: u16| answers.iter().filter(|s| **s == code).count();
    let (unauthorized, throttled) = (count(401), count(429));
    println!("300 parallel wrong logins: {unauthorized} × 401, {throttled} × 429");
    assert!(
        unauthorized <= 5,
        "{unauthorized} wrong passwords were checked (each an argon2 run); at most 5 may be"
    );
    assert_eq!(
        unauthorized + throttled,
        300,
        "every other answer is 429: {answers:?}"
    );
    // Even the right password waits out the window now.
    let (s, _) = status_of(
        client
            .post(&url)
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(s, 429);
}
