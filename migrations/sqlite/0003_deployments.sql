-- Zero-downtime deployments: every environment setting, the last health verdict, and
-- deployment records with what the balancer served while they ran.

ALTER TABLE environments ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE environments ADD COLUMN health TEXT NOT NULL DEFAULT 'Pending';

ALTER TABLE operations ADD COLUMN policy TEXT;
ALTER TABLE operations ADD COLUMN batch TEXT;
-- What the environment was before the operation (version, settings, properties, desired):
-- a failed or aborted operation restores it.
ALTER TABLE operations ADD COLUMN before_state TEXT;
ALTER TABLE operations ADD COLUMN requests_before INTEGER;
ALTER TABLE operations ADD COLUMN failed_before INTEGER;
ALTER TABLE operations ADD COLUMN requests INTEGER;
ALTER TABLE operations ADD COLUMN failed INTEGER;

-- Named, versioned snapshots of an environment's settings, per application.
CREATE TABLE saved_configs (
    id         INTEGER PRIMARY KEY,
    app_id     INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    settings   TEXT NOT NULL,
    properties TEXT NOT NULL,
    tier       TEXT NOT NULL,
    mode       TEXT NOT NULL,
    bootstrap  TEXT NOT NULL,
    created_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (app_id, name, revision)
);
