//! SigV4 on the SQS endpoint: the head is verified before the body is read; the body is
//! then read within its limits and must hash to what was signed.

use axum::http::request::Parts;
use axum::http::StatusCode;
use sprout_control::Control;
use sprout_core::sigv4::{self, Authorization, SigV4Error, SignedRequest};
use sprout_store::AccessKeyRow;
use std::time::Duration;

use super::error::{SqsError, SqsResult};
use super::MAX_REQUEST_BYTES;

/// A request whose head is verified: its key, and what its body must hash to.
pub(super) struct SignedHead {
    pub(super) key: AccessKeyRow,
    auth: Authorization,
    /// The `X-Amz-Content-Sha256` the head was verified with; None when the request does not
    /// declare one (the signature is then checked with the body's hash).
    declared: Option<String>,
}

impl SignedHead {
    pub(super) fn check_body(&self, head: &SignedRequest<'_>, body: &[u8]) -> SqsResult<()> {
        let actual = sigv4::sha256_hex(body);
        let checked = match &self.declared {
            Some(declared) => sigv4::check_body(declared, &actual),
            None => sigv4::verify_head(
                head,
                &self.auth,
                &self.key.secret,
                chrono::Utc::now(),
                &actual,
            ),
        };
        checked.map_err(|e| {
            tracing::info!(access_key = %self.auth.access_key_id, error = %e, "sqs signature refused");
            SqsError::auth(e)
        })
    }
}

/// Everything that can be checked before the body is read: the key exists, the date is
/// right, the operation is signed, and the signature itself when the body's hash is declared.
pub(super) async fn authenticate_head(
    control: &Control,
    parts: &Parts,
    head: &SignedRequest<'_>,
) -> SqsResult<SignedHead> {
    let header = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SqsError::auth(SigV4Error::Missing))?;
    let auth = Authorization::parse(header).map_err(SqsError::auth)?;
    let key = control
        .store()
        .access_key(&auth.access_key_id)
        .await?
        .ok_or_else(|| {
            SqsError::new(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        })?;
    let now = chrono::Utc::now();
    let refused = |e: SigV4Error| {
        tracing::info!(access_key = %auth.access_key_id, error = %e, "sqs signature refused");
        SqsError::auth(e)
    };
    sigv4::check_head(head, &auth, now).map_err(refused)?;
    let declared = sigv4::declared_payload_hash(head).map_err(refused)?;
    if let Some(declared) = &declared {
        sigv4::verify_head(head, &auth, &key.secret, now, declared).map_err(refused)?;
    }
    Ok(SignedHead {
        key,
        auth,
        declared,
    })
}

/// The body, at most `MAX_REQUEST_BYTES`, all within `timeout`.
pub(super) async fn read_body(
    parts: &Parts,
    body: axum::body::Body,
    timeout: Duration,
) -> SqsResult<axum::body::Bytes> {
    let too_large = || {
        SqsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "RequestEntityTooLarge",
            format!("the request body is over {MAX_REQUEST_BYTES} bytes"),
        )
    };
    let declared_len = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return Err(too_large());
    }
    // The body's pauses are bounded by the server (`serve`), its whole time here.
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_REQUEST_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if !is_timeout(&e) => Err(too_large()),
        _ => Err(SqsError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "RequestTimeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
