//! `sprout queue …`: send, stats, the dead-letter queue and the SQS credentials.

use crate::{client, output, parse_key_value, CliError, GlobalArgs};
use reqwest::Method;
use sprout_core::queue::{
    Credentials, DeadMessage, QueueStats, RedriveResponse, SendRequest, SendResponse,
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueCommand {
    /// Send a message to the environment's queue (a web environment: its application's worker queue)
    Send {
        env: String,
        body: String,
        /// A string message attribute (repeatable)
        #[arg(long = "attr", value_name = "K=V", value_parser = parse_key_value)]
        attrs: Vec<(String, String)>,
        /// Seconds before the message becomes visible
        #[arg(long, value_name = "S")]
        delay: Option<u32>,
    },
    /// Show the queue's counts: visible, in flight, delayed, dead
    Stats {
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// List the dead-letter queue's messages, or move them back with --redrive
    Dlq {
        env: String,
        /// Move every dead message back to the queue
        #[arg(long)]
        redrive: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the SQS endpoint, queue URL and keys for clients outside Sprout
    Credentials {
        env: String,
        #[arg(long)]
        json: bool,
    },
}

impl crate::Client {
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

pub(crate) async fn run(global: &GlobalArgs, command: QueueCommand) -> Result<(), CliError> {
    let c = client(global);
    match command {
        QueueCommand::Send {
            env,
            body,
            attrs,
            delay,
        } => {
            let req = SendRequest {
                body,
                attributes: attrs.into_iter().collect(),
                delay_seconds: delay,
            };
            let sent = c.queue_send(&env, &req).await?;
            println!("sent message {}", sent.message_id);
        }
        QueueCommand::Stats { env, json } => {
            output::show(json, &c.queue_stats(&env).await?, |s| {
                let mut t = output::table(&["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "DEAD"]);
                t.add_row(vec![
                    s.queue.clone(),
                    s.visible.to_string(),
                    s.in_flight.to_string(),
                    s.delayed.to_string(),
                    s.dead.to_string(),
                ]);
                t
            });
        }
        QueueCommand::Dlq {
            env,
            redrive: true,
            json,
        } => {
            output::show(json, &c.queue_redrive(&env).await?, |r| {
                format!("{} messages moved back to the queue", r.moved)
            });
        }
        QueueCommand::Dlq { env, json, .. } => {
            let dead = c.queue_dlq(&env).await?;
            let empty = format!("the dead-letter queue of {env} is empty");
            output::show(json, &dead, |dead| {
                output::listing(dead, &empty, |dead| {
                    let mut t = output::table(&["MESSAGE", "RECEIVES", "SENT", "BODY"]);
                    for m in dead {
                        t.add_row(vec![
                            m.message_id.clone(),
                            m.receive_count.to_string(),
                            output::time(&m.sent_at),
                            m.body.clone(),
                        ]);
                    }
                    t
                })
            });
        }
        QueueCommand::Credentials { env, json } => {
            output::show(json, &c.queue_credentials(&env).await?, |k| {
                format!(
                    "endpoint           {}\nqueue_url          {}\naccess_key_id      {}\n\
                     secret_access_key  {}\nregion             {}",
                    k.endpoint, k.queue_url, k.access_key_id, k.secret_access_key, k.region
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Command;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn queue_verbs_parse() {
        let cli = TestCli::try_parse_from(["sprout", "queue", "send", "w", "{}", "--attr", "a=b"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Queue {
                command: super::QueueCommand::Send { ref attrs, .. }
            } if attrs == &vec![("a".to_string(), "b".to_string())]
        ));
        for args in [
            &["sprout", "queue", "stats", "w", "--json"][..],
            &["sprout", "queue", "dlq", "w", "--redrive"],
            &["sprout", "queue", "credentials", "w", "--json"],
        ] {
            assert!(TestCli::try_parse_from(args).is_ok(), "{args:?}");
        }
        assert!(
            TestCli::try_parse_from(["sprout", "queue", "send", "w", "x", "--attr", "1=2"])
                .is_err()
        );
    }
}
