-- Tenants and correlation (DESIGN §5b). Existing rows stay in the `default` tenant: every
-- new tenant column defaults to it, which PostgreSQL records without rewriting the table.

-- A trigger carries its workflow's tenant, so a webhook path can be unique per tenant
-- (one index over one table) and a webhook's tenant is known without a join.
ALTER TABLE workflow_triggers ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
UPDATE workflow_triggers t SET tenant_id = w.tenant_id
  FROM workflows w WHERE w.id = t.workflow_id AND w.tenant_id <> 'default';
DROP INDEX workflow_triggers_webhook_path;
CREATE UNIQUE INDEX workflow_triggers_webhook_path
    ON workflow_triggers (tenant_id, (config ->> 'path')) WHERE type = 'webhook' AND enabled;

-- A run carries its tenant (lists, quotas and fair claiming read it without a join) and
-- the ids that link it to the agent platform's runs.
ALTER TABLE workflow_executions
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default',
    ADD COLUMN agent_id text,
    ADD COLUMN session_id text,
    ADD COLUMN conversation_id text,
    ADD COLUMN correlation jsonb;
UPDATE workflow_executions e SET tenant_id = w.tenant_id
  FROM workflows w WHERE w.id = e.workflow_id AND w.tenant_id <> 'default';

-- A tenant's page of runs, newest first; the plain NEW queue per tenant (fair claiming
-- walks the tenants that have work through it).
CREATE INDEX workflow_executions_tenant_created
    ON workflow_executions (tenant_id, created_at DESC, id DESC);
CREATE INDEX workflow_executions_tenant_new ON workflow_executions (tenant_id, created_at)
    WHERE status = 'NEW' AND not_before IS NULL AND concurrency_key IS NULL;
CREATE INDEX workflow_executions_agent
    ON workflow_executions (agent_id, created_at DESC, id DESC) WHERE agent_id IS NOT NULL;
CREATE INDEX workflow_executions_session
    ON workflow_executions (session_id, created_at DESC, id DESC) WHERE session_id IS NOT NULL;
CREATE INDEX workflow_executions_conversation
    ON workflow_executions (conversation_id, created_at DESC, id DESC)
    WHERE conversation_id IS NOT NULL;

-- The audit trail of a tenant, newest first.
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);

-- The plain NEW queue is read per tenant now (fair claiming): the tenant index replaces
-- the one of migration 0013, so an insert maintains one queue index, not two.
DROP INDEX workflow_executions_new;

-- Retention reads each tenant's oldest runs through workflow_executions_tenant_created
-- (a tenant may keep its runs longer or shorter): the end_time index has no reader left,
-- and every finished run no longer pays for it.
DROP INDEX workflow_executions_end_time;
