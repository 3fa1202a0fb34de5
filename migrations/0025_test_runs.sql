-- Test runs (`triggerd test`, POST /api/v1/test-runs): an unapplied definition runs under a
-- scratch copy of its workflow (status `test`, key `KEY~test-<id>`: `~` is never in a real
-- key), with no triggers, so nothing schedules or serves it. Its run is marked `test`: the
-- executors' claims leave it alone (only the process that started it runs it), lists and
-- metrics leave it out. Retention deletes the scratch workflows, and their runs with them.
ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check
    CHECK (status = ANY (ARRAY['draft', 'active', 'archived', 'test']));
CREATE INDEX workflows_test_created ON workflows (created_at) WHERE status = 'test';
ALTER TABLE workflow_executions ADD COLUMN test boolean NOT NULL DEFAULT false;
