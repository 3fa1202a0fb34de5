-- Lists and retention stay cheap as history grows (issue 14.3).
--
-- The execution lists page newest first by (created_at, id). Without a matching index the
-- unfiltered list and the list of one workflow sorted the whole table for every page
-- (hundreds of milliseconds at 2 million runs); with these they read one page of an index.
-- The indexes for listing by status and by trigger (0001) gain the id, so they give the
-- whole order: otherwise a generic plan may prefer walking every row by time and filtering,
-- which reads the whole table for a status or a trigger that has few runs.
CREATE INDEX workflow_executions_created ON workflow_executions (created_at DESC, id DESC);
CREATE INDEX workflow_executions_workflow_created
    ON workflow_executions (workflow_id, created_at DESC, id DESC);
DROP INDEX workflow_executions_status_created;
CREATE INDEX workflow_executions_status_created
    ON workflow_executions (status, created_at DESC, id DESC);
DROP INDEX workflow_executions_trigger_created;
CREATE INDEX workflow_executions_trigger_created
    ON workflow_executions (trigger_id, created_at DESC, id DESC);

-- The slot ledger's retention finds old slots by their instant; the primary key leads with
-- the trigger, so without this every retention pass would read the whole ledger.
CREATE INDEX trigger_slots_scheduled ON trigger_slots (scheduled_for);
