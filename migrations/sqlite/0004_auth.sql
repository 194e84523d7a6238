-- Named API tokens and revoked sessions. A token is a JWT whose `jti` is `id`; a session
-- token (from a login) gets a row only when it is revoked (logout), so every request checks
-- one indexed row.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'api')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX api_tokens_name ON api_tokens(username, name) WHERE kind = 'api';

-- Every change made through the API, and who made it.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    actor      TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
