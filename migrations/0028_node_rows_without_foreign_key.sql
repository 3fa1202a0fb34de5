-- node_executions loses its per-row foreign key, like the other hot tables in migration
-- 0002: about three node rows are written per run, and PostgreSQL checked each one with a
-- trigger call, an index lookup and a row lock. Without them the database spends 10-16 µs
-- less per three-node run in bench/executor.py (270-278 against 278-294 µs, measured).
--
-- * Inserts: the statement that writes node rows (triggerd/store/executions.py,
--   _UPSERT_NODES) takes the FOR KEY SHARE lock on the execution that the foreign key
--   took, in the statement itself, and writes only the rows whose execution it locked. A
--   concurrent delete of the execution therefore waits for it, or wins and the rows are
--   not written.
-- * Deletes: ON DELETE CASCADE becomes part of the statement-level trigger that already
--   deletes an execution's request row and resume copies; the node rows are found with an
--   index probe per deleted execution (node_executions_execution), never a scan.

ALTER TABLE node_executions DROP CONSTRAINT node_executions_execution_id_fkey;

CREATE OR REPLACE FUNCTION triggerd_executions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_requests r USING deleted d WHERE r.id = d.id;
    DELETE FROM node_executions
     WHERE execution_id = ANY(ARRAY(SELECT d.id FROM deleted d));
    DELETE FROM node_outputs_resume o USING deleted d WHERE o.execution_id = d.id;
    RETURN NULL;
END;
$$;
