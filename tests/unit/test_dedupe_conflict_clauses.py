"""Every ``ON CONFLICT`` on the dedupe key names the predicate ``WHERE dedupe_key IS NOT
NULL``. Such a clause matches the partial unique index ``workflow_executions_dedupe_key``
(migration 0037), which replaced the full unique constraint ``workflow_executions_dedupe``;
a clause without the predicate matches only the full constraint, and fails with "there is
no unique or exclusion constraint matching the ON CONFLICT specification" on every cron
write and webhook."""

from __future__ import annotations

import re
from pathlib import Path

STORE = Path(__file__).resolve().parents[2] / "triggerd"
CLAUSE = re.compile(r"ON CONFLICT \(trigger_id, dedupe_key\)(?P<rest>[^\n\"]*)")


def test_every_dedupe_conflict_clause_names_the_partial_predicate() -> None:
    found: list[tuple[str, str]] = []
    for path in sorted(STORE.rglob("*.py")):
        for match in CLAUSE.finditer(path.read_text(encoding="utf-8")):
            found.append((path.name, match.group("rest").strip()))
    assert len(found) >= 7, found  # webhooks, keyed, inbox, slots, backfills, executions
    bare = [(name, rest) for name, rest in found
            if not rest.startswith("WHERE dedupe_key IS NOT NULL")]
    assert bare == [], bare
