//! The worker tier end to end: the queue, the sqsd-style dispatcher, periodic tasks, the
//! SQS endpoint (driven by boto3) — through the real binary, Docker and SQLite.

use crate::harness::*;
use serde_json::Value;
use sprout_core::queue::SendRequest;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn worker_example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/worker")
}

/// A copy of the worker example, with another cron.yaml if given.
fn worker_bundle(cron: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["Procfile", "sprout.yaml", "worker.py", "cron.yaml"] {
        std::fs::copy(worker_example().join(f), dir.path().join(f)).expect("copy");
    }
    if let Some(cron) = cron {
        std::fs::write(dir.path().join("cron.yaml"), cron).expect("cron.yaml");
    }
    dir
}

pub(crate) async fn launch_worker(
    server: &TestServer,
    app: &str,
    env: &str,
    instances: u32,
    cron: Option<&str>,
    props: &[&str],
) {
    let bundle = worker_bundle(cron);
    let out = server.cli(&["app", "create", app]);
    assert!(out.status.success(), "app create: {}", stderr(&out));
    let path = bundle.path().to_str().expect("utf-8");
    let out = server.cli(&["push", path, "--app", app, "--label", "v1"]);
    assert!(out.status.success(), "push: {}", stderr(&out));
    let n = instances.to_string();
    let mut args = vec![
        "env",
        "create",
        env,
        "--app",
        app,
        "--version",
        "v1",
        "--tier",
        "worker",
        "--instances",
        &n,
        "--wait",
    ];
    for p in props {
        args.push("--env");
        args.push(p);
    }
    let out = server.cli(&args);
    assert!(out.status.success(), "env create: {}", stderr(&out));
}

/// Every instance's address (IP:8080), from the API.
pub(crate) async fn instance_addrs(server: &TestServer, env: &str) -> Vec<(String, String)> {
    let detail = server.client.get_environment(env).await.expect("env");
    detail
        .instances
        .iter()
        .filter(|i| i.state == "running")
        .filter_map(|i| Some((i.id.clone(), format!("{}:8080", i.address.as_ref()?))))
        .collect()
}

/// The jobs every running instance processed.
pub(crate) async fn records(server: &TestServer, env: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for (_, addr) in instance_addrs(server, env).await {
        if let Ok(r) = http_client()
            .get(format!("http://{addr}/records"))
            .send()
            .await
        {
            if let Ok(Value::Array(items)) = r.json::<Value>().await {
                all.extend(items);
            }
        }
    }
    all
}

fn header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Message ids processed with 200, once each, for bodies in `bodies`.
fn processed(records: &[Value]) -> HashMap<String, Vec<&Value>> {
    let mut out: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records.iter().filter(|r| r["status"] == 200) {
        if let Some(id) = header(r, "x-aws-sqsd-msgid") {
            out.entry(id.to_string()).or_default().push(r);
        }
    }
    out
}

pub(crate) async fn send_many(server: &TestServer, env: &str, bodies: Vec<String>) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in bodies.chunks(50) {
        let sends = chunk.iter().map(|b| async move {
            let req = SendRequest {
                body: b.clone(),
                ..Default::default()
            };
            server.client.queue_send(env, &req).await
        });
        for r in futures_util::future::join_all(sends).await {
            ids.push(r.expect("send").message_id);
        }
    }
    ids
}

pub(crate) fn require_boto3() {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs python3 with boto3 (`pip install boto3`; .ci/run installs it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_environment_thousand_messages_cron_and_boto3() {
    require_boto3();
    let server = TestServer::start().await;
    let app = unique("wq");
    let env = unique("work");
    let cron = "version: 1\ncron:\n  - name: tick\n    url: /tasks/tick\n    schedule: \"*/3 * * * * *\"\n";
    launch_worker(&server, &app, &env, 3, Some(cron), &[]).await;
    assert_eq!(instance_addrs(&server, &env).await.len(), 3);

    // 1,000 messages: each processed, none lost, none twice unless redelivered.
    let bodies: Vec<String> = (0..1000).map(|i| format!("{{\"n\": {i}}}")).collect();
    let started = Instant::now();
    let ids = send_many(&server, &env, bodies).await;
    let sent_in = started.elapsed();
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    let done = eventually(Duration::from_secs(120), || async {
        let recs = records(&server, &env).await;
        let got = processed(&recs);
        wanted.iter().all(|id| got.contains_key(id)).then_some(recs)
    })
    .await
    .expect("all 1,000 messages processed within 120 s");
    let took = started.elapsed();
    println!(
        "end to end: 1000 messages sent in {:.2} s, all processed by 3 instances in {:.2} s ({:.0} msg/s)",
        sent_in.as_secs_f64(),
        took.as_secs_f64(),
        1000.0 / took.as_secs_f64()
    );
    let got = processed(&done);
    let instances: HashSet<&str> = done.iter().filter_map(|r| r["instance"].as_str()).collect();
    assert_eq!(instances.len(), 3, "every instance took work");
    for id in &wanted {
        let deliveries = &got[id];
        if deliveries.len() > 1 {
            // Only a message whose visibility ran out may come twice.
            assert!(
                deliveries
                    .iter()
                    .any(|r| header(r, "x-aws-sqsd-receive-count") != Some("1")),
                "message {id} processed twice without a redelivery"
            );
        }
    }
    let sample = got[&ids[0]][0];
    assert!(header(sample, "user-agent").is_some_and(|v| v.starts_with("aws-sqsd")));
    assert_eq!(header(sample, "content-type"), Some("application/json"));
    assert_eq!(header(sample, "x-aws-sqsd-queue"), Some(env.as_str()));
    assert!(header(sample, "x-aws-sqsd-first-received-at").is_some_and(|v| v.ends_with('Z')));
    let stats = eventually(Duration::from_secs(10), || async {
        let s = server.client.queue_stats(&env).await.ok()?;
        (s.visible == 0 && s.in_flight == 0).then_some(s)
    })
    .await
    .expect("queue drained");
    assert_eq!(stats.dead, 0);

    // Periodic task: fires with the headers, once per tick.
    let ticks: Vec<Value> = records(&server, &env)
        .await
        .into_iter()
        .filter(|r| r["path"] == "/tasks/tick")
        .collect();
    assert!(!ticks.is_empty(), "the cron task fired during the run");
    let mut seen = HashSet::new();
    for t in &ticks {
        assert_eq!(header(t, "x-aws-sqsd-taskname"), Some("tick"));
        let at = header(t, "x-aws-sqsd-scheduled-at").expect("scheduled-at");
        let secs: u32 = at[17..19].parse().expect("seconds");
        assert_eq!(secs % 3, 0, "scheduled on a 3-second tick: {at}");
        assert!(seen.insert(at.to_string()), "tick {at} enqueued twice");
    }

    // Bad input through Sprout's API: clear errors, queue unchanged.
    let before = server.client.queue_stats(&env).await.expect("stats");
    // (Too big for a command-line argument: through the client crate the CLI uses.)
    let big = SendRequest {
        body: "x".repeat(256 * 1024 + 1),
        ..Default::default()
    };
    let err = server
        .client
        .queue_send(&env, &big)
        .await
        .expect_err("oversized message refused");
    assert!(err.to_string().contains("256 KiB"), "{err}");
    let out = server.cli(&["queue", "send", &env, "x", "--delay", "901"]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    let out = server.cli(&["queue", "send", "no-such-env", "x"]);
    assert!(!out.status.success());
    assert_eq!(
        server
            .client
            .queue_stats(&env)
            .await
            .expect("stats")
            .visible,
        before.visible
    );

    // The CLI's read verbs.
    let out = server.cli(&["queue", "stats", &env, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(v["queue"], env.as_str());
    let out = server.cli(&["queue", "credentials", &env, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let creds: Value = serde_json::from_str(&stdout(&out)).expect("json");
    for key in [
        "endpoint",
        "queue_url",
        "access_key_id",
        "secret_access_key",
        "region",
    ] {
        assert!(creds[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }

    // boto3, a client nobody here wrote, against the SQS endpoint.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/sqs_boto3.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("ENDPOINT", creds["endpoint"].as_str().unwrap_or_default())
        .env(
            "ACCESS_KEY_ID",
            creds["access_key_id"].as_str().unwrap_or_default(),
        )
        .env(
            "SECRET_ACCESS_KEY",
            creds["secret_access_key"].as_str().unwrap_or_default(),
        )
        .env("REGION", creds["region"].as_str().unwrap_or_default())
        .env("QUEUE_NAME", &env)
        .env("SUFFIX", &app)
        .env_remove("AWS_PROFILE")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3 script failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_messages_retry_then_dead_letter_then_redrive() {
    let server = TestServer::start().await;
    let app = unique("wdlq");
    let env = unique("work");
    launch_worker(
        &server,
        &app,
        &env,
        1,
        None,
        &["SQSD_MAX_RETRIES=3", "SQSD_ERROR_VISIBILITY_TIMEOUT=1"],
    )
    .await;
    let mut bodies: Vec<String> = (0..4)
        .map(|i| format!("{{\"fail\": true, \"n\": {i}}}"))
        .collect();
    bodies.extend((0..6).map(|i| format!("{{\"n\": {}}}", 100 + i)));
    send_many(&server, &env, bodies).await;

    let dead = eventually(Duration::from_secs(60), || async {
        let d = server.client.queue_dlq(&env).await.ok()?;
        (d.len() == 4).then_some(d)
    })
    .await
    .expect("the 4 failing messages reach the DLQ");
    assert!(dead.iter().all(|m| m.body.contains("\"fail\"")));
    let recs = records(&server, &env).await;
    for m in &dead {
        let tries: Vec<&str> = recs
            .iter()
            .filter(|r| header(r, "x-aws-sqsd-msgid") == Some(m.message_id.as_str()))
            .filter_map(|r| header(r, "x-aws-sqsd-receive-count"))
            .collect();
        assert_eq!(tries, vec!["1", "2", "3"], "retried max_retries times");
    }
    assert_eq!(processed(&recs).len(), 6, "the others were processed");
    let out = server.cli(&["queue", "dlq", &env]);
    assert!(stdout(&out).contains("\"fail\""), "dlq lists bodies");

    // Heal the worker, redrive: they come back and succeed.
    for (_, addr) in instance_addrs(&server, &env).await {
        http_client()
            .post(format!("http://{addr}/heal"))
            .send()
            .await
            .expect("heal");
    }
    let out = server.cli(&["queue", "dlq", &env, "--redrive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("4 messages moved back"));
    eventually(Duration::from_secs(30), || async {
        let recs = records(&server, &env).await;
        (processed(&recs).len() == 10).then_some(())
    })
    .await
    .expect("redriven messages processed");
    let stats = server.client.queue_stats(&env).await.expect("stats");
    assert_eq!((stats.visible, stats.dead), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_instance_and_killed_server_lose_nothing() {
    let mut server = TestServer::start().await;
    let app = unique("wkill");
    let env = unique("work");
    launch_worker(
        &server,
        &app,
        &env,
        2,
        None,
        &["SQSD_ERROR_VISIBILITY_TIMEOUT=1"],
    )
    .await;

    // An instance killed mid-message: delivered again elsewhere.
    let id = send_many(&server, &env, vec!["{\"sleep\": 4, \"slow\": true}".into()]).await;
    let id = id[0].clone();
    let holder = eventually(Duration::from_secs(20), || async {
        for (instance, addr) in instance_addrs(&server, &env).await {
            let started: Vec<String> = http_client()
                .get(format!("http://{addr}/started"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            if started.contains(&id) {
                return Some(instance);
            }
        }
        None
    })
    .await
    .expect("an instance started on the message");
    let out = Command::new("docker")
        .args(["kill", &format!("sprout-{env}-{holder}")])
        .output()
        .expect("docker kill");
    assert!(out.status.success(), "docker kill: {}", stderr(&out));
    let recs = eventually(Duration::from_secs(60), || async {
        let recs = records(&server, &env).await;
        processed(&recs).contains_key(&id).then_some(recs)
    })
    .await
    .expect("the message is processed despite the killed instance");
    let done = &processed(&recs)[&id];
    assert!(
        done.iter().all(|r| r["instance"] != holder.as_str()),
        "delivered again elsewhere"
    );

    // kill -9 of the server with messages in flight, then a restart: all processed.
    let bodies: Vec<String> = (0..60)
        .map(|i| format!("{{\"sleep\": 0.5, \"n\": {i}}}"))
        .collect();
    let ids = send_many(&server, &env, bodies).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    server.restart().await;
    let wanted: HashSet<String> = ids.into_iter().collect();
    eventually(Duration::from_secs(120), || async {
        let recs = records(&server, &env).await;
        let got = processed(&recs);
        wanted.iter().all(|id| got.contains_key(id)).then_some(())
    })
    .await
    .expect("every message processed after kill -9 and restart");
}
