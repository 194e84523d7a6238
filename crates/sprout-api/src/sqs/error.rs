//! SQS's errors: `{"__type": …, "message": …}` with a 4xx status and the
//! `x-amzn-query-error` header older SDKs read; Sprout's own errors mapped onto them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sprout_control::ControlError;
use sprout_core::queue::QueueError;
use sprout_core::sigv4::SigV4Error;

use super::AMZ_JSON;

#[derive(Debug)]
pub struct SqsError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    query_code: &'static str,
    pub(super) message: String,
}

impl SqsError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        query_code: &'static str,
        m: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            query_code,
            message: m.into(),
        }
    }
    pub(super) fn invalid(m: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValue",
            m,
        )
    }
    pub(super) fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }
    pub(super) fn no_queue() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }
    pub(super) fn bad_receipt(receipt: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            format!("The receipt handle \"{receipt}\" is not valid (unknown, or the message was received again since)."),
        )
    }
    pub(super) fn auth(e: SigV4Error) -> Self {
        let code = match e {
            SigV4Error::Missing => "MissingAuthenticationToken",
            SigV4Error::Malformed(_) | SigV4Error::BadDate | SigV4Error::UnsignedPayload => {
                "IncompleteSignature"
            }
            SigV4Error::Skewed => "RequestExpired",
            SigV4Error::Mismatch => "SignatureDoesNotMatch",
            SigV4Error::BodyMismatch => "XAmzContentSHA256Mismatch",
        };
        Self::new(StatusCode::FORBIDDEN, code, code, e.to_string())
    }
}

impl From<QueueError> for SqsError {
    fn from(e: QueueError) -> Self {
        let (code, query) = match &e {
            QueueError::EmptyBatch => (
                "EmptyBatchRequest",
                "AWS.SimpleQueueService.EmptyBatchRequest",
            ),
            QueueError::TooManyEntries(_) => (
                "TooManyEntriesInBatchRequest",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            ),
            QueueError::DuplicateId(_) => (
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            ),
            QueueError::BadEntryId(_) => (
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
            ),
            QueueError::BatchTooLong { .. } => (
                "BatchRequestTooLong",
                "AWS.SimpleQueueService.BatchRequestTooLong",
            ),
            QueueError::BadCharacters => ("InvalidMessageContents", "InvalidMessageContents"),
            _ => ("InvalidParameterValue", "InvalidParameterValue"),
        };
        Self::new(StatusCode::BAD_REQUEST, code, query, e.to_string())
    }
}

impl From<ControlError> for SqsError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(m) => Self::invalid(m),
            ControlError::NotFound(_) => Self::no_queue(),
            ControlError::Conflict(m) => Self::new(
                StatusCode::BAD_REQUEST,
                "QueueNameExists",
                "QueueAlreadyExists",
                m,
            ),
            e @ ControlError::Quota(_) => Self::new(
                StatusCode::FORBIDDEN,
                "OverLimit",
                "OverLimit",
                e.to_string(),
            ),
            other => {
                tracing::error!(error = %other, "sqs request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "InternalError",
                    "internal error; the server log has the details",
                )
            }
        }
    }
}

impl From<sprout_store::StoreError> for SqsError {
    fn from(e: sprout_store::StoreError) -> Self {
        ControlError::from(e).into()
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let body = json!({
            "__type": format!("com.amazonaws.sqs#{}", self.code),
            "message": self.message,
        });
        let sender = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        (
            self.status,
            [
                ("content-type", AMZ_JSON.to_string()),
                (
                    "x-amzn-query-error",
                    format!("{};{sender}", self.query_code),
                ),
                ("x-amzn-requestid", uuid::Uuid::new_v4().to_string()),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

pub(super) type SqsResult<T> = Result<T, SqsError>;
