//! Queue throughput on SQLite (printed, not asserted):
//! `cargo bench -p sprout-store --bench queue`.

use sprout_store::{NewMessage, QueueSettings, Store};
use std::time::Instant;

fn msg(i: usize) -> NewMessage {
    NewMessage {
        message_id: format!("m-{i}"),
        body: format!("{{\"job\": {i}}}"),
        md5: String::new(),
        attributes: "{}".into(),
        delay_ms: 0,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("bench.db")).await?;
    let app = store.create_app("bench").await?;
    let q = store
        .create_queue(app.id, "bench", QueueSettings::default(), 0)
        .await?;
    let n = 10_000usize;

    // Single: one send, one receive, one delete per message.
    let start = Instant::now();
    for i in 0..n / 5 {
        store.send_messages(&q, &[msg(i)], 0).await?;
        let got = store.claim(&q, 1, 30_000, None, 0).await?;
        for m in got {
            if let Some(r) = m.receipt {
                store.delete_by_receipt(q.id, &r).await?;
            }
        }
    }
    let single = start.elapsed();
    let per = single.as_secs_f64() / (n / 5) as f64;
    println!(
        "single   send+receive+delete: {:>8.0} msg/s ({:.1} µs per cycle, {} messages)",
        1.0 / per,
        per * 1e6,
        n / 5
    );

    // Batched by 10, as SQS allows: SendMessageBatch, ReceiveMessage(10), DeleteMessageBatch.
    let start = Instant::now();
    for chunk in 0..n / 10 {
        let batch: Vec<NewMessage> = (0..10).map(|i| msg(chunk * 10 + i)).collect();
        store.send_messages(&q, &batch, 0).await?;
        let got = store.claim(&q, 10, 30_000, None, 0).await?;
        let receipts: Vec<String> = got.into_iter().filter_map(|m| m.receipt).collect();
        let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
        store.delete_batch(q.id, &refs).await?;
    }
    let batched = start.elapsed();
    println!(
        "batched  send+receive+delete: {:>8.0} msg/s ({:.1} µs per message, batches of 10, {n} messages)",
        n as f64 / batched.as_secs_f64(),
        batched.as_secs_f64() * 1e6 / n as f64
    );

    // Phases separately, batched.
    let start = Instant::now();
    for chunk in 0..n / 10 {
        let batch: Vec<NewMessage> = (0..10).map(|i| msg(chunk * 10 + i)).collect();
        store.send_messages(&q, &batch, 0).await?;
    }
    let send = start.elapsed();
    let start = Instant::now();
    let mut receipts = Vec::with_capacity(n);
    loop {
        let got = store.claim(&q, 10, 30_000, None, 0).await?;
        if got.is_empty() {
            break;
        }
        receipts.extend(got.into_iter().filter_map(|m| m.receipt));
    }
    let receive = start.elapsed();
    let start = Instant::now();
    for chunk in receipts.chunks(10) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        store.delete_batch(q.id, &refs).await?;
    }
    let delete = start.elapsed();
    for (what, took) in [("send", send), ("receive", receive), ("delete", delete)] {
        println!(
            "batched  {what:<7}: {:>8.0} msg/s",
            n as f64 / took.as_secs_f64()
        );
    }
    store.close().await;
    Ok(())
}
