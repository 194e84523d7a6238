//! Part 2: Sprout's balancer vs nginx vs HAProxy vs the upstream direct, on loopback.
//!
//! Every proxy forwards to the same two upstreams (this binary's `upstream`), gets the same
//! number of threads and the same wrk load (keep-alive, N connections, warm-up first), and
//! the targets take turns A B C A B C so drift hits all alike.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use sprout_proxy::{
    BackendSpec, Balancer, BalancerConfig, HealthCheck, PerCoreListeners, RouteSpec,
};

use crate::report::{thousands, Section, Table};
use crate::tools::{self, median, Job, Proc, Wrk, WrkResult};
use crate::Opts;

/// The Host every wrk run sends (Sprout routes on it; nginx and HAProxy ignore it).
pub const HOST: &str = "bench.localhost";

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// Serving threads
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// An upstream address (repeat)
    #[arg(long = "upstream", required = true)]
    pub upstreams: Vec<SocketAddr>,
    /// `per-core`: `Balancer::serve_per_core` (what `sprout server` runs); `shared`:
    /// `Balancer::serve` on one multi-thread runtime with one upstream pool
    #[arg(long, default_value = "per-core")]
    pub mode: String,
}

/// `sprout-bench sprout-proxy`: the balancer alone with a static route to the upstreams.
pub fn run_standalone(args: StandaloneArgs) -> Result<()> {
    let threads = args.threads.max(1);
    let shared = args.mode == "shared";
    // Health checks run on this runtime; in per-core mode requests never touch it.
    let runtime = if shared {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let balancer = Balancer::new(BalancerConfig::default());
        balancer.set_route(RouteSpec {
            env: "bench".into(),
            hosts: vec![HOST.into()],
            health: HealthCheck {
                interval: Duration::from_millis(200),
                ..HealthCheck::default()
            },
            backends: args
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, addr)| BackendSpec {
                    id: format!("u{i}"),
                    addr: *addr,
                    version: "v1".into(),
                })
                .collect(),
        });
        for i in 0..args.upstreams.len() {
            while !balancer.is_healthy("bench", &format!("u{i}")) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!("sprout-proxy ready on {}", args.listen);
        let forever = std::future::pending::<()>();
        let cannot_listen = || format!("cannot listen on {}", args.listen);
        if shared {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(cannot_listen)?;
            balancer.serve(listener, forever).await?;
        } else {
            let listeners =
                PerCoreListeners::bind(args.listen, threads).with_context(cannot_listen)?;
            balancer.serve_per_core(listeners, forever).await?;
        }
        Ok(())
    })
}

/// One thing wrk is pointed at.
pub struct Target {
    pub name: String,
    pub url: String,
    /// The process whose CPU time per request is reported (the proxy; not for direct).
    pub pid: Option<u32>,
    /// Whether the ratios are computed against this one.
    pub kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Sprout,
    Nginx,
    Haproxy,
    /// Another configuration, shown without being compared against.
    Other,
    /// Sprout's balancer from another build (`--baseline`).
    Baseline,
}

/// Runs the targets in turns for `rounds` and returns each one's runs.
pub async fn compare(opts: &Opts, targets: &[Target], host: &str) -> Result<Vec<Vec<WrkResult>>> {
    let mut results: Vec<Vec<WrkResult>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..opts.rounds.max(1) {
        for (t, result) in targets.iter().zip(results.iter_mut()) {
            let wrk = |duration| Wrk {
                url: &t.url,
                host: Some(host),
                headers: Vec::new(),
                threads: 1,
                connections: opts.connections,
                duration,
            };
            if opts.warmup > 0 {
                wrk(Duration::from_secs(opts.warmup)).run().await?;
            }
            let cpu_before = t.pid.and_then(tools::tree_cpu_seconds);
            let mut r = wrk(opts.duration()).run().await?;
            let cpu_after = t.pid.and_then(tools::tree_cpu_seconds);
            if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
                if r.requests > 0 {
                    r.cpu_us = Some((b - a) * 1e6 / r.requests as f64);
                }
            }
            println!(
                "  round {} {:<28} {:>9} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  cpu/req {:>6} non-2xx {} errors {}",
                round + 1,
                t.name,
                thousands(r.rps),
                r.p50_ms,
                r.p99_ms,
                r.cpu_us.map_or("—".into(), |c| format!("{c:.1} µs")),
                r.non_2xx,
                r.errors
            );
            result.push(r);
        }
    }
    Ok(results)
}

/// The comparison table: medians over the rounds and the ratios to nginx and HAProxy.
pub fn table(targets: &[Target], results: &[Vec<WrkResult>], threads: usize) -> Table {
    struct Fig {
        cpu_us: Option<f64>,
        rps: f64,
        p50: f64,
        p99: f64,
        bad: u64,
        requests: u64,
    }
    let figs: Vec<Fig> = results
        .iter()
        .map(|runs| Fig {
            cpu_us: {
                let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us).collect();
                (!cpu.is_empty()).then(|| median(cpu))
            },
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p50: median(runs.iter().map(|r| r.p50_ms).collect()),
            p99: median(runs.iter().map(|r| r.p99_ms).collect()),
            bad: runs.iter().map(|r| r.non_2xx + r.errors).sum(),
            requests: runs.iter().map(|r| r.requests).sum(),
        })
        .collect();
    let find = |k: Kind| targets.iter().position(|t| t.kind == k).map(|i| &figs[i]);
    let (nginx, haproxy) = (find(Kind::Nginx), find(Kind::Haproxy));
    let ratio = |a: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    let mut t = Table::new(&[
        "target",
        "threads",
        "req/s",
        "p50",
        "p99",
        "5xx/errors",
        "CPU/request",
        "req/s ÷ nginx",
        "p99 ÷ nginx",
        "req/s ÷ HAProxy",
        "p99 ÷ HAProxy",
    ]);
    for (target, f) in targets.iter().zip(&figs) {
        t.row(vec![
            target.name.clone(),
            if target.kind == Kind::Direct {
                "—".into()
            } else {
                threads.to_string()
            },
            thousands(f.rps),
            format!("{:.2} ms", f.p50),
            format!("{:.2} ms", f.p99),
            format!("{} of {}", f.bad, thousands(f.requests as f64)),
            f.cpu_us.map_or("—".into(), |c| format!("{c:.1} µs")),
            ratio(f.rps, nginx.map(|n| n.rps)),
            ratio(f.p99, nginx.map(|n| n.p99)),
            ratio(f.rps, haproxy.map(|n| n.rps)),
            ratio(f.p99, haproxy.map(|n| n.p99)),
        ]);
    }
    t
}

fn spawn_self(name: &str, args: &[String], log: &Path) -> Result<Proc> {
    let exe = std::env::current_exe().context("locate sprout-bench")?;
    spawn_exe(&exe, name, args, log)
}

fn spawn_exe(exe: &Path, name: &str, args: &[String], log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log)?;
    Proc::spawn(
        name,
        Command::new(exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(out),
    )
}

pub async fn run(opts: &Opts) -> Result<Section> {
    let mut threads: Vec<usize> = opts.threads.iter().map(|t| (*t).max(1)).collect();
    threads.dedup();
    if threads.is_empty() {
        threads.push(1);
    }
    let mut section = Section {
        title: "Balancer vs nginx vs HAProxy (loopback)".into(),
        intro: format!(
            "Two upstreams (this crate's `upstream`: hyper, one thread each, a 14-byte 200), \
             the same for every proxy. wrk `-t1 -c{c} -d{d}s --latency`, keep-alive, after a \
             {w} s warm-up, targets in turns for {r} rounds; figures are the medians of the \
             rounds. Every proxy gets the same worker threads (one table per count) and \
             does the same job as Sprout's balancer: pass the client's Host, set \
             `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`, and give each \
             request an id sent upstream and back (`X-Request-Id`). nginx: \
             `worker_processes N`, upstream `keepalive 64`, `proxy_http_version 1.1`, \
             `Connection \"\"`, `proxy_set_header` for those headers with `$request_id` \
             (also `add_header`); \"nginx, forwarding only\" is the same nginx without the \
             headers, for reference. HAProxy: `nbthread N`, `http-reuse always`, \
             `option forwardfor`, `unique-id-format %[uuid()]` with `unique-id-header` and \
             `http-response set-header X-Request-Id`, `http-request set-header` for the other \
             two. Sprout's balancer standalone (`sprout-bench sprout-proxy`: the \
             `sprout-proxy` crate with a static route, served by `Balancer::serve_per_core` \
             with N threads, as `sprout server` does).",
            c = opts.connections,
            d = opts.duration,
            w = opts.warmup,
            r = opts.rounds,
        ),
        ..Default::default()
    };
    if opts.baseline.is_some() {
        section.intro.push_str(&format!(
            " \"Sprout, {}\" is the balancer of another build of this command (`--baseline`), \
             served the same way and measured in the same turns.",
            opts.baseline_label
        ));
    }
    for n in threads {
        println!("  {n} thread(s)");
        let (table, note) = run_threads(opts, n).await?;
        section.tables.push(table);
        section.notes.push(note);
    }
    section.notes.push(
        "Targets: Sprout ≥ 1.0× nginx's req/s and ≤ 1.0× its p99 with the same threads; \
         5xx/errors must be 0. Reference (2 cores, wrk -t1 -c64): nginx 1 worker ≈ 35k req/s, \
         p99 ≈ 2.8 ms; the upstream direct ≈ 100k req/s."
            .into(),
    );
    section.notes.push(
        "All processes share the machine with wrk: on 2 cores the load generator, the proxy \
         and both upstreams compete for CPU, for every target alike, and requests/s also \
         depend on how the scheduler interleaves them (they move by ±10 % from run to run). \
         CPU/request is the user + system CPU time of the proxy's processes during the \
         measured run divided by its requests: what the proxy itself costs, which that noise \
         hardly moves."
            .into(),
    );
    Ok(section)
}

async fn run_threads(opts: &Opts, threads: usize) -> Result<(Table, String)> {
    let dir = tempfile::Builder::new().prefix("sprout-bench-").tempdir()?;
    let mut procs = Vec::new();
    let mut upstreams = Vec::new();
    for i in 0..2 {
        let port = tools::free_port()?;
        procs.push(spawn_self(
            "upstream",
            &["upstream".into(), "--port".into(), port.to_string()],
            &dir.path().join(format!("upstream{i}.log")),
        )?);
        upstreams.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    for u in &upstreams {
        tools::wait_http(&format!("http://{u}/"), None, Duration::from_secs(10)).await?;
    }
    let mut targets = vec![Target {
        name: "upstream direct (one of two)".into(),
        url: format!("http://{}/", upstreams[0]),
        pid: None,
        kind: Kind::Direct,
    }];
    let standalone = |mode: &str, port: u16| -> Vec<String> {
        let mut a = vec![
            "sprout-proxy".to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--threads".into(),
            threads.to_string(),
            "--mode".into(),
            mode.into(),
        ];
        for u in &upstreams {
            a.push("--upstream".into());
            a.push(u.to_string());
        }
        a
    };
    let port = tools::free_port()?;
    procs.push(spawn_self(
        "sprout-proxy",
        &standalone("per-core", port),
        &dir.path().join("sprout.log"),
    )?);
    targets.push(Target {
        name: "Sprout balancer".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Sprout,
    });
    if let Some(exe) = &opts.baseline {
        let port = tools::free_port()?;
        procs.push(spawn_exe(
            exe,
            "sprout-proxy (baseline)",
            &standalone("per-core", port),
            &dir.path().join("sprout-baseline.log"),
        )?);
        targets.push(Target {
            name: format!("Sprout, {}", opts.baseline_label),
            url: format!("http://127.0.0.1:{port}/"),
            pid: procs.last().map(Proc::pid),
            kind: Kind::Baseline,
        });
    }
    let port = tools::free_port()?;
    procs.push(tools::start_nginx(
        dir.path(),
        port,
        threads,
        &upstreams,
        Job::Same,
    )?);
    targets.push(Target {
        name: "nginx".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Nginx,
    });
    let port = tools::free_port()?;
    procs.push(tools::start_nginx(
        dir.path(),
        port,
        threads,
        &upstreams,
        Job::Bare,
    )?);
    targets.push(Target {
        name: "nginx, forwarding only".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Other,
    });
    let port = tools::free_port()?;
    procs.push(tools::start_haproxy(dir.path(), port, threads, &upstreams)?);
    targets.push(Target {
        name: "HAProxy".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Haproxy,
    });
    for t in &targets {
        tools::wait_http(&t.url, Some(HOST), Duration::from_secs(15))
            .await
            .with_context(|| {
                format!(
                    "{} did not come up (logs in {})",
                    t.name,
                    dir.path().display()
                )
            })?;
    }
    for p in &mut procs {
        p.check_running()?;
    }
    let results = compare(opts, &targets, HOST).await?;
    drop(procs);
    let fig = |k: Kind| {
        targets.iter().position(|t| t.kind == k).map(|i| {
            let runs = &results[i];
            (
                median(runs.iter().map(|r| r.rps).collect()),
                median(runs.iter().map(|r| r.p99_ms).collect()),
            )
        })
    };
    let cpu = |k: Kind| {
        targets.iter().position(|t| t.kind == k).and_then(|i| {
            let runs: Vec<f64> = results[i].iter().filter_map(|r| r.cpu_us).collect();
            (!runs.is_empty()).then(|| median(runs))
        })
    };
    let cpu_note = match (cpu(Kind::Sprout), cpu(Kind::Nginx), cpu(Kind::Haproxy)) {
        (Some(s), Some(n), Some(h)) if n > 0.0 && h > 0.0 => format!(
            " CPU per request: Sprout {s:.1} µs, nginx {n:.1} µs ({:.2}×), HAProxy {h:.1} µs \
             ({:.2}×).",
            s / n,
            s / h
        ),
        _ => String::new(),
    };
    let mut note = match (fig(Kind::Sprout), fig(Kind::Other)) {
        (Some((rps, p99)), Some((bare_rps, bare_p99))) if bare_rps > 0.0 && bare_p99 > 0.0 => {
            format!(
                "{threads} thread(s): Sprout vs nginx forwarding only = {:.2}× req/s, {:.2}× p99.",
                rps / bare_rps,
                p99 / bare_p99
            )
        }
        _ => String::new(),
    };
    if let (Some((rps, p99)), Some((old_rps, old_p99))) = (fig(Kind::Sprout), fig(Kind::Baseline)) {
        if old_rps > 0.0 && old_p99 > 0.0 {
            note.push_str(&format!(
                " This build vs the {} = {:.2}× req/s, {:.2}× p99.",
                opts.baseline_label,
                rps / old_rps,
                p99 / old_p99
            ));
        }
    }
    note.push_str(&cpu_note);
    Ok((table(&targets, &results, threads), note))
}

/// Shared by the containers part: a Balancer-less comparison set for given upstreams.
pub fn nginx_and_haproxy(
    dir: &Path,
    threads: usize,
    upstreams: &[SocketAddr],
) -> Result<(Vec<Proc>, Vec<Target>)> {
    let mut procs = Vec::new();
    let mut targets = Vec::new();
    let port = tools::free_port()?;
    procs.push(tools::start_nginx(
        dir,
        port,
        threads,
        upstreams,
        Job::Same,
    )?);
    targets.push(Target {
        name: "nginx".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Nginx,
    });
    let port = tools::free_port()?;
    procs.push(tools::start_haproxy(dir, port, threads, upstreams)?);
    targets.push(Target {
        name: "HAProxy".into(),
        url: format!("http://127.0.0.1:{port}/"),
        pid: procs.last().map(Proc::pid),
        kind: Kind::Haproxy,
    });
    Ok((procs, targets))
}
