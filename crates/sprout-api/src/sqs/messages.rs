//! The message actions: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch),
//! ChangeMessageVisibility.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sprout_control::queues::{attributes_of, prepare};
use sprout_core::queue::{self as q, Attributes, QueueError};
use sprout_store::QueueRow;
use std::time::Duration;

use super::error::{SqsError, SqsResult};
use super::{input, ok, wants, Ctx, ACCOUNT};

impl Ctx<'_> {
    pub(super) async fn send_message(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn send_message_batch(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn receive_message(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn delete_message(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn delete_message_batch(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn change_visibility(&self, body: &Value) -> SqsResult<Response> {
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
}

fn delay_of(given: Option<i64>, queue: &QueueRow) -> SqsResult<u32> {
    let delay = given.unwrap_or(queue.delay_seconds);
    q::check_range("DelaySeconds", delay, 0, i64::from(q::MAX_DELAY_SECONDS))?;
    Ok(delay as u32)
}
