-- Debounce and concurrency keys of webhook triggers (DESIGN §5b).

-- A run held back: `not_before` (a pending debounced run, started no earlier) or a
-- concurrency key (at most `concurrency_limit` runs of its trigger with the same key
-- RUNNING or WAITING at once). Such rows are claimed by their own query; the executor's
-- hot claim only ever sees plain NEW rows, through the narrowed index below.
ALTER TABLE workflow_executions
    ADD COLUMN not_before timestamptz,
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer CHECK (concurrency_limit >= 1),
    ADD CONSTRAINT workflow_executions_concurrency_pair
        CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL));

DROP INDEX workflow_executions_new;
CREATE INDEX workflow_executions_new ON workflow_executions (created_at)
    WHERE status = 'NEW' AND not_before IS NULL AND concurrency_key IS NULL;
CREATE INDEX workflow_executions_held ON workflow_executions (created_at)
    WHERE status = 'NEW' AND (not_before IS NOT NULL OR concurrency_key IS NOT NULL);
-- What a key holds now: its runs that started and have not ended.
CREATE INDEX workflow_executions_concurrency ON workflow_executions (trigger_id, concurrency_key)
    WHERE concurrency_key IS NOT NULL AND status IN ('RUNNING', 'WAITING');

-- One open debounce window per (trigger, key): the pending run later requests fold into.
-- Its row lock orders the requests of one key across replicas; a window whose run was
-- claimed (no longer NEW) is replaced by the next request's.
CREATE TABLE debounce_windows (
    trigger_id   uuid NOT NULL REFERENCES workflow_triggers (id) ON DELETE CASCADE,
    key          text NOT NULL,
    execution_id uuid NOT NULL,
    opened_at    timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (trigger_id, key)
);
