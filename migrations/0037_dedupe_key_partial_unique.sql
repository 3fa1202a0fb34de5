-- The contract step that 0033 announced: the dedupe key's uniqueness becomes a partial
-- unique index over the rows that have a key. The full constraint took an index entry for
-- every version of every run, three per run (created, claimed, finished), although only
-- rows with a key can conflict; most webhook runs have none.
--
-- Safe for replicas on the previous releases: every ON CONFLICT clause since 0033 names
-- the predicate `WHERE dedupe_key IS NOT NULL`, which this index matches
-- (tests/unit/test_dedupe_conflict_clauses.py). Lookups by key (`dedupe_key = ...`) imply
-- the predicate, so they keep an index.
--
-- The build reads the whole table and holds writes to it meanwhile (a migration runs in a
-- transaction, so not CONCURRENTLY): about a second per million runs of history.
CREATE UNIQUE INDEX workflow_executions_dedupe_key
    ON workflow_executions (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_dedupe;
