-- What each recent `triggerd apply` read and left behind: the fingerprint of its files (bytes,
-- order, options, code) and a digest of the rows of its workflows right after it wrote them.
-- A re-apply of the same files finds its fingerprint here and, while the rows still have
-- that digest, needs neither to parse the files nor to compare them row by row. Only the
-- latest few are kept (apply deletes the older ones).
CREATE TABLE applied_definitions (
    fingerprint  text PRIMARY KEY,
    workflow_ids uuid[] NOT NULL,
    zones        text[] NOT NULL,
    workflows    integer NOT NULL,
    triggers     integer NOT NULL,
    state        text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applied_definitions_applied_at ON applied_definitions (applied_at);
