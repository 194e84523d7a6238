//! Issue 15's figures: how long a resource takes from `create` to `Available` per kind, and
//! requests/s of `examples/myclothes` through the balancer with its carts in Redis and its
//! orders in PostgreSQL, next to the same app keeping both in memory (`MYCLOTHES_STORE=memory`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sprout_core::api::CreateEnvironment;
use sprout_core::resource::api::{AttachRequest, CreateResource};
use sprout_core::resource::{AttachmentState, ResourceStatus};
use sprout_core::{EnvStatus, InstanceType, Mode};

use crate::control::{self, Server};
use crate::report::{secs, thousands, Section, Table};
use crate::tools::Wrk;
use crate::Opts;

const KINDS: [&str; 3] = ["postgres", "mysql", "redis"];

pub async fn run(opts: &Opts, sprout: Option<&Path>) -> Result<Section> {
    let server = Server::start(sprout, &[]).await?;
    let app = control::name("shop");
    let envs = [control::name("shop-store"), control::name("shop-mem")];
    let result = measure(opts, &server, &app, &envs).await;
    // Environments first: a resource attached to a live environment is not deleted.
    for env in &envs {
        let _ = server.client.terminate(env).await;
    }
    for env in &envs {
        control::until(Duration::from_secs(120), || async {
            match server.client.get_environment(env).await {
                Ok(d) if d.environment.status != EnvStatus::Terminated => None,
                _ => Some(()),
            }
        })
        .await;
    }
    if let Ok(resources) = server.client.list_resources(Some(&app)).await {
        for r in resources {
            let _ = server.client.delete_resource(&app, &r.name, true).await;
        }
        control::until(Duration::from_secs(120), || async {
            let left = server.client.list_resources(Some(&app)).await.ok()?;
            left.is_empty().then_some(())
        })
        .await;
    }
    server.cleanup(&app, &envs).await;
    result
}

fn myclothes_dir() -> PathBuf {
    crate::report::repo_root().join("examples/myclothes")
}

/// `create` → `Available`, polled every 50 ms.
async fn time_create(server: &Server, app: &str, name: &str, kind: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let req = CreateResource {
        name: name.into(),
        kind: kind.into(),
        size: Some("micro".into()),
        deletion_policy: None,
        replicas: None,
        backup: None,
        keep: None,
    };
    server.client.create_resource(app, &req).await?;
    loop {
        let r = server.client.get_resource(app, name).await?;
        match r.status {
            ResourceStatus::Available => return Ok(t0.elapsed()),
            ResourceStatus::Failed => bail!("{kind} {name} failed: {:?}", r.status_reason),
            _ if t0.elapsed() > Duration::from_secs(600) => {
                bail!("{kind} {name} still {} after 600 s", r.status)
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn measure(opts: &Opts, server: &Server, app: &str, envs: &[String; 2]) -> Result<Section> {
    let dir = myclothes_dir();
    anyhow::ensure!(
        dir.join("app.py").is_file(),
        "examples/myclothes not found at {}",
        dir.display()
    );
    server.push(app, &dir, "v1").await?;

    let mut created = Table::new(&["kind", "create → Available"]);
    let mut names = Vec::new();
    for kind in KINDS {
        let name = control::name(kind);
        let took = time_create(server, app, &name, kind).await?;
        created.row(vec![kind.into(), secs(took)]);
        names.push((kind, name));
    }

    let [store_env, mem_env] = envs;
    for (env, memory) in [(store_env, false), (mem_env, true)] {
        let mut req = CreateEnvironment {
            name: env.clone(),
            app: app.into(),
            version: "v1".into(),
            mode: Some(Mode::Prod),
            instances: Some(2),
            // No CPU quota below the machine's size: the app and its stores are measured.
            instance_type: Some(InstanceType::Medium),
            ..Default::default()
        };
        if memory {
            req.env.insert("MYCLOTHES_STORE".into(), "memory".into());
        }
        server.create(req).await?;
        server.wait_ready(env, Duration::from_secs(180)).await?;
    }
    for (kind, name) in &names {
        if *kind == "mysql" {
            continue;
        }
        let req = AttachRequest {
            environment: store_env.clone(),
            prefix: None,
        };
        server.client.attach_resource(app, name, &req).await?;
        // The attachment turns `attached` once the environment has rolled.
        control::until(Duration::from_secs(300), || async {
            let r = server.client.get_resource(app, name).await.ok()?;
            r.attachments
                .iter()
                .any(|a| a.environment == *store_env && a.state == AttachmentState::Attached)
                .then_some(())
        })
        .await
        .with_context(|| format!("{kind} {name} not attached within 300 s"))?;
    }

    let mut rps = Table::new(&[
        "request",
        "Redis + PostgreSQL",
        "p99",
        "in memory",
        "p99",
        "errors (store / memory)",
    ]);
    for (path, what) in [
        ("/", "GET / (catalogue: no store)"),
        ("/cart", "GET /cart (a session's cart: Redis HGETALL)"),
        (
            "/orders",
            "GET /orders (a session's orders: PostgreSQL SELECT)",
        ),
    ] {
        let mut cells = vec![what.to_string()];
        let mut errors = Vec::new();
        for env in [store_env, mem_env] {
            let cookie = customer(server, env).await?;
            let host = server.host(env);
            let url = format!("{}{}", server.balancer, path);
            let wrk = |d: Duration| Wrk {
                url: &url,
                host: Some(&host),
                headers: vec![format!("Cookie: myclothes_session={cookie}")],
                threads: 1,
                connections: opts.connections.min(32),
                duration: d,
            };
            wrk(Duration::from_secs(opts.warmup.max(1))).run().await?;
            let r = wrk(opts.duration()).run().await?;
            cells.push(format!("{} req/s", thousands(r.rps)));
            cells.push(format!("{:.1} ms", r.p99_ms));
            errors.push(format!("{}", r.non_2xx + r.errors));
        }
        cells.push(errors.join(" / "));
        rps.row(cells);
    }

    Ok(Section {
        title: "Resources and a stateful app".into(),
        intro: format!(
            "Resource `create` → `Available` per kind (size micro; the first start \
             initialises the engine's data directory in a new volume), polled every 50 ms \
             through the REST API. Then `examples/myclothes` (Python, standard library: one \
             thread per connection) on two prod environments of two medium instances each: \
             one with a PostgreSQL and a Redis resource attached, one with \
             `MYCLOTHES_STORE=memory`. wrk `-t1 -c{c} -d{d}s` through Sprout's balancer, one \
             session cookie on every request (a cart of two lines and one order), {w} s \
             warm-up.",
            c = opts.connections.min(32),
            d = opts.duration,
            w = opts.warmup.max(1)
        ),
        tables: vec![created, rps],
        notes: vec![
            "In memory, each instance has its own carts and orders (the session was made on \
             one instance, so on the other the cart and the orders are empty): the \
             in-memory column is the app without a store, not the same data."
                .into(),
        ],
    })
}

/// A session with two cart lines and one order on `env`; returns its cookie value.
async fn customer(server: &Server, env: &str) -> Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let host = server.host(env);
    let post = |path: &str, form: &[(&str, &str)], cookie: Option<&str>| {
        let mut req = http
            .post(format!("{}{}", server.balancer, path))
            .header("host", &host)
            .form(form);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("myclothes_session={c}"));
        }
        req.send()
    };
    let r = post("/cart", &[("item", "tshirt"), ("qty", "2")], None).await?;
    if r.status() != 200 {
        let status = r.status();
        bail!(
            "POST /cart on {env}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("myclothes_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("no session cookie")?;
    let session = Some(cookie.as_str());
    // In memory, round robin may take the checkout to the instance that has no such cart:
    // try again (the next request goes to the other one), now and then filling a cart there.
    let mut ordered = false;
    for attempt in 0..8 {
        let r = post("/checkout", &[], session).await?;
        if r.status() == 201 {
            ordered = true;
            break;
        }
        if attempt % 2 == 1 {
            post("/cart", &[("item", "tshirt"), ("qty", "2")], session).await?;
        }
    }
    anyhow::ensure!(ordered, "POST /checkout on {env} did not make an order");
    for (item, qty) in [("jeans", "1"), ("socks", "3")] {
        let r = post("/cart", &[("item", item), ("qty", qty)], session).await?;
        anyhow::ensure!(r.status() == 200, "POST /cart on {env}: {}", r.status());
    }
    Ok(cookie)
}
