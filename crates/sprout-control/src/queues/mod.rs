//! Queues as the control plane sees them: the queue of a worker environment (made on first
//! use, kept in line with its sqsd settings), access keys, long polls, and the operations the
//! REST API and the SQS endpoint share. Input is checked with `sprout_core::queue` first.

use crate::error::{ControlError, Result};
use crate::shared::Shared;
use sprout_core::queue::{
    self as q, Attributes, Credentials, DeadMessage, MessageAttribute, QueueStats, SendRequest,
    SendResponse, SqsdSettings,
};
use sprout_core::Tier;
use sprout_store::EnvironmentStore as _;
use sprout_store::{AccessKeyRow, EnvRow, MessageRow, NewMessage, QueueRow, QueueSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod cron;
mod dispatch;

/// The region Sprout's SQS endpoint names (any SDK wants one).
pub const REGION: &str = "us-east-1";

/// `sprout queue dlq` lists the oldest dead messages, at most this many and this many bytes
/// of bodies: a dead-letter queue can hold an application's whole quota, an answer must not.
pub const DLQ_LIST_MAX: i64 = 1000;
pub const DLQ_LIST_MAX_BYTES: i64 = 16 * 1024 * 1024;

/// Wakes long polls and the dispatcher when messages arrive or come back.
#[derive(Default)]
pub struct QueueSignals {
    /// Long polls wait on this (notify_waiters).
    pub(crate) sent: Notify,
    /// The dispatcher waits on this (notify_one: a wake between passes is kept).
    pub(crate) dispatch: Notify,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn invalid(e: q::QueueError) -> ControlError {
    ControlError::Invalid(e.to_string())
}

/// A message ready to append: checked, with its id and digests.
pub struct Outgoing {
    pub row: NewMessage,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
}

/// Checks a message and prepares its row (a fresh message id, the MD5s SQS returns).
pub fn prepare(body: &str, attributes: &Attributes, delay_secs: u32) -> Result<Outgoing> {
    q::check_message(body, attributes).map_err(invalid)?;
    q::check_range(
        "DelaySeconds",
        i64::from(delay_secs),
        0,
        i64::from(q::MAX_DELAY_SECONDS),
    )
    .map_err(invalid)?;
    let md5_of_body = q::md5_hex(body.as_bytes());
    Ok(Outgoing {
        row: NewMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            body: body.to_string(),
            md5: md5_of_body.clone(),
            attributes: serde_json::to_string(attributes)
                .map_err(|e| ControlError::Internal(format!("message attributes: {e}")))?,
            delay_ms: i64::from(delay_secs) * 1000,
        },
        md5_of_body,
        md5_of_attributes: q::md5_of_attributes(attributes),
    })
}

/// A message's attributes, parsed from its row: the one place they are read back.
///
/// The column is only ever written by [`prepare`], from an attribute map it checked, so a
/// value that does not parse is a damaged row. Such a message is delivered with no
/// attributes (documented default: SQS allows a message without any), and the damage is
/// logged with the message's id, rather than failing a receive for the whole batch.
pub fn attributes_of(row: &MessageRow) -> Attributes {
    match serde_json::from_str(&row.attributes) {
        Ok(attributes) => attributes,
        Err(e) => {
            tracing::warn!(message = %row.message_id, error = %e, "a message's stored attributes do not parse; delivered without them");
            Attributes::new()
        }
    }
}

fn random_token(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random::<usize>() % alphabet.len()] as char)
        .collect()
}

/// The queues component: worker queues, access keys, long polls, the dispatcher (sqsd)
/// and periodic tasks (cron). Owns the signals that wake long polls and the dispatcher.
#[derive(Clone)]
pub(crate) struct Queues {
    shared: Arc<Shared>,
    signals: Arc<QueueSignals>,
}

impl Queues {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            signals: Default::default(),
        }
    }

    /// Tells long polls and the dispatcher that messages are there.
    pub(crate) fn queue_changed(&self) {
        self.signals.sent.notify_waiters();
        self.signals.dispatch.notify_one();
    }

    /// The SQS endpoint as seen from the host (for clients outside Sprout).
    pub(crate) fn sqs_endpoint(&self) -> Result<String> {
        let addr =
            self.shared.config().sqs_addr.ok_or_else(|| {
                ControlError::Unavailable("the SQS endpoint is not running".into())
            })?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        Ok(format!("http://{host}:{}", addr.port()))
    }

    /// A queue's URL under an endpoint: `<endpoint>/<app>/<queue>`; only the last segment
    /// matters to the endpoint.
    pub(crate) fn queue_url(endpoint: &str, app: &str, queue: &str) -> String {
        format!("{endpoint}/{app}/{queue}")
    }

    /// The sqsd settings of a worker environment, from its properties.
    pub(crate) fn sqsd_settings(env: &EnvRow) -> Result<SqsdSettings> {
        SqsdSettings::from_properties(&env.properties()).map_err(invalid)
    }

    /// The queue (and DLQ) of a worker environment, made on first use.
    pub(crate) async fn ensure_worker_queue(&self, env: &EnvRow) -> Result<QueueRow> {
        let settings = Self::sqsd_settings(env)?;
        let qs = QueueSettings {
            visibility_timeout: i64::from(q::DEFAULT_VISIBILITY_SECONDS),
            delay_seconds: 0,
            retention_seconds: i64::from(settings.retention_secs),
            max_receive_count: i64::from(settings.max_retries),
        };
        Ok(self
            .shared
            .store()
            .ensure_env_queue(
                env.id,
                env.app_id,
                &env.name,
                &q::dlq_name(&env.name),
                qs,
                now_ms(),
            )
            .await?)
    }

    /// The worker environment whose queue `env` uses: itself if a worker, else its
    /// application's first live worker environment.
    pub(crate) async fn queue_env_of(&self, env: &EnvRow) -> Result<EnvRow> {
        if env.tier == Tier::Worker {
            return Ok(env.clone());
        }
        // Over readable environments only: a corrupt one of the application is no queue.
        self.shared.store()
            .active_environments()
            .await?
            .envs
            .into_iter()
            .find(|e| e.app_id == env.app_id && e.tier == Tier::Worker)
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "application '{}' has no worker environment, so '{}' has no queue (create one with --tier worker)",
                    env.app, env.name
                ))
            })
    }

    async fn live_env_named(&self, name: &str) -> Result<EnvRow> {
        self.shared.env_where(name, |s| s.is_live()).await
    }

    async fn queue_of_env_named(&self, name: &str) -> Result<(EnvRow, QueueRow)> {
        let env = self.live_env_named(name).await?;
        let worker = self.queue_env_of(&env).await?;
        let queue = self.ensure_worker_queue(&worker).await?;
        Ok((worker, queue))
    }

    /// The environment's access key for the SQS endpoint, made on first use.
    pub(crate) async fn access_key_of(&self, env: &EnvRow) -> Result<AccessKeyRow> {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let id = format!("SPRT{}", random_token(16, UPPER));
        let secret = random_token(40, ANY);
        Ok(self
            .shared
            .store()
            .ensure_access_key(env.id, env.app_id, &id, &secret, now_ms())
            .await?)
    }

    /// `sprout queue credentials ENV`.
    pub(crate) async fn queue_credentials(&self, env_name: &str) -> Result<Credentials> {
        let env = self.live_env_named(env_name).await?;
        let worker = self.queue_env_of(&env).await?;
        let queue = self.ensure_worker_queue(&worker).await?;
        let key = self.access_key_of(&env).await?;
        let endpoint = self.sqs_endpoint()?;
        Ok(Credentials {
            queue_url: Self::queue_url(&endpoint, &env.app, &queue.name),
            endpoint,
            access_key_id: key.access_key_id,
            secret_access_key: key.secret,
            region: REGION.to_string(),
        })
    }

    /// The environment variables that let an instance use its application's queue with an
    /// unmodified SQS client. Empty (with a log line) when something is missing: a queue
    /// is never a reason not to start an instance.
    pub(crate) async fn queue_env_vars(&self, env: &EnvRow, network: &str) -> Vec<String> {
        let Some(addr) = self.shared.config().sqs_addr else {
            return Vec::new();
        };
        let gateway = match self.shared.runtime().network_gateway(network).await {
            Ok(Some(ip)) => ip,
            Ok(None) => {
                tracing::warn!(env = %env.name, %network, "network has no gateway; instances get no SQS endpoint");
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!(env = %env.name, error = %e, "cannot inspect the network; instances get no SQS endpoint");
                return Vec::new();
            }
        };
        let endpoint = format!("http://{gateway}:{}", addr.port());
        let key = match self.access_key_of(env).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(env = %env.name, error = %e, "no access key for the instance");
                return Vec::new();
            }
        };
        let mut vars = vec![
            format!("AWS_ENDPOINT_URL_SQS={endpoint}"),
            format!("AWS_ACCESS_KEY_ID={}", key.access_key_id),
            format!("AWS_SECRET_ACCESS_KEY={}", key.secret),
            format!("AWS_REGION={REGION}"),
            format!("AWS_DEFAULT_REGION={REGION}"),
        ];
        match self.queue_env_of(env).await {
            Ok(worker) => match self.ensure_worker_queue(&worker).await {
                Ok(queue) => vars.push(format!(
                    "SPROUT_QUEUE_URL={}",
                    Self::queue_url(&endpoint, &env.app, &queue.name)
                )),
                Err(e) => tracing::warn!(env = %env.name, error = %e, "no queue for the instance"),
            },
            Err(e) => tracing::debug!(env = %env.name, error = %e, "no worker queue yet"),
        }
        vars
    }

    /// Appends checked messages to a queue (one transaction) and wakes its consumers, if
    /// its application's quota has room for all of them.
    pub(crate) async fn enqueue(&self, queue: &QueueRow, messages: &[NewMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.shared
            .store()
            .send_messages_within(queue, messages, now_ms(), &self.shared.config().queue_quota)
            .await?;
        self.queue_changed();
        Ok(())
    }

    /// An extra queue of an application (SQS CreateQueue): the existing one of that name, or
    /// a new one if the application's quota has room.
    pub(crate) async fn create_queue(
        &self,
        app_id: i64,
        name: &str,
        settings: QueueSettings,
    ) -> Result<QueueRow> {
        q::check_queue_name(name).map_err(invalid)?;
        if let Some(existing) = self.shared.store().queue_by_name(app_id, name).await? {
            return Ok(existing);
        }
        let usage = self.shared.store().queue_usage(app_id).await?;
        self.shared
            .config()
            .queue_quota
            .check_new_queue(usage.queues.max(0) as u64)?;
        Ok(self
            .shared
            .store()
            .create_queue(app_id, name, settings, now_ms())
            .await?)
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first (long poll).
    pub(crate) async fn receive(
        &self,
        queue: &QueueRow,
        max: i64,
        visibility_secs: i64,
        wait: Duration,
    ) -> Result<Vec<MessageRow>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.signals.sent.notified();
            let now = now_ms();
            if self.shared.store().move_dead(queue, now).await? > 0 {
                self.dead_letter_event(queue).await;
            }
            let got = self
                .shared
                .store()
                .claim(queue, max, visibility_secs * 1000, None, now)
                .await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            // Also wake on a timer: delayed messages and expired visibility need no send.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), notified).await;
        }
    }

    pub(crate) async fn dead_letter_event(&self, queue: &QueueRow) {
        if let Some(env_id) = queue.env_id {
            let _ = self
                .shared.store()
                .add_event(
                    env_id,
                    sprout_core::Severity::Warn,
                    &format!(
                        "messages of queue {} failed too often and moved to its dead-letter queue; see `sprout queue dlq`",
                        queue.name
                    ),
                )
                .await;
        }
    }

    /// A queue's counts, and its DLQ's size.
    pub(crate) async fn queue_counts(
        &self,
        queue: &QueueRow,
    ) -> Result<(sprout_store::QueueCounts, i64)> {
        let now = now_ms();
        let counts = self.shared.store().queue_counts(queue.id, now).await?;
        let dead = match queue.dlq_id {
            Some(dlq) => {
                let c = self.shared.store().queue_counts(dlq, now).await?;
                c.visible + c.in_flight + c.delayed
            }
            None => 0,
        };
        Ok((counts, dead))
    }

    // ----- Sprout's own API -----

    pub(crate) async fn queue_send(
        &self,
        env_name: &str,
        req: SendRequest,
    ) -> Result<SendResponse> {
        let (_worker, queue) = self.queue_of_env_named(env_name).await?;
        let attributes: Attributes = req
            .attributes
            .into_iter()
            .map(|(k, v)| (k, MessageAttribute::string(v)))
            .collect();
        let out = prepare(&req.body, &attributes, req.delay_seconds.unwrap_or(0))?;
        self.enqueue(&queue, std::slice::from_ref(&out.row)).await?;
        tracing::info!(queue = %queue.name, message = %out.row.message_id, "message sent");
        Ok(SendResponse {
            message_id: out.row.message_id,
            md5_of_body: out.md5_of_body,
        })
    }

    pub(crate) async fn queue_stats(&self, env_name: &str) -> Result<QueueStats> {
        let (worker, queue) = self.queue_of_env_named(env_name).await?;
        let (c, dead) = self.queue_counts(&queue).await?;
        let endpoint = self.sqs_endpoint().unwrap_or_default();
        Ok(QueueStats {
            queue_url: Self::queue_url(&endpoint, &worker.app, &queue.name),
            queue: queue.name,
            visible: c.visible,
            in_flight: c.in_flight,
            delayed: c.delayed,
            dead,
        })
    }

    pub(crate) async fn queue_dead(&self, env_name: &str) -> Result<Vec<DeadMessage>> {
        let (_worker, queue) = self.queue_of_env_named(env_name).await?;
        let Some(dlq) = queue.dlq_id else {
            return Ok(Vec::new());
        };
        let rows = self
            .shared
            .store()
            .queue_messages(dlq, DLQ_LIST_MAX, DLQ_LIST_MAX_BYTES)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadMessage {
                attributes: attributes_of(&r)
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.string_value?)))
                    .collect(),
                message_id: r.message_id,
                body: r.body,
                receive_count: r.receive_count,
                sent_at: ms_to_time(r.sent_at),
            })
            .collect())
    }

    pub(crate) async fn queue_redrive(&self, env_name: &str) -> Result<q::RedriveResponse> {
        let (worker, queue) = self.queue_of_env_named(env_name).await?;
        let Some(dlq) = queue.dlq_id else {
            return Ok(q::RedriveResponse { moved: 0 });
        };
        let moved = self.shared.store().redrive(dlq, &queue, now_ms()).await?;
        if moved > 0 {
            self.shared
                .store()
                .add_event(
                    worker.id,
                    sprout_core::Severity::Info,
                    &format!("{moved} messages redriven from the dead-letter queue"),
                )
                .await?;
            self.queue_changed();
        }
        Ok(q::RedriveResponse { moved })
    }
}
