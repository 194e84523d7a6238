//! A tenant attacking from inside its bundle, and a client attacking through the balancer,
//! against the real server: instances and builds are confined (as `docker inspect` shows
//! them), a build step cannot run for ever, and the balancer refuses bad Host headers,
//! replaces a client's `X-Forwarded-For` and never passes on the dashboard's session cookie.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A web app that reports what it sees: its uid, the requests it served, and the `Cookie`
/// and `X-Forwarded-For` it was given.
const REPORTER: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
SERVED = {"n": 0}
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path != "/health":
            SERVED["n"] += 1
        body = json.dumps({
            "uid": os.getuid(),
            "served": SERVED["n"],
            "cookie": self.headers.get("Cookie"),
            "xff": self.headers.get("X-Forwarded-For"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn write_bundle(dir: &Path, sprout_yaml: &str) {
    std::fs::write(dir.join("Procfile"), "web: python3 app.py\n").expect("write");
    std::fs::write(dir.join("app.py"), REPORTER).expect("write");
    std::fs::write(dir.join("sprout.yaml"), sprout_yaml).expect("write");
}

/// `docker inspect -f FORMAT CONTAINER`, trimmed.
fn inspect(container: &str, format: &str) -> String {
    docker_lines(&["inspect", "-f", format, container]).join("\n")
}

/// One raw request to the balancer; answers the status line.
async fn raw_status(balancer: &str, request: &str) -> String {
    let addr = balancer.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn report(server: &TestServer, host: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut req = http_client()
        .get(format!("{}/", server.balancer))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("through the balancer");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_confined_and_the_balancer_guards_its_instances() {
    let server = TestServer::start_with(&[("SPROUT_BUILD_TIMEOUT", "5")]).await;
    let app = unique("conf");
    let env = unique("conf");
    server.client.create_app(&app).await.expect("app");

    // A build step that would run for ever is stopped at the limit, with a clear error.
    let slow = tempfile::tempdir().expect("temp dir");
    write_bundle(slow.path(), "platform: python\nbuild: sleep 600\n");
    let out = server.cli(&[
        "push",
        slow.path().to_str().unwrap_or_default(),
        "--app",
        &app,
        "--label",
        "slow",
    ]);
    assert!(!out.status.success(), "a 600 s build under a 5 s limit");
    let err = stderr(&out);
    assert!(err.contains("build time limit (5 s)"), "{err}");
    let version = server.client.get_version(&app, "slow").await.expect("row");
    assert_eq!(version.status, sprout_core::VersionStatus::Failed);

    // A bundle that asks to run as `nobody`.
    let dir = tempfile::tempdir().expect("temp dir");
    write_bundle(
        dir.path(),
        "platform: python\nhealth_check: /health\nuser: nobody\n",
    );
    push(&server, dir.path(), &app, "v1");
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
    assert!(out.status.success(), "env create: {}", stderr(&out));
    let host = server.host(&env);

    // What Docker says the instance got (a dev environment: micro, 256 processes).
    let containers = server.containers(&format!("sprout.env={env}"));
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    assert_eq!(inspect(c, "{{.Config.User}}"), "nobody");
    assert_eq!(
        inspect(c, "{{json .HostConfig.SecurityOpt}}"),
        r#"["no-new-privileges:true"]"#
    );
    let dropped = inspect(c, "{{json .HostConfig.CapDrop}}");
    for cap in ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"] {
        assert!(dropped.contains(cap), "CapDrop {dropped} lacks {cap}");
    }
    assert_eq!(inspect(c, "{{.HostConfig.PidsLimit}}"), "256");
    // And what the app sees of itself.
    let seen = report(&server, &host, &[]).await;
    assert_eq!(seen["uid"], 65534, "{seen}");

    // A Host that is not host[:port] is refused and never reaches the instance.
    let served = report(&server, &host, &[]).await["served"].clone();
    for bad in [format!("{host}:@evil"), format!("{host}:80:80")] {
        let status = raw_status(
            &server.balancer,
            &format!("GET / HTTP/1.1\r\nHost: {bad}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 400"), "Host: {bad}: {status}");
    }
    let after = report(&server, &host, &[]).await["served"].clone();
    assert_eq!(
        after.as_u64(),
        served.as_u64().map(|n| n + 1),
        "only the reporting request was served"
    );

    // A client's own X-Forwarded-For is replaced by its address.
    let seen = report(&server, &host, &[("x-forwarded-for", "6.6.6.6")]).await;
    assert_eq!(seen["xff"], "127.0.0.1", "{seen}");

    // The dashboard's session cookie never reaches the app; its own cookies do.
    let seen = report(
        &server,
        &host,
        &[(
            "cookie",
            "theme=dark; sprout_session=eyJ.the.jwt; __Host-sprout_session=eyJ2; cart=3",
        )],
    )
    .await;
    assert_eq!(seen["cookie"], "theme=dark; cart=3", "{seen}");
    let seen = report(&server, &host, &[("cookie", "sprout_session=eyJ.the.jwt")]).await;
    assert!(seen["cookie"].is_null(), "{seen}");

    let out = server.cli(&["terminate", &env, "--wait"]);
    assert!(out.status.success(), "terminate: {}", stderr(&out));
}
