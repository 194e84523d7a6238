-- Each server's counting of requests (issue 14): a row while it counts, closed when it stops
-- cleanly (or hands over). A row a crash left open is closed by the next start with crashed = 1:
-- the counts of its last moments were lost, so records of operations that ran across that
-- moment are approximate.
CREATE TABLE count_sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    crashed    INTEGER NOT NULL DEFAULT 0
);
