//! Resource containers against the real engine and real database engines: health by exec,
//! isolation (only attached environment networks reach a resource; Docker's default bridge
//! does not; no host port), snapshot and restore. They need the local Docker engine and
//! build the resource images on first use; they FAIL (never skip) when Docker is unreachable.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sprout_core::resource::{container_name, Credentials, ResourceKind};
use sprout_core::ResourceName;
use sprout_runtime::{ResourceSpec, Runtime};
use tokio::sync::mpsc;

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

async fn runtime() -> Runtime {
    match Runtime::connect_local().await {
        Ok(rt) => rt,
        Err(e) => panic!("Docker must be reachable for these tests: {e}"),
    }
}

/// Removes what a test made, even when an assertion panics.
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            let _ = Command::new("docker").args(args).output();
        };
        for c in &self.containers {
            run(&["rm", "-f", c]);
        }
        for n in &self.networks {
            run(&["network", "rm", n]);
        }
        for v in &self.volumes {
            run(&["volume", "rm", "-f", v]);
        }
    }
}

/// `docker ARGS`: (success, stdout + stderr).
fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

async fn ensure_image(rt: &Runtime, kind: ResourceKind) {
    let (tx, _rx) = mpsc::unbounded_channel();
    rt.ensure_platform(kind.image(), &tx)
        .await
        .unwrap_or_else(|e| panic!("building {}: {e}", kind.image()));
}

fn make_spec(
    kind: ResourceKind,
    sfx: &str,
    name: &str,
    password: &str,
) -> (ResourceSpec, Credentials) {
    let name = ResourceName::parse(name).unwrap();
    let creds = Credentials::new(&name, password.to_string()).unwrap();
    let container = container_name(&format!("rt{sfx}"), &name);
    let spec = ResourceSpec {
        network: container.clone(),
        container,
        alias: name.to_string(),
        kind,
        image: kind.image().to_string(),
        env: creds.container_env(kind),
        labels: HashMap::from([("sprout.test".to_string(), sfx.to_string())]),
        millicpus: 500,
        memory_mib: 256,
        pids: 256,
        restore_from: None,
    };
    (spec, creds)
}

async fn wait_healthy(rt: &Runtime, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if rt.resource_healthy(container).await.expect("health exec") {
            return;
        }
        if Instant::now() > deadline {
            let (_, logs) = docker(&["logs", container]);
            panic!("{container} did not become healthy; logs:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the engine's client in a throwaway container on `network` (its image has them all).
fn client(
    kind: ResourceKind,
    network: &str,
    host: &str,
    creds: &Credentials,
    sql: &str,
) -> (bool, String) {
    let pw_env = format!("PGPASSWORD={}", creds.password);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network".into(),
        network.into(),
        "-e".into(),
        pw_env,
        "--entrypoint".into(),
    ];
    match kind {
        ResourceKind::Postgres => args.extend(
            [
                "psql",
                kind.image(),
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-U",
                &creds.username,
                "-d",
                &creds.database,
                "-c",
                sql,
            ]
            .map(String::from),
        ),
        ResourceKind::Mysql => args.extend(
            [
                "mariadb",
                kind.image(),
                "--connect-timeout=3",
                "-N",
                "-h",
                host,
                "-u",
                &creds.username,
                &format!("-p{}", creds.password),
                &creds.database,
                "-e",
                sql,
            ]
            .map(String::from),
        ),
        ResourceKind::Redis => {
            args.extend(
                [
                    "redis-cli",
                    kind.image(),
                    "-h",
                    host,
                    "-a",
                    &creds.password,
                    "--no-auth-warning",
                ]
                .map(String::from),
            );
            args.extend(sql.split(' ').map(String::from));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = docker(&refs);
    (ok, out.trim().to_string())
}

#[tokio::test]
async fn postgres_is_reachable_only_from_attached_networks_and_snapshots_restore() {
    let rt = runtime().await;
    ensure_image(&rt, ResourceKind::Postgres).await;
    let sfx = suffix();
    let (spec, creds) = make_spec(ResourceKind::Postgres, &sfx, "orders", "abcdEFGH12345678ij");
    let (copy_spec, copy_creds) = spec_copy(&sfx);
    let env_net = format!("sprout-rt-{sfx}-web");
    let other_net = format!("sprout-rt-{sfx}-other");
    let _cleanup = Cleanup {
        containers: vec![spec.container.clone(), copy_spec.container.clone()],
        networks: vec![
            env_net.clone(),
            other_net.clone(),
            spec.container.clone(),
            copy_spec.container.clone(),
        ],
        volumes: vec![spec.container.clone(), copy_spec.container.clone()],
    };
    let labels = HashMap::from([("sprout.test".to_string(), sfx.clone())]);
    rt.ensure_network(&env_net, &labels).await.unwrap();
    rt.ensure_network(&other_net, &labels).await.unwrap();

    rt.create_resource(&spec).await.expect("create");
    wait_healthy(&rt, &spec.container).await;

    // Before any attachment, not even the environment's network reaches it.
    let (ok, out) = client(
        ResourceKind::Postgres,
        &env_net,
        "orders",
        &creds,
        "SELECT 1",
    );
    assert!(!ok, "unattached resource answered: {out}");

    rt.attach_resource(&spec.container, &env_net, "orders")
        .await
        .unwrap();
    // Attaching twice is harmless.
    rt.attach_resource(&spec.container, &env_net, "orders")
        .await
        .unwrap();
    let (ok, out) = client(
        ResourceKind::Postgres,
        &env_net,
        "orders",
        &creds,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t",
    );
    assert!(ok, "{out}");
    assert_eq!(out.lines().last(), Some("2"));

    // Forbidden paths: another environment's network (by name and by every address the
    // resource has), Docker's default bridge, and any published port.
    let (ok, out) = client(
        ResourceKind::Postgres,
        &other_net,
        "orders",
        &creds,
        "SELECT 1",
    );
    assert!(!ok, "a network not attached reached it: {out}");
    let (_, ips) = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        &spec.container,
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "private network + the attached one: {ips:?}");
    for ip in &ips {
        for net in ["bridge", other_net.as_str()] {
            let (ok, out) = docker(&[
                "run",
                "--rm",
                "--network",
                net,
                "--entrypoint",
                "pg_isready",
                ResourceKind::Postgres.image(),
                "-h",
                ip,
                "-t",
                "3",
            ]);
            assert!(!ok, "{net} reached {ip}: {out}");
        }
    }
    let (_, ports) = docker(&["port", &spec.container]);
    assert_eq!(ports.trim(), "", "a port is published");
    let (_, bindings) = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &spec.container,
    ]);
    assert!(matches!(bindings.trim(), "{}" | "null"), "{bindings}");

    // Snapshot, write more, restore into a new resource: exactly the snapshot's rows.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("snap").join("1.pgc");
    let size = rt
        .snapshot_resource(&spec.container, ResourceKind::Postgres, &dump)
        .await
        .expect("snapshot");
    assert!(size > 0 && std::fs::metadata(&dump).unwrap().len() == size);
    let (ok, out) = client(
        ResourceKind::Postgres,
        &env_net,
        "orders",
        &creds,
        "INSERT INTO t VALUES (3)",
    );
    assert!(ok, "{out}");

    let copy_spec = ResourceSpec {
        restore_from: Some(dump.clone()),
        ..copy_spec
    };
    rt.create_resource(&copy_spec).await.expect("restore");
    wait_healthy(&rt, &copy_spec.container).await;
    rt.attach_resource(&copy_spec.container, &env_net, "orders-copy")
        .await
        .unwrap();
    let (ok, out) = client(
        ResourceKind::Postgres,
        &env_net,
        "orders-copy",
        &copy_creds,
        "SELECT string_agg(x::text, ',' ORDER BY x) FROM t",
    );
    assert!(ok, "{out}");
    assert_eq!(out, "1,2");

    // Detached: the environment's network no longer reaches it.
    rt.detach_resource(&spec.container, &env_net).await.unwrap();
    rt.detach_resource(&spec.container, &env_net).await.unwrap();
    assert_eq!(
        rt.resource_networks(&spec.container).await.unwrap(),
        vec![spec.container.clone()]
    );
    let (ok, out) = client(
        ResourceKind::Postgres,
        &env_net,
        "orders",
        &creds,
        "SELECT 1",
    );
    assert!(!ok, "a detached resource answered: {out}");

    // Removal takes the container, the data and the private network; twice is fine.
    rt.remove_resource(&spec.container).await.unwrap();
    rt.remove_resource(&spec.container).await.unwrap();
    assert!(!rt.resource_running(&spec.container).await.unwrap());
    let (exists, _) = docker(&["volume", "inspect", &spec.container]);
    assert!(!exists, "the volume outlived the resource");
    rt.remove_resource(&copy_spec.container).await.unwrap();
}

fn spec_copy(sfx: &str) -> (ResourceSpec, Credentials) {
    make_spec(
        ResourceKind::Postgres,
        sfx,
        "orders-copy",
        "zyxwVUTS98765432ab",
    )
}

/// mysql and redis: health, a write over an attached network, snapshot, restore.
async fn round_trip(kind: ResourceKind, write: &str, more: &str, read: &str, expect: &str) {
    let rt = runtime().await;
    ensure_image(&rt, kind).await;
    let sfx = suffix();
    let (spec, creds) = make_spec(kind, &sfx, "store", "abcdEFGH12345678ij");
    let (copy, copy_creds) = make_spec(kind, &sfx, "store-copy", "zyxwVUTS98765432ab");
    let net = format!("sprout-rt-{sfx}-web");
    let _cleanup = Cleanup {
        containers: vec![spec.container.clone(), copy.container.clone()],
        networks: vec![net.clone(), spec.container.clone(), copy.container.clone()],
        volumes: vec![spec.container.clone(), copy.container.clone()],
    };
    rt.ensure_network(&net, &HashMap::new()).await.unwrap();
    rt.create_resource(&spec).await.expect("create");
    wait_healthy(&rt, &spec.container).await;
    rt.attach_resource(&spec.container, &net, "store")
        .await
        .unwrap();
    let (ok, out) = client(kind, &net, "store", &creds, write);
    assert!(ok, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join(kind.dump_file());
    rt.snapshot_resource(&spec.container, kind, &dump)
        .await
        .expect("snapshot");
    let (ok, out) = client(kind, &net, "store", &creds, more);
    assert!(ok, "{out}");

    let copy = ResourceSpec {
        restore_from: Some(dump),
        ..copy
    };
    rt.create_resource(&copy).await.expect("restore");
    wait_healthy(&rt, &copy.container).await;
    rt.attach_resource(&copy.container, &net, "store-copy")
        .await
        .unwrap();
    let (ok, out) = client(kind, &net, "store-copy", &copy_creds, read);
    assert!(ok, "{out}");
    assert_eq!(out, expect);
    rt.remove_resource(&spec.container).await.unwrap();
    rt.remove_resource(&copy.container).await.unwrap();
}

#[tokio::test]
async fn mysql_snapshot_restores_exactly_its_rows() {
    round_trip(
        ResourceKind::Mysql,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)",
        "INSERT INTO t VALUES (3)",
        "SELECT GROUP_CONCAT(x ORDER BY x) FROM t",
        "1,2",
    )
    .await;
}

#[tokio::test]
async fn redis_snapshot_restores_exactly_its_keys() {
    round_trip(
        ResourceKind::Redis,
        "SET cart:1 shoes",
        "SET cart:2 hat",
        "DBSIZE",
        "1",
    )
    .await;
}

/// Polls `sql` through `client` until it prints `expect` (replication is asynchronous).
fn eventually(network: &str, host: &str, creds: &Credentials, sql: &str, expect: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = client(ResourceKind::Postgres, network, host, creds, sql);
        if ok && out == expect {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: '{sql}' gave ({ok}) {out}, not {expect}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A postgres primary with a streaming replica (pg_basebackup -R over the private network):
/// a row written to the primary is read from the replica through the shared read alias, the
/// replica refuses writes; after the primary stops, the replica is promoted and takes writes.
#[tokio::test]
async fn postgres_replica_streams_and_is_promoted() {
    let rt = runtime().await;
    ensure_image(&rt, ResourceKind::Postgres).await;
    let sfx = suffix();
    let (spec, creds) = make_spec(ResourceKind::Postgres, &sfx, "ledger", "abcdEFGH12345678ij");
    let creds = creds
        .with_replication("replREPL12345678xy".to_string())
        .unwrap();
    let spec = ResourceSpec {
        env: creds.container_env(ResourceKind::Postgres),
        ..spec
    };
    let replica = ResourceSpec {
        container: format!("{}-r1", spec.container),
        alias: "ledger-r1".to_string(),
        env: creds.replica_env(ResourceKind::Postgres, &spec.container),
        ..spec.clone()
    };
    let net = format!("sprout-rt-{sfx}-app");
    let _cleanup = Cleanup {
        containers: vec![spec.container.clone(), replica.container.clone()],
        networks: vec![net.clone(), spec.network.clone()],
        volumes: vec![spec.container.clone(), replica.container.clone()],
    };
    rt.create_resource(&spec).await.expect("primary");
    wait_healthy(&rt, &spec.container).await;
    rt.create_resource(&replica).await.expect("replica");
    wait_healthy(&rt, &replica.container).await;
    rt.ensure_network(&net, &HashMap::new()).await.unwrap();
    rt.attach_resource(&spec.container, &net, "ledger")
        .await
        .unwrap();
    rt.attach_resource_as(
        &replica.container,
        &net,
        &["ledger-r1".to_string(), "ledger-read".to_string()],
    )
    .await
    .unwrap();

    let (ok, out) = client(
        ResourceKind::Postgres,
        &net,
        "ledger",
        &creds,
        "CREATE TABLE t (v int); INSERT INTO t VALUES (1)",
    );
    assert!(ok, "{out}");
    eventually(&net, "ledger-read", &creds, "SELECT sum(v) FROM t", "1");
    let (ok, out) = client(
        ResourceKind::Postgres,
        &net,
        "ledger-r1",
        &creds,
        "INSERT INTO t VALUES (5)",
    );
    assert!(
        !ok && out.contains("read-only"),
        "a replica took a write: {out}"
    );

    // Promote: the old primary stops first (its last WAL reaches the replica), then the
    // replica becomes a primary that takes writes.
    rt.stop_resource(&spec.container).await.expect("stop");
    let out = rt
        .exec_in(
            &replica.container,
            vec!["sprout-resource".into(), "promote".into()],
        )
        .await
        .expect("promote exec");
    assert_eq!(out.code, 0, "{}", out.output);
    let (ok, out) = client(
        ResourceKind::Postgres,
        &net,
        "ledger-r1",
        &creds,
        "INSERT INTO t VALUES (2); SELECT sum(v) FROM t",
    );
    assert!(ok, "{out}");
    assert_eq!(out.lines().last(), Some("3"), "{out}");
    rt.remove_resource_container(&spec.container).await.unwrap();
    rt.remove_resource_container(&replica.container)
        .await
        .unwrap();
    rt.remove_network(&spec.network).await.unwrap();
    let (_, gone) = docker(&["ps", "-aq", "--filter", &format!("name={}", spec.container)]);
    assert!(gone.trim().is_empty(), "{gone}");
}
