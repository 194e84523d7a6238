//! Serving a router on a listener with the limits a reachable port needs, which
//! `axum::serve` does not give: a deadline for each request head (it also closes a kept-alive
//! connection that sends nothing), a timeout on request bodies, and caps on open connections
//! (in all and per client address). A connection over a cap is closed at once, so a flood
//! costs the server no memory and leaves it serving the connections it has.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sprout_proxy::ClientConns;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;
use tower_http::timeout::TimeoutBody;

/// The limits of one server (the API, the SQS endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time a client has to send a request's head, from the moment the server waits for it.
    pub header_timeout: Duration,
    /// Longest pause in a request body (a handler may set a total deadline of its own).
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_ip: 128,
        }
    }
}

/// Serves `router` (HTTP/1.1) on `listener` until `shutdown`, then lets the open connections
/// finish. Handlers can read the peer as `ConnectInfo<SocketAddr>`. `name` is for the logs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = ClientConns::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: not fatal.
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(server = name, %peer, max = limits.max_connections, "connection refused: the server has as many open connections as it takes");
            continue;
        };
        let Some(slot) = per_ip.admit(peer.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(server = name, %peer, max = limits.max_connections_per_ip, "connection refused: this address has as many open connections as one may");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut req = req.map(|b| axum::body::Body::new(TimeoutBody::new(body_timeout, b)));
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
