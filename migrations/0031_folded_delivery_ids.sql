-- A webhook request folded into a debounce window keeps its delivery id (its dedupe key)
-- and when that id expires: a later redelivery of it is answered as a duplicate of the
-- window's run. Only the run's own id was kept (workflow_executions.dedupe_key), so the
-- redelivery of a folded request started a second run with that request's payload.
--
-- Only folded requests set it (few): the partial index holds only those rows, and adding
-- two empty columns rewrites nothing.
ALTER TABLE webhook_requests ADD COLUMN dedupe_key text;
ALTER TABLE webhook_requests ADD COLUMN dedupe_expires_at timestamptz;
CREATE INDEX webhook_requests_folded_delivery ON webhook_requests (trigger_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
