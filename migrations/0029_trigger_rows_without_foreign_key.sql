-- workflow_triggers loses its per-row foreign key to workflows, as the hot tables did in
-- migrations 0002 and 0028: a first apply of 100,000 cron triggers (bench/apply.py) ran
-- 100,000 checks of it, a trigger call, an index lookup and a row lock each, for the
-- 10,000 workflows those rows reference (0.6-0.7 s of a 3.3 s write, measured).
--
-- What the foreign key guaranteed still holds, one statement per write instead of one
-- check per row:
--
-- * Inserts: a statement-level trigger takes the FOR KEY SHARE locks the foreign key took,
--   once per distinct workflow and in id order (two writers queue, they do not deadlock),
--   and refuses the statement with the foreign key's error (SQLSTATE 23503, the same
--   constraint name) when a workflow is missing. A concurrent delete of the workflow
--   therefore waits for the writer's transaction, or wins and the write fails.
-- * Updates that move a trigger to another workflow (nothing in triggerd does) are checked
--   row by row; the trigger fires only when an UPDATE names workflow_id.
-- * Deletes: ON DELETE CASCADE becomes part of the statement-level trigger that already
--   deletes a workflow's executions; the triggers go first, as the cascade ran before it.
--   TRUNCATE workflows CASCADE empties the triggers too (a TRUNCATE trigger).

ALTER TABLE workflow_triggers DROP CONSTRAINT workflow_triggers_workflow_id_fkey;

CREATE FUNCTION triggerd_triggers_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    locked bigint;
    missing uuid;
BEGIN
    SELECT count(DISTINCT workflow_id) INTO wanted FROM triggerd_new;
    PERFORM 1 FROM workflows w
     WHERE w.id = ANY(ARRAY(SELECT DISTINCT n.workflow_id FROM triggerd_new n))
     ORDER BY w.id FOR KEY SHARE OF w;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < wanted THEN
        SELECT n.workflow_id INTO missing FROM triggerd_new n
         WHERE NOT EXISTS (SELECT 1 FROM workflows w WHERE w.id = n.workflow_id) LIMIT 1;
        RAISE EXCEPTION 'insert or update on table "workflow_triggers" violates foreign key constraint "workflow_triggers_workflow_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'workflow_triggers_workflow_id_fkey',
                  TABLE = 'workflow_triggers',
                  DETAIL = format('Key (workflow_id)=(%s) is not present in table "workflows".',
                                  missing);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_triggers_inserted
    AFTER INSERT ON workflow_triggers REFERENCING NEW TABLE AS triggerd_new
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_triggers_inserted();

CREATE FUNCTION triggerd_trigger_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = NEW.workflow_id FOR KEY SHARE OF w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "workflow_triggers" violates foreign key constraint "workflow_triggers_workflow_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'workflow_triggers_workflow_id_fkey',
                  TABLE = 'workflow_triggers',
                  DETAIL = format('Key (workflow_id)=(%s) is not present in table "workflows".',
                                  NEW.workflow_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_triggers_moved
    AFTER UPDATE OF workflow_id ON workflow_triggers
    FOR EACH ROW WHEN (OLD.workflow_id IS DISTINCT FROM NEW.workflow_id)
    EXECUTE FUNCTION triggerd_trigger_moved();

CREATE OR REPLACE FUNCTION triggerd_workflows_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM workflow_triggers
     WHERE workflow_id = ANY(ARRAY(SELECT d.id FROM deleted d));
    DELETE FROM workflow_executions e USING deleted d WHERE e.workflow_id = d.id;
    RETURN NULL;
END;
$$;

-- TRUNCATE workflows CASCADE emptied the triggers through the foreign key; it still does.
CREATE FUNCTION triggerd_workflows_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE workflow_triggers CASCADE;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflows_truncated
    AFTER TRUNCATE ON workflows
    FOR EACH STATEMENT EXECUTE FUNCTION triggerd_workflows_truncated();
