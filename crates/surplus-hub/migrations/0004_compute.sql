-- Donated compute (issue 4): jobs of WebAssembly tasks, the runs of each task on donors' devices
-- (each run is also an allocation of kind 'compute' in the ledger, with the same id), each
-- device's trust, and the credit subscribers earn and spend, in core-milliseconds.

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    module_hash TEXT NOT NULL,
    module_size BIGINT NOT NULL,
    -- A JSON array of strings.
    args TEXT NOT NULL,
    replicas BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    output_bytes BIGINT NOT NULL,
    own_devices BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_subscriber ON jobs (subscriber_id, created_at);
CREATE INDEX jobs_state ON jobs (state);

-- `quorum` starts as the job's replicas; it is 1 when the first run went to a trusted device
-- whose result may be accepted alone (adaptive replication).
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    position BIGINT NOT NULL,
    input_name TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    input_size BIGINT NOT NULL,
    seed BIGINT NOT NULL,
    quorum BIGINT NOT NULL,
    state TEXT NOT NULL,
    output_hash TEXT,
    output_size BIGINT,
    error TEXT,
    finished_at BIGINT
);
CREATE INDEX tasks_job ON tasks (job_id, position);
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE task_runs (
    id TEXT PRIMARY KEY REFERENCES allocations (id),
    task_id TEXT NOT NULL REFERENCES tasks (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    donor_id TEXT NOT NULL REFERENCES subscribers (id),
    instruction_id TEXT NOT NULL,
    state TEXT NOT NULL,
    -- The TaskOutcome as JSON, once it ended on the device.
    outcome TEXT,
    output_hash TEXT,
    output_size BIGINT,
    running_ms BIGINT NOT NULL DEFAULT 0,
    deadline BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX task_runs_task ON task_runs (task_id);
CREATE INDEX task_runs_device_state ON task_runs (device_id, state);
CREATE INDEX task_runs_state ON task_runs (state);

-- Trust, as BOINC's adaptive replication keeps it: consecutive valid results, reset by an invalid one.
ALTER TABLE devices ADD COLUMN trust_streak BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN results_valid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN results_invalid BIGINT NOT NULL DEFAULT 0;

-- Every change of a subscriber's credit: the plan's starting grant ('granted'), validated runs
-- their devices did ('earned', positive) and validated runs done for them ('spent', negative).
CREATE TABLE credits (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    amount_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX credits_subscriber ON credits (subscriber_id);
CREATE UNIQUE INDEX credits_run ON credits (run_id, reason);

-- Subscribers who signed up before compute existed get their plan's starting credit too.
INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at)
SELECT 'grant-' || id, id,
       CASE plan WHEN 'family' THEN 180000000 ELSE 36000000 END,
       'granted', NULL, created_at
FROM subscribers;
