//! Errors a proxied request can end in, and the responses they turn into.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::proxy::ProxyBody;

/// Why the balancer answered a request itself instead of forwarding a backend's response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request has no Host header")]
    MissingHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("no environment answers at {0}")]
    UnknownHost(String),
    #[error("no healthy instance for environment {0}")]
    NoHealthyBackend(String),
    #[error("instance {backend} of environment {env} could not be reached: {reason}")]
    Upstream {
        env: String,
        backend: String,
        reason: String,
        #[source]
        // Boxed to keep `Result<_, ProxyError>` small on the hot path.
        source: Box<hyper_util::client::legacy::Error>,
    },
    #[error("could not build the request to the instance: {0}")]
    BadUpstreamRequest(#[from] http::Error),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost | ProxyError::InvalidHost => StatusCode::BAD_REQUEST,
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyBackend(_)
            | ProxyError::Upstream { .. }
            | ProxyError::BadUpstreamRequest(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A plain-text response explaining the error to the client.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = format!("{self}\n");
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// Renders an error with its sources (`client error (Connect): tcp connect error: refused`),
/// since the hyper client's top-level messages alone say little.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.ends_with(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}
