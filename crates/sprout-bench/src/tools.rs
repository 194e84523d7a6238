//! The outside tools: prerequisite checks, wrk, nginx, HAProxy, and child processes that are
//! always stopped.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sprout_testkit::DockerMissing;

/// The one command that installs what the benchmarks drive.
pub const INSTALL: &str = "apt-get install wrk nginx-light haproxy";

/// Fails with the install command when a tool is missing; installs nothing.
pub fn require(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "missing: {} (not installed by this command; install them with `{INSTALL}`)",
        missing.join(", ")
    )
}

/// A program on PATH, or in the sbin directories where Debian puts nginx and haproxy.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

pub fn require_docker() -> Result<()> {
    // The bench's apps run on the python platform (same glibc as the build machine).
    match sprout_testkit::docker_ready(&["sprout/platform-python"]) {
        Ok(()) => Ok(()),
        Err(DockerMissing::Engine) => {
            bail!("these parts need a reachable Docker engine (`docker info` failed)")
        }
        Err(DockerMissing::Image(image)) => {
            bail!("platform image {image} is missing: run docker/build-platform.sh python")
        }
    }
}

/// A free loopback port (bound and released; good enough on a quiet machine).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        // SIGTERM first: nginx's master takes its workers down with it, a SIGKILL would not.
        sprout_testkit::stop_process(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `url` answers 200 (with `host` as the Host header).
pub async fn wait_http(url: &str, host: Option<&str>, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut req = client.get(url);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer 200 within {timeout:?} (last: {last})")
}

/// CPU time (user + system) a process and its descendants (nginx's workers) have used so
/// far, in seconds; `None` if it cannot be read. Unlike requests/s, CPU time per request is
/// hardly moved by what else runs on the machine.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let mut ticks = 0u64;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // Fields after the command's closing parenthesis: state is the 3rd field of the line,
        // utime the 14th and stime the 15th.
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        for task in std::fs::read_dir(format!("/proc/{p}/task")).ok()?.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    Some(ticks as f64 / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`, via getconf; 100 on Linux in practice.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// One wrk run's figures.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    /// CPU time the target's process used per request during the run, in µs (when known).
    pub cpu_us: Option<f64>,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Non-2xx/3xx answers.
    pub non_2xx: u64,
    /// Socket errors (connect, read, write, timeout).
    pub errors: u64,
}

/// How wrk is pointed at a target.
pub struct Wrk<'a> {
    pub url: &'a str,
    pub host: Option<&'a str>,
    pub headers: Vec<String>,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

impl Wrk<'_> {
    pub async fn run(&self) -> Result<WrkResult> {
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.arg(format!("-t{}", self.threads.max(1)))
            .arg(format!("-c{}", self.connections.max(self.threads.max(1))))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("--latency")
            .arg("--timeout")
            .arg("5s");
        if let Some(h) = self.host {
            cmd.arg("-H").arg(format!("Host: {h}"));
        }
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        cmd.arg(self.url);
        let out = cmd.output().await.context("run wrk")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
    }
}

fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let mut saw_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse()?;
            saw_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            r.p50_ms = parse_latency(v.trim())?;
        } else if let Some(v) = line.strip_prefix("99%") {
            r.p99_ms = parse_latency(v.trim())?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
        } else if line.contains(" requests in ") {
            r.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    if !saw_rps {
        bail!("no Requests/sec line");
    }
    Ok(r)
}

/// `850.00us`, `1.73ms`, `1.02s` → milliseconds.
fn parse_latency(v: &str) -> Result<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("latency '{v}' has no unit");
    };
    Ok(num.trim().parse::<f64>()? * factor)
}

/// Whether this process runs as root (nginx then needs `user root;` to read our temp files).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// What a proxy in the comparison does to each request besides forwarding it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// What Sprout's balancer does: pass the client's Host, set `X-Forwarded-For`,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`, and give the request an id sent both
    /// upstream and back in the response (`X-Request-Id`).
    Same,
    /// Forward only.
    Bare,
}

/// nginx with `threads` workers on `port`, proxying round robin to `upstreams` over
/// keep-alive connections (the fair configuration: keepalive, HTTP/1.1, `Connection ""`).
pub fn start_nginx(
    dir: &Path,
    port: u16,
    threads: usize,
    upstreams: &[SocketAddr],
    job: Job,
) -> Result<Proc> {
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server {u};\n"))
        .collect();
    let user = if is_root() { "user root;\n" } else { "" };
    let headers = match job {
        Job::Same => {
            "
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id always;"
        }
        Job::Bare => "",
    };
    let name = match job {
        Job::Same => "nginx",
        Job::Bare => "nginx-bare",
    };
    let d = dir.display();
    let conf = format!(
        "{user}worker_processes {threads};
pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/{name}-body;
    proxy_temp_path {d}/{name}-proxy;
    upstream backends {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";{headers}
        }}
    }}
}}
"
    );
    let path = dir.join(format!("{name}.conf"));
    std::fs::File::create(&path)?.write_all(conf.as_bytes())?;
    let log = std::fs::File::create(dir.join(format!("{name}.out")))?;
    Proc::spawn(
        "nginx",
        Command::new(find("nginx").unwrap_or_else(|| "nginx".into()))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join(format!("{name}-error.log")))
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off; master_process on;"])
            .stdout(log.try_clone()?)
            .stderr(log),
    )
}

/// HAProxy with `threads` threads on `port`, round robin over keep-alive connections,
/// doing the same job as Sprout's balancer (see [`Job::Same`]).
pub fn start_haproxy(
    dir: &Path,
    port: u16,
    threads: usize,
    upstreams: &[SocketAddr],
) -> Result<Proc> {
    let servers: String = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| format!("    server s{i} {u}\n"))
        .collect();
    let conf = format!(
        "global
    nbthread {threads}
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    option forwardfor
    unique-id-format %[uuid()]
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-response set-header X-Request-Id %[unique-id]
    default_backend upstreams
backend upstreams
    balance roundrobin
{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let log = std::fs::File::create(dir.join("haproxy.out"))?;
    Proc::spawn(
        "haproxy",
        Command::new(find("haproxy").unwrap_or_else(|| "haproxy".into()))
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(log.try_clone()?)
            .stderr(log),
    )
}

/// Median of a non-empty list (0 for an empty one).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 5s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.80ms  200.00us   9.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    1.85ms
     90%    2.03ms
     99%    2.80ms
  174862 requests in 5.00s, 20.01MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  34950.67
Transfer/sec:      4.00MB
";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.rps, 34950.67);
        assert!((r.p50_ms - 0.85).abs() < 1e-9);
        assert_eq!(r.p99_ms, 2.8);
        assert_eq!((r.requests, r.non_2xx, r.errors), (174862, 5, 3));
        assert!(parse_wrk("garbage").is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
    }
}
