//! The SQS-compatible endpoint: AWS JSON 1.0 (`X-Amz-Target: AmazonSQS.<Op>`), every request
//! SigV4-verified against the access keys of Sprout's environments. A key reaches the queues
//! of its environment's application; queue names are the application's own. Errors are
//! SQS's: `{"__type": …, "message": …}` with a 4xx status and the `x-amzn-query-error`
//! header older SDKs read.
//!
//! Nothing is read past the head of a request whose key is unknown, whose date is off or
//! (when it declares `X-Amz-Content-Sha256`) whose signature does not match; the body is then
//! read within `MAX_REQUEST_BYTES` and the body timeout, and must hash to what was signed
//! before anything is done.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sprout_control::queues::{attributes_of, prepare, REGION};
use sprout_control::{Control, ControlError};
use sprout_core::queue::{self as q, Attributes, QueueError};
use sprout_core::sigv4::{self, Authorization, SigV4Error, SignedRequest};
use sprout_store::{AccessKeyRow, QueueRow, QueueSettings};
use std::collections::BTreeMap;
use std::time::Duration;

const AMZ_JSON: &str = "application/x-amz-json-1.0";
const ACCOUNT: &str = "000000000000";

/// Largest request body: SQS's largest payload (a 256 KiB batch) as JSON, where escaping can
/// triple it (`\u00e9` for a 2-byte character), with room for the envelope.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct SqsState {
    control: Control,
    /// How long a client has to send a whole body.
    body_timeout: Duration,
}

/// The endpoint's router (served on its own listener, reachable from instances).
pub fn router(control: Control, body_timeout: Duration) -> Router {
    Router::new().fallback(handle).with_state(SqsState {
        control,
        body_timeout,
    })
}

#[derive(Debug)]
pub struct SqsError {
    status: StatusCode,
    code: &'static str,
    query_code: &'static str,
    message: String,
}

impl SqsError {
    fn new(
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
    fn invalid(m: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValue",
            m,
        )
    }
    fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }
    fn no_queue() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }
    fn bad_receipt(receipt: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            format!("The receipt handle \"{receipt}\" is not valid (unknown, or the message was received again since)."),
        )
    }
    fn auth(e: SigV4Error) -> Self {
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

type SqsResult<T> = Result<T, SqsError>;

fn ok(value: Value) -> Response {
    (
        StatusCode::OK,
        [
            ("content-type", AMZ_JSON.to_string()),
            ("x-amzn-requestid", uuid::Uuid::new_v4().to_string()),
        ],
        value.to_string(),
    )
        .into_response()
}

/// Parses the operation's input; a shape mismatch is SQS's InvalidParameterValue.
fn input<T: serde::de::DeserializeOwned>(body: &Value) -> SqsResult<T> {
    serde_json::from_value(body.clone())
        .map_err(|e| SqsError::invalid(format!("invalid request: {e}")))
}

async fn handle(State(state): State<SqsState>, req: Request) -> Response {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_client_error() {
                tracing::debug!(code = e.code, message = %e.message, "sqs request refused");
            }
            e.into_response()
        }
    }
}

async fn serve(state: &SqsState, req: Request) -> SqsResult<Response> {
    let control = &state.control;
    let (parts, body) = req.into_parts();
    let pairs: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let head = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &pairs,
    };
    let signed = authenticate_head(control, &parts, &head).await?;
    let body = read_body(&parts, body, state.body_timeout).await?;
    signed.check_body(&head, &body)?;
    let key = signed.key;
    let headers = &parts.headers;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let op = target.strip_prefix("AmazonSQS.").ok_or_else(|| {
        SqsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "InvalidAction",
            "this endpoint speaks AWS JSON 1.0: X-Amz-Target: AmazonSQS.<Operation>",
        )
    })?;
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| SqsError::invalid(format!("the body is not JSON: {e}")))?
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let app = control.store().environment_by_id(key.env_id).await?.app;
    let ctx = Ctx {
        control,
        key,
        app,
        host,
    };
    tracing::debug!(op, access_key = %ctx.key.access_key_id, "sqs request");
    match op {
        "CreateQueue" => ctx.create_queue(&body).await,
        "GetQueueUrl" => ctx.get_queue_url(&body).await,
        "ListQueues" => ctx.list_queues(&body).await,
        "SendMessage" => ctx.send_message(&body).await,
        "SendMessageBatch" => ctx.send_message_batch(&body).await,
        "ReceiveMessage" => ctx.receive_message(&body).await,
        "DeleteMessage" => ctx.delete_message(&body).await,
        "DeleteMessageBatch" => ctx.delete_message_batch(&body).await,
        "ChangeMessageVisibility" => ctx.change_visibility(&body).await,
        "GetQueueAttributes" => ctx.get_queue_attributes(&body).await,
        "PurgeQueue" => ctx.purge_queue(&body).await,
        other => Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("{other} is not supported by Sprout's SQS endpoint"),
        )),
    }
}

/// A request whose head is verified: its key, and what its body must hash to.
struct SignedHead {
    key: AccessKeyRow,
    auth: Authorization,
    /// The `X-Amz-Content-Sha256` the head was verified with; None when the request does not
    /// declare one (the signature is then checked with the body's hash).
    declared: Option<String>,
}

impl SignedHead {
    fn check_body(&self, head: &SignedRequest<'_>, body: &[u8]) -> SqsResult<()> {
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
async fn authenticate_head(
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
async fn read_body(
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

struct Ctx<'a> {
    control: &'a Control,
    key: AccessKeyRow,
    /// The key's application.
    app: String,
    host: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlOnly {
    queue_url: Option<String>,
}

fn parse_num(
    attrs: &BTreeMap<String, String>,
    name: &'static str,
    min: i64,
    max: i64,
) -> SqsResult<Option<i64>> {
    let Some(raw) = attrs.get(name) else {
        return Ok(None);
    };
    let v: i64 = raw.trim().parse().map_err(|_| {
        SqsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            format!("Invalid value for the parameter {name}."),
        )
    })?;
    q::check_range(name, v, min, max)?;
    Ok(Some(v))
}

fn wants(list: &[String], name: &str) -> bool {
    list.iter().any(|n| {
        n == "All"
            || n == ".*"
            || n == name
            || n.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(&format!("{p}.")))
    })
}

impl Ctx<'_> {
    fn url_of(&self, queue: &QueueRow) -> String {
        let endpoint = format!("http://{}", self.host);
        Control::queue_url(&endpoint, &self.app, &queue.name)
    }

    /// The key's application's queue a URL names (`…/<app>/<queue>`); a URL naming another
    /// application names no queue of this key's.
    async fn queue(&self, body: &Value) -> SqsResult<QueueRow> {
        let QueueUrlOnly { queue_url } = input(body)?;
        let url = queue_url.ok_or_else(|| SqsError::missing("QueueUrl"))?;
        let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| {
            rest.find('/').map_or("", |i| &rest[i..])
        });
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (name, app) = match segments.as_slice() {
            [.., app, name] => (*name, Some(*app)),
            [name] => (*name, None),
            [] => return Err(SqsError::no_queue()),
        };
        if app.is_some_and(|a| a != self.app) {
            return Err(SqsError::no_queue());
        }
        self.control
            .store()
            .queue_by_name(self.key.app_id, name)
            .await?
            .ok_or_else(SqsError::no_queue)
    }

    async fn create_queue(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            queue_name: Option<String>,
            #[serde(default)]
            attributes: BTreeMap<String, String>,
        }
        let input: In = input(body)?;
        let name = input
            .queue_name
            .ok_or_else(|| SqsError::missing("QueueName"))?;
        for attr in input.attributes.keys() {
            if !matches!(
                attr.as_str(),
                "VisibilityTimeout"
                    | "DelaySeconds"
                    | "MessageRetentionPeriod"
                    | "MaximumMessageSize"
                    | "ReceiveMessageWaitTimeSeconds"
            ) {
                return Err(SqsError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidAttributeName",
                    "InvalidAttributeName",
                    format!("Unknown or unsupported attribute {attr}."),
                ));
            }
        }
        let defaults = QueueSettings::default();
        let settings = QueueSettings {
            visibility_timeout: parse_num(
                &input.attributes,
                "VisibilityTimeout",
                0,
                i64::from(q::MAX_VISIBILITY_SECONDS),
            )?
            .unwrap_or(defaults.visibility_timeout),
            delay_seconds: parse_num(
                &input.attributes,
                "DelaySeconds",
                0,
                i64::from(q::MAX_DELAY_SECONDS),
            )?
            .unwrap_or(0),
            retention_seconds: parse_num(
                &input.attributes,
                "MessageRetentionPeriod",
                i64::from(q::MIN_RETENTION_SECONDS),
                i64::from(q::MAX_RETENTION_SECONDS),
            )?
            .unwrap_or(defaults.retention_seconds),
            max_receive_count: 0,
        };
        let queue = self
            .control
            .create_queue(self.key.app_id, &name, settings)
            .await?;
        tracing::info!(queue = %queue.name, app_id = self.key.app_id, "queue created (or found)");
        Ok(ok(json!({ "QueueUrl": self.url_of(&queue) })))
    }

    async fn get_queue_url(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            queue_name: Option<String>,
        }
        let input: In = input(body)?;
        let name = input
            .queue_name
            .ok_or_else(|| SqsError::missing("QueueName"))?;
        match self
            .control
            .store()
            .queue_by_name(self.key.app_id, &name)
            .await?
        {
            Some(queue) => Ok(ok(json!({ "QueueUrl": self.url_of(&queue) }))),
            None => Err(SqsError::no_queue()),
        }
    }

    async fn list_queues(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            queue_name_prefix: Option<String>,
            max_results: Option<i64>,
        }
        let input: In = input(body)?;
        let queues = self
            .control
            .store()
            .list_queues(
                self.key.app_id,
                input.queue_name_prefix.as_deref().unwrap_or(""),
            )
            .await?;
        let limit = input.max_results.unwrap_or(1000).clamp(1, 1000) as usize;
        let urls: Vec<String> = queues.iter().take(limit).map(|q| self.url_of(q)).collect();
        if urls.is_empty() {
            Ok(ok(json!({})))
        } else {
            Ok(ok(json!({ "QueueUrls": urls })))
        }
    }

    async fn send_message(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            message_body: Option<String>,
            delay_seconds: Option<i64>,
            #[serde(default)]
            message_attributes: Attributes,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        let text = input
            .message_body
            .ok_or_else(|| SqsError::missing("MessageBody"))?;
        let delay = delay_of(input.delay_seconds, &queue)?;
        let out = prepare(&text, &input.message_attributes, delay)?;
        self.control
            .enqueue(&queue, std::slice::from_ref(&out.row))
            .await?;
        let mut resp = Map::new();
        resp.insert("MessageId".into(), json!(out.row.message_id));
        resp.insert("MD5OfMessageBody".into(), json!(out.md5_of_body));
        if let Some(md5) = out.md5_of_attributes {
            resp.insert("MD5OfMessageAttributes".into(), json!(md5));
        }
        Ok(ok(Value::Object(resp)))
    }

    async fn send_message_batch(&self, body: &Value) -> SqsResult<Response> {
        let queue = self.queue(body).await?;
        let input: q::SendBatch = input(body)?;
        q::check_batch_ids(input.entries.iter().map(|e| e.id.as_str()))?;
        let total = input.payload_bytes();
        if total > q::MAX_BATCH_BYTES {
            return Err(QueueError::BatchTooLong { size: total }.into());
        }
        let mut rows = Vec::new();
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for e in &input.entries {
            let prepared = e
                .message_body
                .as_deref()
                .ok_or_else(|| SqsError::missing("MessageBody"))
                .and_then(|text| {
                    let delay = delay_of(e.delay_seconds, &queue)?;
                    Ok(prepare(text, &e.message_attributes, delay)?)
                });
            match prepared {
                Ok(out) => {
                    let mut s = Map::new();
                    s.insert("Id".into(), json!(e.id));
                    s.insert("MessageId".into(), json!(out.row.message_id));
                    s.insert("MD5OfMessageBody".into(), json!(out.md5_of_body));
                    if let Some(md5) = out.md5_of_attributes {
                        s.insert("MD5OfMessageAttributes".into(), json!(md5));
                    }
                    successful.push(Value::Object(s));
                    rows.push(out.row);
                }
                Err(err) => failed.push(json!({
                    "Id": e.id, "SenderFault": true, "Code": err.code, "Message": err.message,
                })),
            }
        }
        self.control.enqueue(&queue, &rows).await?;
        Ok(ok(json!({ "Successful": successful, "Failed": failed })))
    }

    async fn receive_message(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            max_number_of_messages: Option<i64>,
            visibility_timeout: Option<i64>,
            wait_time_seconds: Option<i64>,
            #[serde(default)]
            attribute_names: Vec<String>,
            #[serde(default)]
            message_system_attribute_names: Vec<String>,
            #[serde(default)]
            message_attribute_names: Vec<String>,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        let max = input.max_number_of_messages.unwrap_or(1);
        q::check_range("MaxNumberOfMessages", max, 1, q::MAX_BATCH_ENTRIES as i64)?;
        let visibility = input.visibility_timeout.unwrap_or(queue.visibility_timeout);
        q::check_range(
            "VisibilityTimeout",
            visibility,
            0,
            i64::from(q::MAX_VISIBILITY_SECONDS),
        )?;
        let wait = input.wait_time_seconds.unwrap_or(0);
        q::check_range("WaitTimeSeconds", wait, 0, i64::from(q::MAX_WAIT_SECONDS))?;
        let rows = self
            .control
            .receive(&queue, max, visibility, Duration::from_secs(wait as u64))
            .await?;
        let mut system = input.attribute_names;
        system.extend(input.message_system_attribute_names);
        let messages: Vec<Value> = rows
            .iter()
            .map(|m| {
                let mut out = Map::new();
                out.insert("MessageId".into(), json!(m.message_id));
                out.insert("ReceiptHandle".into(), json!(m.receipt));
                out.insert("MD5OfBody".into(), json!(m.md5));
                out.insert("Body".into(), json!(m.body));
                let mut attrs = Map::new();
                for (name, value) in [
                    ("SenderId", ACCOUNT.to_string()),
                    ("SentTimestamp", m.sent_at.to_string()),
                    ("ApproximateReceiveCount", m.receive_count.to_string()),
                    (
                        "ApproximateFirstReceiveTimestamp",
                        m.first_received_at.unwrap_or(m.sent_at).to_string(),
                    ),
                ] {
                    if wants(&system, name) {
                        attrs.insert(name.into(), json!(value));
                    }
                }
                if !attrs.is_empty() {
                    out.insert("Attributes".into(), Value::Object(attrs));
                }
                let selected: Attributes = attributes_of(m)
                    .into_iter()
                    .filter(|(name, _)| wants(&input.message_attribute_names, name))
                    .collect();
                if let Some(md5) = q::md5_of_attributes(&selected) {
                    out.insert("MD5OfMessageAttributes".into(), json!(md5));
                    out.insert("MessageAttributes".into(), json!(selected));
                }
                Value::Object(out)
            })
            .collect();
        if messages.is_empty() {
            Ok(ok(json!({})))
        } else {
            Ok(ok(json!({ "Messages": messages })))
        }
    }

    async fn delete_message(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            receipt_handle: Option<String>,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        let receipt = input
            .receipt_handle
            .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
        if self
            .control
            .store()
            .delete_by_receipt(queue.id, &receipt)
            .await?
        {
            Ok(ok(json!({})))
        } else {
            Err(SqsError::bad_receipt(&receipt))
        }
    }

    async fn delete_message_batch(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            id: String,
            receipt_handle: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            #[serde(default)]
            entries: Vec<Entry>,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        q::check_batch_ids(input.entries.iter().map(|e| e.id.as_str()))?;
        let receipts: Vec<&str> = input
            .entries
            .iter()
            .map(|e| e.receipt_handle.as_str())
            .collect();
        let done = self
            .control
            .store()
            .delete_batch(queue.id, &receipts)
            .await?;
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for (e, deleted) in input.entries.iter().zip(done) {
            if deleted {
                successful.push(json!({ "Id": e.id }));
            } else {
                let err = SqsError::bad_receipt(&e.receipt_handle);
                failed.push(json!({ "Id": e.id, "SenderFault": true, "Code": err.code, "Message": err.message }));
            }
        }
        Ok(ok(json!({ "Successful": successful, "Failed": failed })))
    }

    async fn change_visibility(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            receipt_handle: Option<String>,
            visibility_timeout: Option<i64>,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        let receipt = input
            .receipt_handle
            .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
        let timeout = input
            .visibility_timeout
            .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
        q::check_range(
            "VisibilityTimeout",
            timeout,
            0,
            i64::from(q::MAX_VISIBILITY_SECONDS),
        )?;
        let at = sprout_control::queues::now_ms() + timeout * 1000;
        if self
            .control
            .store()
            .change_visibility(queue.id, &receipt, at)
            .await?
        {
            if timeout == 0 {
                self.control.queue_changed();
            }
            Ok(ok(json!({})))
        } else {
            Err(SqsError::bad_receipt(&receipt))
        }
    }

    async fn get_queue_attributes(&self, body: &Value) -> SqsResult<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            #[serde(default)]
            attribute_names: Vec<String>,
        }
        let queue = self.queue(body).await?;
        let input: In = input(body)?;
        let (counts, _dead) = self.control.queue_counts(&queue).await?;
        let arn = |name: &str| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
        let mut all: Vec<(&str, String)> = vec![
            ("ApproximateNumberOfMessages", counts.visible.to_string()),
            (
                "ApproximateNumberOfMessagesNotVisible",
                counts.in_flight.to_string(),
            ),
            (
                "ApproximateNumberOfMessagesDelayed",
                counts.delayed.to_string(),
            ),
            ("VisibilityTimeout", queue.visibility_timeout.to_string()),
            ("DelaySeconds", queue.delay_seconds.to_string()),
            (
                "MessageRetentionPeriod",
                queue.retention_seconds.to_string(),
            ),
            ("MaximumMessageSize", q::MAX_MESSAGE_BYTES.to_string()),
            ("ReceiveMessageWaitTimeSeconds", "0".to_string()),
            ("CreatedTimestamp", (queue.created_at / 1000).to_string()),
            (
                "LastModifiedTimestamp",
                (queue.created_at / 1000).to_string(),
            ),
            ("QueueArn", arn(&queue.name)),
        ];
        if let Some(dlq) = queue.dlq_id {
            let dlq = self.control.store().queue_by_id(dlq).await?;
            all.push((
                "RedrivePolicy",
                json!({ "deadLetterTargetArn": arn(&dlq.name), "maxReceiveCount": queue.max_receive_count }).to_string(),
            ));
        }
        let attrs: Map<String, Value> = all
            .into_iter()
            .filter(|(name, _)| wants(&input.attribute_names, name))
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Ok(ok(json!({ "Attributes": attrs })))
    }

    async fn purge_queue(&self, body: &Value) -> SqsResult<Response> {
        let queue = self.queue(body).await?;
        let n = self.control.store().purge_queue(queue.id).await?;
        tracing::info!(queue = %queue.name, messages = n, "queue purged");
        Ok(ok(json!({})))
    }
}

fn delay_of(given: Option<i64>, queue: &QueueRow) -> SqsResult<u32> {
    let delay = given.unwrap_or(queue.delay_seconds);
    q::check_range("DelaySeconds", delay, 0, i64::from(q::MAX_DELAY_SECONDS))?;
    Ok(delay as u32)
}
