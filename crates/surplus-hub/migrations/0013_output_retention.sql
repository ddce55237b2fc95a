-- Compute jobs' results are kept for a while after the job ends (issue 17), then dropped: when
-- they were.
ALTER TABLE jobs ADD COLUMN outputs_dropped_at BIGINT;
