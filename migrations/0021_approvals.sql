-- Approvals (human in the loop): a run parked on an `approval` node waits for a decision.
-- A decision arrives through a resume token (POST /hooks/_resume/{token}: 32 random bytes,
-- only their SHA-256 stored, single use) or from an operator (executions resume), which
-- records it under a token of its own. The node consumes one decided token: the row
-- remembers which node used it, so a node run again after a crash finds its decision.
CREATE TABLE resume_tokens (
    token_hash   bytea PRIMARY KEY,
    execution_id uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decision     text CHECK (decision IN ('approved', 'rejected')),
    note         text,
    decided_by   text,
    input        jsonb,
    decided_at   timestamptz,
    used_by_node text,
    used_at      timestamptz
);
CREATE INDEX resume_tokens_execution ON resume_tokens (execution_id);

-- One row per approval node a run reached: when it asked, and its deadline (stable across
-- restarts, so a timeout is measured from the first time the node ran).
CREATE TABLE approvals (
    execution_id uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    node_id      text NOT NULL,
    message      text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    PRIMARY KEY (execution_id, node_id)
);
