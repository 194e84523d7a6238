//! The request path: pick a route and a backend, rewrite headers, forward, stream back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::{debug, warn};

use crate::error::{chain, ProxyError};
use crate::headers::{
    append_forwarded_for, request_id, strip_hop_by_hop, upgrade_request, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::table::Route;
use crate::{normalize_host, Balancer};

/// Response body: a backend's streamed body, or a small body the balancer wrote itself.
/// `Either` instead of a boxed body avoids an allocation per response.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

pub(crate) type UpstreamClient = Client<HttpConnector, Incoming>;

pub(crate) fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    // A dead instance should fail fast rather than hang the client.
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

impl Balancer {
    /// Handles one client request; never fails (errors become plain-text responses).
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let id = request_id(req.headers());
        let mut resp = match self.proxy(req, client, &id).await {
            Ok(resp) => resp,
            Err(e) => {
                match &e {
                    ProxyError::Upstream { .. } => {
                        warn!(request_id = ?id, error = %e, "proxy error")
                    }
                    _ => debug!(request_id = ?id, error = %e, "request not routed"),
                }
                e.into_response()
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, id);
        resp
    }

    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        id: &HeaderValue,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let route = self.route_for(&req)?;

        // Original Host (header, or authority of an absolute-form URI) for the backend.
        let original_host = match req.headers().get(header::HOST) {
            Some(h) => h.clone(),
            None => req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .ok_or(ProxyError::MissingHost)?,
        };

        // Retries (a later issue) go here: pick again and resend while the body has not been
        // consumed, i.e. on connect errors before any byte of the request went out.
        let backend = route
            .pick()
            .ok_or_else(|| ProxyError::NoHealthyBackend(route.env.clone()))?;

        let upgrade = upgrade_request(req.headers());
        // Must be taken before the request is consumed; resolves once we answer 101.
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        if let Some(proto) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto);
        }
        append_forwarded_for(headers, client.ip());
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
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(backend.authority.clone())
            .path_and_query(path)
            .build()?;
        // Always speak keep-alive HTTP/1.1 upstream, even to HTTP/1.0 clients.
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();

        let mut resp = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|source| ProxyError::Upstream {
                env: route.env.clone(),
                backend: backend.id.clone(),
                reason: chain(&source),
                source: Box::new(source),
            })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut resp);
                tunnel(
                    client_upgrade,
                    backend_upgrade,
                    route.env.clone(),
                    backend.id.clone(),
                );
                // 101 keeps Connection/Upgrade: they are the point of the response.
                return Ok(resp.map(Either::Left));
            }
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
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
) {
    tokio::spawn(async move {
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
