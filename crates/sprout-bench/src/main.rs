//! `sprout-bench`: the project's benchmark command.
//!
//! `cargo run --release -p sprout-bench -- all` runs every part, prints a table per part and
//! writes them to `BENCHMARKS.md` (each part in its own marked section, so running one part
//! updates only its section). It installs nothing: missing tools are named with the command
//! that installs them, and the run stops.
//!
//! Parts: `proxy` (balancer vs nginx vs HAProxy vs direct, on loopback), `containers` (the
//! same through real containers), `deploy` (create → Green, rolling deploy under load),
//! `heal` (killed instance, scaling trigger, zone failure), `worker` (messages/s through a
//! worker environment), `footprint` (control-plane memory and API latency), `resources`
//! (resource create → Available, examples/myclothes with and without its stores).
//!
//! Two internal subcommands are the benchmark's own processes: `upstream` (the small fast
//! HTTP server every proxy forwards to) and `sprout-proxy` (Sprout's balancer, standalone).

mod containers;
mod control;
mod deploy;
mod footprint;
mod proxy;
mod report;
mod resources;
mod tools;
mod upstream;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sprout-bench",
    about = "Sprout's benchmarks; writes BENCHMARKS.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every part below, in order
    All(Opts),
    /// Balancer vs nginx vs HAProxy vs direct on loopback (wrk, keep-alive)
    Proxy(Opts),
    /// The same comparison through two real container instances of an environment
    Containers(Opts),
    /// Create → Green (golden vs user-data) and a 4-instance rolling deploy under load
    Deploy(Opts),
    /// Killed instance → replacement serving; trigger breach → new instance; zone failure
    Heal(Opts),
    /// Messages per second through a worker environment with a no-op handler
    Worker(Opts),
    /// Control-plane memory (idle, 20 environments / 60 instances) and API p99 latency
    Footprint(Opts),
    /// Resource create → Available per kind; examples/myclothes req/s with Redis and
    /// PostgreSQL vs in memory
    Resources(Opts),
    /// (internal) The benchmark's upstream: a small fast HTTP server
    #[command(hide = true)]
    Upstream(upstream::UpstreamArgs),
    /// (internal) Sprout's balancer alone, with a static route to the upstreams
    #[command(name = "sprout-proxy", hide = true)]
    SproutProxy(proxy::StandaloneArgs),
}

/// Options shared by every part.
#[derive(Args, Clone, Debug)]
pub struct Opts {
    /// Seconds of measured load per run
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Seconds of warm-up load before each measured run
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// wrk connections
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Worker threads of every proxy in the loopback comparison (nginx worker_processes,
    /// HAProxy nbthread, Sprout's runtime threads), one table per count; 1 matches the
    /// reference figures
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Rounds of A B C turns in the proxy comparisons
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Messages sent through the worker environment
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// The `sprout` binary (default: next to this one, i.e. target/release/sprout)
    #[arg(long, env = "SPROUT_BIN")]
    pub sprout: Option<PathBuf>,
    /// Where the report goes (default: BENCHMARKS.md at the repository root)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Another build of sprout-bench (e.g. of the main branch) whose balancer gets a row of its
    /// own in the loopback comparison, to measure a change against it in the same run
    #[arg(long, env = "SPROUT_BENCH_BASELINE")]
    pub baseline: Option<PathBuf>,
    /// Label of the baseline row
    #[arg(long, default_value = "baseline build")]
    pub baseline_label: String,
    /// Print the tables only; do not touch BENCHMARKS.md
    #[arg(long)]
    pub no_write: bool,
}

impl Opts {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration.max(1))
    }
}

/// The parts in the order `all` runs them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    Proxy,
    Containers,
    Deploy,
    Heal,
    Worker,
    Footprint,
    Resources,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Proxy,
        Part::Containers,
        Part::Deploy,
        Part::Heal,
        Part::Worker,
        Part::Footprint,
        Part::Resources,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Proxy => "proxy",
            Part::Containers => "containers",
            Part::Deploy => "deploy",
            Part::Heal => "heal",
            Part::Worker => "worker",
            Part::Footprint => "footprint",
            Part::Resources => "resources",
        }
    }

    /// Whether the part needs the proxies to compare against.
    fn needs_proxies(self) -> bool {
        matches!(self, Part::Proxy | Part::Containers)
    }

    fn needs_docker(self) -> bool {
        !matches!(self, Part::Proxy)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (parts, opts): (Vec<Part>, Opts) = match cli.command {
        Command::Upstream(args) => return exit(upstream::run(args)),
        Command::SproutProxy(args) => return exit(proxy::run_standalone(args)),
        Command::All(o) => (Part::ALL.to_vec(), o),
        Command::Proxy(o) => (vec![Part::Proxy], o),
        Command::Containers(o) => (vec![Part::Containers], o),
        Command::Deploy(o) => (vec![Part::Deploy], o),
        Command::Heal(o) => (vec![Part::Heal], o),
        Command::Worker(o) => (vec![Part::Worker], o),
        Command::Footprint(o) => (vec![Part::Footprint], o),
        Command::Resources(o) => (vec![Part::Resources], o),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPROUT_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    exit(run_parts(&parts, &opts))
}

fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sprout-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_parts(parts: &[Part], opts: &Opts) -> Result<()> {
    // Check every prerequisite before running anything: a run that stops half-way wastes time.
    if parts.iter().any(|p| p.needs_proxies()) {
        tools::require(&["wrk", "nginx", "haproxy"])?;
    } else {
        tools::require(&["wrk"])?;
    }
    if parts.iter().any(|p| p.needs_docker()) {
        tools::require_docker()?;
    }
    let sprout = if parts.iter().any(|p| p.needs_docker()) {
        Some(control::sprout_binary(opts)?)
    } else {
        None
    };
    let machine = report::Machine::detect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| report::repo_root().join("BENCHMARKS.md"));
    let mut failed = Vec::new();
    for &part in parts {
        println!("\n== {} ==", part.name());
        let result = runtime.block_on(async {
            match part {
                Part::Proxy => proxy::run(opts).await,
                Part::Containers => containers::run(opts, sprout.as_deref()).await,
                Part::Deploy => deploy::run_deploy(opts, sprout.as_deref()).await,
                Part::Heal => deploy::run_heal(opts, sprout.as_deref()).await,
                Part::Worker => worker::run(opts, sprout.as_deref()).await,
                Part::Footprint => footprint::run(opts, sprout.as_deref()).await,
                Part::Resources => resources::run(opts, sprout.as_deref()).await,
            }
        });
        match result {
            Ok(section) => {
                let text = section.render(&machine, part);
                println!("{text}");
                if !opts.no_write {
                    report::write_section(&out, part, &text)?;
                }
            }
            Err(e) => {
                eprintln!("part {} failed: {e:#}", part.name());
                failed.push(part.name());
            }
        }
    }
    if !opts.no_write {
        println!("\nwrote {}", out.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("parts failed: {}", failed.join(", "))
    }
}
