"""The planner statistics of the tables that grow fast: their size now against the size
their statistics were taken at, and ANALYZE (the policy is in
:mod:`triggerd.table_statistics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

# Tables whose rows arrive by the thousand a second: the run queue and its history, node
# rows, the webhook inbox and the slot ledger (100,000 cron triggers firing at one minute
# add 100,000 slots at once).
GROWING_TABLES: tuple[str, ...] = (
    "workflow_executions", "node_executions", "webhook_requests", "trigger_slots"
)

# ANALYZE waits for a running VACUUM or ANALYZE of the table. Waiting longer than
# deadlock_timeout (1 s by default) would make PostgreSQL cancel an autovacuum that blocks
# us, and autovacuum is already refreshing what we came for: give up well before.
ANALYZE_LOCK_TIMEOUT = "500ms"


@dataclass(frozen=True, kw_only=True)
class TableSize:
    table: str
    pages: int  # now
    # pg_class.relpages: the pages when VACUUM or ANALYZE last refreshed the table's
    # statistics (0 for a table never analyzed, or empty then).
    planned_pages: int


_SIZES = """
SELECT t.name AS table, c.relpages AS planned_pages,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint AS pages
FROM unnest($1::text[]) WITH ORDINALITY AS t (name, position)
JOIN pg_class c ON c.oid = to_regclass(t.name)
-- Only the tables this role may analyze (their owner's role, as the daemon that migrated
-- them is): ANALYZE of another's table only warns and changes nothing.
WHERE pg_has_role(c.relowner, 'USAGE')
ORDER BY t.position
"""


async def table_sizes(conn: asyncpg.Connection, tables: Sequence[str]) -> list[TableSize]:
    rows = await conn.fetch(_SIZES, list(tables))
    return [
        TableSize(table=r["table"], pages=r["pages"], planned_pages=r["planned_pages"])
        for r in rows
    ]


async def analyze(conn: asyncpg.Connection, table: str) -> bool:
    """ANALYZE ``table``; False when another VACUUM or ANALYZE of it holds its lock (it
    refreshes the statistics itself)."""
    if table not in GROWING_TABLES:  # the name goes into the statement's text
        raise ValueError(f"not a table whose statistics are kept: {table!r}")
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}'")
            await conn.execute(f"ANALYZE {table}")
    except asyncpg.LockNotAvailableError:
        return False
    return True
