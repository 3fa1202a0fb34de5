-- Sub-workflows: a `workflow` node starts a child run that names its parent; the parent,
-- when it waits, is woken when the child ends, and canceling it cancels the children.
ALTER TABLE workflow_executions ADD COLUMN parent_execution_id uuid;
CREATE INDEX workflow_executions_parent ON workflow_executions (parent_execution_id)
    WHERE parent_execution_id IS NOT NULL;
-- A child run's trigger type is `workflow`. NOT VALID: the new list holds the old one.
ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_trigger_type_check;
ALTER TABLE workflow_executions ADD CONSTRAINT workflow_executions_trigger_type_check
    CHECK (trigger_type = ANY (ARRAY['cron', 'interval', 'webhook', 'manual', 'retry',
                                     'on_failure', 'workflow'])) NOT VALID;
