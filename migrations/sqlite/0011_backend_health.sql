-- Backends the balancer last had in rotation, so a restarted server routes to them from its
-- first request instead of waiting for fresh health checks (issue 14). Replaced wholesale.
CREATE TABLE backend_health (
    instance_id TEXT PRIMARY KEY,
    env         TEXT NOT NULL,
    address     TEXT NOT NULL,
    checked_at  TEXT NOT NULL
);
