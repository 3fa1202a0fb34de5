"""The cron scheduler after a gap: a stalled event loop, a lost database connection."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    slots_of,
    wait_for,
)
from triggerd import db
from triggerd.errors import DatabaseUnavailable
from triggerd.store.slots import record_slots

Pool = Any
EVERY_SECOND = "* * * * * *"


async def _assert_every_slot_decided_once(pool: Pool, trigger_id: str) -> list[str]:
    """Every second from the first slot to the last has exactly one outcome, and each
    firing slot exactly one execution; returns the outcomes in order."""
    slots = await slots_of(pool, trigger_id)
    instants = [s["scheduled_for"] for s in slots]
    span = int((instants[-1] - instants[0]).total_seconds())
    assert instants == [instants[0] + timedelta(seconds=i) for i in range(span + 1)]
    runs = await executions_of(pool, trigger_id)
    assert sorted(r["id"] for r in runs) == sorted(
        s["execution_id"] for s in slots if s["outcome"] == "fired"
    )
    return [s["outcome"] for s in slots]


async def test_a_stalled_loop_is_caught_up_by_the_misfire_policy(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(
        pool, workflow_id, "stalled", {"cron": EVERY_SECOND, "overlap": "allow", "misfire": "skip"}
    )
    async with running(pool, dsn) as scheduler:
        assert await wait_for(lambda: executions_of(pool, trigger), timeout=2.0)
        time.sleep(2.6)  # blocks the event loop, as a suspended machine would
        assert await wait_for(lambda: scheduler.stats.recoveries["stall"] == 1, timeout=2.0)
        await asyncio.sleep(1.5)
        assert sum(scheduler.stats.recoveries.values()) == 1
    outcomes = await _assert_every_slot_decided_once(pool, trigger)
    assert set(outcomes) == {"fired", "skipped_misfire"}
    assert outcomes[0] == outcomes[-1] == "fired"


async def test_lost_connections_are_recovered_without_a_gap(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(
        pool, workflow_id, "reconnect", {"cron": EVERY_SECOND, "overlap": "allow"}
    )
    admin = await db.connect(dsn)
    try:
        async with running(pool, dsn) as scheduler:
            assert await wait_for(lambda: executions_of(pool, trigger), timeout=2.0)
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert killed >= 2  # the pool's connections and the listener's
            assert await wait_for(lambda: sum(scheduler.stats.recoveries.values()) >= 1, 3.0)
            count = len(await slots_of(pool, trigger))
            assert await wait_for(
                lambda: _more_slots(pool, trigger, count + 1), timeout=3.0
            ), "fires did not resume"
    finally:
        await admin.close()
    outcomes = await _assert_every_slot_decided_once(pool, trigger)
    assert set(outcomes) <= {"fired", "skipped_misfire"}


async def _more_slots(pool: Pool, trigger_id: str, count: int) -> bool:
    return len(await slots_of(pool, trigger_id)) >= count


@pytest.mark.parametrize("misfire", ["all", "latest"])
async def test_a_failed_write_older_than_a_recorded_slot_is_caught_up(
    pool: Pool, dsn: str, monkeypatch: Any, misfire: str
) -> None:
    """A slot whose write fails after a later slot's write committed (a table locked for
    longer than the statement timeout: the first writes time out, the ones queued behind
    them commit once the lock goes) is caught up too, not left without an outcome because
    the trigger's newest recorded slot is past it; by the misfire policy, as a missed slot
    (under ``latest`` it runs only when no newer slot was missed)."""
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(
        pool, workflow_id, "hole", {"cron": EVERY_SECOND, "overlap": "allow", "misfire": misfire}
    )
    real = record_slots
    failed: list[Any] = []

    async def record(pool_: Pool, requests: Any, **kwargs: Any) -> Any:
        if not failed and len(await slots_of(pool, trigger)) >= 2:
            failed.append(requests.slot_times[0])
            await asyncio.sleep(1.5)  # the next second's write commits meanwhile
            raise DatabaseUnavailable("no answer from the database: TimeoutError")
        return await real(pool_, requests, **kwargs)

    monkeypatch.setattr("triggerd.scheduler.service.record_slots", record)
    async with running(pool, dsn) as scheduler:
        assert await wait_for(
            lambda: scheduler.stats.recoveries["database"] >= 1, timeout=6.0
        )
        count = len(await slots_of(pool, trigger))
        assert await wait_for(lambda: _more_slots(pool, trigger, count + 2), timeout=4.0)
    assert failed
    outcomes = await _assert_every_slot_decided_once(pool, trigger)
    if misfire == "all":
        assert set(outcomes) == {"fired"}
    else:
        assert set(outcomes) <= {"fired", "skipped_misfire"}
    decided = {s["scheduled_for"]: s["outcome"] for s in await slots_of(pool, trigger)}
    assert failed[0] in decided
