-- pause_after_failures names the runs it paused for: the ids of the consecutive failed
-- scheduled runs are kept beside their count (cleared by a success or a resume), and the
-- last successful scheduled run's end feeds the monitor gauges without a history scan.
ALTER TABLE trigger_state
    ADD COLUMN failed_executions uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_success_at timestamptz;

-- Audit details and backfill runs' input and context were written as JSON text into jsonb
-- parameters, which the pool's codec encoded once more: each is a JSON string holding the
-- object. Store the objects (backfill runs exist only since backfills did: the index on
-- created_at bounds the scan).
UPDATE audit_log SET detail = (detail #>> '{}')::jsonb WHERE jsonb_typeof(detail) = 'string';
UPDATE workflow_executions
SET input = CASE WHEN jsonb_typeof(input) = 'string' THEN (input #>> '{}')::jsonb ELSE input END,
    context = (context #>> '{}')::jsonb
WHERE created_at >= (SELECT coalesce(min(created_at), 'infinity') FROM backfills)
  AND jsonb_typeof(context) = 'string';

-- The triggers marked `monitor: true` (few): the metrics read them on every refresh.
CREATE INDEX workflow_triggers_monitored ON workflow_triggers (id)
    WHERE (config->>'monitor') = 'true';
