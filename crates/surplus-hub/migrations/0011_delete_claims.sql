-- When the hub asked a returning holder to delete a copy nobody needs any more: the claim that
-- lets one sweeping process ask, once per instruction's life, and that taking the copy back
-- (readoption) must not race.
ALTER TABLE allocations ADD COLUMN delete_asked_at BIGINT;
