-- When a device came back after a long absence (away longer than a day): its shards are audited
-- before anything else.
ALTER TABLE devices ADD COLUMN returned_at BIGINT;
