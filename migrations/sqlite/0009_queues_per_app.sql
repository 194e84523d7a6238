-- Queue names are scoped by application: two applications may each have a queue `jobs`,
-- and a worker environment's queue is never one another application made (the global
-- UNIQUE(name) let an environment take over such a queue, messages included). Each queue
-- also keeps the count and size of its messages, kept true by triggers on every path that
-- adds, moves or deletes one, for the per-application quotas.
--
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt. Dropping the old table
-- deletes its messages through ON DELETE CASCADE, and foreign keys cannot be turned off
-- inside the migration's transaction: the messages are set aside and put back.

CREATE TABLE queues_new (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL,
    app_id             INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- The worker environment the queue feeds (NULL for extra queues made by CreateQueue).
    env_id             INTEGER REFERENCES environments(id),
    dlq_id             INTEGER REFERENCES queues_new(id),
    is_dlq             INTEGER NOT NULL DEFAULT 0,
    visibility_timeout INTEGER NOT NULL DEFAULT 30,
    delay_seconds      INTEGER NOT NULL DEFAULT 0,
    retention_seconds  INTEGER NOT NULL DEFAULT 345600,
    -- Deliveries before a message moves to the DLQ (SQS's maxReceiveCount); 0 = never.
    max_receive_count  INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    -- Messages in the queue and their bytes (body + attributes), kept by the triggers below.
    message_count      INTEGER NOT NULL DEFAULT 0,
    message_bytes      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (app_id, name)
);

INSERT INTO queues_new (id, name, app_id, env_id, dlq_id, is_dlq, visibility_timeout,
    delay_seconds, retention_seconds, max_receive_count, created_at, message_count, message_bytes)
SELECT q.id, q.name, q.app_id, q.env_id, q.dlq_id, q.is_dlq, q.visibility_timeout,
    q.delay_seconds, q.retention_seconds, q.max_receive_count, q.created_at,
    (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id),
    (SELECT COALESCE(SUM(length(CAST(m.body AS BLOB)) + length(CAST(m.attributes AS BLOB))), 0)
       FROM messages m WHERE m.queue_id = q.id)
FROM queues q;

CREATE TEMP TABLE messages_aside AS SELECT * FROM messages;
DROP TABLE queues;
ALTER TABLE queues_new RENAME TO queues;
INSERT INTO messages SELECT * FROM messages_aside;
DROP TABLE messages_aside;
CREATE INDEX queues_env ON queues(env_id);
CREATE INDEX queues_app ON queues(app_id);

CREATE TRIGGER messages_counted_in AFTER INSERT ON messages BEGIN
    UPDATE queues SET message_count = message_count + 1,
        message_bytes = message_bytes + length(CAST(NEW.body AS BLOB)) + length(CAST(NEW.attributes AS BLOB))
    WHERE id = NEW.queue_id;
END;

CREATE TRIGGER messages_counted_out AFTER DELETE ON messages BEGIN
    UPDATE queues SET message_count = message_count - 1,
        message_bytes = message_bytes - length(CAST(OLD.body AS BLOB)) - length(CAST(OLD.attributes AS BLOB))
    WHERE id = OLD.queue_id;
END;

CREATE TRIGGER messages_counted_moved AFTER UPDATE OF queue_id ON messages
WHEN OLD.queue_id <> NEW.queue_id BEGIN
    UPDATE queues SET message_count = message_count - 1,
        message_bytes = message_bytes - length(CAST(OLD.body AS BLOB)) - length(CAST(OLD.attributes AS BLOB))
    WHERE id = OLD.queue_id;
    UPDATE queues SET message_count = message_count + 1,
        message_bytes = message_bytes + length(CAST(NEW.body AS BLOB)) + length(CAST(NEW.attributes AS BLOB))
    WHERE id = NEW.queue_id;
END;
