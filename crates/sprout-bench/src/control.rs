//! The real control plane: the `sprout` binary started as production starts it, driven
//! through `sprout-cli`'s client.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sprout_cli::Client;
use sprout_core::api::{CreateEnvironment, EnvironmentDetail};
use sprout_core::{EnvStatus, VersionStatus};
use sprout_testkit::{remove_server_objects, server_command, Started};
pub use sprout_testkit::{Load, LoadReport};

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
        let mut cmd = server_command(sprout, &data.path().join("data"), ADMIN_PASSWORD);
        cmd.stdin(Stdio::null()).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("start sprout server")?;
        let started = match Started::read(&mut child) {
            Ok(started) => started,
            Err(e) => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default();
                bail!("{e}:\n{log}");
            }
        };
        let (client, token) = started
            .login_admin(ADMIN_PASSWORD)
            .await
            .context("admin login")?;
        Ok(Server {
            child: Some(child),
            client,
            token,
            api: started.api,
            balancer: started.balancer,
            server_id: started.server_id,
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
            sprout_testkit::stop_process(&mut child, Duration::from_secs(20));
        }
        if self.server_id.is_empty() {
            return;
        }
        remove_server_objects(&self.server_id);
        self.server_id.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name for this run: `bench-<prefix>-<random>`.
pub fn name(prefix: &str) -> String {
    format!(
        "bench-{prefix}-{:06x}",
        sprout_testkit::random_u32() & 0xff_ffff
    )
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

/// Polls `check` every 50 ms until it returns Some or `timeout` passes.
pub async fn until<T, F, Fut>(timeout: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    sprout_testkit::poll(Duration::from_millis(50), timeout, check).await
}
