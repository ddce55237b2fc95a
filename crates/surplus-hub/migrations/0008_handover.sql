-- Graceful exit and repair accounting (issue 11).
-- When a holder gave an allocation up (consent withdrawn, quota lowered, `surplus leave`): a
-- hand-over unfinished by the hub's deadline is counted lost, and repaired.
ALTER TABLE allocations ADD COLUMN evacuating_since BIGINT;
CREATE INDEX allocations_state ON allocations (state);
-- When a holder that was counted lost came back and the hub took its copy back (audited first).
ALTER TABLE allocations ADD COLUMN readopted_at BIGINT;
-- Bytes moved to keep backups alive, by hour and kind (`repair`, `audit`, `handover`): what the
-- operator sees for the last day, whichever hub process moved them.
CREATE TABLE durability_traffic (
    hour BIGINT NOT NULL,
    kind TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (hour, kind)
);
