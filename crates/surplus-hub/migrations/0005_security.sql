-- Security (issue 15): a run uploads one output at most, and the hub remembers which, so that
-- an output nothing refers to can be dropped from staging.
ALTER TABLE task_runs ADD COLUMN uploaded_hash TEXT;

-- Sessions expire when left unused (they are renewed as they are used, up to a maximum age),
-- and their owner can list and end them.
ALTER TABLE sessions ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_subscriber ON sessions (subscriber_id);
