//! examples/myclothes on Sprout, as the README walks through it (the real binary, Docker,
//! PostgreSQL and Redis): a prod environment of three sticky instances keeps its carts in
//! Redis sessions and its orders in PostgreSQL. Carts outlive the instances that made them,
//! orders outlive a redeploy, a scale-in and a control-plane restart, and the database answers
//! only the instances of the environment it is attached to.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn myclothes_dir() -> PathBuf {
    example_dir().join("../myclothes")
}

fn require_resource_images() {
    if let Err(missing) =
        sprout_testkit::docker_ready(&["sprout/resource-postgres", "sprout/resource-redis"])
    {
        panic!("resource image missing ({missing:?}): run docker/build-platform.sh postgres|redis (.ci/run does)");
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", stderr(out));
    stdout(out)
}

/// The app, its web environment and the name of each resource.
struct Shop {
    server: TestServer,
    app: String,
    env: String,
    orders_db: String,
}

/// Settings that keep the test quick; a roomy grace, as the engines share the machine.
const FAST: [&str; 4] = [
    "--set",
    "health_check_interval=300ms",
    "--set",
    "health_grace=60s",
];

/// The README's walk-through: app, a postgres and a redis resource, a prod environment of
/// `instances` sticky instances, both resources attached, v1 pushed.
async fn open_shop(instances: u32) -> Shop {
    require_resource_images();
    let server = TestServer::start().await;
    let app = unique("myclothes");
    let env = unique("shop");
    let (orders_db, carts) = (unique("orders"), unique("carts"));
    ok(&server.cli(&["app", "create", &app]), "app create");
    for (name, kind) in [(&orders_db, "postgres"), (&carts, "redis")] {
        ok(
            &server.cli(&[
                "resource", "create", name, "--app", &app, "--kind", kind, "--size", "micro",
                "--wait",
            ]),
            &format!("resource create {kind}"),
        );
    }
    push(&server, &myclothes_dir(), &app, "v1");
    let n = instances.to_string();
    let mut args = vec![
        "env",
        "create",
        &env,
        "--app",
        &app,
        "--version",
        "v1",
        "--mode",
        "prod",
        "--instances",
        &n,
        "--type",
        "nano",
        "--sticky",
        "1h",
        "--wait",
    ];
    args.extend(FAST);
    ok(&server.cli(&args), "env create");
    for name in [&orders_db, &carts] {
        ok(
            &server.cli(&["resource", "attach", name, &env, "--wait"]),
            "attach",
        );
    }
    wait_ready(&server, &env, Duration::from_secs(120)).await;
    Shop {
        server,
        app,
        env,
        orders_db,
    }
}

/// A customer: a browser with cookies (the balancer's stickiness, the shop's session).
struct Customer {
    http: reqwest::Client,
}

/// One answer: status, the instance and version that served it, the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    instance: String,
    version: String,
    body: Value,
}

impl Customer {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self { http }
    }

    async fn send(&self, shop: &Shop, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        self.try_send(shop, method, path, form)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn try_send(
        &self,
        shop: &Shop,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let url = format!("{}{}", shop.server.balancer, path);
        let req = match method {
            "POST" => self.http.post(url).form(form),
            _ => self.http.get(url),
        };
        let r = req
            .header("host", shop.server.host(&shop.env))
            .send()
            .await?;
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (status, instance, version) = (
            r.status().as_u16(),
            header("x-sprout-instance"),
            header("x-sprout-version"),
        );
        let body = r.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            instance,
            version,
            body,
        })
    }

    /// A GET that may meet a moment of failover (a killed instance, a restarted server):
    /// retried until it answers 200, for at most `timeout`.
    async fn get_served(&self, shop: &Shop, path: &str, timeout: Duration) -> Answer {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_send(shop, "GET", path, &[]).await {
                Ok(a) if a.status == 200 => return a,
                Ok(a) => format!("{a:?}"),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "GET {path} not served within {timeout:?}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn add(&self, shop: &Shop, item: &str, qty: u32) -> Answer {
        let qty = qty.to_string();
        let a = self
            .send(shop, "POST", "/cart", &[("item", item), ("qty", &qty)])
            .await;
        assert_eq!(a.status, 200, "add {item}: {a:?}");
        a
    }

    async fn checkout(&self, shop: &Shop) -> i64 {
        let a = self.send(shop, "POST", "/checkout", &[]).await;
        assert_eq!(a.status, 201, "checkout: {a:?}");
        a.body["order"]["id"].as_i64().expect("order id")
    }
}

/// (item, qty) pairs of a cart answer.
fn cart_lines(a: &Answer) -> Vec<(String, i64)> {
    a.body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["item"].as_str().unwrap_or("").to_string(),
                        i["qty"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the orders answer, in order.
fn order_ids(a: &Answer) -> Vec<i64> {
    a.body["orders"]
        .as_array()
        .map(|o| o.iter().filter_map(|o| o["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// Running instances of the environment: (container id, instance id).
fn running(server: &TestServer, env: &str) -> Vec<(String, String)> {
    docker_lines(&[
        "ps",
        "--filter",
        &format!("label=sprout.server={}", server.server_id),
        "--filter",
        &format!("label=sprout.env={env}"),
        "--format",
        "{{.ID}} {{.Label \"sprout.instance\"}}",
    ])
    .into_iter()
    .filter_map(|l| {
        let (c, i) = l.split_once(' ')?;
        Some((c.to_string(), i.to_string()))
    })
    .collect()
}

async fn wait_running(server: &TestServer, env: &str, n: usize) {
    let got = eventually(Duration::from_secs(120), || async {
        (running(server, env).len() == n).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{env}: {n} instances expected, {:?}",
        running(server, env)
    );
}

fn docker_kill(container: &str) {
    let out = Command::new("docker")
        .args(["kill", container])
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker kill {container}: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shop_cart_survives_the_instances_that_made_it() {
    let shop = open_shop(3).await;
    let me = Customer::new();
    let first = me.add(&shop, "tshirt", 2).await;
    me.add(&shop, "jeans", 1).await;
    let cart = me.get_served(&shop, "/cart", Duration::from_secs(5)).await;
    assert_eq!(
        cart_lines(&cart),
        [("jeans".to_string(), 1), ("tshirt".to_string(), 2)]
    );
    assert_eq!(cart.body["total_cents"], json!(2 * 1900 + 6900));
    assert_eq!(
        cart.instance, first.instance,
        "stickiness: one instance serves the customer"
    );

    // Kill the instance serving the customer, then every other instance of the first set,
    // one at a time; each time another instance serves the same cart, and it takes one more
    // pair of socks.
    let originals: Vec<(String, String)> = running(&shop.server, &shop.env);
    assert_eq!(originals.len(), 3, "{originals:?}");
    let mut alive = originals.clone();
    let mut serving = cart.instance.clone();
    let mut socks = 0;
    while !alive.is_empty() {
        let victim = match alive.iter().position(|(_, i)| *i == serving) {
            Some(at) => alive.remove(at),
            None => alive.remove(0),
        };
        docker_kill(&victim.0);
        let cart = me.get_served(&shop, "/cart", Duration::from_secs(90)).await;
        assert_ne!(cart.instance, victim.1, "a killed instance answered");
        let mut expected = vec![("jeans".to_string(), 1)];
        if socks > 0 {
            expected.push(("socks".to_string(), socks));
        }
        expected.push(("tshirt".to_string(), 2));
        assert_eq!(
            cart_lines(&cart),
            expected,
            "the cart after killing {}",
            victim.1
        );
        me.add(&shop, "socks", 1).await;
        socks += 1;
        serving = cart.instance;
        // The environment heals back to three before the next kill.
        wait_running(&shop.server, &shop.env, 3).await;
    }
    let cart = me.get_served(&shop, "/cart", Duration::from_secs(60)).await;
    assert!(
        !originals.iter().any(|(_, i)| *i == cart.instance),
        "served by a replacement, not one of {originals:?}"
    );
    assert_eq!(
        cart_lines(&cart),
        [
            ("jeans".to_string(), 1),
            ("socks".to_string(), 3),
            ("tshirt".to_string(), 2)
        ]
    );
    // The cart checks out on the new instances: an order, and an empty cart.
    let id = me.checkout(&shop).await;
    let orders = me
        .get_served(&shop, "/orders", Duration::from_secs(5))
        .await;
    assert_eq!(order_ids(&orders), [id]);
    assert_eq!(
        orders.body["orders"][0]["total_cents"],
        json!(2 * 1900 + 6900 + 3 * 1200)
    );
    let cart = me.get_served(&shop, "/cart", Duration::from_secs(5)).await;
    assert_eq!(cart_lines(&cart), []);
    // Another customer has a cart of their own.
    let other = Customer::new();
    let cart = other
        .get_served(&shop, "/cart", Duration::from_secs(5))
        .await;
    assert_eq!(cart_lines(&cart), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shop_orders_survive_redeploy_scale_in_and_server_restart() {
    let mut shop = open_shop(3).await;
    let me = Customer::new();
    me.add(&shop, "hoodie", 1).await;
    let mut ids = vec![me.checkout(&shop).await];
    me.add(&shop, "cap", 2).await;
    ids.push(me.checkout(&shop).await);
    me.add(&shop, "socks", 4).await; // left in the cart
    let orders = me
        .get_served(&shop, "/orders", Duration::from_secs(5))
        .await;
    assert_eq!(order_ids(&orders), ids);
    assert_eq!(orders.body["orders"][1]["total_cents"], json!(2 * 1500));

    let check = |what: &'static str, version: &'static str| {
        let (me, shop, ids) = (&me, &shop, ids.clone());
        async move {
            let orders = me
                .get_served(shop, "/orders", Duration::from_secs(60))
                .await;
            assert_eq!(order_ids(&orders), ids, "orders after {what}");
            assert_eq!(orders.version, version, "after {what}");
            let cart = me.get_served(shop, "/cart", Duration::from_secs(10)).await;
            assert_eq!(
                cart_lines(&cart),
                [("socks".to_string(), 4)],
                "cart after {what}"
            );
        }
    };

    // A redeploy replaces every instance.
    push(&shop.server, &myclothes_dir(), &shop.app, "v2");
    let before = running(&shop.server, &shop.env);
    ok(
        &shop
            .server
            .cli(&["deploy", &shop.env, "--version", "v2", "--wait"]),
        "deploy v2",
    );
    let after = running(&shop.server, &shop.env);
    assert!(
        !after.iter().any(|a| before.contains(a)),
        "every instance replaced: {before:?} -> {after:?}"
    );
    check("a redeploy", "v2").await;

    // A scale-in removes one.
    ok(&shop.server.cli(&["scale", &shop.env, "2"]), "scale 2");
    wait_running(&shop.server, &shop.env, 2).await;
    wait_ready(&shop.server, &shop.env, Duration::from_secs(60)).await;
    check("a scale-in", "v2").await;
    me.add(&shop, "jacket", 1).await;
    ids.push(me.checkout(&shop).await);
    me.add(&shop, "socks", 4).await;

    // The control plane restarts (new process, same data): then deploys again, so instances
    // made after the restart get the attachments' variables from the store.
    shop.server.restart().await;
    let orders = me
        .get_served(&shop, "/orders", Duration::from_secs(60))
        .await;
    assert_eq!(order_ids(&orders), ids, "orders after a server restart");
    ok(
        &shop
            .server
            .cli(&["deploy", &shop.env, "--version", "v1", "--wait"]),
        "deploy v1 after the restart",
    );
    let orders = me
        .get_served(&shop, "/orders", Duration::from_secs(60))
        .await;
    assert_eq!(order_ids(&orders), ids, "orders after restart + deploy");
    assert_eq!(orders.version, "v1");
    let cart = me.get_served(&shop, "/cart", Duration::from_secs(10)).await;
    assert_eq!(cart_lines(&cart), [("socks".to_string(), 4)]);
    let r: Value = serde_json::from_str(&ok(
        &shop
            .server
            .cli(&["resource", "show", &shop.orders_db, "--json"]),
        "resource show",
    ))
    .expect("json");
    assert_eq!(r["status"], json!("Available"), "{r}");
}

/// A throwaway container, removed on drop.
struct Throwaway(String);

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// Tries a TCP connection from inside `container` to each target on `port`; one line per
/// target: `open` or why not.
fn probe(container: &str, targets: &[String], port: u16) -> Vec<String> {
    const SCRIPT: &str = "import socket, sys
port = int(sys.argv[1])
for host in sys.argv[2:]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(host, 'open')
    except Exception as e:
        print(host, 'closed', type(e).__name__)
";
    let mut args = vec![
        "exec".to_string(),
        container.to_string(),
        "python3".into(),
        "-c".into(),
        SCRIPT.into(),
        port.to_string(),
    ];
    args.extend(targets.iter().cloned());
    let out = Command::new("docker").args(&args).output().expect("docker");
    assert!(
        out.status.success(),
        "probe in {container}: {}",
        stderr(&out)
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    println!("probe from {container}: {lines:?}");
    assert_eq!(lines.len(), targets.len(), "{lines:?}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shop_database_answers_only_attached_instances() {
    require_resource_images();
    let server = TestServer::start().await;
    let app = unique("myclothes");
    let (shop_env, outsider) = (unique("shop"), unique("outsider"));
    let db = unique("orders");
    ok(&server.cli(&["app", "create", &app]), "app create");
    ok(
        &server.cli(&[
            "resource", "create", &db, "--app", &app, "--kind", "postgres", "--wait",
        ]),
        "resource create",
    );
    push(&server, &myclothes_dir(), &app, "v1");
    for env in [&shop_env, &outsider] {
        let mut args = vec![
            "env",
            "create",
            env,
            "--app",
            &app,
            "--version",
            "v1",
            "--mode",
            "dev",
            "--wait",
        ];
        args.extend(FAST);
        ok(&server.cli(&args), "env create");
    }
    ok(
        &server.cli(&["resource", "attach", &db, &shop_env, "--wait"]),
        "attach",
    );

    // Every address the database has, on every network it is on, and its name.
    let container = format!("sprout-res-{app}-{db}");
    let mut targets: Vec<String> = docker_lines(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}\n{{end}}",
        &container,
    ]);
    assert_eq!(
        targets.len(),
        2,
        "its own network and the shop's: {targets:?}"
    );
    targets.push(db.clone());

    // The attached environment's instance reaches it by name (the probe can succeed).
    let inside = running(&server, &shop_env);
    assert_eq!(inside.len(), 1, "{inside:?}");
    assert_eq!(
        probe(&inside[0].0, std::slice::from_ref(&db), 5432),
        [format!("{db} open")]
    );
    // And the shop works with it (no Redis here: the orders page only).
    let me = Customer::new();
    let http = &me.http;
    let r = http
        .get(format!("{}/orders", server.balancer))
        .header("host", server.host(&shop_env))
        .send()
        .await
        .expect("orders");
    assert_eq!(r.status(), 200);

    // An instance of an environment it is not attached to: no address answers.
    let outside = running(&server, &outsider);
    assert_eq!(outside.len(), 1, "{outside:?}");
    for line in probe(&outside[0].0, &targets, 5432) {
        assert!(line.contains(" closed "), "from {outsider}: {line}");
    }

    // A container on Docker's default bridge: no address answers.
    let name = format!("sprout-h15probe-{:08x}", sprout_testkit::random_u32());
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "sprout/platform-python",
            "sleep",
            "300",
        ])
        .output()
        .expect("docker run");
    let _bridge = Throwaway(name.clone());
    assert!(out.status.success(), "docker run: {}", stderr(&out));
    let bridge = docker_lines(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}\n{{end}}",
        &name,
    ]);
    assert_eq!(bridge, ["bridge"]);
    for line in probe(&name, &targets, 5432) {
        assert!(line.contains(" closed "), "from the default bridge: {line}");
    }

    // The host: the resource publishes no port and does not share the host's network.
    let published = docker_lines(&["port", &container]);
    assert!(published.is_empty(), "published: {published:?}");
    let host_config = docker_lines(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}} {{.HostConfig.PublishAllPorts}} {{.HostConfig.NetworkMode}}",
        &container,
    ]);
    assert_eq!(host_config.len(), 1, "{host_config:?}");
    let fields: Vec<&str> = host_config[0].split(' ').collect();
    assert!(
        matches!(fields[0], "{}" | "null"),
        "port bindings: {host_config:?}"
    );
    assert_eq!(fields[1], "false", "publish all: {host_config:?}");
    assert!(
        !matches!(fields[2], "host" | "bridge" | "default"),
        "network mode: {host_config:?}"
    );
    let ports = docker_lines(&[
        "inspect",
        "-f",
        "{{range $p, $b := .NetworkSettings.Ports}}{{$p}}={{$b}}\n{{end}}",
        &container,
    ]);
    assert!(
        ports
            .iter()
            .all(|p| p.ends_with("=[]") || p.ends_with("=<nil>")),
        "host bindings: {ports:?}"
    );
}
