-- Sprout's store, SQLite flavour. Times are RFC 3339 text in UTC.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
    created_at    TEXT NOT NULL
);

CREATE TABLE apps (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE versions (
    id          INTEGER PRIMARY KEY,
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    description TEXT,
    status      TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    sha256      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    format      TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    platform    TEXT NOT NULL,
    image       TEXT,
    error       TEXT,
    build_log   TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    built_at    TEXT,
    UNIQUE (app_id, label)
);

CREATE TABLE environments (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    app_id              INTEGER NOT NULL REFERENCES apps(id),
    version_id          INTEGER NOT NULL REFERENCES versions(id),
    -- The version to return to when a deploy fails.
    previous_version_id INTEGER REFERENCES versions(id),
    tier                TEXT NOT NULL,
    mode                TEXT NOT NULL,
    status              TEXT NOT NULL,
    cname               TEXT NOT NULL,
    instance_type       TEXT NOT NULL,
    bootstrap           TEXT NOT NULL,
    min_instances       INTEGER NOT NULL,
    max_instances       INTEGER NOT NULL,
    desired             INTEGER NOT NULL,
    properties          TEXT NOT NULL DEFAULT '{}',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    terminated_at       TEXT
);
-- Names and CNAMEs are unique among environments that still exist.
CREATE UNIQUE INDEX environments_live_name ON environments(name) WHERE status <> 'Terminated';
CREATE UNIQUE INDEX environments_live_cname ON environments(cname) WHERE status <> 'Terminated';

-- Instances the control plane started (the desired side's record; Docker holds the actual side).
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    env_id        INTEGER NOT NULL REFERENCES environments(id),
    version_label TEXT NOT NULL,
    zone          TEXT NOT NULL,
    container_id  TEXT,
    address       TEXT,
    seq           INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    healthy_at    TEXT,
    removed_at    TEXT,
    removed_why   TEXT
);
CREATE INDEX instances_env ON instances(env_id) WHERE removed_at IS NULL;

CREATE TABLE operations (
    id            INTEGER PRIMARY KEY,
    env_id        INTEGER NOT NULL REFERENCES environments(id),
    kind          TEXT NOT NULL,
    version_label TEXT,
    started_by    TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed')),
    message       TEXT
);
CREATE INDEX operations_env ON operations(env_id, id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    env_id     INTEGER REFERENCES environments(id),
    app_id     INTEGER REFERENCES apps(id) ON DELETE SET NULL,
    severity   TEXT NOT NULL CHECK (severity IN ('INFO', 'WARN', 'ERROR')),
    message    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX events_env ON events(env_id, id);
