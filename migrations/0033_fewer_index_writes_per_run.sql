-- Two indexes that every run paid for and no query needed. Each run writes its execution
-- row three times (inserted, claimed, finished; the status changes rule out HOT updates),
-- so every index of workflow_executions takes three entries a run, and node_executions
-- takes one entry an index for each of a run's nodes.
--
-- * The dedupe key's uniqueness was a full index: one entry for every row, although only
--   runs with a key (webhook delivery ids, cron and backfill slots) can conflict. It is
--   now a partial unique index over the rows with a key; ON CONFLICT names its predicate.
-- * node_executions_execution (execution_id, start_time) served lookups by execution_id,
--   which node_executions_attempt (execution_id, node_id, attempt) serves as well: every
--   statement that reads or deletes node rows names one execution or a set of them, and
--   sorting one run's few rows by start time costs nothing.
CREATE UNIQUE INDEX workflow_executions_dedupe_key ON workflow_executions (trigger_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_dedupe;
DROP INDEX node_executions_execution;
