//! The queue's domain: SQS's limits and names, message attributes and their MD5 digests,
//! the sqsd settings of a worker environment, and the request the dispatcher makes for a
//! message (Beanstalk's `aws-sqsd` headers). Pure: callers pass clocks and randomness in.

use crate::names::RequestPath;
use base64::Engine as _;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest message (body plus attribute names, types and values), as SQS: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest batch, as SQS: the whole batch's payload.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Entries in one batch and messages in one receive.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Longest long poll.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// Longest visibility timeout (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;
/// Longest send delay (15 minutes).
pub const MAX_DELAY_SECONDS: u32 = 900;
pub const MIN_RETENTION_SECONDS: u32 = 60;
pub const MAX_RETENTION_SECONDS: u32 = 1_209_600;
pub const DEFAULT_RETENTION_SECONDS: u32 = 345_600;
pub const DEFAULT_VISIBILITY_SECONDS: u32 = 30;
/// Message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// Attribute names Sprout puts on periodic-task messages (Beanstalk's own).
pub const ATTR_TASK_NAME: &str = "beanstalk.sqsd.task_name";
pub const ATTR_SCHEDULED_AT: &str = "beanstalk.sqsd.scheduled_time";
pub const ATTR_PATH: &str = "beanstalk.sqsd.path";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue name '{0}': 1 to 80 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("the message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (256 KiB)")]
    TooLong { size: usize },
    #[error("the message body is empty")]
    EmptyBody,
    #[error("the message body holds characters SQS does not allow")]
    BadCharacters,
    #[error("{what} must be between {min} and {max}, got {value}")]
    OutOfRange {
        what: &'static str,
        min: i64,
        max: i64,
        value: i64,
    },
    #[error("invalid message attribute '{name}': {reason}")]
    BadAttribute { name: String, reason: String },
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("the batch has {0} entries; the limit is {MAX_BATCH_ENTRIES}")]
    TooManyEntries(usize),
    #[error("batch entry ids must be distinct; '{0}' repeats")]
    DuplicateId(String),
    #[error("invalid batch entry id '{0}': 1 to 80 letters, digits, '-' or '_'")]
    BadEntryId(String),
    #[error("the batch's messages total {size} bytes; the limit is {MAX_BATCH_BYTES} bytes")]
    BatchTooLong { size: usize },
    #[error("invalid setting {key}: {reason}")]
    BadSetting { key: String, reason: String },
}

/// SQS names: 1–80 of `[A-Za-z0-9_-]` (FIFO queues are not supported).
pub fn check_queue_name(name: &str) -> Result<(), QueueError> {
    if is_sqs_id(name) {
        Ok(())
    } else {
        Err(QueueError::BadName(name.to_string()))
    }
}

fn is_sqs_id(s: &str) -> bool {
    (1..=80).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn check_entry_id(id: &str) -> Result<(), QueueError> {
    if is_sqs_id(id) {
        Ok(())
    } else {
        Err(QueueError::BadEntryId(id.to_string()))
    }
}

/// The dead-letter queue of a queue.
pub fn dlq_name(queue: &str) -> String {
    let mut base: String = queue.chars().take(75).collect();
    base.push_str("-dead");
    base
}

pub fn check_range(what: &'static str, value: i64, min: i64, max: i64) -> Result<(), QueueError> {
    if value < min || value > max {
        Err(QueueError::OutOfRange {
            what,
            min,
            max,
            value,
        })
    } else {
        Ok(())
    }
}

/// A message attribute as SQS's JSON protocol carries it (`BinaryValue` base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    #[serde(rename = "DataType")]
    pub data_type: String,
    #[serde(
        rename = "StringValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub string_value: Option<String>,
    #[serde(
        rename = "BinaryValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub binary_value: Option<String>,
}

impl MessageAttribute {
    pub fn string(value: impl Into<String>) -> Self {
        Self {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    fn is_binary(&self) -> bool {
        self.data_type.starts_with("Binary")
    }

    fn value_bytes(&self) -> Vec<u8> {
        if self.is_binary() {
            self.binary_value
                .as_deref()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default()
        } else {
            self.string_value.clone().unwrap_or_default().into_bytes()
        }
    }
}

pub type Attributes = BTreeMap<String, MessageAttribute>;

/// One entry of a `SendMessageBatch` request, as the SQS JSON protocol spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEntry {
    pub id: String,
    pub message_body: Option<String>,
    pub delay_seconds: Option<i64>,
    #[serde(default)]
    pub message_attributes: Attributes,
}

/// A `SendMessageBatch` request's entries.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendBatch {
    #[serde(default)]
    pub entries: Vec<SendEntry>,
}

impl SendBatch {
    /// The batch's payload as SQS counts it against [`MAX_BATCH_BYTES`]: every body, and
    /// every attribute's name, type and value.
    pub fn payload_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| {
                e.message_body.as_deref().map_or(0, str::len)
                    + e.message_attributes
                        .iter()
                        .map(|(k, a)| {
                            k.len()
                                + a.data_type.len()
                                + a.string_value.as_deref().map_or(0, str::len)
                                + a.binary_value.as_deref().map_or(0, str::len)
                        })
                        .sum::<usize>()
            })
            .sum()
    }
}

/// SQS's allowed characters: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Checks a message and returns its size in bytes (body + attributes, as SQS counts).
pub fn check_message(body: &str, attributes: &Attributes) -> Result<usize, QueueError> {
    if body.is_empty() {
        return Err(QueueError::EmptyBody);
    }
    if !body.chars().all(allowed_char) {
        return Err(QueueError::BadCharacters);
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(QueueError::BadAttribute {
            name: "*".into(),
            reason: format!("at most {MAX_ATTRIBUTES} attributes"),
        });
    }
    let mut size = body.len();
    for (name, attr) in attributes {
        let bad = |reason: &str| QueueError::BadAttribute {
            name: name.clone(),
            reason: reason.to_string(),
        };
        if name.is_empty()
            || name.len() > 256
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
        {
            return Err(bad("names are 1-256 of letters, digits, '_', '-', '.'"));
        }
        let base = attr.data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") {
            return Err(bad("DataType must be String, Number or Binary"));
        }
        if attr.is_binary() {
            let value = attr
                .binary_value
                .as_deref()
                .ok_or_else(|| bad("a Binary attribute needs BinaryValue"))?;
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| bad("BinaryValue is not base64"))?;
        } else {
            let value = attr
                .string_value
                .as_deref()
                .ok_or_else(|| bad("a String or Number attribute needs StringValue"))?;
            if base == "Number" && value.trim().parse::<f64>().is_err() {
                return Err(bad("StringValue is not a number"));
            }
            if !value.chars().all(allowed_char) {
                return Err(bad("StringValue holds characters SQS does not allow"));
            }
            // The dispatcher requests this path from the instance: refused here, at the
            // door, rather than found out at delivery.
            if name == ATTR_PATH {
                RequestPath::parse(value).map_err(|e| bad(&format!("must be {}", e.rule)))?;
            }
        }
        size += name.len() + attr.data_type.len() + attr.value_bytes().len();
    }
    if size > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLong { size });
    }
    Ok(size)
}

/// Checks a batch's shape: 1–10 entries, distinct valid ids.
pub fn check_batch_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), QueueError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        check_entry_id(id)?;
        if !seen.insert(id) {
            return Err(QueueError::DuplicateId(id.to_string()));
        }
    }
    match seen.len() {
        0 => Err(QueueError::EmptyBatch),
        n if n > MAX_BATCH_ENTRIES => Err(QueueError::TooManyEntries(n)),
        _ => Ok(()),
    }
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SQS's `MD5OfMessageAttributes`: names sorted, each name, type and value length-prefixed
/// (4 bytes, big endian) with a transport byte (1 string/number, 2 binary) before the value.
pub fn md5_of_attributes(attributes: &Attributes) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let put = |bytes: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for (name, attr) in attributes {
        put(name.as_bytes(), &mut buf);
        put(attr.data_type.as_bytes(), &mut buf);
        buf.push(if attr.is_binary() { 2 } else { 1 });
        put(&attr.value_bytes(), &mut buf);
    }
    Some(md5_hex(&buf))
}

/// What one application's queues may hold, so a tenant cannot fill the server's disk or
/// table: queues it makes with CreateQueue, and messages and their bytes (bodies plus
/// attributes) over all its queues, dead-letter queues included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueQuota {
    pub max_queues: u64,
    pub max_messages: u64,
    pub max_bytes: u64,
}

impl Default for QueueQuota {
    fn default() -> Self {
        Self {
            max_queues: 100,
            max_messages: 100_000,
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the application has {have} queues; the limit is {max} queues per application")]
    Queues { have: u64, max: u64 },
    #[error("the application's queues hold {have} messages; {adding} more would pass the limit of {max} messages per application (receive, delete or purge some first)")]
    Messages { have: u64, adding: u64, max: u64 },
    #[error("the application's queues hold {have} bytes; {adding} more would pass the limit of {max} bytes per application (receive, delete or purge some first)")]
    Bytes { have: u64, adding: u64, max: u64 },
}

impl QueueQuota {
    /// May an application that has `queues` queues make one more?
    pub fn check_new_queue(&self, queues: u64) -> Result<(), QuotaError> {
        if queues >= self.max_queues {
            return Err(QuotaError::Queues {
                have: queues,
                max: self.max_queues,
            });
        }
        Ok(())
    }

    /// May an application whose queues hold `messages` messages of `bytes` bytes take
    /// `adding` more of `adding_bytes`? All or none: a batch is not cut.
    pub fn check_send(
        &self,
        messages: u64,
        bytes: u64,
        adding: u64,
        adding_bytes: u64,
    ) -> Result<(), QuotaError> {
        if messages.saturating_add(adding) > self.max_messages {
            return Err(QuotaError::Messages {
                have: messages,
                adding,
                max: self.max_messages,
            });
        }
        if bytes.saturating_add(adding_bytes) > self.max_bytes {
            return Err(QuotaError::Bytes {
                have: bytes,
                adding: adding_bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// How the dispatcher feeds a worker environment: Beanstalk's `aws:elasticbeanstalk:sqsd`
/// options, read from the environment's properties (`SQSD_HTTP_PATH`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsdSettings {
    pub http_path: RequestPath,
    pub mime_type: String,
    pub http_connections: u32,
    pub inactivity_timeout_secs: u32,
    pub error_visibility_timeout_secs: u32,
    /// Deliveries before a message goes to the dead-letter queue.
    pub max_retries: u32,
    pub retention_secs: u32,
}

impl Default for SqsdSettings {
    fn default() -> Self {
        Self {
            http_path: RequestPath::root(),
            mime_type: "application/json".into(),
            http_connections: 50,
            inactivity_timeout_secs: 299,
            error_visibility_timeout_secs: 2,
            max_retries: 10,
            retention_secs: DEFAULT_RETENTION_SECONDS,
        }
    }
}

impl SqsdSettings {
    /// The settings from an environment's properties; unknown keys are the app's own.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self, QueueError> {
        let mut s = Self::default();
        let num = |key: &str, min: u32, max: u32| -> Result<Option<u32>, QueueError> {
            let Some(raw) = props.get(key) else {
                return Ok(None);
            };
            let value: u32 = raw.trim().parse().map_err(|_| QueueError::BadSetting {
                key: key.into(),
                reason: format!("'{raw}' is not a whole number"),
            })?;
            if value < min || value > max {
                return Err(QueueError::BadSetting {
                    key: key.into(),
                    reason: format!("must be between {min} and {max}"),
                });
            }
            Ok(Some(value))
        };
        if let Some(path) = props.get("SQSD_HTTP_PATH") {
            s.http_path = RequestPath::parse(path).map_err(|e| QueueError::BadSetting {
                key: "SQSD_HTTP_PATH".into(),
                reason: format!("must be {}", e.rule),
            })?;
        }
        if let Some(mime) = props.get("SQSD_MIME_TYPE") {
            s.mime_type = mime.clone();
        }
        if let Some(v) = num("SQSD_HTTP_CONNECTIONS", 1, 100)? {
            s.http_connections = v;
        }
        if let Some(v) = num("SQSD_INACTIVITY_TIMEOUT", 1, 36_000)? {
            s.inactivity_timeout_secs = v;
        }
        if let Some(v) = num("SQSD_ERROR_VISIBILITY_TIMEOUT", 0, MAX_VISIBILITY_SECONDS)? {
            s.error_visibility_timeout_secs = v;
        }
        if let Some(v) = num("SQSD_MAX_RETRIES", 1, 100)? {
            s.max_retries = v;
        }
        if let Some(v) = num(
            "SQSD_RETENTION_PERIOD",
            MIN_RETENTION_SECONDS,
            MAX_RETENTION_SECONDS,
        )? {
            s.retention_secs = v;
        }
        Ok(s)
    }

    /// How long a dispatched message stays invisible: the POST's whole allowance plus a margin,
    /// so it is never handed out twice while its request may still run.
    pub fn dispatch_visibility_secs(&self) -> u32 {
        self.inactivity_timeout_secs.saturating_add(5)
    }
}

/// What the dispatcher knows of a message it is about to POST.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub message_id: &'a str,
    pub queue: &'a str,
    pub receive_count: i64,
    /// RFC 3339.
    pub first_received_at: &'a str,
    pub attributes: &'a Attributes,
}

/// The path and headers of the sqsd POST for a message (besides `Content-Type`). A periodic
/// task's message names its own path; one that is not an absolute path is an error (the
/// message cannot be delivered), never a URL.
pub fn sqsd_request(
    settings: &SqsdSettings,
    d: &Delivery<'_>,
) -> Result<(RequestPath, Vec<(String, String)>), QueueError> {
    let mut headers = vec![
        (
            "User-Agent".to_string(),
            "aws-sqsd/3.0 (sprout)".to_string(),
        ),
        ("X-Aws-Sqsd-Msgid".to_string(), d.message_id.to_string()),
        ("X-Aws-Sqsd-Queue".to_string(), d.queue.to_string()),
        (
            "X-Aws-Sqsd-First-Received-At".to_string(),
            d.first_received_at.to_string(),
        ),
        (
            "X-Aws-Sqsd-Receive-Count".to_string(),
            d.receive_count.to_string(),
        ),
        ("X-Aws-Sqsd-Sender-Id".to_string(), "sprout".to_string()),
    ];
    let mut path = settings.http_path.clone();
    let string_of = |name: &str| {
        d.attributes
            .get(name)
            .and_then(|a| a.string_value.clone())
            .filter(|v| !v.is_empty())
    };
    if let Some(task) = string_of(ATTR_TASK_NAME) {
        headers.push(("X-Aws-Sqsd-Taskname".to_string(), task));
        if let Some(at) = string_of(ATTR_SCHEDULED_AT) {
            headers.push(("X-Aws-Sqsd-Scheduled-At".to_string(), at));
        }
        if let Some(p) = string_of(ATTR_PATH) {
            path = RequestPath::parse(&p).map_err(|e| QueueError::BadAttribute {
                name: ATTR_PATH.to_string(),
                reason: format!("must be {}", e.rule),
            })?;
        }
    }
    for (name, attr) in d.attributes {
        if name.starts_with("beanstalk.sqsd.") || attr.is_binary() {
            continue;
        }
        let Some(value) = attr.string_value.as_deref() else {
            continue;
        };
        // Header values must be visible ASCII; others are left out rather than mangled.
        if value.chars().all(|c| c == ' ' || c.is_ascii_graphic())
            && name.chars().all(|c| c.is_ascii_graphic())
        {
            headers.push((format!("X-Aws-Sqsd-Attr-{name}"), value.to_string()));
        }
    }
    Ok((path, headers))
}

// ---------------------------------------------------------------------------------------
// REST bodies (server and CLI)

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SendRequest {
    pub body: String,
    /// String attributes (`--attr K=V`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub delay_seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SendResponse {
    pub message_id: String,
    pub md5_of_body: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueStats {
    pub queue: String,
    pub queue_url: String,
    pub visible: i64,
    pub in_flight: i64,
    pub delayed: i64,
    pub dead: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeadMessage {
    pub message_id: String,
    pub body: String,
    pub receive_count: i64,
    pub sent_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RedriveResponse {
    pub moved: u64,
}

/// What a client outside Sprout needs to use the environment's queue with an SQS SDK.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Credentials {
    pub endpoint: String,
    pub queue_url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_queue_name("jobs-1_a").is_ok());
        assert!(check_queue_name("").is_err());
        assert!(check_queue_name("a.fifo").is_err());
        assert!(check_queue_name(&"x".repeat(81)).is_err());
        assert_eq!(dlq_name("jobs"), "jobs-dead");
        assert!(dlq_name(&"x".repeat(80)).len() <= 80);
    }

    #[test]
    fn message_limits() {
        let none = Attributes::new();
        assert_eq!(check_message("hi", &none), Ok(2));
        assert_eq!(check_message("", &none), Err(QueueError::EmptyBody));
        assert!(check_message(&"x".repeat(MAX_MESSAGE_BYTES), &none).is_ok());
        assert!(matches!(
            check_message(&"x".repeat(MAX_MESSAGE_BYTES + 1), &none),
            Err(QueueError::TooLong { .. })
        ));
        assert_eq!(
            check_message("a\u{1}b", &none),
            Err(QueueError::BadCharacters)
        );
        let mut attrs = Attributes::new();
        attrs.insert("n".into(), MessageAttribute::string("x"));
        assert!(check_message("b", &attrs).is_ok());
        attrs.insert(
            "num".into(),
            MessageAttribute {
                data_type: "Number".into(),
                string_value: Some("abc".into()),
                binary_value: None,
            },
        );
        assert!(matches!(
            check_message("b", &attrs),
            Err(QueueError::BadAttribute { .. })
        ));
    }

    #[test]
    fn batches() {
        assert!(check_batch_ids(["a", "b"]).is_ok());
        assert_eq!(check_batch_ids([]), Err(QueueError::EmptyBatch));
        assert_eq!(
            check_batch_ids(["a", "a"]),
            Err(QueueError::DuplicateId("a".into()))
        );
        assert!(matches!(
            check_batch_ids(["a b"]),
            Err(QueueError::BadEntryId(_))
        ));
        let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(
            check_batch_ids(many.iter().map(String::as_str)),
            Err(QueueError::TooManyEntries(11))
        );
    }

    #[test]
    fn md5s_match_sqs() {
        // From the SQS documentation's example and botocore's test suite.
        assert_eq!(
            md5_hex(b"This is a test message"),
            "fafb00f5732ab283681e124bf8747ed1"
        );
        let mut attrs = Attributes::new();
        attrs.insert("Attr1".into(), MessageAttribute::string("value1"));
        // Computed by hand from the documented encoding.
        let mut buf = Vec::new();
        for part in [&b"Attr1"[..], b"String"] {
            buf.extend_from_slice(&(part.len() as u32).to_be_bytes());
            buf.extend_from_slice(part);
        }
        buf.push(1);
        buf.extend_from_slice(&6u32.to_be_bytes());
        buf.extend_from_slice(b"value1");
        assert_eq!(md5_of_attributes(&attrs), Some(md5_hex(&buf)));
        assert_eq!(md5_of_attributes(&Attributes::new()), None);
    }

    #[test]
    fn sqsd_settings_from_properties() {
        let mut p = BTreeMap::new();
        assert_eq!(
            SqsdSettings::from_properties(&p),
            Ok(SqsdSettings::default())
        );
        p.insert("SQSD_MAX_RETRIES".into(), "3".into());
        p.insert("SQSD_HTTP_PATH".into(), "/jobs".into());
        let s = SqsdSettings::from_properties(&p).unwrap_or_default();
        assert_eq!((s.max_retries, s.http_path.as_str()), (3, "/jobs"));
        for bad in ["@127.0.0.1:9999/ssrf", "//evil/x", "jobs"] {
            let mut q = p.clone();
            q.insert("SQSD_HTTP_PATH".into(), bad.into());
            assert!(SqsdSettings::from_properties(&q).is_err(), "{bad}");
        }
        p.insert("SQSD_HTTP_CONNECTIONS".into(), "0".into());
        assert!(SqsdSettings::from_properties(&p).is_err());
    }

    #[test]
    fn sqsd_headers() {
        let mut attrs = Attributes::new();
        attrs.insert("color".into(), MessageAttribute::string("red"));
        let d = Delivery {
            message_id: "m1",
            queue: "q",
            receive_count: 2,
            first_received_at: "2024-01-01T00:00:00Z",
            attributes: &attrs,
        };
        let (path, h) = sqsd_request(&SqsdSettings::default(), &d).unwrap_or_default();
        assert_eq!(path.as_str(), "/");
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert!(get("User-Agent").is_some_and(|v| v.starts_with("aws-sqsd")));
        assert_eq!(get("X-Aws-Sqsd-Receive-Count").as_deref(), Some("2"));
        assert_eq!(get("X-Aws-Sqsd-Attr-color").as_deref(), Some("red"));
        assert_eq!(get("X-Aws-Sqsd-Taskname"), None);

        attrs.insert(ATTR_TASK_NAME.into(), MessageAttribute::string("backup"));
        attrs.insert(ATTR_PATH.into(), MessageAttribute::string("/backup"));
        attrs.insert(
            ATTR_SCHEDULED_AT.into(),
            MessageAttribute::string("2024-01-01T00:00:05Z"),
        );
        let d = Delivery {
            message_id: "m1",
            queue: "q",
            receive_count: 2,
            first_received_at: "2024-01-01T00:00:00Z",
            attributes: &attrs,
        };
        let (path, h) = sqsd_request(&SqsdSettings::default(), &d).unwrap_or_default();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(path.as_str(), "/backup");
        assert_eq!(get("X-Aws-Sqsd-Taskname").as_deref(), Some("backup"));
        assert_eq!(
            get("X-Aws-Sqsd-Scheduled-At").as_deref(),
            Some("2024-01-01T00:00:05Z")
        );
        assert!(!h.iter().any(|(n, _)| n.contains("beanstalk")));

        // A task message whose path would make the URL name another host: refused at send,
        // and undeliverable if one is found in a queue.
        attrs.insert(
            ATTR_PATH.into(),
            MessageAttribute::string("@127.0.0.1:9999/ssrf"),
        );
        assert!(matches!(
            check_message("x", &attrs),
            Err(QueueError::BadAttribute { .. })
        ));
        let d = Delivery {
            message_id: "m1",
            queue: "q",
            receive_count: 1,
            first_received_at: "2024-01-01T00:00:00Z",
            attributes: &attrs,
        };
        assert!(matches!(
            sqsd_request(&SqsdSettings::default(), &d),
            Err(QueueError::BadAttribute { .. })
        ));
    }

    #[test]
    fn quotas() {
        let q = QueueQuota {
            max_queues: 2,
            max_messages: 10,
            max_bytes: 100,
        };
        assert!(q.check_new_queue(1).is_ok());
        assert_eq!(
            q.check_new_queue(2),
            Err(QuotaError::Queues { have: 2, max: 2 })
        );
        assert!(q.check_send(8, 0, 2, 10).is_ok());
        assert!(matches!(
            q.check_send(9, 0, 2, 10),
            Err(QuotaError::Messages { .. })
        ));
        assert!(q.check_send(0, 90, 1, 10).is_ok());
        let e = q.check_send(0, 91, 1, 10).map_err(|e| e.to_string());
        assert!(e.is_err_and(|m| m.contains("100 bytes per application")));
    }
}
