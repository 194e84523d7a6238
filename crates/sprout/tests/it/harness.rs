//! `TestServer`: the real binary, started as production starts it.

use sprout_cli::Client;
pub use sprout_testkit::{docker_lines, Load};
use sprout_testkit::{DockerMissing, Started};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// Fails (never skips) when Docker is missing: these tests exist to prove the Docker path.
pub fn require_docker() {
    match sprout_testkit::docker_ready(&["sprout/platform-python", "sprout/platform-static"]) {
        Ok(()) => {}
        Err(DockerMissing::Engine) => panic!(
            "these tests need a reachable Docker engine (`docker info` failed); .ci/run starts one"
        ),
        Err(DockerMissing::Image(image)) => {
            panic!("platform image {image} is missing: run docker/build-platform.sh (.ci/run does)")
        }
    }
}

/// A name unique to this test run, valid as an app or environment name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", sprout_testkit::random_u32())
}

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/whatisthetime")
}

pub struct TestServer {
    child: Option<Child>,
    pub api: String,
    pub balancer: String,
    pub server_id: String,
    pub data: PathBuf,
    _data_guard: Option<tempfile::TempDir>,
    pub config_dir: tempfile::TempDir,
    pub client: Client,
    pub token: String,
    extra_env: Vec<(String, String)>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        require_docker();
        let data_guard = tempfile::tempdir().expect("temp dir");
        let data = data_guard.path().join("data");
        let extra_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Self::spawn(
            Path::new(env!("CARGO_BIN_EXE_sprout")),
            &data,
            extra_env.clone(),
            tempfile::tempdir().expect("temp dir"),
        )
        .await;
        server._data_guard = Some(data_guard);
        server
    }

    async fn spawn(
        binary: &Path,
        data: &Path,
        extra_env: Vec<(String, String)>,
        config_dir: tempfile::TempDir,
    ) -> Self {
        let mut cmd = sprout_testkit::server_command(binary, data, ADMIN_PASSWORD);
        // Stop at once on SIGTERM unless a test waits for a hand-over.
        cmd.env("SPROUT_HANDOVER_WAIT", "0")
            .stderr(Stdio::inherit());
        for (k, v) in &extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start sprout server");
        let started = Started::read(&mut child).unwrap_or_else(|e| panic!("{e}"));
        let (client, token) = started
            .login_admin(ADMIN_PASSWORD)
            .await
            .expect("admin login");
        Self {
            child: Some(child),
            client,
            token,
            api: started.api,
            balancer: started.balancer,
            server_id: started.server_id,
            data: data.to_path_buf(),
            _data_guard: None,
            config_dir,
            extra_env,
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(
                            status.success(),
                            "sprout server exited with {status} after SIGTERM"
                        );
                        return;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        panic!("sprout server did not stop within 20 s of SIGTERM");
                    }
                }
            }
        }
    }

    /// Whether the server process still runs (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: the server gets no chance to clean up (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server process on the same data directory (fresh ports).
    pub async fn restart(&mut self) {
        self.stop();
        let config_dir =
            std::mem::replace(&mut self.config_dir, tempfile::tempdir().expect("temp dir"));
        let guard = self._data_guard.take();
        let mut next = Self::spawn(
            Path::new(env!("CARGO_BIN_EXE_sprout")),
            &self.data,
            self.extra_env.clone(),
            config_dir,
        )
        .await;
        next._data_guard = guard;
        let old = std::mem::replace(self, next);
        std::mem::forget(old); // its child is gone and its guards moved; nothing left to drop
    }

    /// Starts `binary` as a next server on the same data directory while this one runs
    /// (after a SIGTERM to it first, with `sigterm_first`): the next one takes the sockets
    /// over. Returns once the next one reports its addresses and the old one has exited;
    /// panics if the old one exits with an error or does not exit within 60 s.
    pub async fn take_over(&mut self, binary: &Path, sigterm_first: bool) {
        let mut old = self.child.take().expect("a running server");
        if sigterm_first {
            let _ = Command::new("kill")
                .args(["-TERM", &old.id().to_string()])
                .status();
        }
        let config_dir =
            std::mem::replace(&mut self.config_dir, tempfile::tempdir().expect("temp dir"));
        let guard = self._data_guard.take();
        let mut next = Self::spawn(binary, &self.data, self.extra_env.clone(), config_dir).await;
        next._data_guard = guard;
        let previous = std::mem::replace(self, next);
        std::mem::forget(previous); // its child is taken and its guards moved
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match old.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "the previous server exited with {status}");
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => {
                    let _ = old.kill();
                    panic!("the previous server did not exit within 60 s of the hand-over");
                }
            }
        }
    }

    /// Runs a CLI verb of the real binary against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sprout"))
            .args(args)
            .env("SPROUT_URL", &self.api)
            .env("SPROUT_TOKEN", &self.token)
            .env("SPROUT_CONFIG_DIR", self.config_dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sprout");
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(text) = stdin {
                let _ = pipe.write_all(text.as_bytes());
            }
        }
        child.wait_with_output().expect("sprout output")
    }

    /// A GET through the balancer with the environment's Host.
    pub async fn get_via_balancer(
        &self,
        host: &str,
        path: &str,
    ) -> reqwest::Result<reqwest::Response> {
        http_client()
            .get(format!("{}{}", self.balancer, path))
            .header("host", host)
            .header("accept", "application/json")
            .send()
            .await
    }

    pub fn host(&self, cname: &str) -> String {
        format!("{cname}.localhost")
    }

    /// Containers of this server, from Docker itself.
    pub fn containers(&self, label: &str) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=sprout.server={}", self.server_id),
            "--filter",
            &format!("label={label}"),
        ])
    }

    pub fn networks(&self) -> Vec<String> {
        docker_lines(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=sprout.server={}", self.server_id),
        ])
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.server_id.is_empty() {
            sprout_testkit::remove_server_objects(&self.server_id);
        }
    }
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    sprout_testkit::poll(Duration::from_millis(200), timeout, check).await
}

#[allow(dead_code)]
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The deployment tests' app (`tests/fixtures/testapp`), with knobs.
pub fn testapp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testapp")
}

/// A copy of the test app whose health check answers `status`.
pub fn testapp_with_health(status: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(testapp_dir()).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    std::fs::write(dir.path().join("health_status"), status.to_string()).expect("write");
    dir
}

/// Waits until the environment leaves Launching/Updating/Terminating; returns its detail.
pub async fn wait_ready(
    server: &TestServer,
    env: &str,
    timeout: Duration,
) -> sprout_core::api::EnvironmentDetail {
    let detail = eventually(timeout, || async {
        let d = server.client.get_environment(env).await.ok()?;
        (!d.environment.status.is_transitional()).then_some(d)
    })
    .await;
    match detail {
        Some(d) => d,
        None => {
            let events = server
                .client
                .events(env, Some(30))
                .await
                .unwrap_or_default();
            let lines: Vec<String> = events
                .iter()
                .map(|e| format!("{} {}", e.severity, e.message))
                .collect();
            panic!(
                "{env} did not settle within {timeout:?}; events:\n{}",
                lines.join("\n")
            );
        }
    }
}

/// Pushes a directory as a version through the CLI and checks it built.
pub fn push(server: &TestServer, dir: &Path, app: &str, label: &str) {
    let out = server.cli(&[
        "push",
        dir.to_str().unwrap_or_default(),
        "--app",
        app,
        "--label",
        label,
    ]);
    assert!(out.status.success(), "push {label}: {}", stderr(&out));
}

/// A second Docker engine on this machine, for a zone of its own. Stopped on drop.
pub struct SecondEngine {
    pub endpoint: String,
    dir: tempfile::TempDir,
    child: Child,
    bridge: String,
    ns: String,
    driver: String,
    pool: String,
}

fn spawn_dockerd(dir: &Path, bridge: &str, ns: &str, driver: &str, pool: &str) -> Child {
    let config = dir.join("daemon.json");
    std::fs::write(&config, format!("{{\"storage-driver\": \"{driver}\"}}")).expect("daemon.json");
    let socket = dir.join("docker.sock");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .expect("log");
    Command::new("dockerd")
        .arg("--config-file")
        .arg(&config)
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg(format!("--bridge={bridge}"))
        .args(["--iptables=false", "--ip-masq=false"])
        .args([
            "--containerd-namespace",
            ns,
            "--containerd-plugins-namespace",
            &format!("{ns}p"),
        ])
        .args(["--default-address-pool", pool])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a second dockerd (is dockerd installed and are we root?)")
}

async fn wait_engine(endpoint: &str, dir: &Path) {
    let up = eventually(Duration::from_secs(30), || async {
        Command::new("docker")
            .args(["-H", endpoint, "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    })
    .await;
    let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
    assert!(up.is_some(), "the second dockerd did not start:\n{log}");
}

impl SecondEngine {
    pub async fn start() -> Self {
        require_docker();
        let dir = tempfile::Builder::new()
            .prefix("sprout-zb")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let driver = docker_lines(&["info", "--format", "{{.Driver}}"])
            .pop()
            .unwrap_or_else(|| "overlay2".into());
        let socket = dir.path().join("docker.sock");
        // Tests of one process may each start one: number them.
        static STARTED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ns = format!("sproutzb{}n{n}", std::process::id());
        // Its own default bridge: with `--bridge=none` a second dockerd deletes the first
        // engine's docker0 (same network namespace), breaking every later build.
        let bridge = format!("spz{}n{n}", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = ip(&["link", "del", &bridge]);
        assert!(
            ip(&["link", "add", &bridge, "type", "bridge"]),
            "ip link add {bridge} (iproute2, root)"
        );
        assert!(ip(&[
            "addr",
            "add",
            &format!("10.212.{n}.1/24"),
            "dev",
            &bridge
        ]));
        assert!(ip(&["link", "set", &bridge, "up"]));
        let pool = format!("base=10.{}.0.0/16,size=24", 213 + u16::from(n));
        let child = spawn_dockerd(dir.path(), &bridge, &ns, &driver, &pool);
        let endpoint = format!("unix://{}", socket.display());
        wait_engine(&endpoint, dir.path()).await;
        Self {
            endpoint,
            dir,
            child,
            bridge,
            ns,
            driver,
            pool,
        }
    }

    /// Stops the engine (SIGTERM: its containers die with it, as in a `systemctl restart
    /// docker` without live restore), leaving it stopped until `start_again`.
    pub fn stop(&mut self) {
        sprout_testkit::stop_process(&mut self.child, Duration::from_secs(30));
    }

    /// Starts a stopped engine again on the same data.
    pub async fn start_again(&mut self) {
        // A dockerd started again over its old network store deletes the host's docker0
        // (the first engine's bridge, same network namespace), whatever `--bridge` says:
        // seen with Docker 20.10. Without the store it starts as on a fresh host; the
        // environments' networks are gone too, which Sprout must make again.
        let _ = std::fs::remove_file(self.dir.path().join("data/network/files/local-kv.db"));
        self.child = spawn_dockerd(
            self.dir.path(),
            &self.bridge,
            &self.ns,
            &self.driver,
            &self.pool,
        );
        wait_engine(&self.endpoint, self.dir.path()).await;
    }

    pub fn containers(&self, label: &str) -> Vec<String> {
        docker_lines(&[
            "-H",
            &self.endpoint,
            "ps",
            "-q",
            "--filter",
            &format!("label={label}"),
        ])
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let all = docker_lines(&["-H", &self.endpoint, "ps", "-aq"]);
        if !all.is_empty() {
            let _ = Command::new("docker")
                .args(["-H", &self.endpoint, "rm", "-f"])
                .args(&all)
                .output();
        }
        sprout_testkit::stop_process(&mut self.child, Duration::from_secs(15));
        // Mounts under the data root may outlive the daemon for a moment.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("data"))
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Adds a user through the CLI (`sprout user add … --password-stdin`), as the admin.
pub fn add_user(server: &TestServer, name: &str, role: &str, password: &str) {
    let out = server.cli_with_stdin(
        &["user", "add", name, "--role", role, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    assert!(out.status.success(), "user add {name}: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("added user {name} ({role})")),
        "{}",
        stdout(&out)
    );
}
