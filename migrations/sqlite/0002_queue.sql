-- The worker tier: durable queues with SQS semantics, access keys for the SQS endpoint,
-- and the ticks of periodic tasks. Queue times are integer Unix milliseconds (not RFC 3339
-- text like 0001): the claim compares them on every receive, and integers index and compare
-- fastest.

CREATE TABLE queues (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    app_id             INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- The worker environment the queue feeds (NULL for extra queues made by CreateQueue).
    env_id             INTEGER REFERENCES environments(id),
    dlq_id             INTEGER REFERENCES queues(id),
    is_dlq             INTEGER NOT NULL DEFAULT 0,
    visibility_timeout INTEGER NOT NULL DEFAULT 30,
    delay_seconds      INTEGER NOT NULL DEFAULT 0,
    retention_seconds  INTEGER NOT NULL DEFAULT 345600,
    -- Deliveries before a message moves to the DLQ (SQS's maxReceiveCount); 0 = never.
    max_receive_count  INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);
CREATE INDEX queues_env ON queues(env_id);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    queue_id          INTEGER NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    message_id        TEXT NOT NULL,
    body              TEXT NOT NULL,
    md5               TEXT NOT NULL,
    attributes        TEXT NOT NULL DEFAULT '{}',
    sent_at           INTEGER NOT NULL,
    -- Visible (receivable) from this instant on.
    visible_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at INTEGER,
    -- The current receipt handle: `<id>.<random>`; NULL when nobody holds it.
    receipt           TEXT,
    -- The instance the dispatcher handed it to, while in flight.
    holder            TEXT
);
CREATE INDEX messages_ready ON messages(queue_id, visible_at);
CREATE INDEX messages_holder ON messages(holder) WHERE holder IS NOT NULL;

CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    app_id        INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    env_id        INTEGER NOT NULL UNIQUE REFERENCES environments(id),
    created_at    INTEGER NOT NULL
);

-- One row per periodic-task tick, written in the same transaction as its message: a tick
-- fires once even when two schedulers (or a restarted one) see it.
CREATE TABLE cron_ticks (
    env_id       INTEGER NOT NULL REFERENCES environments(id),
    task         TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    PRIMARY KEY (env_id, task, scheduled_at)
);
