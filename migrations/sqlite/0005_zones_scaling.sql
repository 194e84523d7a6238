-- Zones a user marked failed (`sprout zone fail`), and scheduled scaling actions.

CREATE TABLE zone_states (
    name       TEXT PRIMARY KEY,
    failed     INTEGER NOT NULL DEFAULT 0,
    changed_at TEXT NOT NULL
);

CREATE TABLE scheduled_actions (
    id         INTEGER PRIMARY KEY,
    env_id     INTEGER NOT NULL REFERENCES environments(id),
    name       TEXT NOT NULL,
    -- Six-field cron (seconds first), UTC.
    cron       TEXT NOT NULL,
    min        INTEGER,
    max        INTEGER,
    desired    INTEGER,
    created_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (env_id, name)
);
