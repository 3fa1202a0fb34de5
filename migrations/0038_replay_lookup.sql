-- A replay numbers itself after the request's kept replays (replay_of = the request):
-- without an index that was a sequential scan of every run, with the request's row
-- locked (128 ms at 520,000 runs, growing with history). Only replays have the column.
CREATE INDEX workflow_executions_replay_of ON workflow_executions (replay_of)
    WHERE replay_of IS NOT NULL;
