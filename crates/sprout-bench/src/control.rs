//! The real control plane: the `sprout` binary started as production starts it, driven
//! through `sprout-cli`'s client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sprout_cli::Client;
use sprout_core::api::{CreateEnvironment, EnvironmentDetail};
use sprout_core::{EnvStatus, VersionStatus};

use crate::Opts;

const ADMIN_PASSWORD: &str = "bench-admin-password";

/// The `sprout` binary: `--sprout`, else next to this executable (`target/release/sprout`).
pub fn sprout_binary(opts: &Opts) -> Result<PathBuf> {
    if let Some(p) = &opts.sprout {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("sprout");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "no sprout binary at {} — build it first: `cargo build --release -p sprout` (or pass --sprout PATH)",
        beside.display()
    )
}

/// A running `sprout server` on free ports with a fresh data directory.
pub struct Server {
    child: Option<Child>,
    pub api: String,
    pub balancer: String,
    pub server_id: String,
    pub client: Client,
    pub token: String,
    _data: tempfile::TempDir,
}

impl Server {
    pub async fn start(sprout: Option<&Path>, env: &[(&str, &str)]) -> Result<Server> {
        let sprout = sprout.context("no sprout binary")?;
        let data = tempfile::Builder::new()
            .prefix("sprout-bench-data-")
            .tempdir()?;
        let log = std::fs::File::create(data.path().join("server.log"))?;
        let mut cmd = Command::new(sprout);
        cmd.args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--balancer",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data.path().join("data"))
        .env("SPROUT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // Instances reach the SQS endpoint through their network's gateway.
        .env("SPROUT_SQS", "0.0.0.0:0")
        .env("RUST_LOG", "info,sqlx=warn,bollard=warn,hyper=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("start sprout server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps reading for the server's whole life so its stdout never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut api, mut balancer, mut server_id) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none() || balancer.is_none() || server_id.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let log =
                        std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default();
                    bail!("the server did not report its addresses in 30 s:\n{log}");
                }
            };
            if let Some(rest) = line.strip_prefix("api listening on ") {
                api = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("balancer listening on ") {
                balancer = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("server id ") {
                server_id = Some(rest.trim().to_string());
            }
        }
        let api = api.unwrap_or_default();
        let login = Client::new(&api, None)
            .login("admin", ADMIN_PASSWORD)
            .await
            .context("admin login")?;
        Ok(Server {
            child: Some(child),
            client: Client::new(&api, Some(login.token.clone())),
            token: login.token,
            api,
            balancer: balancer.unwrap_or_default(),
            server_id: server_id.unwrap_or_default(),
            _data: data,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the server process, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let pid = self.pid().context("server not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kib / 1024.0)
    }

    pub fn host(&self, env: &str) -> String {
        format!("{env}.localhost")
    }

    /// Creates an app and uploads `bundle` (a directory) as `label`; waits until it is built.
    pub async fn push(&self, app: &str, bundle: &Path, label: &str) -> Result<()> {
        if self.client.list_apps().await?.iter().all(|a| a.name != app) {
            self.client.create_app(app).await?;
        }
        let prepared = sprout_cli::archive::prepare_bundle(bundle)?;
        self.client
            .upload_version(app, label, &prepared.path, None)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let v = self.client.get_version(app, label).await?;
            match v.status {
                VersionStatus::Ready => return Ok(()),
                VersionStatus::Failed => bail!("version {label} failed to build: {:?}", v.error),
                _ if Instant::now() > deadline => bail!("version {label} still {}", v.status),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn create(&self, req: CreateEnvironment) -> Result<()> {
        self.client.create_environment(&req).await?;
        Ok(())
    }

    /// Waits until the environment is not Launching/Updating/Terminating.
    pub async fn wait_ready(&self, env: &str, timeout: Duration) -> Result<EnvironmentDetail> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(d) = self.client.get_environment(env).await {
                if !d.environment.status.is_transitional() {
                    return Ok(d);
                }
            }
            if Instant::now() > deadline {
                let events = self.client.events(env, Some(20)).await.unwrap_or_default();
                let lines: Vec<String> = events.iter().map(|e| e.message.clone()).collect();
                bail!("{env} did not settle in {timeout:?}: {}", lines.join(" | "));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Running instances that pass their health checks.
    pub async fn healthy(&self, env: &str) -> Vec<sprout_core::api::Instance> {
        self.client
            .get_environment(env)
            .await
            .map(|d| {
                d.instances
                    .into_iter()
                    .filter(|i| i.healthy && i.state == "running")
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Terminates the environments, deletes the app, stops the server and removes anything
    /// of this server's left on the engine.
    pub async fn cleanup(mut self, app: &str, envs: &[String]) {
        for env in envs {
            let _ = self.client.terminate(env).await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for env in envs {
            while Instant::now() < deadline {
                match self.client.get_environment(env).await {
                    Ok(d) if d.environment.status != EnvStatus::Terminated => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    _ => break,
                }
            }
        }
        if let Err(e) = self.client.delete_app(app).await {
            eprintln!("  (could not delete app {app}: {e})");
        }
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.server_id.is_empty() {
            return;
        }
        // Instances outlive a stopped server by design (it adopts them on restart): remove them.
        let label = format!("label=sprout.server={}", self.server_id);
        for (list, rm) in [
            (vec!["ps", "-aq", "--filter", &label], vec!["rm", "-f"]),
            (
                vec!["network", "ls", "-q", "--filter", &label],
                vec!["network", "rm"],
            ),
            (
                vec!["image", "ls", "-q", "--filter", &label],
                vec!["rmi", "-f"],
            ),
        ] {
            let ids = docker_lines(&list);
            if !ids.is_empty() {
                let _ = Command::new("docker").args(&rm).args(&ids).output();
            }
        }
        self.server_id.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A name for this run: `bench-<prefix>-<random>`.
pub fn name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("bench-{prefix}-{:06x}", h.finish() as u32 & 0xff_ffff)
}

/// A web bundle whose process is this very binary's `upstream` (a fast Rust server), on the
/// python platform (same glibc as the build machine).
pub fn upstream_bundle() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sprout-bench-bundle-")
        .tempdir()?;
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, dir.path().join("sprout-bench"))
        .with_context(|| format!("copy {}", exe.display()))?;
    std::fs::write(
        dir.path().join("Procfile"),
        "web: /app/sprout-bench upstream\n",
    )?;
    std::fs::write(
        dir.path().join("sprout.yaml"),
        "platform: python\nhealth_check: /health\n",
    )?;
    Ok(dir)
}

/// What a steady load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    pub failures: Vec<String>,
}

/// Steady traffic through the balancer from a few clients (with a short pause between
/// requests), counting every failure, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(balancer: &str, host: &str, clients: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url, host) = (stop.clone(), format!("{balancer}/"), host.to_string());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap_or_default();
                    let mut report = LoadReport::default();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).header("host", &host).send().await {
                            Ok(r) if r.status().is_success() => {
                                report.ok += 1;
                                let _ = r.bytes().await;
                            }
                            Ok(r) => {
                                report.failed += 1;
                                if report.failures.len() < 5 {
                                    report.failures.push(r.status().to_string());
                                }
                            }
                            Err(e) => {
                                report.failed += 1;
                                if report.failures.len() < 5 {
                                    report.failures.push(e.to_string());
                                }
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                    report
                })
            })
            .collect();
        Load { stop, tasks }
    }

    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadReport::default();
        for task in self.tasks {
            if let Ok(r) = task.await {
                total.ok += r.ok;
                total.failed += r.failed;
                total.failures.extend(r.failures);
            }
        }
        total
    }
}

/// Polls `check` every 50 ms until it returns Some or `timeout` passes.
pub async fn until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
