//! The queue actions: CreateQueue, GetQueueUrl, ListQueues, GetQueueAttributes, PurgeQueue.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sprout_control::queues::REGION;
use sprout_core::queue::{self as q};
use sprout_store::QueueSettings;
use std::collections::BTreeMap;

use super::error::{SqsError, SqsResult};
use super::{input, ok, parse_num, wants, Ctx, ACCOUNT};

impl Ctx<'_> {
    pub(super) async fn create_queue(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn get_queue_url(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn list_queues(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn get_queue_attributes(&self, body: &Value) -> SqsResult<Response> {
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

    pub(super) async fn purge_queue(&self, body: &Value) -> SqsResult<Response> {
        let queue = self.queue(body).await?;
        let n = self.control.store().purge_queue(queue.id).await?;
        tracing::info!(queue = %queue.name, messages = n, "queue purged");
        Ok(ok(json!({})))
    }
}
