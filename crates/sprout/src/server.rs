//! `sprout server`: opens the store, connects to Docker, and runs the API, the balancer and
//! the reconciler as named tasks until SIGTERM/SIGINT. Stopping leaves instances running;
//! the next start adopts them. A server started while another runs on the same data
//! directory takes its listening sockets over (see `handover`): a restart or an upgrade
//! drops no request.

use crate::handover::{Event, Offer, Predecessor, Sockets};
use crate::loops::Loops;
use anyhow::Context;
use sprout_api::serve::ServeLimits;
use sprout_api::{auth::Auth, AppState};
use sprout_control::{Control, ControlConfig};
use sprout_core::bundle::BundleLimits;
use sprout_core::model::BuildLimits;
use sprout_core::queue::QueueQuota;
use sprout_proxy::{Balancer, BalancerConfig, PerCoreListeners};
use sprout_runtime::Runtime;
use sprout_store::{SecretBox, Store};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Data directory: SQLite database, bundles, signing key, the key that seals secrets.
    /// Made private to the server's user (0700, files 0600)
    #[arg(long, env = "SPROUT_DATA", default_value = ".sprout")]
    data: PathBuf,
    /// Address of the API and dashboard
    #[arg(long, env = "SPROUT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Address of the balancer that serves environments
    #[arg(long, env = "SPROUT_BALANCER", default_value = "0.0.0.0:8000")]
    balancer: String,
    /// Domain of environment host names: <cname>.<domain>
    #[arg(long, env = "SPROUT_DOMAIN", default_value = "localhost")]
    domain: String,
    /// Zones instances are spread over (comma-separated; all on the local engine for now)
    #[arg(
        long,
        env = "SPROUT_ZONES",
        default_value = "a,b",
        value_delimiter = ','
    )]
    zones: Vec<String>,
    /// Largest bundle accepted, in bytes
    #[arg(long, env = "SPROUT_MAX_BUNDLE_BYTES", default_value_t = BundleLimits::default().max_archive_bytes)]
    max_bundle_bytes: u64,
    /// Largest size a bundle may expand to, in bytes
    #[arg(long, env = "SPROUT_MAX_UNPACKED_BYTES", default_value_t = BundleLimits::default().max_unpacked_bytes)]
    max_unpacked_bytes: u64,
    /// Seconds any operation may take before it fails (a deploy then rolls back), unless the
    /// environment's command_timeout is shorter
    #[arg(long, env = "SPROUT_OPERATION_TIMEOUT", default_value_t = 300)]
    operation_timeout: u64,
    /// Seconds a stopping instance gets between SIGTERM and SIGKILL
    #[arg(long, env = "SPROUT_STOP_GRACE", default_value_t = 10)]
    stop_grace: u64,
    /// Address of the SQS-compatible endpoint (instances reach it via their network's gateway)
    #[arg(long, env = "SPROUT_SQS", default_value = "0.0.0.0:9324")]
    sqs: String,
    /// Proxies in front of the balancer whose X-Forwarded-For is kept (addresses or networks,
    /// comma-separated); from anyone else the header is replaced
    #[arg(long, env = "SPROUT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = sprout_proxy::parse_trusted_proxy)]
    trusted_proxies: Vec<sprout_proxy::IpNet>,
    /// Most connections open at once from one client address at the balancer (0: no cap)
    #[arg(long, env = "SPROUT_MAX_CLIENT_CONNECTIONS", default_value_t = BalancerConfig::default().max_connections_per_client)]
    max_client_connections: u32,
    /// Seconds a version's build step may run before it is stopped and the version fails
    #[arg(long, env = "SPROUT_BUILD_TIMEOUT", default_value_t = BuildLimits::default().timeout.as_secs())]
    build_timeout: u64,
    /// Seconds a client of the API or the SQS endpoint has to send a request head; an idle
    /// kept-alive connection is closed after as long
    #[arg(long, env = "SPROUT_HEADER_TIMEOUT", default_value_t = ServeLimits::default().header_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a request body may take: on the SQS endpoint the whole body (at most 1 MiB),
    /// on the API the longest pause in one (uploads can be long)
    #[arg(long, env = "SPROUT_BODY_TIMEOUT", default_value_t = ServeLimits::default().body_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Open connections the API, and the SQS endpoint, each take at most (more are closed at once)
    #[arg(long, env = "SPROUT_MAX_CONNECTIONS", default_value_t = ServeLimits::default().max_connections, value_parser = parse_count)]
    max_connections: usize,
    /// Open connections from one client address the API, and the SQS endpoint, each take at most
    #[arg(long, env = "SPROUT_MAX_CONNECTIONS_PER_IP", default_value_t = ServeLimits::default().max_connections_per_ip, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: u32,
    /// Queues an application may have (CreateQueue is refused past it)
    #[arg(long, env = "SPROUT_APP_MAX_QUEUES", default_value_t = QueueQuota::default().max_queues)]
    app_max_queues: u64,
    /// Messages an application's queues may hold in all (sends are refused past it)
    #[arg(long, env = "SPROUT_APP_MAX_MESSAGES", default_value_t = QueueQuota::default().max_messages)]
    app_max_messages: u64,
    /// Bytes (bodies and attributes) an application's queues may hold in all
    #[arg(long, env = "SPROUT_APP_MAX_QUEUE_BYTES", default_value_t = QueueQuota::default().max_bytes)]
    app_max_queue_bytes: u64,
    /// Browsers reach the dashboard over HTTPS (TLS here or at a proxy in front): its session
    /// cookie becomes `__Host-sprout_session`, Secure
    #[arg(long, env = "SPROUT_HTTPS")]
    https: bool,
    /// Seconds a server told to stop (SIGTERM) keeps serving while it waits for a next
    /// `sprout server` on the same data directory to take its sockets over (0: stop at
    /// once; SIGINT always stops at once)
    #[arg(long, env = "SPROUT_HANDOVER_WAIT", default_value_t = 5)]
    handover_wait: u64,
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number above 0")),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,bollard=warn,hyper=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Which stop signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: wait a little for a next server to take over.
    Term,
    /// SIGINT (Ctrl-C): stop at once.
    Interrupt,
}

async fn shutdown_signal() -> Stop {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => Stop::Interrupt,
                _ = term.recv() => Stop::Term,
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
            Stop::Interrupt
        }
    }
}

/// glibc raises its mmap threshold after a large block is freed, so from then on the 19 MiB
/// that argon2 needs for every login comes from the heap of whichever blocking thread hashed
/// it, and stays there: each login grew the server by ~20 MiB (23 MiB idle, 103 MiB after
/// four logins). A fixed threshold keeps large blocks mmapped, so they go back to the OS.
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the runtime's threads
    // allocate large blocks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Makes the data directory private to the server's user: it holds password hashes, the
/// signing key, the key that seals secrets, and the database. Every file and directory the
/// server makes from now on is private too (umask 077); what an older Sprout made with wider
/// modes is narrowed: the directory and `bundles/` to 0700, the files directly in them to
/// 0600. (Unpacked bundles keep their modes: they become the app's files in its image, and
/// the 0700 directories above them already keep everyone else out.)
fn make_data_dir_private(dir: &Path) -> anyhow::Result<()> {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    for sub in [dir.to_path_buf(), dir.join("bundles")] {
        if !sub.is_dir() {
            continue;
        }
        narrow(&sub, 0o700)?;
        for entry in std::fs::read_dir(&sub).with_context(|| format!("{}", sub.display()))? {
            let path = entry?.path();
            // Not following links: a link's target is not ours to change.
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_file() {
                narrow(&path, 0o600)?;
            } else if meta.is_dir() {
                narrow(&path, 0o700)?;
            }
        }
    }
    Ok(())
}

/// Takes group and other rights away from `path`, leaving it `mode` at most.
fn narrow(path: &Path, mode: u32) -> anyhow::Result<()> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
            .with_context(|| format!("cannot make {} private", path.display()))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{:o}", current & mode), "made private");
    }
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    return_large_blocks_to_the_os();
    init_tracing();
    make_data_dir_private(&args.data)?;
    let data = args.data.canonicalize().context("data directory")?;

    let secrets = SecretBox::load_or_create(&data.join(sprout_store::SECRET_KEY_FILE))
        .context("the key that seals secrets at rest")?;
    let store = Store::open_with(&data.join("sprout.db"), secrets)
        .await
        .context("opening the store")?;
    let configured = std::env::var("SPROUT_ADMIN_PASSWORD").ok();
    if let Some(password) = sprout_api::ensure_admin(&store, configured.as_deref()).await? {
        println!("admin password (shown once): {password}");
    }
    let auth = Auth::load_or_create(&data)?;
    let runtime = Runtime::connect_local()
        .await
        .context("cannot reach the Docker engine (is dockerd running and is DOCKER_HOST right?)")?;

    // A server already running on this data directory (a restart or an upgrade) hands its
    // listening sockets over; it keeps accepting until this one has its routes back.
    let mut predecessor = Predecessor::find(&data)
        .await
        .context("looking for a running server on this data directory")?;
    let handed = match predecessor.as_mut() {
        Some(running) => {
            let sockets = running
                .sockets()
                .await
                .context("taking the sockets over from the running server")?;
            tracing::info!("a server runs on this data directory: taking its sockets over");
            Some(sockets)
        }
        None => None,
    };
    let (handed_api, handed_sqs, handed_balancer) = match handed {
        Some(s) => (Some(s.api), Some(s.sqs), s.balancer),
        None => (None, None, Vec::new()),
    };
    let api_listener = listen(&args.listen, handed_api)
        .await
        .with_context(|| format!("cannot listen on {} (API)", args.listen))?;
    let balancer_listener = bind_balancer(&args.balancer, handed_balancer)
        .await
        .with_context(|| format!("cannot listen on {} (balancer)", args.balancer))?;
    let sqs_listener = listen(&args.sqs, handed_sqs)
        .await
        .with_context(|| format!("cannot listen on {} (SQS endpoint)", args.sqs))?;
    let sqs_addr = sqs_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let balancer_addr = balancer_listener.local_addr();

    let balancer = Balancer::new(BalancerConfig {
        domain: args.domain.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        max_connections_per_client: args.max_client_connections,
        // The dashboard's session (also as served over HTTPS) never reaches an instance.
        private_cookies: sprout_core::auth::SESSION_COOKIE_NAMES
            .iter()
            .map(|name| name.to_string())
            .collect(),
        ..BalancerConfig::default()
    });
    let mut config = ControlConfig::new(data.clone());
    config.domain = args.domain.clone();
    config.balancer_port = balancer_addr.port();
    config.zones.clear();
    for zone in args
        .zones
        .iter()
        .map(|z| z.trim())
        .filter(|z| !z.is_empty())
    {
        let (name, endpoint) = match zone.split_once('=') {
            Some((name, endpoint)) => (name.trim(), Some(endpoint.trim())),
            None => (zone, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            anyhow::bail!("--zones: invalid zone name '{name}' (letters, digits, '-')");
        }
        if config.zones.iter().any(|z| z == name) {
            anyhow::bail!("--zones: zone '{name}' is listed twice");
        }
        config.zones.push(name.to_string());
        if let Some(endpoint) = endpoint {
            config
                .zone_endpoints
                .insert(name.to_string(), endpoint.to_string());
        }
    }
    if config.zones.is_empty() {
        anyhow::bail!("--zones needs at least one zone");
    }
    config.limits.max_archive_bytes = args.max_bundle_bytes;
    config.limits.max_unpacked_bytes = args.max_unpacked_bytes;
    config.operation_timeout = Duration::from_secs(args.operation_timeout);
    config.build_limits.timeout = Duration::from_secs(args.build_timeout);
    config.stop_grace = Duration::from_secs(args.stop_grace);
    config.sqs_addr = Some(sqs_addr);
    config.queue_quota = QueueQuota {
        max_queues: args.app_max_queues,
        max_messages: args.app_max_messages,
        max_bytes: args.app_max_queue_bytes,
    };
    let control = Control::new(store.clone(), runtime, balancer.clone(), config).await?;
    // Before the first accept: every route, and the instances last in rotation back in
    // rotation, so the first requests get neither a 404 nor a 502.
    match control.restore_routes().await {
        Ok(routes) => tracing::info!(routes, "routes restored"),
        Err(e) => tracing::warn!(error = %e, "could not restore the routes before serving"),
    }
    // Counting starts here. Without a running server handing over, a session still open
    // ended in a crash: records spanning it are marked approximate.
    let count_session = store
        .open_count_session(predecessor.is_none())
        .await
        .context("recording the start of request counting")?;
    if let Some(running) = predecessor {
        running
            .taken()
            .await
            .context("the running server did not hand over")?;
        tracing::info!("took over from the running server");
    }
    let handover_sockets = Sockets::try_clone(&api_listener, &sqs_listener, &balancer_listener)
        .context("keeping the sockets for a next server")?;
    let offer = Offer::listen(&data).context("hand-over socket")?;
    let offer_path = offer.path().to_path_buf();
    control.resume_builds().await?;
    // Build missing platform images now, so the first push does not wait for debootstrap.
    {
        let runtime = control.runtime().clone();
        tokio::spawn(async move {
            for image in ["sprout/platform-python", "sprout/platform-static"] {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let log = tokio::spawn(async move {
                    while let Some(line) = rx.recv().await {
                        tracing::info!(target: "sprout::platform", "{line}");
                    }
                });
                if let Err(e) = runtime.ensure_platform(image, &tx).await {
                    tracing::error!(%image, error = %e, "could not build the platform image");
                }
                drop(tx);
                let _ = log.await;
            }
        });
    }

    let shutdown = CancellationToken::new();
    let state = AppState {
        control: control.clone(),
        auth,
        dashboard: sprout_api::dashboard::Dashboard {
            cookies: sprout_api::dashboard::session::CookiePolicy { https: args.https },
            ..Default::default()
        },
    };
    let history = state.dashboard.history.clone();
    let app = sprout_api::router(state);
    let limits = ServeLimits {
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
    };

    let api_task = {
        let token = shutdown.clone();
        tokio::spawn(async move {
            sprout_api::serve::serve(api_listener, app, limits, "api", async move {
                token.cancelled().await
            })
            .await
        })
    };
    let balancer_task = {
        let token = shutdown.clone();
        let balancer = balancer.clone();
        tokio::spawn(async move {
            // One runtime per core with its own upstream pool: the request path never
            // crosses cores (see `Balancer::serve_per_core`).
            balancer
                .serve_per_core(balancer_listener, async move { token.cancelled().await })
                .await
        })
    };
    let sqs_task = {
        let token = shutdown.clone();
        let app = sprout_api::sqs::router(control.clone(), limits.body_timeout);
        tokio::spawn(async move {
            sprout_api::serve::serve(sqs_listener, app, limits, "sqs", async move {
                token.cancelled().await
            })
            .await
        })
    };
    let mut loops = Some(Loops::start(&control, &history).await?);
    let (events_tx, mut events) = tokio::sync::mpsc::channel(4);
    let offer_task = tokio::spawn(offer.serve(handover_sockets, events_tx));

    // Said once: these plain lines on stdout are the announcement (tests and scripts read
    // them to find the ports); the tracing event is only for debugging, so the log on a
    // terminal does not show every address twice.
    tracing::debug!(sqs = %sqs_addr, api = %api_addr, balancer = %balancer_addr, data = %data.display(), server = %control.server_id(), "sprout server started");
    println!("api listening on http://{api_addr}");
    println!(
        "balancer listening on http://{balancer_addr} (domain {})",
        args.domain
    );
    println!("sqs listening on http://{sqs_addr}");
    println!("server id {}", control.server_id());

    // Serve until a stop signal (SIGTERM: after waiting `handover_wait` for a next server)
    // or until a next server has taken the sockets over.
    let wait = Duration::from_secs(args.handover_wait);
    let mut signal = Box::pin(shutdown_signal());
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut handed_over = false;
    loop {
        tokio::select! {
            stop = &mut signal => {
                if stop == Stop::Interrupt || wait.is_zero() || deadline.is_some() {
                    break;
                }
                tracing::info!(seconds = wait.as_secs(), "stopping: serving on while a next server may take over");
                deadline = Some(tokio::time::Instant::now() + wait);
                signal = Box::pin(shutdown_signal());
            }
            _ = sleep_until(deadline), if deadline.is_some() => break,
            event = events.recv() => match event {
                Some(Event::Prepare(done)) => {
                    if let Some(running) = loops.take() {
                        running.stop().await;
                    }
                    if let Err(e) = control.checkpoint_health(None).await {
                        tracing::warn!(error = %e, "could not record backend health for the next server");
                    }
                    if let Err(e) = control.checkpoint_counts().await {
                        tracing::warn!(error = %e, "could not record request counts for the next server");
                    }
                    let _ = done.send(());
                }
                Some(Event::Gone) => {
                    if loops.is_none() {
                        loops = Some(Loops::start(&control, &history).await?);
                    }
                }
                Some(Event::Taken) | None => {
                    handed_over = true;
                    break;
                }
            },
        }
    }
    offer_task.abort();
    if handed_over {
        tracing::info!("a next server serves now: finishing the requests under way");
    } else {
        // The next server (if any) binds its own; this one is of no use any more.
        let _ = std::fs::remove_file(&offer_path);
        tracing::info!("stopping: instances keep running and will be adopted at the next start");
    }
    shutdown.cancel();
    if let Some(running) = loops.take() {
        running.stop().await;
    }
    let (api, bal, sqs) = tokio::join!(api_task, balancer_task, sqs_task);
    if let Ok(Err(e)) = api {
        tracing::warn!(error = %e, "api stopped with an error");
    }
    if let Ok(Err(e)) = bal {
        tracing::warn!(error = %e, "balancer stopped with an error");
    }
    if let Ok(Err(e)) = sqs {
        tracing::warn!(error = %e, "sqs endpoint stopped with an error");
    }
    // The requests finished since the last checkpoint (after a hand-over, those the next
    // server's totals do not have) go into the deployment records too.
    match control.checkpoint_counts().await {
        Ok(()) => {
            if let Err(e) = store.close_count_session(count_session).await {
                tracing::warn!(error = %e, "could not record the end of request counting");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not record request counts"),
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether `configured` (as given on the command line) names the address `actual` is bound
/// to; port 0 (any free port) matches any port.
async fn names(configured: &str, actual: std::net::SocketAddr) -> bool {
    match tokio::net::lookup_host(configured).await {
        Ok(mut addrs) => {
            addrs.any(|a| a.ip() == actual.ip() && (a.port() == 0 || a.port() == actual.port()))
        }
        Err(_) => false,
    }
}

/// A listener on `addr`: the one handed over by the previous server if it listens there,
/// else a new one (an upgrade may move a port; the previous server closes the old one).
async fn listen(addr: &str, handed: Option<std::net::TcpListener>) -> anyhow::Result<TcpListener> {
    if let Some(socket) = handed {
        if names(addr, socket.local_addr()?).await {
            socket.set_nonblocking(true)?;
            return Ok(TcpListener::from_std(socket)?);
        }
    }
    Ok(TcpListener::bind(addr).await?)
}

/// The balancer's listening sockets, one per core (see `PerCoreListeners`): the previous
/// server's if they listen on `addr`.
async fn bind_balancer(
    addr: &str,
    handed: Vec<std::net::TcpListener>,
) -> anyhow::Result<PerCoreListeners> {
    if let Some(first) = handed.first() {
        if names(addr, first.local_addr()?).await {
            return Ok(PerCoreListeners::from_std(handed)?);
        }
    }
    let resolved = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{addr} resolves to no address"))?;
    Ok(PerCoreListeners::bind(resolved, 0)?)
}
