//! The queue against a real SQLite file: SQS semantics, at-least-once, never twice at once.

use sprout_store::{NewMessage, QueueRow, QueueSettings, Store};
use std::collections::HashSet;

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sprout.db"))
        .await
        .expect("open");
    (dir, store)
}

fn msg(i: usize) -> NewMessage {
    NewMessage {
        message_id: format!("m-{i}"),
        body: format!("body {i}"),
        md5: String::new(),
        attributes: "{}".into(),
        delay_ms: 0,
    }
}

async fn queue(store: &Store, max_receive: i64) -> QueueRow {
    let app = store.create_app("jobs").await.expect("app");
    let env_less = store
        .create_queue(app.id, "plain", QueueSettings::default(), 0)
        .await
        .expect("queue");
    assert_eq!(env_less.dlq_id, None);
    // A queue with a DLQ, as a worker environment has (env_id is not checked by SQLite
    // without a row, so make the DLQ pair through create_queue + a second one).
    let dlq = store
        .create_queue(app.id, "q-dead", QueueSettings::default(), 0)
        .await
        .expect("dlq");
    sqlx::query("INSERT INTO queues (name, app_id, dlq_id, max_receive_count, visibility_timeout, retention_seconds, created_at) VALUES ('q', ?, ?, ?, 30, 3600, 0)")
        .bind(app.id)
        .bind(dlq.id)
        .bind(max_receive)
        .execute(store.pool())
        .await
        .expect("insert");
    store
        .queue_by_name(app.id, "q")
        .await
        .expect("get")
        .expect("q")
}

#[tokio::test]
async fn send_claim_delete_visibility() {
    let (_d, store) = open().await;
    let q = queue(&store, 0).await;
    let batch: Vec<NewMessage> = (0..25).map(msg).collect();
    store.send_messages(&q, &batch, 1_000).await.expect("send");
    let c = store.queue_counts(q.id, 1_000).await.expect("counts");
    assert_eq!((c.visible, c.in_flight, c.delayed), (25, 0, 0));

    let first = store
        .claim(&q, 10, 30_000, None, 1_000)
        .await
        .expect("claim");
    assert_eq!(first.len(), 10);
    let second = store
        .claim(&q, 100, 30_000, None, 1_001)
        .await
        .expect("claim");
    assert_eq!(second.len(), 15, "the rest, none twice");
    let ids: HashSet<_> = first
        .iter()
        .chain(&second)
        .map(|m| m.message_id.clone())
        .collect();
    assert_eq!(ids.len(), 25);
    assert!(store
        .claim(&q, 10, 30_000, None, 2_000)
        .await
        .expect("claim")
        .is_empty());
    let c = store.queue_counts(q.id, 2_000).await.expect("counts");
    assert_eq!((c.visible, c.in_flight), (0, 25));

    // Delete by receipt; a wrong or stale receipt changes nothing.
    let r0 = first[0].receipt.clone().expect("receipt");
    assert!(!store
        .delete_by_receipt(q.id, "nonsense")
        .await
        .expect("del"));
    assert!(!store
        .delete_by_receipt(q.id, &format!("{}.bad", first[0].id))
        .await
        .expect("del"));
    assert!(store.delete_by_receipt(q.id, &r0).await.expect("del"));
    assert!(!store.delete_by_receipt(q.id, &r0).await.expect("del again"));

    // Visibility expires: received again with a new receipt, count 2; the old receipt is dead.
    let again = store
        .claim(&q, 100, 30_000, None, 40_000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 24);
    assert!(again.iter().all(|m| m.receive_count == 2));
    let stale = first[1].receipt.clone().expect("receipt");
    assert!(!store.delete_by_receipt(q.id, &stale).await.expect("stale"));

    // Change visibility to now: visible again at once.
    let r = again[0].receipt.clone().expect("receipt");
    assert!(store.change_visibility(q.id, &r, 40_000).await.expect("cv"));
    assert_eq!(
        store
            .claim(&q, 10, 30_000, None, 40_000)
            .await
            .expect("claim")
            .len(),
        1
    );

    // Batch delete: one flag per receipt.
    let receipts: Vec<String> = again[1..4]
        .iter()
        .filter_map(|m| m.receipt.clone())
        .collect();
    let mut refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
    refs.push("1.nope");
    let flags = store.delete_batch(q.id, &refs).await.expect("batch");
    assert_eq!(flags, vec![true, true, true, false]);

    assert_eq!(store.purge_queue(q.id).await.expect("purge"), 21);
}

#[tokio::test]
async fn delay_retention_dead_letters_and_redrive() {
    let (_d, store) = open().await;
    let q = queue(&store, 2).await;
    let mut delayed = msg(1);
    delayed.delay_ms = 5_000;
    store
        .send_messages(&q, &[delayed, msg(2)], 0)
        .await
        .expect("send");
    let c = store.queue_counts(q.id, 0).await.expect("counts");
    assert_eq!((c.visible, c.delayed), (1, 1));

    // Two deliveries, then the DLQ.
    for t in [10_000, 50_000] {
        assert_eq!(store.move_dead(&q, t).await.expect("move"), 0);
        assert_eq!(
            store
                .claim(&q, 10, 30_000, None, t)
                .await
                .expect("claim")
                .len(),
            2
        );
    }
    assert_eq!(store.move_dead(&q, 90_000).await.expect("move"), 2);
    assert!(store
        .claim(&q, 10, 30_000, None, 90_000)
        .await
        .expect("claim")
        .is_empty());
    let dlq = q.dlq_id.expect("dlq");
    let dead = store.queue_messages(dlq, 100, 1 << 20).await.expect("dead");
    assert_eq!(dead.len(), 2);
    assert_eq!(store.redrive(dlq, &q, 91_000).await.expect("redrive"), 2);
    let back = store
        .claim(&q, 10, 30_000, None, 91_000)
        .await
        .expect("claim");
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|m| m.receive_count == 1));

    // Retention: gone after the period.
    assert_eq!(
        store
            .expire_messages(91_000 + 3_600_000 + 1)
            .await
            .expect("expire"),
        2
    );
}

#[tokio::test]
async fn held_messages_return_when_their_instance_leaves() {
    let (_d, store) = open().await;
    let q = queue(&store, 0).await;
    store
        .send_messages(&q, &[msg(1), msg(2), msg(3)], 0)
        .await
        .expect("send");
    let a = store
        .claim(&q, 2, 300_000, Some("i-a"), 0)
        .await
        .expect("claim");
    let b = store
        .claim(&q, 2, 300_000, Some("i-b"), 0)
        .await
        .expect("claim");
    assert_eq!((a.len(), b.len()), (2, 1));
    assert_eq!(store.release_holder("i-a", 1).await.expect("release"), 2);
    let r = a[0].receipt.clone().expect("receipt");
    assert!(
        !store
            .delete_by_receipt(q.id, &r)
            .await
            .expect("late delete"),
        "a late answer changes nothing"
    );
    assert_eq!(
        store
            .claim(&q, 10, 300_000, Some("i-b"), 1)
            .await
            .expect("claim")
            .len(),
        2
    );
    assert_eq!(store.release_all_held(2).await.expect("release all"), 3);
}

#[tokio::test]
async fn concurrent_receivers_never_share_a_message() {
    let (_d, store) = open().await;
    let q = queue(&store, 0).await;
    for chunk in (0..500).collect::<Vec<_>>().chunks(10) {
        let batch: Vec<NewMessage> = chunk.iter().map(|i| msg(*i)).collect();
        store.send_messages(&q, &batch, 0).await.expect("send");
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store.claim(&q, 10, 300_000, None, 1).await.expect("claim");
                    if batch.is_empty() {
                        break got;
                    }
                    got.extend(batch.into_iter().map(|m| m.message_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 500);
    assert_eq!(distinct.len(), 500);
}

#[tokio::test]
async fn queue_names_are_per_application_and_usage_is_counted() {
    let (_d, store) = open().await;
    let q = queue(&store, 0).await;
    let other = store.create_app("other").await.expect("app");
    // The same name in another application is another queue; the first is untouched.
    let theirs = store
        .create_queue(other.id, "q", QueueSettings::default(), 0)
        .await
        .expect("same name, other app");
    assert_ne!(theirs.id, q.id);
    assert_eq!(theirs.app_id, other.id);
    let mine = store
        .queue_by_name(q.app_id, "q")
        .await
        .expect("get")
        .expect("q");
    assert_eq!((mine.id, mine.dlq_id), (q.id, q.dlq_id));

    let bytes = |n: &[NewMessage]| {
        n.iter()
            .map(|m| (m.body.len() + m.attributes.len()) as i64)
            .sum::<i64>()
    };
    let batch: Vec<NewMessage> = (0..3).map(msg).collect();
    store.send_messages(&q, &batch, 0).await.expect("send");
    let usage = store.queue_usage(q.app_id).await.expect("usage");
    // plain, q-dead, q
    assert_eq!((usage.queues, usage.messages), (3, 3));
    assert_eq!(usage.bytes, bytes(&batch));
    assert_eq!(
        store.queue_usage(other.id).await.expect("usage").messages,
        0
    );

    // Moving to the DLQ keeps the application's total; deleting lowers it.
    let got = store.claim(&q, 2, 30_000, None, 0).await.expect("claim");
    let receipt = got[0].receipt.clone().expect("receipt");
    assert!(store
        .dead_letter(&q, &receipt, 1)
        .await
        .expect("dead letter"));
    assert!(!store.dead_letter(&q, &receipt, 1).await.expect("again"));
    let dlq = q.dlq_id.expect("dlq");
    assert_eq!(
        store
            .queue_messages(dlq, 10, 1 << 20)
            .await
            .expect("dlq")
            .len(),
        1
    );
    // The listing stops at its byte budget ("body N" is 6 bytes).
    assert!(store
        .queue_messages(dlq, 10, 5)
        .await
        .expect("dlq")
        .is_empty());
    assert_eq!(
        store.queue_usage(q.app_id).await.expect("usage").messages,
        3
    );
    let r2 = got[1].receipt.clone().expect("receipt");
    assert!(store.delete_by_receipt(q.id, &r2).await.expect("delete"));
    let usage = store.queue_usage(q.app_id).await.expect("usage");
    assert_eq!(usage.messages, 2);
    assert_eq!(
        usage.bytes,
        bytes(&batch[..2]),
        "the bodies are the same size"
    );
    store.purge_queue(q.id).await.expect("purge");
    store.purge_queue(dlq).await.expect("purge");
    assert_eq!(
        store.queue_usage(q.app_id).await.expect("usage"),
        sprout_store::QueueUsage {
            queues: 3,
            messages: 0,
            bytes: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_cannot_pass_the_quota_together() {
    let (_d, store) = open().await;
    let q = queue(&store, 0).await;
    let quota = sprout_core::queue::QueueQuota {
        max_queues: 10,
        max_messages: 7,
        max_bytes: 1 << 20,
    };
    // Forty senders race for seven places: each reads the usage and inserts; were the read
    // and the insert apart, several would see the same room.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let sends = (0..40).map(|i| {
        let (store, q, start) = (store.clone(), q.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            store.send_messages_within(&q, &[msg(i)], 0, &quota).await
        })
    });
    let mut sent = 0;
    let mut refused = 0;
    for send in sends.collect::<Vec<_>>() {
        match send.await.expect("join") {
            Ok(()) => sent += 1,
            Err(sprout_store::StoreError::Quota(_)) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((sent, refused), (7, 33));
    let usage = store.queue_usage(q.app_id).await.expect("usage");
    assert_eq!(usage.messages, 7);
    let c = store.queue_counts(q.id, 0).await.expect("counts");
    assert_eq!(c.visible, 7);
}
