//! The benchmark's upstream: a small fast HTTP/1.1 server (hyper, keep-alive), the same for
//! every proxy. Every answer is `200 OK` with a 14-byte body; `/health` too.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, Response};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(clap::Args, Debug)]
pub struct UpstreamArgs {
    /// Port to listen on (all interfaces: it also runs inside containers)
    #[arg(long, env = "PORT")]
    pub port: u16,
    /// Runtime threads (1 = a current-thread runtime)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

const BODY: &[u8] = b"Hello, world!\n";

pub fn run(args: UpstreamArgs) -> Result<()> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(SocketAddr::from(([0, 0, 0, 0], args.port))))
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("upstream listening on {addr}");
    // As PID 1 in a container SIGTERM has no default action: exit on it, or every stop
    // waits out the grace period.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            _ = term.recv() => return Ok(()),
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async {
                // Read the body (a worker's message) so the connection stays reusable.
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(Full::new(Bytes::from_static(BODY)))
                        .unwrap_or_default(),
                )
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
