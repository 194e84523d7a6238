-- Attached resources (issue 15): databases and caches of an application, the environments
-- they are attached to, and their snapshots. A resource's credentials are sealed JSON
-- (SecretBox, purpose "resource-credentials"). A snapshot outlives its resource: it keeps the
-- application, the resource's name and kind, and its file under the data directory.
CREATE TABLE resources (
    id              INTEGER PRIMARY KEY,
    app_id          INTEGER NOT NULL REFERENCES apps(id),
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('postgres', 'mysql', 'redis')),
    size            TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT,
    credentials     TEXT NOT NULL,
    container       TEXT NOT NULL UNIQUE,
    deletion_policy TEXT NOT NULL DEFAULT 'snapshot'
                    CHECK (deletion_policy IN ('snapshot', 'retain', 'delete')),
    -- The environment whose life it follows (`env create --with`), if any.
    coupled_env_id  INTEGER REFERENCES environments(id),
    restored_from   INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE resource_attachments (
    resource_id INTEGER NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    env_id      INTEGER NOT NULL REFERENCES environments(id),
    -- `--as PREFIX`: the variables are PREFIX_DATABASE_URL, ...
    prefix      TEXT,
    -- `attaching` until the environment has rolled with the variables, `detaching` until it
    -- has rolled without them (then the row goes).
    state       TEXT NOT NULL DEFAULT 'attaching'
                CHECK (state IN ('attaching', 'attached', 'detaching')),
    attached_at TEXT NOT NULL,
    PRIMARY KEY (resource_id, env_id)
);
CREATE INDEX resource_attachments_env ON resource_attachments(env_id);

CREATE TABLE resource_snapshots (
    id            INTEGER PRIMARY KEY,
    app_id        INTEGER NOT NULL REFERENCES apps(id),
    resource_name TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('creating', 'available', 'failed')),
    -- Relative to the data directory.
    file          TEXT NOT NULL,
    size_bytes    INTEGER,
    final         INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX resource_snapshots_name ON resource_snapshots(resource_name, id);

CREATE TABLE resource_events (
    id          INTEGER PRIMARY KEY,
    resource_id INTEGER NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    severity    TEXT NOT NULL CHECK (severity IN ('INFO', 'WARN', 'ERROR')),
    message     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX resource_events_resource ON resource_events(resource_id, id);
