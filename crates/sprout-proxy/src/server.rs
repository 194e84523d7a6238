//! The accept loop and per-connection HTTP/1.1 serving with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::Balancer;

impl Balancer {
    /// Serves HTTP/1.1 on the listener until `shutdown` resolves; then stops accepting and lets
    /// in-flight requests finish (idle keep-alive connections are closed).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let local = listener.local_addr().ok();
        info!(addr = ?local, "balancer listening");
        // Each connection task holds a receiver: `send(true)` asks them to wind down and
        // `closed()` tells us when the last one has finished.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Drop clients that open a connection and never finish sending headers.
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive(true);

        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Per-connection errors (reset before accept) are harmless; resource
                        // exhaustion (EMFILE) needs a pause rather than a hot loop.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "could not set TCP_NODELAY");
            }
            let this = self.clone();
            let mut stop = stop_rx.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req, peer).await) }
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades();
                let mut conn = pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    debug!(client = %peer, error = %e, "client connection ended with error");
                }
                drop(stop);
            });
        }

        drop(listener);
        info!(addr = ?local, "balancer stopped accepting; draining connections");
        let _ = stop_tx.send(true);
        drop(stop_rx);
        stop_tx.closed().await;
        info!(addr = ?local, "balancer stopped");
        Ok(())
    }
}
