-- Forgetting is undoable for a grace period (issue 15): a forgotten backup object and a let-go
-- placement are only marked, hidden from their owner's listings, and kept (the holders keep
-- their shards) until the grace period ends; their owner can recover them until then.
ALTER TABLE backup_objects ADD COLUMN deleted_at BIGINT;
CREATE INDEX backup_objects_deleted ON backup_objects (deleted_at);

ALTER TABLE placements ADD COLUMN dropped_at BIGINT;
CREATE INDEX placements_dropped ON placements (dropped_at);
