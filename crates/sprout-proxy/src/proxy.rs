//! The request path: pick a route and a backend, rewrite headers, forward, stream back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::{debug, warn};

use crate::error::{chain, ProxyError};
use crate::headers::{
    append_forwarded_for, request_id, strip_hop_by_hop, upgrade_request, Peer, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::metrics::InFlight;
use crate::table::{sticky_cookie, Backend, Route};
use crate::{normalize_host, Balancer};

/// Response body: a backend's streamed body, or a small body the balancer wrote itself.
/// `Either` instead of a boxed body avoids an allocation per response.
pub type ProxyBody = Either<TrackedBody, Full<Bytes>>;

/// A backend's response body that keeps its request counted as in flight until the body has
/// been streamed to the client (or dropped).
pub struct TrackedBody {
    inner: Incoming,
    guard: Option<InFlight>,
}

impl TrackedBody {
    fn new(inner: Incoming, guard: Option<InFlight>) -> TrackedBody {
        TrackedBody { inner, guard }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Done (or broken): stop counting now rather than when hyper drops the body.
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Body sent upstream: the client's, or empty for bodiless requests that may be retried.
pub(crate) type UpstreamBody = Either<Incoming, Empty<Bytes>>;

pub(crate) type UpstreamClient = Client<HttpConnector, UpstreamBody>;

pub(crate) fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    // A dead instance must fail fast (then the request is retried elsewhere) rather than
    // hang on ARP for seconds: its address may meanwhile be given to a new instance that
    // has not passed a health check. Instances are on local bridges or a LAN, where a
    // connect takes well under a millisecond.
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http1_writev(false)
        .build(connector)
}

/// How a forwarded request failed: the error and the backend it was sent to, if any.
type Failure<'r> = (ProxyError, Option<&'r Backend>);

impl Balancer {
    /// Handles one client request; never fails (errors become plain-text responses).
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        client: &Peer,
        upstream: &UpstreamClient,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let id = request_id(req.headers());
        let mut resp = match self.route_for(&req) {
            Ok(route) => self.proxy(&route, req, client, upstream, &id, start).await,
            Err(e) => {
                debug!(request_id = ?id, error = %e, "request not routed");
                e.into_response()
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, id);
        resp
    }

    /// Forwards a routed request and records its outcome in the route's metrics.
    async fn proxy(
        &self,
        route: &Route,
        req: Request<Incoming>,
        client: &Peer,
        upstream: &UpstreamClient,
        id: &HeaderValue,
        start: Instant,
    ) -> Response<ProxyBody> {
        match self.forward(route, req, client, upstream, id).await {
            Ok((resp, backend)) => {
                let now = Instant::now();
                let status = resp.status().as_u16();
                route.stats.record(now, now - start, status, false);
                backend.stats.record(now, now - start, status, false);
                resp
            }
            Err((e, backend)) => {
                let now = Instant::now();
                let status = e.status().as_u16();
                route.stats.record(now, now - start, status, true);
                match backend {
                    Some(b) => b.stats.record(now, now - start, status, true),
                    None => route.stats.record_unrouted(),
                }
                match &e {
                    ProxyError::Upstream { .. } => {
                        warn!(request_id = ?id, error = %e, "proxy error")
                    }
                    _ => debug!(request_id = ?id, error = %e, "request not forwarded"),
                }
                e.into_response()
            }
        }
    }

    async fn forward<'r>(
        &self,
        route: &'r Route,
        mut req: Request<Incoming>,
        client: &Peer,
        upstream: &UpstreamClient,
        id: &HeaderValue,
    ) -> Result<(Response<ProxyBody>, &'r Backend), Failure<'r>> {
        // Original Host (header, or authority of an absolute-form URI) for the backend.
        let original_host = match req.headers().get(header::HOST) {
            Some(h) => h.clone(),
            None => req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .ok_or((ProxyError::MissingHost, None))?,
        };

        // The backend the client's stickiness cookie names, if stickiness is on.
        let presented = match route.opts.sticky {
            Some(_) => sticky_cookie(req.headers()).and_then(|id| route.backend(id)),
            None => None,
        };
        let mut backend = match presented.filter(|b| b.health.is_healthy()) {
            Some(b) => b,
            None => route
                .pick()
                .ok_or_else(|| (ProxyError::NoHealthyBackend(route.env.clone()), None))?,
        };

        let upgrade = upgrade_request(req.headers());
        // Must be taken before the request is consumed; resolves once we answer 101.
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        // Idempotent and bodiless: safe to send again if the first backend cannot be reached.
        let retryable = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            && req.body().is_end_stream();

        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        if let Some(proto) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto);
        }
        append_forwarded_for(headers, client);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_HOST, original_host.clone());
        headers.insert(X_REQUEST_ID, id.clone());
        // Keep the client's Host so apps see their public name, not the instance address.
        headers.insert(header::HOST, original_host);

        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // Always speak keep-alive HTTP/1.1 upstream, even to HTTP/1.0 clients.
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        // What a retry needs; the request itself is consumed by the client.
        let resend = retryable.then(|| (parts.method.clone(), parts.headers.clone(), path.clone()));
        let body: UpstreamBody = if retryable {
            Either::Right(Empty::new())
        } else {
            Either::Left(body)
        };
        parts.uri = upstream_uri(backend, path).map_err(|e| (e.into(), Some(backend)))?;

        let mut guard = InFlight::enter(&backend.stats);
        let mut result = upstream.request(Request::from_parts(parts, body)).await;
        if let (Err(first), Some((method, headers, path))) = (&result, resend) {
            // Nothing of a response arrived: try once more on another healthy backend.
            if let Some(other) = route.pick_other(backend) {
                warn!(
                    request_id = ?id, env = %route.env, backend = %backend.id, retry_on = %other.id,
                    error = %chain(first), "instance could not be reached; retrying elsewhere"
                );
                backend.stats.record_retried_failure(Instant::now());
                backend = other;
                guard = InFlight::enter(&other.stats);
                let mut retry = Request::new(Either::Right(Empty::new()));
                *retry.method_mut() = method;
                *retry.uri_mut() =
                    upstream_uri(other, path).map_err(|e| (e.into(), Some(other)))?;
                *retry.version_mut() = Version::HTTP_11;
                *retry.headers_mut() = headers;
                result = upstream.request(retry).await;
            }
        }
        let mut resp = result.map_err(|source| {
            (
                ProxyError::Upstream {
                    env: route.env.clone(),
                    backend: backend.id.clone(),
                    reason: chain(&source),
                    source: Box::new(source),
                },
                Some(backend),
            )
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut resp);
                // The tunnel carries the in-flight count for as long as it is open.
                tunnel(
                    client_upgrade,
                    backend_upgrade,
                    route.env.clone(),
                    backend.id.clone(),
                    guard,
                );
                // 101 keeps Connection/Upgrade: they are the point of the response.
                return Ok((
                    resp.map(|b| Either::Left(TrackedBody::new(b, None))),
                    backend,
                ));
            }
        }
        strip_hop_by_hop(resp.headers_mut());
        if let Some(cookie) = &backend.set_cookie {
            // Only when the client did not already present a valid cookie for this backend.
            if !presented.is_some_and(|p| std::ptr::eq(p, backend)) {
                resp.headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
        }
        Ok((
            resp.map(|b| Either::Left(TrackedBody::new(b, Some(guard)))),
            backend,
        ))
    }

    /// Looks the request's host up in the current table.
    fn route_for(&self, req: &Request<Incoming>) -> Result<Arc<Route>, ProxyError> {
        // Absolute-form URIs carry the authority and take precedence over Host (RFC 9112 §3.2.2).
        let raw = match req.uri().authority() {
            Some(a) => a.host(),
            None => {
                let h = req
                    .headers()
                    .get(header::HOST)
                    .ok_or(ProxyError::MissingHost)?;
                strip_port(h.to_str().map_err(|_| ProxyError::InvalidHost)?)
            }
        };
        let host = normalize_host(raw);
        // `load` is a lock-free snapshot; clone the route's Arc so the guard is not held
        // across the upstream await.
        let table = self.table.load();
        match table.hosts.get(host.as_ref()) {
            Some(route) => Ok(route.clone()),
            None => Err(ProxyError::UnknownHost(host.into_owned())),
        }
    }
}

/// `http://<backend>/<path>`.
fn upstream_uri(backend: &Backend, path: PathAndQuery) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build()
}

/// `name:port` → `name`, `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// Splices an upgraded client connection (e.g. WebSocket) to the backend's.
fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    env: String,
    backend_id: String,
    in_flight: InFlight,
) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(env = %env, backend = %backend_id, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            debug!(env = %env, backend = %backend_id, error = %e, "upgraded connection ended");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.localhost:8000"), "a.localhost");
        assert_eq!(strip_port("a.localhost"), "a.localhost");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
