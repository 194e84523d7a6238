//! Errors a proxied request can end in, and the responses they turn into.

use http::StatusCode;

use crate::wire::{self, WireError};

/// Why the balancer answered a request itself instead of forwarding a backend's response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(WireError),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("request has no Host header")]
    MissingHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("no environment answers at {0}")]
    UnknownHost(String),
    #[error("no healthy instance for environment {0}")]
    NoHealthyBackend(String),
    #[error("instance {backend} of environment {env} did not answer within {after:?}")]
    UpstreamTimeout {
        env: String,
        backend: String,
        after: std::time::Duration,
    },
    #[error("instance {backend} of environment {env} could not be reached: {reason}")]
    Upstream {
        env: String,
        backend: String,
        reason: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<WireError> for ProxyError {
    fn from(e: WireError) -> ProxyError {
        match e {
            WireError::TooLarge => ProxyError::HeadTooLarge,
            WireError::InvalidHost | WireError::DuplicateHost => ProxyError::InvalidHost,
            e => ProxyError::BadRequest(e),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(WireError::Version) => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ProxyError::BadRequest(WireError::UnsupportedCoding) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BadRequest(_) | ProxyError::MissingHost | ProxyError::InvalidHost => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyBackend(_) | ProxyError::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Writes a plain-text response explaining the error to the client.
    pub(crate) fn write_response(
        &self,
        out: &mut Vec<u8>,
        request_id: &[u8],
        client_http10: bool,
        keep_alive: bool,
    ) {
        let status = self.status();
        wire::write_own_response(
            out,
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            &format!("{self}\n"),
            request_id,
            client_http10,
            keep_alive,
        );
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
