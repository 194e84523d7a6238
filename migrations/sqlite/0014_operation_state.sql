-- What the control loop knows about a running operation, kept on its row (not in memory) so
-- a restarted control plane, or a second one, picks it up where the last pass left it
-- (issue 13): the steps that failed in a row and the last error, the instances of the
-- target revision that exited, when a canary first served in full, and which rollback
-- followed a failed operation.
ALTER TABLE operations ADD COLUMN step_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN last_error TEXT;
ALTER TABLE operations ADD COLUMN exits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN canary_since TEXT;
ALTER TABLE operations ADD COLUMN rolled_back_by INTEGER REFERENCES operations(id);
