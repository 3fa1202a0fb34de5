"""An instant with more slots than one statement takes is written as several concurrent
statements; with two replicas racing, each slot still gets exactly one execution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.test_scheduler_support import make_workflow, running
from triggerd import db
from triggerd.scheduler.service import INSTANT_CHUNK, INSTANT_STATEMENTS

Pool = Any


async def test_large_instant_split_across_statements_fires_each_slot_once(
    pool: Pool, dsn: str
) -> None:
    count = INSTANT_CHUNK * INSTANT_STATEMENTS + 321  # INSTANT_STATEMENTS statements
    workflow_id = await make_workflow(pool)
    await pool.execute(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, input)"
        " SELECT $1, 't' || i, 'cron', $2, '{}' FROM generate_series(1, $3) AS i",
        workflow_id, {"cron": "* * * * * *", "overlap": "allow"}, count)
    other_pool = await db.create_pool(dsn, min_size=1, max_size=5)
    try:
        async with running(pool, dsn), running(other_pool, dsn):
            started = datetime.now(UTC)
            await asyncio.sleep(2.5)
    finally:
        await other_pool.close()
    first = started.replace(microsecond=0) + timedelta(seconds=1)
    rows = await pool.fetch(
        "SELECT trigger_id, count(*) AS n FROM workflow_executions WHERE scheduled_for = $1"
        " GROUP BY trigger_id", first)
    assert len(rows) == count  # every trigger fired for that instant
    assert {r["n"] for r in rows} == {1}  # and exactly once
    slots = await pool.fetchval(
        "SELECT count(*) FROM trigger_slots WHERE scheduled_for = $1 AND outcome = 'fired'",
        first)
    assert slots == count
