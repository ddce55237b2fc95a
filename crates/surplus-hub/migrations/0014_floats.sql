-- Homogeneous redundancy (issue 13): the runs of a task go to donors of one architecture class,
-- so that their floating point may run without NaN canonicalisation.
-- Each device's architecture class, from its latest report ('' for agents that do not say).
ALTER TABLE devices ADD COLUMN arch_class TEXT NOT NULL DEFAULT '';
-- How a job's runs must agree: 'portable' (across architectures, NaNs canonicalised) or
-- 'native' (within one class). Jobs from before ran portable, and go on doing so.
ALTER TABLE jobs ADD COLUMN floats TEXT NOT NULL DEFAULT 'portable';
-- The class of the device a run was sent to.
ALTER TABLE task_runs ADD COLUMN arch_class TEXT NOT NULL DEFAULT '';
