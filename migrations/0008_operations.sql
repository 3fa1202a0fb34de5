-- The second round's foundations: the operations layer's audit trail, runtime state kept
-- apart from definitions, the interval schedule kind, the ledger's operator outcomes and
-- the webhook inbox's outcomes.

-- Who did what, when, with which note: one row per mutating operation, written in the same
-- transaction as the change itself (triggerd/operations).
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL DEFAULT 'default',
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,          -- cli:<unix user>, token:<name>, scheduler, ...
    action      text NOT NULL,          -- fire, pause, resume, skip, backfill, enable, ...
    target_kind text NOT NULL,          -- trigger, workflow, execution, backfill, ...
    target      text NOT NULL,          -- its name: workflow/trigger, key or execution id
    target_id   uuid,
    note        text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
-- Newest first is id order (the primary key); per target likewise.
CREATE INDEX audit_log_target ON audit_log (target, id DESC);

-- A trigger's runtime state: what operators and the scheduler decided, never what a
-- definition says, so `apply` and reloads leave it alone. No row means the defaults
-- (running, nothing counted).
CREATE TABLE trigger_state (
    trigger_id           uuid PRIMARY KEY REFERENCES workflow_triggers (id) ON DELETE CASCADE,
    paused               boolean NOT NULL DEFAULT false,
    note                 text,          -- the pause (or resume) note
    changed_by           text,          -- the actor of the last pause or resume
    changed_at           timestamptz,
    -- Slots at or before this instant are never caught up: set by resume (without
    -- --catch-up), so a resumed trigger does not run what it missed while paused.
    floor_at             timestamptz,
    scheduled_runs       bigint NOT NULL DEFAULT 0 CHECK (scheduled_runs >= 0),  -- max_runs
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    completed_at         timestamptz,   -- end_at or max_runs reached
    updated_at           timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE trigger_slots DROP CONSTRAINT trigger_slots_outcome_check;
ALTER TABLE trigger_slots ADD CONSTRAINT trigger_slots_outcome_check CHECK (outcome = ANY (ARRAY[
    'fired', 'skipped_overlap', 'skipped_misfire', 'skipped_disabled', 'buffered',
    'canceled_previous', 'duplicate', 'skipped_paused', 'skipped_manual']));

ALTER TABLE workflow_triggers DROP CONSTRAINT workflow_triggers_type_check;
ALTER TABLE workflow_triggers ADD CONSTRAINT workflow_triggers_type_check
    CHECK (type = ANY (ARRAY['cron', 'interval', 'webhook', 'manual']));

ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_trigger_type_check;
ALTER TABLE workflow_executions ADD CONSTRAINT workflow_executions_trigger_type_check
    CHECK (trigger_type = ANY (ARRAY['cron', 'interval', 'webhook', 'manual', 'retry']));
-- A replayed webhook delivery's run names the stored request it came from.
ALTER TABLE workflow_executions ADD COLUMN replay_of uuid;

-- Every stored delivery has an outcome; a redelivery bumps its first delivery's count and
-- last-seen time instead of adding a row. A debounced request points to the pending run
-- it joined, so it no longer shares its id with an execution.
ALTER TABLE webhook_requests
    ADD COLUMN outcome text NOT NULL DEFAULT 'accepted'
        CHECK (outcome = ANY (ARRAY['accepted', 'filtered', 'debounced'])),
    ADD COLUMN delivery_count integer NOT NULL DEFAULT 1 CHECK (delivery_count >= 1),
    ADD COLUMN last_seen_at timestamptz;
ALTER TABLE webhook_requests DROP CONSTRAINT webhook_requests_shares_execution_id;
ALTER TABLE webhook_requests ADD CONSTRAINT webhook_requests_shares_execution_id
    CHECK (execution_id = id OR outcome = 'debounced');
