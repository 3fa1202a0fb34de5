-- Workflow memory: JSON values under string keys, per workflow, with an optional expiry
-- (swept by retention). Deleting the workflow deletes its memory.
CREATE TABLE workflow_memory (
    workflow_id uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 512),
    value       jsonb NOT NULL,
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, key)
);
CREATE INDEX workflow_memory_expires ON workflow_memory (expires_at)
    WHERE expires_at IS NOT NULL;

-- A memory node's write is applied once per (execution, node), whatever the attempt: the
-- node run again after a crash finds its result here instead of writing again.
CREATE TABLE memory_writes (
    execution_id uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    node_id      text NOT NULL,
    result       jsonb NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, node_id)
);
