//! Secrets, attacked as a tenant with the viewer role and as anyone who can read the server's
//! disk: property values are masked for viewers (API, CLI, dashboard) unless marked public,
//! queue credentials are for deployers, the data directory is private, and the database holds
//! no secret in plaintext.

use crate::auth::{call, cli_as, login};
use crate::dashboard::{http_session, page_text};
use crate::harness::*;
use serde_json::{json, Value};
use sprout_core::properties::MASKED;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DATABASE_URL: &str = "postgres://u:supersecret@db:5432/app";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Whether `needle` occurs in the raw bytes of the database or its WAL and shared memory.
fn on_disk(data: &Path, needle: &str) -> Vec<String> {
    ["sprout.db", "sprout.db-wal", "sprout.db-shm"]
        .iter()
        .filter(|f| {
            std::fs::read(data.join(f))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|f| f.to_string())
        .collect()
}

/// Every entry of the data directory (and of `bundles/`) with a mode wider than 0600 for a
/// file or 0700 for a directory.
fn too_open(data: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    for dir in [data.to_path_buf(), data.join("bundles")] {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            let m = meta.permissions().mode() & 0o777;
            if (meta.is_file() && m != 0o600) || (meta.is_dir() && m != 0o700) {
                wrong.push(format!("{} {m:o}", path.display()));
            }
        }
    }
    wrong
}

#[tokio::test]
async fn viewers_see_masked_values_no_queue_credentials_and_the_disk_holds_no_secret() {
    let mut server = TestServer::start().await;
    add_user(&server, "vera", "viewer", "vera-password");
    add_user(&server, "dex", "deployer", "dex-password");
    let vera = login(&server, "vera", "vera-password").await;
    let dex = login(&server, "dex", "dex-password").await;
    let app = unique("secapp");
    let env = unique("secwk");
    let url_prop = format!("DATABASE_URL={DATABASE_URL}");
    crate::worker::launch_worker(&server, &app, &env, 1, None, &[&url_prop, "MODE=fast"]).await;
    let env_path = format!("/api/v1/environments/{env}");

    // The viewer reads the environment three ways; every value is masked.
    let (s, detail) = call(&server, Some(&vera), "GET", &env_path, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        detail["env"],
        json!({"DATABASE_URL": MASKED, "MODE": MASKED}),
        "secret by default"
    );
    let (_, listed) = call(&server, Some(&vera), "GET", "/api/v1/environments", None).await;
    let (_, config) = call(
        &server,
        Some(&vera),
        "GET",
        &format!("{env_path}/config"),
        None,
    )
    .await;
    assert_eq!(config["properties"]["DATABASE_URL"], json!(MASKED));
    let out = cli_as(&server, &vera, &["status", &env, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for seen in [
        detail.to_string(),
        listed.to_string(),
        config.to_string(),
        stdout(&out),
    ] {
        assert!(
            !seen.contains("supersecret"),
            "a viewer read the secret: {seen}"
        );
    }
    // The deployer sees the values.
    let (_, deployer_view) = call(&server, Some(&dex), "GET", &env_path, None).await;
    assert_eq!(
        deployer_view["env"],
        json!({"DATABASE_URL": DATABASE_URL, "MODE": "fast"})
    );

    // Marking MODE public shows it to viewers at once, without replacing an instance.
    let instances = |d: &Value| -> Vec<String> {
        d["instances"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let out = cli_as(&server, &dex, &["setenv", &env, "--public", "MODE"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, detail) = call(&server, Some(&vera), "GET", &env_path, None).await;
    assert_eq!(
        detail["env"],
        json!({"DATABASE_URL": MASKED, "MODE": "fast"})
    );
    assert_eq!(
        instances(&detail),
        instances(&deployer_view),
        "no instance replaced"
    );
    // A key that does not exist cannot be made public; a viewer cannot mark one public.
    let out = cli_as(&server, &dex, &["setenv", &env, "--public", "NOPE"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no property 'NOPE'"),
        "{}",
        stderr(&out)
    );
    let (s, _) = call(
        &server,
        Some(&vera),
        "POST",
        &format!("{env_path}/properties"),
        Some(json!({"public": ["DATABASE_URL"]})),
    )
    .await;
    assert_eq!(s, 403);

    // The dashboard shows the viewer the same.
    let (viewer_http, status, _) = http_session(&server.api, "vera", "vera-password").await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "viewer logs in");
    let page = page_text(&viewer_http, &format!("{}/envs/{env}", server.api)).await;
    assert!(
        page.contains("DATABASE_URL") && page.contains("fast"),
        "{page}"
    );
    assert!(
        !page.contains("supersecret"),
        "the dashboard showed a viewer the secret"
    );

    // Queue credentials are the deployer's.
    let creds_path = format!("{env_path}/queue/credentials");
    let (s, p) = call(&server, Some(&vera), "GET", &creds_path, None).await;
    assert_eq!(s, 403, "{p}");
    let (s, creds) = call(&server, Some(&dex), "GET", &creds_path, None).await;
    assert_eq!(s, 200);
    let sqs_secret = creds["secret_access_key"]
        .as_str()
        .expect("secret")
        .to_string();
    assert!(sqs_secret.len() >= 20);

    // On disk: a private directory, private files, no secret in the database's bytes.
    assert_eq!(mode(&server.data), 0o700, "the data directory");
    for f in [
        "sprout.db",
        "sprout.db-wal",
        "sprout.db-shm",
        "jwt.key",
        "secrets.key",
    ] {
        assert_eq!(mode(&server.data.join(f)), 0o600, "{f}");
    }
    assert_eq!(too_open(&server.data), Vec::<String>::new());
    assert!(
        !on_disk(&server.data, &env).is_empty(),
        "the byte search finds what is stored in plaintext (the environment's name)"
    );
    assert_eq!(on_disk(&server.data, "supersecret"), Vec::<String>::new());
    assert_eq!(on_disk(&server.data, &sqs_secret), Vec::<String>::new());
    assert_eq!(
        on_disk(&server.data, r#""MODE":"fast""#),
        Vec::<String>::new()
    );

    // A data directory an older Sprout left open is narrowed at the next start, and the
    // sealed values read back with the kept key.
    server.stop();
    for (path, m) in [
        (server.data.clone(), 0o755),
        (server.data.join("sprout.db"), 0o644),
        (server.data.join("jwt.key"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    server.restart().await;
    assert_eq!(too_open(&server.data), Vec::<String>::new());
    assert_eq!(mode(&server.data), 0o700);
    let dex = login(&server, "dex", "dex-password").await;
    let (_, after) = call(&server, Some(&dex), "GET", &env_path, None).await;
    assert_eq!(after["env"]["DATABASE_URL"], json!(DATABASE_URL));
    let (_, creds) = call(&server, Some(&dex), "GET", &creds_path, None).await;
    assert_eq!(creds["secret_access_key"], json!(sqs_secret));

    let out = server.cli(&["terminate", &env, "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
