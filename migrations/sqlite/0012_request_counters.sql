-- Every environment's request totals, checkpointed by each server as it counts (added to,
-- never overwritten), so deployment records survive restarts of the control plane (issue 14).
CREATE TABLE request_counters (
    env_id     INTEGER PRIMARY KEY REFERENCES environments(id),
    requests   INTEGER NOT NULL DEFAULT 0,
    status_5xx INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
