-- Compute jobs always end (issue 17): a job's deadline, after which its unfinished tasks expire.
-- NULL for jobs submitted before: they get the default deadline from their submission.
ALTER TABLE jobs ADD COLUMN deadline BIGINT;
