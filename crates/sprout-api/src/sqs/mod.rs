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

mod error;
mod messages;
mod queues;
mod signature;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use sprout_control::Control;
use sprout_core::queue::{self as q};
use sprout_core::sigv4::SignedRequest;
use sprout_store::{AccessKeyRow, EnvironmentStore as _, QueueRow};
use std::collections::BTreeMap;
use std::time::Duration;

pub use error::SqsError;
use error::SqsResult;
use signature::{authenticate_head, read_body};

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
}
