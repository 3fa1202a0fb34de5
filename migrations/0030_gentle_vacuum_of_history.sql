-- Autovacuum of the history tables that retention deletes from goes at a fifth of the
-- default pace (a 10 ms pause per cost limit instead of 2 ms).
--
-- Why: after retention deletes a large backlog (a million old runs: their node rows,
-- requests and slots), autovacuum cleaned those tables at full speed and competed with
-- the live writes: webhooks stored meanwhile had a p99 of 1.9-2.8 times their baseline
-- (bench/history.py retention-ingest, 2 million executions, 1,000 requests a second).
-- With autovacuum off the same run stayed at 1.03 times: the stalls are vacuum's.
--
-- Only the append-and-delete tables. workflow_executions keeps the default: it also holds
-- the queue (NEW, RUNNING), whose dead versions (two per run) a slower vacuum would leave
-- in the claim's index for longer.
ALTER TABLE node_executions SET (autovacuum_vacuum_cost_delay = 10);
ALTER TABLE webhook_requests SET (autovacuum_vacuum_cost_delay = 10);
ALTER TABLE trigger_slots SET (autovacuum_vacuum_cost_delay = 10);
