-- Durability (issue 11): what the hub knows of each pack's shards, read from the shard's own
-- header when it is placed: how many shards rebuild the pack (pack_data), how many more protect
-- it (pack_parity), and which of them this one is. NULL when the blob was not staged or is not a
-- shard.
ALTER TABLE placements ADD COLUMN pack_data BIGINT;
ALTER TABLE placements ADD COLUMN pack_parity BIGINT;
ALTER TABLE placements ADD COLUMN shard_index BIGINT;
