//! The dashboard, driven as a person drives it: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) through WebDriver. Screenshots of the main pages are saved to a folder
//! the test prints. The refusals (bad password, expired session, missing CSRF token, a
//! viewer's forged post, HTML in user input, an upload that is not an archive) are checked
//! over plain HTTP too, each leaving nothing changed.

use crate::harness::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const VIEWER_PASSWORD: &str = "viewer-password-1";

/// Where the screenshots go: `$SPROUT_ARTIFACTS/dashboard-screenshots`, else the target dir.
fn screenshots_dir() -> PathBuf {
    let base = std::env::var_os("SPROUT_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = base.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// None (the test is skipped) when Chromium is missing, except under CI, which must
    /// prove the dashboard: there a missing browser fails the test.
    async fn start() -> Option<Self> {
        let have = |bin: &str| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !(have("chromedriver") && have("chromium")) {
            assert!(
                std::env::var_os("SPROUT_REQUIRE_DOCKER").is_none(),
                "the dashboard tests need Debian's chromium and chromium-driver (.ci/run installs them)"
            );
            eprintln!("SKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let up = eventually(Duration::from_secs(20), || async {
            http_client()
                .get(&status)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        assert!(up.is_some(), "chromedriver did not answer on {url}");
        Some(Self { child, url })
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1280,1000"]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session with headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A screenshot of the whole page: the window is made as tall as the page for it.
async fn shot(b: &Client, dir: &Path, name: &str) {
    let (w, h) = b.get_window_size().await.unwrap_or((1280, 1000));
    let page_h = b
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(h);
    b.set_window_size(w as u32, (page_h + 140).min(6000) as u32)
        .await
        .ok();
    let png = b.screenshot().await.expect("screenshot");
    b.set_window_size(w as u32, h as u32).await.ok();
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text_of(b: &Client, css: &str) -> Option<String> {
    let el = b.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

/// Waits until the element's text satisfies `ok` (the page updates itself by polling).
async fn wait_text(b: &Client, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
    let got = eventually(timeout, || async {
        text_of(b, css).await.filter(|t| ok(t))
    })
    .await;
    match got {
        Some(t) => t,
        None => {
            let now = text_of(b, css).await;
            let body = text_of(b, "main").await.unwrap_or_default();
            panic!("'{css}' never became as expected (now: {now:?}); page:\n{body}");
        }
    }
}

async fn fill(b: &Client, css: &str, value: &str) {
    let el = b.find(Locator::Css(css)).await.expect(css);
    el.clear().await.ok();
    el.send_keys(value).await.expect("type");
}

async fn select(b: &Client, css: &str, value: &str) {
    let el = b.find(Locator::Css(css)).await.expect(css);
    el.select_by_value(value).await.expect("select");
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn log_in(b: &Client, api: &str, user: &str, password: &str) {
    b.goto(&format!("{api}/login")).await.expect("login page");
    fill(b, "input[name=username]", user).await;
    fill(b, "input[name=password]", password).await;
    click(b, "form[action='/login'] button[type=submit]").await;
}

fn tar_gz_of(dir: &Path, into: &Path) {
    let file = std::fs::File::create(into).expect("archive");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", dir).expect("tar");
    tar.into_inner().expect("tar").finish().expect("gz");
}

/// A viewer, added by the admin through the CLI.
async fn add_viewer(server: &TestServer, name: &str) {
    add_user(server, name, "viewer", VIEWER_PASSWORD);
}

/// A plain HTTP session: GET /login for the CSRF pair, POST the form; keeps the cookie.
pub(crate) async fn http_session(
    api: &str,
    user: &str,
    password: &str,
) -> (reqwest::Client, reqwest::StatusCode, String) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let page = page_text(&client, &format!("{api}/login")).await;
    let csrf = hidden_csrf(&page);
    let r = client
        .post(format!("{api}/login"))
        .form(&[("username", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .expect("login post");
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    (client, status, body)
}

/// A dashboard page's HTML, fetched with the session of `client`.
pub(crate) async fn page_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text")
}

fn hidden_csrf(html: &str) -> String {
    let Some(at) = html.find("name=\"csrf\" value=\"") else {
        panic!("no CSRF field on the page:\n{html}");
    };
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap_or(0)].to_string()
}

#[tokio::test]
async fn dashboard_drives_an_environment_in_a_browser() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start().await;
    let shots = screenshots_dir();
    println!("dashboard screenshots: {}", shots.display());
    let api = server.api.clone();
    let app = unique("dash");
    let env = unique("dash-web");
    let viewer = unique("viewer");
    add_viewer(&server, &viewer).await;
    let b = driver.browser().await;

    // Log in: a wrong password first, then the right one.
    log_in(&b, &api, "admin", "not-the-password").await;
    let msg = wait_text(&b, "#login-error", Duration::from_secs(10), |_| true).await;
    assert_eq!(msg, "Wrong user name or password.");
    shot(&b, &shots, "01-login-refused").await;
    log_in(&b, &api, "admin", ADMIN_PASSWORD).await;
    wait_text(&b, "h1", Duration::from_secs(10), |t| t == "Applications").await;

    // Create the application and upload a version, watching the progress bar finish.
    fill(&b, "input[name=name]", &app).await;
    click(&b, "form[action='/apps'] button[type=submit]").await;
    wait_text(&b, "h1", Duration::from_secs(10), |t| t == app).await;
    let work = tempfile::tempdir().expect("temp dir");
    let bundle = work.path().join("testapp.tar.gz");
    tar_gz_of(&testapp_dir(), &bundle);
    for label in ["v1", "v2"] {
        fill(&b, "#upload-label", label).await;
        b.find(Locator::Css("#upload-file"))
            .await
            .expect("file input")
            .send_keys(bundle.to_str().unwrap_or_default())
            .await
            .expect("choose file");
        click(&b, "#upload button[type=submit]").await;
        wait_text(&b, ".flash.notice", Duration::from_secs(30), |t| {
            t.contains(&format!("version {label} uploaded"))
        })
        .await;
    }
    // Both build; the page shows each version's status (reloaded until ready).
    let ready = eventually(Duration::from_secs(240), || async {
        b.refresh().await.ok()?;
        let table = text_of(&b, "#versions").await?;
        (table.matches("ready").count() >= 2).then_some(table)
    })
    .await;
    assert!(
        ready.is_some(),
        "v1 and v2 did not build: {:?}",
        text_of(&b, "#versions").await
    );

    // An upload that is not an archive: a clear message, no new version.
    let junk = work.path().join("notes.txt");
    std::fs::write(&junk, "this is not an archive").expect("junk");
    fill(&b, "#upload-label", "junk").await;
    b.find(Locator::Css("#upload-file"))
        .await
        .expect("file input")
        .send_keys(junk.to_str().unwrap_or_default())
        .await
        .expect("choose file");
    click(&b, "#upload button[type=submit]").await;
    let refused = wait_text(&b, "#upload-status", Duration::from_secs(20), |t| {
        t.contains("not a tar.gz or zip")
    })
    .await;
    assert!(refused.contains("not a tar.gz or zip archive"), "{refused}");
    shot(&b, &shots, "02-application").await;
    b.refresh().await.expect("reload");
    let versions = text_of(&b, "#versions").await.unwrap_or_default();
    assert!(
        !versions.contains("junk"),
        "the refused upload left a version: {versions}"
    );

    // The build log of a version.
    b.goto(&format!("{api}/apps/{app}/versions/v1"))
        .await
        .expect("version page");
    let log = text_of(&b, "#build-log").await.unwrap_or_default();
    assert!(!log.trim().is_empty(), "v1 has a build log");
    b.back().await.expect("back");

    // Create an environment and watch it turn Green.
    fill(&b, "#create-env input[name=name]", &env).await;
    select(&b, "#create-env select[name=version]", "v1").await;
    select(&b, "#create-env select[name=mode]", "dev").await;
    click(&b, "#create-env button[type=submit]").await;
    wait_text(&b, "#summary h1", Duration::from_secs(10), |t| t == env).await;
    wait_text(&b, "#env-health", Duration::from_secs(180), |t| {
        t == "Green"
    })
    .await;
    let url = text_of(&b, "#env-url").await.unwrap_or_default();
    assert!(
        url.contains(&format!("{env}.localhost")),
        "the URL is shown: {url}"
    );
    let instances = wait_text(&b, "#instances", Duration::from_secs(30), |t| {
        t.contains("v1")
    })
    .await;
    assert!(
        instances.contains("Ok"),
        "the instance is healthy: {instances}"
    );
    // The sampler fills CPU/memory within its period.
    wait_text(&b, "#instances", Duration::from_secs(40), |t| {
        t.contains("MiB") || t.contains("KiB")
    })
    .await;
    let arch = b
        .find(Locator::Css("#architecture svg"))
        .await
        .expect("the architecture picture")
        .html(false)
        .await
        .expect("svg");
    assert!(
        arch.contains(&format!("{env}.localhost"))
            && arch.contains("balancer")
            && arch.contains("zone"),
        "{arch}"
    );
    assert!(
        arch.contains("#2e7d32"),
        "a healthy instance is drawn green"
    );
    shot(&b, &shots, "03-environment-green").await;

    // Deploy another version (all at once) and watch the events tell it.
    select(&b, "#deploy-form select[name=version]", "v2").await;
    select(&b, "#deploy-form select[name=policy]", "all-at-once").await;
    click(&b, "#deploy-form button[type=submit]").await;
    wait_text(&b, "#events", Duration::from_secs(20), |t| {
        t.contains("deploying version v2")
    })
    .await;
    shot(&b, &shots, "04-deploying").await;
    wait_text(&b, "#env-version", Duration::from_secs(30), |t| t == "v2").await;
    wait_text(&b, "#env-status", Duration::from_secs(180), |t| {
        t.starts_with("Ready")
    })
    .await;
    wait_text(&b, "#env-health", Duration::from_secs(60), |t| t == "Green").await;
    let deployments = text_of(&b, "#deployments").await.unwrap_or_default();
    assert!(
        deployments.contains("deploy") && deployments.contains("succeeded"),
        "{deployments}"
    );

    // Edit properties: HTML in a value is shown as text; a secret's value never reaches the page.
    fill(&b, "#property-form input[name=key]", "TEST_COLOR").await;
    fill(&b, "#property-form input[name=value]", "<b>blue</b>").await;
    click(&b, "#property-form button[type=submit]").await;
    wait_text(&b, ".flash.notice", Duration::from_secs(10), |t| {
        t.contains("TEST_COLOR set")
    })
    .await;
    let shown = text_of(&b, "#properties tr[data-key=TEST_COLOR] td:nth-child(2)").await;
    assert_eq!(
        shown.as_deref(),
        Some("<b>blue</b>"),
        "HTML is escaped, shown as typed"
    );
    wait_text(&b, "#env-status", Duration::from_secs(180), |t| {
        t.starts_with("Ready")
    })
    .await;
    fill(&b, "#property-form input[name=key]", "API_TOKEN").await;
    fill(&b, "#property-form input[name=value]", "s3cret-value").await;
    click(&b, "#property-form button[type=submit]").await;
    wait_text(&b, ".flash.notice", Duration::from_secs(10), |t| {
        t.contains("API_TOKEN set")
    })
    .await;
    let source = b.source().await.expect("source");
    assert!(!source.contains("s3cret-value"), "a secret value is masked");
    assert!(
        !source.contains("<b>blue</b>"),
        "no raw HTML from user input"
    );
    wait_text(&b, "#env-status", Duration::from_secs(180), |t| {
        t.starts_with("Ready")
    })
    .await;
    wait_text(&b, "#env-health", Duration::from_secs(60), |t| t == "Green").await;
    let config = server.client.get_config(&env).await.expect("config");
    assert_eq!(
        config.properties.get("TEST_COLOR").map(String::as_str),
        Some("<b>blue</b>")
    );
    let logs = wait_text(&b, "#logs", Duration::from_secs(20), |t| {
        t.contains("── i-")
    })
    .await;
    assert!(!logs.contains("no instance is running"), "{logs}");
    // Some traffic, and time for the sampler to draw it, before the picture of the page.
    let load = Load::start(&server.balancer, &server.host(&env), "/", 2);
    tokio::time::sleep(Duration::from_secs(25)).await;
    let report = load.stop().await;
    assert!(report.ok > 0, "the environment served: {report:?}");
    b.refresh().await.expect("reload");
    shot(&b, &shots, "05-environment-after-deploy").await;

    // Log out: the dashboard asks for a login again.
    click(&b, "#logout").await;
    wait_text(&b, "h1", Duration::from_secs(10), |t| t == "Log in").await;
    b.goto(&format!("{api}/envs/{env}"))
        .await
        .expect("env page");
    wait_text(&b, "h1", Duration::from_secs(10), |t| t == "Log in").await;

    // A viewer sees the environment but no action.
    log_in(&b, &api, &viewer, VIEWER_PASSWORD).await;
    wait_text(&b, "h1", Duration::from_secs(10), |t| t == "Applications").await;
    assert!(
        b.find(Locator::Css("form[action='/apps']")).await.is_err(),
        "no create form for a viewer"
    );
    b.goto(&format!("{api}/envs/{env}"))
        .await
        .expect("env page");
    wait_text(&b, "#env-health", Duration::from_secs(10), |t| t == "Green").await;
    for css in [
        "#actions",
        "#property-form",
        "#deploy-form",
        "#terminate-form",
        "#properties form",
    ] {
        assert!(
            b.find(Locator::Css(css)).await.is_err(),
            "a viewer sees no {css}"
        );
    }
    b.set_window_size(390, 844).await.expect("phone size");
    shot(&b, &shots, "06-viewer-phone").await;
    b.set_window_size(1280, 1000).await.expect("desktop size");

    // The viewer forges the deploy form (with its own valid CSRF token): 403, nothing changed.
    let (viewer_http, status, _) = http_session(&api, &viewer, VIEWER_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "viewer logs in");
    let page = page_text(&viewer_http, &format!("{api}/envs/{env}")).await;
    let csrf = hidden_csrf(&page);
    let forged = viewer_http
        .post(format!("{api}/envs/{env}/deploy"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("version", "v1"),
            ("policy", "default"),
        ])
        .send()
        .await
        .expect("forged post");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    let body = forged.text().await.unwrap_or_default();
    assert!(body.contains("viewer role"), "{body}");
    let detail = server.client.get_environment(&env).await.expect("env");
    assert_eq!(
        detail.environment.version, "v2",
        "the forged deploy changed nothing"
    );
    b.close().await.ok();
    println!("dashboard screenshots: {}", shots.display());
}

#[tokio::test]
async fn dashboard_refuses_bad_input_and_changes_nothing() {
    let server = TestServer::start().await;
    let api = server.api.clone();
    let viewer = unique("viewer");
    add_viewer(&server, &viewer).await;

    // Wrong password and unknown user: the same words, 401, no session.
    let (_, s1, b1) = http_session(&api, "admin", "wrong").await;
    let (_, s2, b2) = http_session(&api, "nobody-here", "wrong").await;
    assert_eq!(
        (s1, s2),
        (
            reqwest::StatusCode::UNAUTHORIZED,
            reqwest::StatusCode::UNAUTHORIZED
        )
    );
    assert!(
        b1.contains("Wrong user name or password.") && b2.contains("Wrong user name or password.")
    );
    // Attempts are limited: after five failures even the right password waits.
    for _ in 0..4 {
        http_session(&api, "admin", "wrong").await;
    }
    let (_, limited, body) = http_session(&api, "admin", ADMIN_PASSWORD).await;
    assert_eq!(limited, reqwest::StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("Too many failed attempts"));

    // A login post without its CSRF token is refused.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = bare
        .post(format!("{api}/login"))
        .form(&[("username", viewer.as_str()), ("password", VIEWER_PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);

    // Expired session: signed with the server's own key, but past its time.
    let key = std::fs::read(server.data.join("jwt.key")).expect("jwt key");
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "admin", "role": "admin", "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .expect("token");
    let r = bare
        .get(format!("{api}/"))
        .header("cookie", format!("sprout_session={expired}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/login?expired=1")
    );
    let login = bare
        .get(format!("{api}/login?expired=1"))
        .send()
        .await
        .expect("login");
    assert!(login
        .text()
        .await
        .unwrap_or_default()
        .contains("Your session has expired"));

    // Signed in as the viewer: a deployer route is 403, with or without a CSRF token.
    let (viewer_http, status, _) = http_session(&api, &viewer, VIEWER_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let page = page_text(&viewer_http, &format!("{api}/")).await;
    assert!(
        !page.contains("New application"),
        "a viewer has no create form"
    );
    let csrf = hidden_csrf(&page);
    let r = viewer_http
        .post(format!("{api}/apps"))
        .form(&[("csrf", csrf.as_str()), ("name", "viewer-made")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap_or_default().contains("viewer role"));

    // A writer's forms without the CSRF token: 403, nothing made. (The limiter keeps admin
    // out for a while now, so a deployer writes.)
    add_user(&server, "deployer1", "deployer", "deployer-pw-1");
    let (dep, status, _) = http_session(&api, "deployer1", "deployer-pw-1").await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let r = dep
        .post(format!("{api}/apps"))
        .form(&[("name", "no-csrf-app")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap_or_default().contains("CSRF token"));
    let r = dep
        .post(format!("{api}/apps/whatever/upload?label=v1"))
        .body("not an archive")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::FORBIDDEN,
        "an upload without the CSRF header"
    );

    // HTML in a user-supplied string comes back escaped in the error page.
    let page = page_text(&dep, &format!("{api}/")).await;
    let csrf = hidden_csrf(&page);
    let r = dep
        .post(format!("{api}/apps"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "<script>alert(1)</script>"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap_or_default();
    assert!(!body.contains("<script>alert(1)"), "escaped: {body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    let apps = server.client.list_apps().await.expect("apps");
    assert!(apps.is_empty(), "nothing was made: {apps:?}");
}

/// Posts a dashboard form with the session's CSRF token (read from the environment's page)
/// and returns the status and the page it leads to.
async fn post_form(
    client: &reqwest::Client,
    api: &str,
    path: &str,
    env: &str,
    fields: &[(&str, &str)],
) -> (reqwest::StatusCode, String) {
    let page = page_text(client, &format!("{api}/envs/{env}")).await;
    let csrf = hidden_csrf(&page);
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend_from_slice(fields);
    let r = client
        .post(format!("{api}{path}"))
        .form(&form)
        .send()
        .await
        .expect("post");
    let status = r.status();
    let body = match r.headers().get("location").and_then(|l| l.to_str().ok()) {
        Some(to) => client
            .get(format!("{api}{to}"))
            .send()
            .await
            .expect("follow")
            .text()
            .await
            .unwrap_or_default(),
        None => r.text().await.unwrap_or_default(),
    };
    (status, body)
}

/// The dashboard's other actions, each through its form as a browser posts it, checked in
/// the API, in Docker and through the balancer: scale, restart (under load, no failed
/// request), swap, abort with nothing running, terminate (with and without confirmation),
/// and a worker environment's queue, dead-letter queue and redrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_actions_scale_restart_swap_terminate_and_redrive() {
    let server = TestServer::start().await;
    let api = server.api.clone();
    let app = unique("dact");
    let (blue, green) = (unique("blue"), unique("green"));
    server.client.create_app(&app).await.expect("app");
    push(&server, &testapp_dir(), &app, "v1");
    for env in [&blue, &green] {
        let out = server.cli(&[
            "env",
            "create",
            env,
            "--app",
            &app,
            "--version",
            "v1",
            "--wait",
        ]);
        assert!(out.status.success(), "env create: {}", stderr(&out));
    }
    let (admin, status, _) = http_session(&api, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);

    // Scale to 2.
    let (status, page) = post_form(
        &admin,
        &api,
        &format!("/envs/{blue}/scale"),
        &blue,
        &[("instances", "2")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    let two = eventually(Duration::from_secs(60), || async {
        let d = server.client.get_environment(&blue).await.ok()?;
        let healthy: Vec<String> = d
            .instances
            .iter()
            .filter(|i| i.healthy)
            .map(|i| i.id.clone())
            .collect();
        (d.environment.desired == 2
            && healthy.len() == 2
            && d.environment.status.as_str() == "Ready")
            .then_some(healthy)
    })
    .await
    .expect("scaled to 2 healthy instances");

    // Restart under load: every instance replaced, one at a time, no failed request.
    let load = Load::start(&server.balancer, &server.host(&blue), "/", 4);
    let (status, page) =
        post_form(&admin, &api, &format!("/envs/{blue}/restart"), &blue, &[]).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    assert!(
        page.contains("restarting 2 instance(s)"),
        "the notice says what happens"
    );
    let replaced = eventually(Duration::from_secs(120), || async {
        let d = server.client.get_environment(&blue).await.ok()?;
        let healthy: Vec<String> = d
            .instances
            .iter()
            .filter(|i| i.healthy && i.state == "running")
            .map(|i| i.id.clone())
            .collect();
        (d.instances.len() == 2 && healthy.len() == 2 && healthy.iter().all(|id| !two.contains(id)))
            .then_some(healthy)
    })
    .await;
    let report = load.stop().await;
    assert!(
        replaced.is_some(),
        "both instances were replaced: before {two:?}"
    );
    assert_eq!(
        report.failed, 0,
        "restart drops no request: {:?}",
        report.failures
    );
    assert!(report.ok > 0);

    // Swap the two environments' host names.
    let cname_of = |name: String| {
        let client = server.client.clone();
        async move {
            client
                .get_environment(&name)
                .await
                .expect("env")
                .environment
                .cname
        }
    };
    let (blue_cname, green_cname) = (cname_of(blue.clone()).await, cname_of(green.clone()).await);
    let (status, page) = post_form(
        &admin,
        &api,
        &format!("/envs/{blue}/swap"),
        &blue,
        &[("with", &green)],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    assert_eq!(cname_of(blue.clone()).await, green_cname);
    assert_eq!(cname_of(green.clone()).await, blue_cname);

    // Abort with nothing running: a clear refusal, nothing changed.
    let (status, page) = post_form(&admin, &api, &format!("/envs/{blue}/abort"), &blue, &[]).await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{page}");

    // Terminate needs the name typed in; then the environment goes.
    let (status, page) = post_form(
        &admin,
        &api,
        &format!("/envs/{green}/terminate"),
        &green,
        &[("confirm", "nope")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(page.contains("type the environment"), "{page}");
    assert_eq!(
        server
            .client
            .get_environment(&green)
            .await
            .expect("env")
            .environment
            .status
            .as_str(),
        "Ready"
    );
    let (status, page) = post_form(
        &admin,
        &api,
        &format!("/envs/{green}/terminate"),
        &green,
        &[("confirm", &green)],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    let gone = eventually(Duration::from_secs(60), || async {
        let d = server.client.get_environment(&green).await.ok()?;
        (d.environment.status.as_str() == "Terminated").then_some(())
    })
    .await;
    assert!(gone.is_some(), "terminated");
    assert!(
        server.containers(&format!("sprout.env={green}")).is_empty(),
        "its containers are gone"
    );

    // A worker: its queue on the page, a dead letter, and redrive from the page.
    let wapp = unique("dwork");
    let worker = unique("dwork");
    crate::worker::launch_worker(
        &server,
        &wapp,
        &worker,
        1,
        None,
        &["SQSD_MAX_RETRIES=1", "SQSD_ERROR_VISIBILITY_TIMEOUT=0"],
    )
    .await;
    crate::worker::send_many(&server, &worker, vec!["{\"fail\": true}".into()]).await;
    eventually(Duration::from_secs(30), || async {
        let s = server.client.queue_stats(&worker).await.ok()?;
        (s.dead == 1).then_some(())
    })
    .await
    .expect("the failing message is dead");
    let page = page_text(&admin, &format!("{api}/envs/{worker}")).await;
    assert!(
        page.contains("Dead-letter queue") || page.contains("dead-letter queue"),
        "the worker page shows its DLQ"
    );
    // Heal the worker, then redrive from the page: the message comes back and succeeds.
    let detail = server
        .client
        .get_environment(&worker)
        .await
        .expect("worker");
    for i in &detail.instances {
        let addr = i.address.as_ref().expect("address");
        http_client()
            .post(format!("http://{addr}:8080/heal"))
            .send()
            .await
            .expect("heal");
    }
    let (status, page) = post_form(
        &admin,
        &api,
        &format!("/envs/{worker}/redrive"),
        &worker,
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    assert!(page.contains("1 message(s) moved back"), "notice");
    let drained = eventually(Duration::from_secs(30), || async {
        let s = server.client.queue_stats(&worker).await.ok()?;
        (s.dead == 0 && s.visible == 0 && s.in_flight == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the redriven message was processed");
    let audit: serde_json::Value =
        serde_json::from_str(&stdout(&server.cli(&["audit", "--json"]))).expect("audit");
    assert!(
        audit.as_array().expect("entries").iter().any(|e| e["path"]
            == serde_json::json!(format!("/envs/{blue}/restart"))
            && e["actor"] == serde_json::json!("admin")),
        "dashboard changes are audited: {audit}"
    );
}
