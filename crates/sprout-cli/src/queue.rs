//! An environment's worker queue, as [`Client`] calls (`sprout queue …`): send, stats, the
//! dead-letter queue and the SQS credentials.

use crate::client::Client;
use crate::error::CliError;
use reqwest::Method;
use sprout_core::queue::{
    Credentials, DeadMessage, QueueStats, RedriveResponse, SendRequest, SendResponse,
};

impl Client {
    pub async fn queue_send(&self, env: &str, req: &SendRequest) -> Result<SendResponse, CliError> {
        self.send_json(
            Method::POST,
            &["environments", env, "queue", "messages"],
            Some(req),
        )
        .await
    }
    pub async fn queue_stats(&self, env: &str) -> Result<QueueStats, CliError> {
        self.get_json(&["environments", env, "queue"], &[]).await
    }
    pub async fn queue_dlq(&self, env: &str) -> Result<Vec<DeadMessage>, CliError> {
        self.get_json(&["environments", env, "queue", "dlq"], &[])
            .await
    }
    pub async fn queue_redrive(&self, env: &str) -> Result<RedriveResponse, CliError> {
        self.send_json::<(), _>(
            Method::POST,
            &["environments", env, "queue", "dlq", "redrive"],
            None,
        )
        .await
    }
    pub async fn queue_credentials(&self, env: &str) -> Result<Credentials, CliError> {
        self.get_json(&["environments", env, "queue", "credentials"], &[])
            .await
    }
}
