-- Backup (issue 3): the subscriber's passphrase-wrapped master key, their sealed backup objects
-- (indexes and snapshots: ciphertext only), and which pack a shard's placement belongs to, so
-- that the shards of one pack land on distinct holders.

CREATE TABLE wrapped_keys (
    subscriber_id TEXT PRIMARY KEY REFERENCES subscribers (id),
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE backup_objects (
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subscriber_id, kind, name)
);

ALTER TABLE placements ADD COLUMN pack TEXT;
CREATE INDEX placements_pack ON placements (subscriber_id, pack);
