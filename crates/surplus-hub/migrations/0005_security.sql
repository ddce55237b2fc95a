-- Security (issue 15): a run uploads one output at most, and the hub remembers which, so that
-- an output nothing refers to can be dropped from staging.
ALTER TABLE task_runs ADD COLUMN uploaded_hash TEXT;
