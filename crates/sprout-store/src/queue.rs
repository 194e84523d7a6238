//! The durable queue: rows are the truth. A message is claimed by one atomic
//! `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`, so two receivers never get the same
//! message while its visibility timeout holds; it is deleted only by its current receipt.
//! Times here are Unix milliseconds.

use crate::sealed::SQS_SECRET;
use crate::{unique_or, Result, Store, StoreError};
use sprout_core::queue::QueueQuota;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub id: i64,
    pub name: String,
    pub app_id: i64,
    pub env_id: Option<i64>,
    pub dlq_id: Option<i64>,
    pub is_dlq: bool,
    pub visibility_timeout: i64,
    pub delay_seconds: i64,
    pub retention_seconds: i64,
    pub max_receive_count: i64,
    pub created_at: i64,
}

/// Settings of a queue, as CreateQueue or the worker environment's sqsd options give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility_timeout: i64,
    pub delay_seconds: i64,
    pub retention_seconds: i64,
    pub max_receive_count: i64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: 30,
            delay_seconds: 0,
            retention_seconds: 345_600,
            max_receive_count: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub body: String,
    pub md5: String,
    /// JSON object of the message attributes.
    pub attributes: String,
    pub delay_ms: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub message_id: String,
    pub body: String,
    pub md5: String,
    pub attributes: String,
    pub sent_at: i64,
    pub receive_count: i64,
    pub first_received_at: Option<i64>,
    pub receipt: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: i64,
    pub in_flight: i64,
    pub delayed: i64,
}

/// What an application's queues hold, for its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueUsage {
    pub queues: i64,
    pub messages: i64,
    /// Bodies plus attributes.
    pub bytes: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessKeyRow {
    pub access_key_id: String,
    pub secret: String,
    pub app_id: i64,
    pub env_id: i64,
}

const QUEUE_COLUMNS: &str = "id, name, app_id, env_id, dlq_id, is_dlq, visibility_timeout, delay_seconds, retention_seconds, max_receive_count, created_at";
const MESSAGE_COLUMNS: &str =
    "id, message_id, body, md5, attributes, sent_at, receive_count, first_received_at, receipt";

/// The row id a receipt handle names (`<id>.<random>`).
fn receipt_id(receipt: &str) -> Option<i64> {
    receipt.split_once('.')?.0.parse().ok()
}

impl Store {
    /// The queue (and its dead-letter queue) of a worker environment, made on first use and
    /// kept in line with the environment's settings. Names are scoped by application: a
    /// queue another application made under the same name stays that application's.
    pub async fn ensure_env_queue(
        &self,
        env_id: i64,
        app_id: i64,
        name: &str,
        dlq_name: &str,
        settings: QueueSettings,
        now_ms: i64,
    ) -> Result<QueueRow> {
        let mut tx = self.pool().begin().await?;
        let dlq: (i64,) = sqlx::query_as(
            "INSERT INTO queues (name, app_id, env_id, is_dlq, retention_seconds, created_at)
             VALUES (?, ?, ?, 1, 1209600, ?)
             ON CONFLICT(app_id, name) DO UPDATE SET env_id = excluded.env_id
             RETURNING id",
        )
        .bind(dlq_name)
        .bind(app_id)
        .bind(env_id)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        let queue = sqlx::query_as::<_, QueueRow>(&format!(
            "INSERT INTO queues (name, app_id, env_id, dlq_id, visibility_timeout, delay_seconds,
                 retention_seconds, max_receive_count, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(app_id, name) DO UPDATE SET env_id = excluded.env_id,
                 dlq_id = excluded.dlq_id, visibility_timeout = excluded.visibility_timeout,
                 retention_seconds = excluded.retention_seconds,
                 max_receive_count = excluded.max_receive_count, is_dlq = 0
             RETURNING {QUEUE_COLUMNS}"
        ))
        .bind(name)
        .bind(app_id)
        .bind(env_id)
        .bind(dlq.0)
        .bind(settings.visibility_timeout)
        .bind(settings.delay_seconds)
        .bind(settings.retention_seconds)
        .bind(settings.max_receive_count)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(queue)
    }

    /// An extra queue of an application (SQS CreateQueue). Creating a queue that exists
    /// returns it; names of other applications' queues are theirs and do not matter.
    pub async fn create_queue(
        &self,
        app_id: i64,
        name: &str,
        settings: QueueSettings,
        now_ms: i64,
    ) -> Result<QueueRow> {
        if let Some(existing) = self.queue_by_name(app_id, name).await? {
            return Ok(existing);
        }
        sqlx::query_as::<_, QueueRow>(&format!(
            "INSERT INTO queues (name, app_id, visibility_timeout, delay_seconds, retention_seconds,
                 max_receive_count, created_at)
             VALUES (?, ?, ?, ?, ?, 0, ?) RETURNING {QUEUE_COLUMNS}"
        ))
        .bind(name)
        .bind(app_id)
        .bind(settings.visibility_timeout)
        .bind(settings.delay_seconds)
        .bind(settings.retention_seconds)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(|e| unique_or(e, || format!("queue '{name}' already exists")))
    }

    /// An application's queue by name.
    pub async fn queue_by_name(&self, app_id: i64, name: &str) -> Result<Option<QueueRow>> {
        Ok(sqlx::query_as::<_, QueueRow>(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queues WHERE app_id = ? AND name = ?"
        ))
        .bind(app_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn queue_by_id(&self, id: i64) -> Result<QueueRow> {
        sqlx::query_as::<_, QueueRow>(&format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queue {id} not found")))
    }

    /// The queues of an application whose names start with `prefix`, by name.
    pub async fn list_queues(&self, app_id: i64, prefix: &str) -> Result<Vec<QueueRow>> {
        Ok(sqlx::query_as::<_, QueueRow>(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queues WHERE app_id = ? AND substr(name, 1, length(?)) = ?
             ORDER BY name"
        ))
        .bind(app_id)
        .bind(prefix)
        .bind(prefix)
        .fetch_all(self.pool())
        .await?)
    }

    /// How many queues an application has, and the messages and bytes they hold (the
    /// counters the triggers of migration 0009 keep).
    pub async fn queue_usage(&self, app_id: i64) -> Result<QueueUsage> {
        let mut conn = self.pool().acquire().await?;
        queue_usage(&mut conn, app_id).await
    }

    /// Appends messages in one transaction if the application's quota has room for all of
    /// them ([`StoreError::Quota`] otherwise, nothing sent). The transaction takes SQLite's
    /// write lock before it reads the usage, so two sends cannot both pass on the same room.
    pub async fn send_messages_within(
        &self,
        queue: &QueueRow,
        messages: &[NewMessage],
        now_ms: i64,
        quota: &QueueQuota,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        admit(&mut tx, queue.app_id, quota, messages).await?;
        insert_messages(&mut tx, queue, messages, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The (non-DLQ) queue a worker environment feeds from, if made.
    pub async fn env_queue(&self, env_id: i64) -> Result<Option<QueueRow>> {
        Ok(sqlx::query_as::<_, QueueRow>(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queues WHERE env_id = ? AND is_dlq = 0 ORDER BY id LIMIT 1"
        ))
        .bind(env_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Appends messages in one transaction: all or none are there when this returns.
    pub async fn send_messages(
        &self,
        queue: &QueueRow,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool().acquire().await?;
        insert_messages(&mut conn, queue, messages, now_ms).await
    }

    /// Moves visible messages that were delivered `max_receive_count` times to the DLQ.
    pub async fn move_dead(&self, queue: &QueueRow, now_ms: i64) -> Result<u64> {
        let (Some(dlq), max) = (queue.dlq_id, queue.max_receive_count) else {
            return Ok(0);
        };
        if max <= 0 {
            return Ok(0);
        }
        let moved = sqlx::query(
            "UPDATE messages SET queue_id = ?, receipt = NULL, holder = NULL, visible_at = ?,
                 expires_at = ? + 1209600000
             WHERE queue_id = ? AND visible_at <= ? AND receive_count >= ?",
        )
        .bind(dlq)
        .bind(now_ms)
        .bind(now_ms)
        .bind(queue.id)
        .bind(now_ms)
        .bind(max)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(moved)
    }

    /// Moves one received message to the queue's DLQ at once (it cannot be delivered);
    /// false when the receipt is not current or the queue has no DLQ.
    pub async fn dead_letter(&self, queue: &QueueRow, receipt: &str, now_ms: i64) -> Result<bool> {
        let (Some(dlq), Some(id)) = (queue.dlq_id, receipt_id(receipt)) else {
            return Ok(false);
        };
        let done = sqlx::query(
            "UPDATE messages SET queue_id = ?, receipt = NULL, holder = NULL, visible_at = ?,
                 expires_at = ? + 1209600000
             WHERE id = ? AND queue_id = ? AND receipt = ?",
        )
        .bind(dlq)
        .bind(now_ms)
        .bind(now_ms)
        .bind(id)
        .bind(queue.id)
        .bind(receipt)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Claims up to `max` visible messages in one statement: each becomes invisible for
    /// `visibility_ms`, gets a fresh receipt and counts one more receive.
    pub async fn claim(
        &self,
        queue: &QueueRow,
        max: i64,
        visibility_ms: i64,
        holder: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<MessageRow>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let limit_receives = if queue.dlq_id.is_some() && queue.max_receive_count > 0 {
            queue.max_receive_count
        } else {
            i64::MAX
        };
        let mut rows = sqlx::query_as::<_, MessageRow>(&format!(
            "UPDATE messages SET visible_at = ?1, receive_count = receive_count + 1,
                 first_received_at = COALESCE(first_received_at, ?2), holder = ?3,
                 receipt = id || '.' || lower(hex(randomblob(12)))
             WHERE id IN (SELECT id FROM messages
                          WHERE queue_id = ?4 AND visible_at <= ?2 AND expires_at > ?2
                            AND receive_count < ?5
                          ORDER BY visible_at, id LIMIT ?6)
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(now_ms + visibility_ms)
        .bind(now_ms)
        .bind(holder)
        .bind(queue.id)
        .bind(limit_receives)
        .bind(max)
        .fetch_all(self.pool())
        .await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Deletes a message by its current receipt; false when the receipt is not current.
    pub async fn delete_by_receipt(&self, queue_id: i64, receipt: &str) -> Result<bool> {
        let Some(id) = receipt_id(receipt) else {
            return Ok(false);
        };
        let done =
            sqlx::query("DELETE FROM messages WHERE id = ? AND queue_id = ? AND receipt = ?")
                .bind(id)
                .bind(queue_id)
                .bind(receipt)
                .execute(self.pool())
                .await?
                .rows_affected();
        Ok(done == 1)
    }

    /// Deletes many messages by receipt in one statement; one flag per receipt. A receipt
    /// names its row (`<id>.<random>`), so matching both the ids and the receipts deletes
    /// exactly the messages whose receipt is current.
    pub async fn delete_batch(&self, queue_id: i64, receipts: &[&str]) -> Result<Vec<bool>> {
        let ids: Vec<i64> = receipts.iter().filter_map(|r| receipt_id(r)).collect();
        if ids.is_empty() {
            return Ok(vec![false; receipts.len()]);
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("DELETE FROM messages WHERE queue_id = ");
        qb.push_bind(queue_id).push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for id in &ids {
            sep.push_bind(*id);
        }
        qb.push(") AND receipt IN (");
        let mut sep = qb.separated(", ");
        for r in receipts {
            sep.push_bind(*r);
        }
        qb.push(") RETURNING receipt");
        let deleted: Vec<(String,)> = qb.build_query_as().fetch_all(self.pool()).await?;
        let deleted: std::collections::HashSet<&str> =
            deleted.iter().map(|(r,)| r.as_str()).collect();
        let mut seen = std::collections::HashSet::new();
        Ok(receipts
            .iter()
            .map(|r| deleted.contains(r) && seen.insert(*r))
            .collect())
    }

    /// Makes a received message visible at `visible_at`; false when the receipt is not current.
    pub async fn change_visibility(
        &self,
        queue_id: i64,
        receipt: &str,
        visible_at_ms: i64,
    ) -> Result<bool> {
        let Some(id) = receipt_id(receipt) else {
            return Ok(false);
        };
        let done = sqlx::query(
            "UPDATE messages SET visible_at = ?, holder = NULL
             WHERE id = ? AND queue_id = ? AND receipt = ?",
        )
        .bind(visible_at_ms)
        .bind(id)
        .bind(queue_id)
        .bind(receipt)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Puts the messages an instance holds back in the queue at once (the instance left);
    /// their receipts die, so a late answer from it changes nothing.
    pub async fn release_holder(&self, holder: &str, now_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET visible_at = ?, holder = NULL, receipt = NULL WHERE holder = ?",
        )
        .bind(now_ms)
        .bind(holder)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Puts every message the dispatcher held back in the queue (at dispatcher start: the
    /// previous process's requests are gone).
    pub async fn release_all_held(&self, now_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET visible_at = ?, holder = NULL, receipt = NULL WHERE holder IS NOT NULL",
        )
        .bind(now_ms)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    pub async fn queue_counts(&self, queue_id: i64, now_ms: i64) -> Result<QueueCounts> {
        let (visible, in_flight, delayed): (i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(visible_at <= ?1), 0),
                    COALESCE(SUM(visible_at > ?1 AND receipt IS NOT NULL), 0),
                    COALESCE(SUM(visible_at > ?1 AND receipt IS NULL), 0)
             FROM messages WHERE queue_id = ?2 AND expires_at > ?1",
        )
        .bind(now_ms)
        .bind(queue_id)
        .fetch_one(self.pool())
        .await?;
        Ok(QueueCounts {
            visible,
            in_flight,
            delayed,
        })
    }

    pub async fn purge_queue(&self, queue_id: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM messages WHERE queue_id = ?")
            .bind(queue_id)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Messages of a queue, oldest first (for listing a DLQ): at most `limit`, and no more
    /// than `max_bytes` of bodies in all, so a full queue is never loaded whole.
    pub async fn queue_messages(
        &self,
        queue_id: i64,
        limit: i64,
        max_bytes: i64,
    ) -> Result<Vec<MessageRow>> {
        Ok(sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
                 SELECT {MESSAGE_COLUMNS},
                     SUM(length(CAST(body AS BLOB))) OVER (ORDER BY id) AS running
                 FROM messages WHERE queue_id = ?)
             WHERE running <= ? ORDER BY id LIMIT ?"
        ))
        .bind(queue_id)
        .bind(max_bytes)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Moves every message of `dlq` back to `queue`, visible now, with a fresh receive count.
    pub async fn redrive(&self, dlq_id: i64, queue: &QueueRow, now_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET queue_id = ?, visible_at = ?, receive_count = 0, receipt = NULL,
                 holder = NULL, expires_at = ?
             WHERE queue_id = ?",
        )
        .bind(queue.id)
        .bind(now_ms)
        .bind(now_ms + queue.retention_seconds * 1000)
        .bind(dlq_id)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Drops messages past their retention period.
    pub async fn expire_messages(&self, now_ms: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM messages WHERE expires_at <= ?")
            .bind(now_ms)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// The environment's access key, made with the given candidate on first use.
    pub async fn ensure_access_key(
        &self,
        env_id: i64,
        app_id: i64,
        candidate_id: &str,
        candidate_secret: &str,
        now_ms: i64,
    ) -> Result<AccessKeyRow> {
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, secret, app_id, env_id, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(env_id) DO NOTHING",
        )
        .bind(candidate_id)
        .bind(self.seal(SQS_SECRET, candidate_secret)?)
        .bind(app_id)
        .bind(env_id)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        let key = sqlx::query_as::<_, AccessKeyRow>(
            "SELECT access_key_id, secret, app_id, env_id FROM access_keys WHERE env_id = ?",
        )
        .bind(env_id)
        .fetch_one(self.pool())
        .await?;
        self.open_access_key(key)
    }

    pub async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>> {
        sqlx::query_as::<_, AccessKeyRow>(
            "SELECT k.access_key_id, k.secret, k.app_id, k.env_id FROM access_keys k
             JOIN environments e ON e.id = k.env_id
             WHERE k.access_key_id = ? AND e.status <> ?",
        )
        .bind(access_key_id)
        .bind(sprout_core::EnvStatus::Terminated.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|key| self.open_access_key(key))
        .transpose()
    }

    /// An access key as it leaves the store: its secret opened.
    fn open_access_key(&self, mut key: AccessKeyRow) -> Result<AccessKeyRow> {
        key.secret = self.open_secret(SQS_SECRET, &key.secret)?;
        Ok(key)
    }

    /// Records a periodic task's tick and enqueues its message in one transaction, if the
    /// application's quota has room. False (and nothing sent) when the tick was recorded
    /// before.
    pub async fn send_tick(
        &self,
        tick: &Tick<'_>,
        queue: &QueueRow,
        message: &NewMessage,
        now_ms: i64,
        quota: &QueueQuota,
    ) -> Result<bool> {
        let message = std::slice::from_ref(message);
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        admit(&mut tx, queue.app_id, quota, message).await?;
        let recorded = sqlx::query(
            "INSERT INTO cron_ticks (env_id, task, scheduled_at, message_id) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(tick.env_id)
        .bind(tick.task)
        .bind(tick.scheduled_at)
        .bind(&message[0].message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(false);
        }
        insert_messages(&mut tx, queue, message, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// One tick of a periodic task: which environment's task, and when it was due.
#[derive(Debug, Clone, Copy)]
pub struct Tick<'a> {
    pub env_id: i64,
    pub task: &'a str,
    pub scheduled_at: &'a str,
}

async fn queue_usage(conn: &mut SqliteConnection, app_id: i64) -> Result<QueueUsage> {
    let (queues, messages, bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(message_count), 0), COALESCE(SUM(message_bytes), 0)
         FROM queues WHERE app_id = ?",
    )
    .bind(app_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(QueueUsage {
        queues,
        messages,
        bytes,
    })
}

/// Refuses `messages` unless the application's usage, read on `conn`, leaves room for all.
async fn admit(
    conn: &mut SqliteConnection,
    app_id: i64,
    quota: &QueueQuota,
    messages: &[NewMessage],
) -> Result<()> {
    let usage = queue_usage(conn, app_id).await?;
    // The store's own count (see the triggers of migration 0009): body and attributes.
    let adding_bytes: usize = messages
        .iter()
        .map(|m| m.body.len() + m.attributes.len())
        .sum();
    // The counts are kept by triggers and never negative; a negative one is a corrupt row.
    let count = |field: &'static str, value: i64| {
        u64::try_from(value).map_err(|e| StoreError::Corrupt {
            table: "queues",
            id: format!("of app {app_id}"),
            field,
            reason: format!("{value}: {e}"),
        })
    };
    quota.check_send(
        count("message_count", usage.messages)?,
        count("message_bytes", usage.bytes)?,
        messages.len() as u64,
        adding_bytes as u64,
    )?;
    Ok(())
}

async fn insert_messages(
    conn: &mut SqliteConnection,
    queue: &QueueRow,
    messages: &[NewMessage],
    now_ms: i64,
) -> Result<()> {
    let expires = now_ms + queue.retention_seconds * 1000;
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (queue_id, message_id, body, md5, attributes, sent_at, visible_at, expires_at) ",
    );
    qb.push_values(messages, |mut b, m| {
        b.push_bind(queue.id)
            .push_bind(&m.message_id)
            .push_bind(&m.body)
            .push_bind(&m.md5)
            .push_bind(&m.attributes)
            .push_bind(now_ms)
            .push_bind(now_ms + m.delay_ms.max(0))
            .push_bind(expires);
    });
    qb.build().execute(&mut *conn).await?;
    Ok(())
}
