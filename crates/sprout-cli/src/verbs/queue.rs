//! `sprout queue …`: send, stats, the dead-letter queue and the SQS credentials.

use super::connect::client;
use crate::args::{GlobalArgs, QueueCommand};
use crate::error::CliError;
use crate::output;
use sprout_core::queue::SendRequest;

pub(super) async fn run(global: &GlobalArgs, command: QueueCommand) -> Result<(), CliError> {
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
