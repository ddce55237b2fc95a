-- Backup, continued (issue 3): each subscriber's backup settings (household mode, and an erasure
-- coding chosen by hand instead of the automatic one), when a blob was last staged (so that copies
-- staged for a restore are dropped once they are old), and the challenges that check holders still
-- keep the shards they were given.

ALTER TABLE subscribers ADD COLUMN backup_household BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscribers ADD COLUMN backup_data BIGINT;
ALTER TABLE subscribers ADD COLUMN backup_parity BIGINT;

ALTER TABLE blobs ADD COLUMN staged_at BIGINT;

-- One row per shard challenged: the holder is asked for a BLAKE3 (Bao) proof of a random slice,
-- which the hub checks against the shard's hash. `state` is 'waiting', 'passed' or 'failed'.
CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    allocation_id TEXT NOT NULL REFERENCES allocations (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    instruction_id TEXT NOT NULL,
    blob_hash TEXT NOT NULL,
    slice_offset BIGINT NOT NULL,
    slice_length BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL,
    answered_at BIGINT
);
CREATE INDEX challenges_run ON challenges (subscriber_id, run_id);
CREATE UNIQUE INDEX challenges_instruction ON challenges (instruction_id);
