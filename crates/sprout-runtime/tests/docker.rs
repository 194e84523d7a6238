//! Real-engine tests: they need the local Docker engine and the platform images, and FAIL
//! (never skip) when Docker is unreachable. Every object gets a unique suffix and is removed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use sprout_runtime::{BakeSpec, BuildLimits, InstanceSpec, Runtime, RuntimeError};
use tokio::sync::mpsc;

const PYTHON: &str = "sprout/platform-python";
const STATIC: &str = "sprout/platform-static";

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

async fn runtime() -> Runtime {
    match Runtime::connect_local().await {
        Ok(rt) => rt,
        Err(e) => panic!("Docker must be reachable for these tests: {e}"),
    }
}

/// Backstop cleanup through the CLI, run even when an assertion panics.
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            let _ = std::process::Command::new("docker")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        for c in &self.containers {
            run(&["rm", "-f", c]);
        }
        for n in &self.networks {
            run(&["network", "rm", n]);
        }
        for i in &self.images {
            run(&["rmi", "-f", i]);
        }
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(line) = rx.try_recv() {
        out.push(line);
    }
    out
}

fn http_get(addr: IpAddr, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

async fn wait_logs(rt: &Runtime, container: &str, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = rt.logs(container, 50).await.expect("logs");
        if lines.iter().any(|l| l.contains(needle)) || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn connects_and_pings() {
    let rt = runtime().await;
    rt.ping().await.expect("ping");
    assert!(rt.image_exists(PYTHON).await.expect("inspect"));
    assert!(!rt
        .image_exists(&format!("sprout/nope-{}", suffix()))
        .await
        .expect("inspect"));
}

#[tokio::test]
async fn ensure_platform_present_and_unknown() {
    let rt = runtime().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    // Present catalogue images are not rebuilt: this returns at once.
    let t = Instant::now();
    rt.ensure_platform(PYTHON, &tx).await.expect("python");
    rt.ensure_platform(STATIC, &tx).await.expect("static");
    assert!(t.elapsed() < Duration::from_secs(5));

    let missing = format!("example.org/nothing-{}:1", suffix());
    match rt.ensure_platform(&missing, &tx).await {
        Err(RuntimeError::ImageMissing { image }) => assert_eq!(image, missing),
        other => panic!("expected ImageMissing, got {other:?}"),
    }
    let text = RuntimeError::ImageMissing { image: missing }.to_string();
    assert!(text.contains("cannot be pulled"), "{text}");
}

#[tokio::test]
async fn bake_commits_bundle_and_build_output() {
    let rt = runtime().await;
    let sfx = suffix();
    let image = format!("sprout/test-bake-{sfx}:v1");
    let net = format!("sprout-test-bake-{sfx}");
    let name = format!("sprout-test-bake-{sfx}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![net.clone()],
        images: vec![image.clone()],
    };

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("app.py"), "print('hello from app')\n").expect("write");
    std::fs::create_dir(dir.path().join("pkg")).expect("mkdir");
    std::fs::write(dir.path().join("pkg/data.txt"), "nested\n").expect("write");

    let mut labels = HashMap::new();
    labels.insert("sprout.test".to_string(), sfx.clone());
    let spec = BakeSpec {
        base_image: PYTHON.to_string(),
        image: image.clone(),
        bundle_dir: dir.path().to_path_buf(),
        build_script: Some(format!(
            "echo build-marker-{sfx}; echo to-stderr >&2; test -f app.py && echo \"built $GREETING\" > built.txt"
        )),
        env: vec!["GREETING=hi".to_string()],
        labels,
        limits: BuildLimits::default(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    rt.bake(&spec, &tx).await.expect("bake");
    assert!(rt.image_exists(&image).await.expect("inspect"));

    let log = drain(&mut rx);
    assert!(
        log.iter().any(|l| l == &format!("build-marker-{sfx}")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "to-stderr"), "{log:?}");

    let inspected = rt.docker().inspect_image(&image).await.expect("inspect");
    let cfg = inspected.config.expect("config");
    assert_eq!(cfg.working_dir.as_deref(), Some("/app"));
    let env = cfg.env.unwrap_or_default();
    assert!(env.contains(&"GREETING=hi".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    let labels = cfg.labels.unwrap_or_default();
    assert_eq!(labels.get("sprout.test"), Some(&sfx));
    let cmd = cfg.cmd.unwrap_or_default().join(" ");
    assert!(
        !cmd.contains("build-marker"),
        "build script leaked into Cmd: {cmd}"
    );

    // Run the image to see the bundle and the build's file inside it.
    rt.ensure_network(&net, &HashMap::new())
        .await
        .expect("network");
    let started = rt
        .start_instance(&InstanceSpec {
            name: name.clone(),
            image: image.clone(),
            network: net.clone(),
            labels: HashMap::new(),
            env: vec![],
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat built.txt pkg/data.txt; python3 app.py".into(),
            ],
            millicpus: 500,
            memory_mib: 128,
            pids: 256,
            user: None,
            bundle_dir: None,
        })
        .await
        .expect("start");
    let lines = wait_logs(&rt, &started.container_id, "hello from app").await;
    assert!(lines.contains(&"built hi".to_string()), "{lines:?}");
    assert!(lines.contains(&"nested".to_string()), "{lines:?}");
    assert!(lines.contains(&"hello from app".to_string()), "{lines:?}");
    // `tail` really limits.
    assert_eq!(
        rt.logs(&started.container_id, 1).await.expect("logs"),
        vec!["hello from app".to_string()]
    );

    rt.remove_instance(&name, Duration::from_secs(1))
        .await
        .expect("remove");
    rt.remove_network(&net).await.expect("rm net");
    rt.remove_image(&image).await.expect("rmi");
    assert!(!rt.image_exists(&image).await.expect("inspect"));
    rt.remove_image(&image).await.expect("rmi absent is ok");
}

#[tokio::test]
async fn failed_bake_leaves_no_image_nor_container() {
    let rt = runtime().await;
    let sfx = suffix();
    let image = format!("sprout/test-fail-{sfx}:v1");
    let _cleanup = Cleanup {
        containers: vec![],
        networks: vec![],
        images: vec![image.clone()],
    };
    let dir = one_file_bundle();
    let spec = bake_of(
        &dir,
        STATIC,
        &image,
        format!("echo failing-{sfx}; exit 7"),
        BuildLimits::default(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let err = rt.bake(&spec, &tx).await.expect_err("must fail");
    assert_eq!(err.exit_code(), Some(7), "{err}");
    assert!(err.to_string().contains("exit code 7"), "{err}");
    assert!(!rt.image_exists(&image).await.expect("inspect"));
    let log = drain(&mut rx);
    assert!(
        log.iter().any(|l| l == &format!("failing-{sfx}")),
        "{log:?}"
    );

    // The build container is gone too.
    let all = rt
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .expect("list");
    let leftovers: Vec<_> = all
        .iter()
        .filter(|c| c.command.as_deref().unwrap_or("").contains(&sfx))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A missing base or a missing bundle directory is a clear error.
    let mut bad = spec.clone();
    bad.base_image = format!("sprout/none-{sfx}");
    assert!(matches!(
        rt.bake(&bad, &tx).await,
        Err(RuntimeError::ImageMissing { .. })
    ));
    let mut bad = spec.clone();
    bad.bundle_dir = dir.path().join("missing");
    assert!(matches!(
        rt.bake(&bad, &tx).await,
        Err(RuntimeError::Bundle { .. })
    ));
    let mut bad = spec;
    bad.image = "Bad Name".to_string();
    assert!(matches!(
        rt.bake(&bad, &tx).await,
        Err(RuntimeError::InvalidImage(_))
    ));
}

#[tokio::test]
async fn instance_lifecycle_on_private_network() {
    let rt = runtime().await;
    let sfx = suffix();
    let net = format!("sprout-test-net-{sfx}");
    let name = format!("sprout-test-web-{sfx}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![net.clone()],
        images: vec![],
    };

    let mut net_labels = HashMap::new();
    net_labels.insert("sprout.test".to_string(), sfx.clone());
    let id = rt.ensure_network(&net, &net_labels).await.expect("network");
    let again = rt.ensure_network(&net, &net_labels).await.expect("again");
    assert_eq!(id, again, "ensure_network must be idempotent");
    assert_eq!(
        rt.list_networks(&[("sprout.test", &sfx)])
            .await
            .expect("list"),
        vec![net.clone()]
    );

    // User-data bootstrap: the bundle is copied to /app of the plain platform image.
    let bundle = tempfile::tempdir().expect("tempdir");
    std::fs::write(bundle.path().join("index.html"), format!("hello-{sfx}\n")).expect("write");

    let mut labels = HashMap::new();
    labels.insert("sprout.test".to_string(), sfx.clone());
    labels.insert("sprout.instance".to_string(), name.clone());
    let spec = InstanceSpec {
        name: name.clone(),
        image: PYTHON.to_string(),
        network: net.clone(),
        labels: labels.clone(),
        env: vec!["PORT=8080".to_string()],
        cmd: vec![
            "sh".into(),
            "-c".into(),
            format!("echo started-{sfx}; exec python3 -m http.server $PORT"),
        ],
        millicpus: 250,
        memory_mib: 96,
        pids: 256,
        user: None,
        bundle_dir: Some(bundle.path().to_path_buf()),
    };
    let started = rt.start_instance(&spec).await.expect("start");
    let addr = started.address.expect("an address on the network");

    let inspect = rt
        .docker()
        .inspect_container(&started.container_id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let hc = inspect.host_config.expect("host config");
    assert_eq!(hc.nano_cpus, Some(250_000_000));
    assert_eq!(hc.memory, Some(96 * 1024 * 1024));
    assert!(
        hc.port_bindings.clone().unwrap_or_default().is_empty(),
        "{:?}",
        hc.port_bindings
    );
    assert_eq!(
        hc.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string()),
        Some("no".to_string())
    );
    let nets = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(nets.keys().cloned().collect::<Vec<_>>(), vec![net.clone()]);
    assert_eq!(
        nets.get(&net).and_then(|e| e.ip_address.clone()),
        Some(addr.to_string())
    );
    let got_labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(got_labels.get("sprout.test"), Some(&sfx));

    // The instance answers HTTP on its own address, from the host.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        match http_get(addr, 8080, "/") {
            Ok(b) if b.contains("200") => break b,
            other if Instant::now() > deadline => panic!("no HTTP answer: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(body.contains(&format!("hello-{sfx}")), "{body}");

    let found = rt
        .list_instances(&[("sprout.test", &sfx)])
        .await
        .expect("list");
    assert_eq!(found.len(), 1, "{found:?}");
    let info = &found[0];
    assert_eq!(info.id, started.container_id);
    assert_eq!(info.name, name);
    assert!(info.running);
    assert_eq!(info.state, "running");
    assert_eq!(info.address, Some(addr));
    assert_eq!(info.labels.get("sprout.instance"), Some(&name));
    assert!(info.created > 1_600_000_000);
    // Label filters are ANDed.
    assert!(rt
        .list_instances(&[("sprout.test", &sfx), ("sprout.instance", "other")])
        .await
        .expect("list")
        .is_empty());

    let lines = wait_logs(&rt, &name, &format!("started-{sfx}")).await;
    assert!(
        lines.iter().any(|l| l == &format!("started-{sfx}")),
        "{lines:?}"
    );
    // http.server logs requests to stderr; logs carries both streams.
    assert!(lines.iter().any(|l| l.contains("GET / HTTP")), "{lines:?}");

    // Same name twice is an error, and does not disturb the first.
    assert!(rt.start_instance(&spec).await.is_err());

    rt.remove_instance(&name, Duration::from_secs(2))
        .await
        .expect("remove");
    rt.remove_instance(&name, Duration::from_secs(2))
        .await
        .expect("remove again is ok");
    assert!(rt
        .list_instances(&[("sprout.test", &sfx)])
        .await
        .expect("list")
        .is_empty());
    rt.remove_network(&net).await.expect("rm net");
    rt.remove_network(&net).await.expect("rm net again is ok");
    assert!(rt
        .list_networks(&[("sprout.test", &sfx)])
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn failed_start_leaves_nothing() {
    let rt = runtime().await;
    let sfx = suffix();
    let net = format!("sprout-test-nostart-{sfx}");
    let name = format!("sprout-test-nostart-{sfx}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![net.clone()],
        images: vec![],
    };
    rt.ensure_network(&net, &HashMap::new())
        .await
        .expect("network");
    let mut spec = InstanceSpec {
        name: name.clone(),
        image: format!("sprout/none-{sfx}"),
        network: net.clone(),
        labels: HashMap::from([("sprout.test".to_string(), sfx.clone())]),
        env: vec![],
        cmd: vec!["true".into()],
        millicpus: 100,
        memory_mib: 32,
        pids: 256,
        user: None,
        bundle_dir: None,
    };
    assert!(matches!(
        rt.start_instance(&spec).await,
        Err(RuntimeError::ImageMissing { .. })
    ));
    // A command that cannot be executed fails at start; the container must not linger.
    spec.image = STATIC.to_string();
    spec.cmd = vec!["/no/such/binary".into()];
    assert!(rt.start_instance(&spec).await.is_err());
    assert!(rt
        .list_instances(&[("sprout.test", &sfx)])
        .await
        .expect("list")
        .is_empty());
    rt.remove_network(&net).await.expect("rm net");
}

#[tokio::test]
async fn bake_without_build_script_on_static() {
    let rt = runtime().await;
    let sfx = suffix();
    let image = format!("sprout/test-plain-{sfx}");
    let net = format!("sprout-test-plain-{sfx}");
    let name = format!("sprout-test-plain-{sfx}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![net.clone()],
        images: vec![format!("{image}:latest")],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("run.sh"), format!("echo plain-{sfx}\n")).expect("write");
    let spec = BakeSpec {
        base_image: STATIC.to_string(),
        image: image.clone(),
        bundle_dir: dir.path().to_path_buf(),
        build_script: None,
        env: vec!["A=1".to_string()],
        labels: HashMap::new(),
        limits: BuildLimits::default(),
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    rt.bake(&spec, &tx).await.expect("bake");
    assert!(rt
        .image_exists(&format!("{image}:latest"))
        .await
        .expect("inspect"));

    rt.ensure_network(&net, &HashMap::new()).await.expect("net");
    let started = rt
        .start_instance(&InstanceSpec {
            name: name.clone(),
            image: image.clone(),
            network: net.clone(),
            labels: HashMap::new(),
            env: vec![],
            cmd: vec!["sh".into(), "run.sh".into()],
            millicpus: 100,
            memory_mib: 32,
            pids: 256,
            user: None,
            bundle_dir: None,
        })
        .await
        .expect("start");
    let lines = wait_logs(&rt, &started.container_id, &format!("plain-{sfx}")).await;
    assert_eq!(lines, vec![format!("plain-{sfx}")]);
    rt.remove_instance(&name, Duration::ZERO).await.expect("rm");
    rt.remove_network(&net).await.expect("rm net");
    rt.remove_image(&image).await.expect("rmi");
    assert!(!rt.image_exists(&image).await.expect("inspect"));
}

/// A bundle of one file, `app.py`.
fn one_file_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("app.py"), "print('x')\n").expect("write");
    dir
}

/// A bake of `dir` from `base` into `image`, running `script` under `limits`.
fn bake_of(
    dir: &tempfile::TempDir,
    base: &str,
    image: &str,
    script: String,
    limits: BuildLimits,
) -> BakeSpec {
    BakeSpec {
        base_image: base.to_string(),
        image: image.to_string(),
        bundle_dir: dir.path().to_path_buf(),
        build_script: Some(script),
        env: vec![],
        labels: HashMap::new(),
        limits,
    }
}

// ---------------------------------------------------------------------------------------
// Confinement (issue 12): what `docker inspect` shows of every container Sprout starts.

/// The confinement every Sprout container carries: no-new-privileges, the dropped
/// capabilities, a pids limit and a bounded log.
fn assert_confined(hc: &bollard::models::HostConfig, pids: i64, what: &str) {
    assert_eq!(
        hc.security_opt.clone().unwrap_or_default(),
        vec!["no-new-privileges:true".to_string()],
        "{what}: SecurityOpt"
    );
    let dropped = hc.cap_drop.clone().unwrap_or_default();
    for cap in ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"] {
        assert!(
            dropped
                .iter()
                .any(|c| c == cap || *c == format!("CAP_{cap}")),
            "{what}: CapDrop {dropped:?} lacks {cap}"
        );
    }
    assert_eq!(hc.pids_limit, Some(pids), "{what}: PidsLimit");
    let log = hc.log_config.clone().unwrap_or_default();
    assert_eq!(log.typ.as_deref(), Some("json-file"), "{what}: log driver");
    let log = log.config.unwrap_or_default();
    assert!(
        log.contains_key("max-size"),
        "{what}: log max-size: {log:?}"
    );
}

#[tokio::test]
async fn instances_are_confined_and_run_as_the_bundles_user() {
    let rt = runtime().await;
    let sfx = suffix();
    let net = format!("sprout-test-confined-{sfx}");
    let name = format!("sprout-test-confined-{sfx}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![net.clone()],
        images: vec![],
    };
    rt.ensure_network(&net, &HashMap::new())
        .await
        .expect("network");
    let started = rt
        .start_instance(&InstanceSpec {
            name: name.clone(),
            image: PYTHON.to_string(),
            network: net.clone(),
            labels: HashMap::new(),
            env: vec![],
            cmd: vec![
                "sh".into(),
                "-c".into(),
                format!("echo uid=$(id -u); grep NoNewPrivs /proc/self/status; echo up-{sfx}; sleep 300"),
            ],
            millicpus: 250,
            memory_mib: 64,
            pids: 64,
            user: Some("nobody".to_string()),
            bundle_dir: None,
        })
        .await
        .expect("start");
    let inspected = rt
        .docker()
        .inspect_container(&started.container_id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let hc = inspected.host_config.expect("host config");
    assert_confined(&hc, 64, "instance");
    let user = inspected.config.and_then(|c| c.user).unwrap_or_default();
    assert_eq!(user, "nobody");
    // And from inside: not root, and no way to gain privileges through setuid binaries.
    let lines = wait_logs(&rt, &started.container_id, &format!("up-{sfx}")).await;
    assert!(lines.contains(&"uid=65534".to_string()), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
        "{lines:?}"
    );
    rt.remove_instance(&name, Duration::from_secs(1))
        .await
        .expect("remove");
    rt.remove_network(&net).await.expect("rm net");
}

/// The build container of a bake whose build script mentions `sfx`, inspected while it runs.
async fn inspect_build_container(
    rt: &Runtime,
    sfx: &str,
) -> bollard::models::ContainerInspectResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = rt
            .docker()
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .expect("list");
        if let Some(c) = all
            .iter()
            .find(|c| c.command.as_deref().unwrap_or("").contains(sfx))
        {
            let id = c.id.clone().expect("id");
            return rt
                .docker()
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .expect("inspect build container");
        }
        assert!(Instant::now() < deadline, "no build container appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn build_containers_are_confined_and_stopped_at_the_time_limit() {
    let rt = runtime().await;
    let sfx = suffix();
    let image = format!("sprout/test-slow-{sfx}:v1");
    let _cleanup = Cleanup {
        containers: vec![],
        networks: vec![],
        images: vec![image.clone()],
    };
    let dir = one_file_bundle();
    let limits = BuildLimits {
        millicpus: 500,
        memory_mib: 256,
        pids: 100,
        timeout: Duration::from_secs(5),
        ..BuildLimits::default()
    };
    let spec = bake_of(
        &dir,
        PYTHON,
        &image,
        format!("echo slow-{sfx}; sleep 600"),
        limits,
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let (result, inspected) = tokio::join!(rt.bake(&spec, &tx), inspect_build_container(&rt, &sfx));
    let hc = inspected.host_config.expect("host config");
    assert_confined(&hc, 100, "build container");
    assert_eq!(hc.memory, Some(256 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    match result {
        Err(e @ RuntimeError::BuildTimedOut { .. }) => {
            assert!(e.to_string().contains("build time limit (5 s)"), "{e}")
        }
        other => panic!("a 600 s build step under a 5 s limit: {other:?}"),
    }
    assert!(!rt.image_exists(&image).await.expect("inspect"));
    // The stopped build's container is gone.
    let gone = (0..50).any(|_| {
        let leftover = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("id={}", inspected.id.clone().unwrap_or_default()),
            ])
            .output()
            .map(|o| o.stdout.is_empty())
            .unwrap_or(false);
        if !leftover {
            std::thread::sleep(Duration::from_millis(100));
        }
        leftover
    });
    assert!(gone, "the build container was left behind");
}

#[tokio::test]
async fn a_build_log_is_capped() {
    let rt = runtime().await;
    let sfx = suffix();
    let image = format!("sprout/test-chatty-{sfx}:v1");
    let _cleanup = Cleanup {
        containers: vec![],
        networks: vec![],
        images: vec![image.clone()],
    };
    let dir = one_file_bundle();
    // Many lines, then one long line without a newline.
    let script = format!(
        "echo first-{sfx}; seq 1 100000; head -c 200000 /dev/zero | tr '\\0' a; echo; echo last-{sfx}"
    );
    let limits = BuildLimits {
        max_log_bytes: 4096,
        ..BuildLimits::default()
    };
    let spec = bake_of(&dir, STATIC, &image, script, limits);
    let (tx, mut rx) = mpsc::unbounded_channel();
    rt.bake(&spec, &tx)
        .await
        .expect("a chatty build still succeeds");
    let log = drain(&mut rx);
    let bytes: usize = log.iter().map(|l| l.len() + 1).sum();
    // The cap, plus the bake's own few lines around the build's output.
    assert!(bytes < 4096 + 1024, "{bytes} bytes of log kept");
    assert!(log.contains(&format!("first-{sfx}")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("build log capped at 4096 bytes")),
        "{log:?}"
    );
    assert!(!log.contains(&format!("last-{sfx}")), "{log:?}");
    rt.remove_image(&image).await.expect("rmi");
}
