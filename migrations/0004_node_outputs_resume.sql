-- Resume copies of node outputs (issue 12).
--
-- node_executions.output is the display copy: truncated above [executor] max_output_bytes,
-- secrets masked. A run resumed after a wait, a hand-back or a crash must see the real
-- value, so an output whose display copy differs from it also gets a row here: the full
-- value, encrypted by the executor (AES-256-GCM, triggerd/executor/resume.py). The database
-- never sees the plaintext or the key. Rows are written in the same transaction as their
-- node row and exist only while the run has not ended.
CREATE TABLE node_outputs_resume (
    execution_id uuid NOT NULL,
    node_id      text NOT NULL,
    attempt      integer NOT NULL,
    ciphertext   bytea NOT NULL,
    PRIMARY KEY (execution_id, node_id, attempt)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE node_outputs_resume ALTER COLUMN ciphertext SET STORAGE EXTERNAL;

-- Like the other hot tables (migration 0002), no per-row foreign key: the executor writes
-- these rows after their node row, whose foreign key holds the execution; deletes follow
-- the execution through the statement-level trigger below.
CREATE OR REPLACE FUNCTION triggerd_executions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_requests r USING deleted d WHERE r.id = d.id;
    DELETE FROM node_outputs_resume o USING deleted d WHERE o.execution_id = d.id;
    RETURN NULL;
END;
$$;

-- A run that ends without an executor holding it (canceled while NEW or WAITING, by a
-- request or by an overlap policy) drops its copies here; the executor drops them itself
-- when it finishes a run. The WHEN clause keeps the function off the executor's hot path.
CREATE FUNCTION triggerd_execution_ended_unheld() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM node_outputs_resume WHERE execution_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_executions_ended_unheld
    AFTER UPDATE OF status ON workflow_executions
    FOR EACH ROW
    WHEN (OLD.status IN ('NEW', 'WAITING') AND NEW.status IN ('SUCCESS', 'ERROR', 'CANCELED'))
    EXECUTE FUNCTION triggerd_execution_ended_unheld();
