-- The hub's schema. One set of migrations serves SQLite and PostgreSQL, so it sticks to what
-- both understand: TEXT, BIGINT, DOUBLE PRECISION, and times as milliseconds since the epoch.

CREATE TABLE subscribers (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    plan TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_heartbeat BIGINT,
    report TEXT,
    spare TEXT,
    spare_storage_bytes BIGINT NOT NULL DEFAULT 0,
    compute_slots BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_subscriber ON devices (subscriber_id);

-- One row per device per five-minute slot in which it was heard from: availability is the share
-- of slots present over a window.
CREATE TABLE device_presence (
    device_id TEXT NOT NULL REFERENCES devices (id),
    slot BIGINT NOT NULL,
    PRIMARY KEY (device_id, slot)
);

CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    staged BIGINT NOT NULL
);

CREATE TABLE blob_owners (
    hash TEXT NOT NULL REFERENCES blobs (hash),
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    device_id TEXT REFERENCES devices (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (hash, subscriber_id)
);

-- A subscriber's wish to keep a blob on `copies` holders. `satisfied_at` is set once every copy is
-- confirmed, which takes it out of the scheduler's view.
CREATE TABLE placements (
    hash TEXT NOT NULL REFERENCES blobs (hash),
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    source_device_id TEXT REFERENCES devices (id),
    copies BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    satisfied_at BIGINT,
    PRIMARY KEY (hash, subscriber_id)
);
CREATE INDEX placements_unsatisfied ON placements (satisfied_at);

-- The allocation ledger.
CREATE TABLE allocations (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    purpose TEXT NOT NULL,
    blob_hash TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    released_at BIGINT
);
CREATE INDEX allocations_device_state ON allocations (device_id, state);
CREATE INDEX allocations_subscriber ON allocations (subscriber_id);
CREATE INDEX allocations_blob ON allocations (blob_hash);
-- A device holds one copy of a given content at most, whoever it is for: the vault keeps one file
-- per hash, so two live allocations of it on one device would share (and delete) one file.
CREATE UNIQUE INDEX allocations_one_live_copy ON allocations (blob_hash, device_id)
    WHERE state IN ('pending', 'active', 'evacuating');

CREATE TABLE instructions (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id),
    allocation_id TEXT REFERENCES allocations (id),
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    delivered_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    completed_at BIGINT,
    result TEXT
);
CREATE INDEX instructions_device_state ON instructions (device_id, state);
CREATE INDEX instructions_state_created ON instructions (state, created_at);
CREATE INDEX instructions_allocation ON instructions (allocation_id);
