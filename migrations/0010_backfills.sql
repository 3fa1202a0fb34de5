-- Backfills (`triggerd triggers backfill`): a trigger's slots over a past range, started by
-- the daemons at a rate. The slots are planned when the backfill is made; `next_index` is
-- the progress, moved in the same transaction as the runs it started, so a daemon that
-- dies mid-way loses nothing and starts nothing twice. One daemon works a backfill at a
-- time (a lease); exactly once per slot is the ledger's and the dedupe key's job.
CREATE TABLE backfills (
    id               uuid PRIMARY KEY,
    trigger_id       uuid NOT NULL REFERENCES workflow_triggers (id) ON DELETE CASCADE,
    range_from       timestamptz NOT NULL,
    range_to         timestamptz NOT NULL,
    only_missing     boolean NOT NULL,
    overlap          text NOT NULL
        CHECK (overlap IN ('allow', 'skip', 'buffer_one', 'cancel_previous')),
    rate_per_second  double precision NOT NULL CHECK (rate_per_second > 0),
    slots            timestamptz[] NOT NULL,
    next_index       integer NOT NULL DEFAULT 0,
    started          integer NOT NULL DEFAULT 0,
    skipped          integer NOT NULL DEFAULT 0,
    state            text NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'done', 'canceled')),
    actor            text NOT NULL,
    note             text,
    owner            text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX backfills_running ON backfills (created_at) WHERE state = 'running';
