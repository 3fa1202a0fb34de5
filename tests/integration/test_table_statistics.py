"""The planner statistics of the fast-growing tables follow their growth.

A plan cached while a table was empty (and vacuumed) scans it whole, and nothing makes it
again until the table's statistics change: the keeper analyzes a table that has outgrown
its statistics, so the cached plans are made again for the table as it is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from triggerd.store import statistics as store
from triggerd.store.executions import claim_executions
from triggerd.store.workflows import get_trigger
from triggerd.table_statistics import TableStatisticsKeeper

DOC: dict[str, Any] = {
    "workflows": [
        {
            "key": "grown",
            "name": "grown",
            "graph": {"nodes": [{"id": "n", "type": "noop"}], "edges": []},
            "triggers": [{"name": "manual", "type": "manual"}],
        }
    ]
}

ROWS = 5000  # about 125 pages of workflow_executions: past the keeper's minimum


@pytest.fixture
async def session(dsn: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection on a database whose run table was emptied and vacuumed (statistics of
    an empty table), with autovacuum kept away so that only the keeper refreshes them."""
    await apply_doc(pool, DOC)
    conn = await asyncpg.connect(dsn)
    await conn.execute("ALTER TABLE workflow_executions SET (autovacuum_enabled = false)")
    await conn.execute("VACUUM ANALYZE workflow_executions")
    yield conn
    await conn.close()


async def grow(pool: asyncpg.Pool) -> None:
    trigger = await get_trigger(pool, "grown/manual")
    await pool.execute(
        "INSERT INTO workflow_executions (id, workflow_id, trigger_id, trigger_name,"
        " trigger_type, input, context)"
        " SELECT gen_random_uuid(), $1, $2, 'manual', 'manual', '{}', '{}'"
        " FROM generate_series(1, $3::int)", trigger.workflow_id, trigger.id, ROWS)


async def planned_pages(conn: asyncpg.Connection) -> int:
    pages: int = await conn.fetchval(
        "SELECT relpages FROM pg_class WHERE oid = 'workflow_executions'::regclass")
    return pages


async def test_a_plan_cached_on_an_empty_table_is_made_again_once_the_table_grew(
    session: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await session.execute("SET plan_cache_mode = force_generic_plan")
    await session.execute(
        "PREPARE probe (uuid[]) AS SELECT id FROM workflow_executions WHERE id = ANY($1)")

    async def plan() -> str:
        return "\n".join(r[0] for r in await session.fetch("EXPLAIN EXECUTE probe('{}')"))

    assert "Seq Scan on workflow_executions" in await plan()  # the cheapest path, empty
    await grow(pool)
    # Growth alone does not make the plan again: every lookup would read the whole table.
    assert "Seq Scan on workflow_executions" in await plan()

    keeper = TableStatisticsKeeper(pool=pool)
    assert await keeper.check() == ["workflow_executions"]
    after = await plan()
    assert "Seq Scan" not in after, after
    # A probe of an index on id (the primary key, or the planner's pick of another holding
    # id, such as workflow_executions_created).
    assert "Index Cond: (id = ANY ($1))" in after, after
    assert await planned_pages(session) > 0
    # Analyzed for its size now: nothing more until it grows again.
    assert await keeper.check() == []
    assert keeper.analyzed == 1


async def test_a_table_whose_statistics_another_session_refreshes_is_skipped(
    session: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await grow(pool)
    keeper = TableStatisticsKeeper(pool=pool)
    # What autovacuum (or another replica's ANALYZE) holds while it works on the table.
    async with session.transaction():
        await session.execute(
            "LOCK TABLE workflow_executions IN SHARE UPDATE EXCLUSIVE MODE")
        assert await keeper.check() == []
        assert keeper.analyzed == 0
    assert await planned_pages(session) == 0
    assert await keeper.check() == ["workflow_executions"]
    assert await planned_pages(session) > 0


async def test_the_running_keeper_analyzes_a_table_soon_after_it_grew(
    session: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    keeper = TableStatisticsKeeper(pool=pool, interval=0.05)
    await keeper.start()
    try:
        await asyncio.sleep(0.2)
        assert keeper.analyzed == 0  # nothing outgrown yet
        await grow(pool)
        for _ in range(200):
            if keeper.analyzed:
                break
            await asyncio.sleep(0.05)
        assert keeper.analyzed == 1
        assert await planned_pages(session) > 0
    finally:
        await keeper.stop()


async def test_only_the_kept_tables_can_be_analyzed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="not a table whose statistics are kept"):
            await store.analyze(conn, "workflow_executions; DROP TABLE workflows")
        assert await conn.fetchval("SELECT to_regclass('workflows') IS NOT NULL")


async def test_sizes_are_read_for_the_tables_this_role_owns(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        sizes = await store.table_sizes(conn, (*store.GROWING_TABLES, "no_such_table"))
    assert [s.table for s in sizes] == list(store.GROWING_TABLES)


async def rows_read(pool: asyncpg.Pool) -> int:
    """Rows of workflow_executions read so far, through any index or a sequential scan."""
    value: int = await pool.fetchval(
        "SELECT (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes"
        "         WHERE relname = 'workflow_executions')"
        "     + (SELECT seq_tup_read FROM pg_stat_user_tables"
        "         WHERE relname = 'workflow_executions')")
    return value


async def test_a_claim_reads_its_batch_not_the_backlog_after_statistics_of_an_idle_queue(
    session: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Statistics taken while every run had ended say that no run waits...
    await grow(pool)
    await session.execute("UPDATE workflow_executions SET status = 'SUCCESS', end_time = now()")
    await session.execute("ANALYZE workflow_executions")
    # ...and then a backlog comes that they do not know of (only the next ANALYZE would).
    await grow(pool)
    # The plan a long-running executor keeps: the generic one, made on these statistics.
    await session.execute("SET plan_cache_mode = force_generic_plan")
    lease = timedelta(seconds=30)
    for overdue in (True, False):  # the claim that looks for overdue runs, and the other
        await claim_executions(session, "warm-up", lease, 10, overdue=overdue)
        # A backend reports what it read when it goes idle; this makes it report now.
        await session.execute("SELECT pg_stat_force_next_flush()")
        before = await rows_read(pool)
        claimed = await claim_executions(session, "claimer", lease, 10, overdue=overdue)
        await session.execute("SELECT pg_stat_force_next_flush()")
        read = await rows_read(pool) - before
        assert len(claimed) == 10
        # About the batch (and the rows the skipped locks pass): not the 4,990 waiting.
        assert read < 200, (overdue, read)
