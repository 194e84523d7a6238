-- Resources' automated backups, read replicas and health (issue 15).
-- A backup schedule (cron, 5 or 6 fields) and how many automated snapshots to keep; the time
-- of the last scheduled backup (NULL: none yet, the schedule counts from creation).
ALTER TABLE resources ADD COLUMN backup_schedule TEXT;
ALTER TABLE resources ADD COLUMN backup_keep INTEGER;
ALTER TABLE resources ADD COLUMN backup_last_at TEXT;
-- The host name instances reach the primary by: NULL is the resource's name; after a
-- replica is promoted, that replica's (`orders-r1`).
ALTER TABLE resources ADD COLUMN host TEXT;
-- The last health check after Available: 'healthy' or 'unhealthy' (NULL: not checked yet).
ALTER TABLE resources ADD COLUMN health TEXT;
ALTER TABLE resources ADD COLUMN health_at TEXT;

-- Snapshots taken by the backup schedule (pruned to the newest `backup_keep`).
ALTER TABLE resource_snapshots ADD COLUMN automated INTEGER NOT NULL DEFAULT 0;

-- The read replicas of a postgres resource: `idx` names its host (`NAME-rIDX`) and its
-- container and volume (the resource's first container name + `-rIDX`).
CREATE TABLE resource_replicas (
    resource_id INTEGER NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    container   TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (resource_id, idx)
);
