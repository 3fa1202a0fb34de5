-- triggerd initial schema (DESIGN §3). Applied in one transaction by triggerd.db.migrate.

-- The runner creates this table before applying anything; repeated here so the file
-- describes the whole schema.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL DEFAULT 'default',
    key         text NOT NULL,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('draft', 'active', 'archived')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflows_tenant_key UNIQUE (tenant_id, key)
);

CREATE TABLE workflow_versions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id      uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version          integer NOT NULL CHECK (version >= 1),
    graph            jsonb NOT NULL,
    parameter_schema jsonb NOT NULL DEFAULT '{}'::jsonb,
    env_config       jsonb NOT NULL DEFAULT '{}'::jsonb,
    timeout_ms       bigint NOT NULL DEFAULT 3600000 CHECK (timeout_ms > 0),
    is_latest        boolean NOT NULL DEFAULT false,
    published_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_versions_number UNIQUE (workflow_id, version)
);
-- At most one latest version per workflow.
CREATE UNIQUE INDEX workflow_versions_one_latest
    ON workflow_versions (workflow_id) WHERE is_latest;

-- A published version is immutable: its graph, schema and env never change.
CREATE FUNCTION triggerd_refuse_published_version_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NOT NULL AND (
           NEW.graph IS DISTINCT FROM OLD.graph
        OR NEW.parameter_schema IS DISTINCT FROM OLD.parameter_schema
        OR NEW.env_config IS DISTINCT FROM OLD.env_config
        OR NEW.timeout_ms IS DISTINCT FROM OLD.timeout_ms
        OR NEW.version IS DISTINCT FROM OLD.version
        OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id
        OR NEW.published_at IS DISTINCT FROM OLD.published_at)
    THEN
        RAISE EXCEPTION 'workflow version % of workflow % is published and immutable; publish a new version instead',
            OLD.version, OLD.workflow_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER workflow_versions_immutable
    BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION triggerd_refuse_published_version_change();

CREATE TABLE workflow_triggers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version     integer CHECK (version IS NULL OR version >= 1),
    name        text NOT NULL,
    type        text NOT NULL CHECK (type IN ('cron', 'webhook', 'manual')),
    enabled     boolean NOT NULL DEFAULT true,
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    input       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- When the trigger was last enabled: a cron trigger never fires for earlier instants.
    enabled_at  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_triggers_name UNIQUE (workflow_id, name)
);
CREATE INDEX workflow_triggers_enabled_type ON workflow_triggers (type) WHERE enabled;
-- Webhook paths are unique among enabled webhook triggers.
CREATE UNIQUE INDEX workflow_triggers_webhook_path
    ON workflow_triggers ((config ->> 'path')) WHERE type = 'webhook' AND enabled;

-- Every change to a trigger wakes every daemon (LISTEN triggerd_triggers); the payload is a
-- hint only, daemons reconcile from the table.
CREATE FUNCTION triggerd_notify_trigger_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('triggerd_triggers', json_build_object(
        'op', TG_OP,
        'id', COALESCE(NEW.id, OLD.id)
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_triggers_notify
    AFTER INSERT OR UPDATE OR DELETE ON workflow_triggers
    FOR EACH ROW EXECUTE FUNCTION triggerd_notify_trigger_change();

CREATE TABLE workflow_executions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id         uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    workflow_version_id uuid REFERENCES workflow_versions (id) ON DELETE SET NULL,
    -- History outlives the trigger: deleting a trigger keeps its executions.
    trigger_id          uuid REFERENCES workflow_triggers (id) ON DELETE SET NULL,
    trigger_name        text,
    trigger_type        text NOT NULL CHECK (trigger_type IN ('cron', 'webhook', 'manual', 'retry')),
    dedupe_key          text,
    -- After this instant the dedupe key is released (webhook dedupe_ttl); NULL: kept.
    dedupe_expires_at   timestamptz,
    status              text NOT NULL DEFAULT 'NEW'
                        CHECK (status IN ('NEW', 'RUNNING', 'WAITING', 'SUCCESS', 'ERROR', 'CANCELED')),
    input               jsonb NOT NULL DEFAULT '{}'::jsonb,
    output              jsonb,
    context             jsonb NOT NULL DEFAULT '{}'::jsonb,
    error_code          text,
    error_message       text,
    scheduled_for       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    start_time          timestamptz,
    end_time            timestamptz,
    attempt             integer NOT NULL DEFAULT 0,
    lease_owner         text,
    lease_expires_at    timestamptz,
    resume_at           timestamptz,
    cancel_requested    boolean NOT NULL DEFAULT false,
    retry_of            uuid REFERENCES workflow_executions (id) ON DELETE SET NULL,
    CONSTRAINT workflow_executions_dedupe UNIQUE (trigger_id, dedupe_key)
);
-- The claim query: oldest runnable first.
CREATE INDEX workflow_executions_new ON workflow_executions (created_at) WHERE status = 'NEW';
CREATE INDEX workflow_executions_waiting ON workflow_executions (resume_at) WHERE status = 'WAITING';
CREATE INDEX workflow_executions_running_lease
    ON workflow_executions (lease_expires_at) WHERE status = 'RUNNING';
-- Overlap checks and listings per trigger.
CREATE INDEX workflow_executions_trigger_active
    ON workflow_executions (trigger_id) WHERE status IN ('NEW', 'RUNNING', 'WAITING');
CREATE INDEX workflow_executions_trigger_created ON workflow_executions (trigger_id, created_at DESC);
CREATE INDEX workflow_executions_status_created ON workflow_executions (status, created_at DESC);
CREATE INDEX workflow_executions_dedupe_expiry ON workflow_executions (dedupe_expires_at)
    WHERE dedupe_expires_at IS NOT NULL;
-- Retention scans finished runs by end time.
CREATE INDEX workflow_executions_end_time ON workflow_executions (end_time)
    WHERE status IN ('SUCCESS', 'ERROR', 'CANCELED');

CREATE TABLE node_executions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    execution_id      uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    node_id           text NOT NULL,
    node_type         text NOT NULL,
    status            text NOT NULL
                      CHECK (status IN ('RUNNING', 'SUCCESS', 'ERROR', 'SKIPPED', 'CANCELED', 'WAITING')),
    attempt           integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    input             jsonb,
    output            jsonb,
    branch            text,
    error_code        text,
    error_message     text,
    start_time        timestamptz,
    end_time          timestamptz,
    execution_time_ms double precision,
    from_node_id      text,
    edge_condition    text,
    CONSTRAINT node_executions_attempt UNIQUE (execution_id, node_id, attempt)
);
CREATE INDEX node_executions_execution ON node_executions (execution_id, start_time);

CREATE TABLE trigger_slots (
    trigger_id    uuid NOT NULL REFERENCES workflow_triggers (id) ON DELETE CASCADE,
    scheduled_for timestamptz NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN (
                      'fired', 'skipped_overlap', 'skipped_misfire', 'skipped_disabled',
                      'buffered', 'canceled_previous', 'duplicate')),
    execution_id  uuid REFERENCES workflow_executions (id) ON DELETE SET NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    detail        text,
    PRIMARY KEY (trigger_id, scheduled_for)
);
CREATE INDEX trigger_slots_recent ON trigger_slots (trigger_id, scheduled_for DESC);

CREATE TABLE webhook_requests (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_id     uuid REFERENCES workflow_triggers (id) ON DELETE SET NULL,
    method         text NOT NULL,
    path           text NOT NULL,
    query          jsonb NOT NULL DEFAULT '{}'::jsonb,
    headers        jsonb NOT NULL DEFAULT '{}'::jsonb,
    body           bytea NOT NULL DEFAULT ''::bytea,
    remote_addr    text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    execution_id   uuid REFERENCES workflow_executions (id) ON DELETE CASCADE
);
CREATE INDEX webhook_requests_execution ON webhook_requests (execution_id);
CREATE INDEX webhook_requests_received ON webhook_requests (received_at);
