-- The webhook inbox as a list (issue 17.2, 17.3).
--
-- Why a filtered request was filtered when its filter raised (a missing key): kept beside
-- the row so an operator sees it in `webhooks show`; NULL for a plain no-match.
ALTER TABLE webhook_requests ADD COLUMN detail text;

-- `webhooks list` pages newest first by id (time-ordered), optionally for one trigger
-- and/or one outcome: each combination reads one page of an index, not the whole inbox.
CREATE INDEX webhook_requests_trigger_id ON webhook_requests (trigger_id, id DESC);
CREATE INDEX webhook_requests_outcome_id ON webhook_requests (outcome, id DESC);
CREATE INDEX webhook_requests_trigger_outcome_id
    ON webhook_requests (trigger_id, outcome, id DESC);

-- Retention of rows that no run's deletion removes (filtered, or debounced into a run that
-- is gone) finds them by age without reading the rows that have a run.
CREATE INDEX webhook_requests_no_run_received
    ON webhook_requests (received_at) WHERE execution_id IS NULL OR outcome = 'debounced';

-- A deleted trigger's inbox rows forget it, the rows without a run too (filtered ones were
-- only reached through their execution before); the trigger_id index above finds them.
CREATE OR REPLACE FUNCTION triggerd_triggers_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM trigger_slots s USING deleted d WHERE s.trigger_id = d.id;
    UPDATE webhook_requests r SET trigger_id = NULL
    FROM deleted d WHERE r.trigger_id = d.id;
    UPDATE workflow_executions e SET trigger_id = NULL
    FROM deleted d WHERE e.trigger_id = d.id;
    RETURN NULL;
END;
$$;
