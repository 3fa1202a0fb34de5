-- The tables written on every fire and every webhook request reference their parents
-- without per-row foreign-key checks.
--
-- Why: PostgreSQL checks a foreign key with one lookup and one row lock per inserted row.
-- Writing the 10,000 executions and slot rows of one cron instant ran 60,000 such checks:
-- 620 ms of a 980 ms statement. A webhook request paid five checks (about 40 µs of
-- PostgreSQL CPU). The same guarantees now cost one statement per batch:
--
-- * Inserts: the writing statements (triggerd/store/slots.py, webhooks.py, executions.py)
--   take FOR KEY SHARE locks on the distinct parent rows they reference, as the foreign
--   key did, and write only rows whose parents they locked. A concurrent delete therefore
--   waits for them, or wins and their rows are not written.
-- * Deletes: the ON DELETE actions are statement-level triggers with transition tables,
--   one set-based statement per delete instead of one per deleted row.
--
-- trigger_slots.execution_id stays a plain historical reference: retention may delete the
-- execution a slot created long ago, and the ledger keeps the id it had.

ALTER TABLE workflow_executions
    DROP CONSTRAINT workflow_executions_workflow_id_fkey,
    DROP CONSTRAINT workflow_executions_workflow_version_id_fkey,
    DROP CONSTRAINT workflow_executions_trigger_id_fkey;

ALTER TABLE trigger_slots
    DROP CONSTRAINT trigger_slots_trigger_id_fkey,
    DROP CONSTRAINT trigger_slots_execution_id_fkey;

ALTER TABLE webhook_requests
    DROP CONSTRAINT webhook_requests_trigger_id_fkey,
    DROP CONSTRAINT webhook_requests_execution_id_fkey,
    -- A request row shares its execution's id, so the primary key finds it.
    ADD CONSTRAINT webhook_requests_shares_execution_id CHECK (execution_id = id);

-- Served by the primary keys (trigger_id, scheduled_for) and (id).
DROP INDEX trigger_slots_recent;
DROP INDEX webhook_requests_execution;

-- retry_of keeps its foreign key (set by retries only); its ON DELETE SET NULL needs an
-- index, or retention scans the whole table once per deleted execution.
CREATE INDEX workflow_executions_retry_of ON workflow_executions (retry_of)
    WHERE retry_of IS NOT NULL;

-- Deleting a workflow deletes its executions (its versions and triggers go by their own
-- foreign keys, and their triggers below run too).
CREATE FUNCTION triggerd_workflows_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM workflow_executions e USING deleted d WHERE e.workflow_id = d.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflows_deleted
    AFTER DELETE ON workflows REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_workflows_deleted();

-- Executions outlive the version they ran (ON DELETE SET NULL).
CREATE FUNCTION triggerd_versions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflow_executions e SET workflow_version_id = NULL
    FROM deleted d WHERE e.workflow_version_id = d.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_versions_deleted
    AFTER DELETE ON workflow_versions REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_versions_deleted();

-- History outlives the trigger: its executions and requests keep everything but the
-- reference; its slot ledger goes with it.
CREATE FUNCTION triggerd_triggers_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM trigger_slots s USING deleted d WHERE s.trigger_id = d.id;
    UPDATE webhook_requests r SET trigger_id = NULL
    FROM workflow_executions e JOIN deleted d ON e.trigger_id = d.id
    WHERE r.id = e.id;
    UPDATE workflow_executions e SET trigger_id = NULL
    FROM deleted d WHERE e.trigger_id = d.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_triggers_deleted
    AFTER DELETE ON workflow_triggers REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_triggers_deleted();

-- A request is kept as long as its execution (ON DELETE CASCADE).
CREATE FUNCTION triggerd_executions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_requests r USING deleted d WHERE r.id = d.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_executions_deleted
    AFTER DELETE ON workflow_executions REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_executions_deleted();
