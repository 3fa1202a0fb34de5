"""The scheduler's start reads every cron trigger in pages from one cursor, asking for the
next page while the caller works on the current one: every trigger exactly once, and a
caller that leaves early gives the connection back clean."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.integration.test_scheduler_support import make_workflow
from triggerd.store.slots import iter_cron_triggers, load_cron_triggers

Pool = Any


async def _add_triggers(pool: Pool, count: int) -> None:
    workflow_id = await make_workflow(pool)
    await pool.execute(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, input)"
        " SELECT $1, 't' || i, 'cron', $2, '{}' FROM generate_series(1, $3) AS i",
        workflow_id, {"cron": "0 * * * *"}, count)


async def test_pages_hold_every_trigger_once_while_the_next_is_read_ahead(pool: Pool) -> None:
    await _add_triggers(pool, 23)
    pages: list[list[str]] = []
    async with contextlib.aclosing(iter_cron_triggers(pool, page=5)) as rows_by_page:
        async for rows in rows_by_page:
            pages.append([row.id for row in rows])
            # The caller is slow with each page: the page read ahead must wait for it.
            await asyncio.sleep(0.01)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    ids = [i for p in pages for i in p]
    assert len(set(ids)) == 23
    assert set(ids) == {row.id for row in await load_cron_triggers(pool)}


async def test_a_page_size_that_divides_the_rows_ends_with_an_empty_read(pool: Pool) -> None:
    await _add_triggers(pool, 10)
    async with contextlib.aclosing(iter_cron_triggers(pool, page=5)) as rows_by_page:
        sizes = [len(rows) async for rows in rows_by_page]
    assert sizes == [5, 5]


async def test_leaving_after_the_first_page_gives_the_connection_back_idle(pool: Pool) -> None:
    await _add_triggers(pool, 40)
    async with contextlib.aclosing(iter_cron_triggers(pool, page=5)) as rows_by_page:
        async for rows in rows_by_page:
            assert len(rows) == 5
            break  # the second page was asked for already
    # Every connection of the pool is usable again and none is left inside the
    # read-only transaction or its cursor.
    size = pool.get_size()
    connections = [await pool.acquire() for _ in range(size)]
    try:
        for conn in connections:
            assert await conn.fetchval("SELECT 1") == 1
            assert not conn.is_in_transaction()
    finally:
        for conn in connections:
            await pool.release(conn)
    busy = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state IN ('idle in transaction', 'active')")
    assert busy == 0
