-- A workflow's timeout counts the time its run is worked on. Besides parks, a run is not
-- worked on while it is handed back (a graceful stop) or after the last heartbeat of a
-- process that died, until a process takes it up again; after an outage such runs ended
-- TIMEOUT as soon as they were taken up.
--
-- worked_at: the last instant the run is known to have been worked on (set when it is
-- taken up, at every heartbeat, when it is handed back, parked or ended; a park for a
-- retry's backoff counts as work, so it is that park's end). NULL: not known (never
-- taken up, or left by a release without this column), and then nothing is credited.
-- idle_ms: the time since start_time that was not work, credited when the run is taken
-- up again (now - worked_at). The deadline is start_time + timeout + idle_ms.
ALTER TABLE workflow_executions
    ADD COLUMN worked_at timestamptz,
    ADD COLUMN idle_ms bigint NOT NULL DEFAULT 0;

-- Runs in flight keep the parks they already had: before this column the runner
-- subtracted the spans of its parking nodes' rows (wait, approval, workflow). A parked
-- run's current park began with its open parking row (else, a retry's backoff, with its
-- end: resume_at).
UPDATE workflow_executions e
   SET idle_ms = p.closed_ms,
       worked_at = CASE WHEN e.status = 'WAITING'
                        THEN coalesce(p.open_since, e.resume_at, now()) END
  FROM (SELECT n.execution_id,
               coalesce(sum(extract(epoch FROM n.end_time - n.start_time) * 1000)
                        FILTER (WHERE n.end_time > n.start_time), 0)::bigint AS closed_ms,
               min(n.start_time) FILTER (WHERE n.end_time IS NULL
                                           AND n.status = 'WAITING') AS open_since
          FROM node_executions n
         WHERE n.node_type IN ('wait', 'approval', 'workflow') AND n.start_time IS NOT NULL
           AND n.execution_id IN (SELECT id FROM workflow_executions
                                   WHERE status IN ('NEW', 'RUNNING', 'WAITING'))
         GROUP BY n.execution_id) p
 WHERE e.id = p.execution_id;
UPDATE workflow_executions SET worked_at = coalesce(resume_at, now())
 WHERE status = 'WAITING' AND worked_at IS NULL;
