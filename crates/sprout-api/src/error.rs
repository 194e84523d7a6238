//! One conversion from every error to an RFC 9457 problem+json response. 5xx are logged
//! once, here, and their internals stay out of the body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sprout_control::ControlError;
use sprout_core::api::{problem_types as types, Problem, PROBLEM_JSON};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, types::RATE_LIMITED, detail)
        }
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, types::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, types::FORBIDDEN, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, types::INVALID_INPUT, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, types::NOT_FOUND, detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::INTERNAL,
            detail.to_string(),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(m) => Self::invalid(m),
            ControlError::NotFound(m) => Self::not_found(m),
            ControlError::Conflict(m) => Self::new(StatusCode::CONFLICT, types::CONFLICT, m),
            e @ ControlError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                types::TOO_LARGE,
                e.to_string(),
            ),
            ControlError::Bundle(b) => {
                let status = match b {
                    sprout_core::bundle::BundleError::ExpandsTooFar { .. }
                    | sprout_core::bundle::BundleError::TooManyEntries { .. }
                    | sprout_core::bundle::BundleError::TooLarge { .. } => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Self::new(status, types::BAD_BUNDLE, b.to_string())
            }
            e @ ControlError::Quota(_) => {
                Self::new(StatusCode::FORBIDDEN, types::QUOTA_EXCEEDED, e.to_string())
            }
            ControlError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, types::UNAVAILABLE, m)
            }
            ControlError::Corrupt(m) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, types::CORRUPT_RECORD, m)
            }
            e @ (ControlError::Store(_) | ControlError::Internal(_)) => Self::internal(e),
        }
    }
}

/// axum's own rejections (bad JSON, query or path) become problems like every other error.
macro_rules! invalid_from_rejection {
    ($($rejection:ty),+) => {$(
        impl From<$rejection> for ApiError {
            fn from(e: $rejection) -> Self {
                Self::invalid(e.body_text())
            }
        }
    )+};
}
invalid_from_rejection!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::PathRejection
);

impl From<sprout_store::StoreError> for ApiError {
    fn from(e: sprout_store::StoreError) -> Self {
        ControlError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.detail, "request failed");
            // Unavailable says what to wait for; a corrupt record names the row to mend.
            if self.status == StatusCode::SERVICE_UNAVAILABLE || self.kind == types::CORRUPT_RECORD
            {
                self.detail
            } else {
                "internal error; the server log has the details".to_string()
            }
        } else {
            self.detail
        };
        let problem = Problem {
            kind: self.kind.to_string(),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail,
            instance: None,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response =
            (self.status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
