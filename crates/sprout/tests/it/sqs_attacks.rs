//! Attacks on the SQS endpoint, the dispatcher and the API port, as a tenant (an
//! application's own SQS keys) and as an outsider (a TCP client), against the real server.
//! Each was reproduced against an earlier build; each assertion fails there.

use crate::harness::*;
use crate::worker::{launch_worker, records, require_boto3};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// An application's SQS credentials, driven through boto3.
struct Sqs {
    endpoint: String,
    key: String,
    secret: String,
    region: String,
}

impl Sqs {
    fn of(server: &TestServer, env: &str) -> Self {
        let out = server.cli(&["queue", "credentials", env, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Self {
            endpoint: s("endpoint"),
            key: s("access_key_id"),
            secret: s("secret_access_key"),
            region: s("region"),
        }
    }

    fn run(&self, mode: &str, op: &str, params: Value) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/sqs_call.py");
        let out = Command::new("python3")
            .arg(&script)
            .args([mode, op, &params.to_string()])
            .env("ENDPOINT", &self.endpoint)
            .env("ACCESS_KEY_ID", &self.key)
            .env("SECRET_ACCESS_KEY", &self.secret)
            .env("REGION", &self.region)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("python3");
        assert!(out.status.success(), "sqs_call.py: {}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).expect("sqs_call.py prints JSON")
    }

    /// The call's answer: `{"ok": …}` or `{"error": code, "status": n, "message": m}`.
    fn call(&self, op: &str, params: Value) -> Value {
        self.run("call", op, params)
    }

    /// The request botocore signs for the call, not sent: `{"url", "headers", "body"}`.
    fn sign(&self, op: &str, params: Value) -> Value {
        self.run("sign", op, params)
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint address")
    }

    /// A request signed here (SigV4 with a declared `X-Amz-Content-Sha256`), as raw HTTP:
    /// the head, for a body of `body`.
    fn signed_head(&self, target: &str, body: &[u8], key: Option<&str>) -> String {
        use sprout_core::sigv4::{canonical_request, sha256_hex, sign, Authorization};
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let now = chrono::Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = now.format("%Y%m%d").to_string();
        let hash = sha256_hex(body);
        let headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            ("host".into(), host.clone()),
            ("x-amz-content-sha256".into(), hash.clone()),
            ("x-amz-date".into(), amz_date.clone()),
            ("x-amz-target".into(), target.into()),
        ];
        let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
        let key = key.unwrap_or(&self.key);
        let credential = format!("{key}/{date}/{}/sqs/aws4_request", self.region);
        let placeholder = format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={}, Signature={}",
            signed.join(";"),
            "0".repeat(64)
        );
        let auth = Authorization::parse(&placeholder).expect("authorization");
        let head = sprout_core::sigv4::SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
        };
        let signature = sign(
            &self.secret,
            &auth,
            &amz_date,
            &canonical_request(&head, &signed, &hash),
        );
        let mut text = "POST / HTTP/1.1\r\n".to_string();
        for (k, v) in &headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str(&format!(
            "authorization: AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={}, Signature={signature}\r\ncontent-length: {}\r\n\r\n",
            signed.join(";"),
            body.len()
        ));
        text
    }
}

fn attr(value: &str) -> Value {
    json!({ "DataType": "String", "StringValue": value })
}

/// Sends `head` and `body_part` on a fresh connection and reads what comes back until the
/// server closes or 15 s pass (a bound for a hung test, not a timed assertion).
async fn raw_exchange(addr: SocketAddr, head: &str, body_part: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body_part).await.expect("write body");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Every worker record's body.
async fn bodies(server: &TestServer, env: &str) -> Vec<String> {
    records(server, env)
        .await
        .iter()
        .filter_map(|r| r["body"].as_str().map(str::to_string))
        .collect()
}

/// A tenant with SQS keys attacks the dispatcher (SSRF through `beanstalk.sqsd.path`), the
/// signature (a captured request replayed with another body), the endpoint's reading of
/// bodies, and another application's queue (taken over by name), and runs into its quotas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_cannot_reach_the_host_forge_bodies_or_take_another_apps_queue() {
    require_boto3();
    let server = TestServer::start_with(&[
        ("SPROUT_APP_MAX_QUEUES", "4"),
        ("SPROUT_APP_MAX_MESSAGES", "10"),
        ("SPROUT_APP_MAX_QUEUE_BYTES", "65536"),
        ("SPROUT_BODY_TIMEOUT", "2"),
    ])
    .await;
    let atk_app = unique("atk");
    let atk = unique("atkw");
    launch_worker(&server, &atk_app, &atk, 1, None, &[]).await;
    let sqs = Sqs::of(&server, &atk);
    let url = sqs.call("GetQueueUrl", json!({ "QueueName": atk }))["ok"]["QueueUrl"]
        .as_str()
        .expect("queue url")
        .to_string();

    // ---- 1. SSRF: a host service any connection to which the dispatcher must never make.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("trap");
    let port = trap.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = hits.clone();
        tokio::spawn(async move {
            while let Ok((_conn, _)) = trap.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    for bad in [
        format!("@127.0.0.1:{port}/ssrf"),
        format!("//127.0.0.1:{port}/ssrf"),
        format!("http://127.0.0.1:{port}/ssrf"),
    ] {
        let r = sqs.call(
            "SendMessage",
            json!({ "QueueUrl": url, "MessageBody": "ssrf", "MessageAttributes": {
                "beanstalk.sqsd.task_name": attr("t"), "beanstalk.sqsd.path": attr(&bad) } }),
        );
        assert_eq!(r["error"], "InvalidParameterValue", "{bad}: {r}");
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("beanstalk.sqsd.path")),
            "{r}"
        );
    }
    // Sprout's own API refuses it the same way (through the client the CLI uses: the CLI's
    // --attr takes no dotted names).
    let bad = format!("@127.0.0.1:{port}/ssrf");
    let err = server
        .client
        .queue_send(
            &atk,
            &sprout_core::queue::SendRequest {
                body: "ssrf".into(),
                attributes: [
                    ("beanstalk.sqsd.task_name".to_string(), "t".to_string()),
                    ("beanstalk.sqsd.path".to_string(), bad.clone()),
                ]
                .into(),
                delay_seconds: None,
            },
        )
        .await
        .expect_err("the API took a message with a path to another host");
    assert!(err.to_string().contains("beanstalk.sqsd.path"), "{err}");
    // A message already in the queue from before the check (written straight into the
    // store): undeliverable, so it goes to the dead-letter queue, and nothing connects.
    {
        let store = sprout_store::Store::open(&server.data.join("sprout.db"))
            .await
            .expect("store");
        let app = store.get_app(&atk_app).await.expect("app").expect("app");
        let queue = store
            .queue_by_name(app.id, &atk)
            .await
            .expect("queue")
            .expect("queue");
        let attributes = json!({ "beanstalk.sqsd.task_name": attr("t"),
            "beanstalk.sqsd.path": attr(&format!("@127.0.0.1:{port}/ssrf")) });
        store
            .send_messages(
                &queue,
                &[sprout_store::NewMessage {
                    message_id: "legacy-ssrf".into(),
                    body: "legacy".into(),
                    md5: String::new(),
                    attributes: attributes.to_string(),
                    delay_ms: 0,
                }],
                chrono::Utc::now().timestamp_millis(),
            )
            .await
            .expect("legacy message");
        store.close().await;
    }
    // A good task message after both: once it and the legacy one are handled, the
    // dispatcher has been through the queue.
    let r = sqs.call(
        "SendMessage",
        json!({ "QueueUrl": url, "MessageBody": "ok", "MessageAttributes": {
            "beanstalk.sqsd.task_name": attr("t"), "beanstalk.sqsd.path": attr("/tasks/ok?x=1") } }),
    );
    assert!(r["ok"]["MessageId"].is_string(), "{r}");
    eventually(Duration::from_secs(60), || async {
        let dead = server.client.queue_dlq(&atk).await.ok()?;
        let recs = records(&server, &atk).await;
        (dead.iter().any(|m| m.message_id == "legacy-ssrf")
            && recs.iter().any(|r| r["path"] == "/tasks/ok?x=1"))
        .then_some(())
    })
    .await
    .expect("the good task is delivered and the legacy one dead-lettered");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the dispatcher connected to a host service"
    );
    let events = server.client.events(&atk, None).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("legacy-ssrf") && e.message.contains("dead-letter")),
        "an event says why the message was dead-lettered"
    );

    // ---- 2. The signature covers the body.
    let sig_q = sqs.call("CreateQueue", json!({ "QueueName": format!("sig-{atk}") }))["ok"]
        ["QueueUrl"]
        .as_str()
        .expect("sig queue")
        .to_string();
    let count = |q: &str| {
        sqs.call(
            "GetQueueAttributes",
            json!({ "QueueUrl": q, "AttributeNames": ["ApproximateNumberOfMessages"] }),
        )["ok"]["Attributes"]["ApproximateNumberOfMessages"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let original = r#"{"pay": 10}"#;
    let signed = sqs.sign(
        "SendMessage",
        json!({ "QueueUrl": sig_q, "MessageBody": original }),
    );
    let signed_body = signed["body"].as_str().expect("body").to_string();
    let forged_body = signed_body.replace(r#"{\"pay\": 10}"#, r#"{\"pay\": 10000}"#);
    assert_ne!(forged_body, signed_body);
    let replay = |body: String, extra: Option<(&'static str, String)>| {
        let signed = signed.clone();
        async move {
            let mut req = http_client().post(signed["url"].as_str().expect("url"));
            for (k, v) in signed["headers"].as_object().expect("headers") {
                if !k.eq_ignore_ascii_case("content-length") {
                    req = req.header(k.as_str(), v.as_str().unwrap_or_default());
                }
            }
            if let Some((k, v)) = extra {
                req = req.header(k, v);
            }
            let resp = req.body(body).send().await.expect("replay");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    let signed_hash = sprout_core::sigv4::sha256_hex(signed_body.as_bytes());
    for (what, extra) in [
        ("the same headers", None),
        (
            "X-Amz-Content-Sha256 of the signed body",
            Some(("x-amz-content-sha256", signed_hash.clone())),
        ),
        (
            "UNSIGNED-PAYLOAD",
            Some(("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string())),
        ),
    ] {
        let (status, text) = replay(forged_body.clone(), extra).await;
        assert_eq!(status, 403, "a forged body with {what} was taken: {text}");
    }
    assert_eq!(count(&sig_q), "0", "a forged body was enqueued");
    // The replay machinery itself is right: the request as signed is taken, once.
    let (status, text) = replay(
        signed_body.clone(),
        Some(("x-amz-content-sha256", signed_hash)),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let got = sqs.call(
        "ReceiveMessage",
        json!({ "QueueUrl": sig_q, "VisibilityTimeout": 0 }),
    );
    assert_eq!(got["ok"]["Messages"][0]["Body"], original, "{got}");

    // ---- 3. Bodies: a bad signature is refused before its body is read, and a body that
    // does not come is not waited for.
    let addr = sqs.addr();
    let body = json!({ "QueueUrl": sig_q, "MessageBody": "slow" }).to_string();
    let mut head = sqs.signed_head("AmazonSQS.SendMessage", body.as_bytes(), None);
    head = head.replace(
        &format!("content-length: {}", body.len()),
        "content-length: 1000000",
    );
    let bad_sig = {
        // The signature's first hex digit, flipped.
        let i = head.find("Signature=").expect("signature") + "Signature=".len();
        let flipped = if &head[i..i + 1] == "0" { "1" } else { "0" };
        let mut t = head.clone();
        t.replace_range(i..i + 1, flipped);
        t
    };
    let answer = raw_exchange(addr, &bad_sig, b"").await;
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "a 1 MB body with a bad signature was waited for: {answer:?}"
    );
    let unknown = sqs.signed_head(
        "AmazonSQS.SendMessage",
        body.as_bytes(),
        Some("SPRTUNKNOWNKEY000000"),
    );
    let answer = raw_exchange(addr, &unknown, b"").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    assert!(answer.contains("InvalidClientTokenId"), "{answer:?}");
    let good = sqs.signed_head("AmazonSQS.SendMessage", body.as_bytes(), None);
    let answer = raw_exchange(addr, &good, &body.as_bytes()[..10]).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a body that never comes is waited for: {answer:?}"
    );
    let big = vec![b'x'; 1024 * 1024 + 1];
    let too_big = sqs.signed_head("AmazonSQS.SendMessage", &big, None);
    let answer = raw_exchange(addr, &too_big, b"").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert_eq!(count(&sig_q), "1", "nothing more was enqueued");

    // ---- 4. Another application's queue, by name: app A makes the queue that app B's
    // worker environment will use, loads it, and waits.
    let vic_app = unique("vic");
    let vic = unique("vicw");
    let squat = sqs.call("CreateQueue", json!({ "QueueName": vic }))["ok"]["QueueUrl"]
        .as_str()
        .expect("a queue of the attacker's own, under that name")
        .to_string();
    let r = sqs.call(
        "SendMessage",
        json!({ "QueueUrl": squat, "MessageBody": "{\"poison\": true}" }),
    );
    assert!(r["ok"]["MessageId"].is_string(), "{r}");

    // Quotas (4 queues, 10 messages, 64 KiB per application): clear errors, nothing stored.
    let r = sqs.call("CreateQueue", json!({ "QueueName": format!("more-{atk}") }));
    assert_eq!(
        (r["error"].as_str(), r["status"].as_u64()),
        (Some("OverLimit"), Some(403)),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("4 queues per application")),
        "{r}"
    );
    let r = sqs.call("GetQueueUrl", json!({ "QueueName": format!("more-{atk}") }));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|c| c.contains("NonExistentQueue")),
        "{r}"
    );
    let r = sqs.call(
        "SendMessage",
        json!({ "QueueUrl": sig_q, "MessageBody": "x".repeat(40_000) }),
    );
    assert!(r["ok"]["MessageId"].is_string(), "{r}");
    let r = sqs.call(
        "SendMessage",
        json!({ "QueueUrl": sig_q, "MessageBody": "y".repeat(40_000) }),
    );
    assert_eq!(r["error"], "OverLimit", "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536 bytes per application")),
        "{r}"
    );
    let mut refused = None;
    for i in 0..11 {
        let r = sqs.call(
            "SendMessage",
            json!({ "QueueUrl": sig_q, "MessageBody": format!("m{i}") }),
        );
        if r["error"].is_string() {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the message quota refused a send");
    assert_eq!(refused["error"], "OverLimit", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("10 messages per application")),
        "{refused}"
    );
    let out = server.cli(&["queue", "send", &atk, "one more"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("10 messages per application"),
        "{}",
        stderr(&out)
    );

    // App B arrives: its worker gets its own queue, not the one waiting under its name.
    launch_worker(&server, &vic_app, &vic, 1, None, &[]).await;
    let stats = server.client.queue_stats(&vic).await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.delayed),
        (0, 0, 0),
        "B's queue holds A's messages"
    );
    let sent = server
        .client
        .queue_send(
            &vic,
            &sprout_core::queue::SendRequest {
                body: "{\"mine\": true}".into(),
                ..Default::default()
            },
        )
        .await
        .expect("B sends");
    eventually(Duration::from_secs(60), || async {
        bodies(&server, &vic)
            .await
            .iter()
            .any(|b| b.contains("mine"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("B's message {} is processed", sent.message_id));
    assert!(
        !bodies(&server, &vic)
            .await
            .iter()
            .any(|b| b.contains("poison")),
        "B's worker processed A's message"
    );
    assert_eq!(count(&squat), "1", "A's queue of that name is still A's");
    // A cannot name B's queue through B's URL.
    let r = sqs.call(
        "SendMessage",
        json!({ "QueueUrl": format!("{}/{vic_app}/{vic}", sqs.endpoint), "MessageBody": "x" }),
    );
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|c| c.contains("NonExistentQueue")),
        "{r}"
    );
    let vic_sqs = Sqs::of(&server, &vic);
    let listed = vic_sqs.call("ListQueues", json!({}));
    let urls = listed["ok"]["QueueUrls"].to_string();
    assert!(!urls.contains(&atk), "B lists A's queues: {urls}");
}

/// Reads until the server closes the connection; None if it is still open after `bound`
/// (a bound for a hung test, far above the configured timeouts, not a timed assertion).
async fn closed_by_server(stream: &mut TcpStream, bound: Duration) -> Option<()> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

fn port_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("address")
}

/// A server whose SQS endpoint is on a port chosen here (the harness does not keep the
/// address the server prints, and the CLI tells it only with a worker environment).
async fn start_with_sqs_port(settings: &[(&str, &str)]) -> (TestServer, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let sqs = SocketAddr::from(([127, 0, 0, 1], port));
    let listen = sqs.to_string();
    let mut env = vec![("SPROUT_SQS", listen.as_str())];
    env.extend_from_slice(settings);
    (TestServer::start_with(&env).await, sqs)
}

/// An outsider opens connections and sends half a request head, or half a body: the API
/// and the SQS endpoint close them after their timeouts, and serve others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_on_the_api_and_sqs_ports() {
    let (server, sqs) =
        start_with_sqs_port(&[("SPROUT_HEADER_TIMEOUT", "2"), ("SPROUT_BODY_TIMEOUT", "2")]).await;
    let api = port_of(&server.api);
    let mut open = Vec::new();
    for addr in [api, sqs] {
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-")
                .await
                .expect("half a head");
            open.push((addr, s));
        }
        // Connected and sent nothing at all.
        open.push((addr, TcpStream::connect(addr).await.expect("connect")));
    }
    for (addr, s) in &mut open {
        assert!(
            closed_by_server(s, Duration::from_secs(30)).await.is_some(),
            "a half-open connection to {addr} was kept"
        );
    }
    // Half a body on the API (a login): cut off too.
    let mut s = TcpStream::connect(api).await.expect("connect");
    s.write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user")
        .await
        .expect("half a body");
    assert!(
        closed_by_server(&mut s, Duration::from_secs(30))
            .await
            .is_some(),
        "a half-sent body on the API was waited for"
    );
    // Meanwhile and after, both serve.
    server.client.list_apps().await.expect("the API serves");
    let answer = raw_exchange(
        sqs,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
}

/// An outsider opens many connections: past the caps (in all, per address) they are closed
/// at once, the ones held are served, and a place that frees up is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_caps_hold_on_the_api_and_sqs_ports() {
    let (server, sqs) = start_with_sqs_port(&[
        ("SPROUT_MAX_CONNECTIONS", "6"),
        ("SPROUT_MAX_CONNECTIONS_PER_IP", "4"),
        // Long enough that the held connections stay open for the whole test.
        ("SPROUT_HEADER_TIMEOUT", "120"),
    ])
    .await;
    let from = |ip: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((ip, 0)))
            .expect("bind a loopback source");
        socket.connect(sqs).await.expect("connect")
    };
    // Served: a complete request gets an answer (403: not signed), and the connection stays.
    let served = |mut s: TcpStream| async move {
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        String::from_utf8_lossy(&buf[..n])
            .starts_with("HTTP/1.1 403")
            .then_some(s)
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(served(from([127, 0, 0, 1]).await).await.expect("served"));
    }
    assert!(
        served(from([127, 0, 0, 1]).await).await.is_none(),
        "a 5th connection from one address was served (cap 4 per address)"
    );
    for _ in 0..2 {
        held.push(
            served(from([127, 0, 0, 2]).await)
                .await
                .expect("another address is served"),
        );
    }
    assert!(
        served(from([127, 0, 0, 3]).await).await.is_none(),
        "a 7th connection was served (cap 6)"
    );
    // A place that frees up is taken again.
    drop(held.pop());
    eventually(Duration::from_secs(10), || async {
        served(from([127, 0, 0, 3]).await).await.map(drop)
    })
    .await
    .expect("a freed place is served");
    // The API has the same caps.
    let api = port_of(&server.api);
    let mut api_held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(api).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1"));
        api_held.push(s);
    }
    let mut fifth = TcpStream::connect(api).await.expect("connect");
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_by_server(&mut fifth, Duration::from_secs(15))
            .await
            .is_some(),
        "a 5th API connection from one address was kept"
    );
    drop(api_held);
}
