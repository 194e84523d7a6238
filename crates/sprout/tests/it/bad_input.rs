//! Bad input: a clear error, nothing changed. Every refusal is a 4xx
//! `application/problem+json` with a helpful `detail` (the CLI prints it on one line and
//! exits non-zero), and leaves no row, no file under `bundles/`, no image, no container and
//! no network behind.

use crate::harness::*;
use serde_json::{json, Value};
use sprout_core::api::problem_types as types;
use sprout_core::{EnvStatus, VersionStatus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Requests and problems

fn request(server: &TestServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http_client()
        .request(method, format!("{}{path}", server.api))
        .bearer_auth(&server.token)
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    request(server, reqwest::Method::GET, path)
        .send()
        .await
        .expect("GET answered")
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    request(server, reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("POST answered")
}

async fn delete(server: &TestServer, path: &str) -> reqwest::Response {
    request(server, reqwest::Method::DELETE, path)
        .send()
        .await
        .expect("DELETE answered")
}

/// `POST /apps/{app}/versions?label=L` with `bytes` as the body (Content-Length set).
async fn upload(server: &TestServer, app: &str, label: &str, bytes: Vec<u8>) -> reqwest::Response {
    request(
        server,
        reqwest::Method::POST,
        &format!("/api/v1/apps/{app}/versions"),
    )
    .query(&[("label", label)])
    .header("content-type", "application/gzip")
    .body(bytes)
    .send()
    .await
    .expect("upload answered")
}

/// Asserts an RFC 9457 answer: the status, the media type, the `type` URI, and a `detail`
/// containing `needle`. Answers the detail.
async fn expect_problem(
    resp: reqwest::Response,
    status: u16,
    kind: &str,
    needle: &str,
    what: &str,
) -> String {
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: status (body: {text})");
    assert_eq!(
        content_type, "application/problem+json",
        "{what}: content type (body: {text})"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{what}: {body}"
    );
    assert_eq!(body["type"].as_str(), Some(kind), "{what}: {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: a title: {body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains(needle),
        "{what}: detail {detail:?} should mention {needle:?}"
    );
    assert!(
        !detail.contains('\n'),
        "{what}: a one-line detail: {detail:?}"
    );
    detail
}

/// A CLI verb that must fail: exit 1, nothing on stdout, and exactly one stderr line
/// `error: …` containing `needle`.
fn expect_cli_error(server: &TestServer, args: &[&str], needle: &str) {
    let err = cli_failure(server, args, needle);
    assert_eq!(
        err.lines().count(),
        1,
        "sprout {args:?}: one stderr line, got {err:?}"
    );
}

/// `sprout push` may report its progress (`archived DIR (N files)`) before it fails; the
/// error is still one line, the last.
fn expect_push_error(server: &TestServer, args: &[&str], needle: &str) {
    let err = cli_failure(server, args, needle);
    let errors = err.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "sprout {args:?}: one error line, got {err:?}");
}

/// Runs a failing verb; answers its stderr, whose last line is `error: …needle…`.
fn cli_failure(server: &TestServer, args: &[&str], needle: &str) -> String {
    let out = server.cli(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "sprout {args:?} should exit 1: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "sprout {args:?}: nothing on stdout, got {:?}",
        stdout(&out)
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "sprout {args:?}: {last:?} should be `error: …{needle}…`"
    );
    err
}

// ---------------------------------------------------------------------------------------
// What the server holds

/// Every path under `bundles/`, recursively, except the (possibly empty) `tmp` directory
/// itself: anything inside `tmp` counts.
fn bundle_paths(server: &TestServer) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if rel != Path::new("tmp") {
                out.insert(rel);
            }
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                walk(root, &path, out);
            }
        }
    }
    let root = server.data.join("bundles");
    let mut out = BTreeSet::new();
    walk(&root, &root, &mut out);
    out
}

fn tmp_entries(server: &TestServer) -> Vec<PathBuf> {
    std::fs::read_dir(server.data.join("bundles").join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn image_of(app: &str, label: &str) -> Vec<String> {
    docker_lines(&["image", "ls", "-q", &format!("sprout/{app}:{label}")])
}

/// Everything a refused request could have left behind, from the API, the disk and Docker.
#[derive(Debug, PartialEq)]
struct Snapshot {
    apps: Vec<String>,
    versions: Vec<(String, String, String)>,
    environments: Vec<(String, String, String, String)>,
    bundle_paths: BTreeSet<PathBuf>,
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Snapshot {
    async fn take(server: &TestServer) -> Self {
        let mut apps: Vec<String> = server
            .client
            .list_apps()
            .await
            .expect("list apps")
            .into_iter()
            .map(|a| a.name)
            .collect();
        apps.sort();
        let mut versions = Vec::new();
        for app in &apps {
            for v in server.client.list_versions(app).await.expect("versions") {
                versions.push((v.app, v.label, v.sha256));
            }
        }
        versions.sort();
        let mut environments: Vec<_> = server
            .client
            .list_environments(None)
            .await
            .expect("list environments")
            .into_iter()
            .map(|e| (e.name, e.app, e.version, e.cname))
            .collect();
        environments.sort();
        let label = format!("sprout.server={}", server.server_id);
        let mut containers = server.containers(&label);
        containers.sort();
        let mut networks = server.networks();
        networks.sort();
        let mut images =
            docker_lines(&["image", "ls", "-q", "--filter", &format!("label={label}")]);
        images.sort();
        Self {
            apps,
            versions,
            environments,
            bundle_paths: bundle_paths(server),
            containers,
            networks,
            images,
        }
    }

    async fn assert_unchanged(&self, server: &TestServer, what: &str) {
        let now = Self::take(server).await;
        assert_eq!(&now, self, "{what} changed what the server holds");
        assert!(
            tmp_entries(server).is_empty(),
            "{what} left files in bundles/tmp: {:?}",
            tmp_entries(server)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bundles

type TarGz = tar::Builder<flate2::write::GzEncoder<Vec<u8>>>;

fn tar_gz(build: impl FnOnce(&mut TarGz)) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    build(&mut b);
    b.into_inner()
        .and_then(|gz| gz.finish())
        .expect("tar.gz in memory")
}

/// An entry with any name, kind and link target: the raw header bytes, which the tar
/// builder's own path checks would refuse.
fn raw_entry(b: &mut TarGz, kind: tar::EntryType, path: &str, link: &str, body: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    let old = h.as_old_mut();
    old.name[..path.len()].copy_from_slice(path.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, body).expect("append entry");
}

fn file(b: &mut TarGz, path: &str, body: &[u8]) {
    raw_entry(b, tar::EntryType::Regular, path, "", body);
}

/// A bundle of named files.
fn bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    tar_gz(|b| {
        for (path, body) in files {
            file(b, path, body);
        }
    })
}

/// The example app, as a tar.gz built in memory.
fn example_bundle() -> Vec<u8> {
    let dir = example_dir();
    let read = |name: &str| std::fs::read(dir.join(name)).expect("example file");
    let (procfile, app, yaml) = (read("Procfile"), read("app.py"), read("sprout.yaml"));
    bundle(&[
        ("Procfile", &procfile),
        ("app.py", &app),
        ("sprout.yaml", &yaml),
    ])
}

/// Incompressible bytes (xorshift), so the archive stays as large as its content.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn wait_built(server: &TestServer, app: &str, label: &str) -> sprout_core::api::Version {
    let version = eventually(Duration::from_secs(180), || async {
        let v = server.client.get_version(app, label).await.ok()?;
        (v.status != VersionStatus::Processing).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("version {label} of {app} did not finish building"));
    assert_eq!(
        version.status,
        VersionStatus::Ready,
        "build of {label}: {:?}",
        version.build_log
    );
    version
}

// ---------------------------------------------------------------------------------------
// Tests

/// Invalid names (400), duplicates (409) and unknown objects (404), through the REST API and
/// the CLI, against a server holding one app, one version and one running environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_duplicates_and_unknowns_change_nothing() {
    let server = TestServer::start().await;
    let app = unique("bad");
    let env = unique("env");
    let other_env = unique("env2");

    // What is there: one app, v1, and an environment running it.
    let resp = post_json(&server, "/api/v1/apps", &json!({ "name": app })).await;
    assert_eq!(resp.status().as_u16(), 201, "app create");
    let resp = upload(&server, &app, "v1", example_bundle()).await;
    assert_eq!(resp.status().as_u16(), 202, "upload v1");
    let v1 = wait_built(&server, &app, "v1").await;
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": env, "app": app, "version": "v1" }),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 202, "env create");
    eventually(Duration::from_secs(120), || async {
        let d = server.client.get_environment(&env).await.ok()?;
        (d.environment.status == EnvStatus::Ready && d.instances.len() == 1).then_some(())
    })
    .await
    .expect("the environment becomes Ready");
    let before = Snapshot::take(&server).await;
    assert_eq!(before.apps, vec![app.clone()]);
    assert_eq!(before.environments.len(), 1);
    assert_eq!(before.containers.len(), 1, "one instance");

    // 1. Invalid names → 400.
    for bad in ["Bad_Name", "a", "-x", "abc-", ""] {
        let resp = post_json(&server, "/api/v1/apps", &json!({ "name": bad })).await;
        expect_problem(
            resp,
            400,
            types::INVALID_INPUT,
            "invalid application name",
            &format!("app create {bad:?}"),
        )
        .await;
    }
    let resp = post_json(&server, "/api/v1/apps", &json!({ "nom": "x" })).await;
    expect_problem(
        resp,
        400,
        types::INVALID_INPUT,
        "name",
        "app create without a name",
    )
    .await;
    let resp = request(&server, reqwest::Method::POST, "/api/v1/apps")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answered");
    expect_problem(
        resp,
        400,
        types::INVALID_INPUT,
        "",
        "app create with broken JSON",
    )
    .await;
    for bad in ["Bad_Env", "e", "-x"] {
        let resp = post_json(
            &server,
            "/api/v1/environments",
            &json!({ "name": bad, "app": app, "version": "v1" }),
        )
        .await;
        expect_problem(
            resp,
            400,
            types::INVALID_INPUT,
            "invalid environment name",
            &format!("env create {bad:?}"),
        )
        .await;
    }
    for bad in ["Bad.Cname", "x", "a_b"] {
        let resp = post_json(
            &server,
            "/api/v1/environments",
            &json!({ "name": other_env, "app": app, "version": "v1", "cname": bad }),
        )
        .await;
        expect_problem(
            resp,
            400,
            types::INVALID_INPUT,
            "invalid CNAME prefix",
            &format!("env create --cname {bad:?}"),
        )
        .await;
    }
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": other_env, "app": app, "version": "v1", "tier": "frontend" }),
    )
    .await;
    expect_problem(
        resp,
        400,
        types::INVALID_INPUT,
        "frontend",
        "env create --tier frontend",
    )
    .await;
    for bad in ["v/1", "../x", ".hidden", ""] {
        let resp = upload(&server, &app, bad, example_bundle()).await;
        expect_problem(
            resp,
            400,
            types::INVALID_INPUT,
            "invalid version label",
            &format!("upload label {bad:?}"),
        )
        .await;
    }
    let resp = request(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/apps/{app}/versions"),
    )
    .body(example_bundle())
    .send()
    .await
    .expect("answered");
    expect_problem(
        resp,
        400,
        types::INVALID_INPUT,
        "label",
        "upload without a label",
    )
    .await;
    before.assert_unchanged(&server, "invalid names").await;

    // 2. Duplicates → 409; the first stays as it was.
    let resp = post_json(&server, "/api/v1/apps", &json!({ "name": app })).await;
    expect_problem(
        resp,
        409,
        types::CONFLICT,
        "already exists",
        "app create twice",
    )
    .await;
    let different = bundle(&[
        ("Procfile", b"web: python3 -m http.server $PORT\n"),
        ("other.txt", b"not the same bundle"),
    ]);
    let resp = upload(&server, &app, "v1", different).await;
    expect_problem(resp, 409, types::CONFLICT, "'v1'", "push v1 twice").await;
    let resp = upload(&server, &app, "v1", example_bundle()).await;
    expect_problem(resp, 409, types::CONFLICT, "'v1'", "push the same v1 twice").await;
    let again = server.client.get_version(&app, "v1").await.expect("v1");
    assert_eq!(again.sha256, v1.sha256, "the first v1 keeps its bundle");
    assert_eq!(again.created_at, v1.created_at);
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": env, "app": app, "version": "v1" }),
    )
    .await;
    expect_problem(
        resp,
        409,
        types::CONFLICT,
        &env,
        "env create with a taken name",
    )
    .await;
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": other_env, "app": app, "version": "v1", "cname": env }),
    )
    .await;
    expect_problem(
        resp,
        409,
        types::CONFLICT,
        &env,
        "env create with a taken CNAME",
    )
    .await;
    before.assert_unchanged(&server, "duplicates").await;

    // 3. Unknown objects → 404.
    let ghost_app = unique("ghost");
    let ghost_env = unique("ghost");
    for path in [
        format!("/api/v1/apps/{ghost_app}"),
        format!("/api/v1/apps/{ghost_app}/versions"),
        format!("/api/v1/apps/{ghost_app}/versions/v1"),
        format!("/api/v1/apps/{app}/versions/v9"),
        format!("/api/v1/environments/{ghost_env}"),
        format!("/api/v1/environments/{ghost_env}/events"),
        format!("/api/v1/environments/{ghost_env}/logs"),
        "/api/v1/no-such-route".to_string(),
    ] {
        expect_problem(get(&server, &path).await, 404, types::NOT_FOUND, "", &path).await;
    }
    let resp = get(&server, &format!("/api/v1/apps/{ghost_app}")).await;
    expect_problem(resp, 404, types::NOT_FOUND, &ghost_app, "GET unknown app").await;
    let resp = get(&server, &format!("/api/v1/environments/{ghost_env}")).await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_env,
        "status of unknown env",
    )
    .await;
    let resp = post_json(
        &server,
        &format!("/api/v1/environments/{ghost_env}/deploy"),
        &json!({ "version": "v1" }),
    )
    .await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_env,
        "deploy to unknown env",
    )
    .await;
    let resp = delete(&server, &format!("/api/v1/environments/{ghost_env}")).await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_env,
        "terminate unknown env",
    )
    .await;
    let resp = delete(&server, &format!("/api/v1/apps/{ghost_app}")).await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_app,
        "delete unknown app",
    )
    .await;
    let resp = post_json(
        &server,
        &format!("/api/v1/environments/{env}/deploy"),
        &json!({ "version": "v9" }),
    )
    .await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        "'v9'",
        "deploy an unknown version",
    )
    .await;
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": other_env, "app": app, "version": "v9" }),
    )
    .await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        "'v9'",
        "env create with unknown version",
    )
    .await;
    let resp = post_json(
        &server,
        "/api/v1/environments",
        &json!({ "name": other_env, "app": ghost_app, "version": "v1" }),
    )
    .await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_app,
        "env create, unknown app",
    )
    .await;
    let resp = upload(&server, &ghost_app, "v1", example_bundle()).await;
    expect_problem(
        resp,
        404,
        types::NOT_FOUND,
        &ghost_app,
        "upload to unknown app",
    )
    .await;
    assert!(
        image_of(&ghost_app, "v1").is_empty(),
        "no image for a ghost"
    );
    before.assert_unchanged(&server, "unknown objects").await;

    // 10. The CLI: one line, `error: <detail>`, exit 1, nothing on stdout.
    expect_cli_error(
        &server,
        &["app", "create", "Bad_Name"],
        "invalid application name",
    );
    expect_cli_error(&server, &["app", "create", &app], "already exists");
    expect_cli_error(&server, &["status", &ghost_env], &ghost_env);
    expect_cli_error(&server, &["terminate", &ghost_env], &ghost_env);
    expect_cli_error(
        &server,
        &["deploy", &ghost_env, "--version", "v1"],
        &ghost_env,
    );
    expect_cli_error(&server, &["versions", "--app", &ghost_app], &ghost_app);
    expect_cli_error(
        &server,
        &[
            "env",
            "create",
            &other_env,
            "--app",
            &app,
            "--version",
            "v9",
        ],
        "'v9'",
    );
    expect_cli_error(
        &server,
        &[
            "env",
            "create",
            &other_env,
            "--app",
            &app,
            "--version",
            "v1",
            "--cname",
            &env,
        ],
        &env,
    );
    let example = example_dir();
    let example = example.to_str().expect("utf-8 path");
    expect_push_error(
        &server,
        &["push", example, "--app", &app, "--label", "v1"],
        "'v1'",
    );
    expect_push_error(
        &server,
        &["push", example, "--app", &app, "--label", "../x"],
        "invalid version label",
    );
    before.assert_unchanged(&server, "failed CLI verbs").await;
}

/// Bundles that are not archives, too large, expand too far, hold hostile entries or a bad
/// manifest: refused at upload with nothing kept; a web tier without a `web` process:
/// refused at environment create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_are_refused_and_leave_nothing() {
    let server = TestServer::start_with(&[
        ("SPROUT_MAX_BUNDLE_BYTES", "20000"),
        ("SPROUT_MAX_UNPACKED_BYTES", "100000"),
    ])
    .await;
    let app = unique("bundles");
    server.client.create_app(&app).await.expect("app");
    let before = Snapshot::take(&server).await;
    assert!(before.bundle_paths.is_empty(), "{:?}", before.bundle_paths);

    // Checks one refused upload: its problem, and that nothing is kept.
    async fn refused(
        server: &TestServer,
        before: &Snapshot,
        app: &str,
        label: &str,
        resp: reqwest::Response,
        (status, kind, needle): (u16, &str, &str),
    ) {
        let what = format!("upload {label}");
        expect_problem(resp, status, kind, needle, &what).await;
        let versions = server.client.list_versions(app).await.expect("versions");
        assert!(
            versions.iter().all(|v| v.label != label),
            "{what}: no version row: {versions:?}"
        );
        assert!(image_of(app, label).is_empty(), "{what}: no image");
        before.assert_unchanged(server, &what).await;
    }

    // 4. Not an archive.
    let resp = upload(
        &server,
        &app,
        "text",
        b"hello, this is not an archive\n".to_vec(),
    )
    .await;
    let bb = types::BAD_BUNDLE;
    refused(
        &server,
        &before,
        &app,
        "text",
        resp,
        (422, bb, "not a tar.gz or zip"),
    )
    .await;
    let resp = upload(&server, &app, "empty", Vec::new()).await;
    refused(&server, &before, &app, "empty", resp, (422, bb, "empty")).await;
    let garbage_gz = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&noise(3000)).expect("gzip");
        gz.finish().expect("gzip")
    };
    let resp = upload(&server, &app, "notar", garbage_gz).await;
    refused(&server, &before, &app, "notar", resp, (422, bb, "corrupt")).await;
    let mut truncated = example_bundle();
    truncated.truncate(truncated.len() / 2);
    let resp = upload(&server, &app, "cut", truncated).await;
    refused(&server, &before, &app, "cut", resp, (422, bb, "corrupt")).await;

    // 5. Over the archive size limit (20000 bytes): with and without Content-Length.
    let big = bundle(&[("Procfile", b"web: x\n"), ("noise.bin", &noise(100_000))]);
    assert!(big.len() > 90_000, "incompressible: {} bytes", big.len());
    let resp = upload(&server, &app, "big", big.clone()).await;
    let tl = types::TOO_LARGE;
    refused(&server, &before, &app, "big", resp, (413, tl, "20000")).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let resp = request(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/apps/{app}/versions"),
    )
    .query(&[("label", "bigstream")])
    .header("content-type", "application/gzip")
    .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .send()
    .await
    .expect("a streamed oversized upload gets an answer");
    refused(
        &server,
        &before,
        &app,
        "bigstream",
        resp,
        (413, tl, "20000"),
    )
    .await;

    // 6. Expands past the unpacked limit (100000 bytes): one big file, or many small ones.
    let bomb = bundle(&[("Procfile", b"web: x\n"), ("zeros", &vec![0u8; 1 << 20])]);
    assert!(bomb.len() < 20_000, "a bomb is small: {}", bomb.len());
    let resp = upload(&server, &app, "bomb", bomb).await;
    refused(&server, &before, &app, "bomb", resp, (413, bb, "100000")).await;
    let zeros = vec![0u8; 10_000];
    let many = tar_gz(|b| {
        for i in 0..20 {
            file(b, &format!("part/{i}.bin"), &zeros);
        }
    });
    let resp = upload(&server, &app, "many", many).await;
    refused(
        &server,
        &before,
        &app,
        "many",
        resp,
        (413, bb, "unpacked limit"),
    )
    .await;

    // 7. Hostile entries, each after a harmless one so something was already written.
    use tar::EntryType::{Char, Link, Regular, Symlink};
    let hostile: Vec<(&str, tar::EntryType, &str, &str)> = vec![
        ("abs", Regular, "/etc/evil", ""),
        ("dotdot", Regular, "../evil", ""),
        ("deepdotdot", Regular, "a/../../evil", ""),
        ("symabs", Symlink, "passwd", "/etc/passwd"),
        ("symup", Symlink, "a/l", "../../x"),
        ("hardup", Link, "hard", "../x"),
        ("hardabs", Link, "shadow", "/etc/shadow"),
        ("chardev", Char, "null", ""),
    ];
    for (label, kind, path, link) in hostile {
        let bytes = tar_gz(|b| {
            file(b, "Procfile", b"web: python3 app.py\n");
            raw_entry(b, kind, path, link, b"");
        });
        let resp = upload(&server, &app, label, bytes).await;
        refused(
            &server,
            &before,
            &app,
            label,
            resp,
            (422, bb, &format!("'{path}'")),
        )
        .await;
    }
    // Writing through a symlink that points inside the bundle but at a directory link.
    let through = tar_gz(|b| {
        raw_entry(b, Symlink, "d", ".", b"");
        raw_entry(b, Symlink, "d/e", "..", b"");
        file(b, "d/e/evil", b"x");
    });
    let resp = upload(&server, &app, "through", through).await;
    refused(&server, &before, &app, "through", resp, (422, bb, "'d/e")).await;
    // Symlink chains: each link stays inside on its own (`a/b` → `..` is the bundle's root),
    // but followed one through another they climb out, here to the data directory
    // (the bundle unpacks in `data/bundles/tmp/<nonce>.unpacked`).
    let chained = |b: &mut TarGz, target: &str| {
        file(b, "Procfile", b"web: python3 app.py\n");
        raw_entry(b, Symlink, "a/b", "..", b"");
        raw_entry(b, Symlink, "c", target, b"");
    };
    // Read through the chain: a hard link to `c` would copy the server's signing key.
    let read_key = tar_gz(|b| {
        chained(b, "a/b/a/b/a/b/../../../jwt.key");
        raw_entry(b, Link, "h", "c", b"");
    });
    let resp = upload(&server, &app, "chainread", read_key).await;
    refused(&server, &before, &app, "chainread", resp, (422, bb, "'h'")).await;
    // Write through the chain: a file entry named like the link.
    let write_out = tar_gz(|b| {
        chained(b, "a/b/a/b/a/b/../../../pwned");
        file(b, "c", b"owned");
    });
    let resp = upload(&server, &app, "chainwrite", write_out).await;
    refused(&server, &before, &app, "chainwrite", resp, (422, bb, "'c'")).await;
    assert!(
        !server.data.join("pwned").exists(),
        "nothing written outside"
    );
    // The chained link alone, dangling or not, points outside.
    for (label, target) in [
        ("chain", "a/b/a/b/../../x"),
        ("chainkey", "a/b/a/b/a/b/../../../jwt.key"),
    ] {
        let bytes = tar_gz(|b| chained(b, target));
        let resp = upload(&server, &app, label, bytes).await;
        refused(&server, &before, &app, label, resp, (422, bb, "'c'")).await;
    }
    let zip_slip = {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("Procfile", opts).expect("zip");
        z.write_all(b"web: ./server\n").expect("zip");
        z.start_file("../evil", opts).expect("zip");
        z.write_all(b"x").expect("zip");
        z.finish().expect("zip");
        buf.into_inner()
    };
    let resp = upload(&server, &app, "zipslip", zip_slip).await;
    refused(
        &server,
        &before,
        &app,
        "zipslip",
        resp,
        (422, bb, "'../evil'"),
    )
    .await;

    // 8a. A bad manifest: refused at upload.
    let bad_procfile = bundle(&[("Procfile", b"web: python3 app.py\nthis is not a process\n")]);
    let resp = upload(&server, &app, "procfile", bad_procfile).await;
    refused(
        &server,
        &before,
        &app,
        "procfile",
        resp,
        (422, bb, "Procfile line 2"),
    )
    .await;
    let bad_yaml = bundle(&[
        ("Procfile", b"web: python3 app.py\n"),
        ("sprout.yaml", b"platform: python\nbogus_key: 1\n"),
    ]);
    let resp = upload(&server, &app, "yaml", bad_yaml).await;
    refused(&server, &before, &app, "yaml", resp, (422, bb, "bogus_key")).await;

    // 8b. A worker-only bundle builds, but cannot make a web environment.
    let worker = bundle(&[
        ("Procfile", b"worker: python3 w.py\n"),
        ("w.py", b"print('working')\n"),
    ]);
    let resp = upload(&server, &app, "w1", worker).await;
    assert_eq!(
        resp.status().as_u16(),
        202,
        "a worker-only bundle is a fine version"
    );
    let w1 = wait_built(&server, &app, "w1").await;
    assert_eq!(w1.processes, vec!["worker".to_string()]);
    let with_w1 = Snapshot::take(&server).await;
    assert_eq!(with_w1.versions.len(), 1, "{:?}", with_w1.versions);
    assert!(
        with_w1.containers.is_empty(),
        "no container left by the build"
    );
    let web_env = unique("web");
    for body in [
        json!({ "name": web_env, "app": app, "version": "w1", "tier": "web" }),
        json!({ "name": web_env, "app": app, "version": "w1" }),
    ] {
        let resp = post_json(&server, "/api/v1/environments", &body).await;
        expect_problem(
            resp,
            400,
            types::INVALID_INPUT,
            "needs a 'web' process",
            "web env of a worker-only version",
        )
        .await;
        with_w1
            .assert_unchanged(&server, "web env of a worker-only version")
            .await;
    }
    assert!(with_w1.environments.is_empty());
    assert!(
        with_w1.networks.is_empty(),
        "no network: {:?}",
        with_w1.networks
    );
    expect_cli_error(
        &server,
        &[
            "env",
            "create",
            &web_env,
            "--app",
            &app,
            "--version",
            "w1",
            "--tier",
            "web",
        ],
        "needs a 'web' process",
    );
    // A bad bundle through `sprout push` too.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("Procfile"), "web python3 app.py\n").expect("write");
    let path = dir.path().to_str().expect("utf-8 path");
    expect_push_error(
        &server,
        &["push", path, "--app", &app, "--label", "nocolon"],
        "Procfile line 1",
    );
    with_w1.assert_unchanged(&server, "failed CLI verbs").await;

    // Two pushes of one new label at once, with different bundles: one wins, the other is a
    // 409 and leaves no bundle behind.
    let one = bundle(&[("Procfile", b"worker: python3 w.py\n"), ("w.py", b"1\n")]);
    let two = bundle(&[("Procfile", b"worker: python3 w.py\n"), ("w.py", b"2\n")]);
    let (a, b) = tokio::join!(
        upload(&server, &app, "race", one),
        upload(&server, &app, "race", two)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "one push wins the label");
    let loser = if a.status().as_u16() == 409 { a } else { b };
    expect_problem(loser, 409, types::CONFLICT, "'race'", "the losing push").await;
    wait_built(&server, &app, "race").await;
    assert_no_orphan_bundles(&server).await;
}

/// Archives that expand past the unpacked limit in ways a size header does not show: hard
/// links (each one a full copy on disk), a zip whose directory understates what it holds,
/// and a zip bomb. Each is refused with a clear problem and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_link_and_zip_bombs_are_refused_and_leave_nothing() {
    let server = TestServer::start_with(&[("SPROUT_MAX_UNPACKED_BYTES", "2000000")]).await;
    let app = unique("bombs");
    server.client.create_app(&app).await.expect("app");
    let before = Snapshot::take(&server).await;
    let bb = types::BAD_BUNDLE;

    // The issue's attack, scaled down: a 1.5 MB file and 10 hard links to it under a 2 MB
    // limit (it was 150 MiB and 10 links under 200 MB: 1.7 GB written).
    let big = vec![0u8; 1_500_000];
    let links = tar_gz(|b| {
        file(b, "Procfile", b"web: python3 app.py\n");
        file(b, "big", &big);
        for i in 0..10 {
            raw_entry(b, tar::EntryType::Link, &format!("link{i}"), "big", b"");
        }
    });
    assert!(links.len() < 20_000, "a small archive: {}", links.len());
    let resp = upload(&server, &app, "hardlinks", links).await;
    expect_problem(
        resp,
        413,
        bb,
        "2000000-byte unpacked limit",
        "hard-link bomb",
    )
    .await;

    let zip = |name: &str, body: &[u8]| {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file(name, opts).expect("zip");
        z.write_all(body).expect("zip");
        z.finish().expect("zip");
        buf.into_inner()
    };
    // A zip bomb, honest about its size.
    let resp = upload(
        &server,
        &app,
        "zipbomb",
        zip("zeros", &vec![0u8; 3_000_000]),
    )
    .await;
    expect_problem(resp, 413, bb, "unpacked limit", "zip bomb").await;
    // A zip that says 1000 bytes and holds 1.5 MB: refused once it passes what it said.
    let mut liar = zip("zeros", &big);
    let le = 1000u32.to_le_bytes();
    liar[22..26].copy_from_slice(&le);
    let central = liar
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory");
    liar[central + 24..central + 28].copy_from_slice(&le);
    let resp = upload(&server, &app, "zipliar", liar).await;
    expect_problem(resp, 422, bb, "longer than its header says", "lying zip").await;

    let versions = server.client.list_versions(&app).await.expect("versions");
    assert!(versions.is_empty(), "no version row: {versions:?}");
    before.assert_unchanged(&server, "the bombs").await;
}

/// Every entry of `bundles/` (but `tmp`, which is empty) belongs to a stored version.
async fn assert_no_orphan_bundles(server: &TestServer) {
    let mut shas = BTreeSet::new();
    for app in server.client.list_apps().await.expect("apps") {
        for v in server
            .client
            .list_versions(&app.name)
            .await
            .expect("versions")
        {
            shas.insert(v.sha256);
        }
    }
    let root = server.data.join("bundles");
    for entry in std::fs::read_dir(&root).expect("bundles/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tmp" {
            continue;
        }
        let sha = name.split('.').next().unwrap_or_default();
        assert!(
            shas.contains(sha),
            "bundles/{name} belongs to no version (versions: {shas:?})"
        );
    }
    assert!(tmp_entries(server).is_empty(), "{:?}", tmp_entries(server));
}

/// No token, a garbage token, or another server's token: 401 on every API route. Only
/// `/healthz` and `/login` are open; a wrong login says the same whoever asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_valid_token() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let app = unique("auth");
    server.client.create_app(&app).await.expect("app");
    let before = Snapshot::take(&server).await;

    use reqwest::Method;
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/apps".into()),
        (Method::POST, "/api/v1/apps".into()),
        (Method::GET, format!("/api/v1/apps/{app}")),
        (Method::DELETE, format!("/api/v1/apps/{app}")),
        (Method::GET, format!("/api/v1/apps/{app}/versions")),
        (
            Method::POST,
            format!("/api/v1/apps/{app}/versions?label=v1"),
        ),
        (Method::GET, format!("/api/v1/apps/{app}/versions/v1")),
        (Method::GET, "/api/v1/environments".into()),
        (Method::POST, "/api/v1/environments".into()),
        (Method::GET, "/api/v1/environments/some-env".into()),
        (Method::DELETE, "/api/v1/environments/some-env".into()),
        (Method::POST, "/api/v1/environments/some-env/deploy".into()),
        (Method::GET, "/api/v1/environments/some-env/events".into()),
        (Method::GET, "/api/v1/environments/some-env/logs".into()),
        (Method::POST, "/api/v1/platforms/python/build".into()),
    ];
    let foreign = format!("Bearer {}", other.token);
    let credentials: Vec<(&str, Option<&str>, &str)> = vec![
        ("no token", None, "missing bearer token"),
        ("garbage token", Some("Bearer not-a-jwt"), "invalid token"),
        ("empty token", Some("Bearer "), ""),
        ("basic auth", Some("Basic YWRtaW46cGFzcw=="), "Bearer"),
        (
            "another server's token",
            Some(foreign.as_str()),
            "invalid token",
        ),
    ];
    let client = http_client();
    for (method, path) in &routes {
        for (what, header, needle) in &credentials {
            let mut req = client.request(method.clone(), format!("{}{path}", server.api));
            if let Some(h) = header {
                req = req.header("authorization", *h);
            }
            if *method == Method::POST {
                req = req
                    .header("content-type", "application/json")
                    .body(r#"{"name":"sneaky","version":"v1","app":"sneaky"}"#);
            }
            let resp = req.send().await.expect("answered");
            expect_problem(
                resp,
                401,
                types::UNAUTHORIZED,
                needle,
                &format!("{method} {path} with {what}"),
            )
            .await;
        }
    }
    // The other server's token is good there, and only there.
    other
        .client
        .list_apps()
        .await
        .expect("a token works on its own server");
    before
        .assert_unchanged(&server, "unauthenticated requests")
        .await;

    // Open routes.
    let resp = client
        .get(format!("{}/healthz", server.api))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap_or_default(), "ok");

    // A wrong login: 401, and the same detail whether the user exists or not.
    let mut details = Vec::new();
    for (user, password) in [
        ("admin", "wrong-password"),
        ("nobody", "wrong-password"),
        ("nobody", ADMIN_PASSWORD),
        ("admin", ""),
    ] {
        let resp = client
            .post(format!("{}/api/v1/login", server.api))
            .json(&json!({ "username": user, "password": password }))
            .send()
            .await
            .expect("login answered");
        let what = format!("login {user}/{password:?}");
        details.push(expect_problem(resp, 401, types::UNAUTHORIZED, "", &what).await);
    }
    assert!(
        details.iter().all(|d| d == &details[0]),
        "a wrong login says the same whatever was wrong: {details:?}"
    );
    let resp = client
        .post(format!("{}/api/v1/login", server.api))
        .header("content-type", "application/json")
        .body(r#"{"username": "admin"}"#)
        .send()
        .await
        .expect("login answered");
    expect_problem(
        resp,
        400,
        types::INVALID_INPUT,
        "password",
        "login without a password",
    )
    .await;

    // `sprout login`: a wrong password is one line and saves nothing; the right one saves
    // login.json, readable by its owner only.
    let login_file = server.config_dir.path().join("login.json");
    let out = server.cli_with_stdin(
        &["login", "--user", "admin", "--password-stdin"],
        Some("wrong-password\n"),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "wrong password: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains(&details[0]),
        "{err:?} should carry {:?}",
        details[0]
    );
    assert!(!login_file.exists(), "a failed login saves nothing");
    let out = server.cli_with_stdin(
        &["login", "--user", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(out.status.success(), "login: {}", stderr(&out));
    let meta = std::fs::metadata(&login_file).expect("login.json saved");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "login.json is 0600"
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&login_file).expect("read")).expect("json");
    let token = saved["token"].as_str().expect("a saved token").to_string();
    let resp = client
        .get(format!("{}/api/v1/apps", server.api))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 200, "the saved token works");
    // A second, wrong login keeps the first one's file.
    let out = server.cli_with_stdin(
        &["login", "--user", "admin", "--password-stdin"],
        Some("wrong-again\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let again: Value =
        serde_json::from_slice(&std::fs::read(&login_file).expect("read")).expect("json");
    assert_eq!(
        again["token"], saved["token"],
        "a failed login keeps the saved one"
    );
}

/// An instance type bigger than the engine's host is refused up front (Docker would refuse
/// every container of it and the environment would never settle), at create and at config.
#[tokio::test]
async fn an_instance_type_bigger_than_the_host_is_refused() {
    let cpus: u32 = docker_lines(&["info", "--format", "{{.NCPU}}"])
        .first()
        .and_then(|l| l.trim().parse().ok())
        .expect("docker info NCPU");
    let Some(too_big) = sprout_core::InstanceType::ALL
        .iter()
        .copied()
        .find(|t| !t.fits(cpus))
    else {
        eprintln!("every instance type fits this {cpus}-CPU host; nothing to refuse");
        return;
    };
    let server = TestServer::start().await;
    let app = unique("bigtype");
    server.client.create_app(&app).await.expect("app");
    push(&server, &testapp_dir(), &app, "v1");
    let env = unique("bigtype");
    let out = server.cli(&[
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--type",
        too_big.as_str(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("instance type {too_big} needs")) && err.contains("types that fit"),
        "{err}"
    );
    assert!(
        server.client.get_environment(&env).await.is_err(),
        "nothing was created"
    );

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
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.cli(&["config", &env, "--set", &format!("instance_type={too_big}")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("types that fit"), "{}", stderr(&out));
    let detail = server.client.get_environment(&env).await.expect("env");
    assert_ne!(detail.environment.instance_type, too_big, "unchanged");
    assert_eq!(detail.environment.status.as_str(), "Ready");
}
