-- Error workflows: a run started by a workflow's on_failure has trigger type on_failure
-- (its input is the failed run's summary; it never starts another error run).
-- NOT VALID: the new list holds the old one, so the rows already there satisfy it; checking
-- them would scan the whole history under the table's exclusive lock.
ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_trigger_type_check;
ALTER TABLE workflow_executions ADD CONSTRAINT workflow_executions_trigger_type_check
    CHECK (trigger_type = ANY (ARRAY['cron', 'interval', 'webhook', 'manual', 'retry',
                                     'on_failure'])) NOT VALID;
