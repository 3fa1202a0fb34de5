"""An instant with more slots than one statement takes is written as several concurrent
statements; with two replicas racing, each slot still gets exactly one execution. A large
catch-up is written the same way, each trigger's slots in one statement."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
)
from triggerd import db
from triggerd.scheduler import service
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


def _half_minute_clock() -> tuple[datetime, Callable[[], datetime]]:
    """The current minute, and a clock that reads hh:mm:30 of it (and runs on)."""
    real = datetime.now(UTC)
    minute = real.replace(second=0, microsecond=0)
    shift = minute + timedelta(seconds=30) - real

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    return minute, clock


async def _owing_triggers(pool: Pool, minute: datetime, count: int) -> dict[str, list[datetime]]:
    """``count`` minutely triggers (misfire all, overlap allow) whose last slot is 10
    minutes old: half were enabled 2m50s ago (3 slots owed), half an hour ago (10 owed)."""
    workflow_id = await make_workflow(pool)
    missed = [minute - timedelta(minutes=m) for m in range(9, -1, -1)]
    owed: dict[str, list[datetime]] = {}
    for n in range(count):
        recent = n % 2 == 1
        enabled_at = minute - (timedelta(minutes=2, seconds=50) if recent else timedelta(hours=1))
        trigger_id = await make_trigger(
            pool, workflow_id, f"t{n}", {"cron": "* * * * *", "misfire": "all",
                                         "overlap": "allow"},
            enabled_at=enabled_at)
        await pool.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
            " VALUES ($1, $2, 'fired')", trigger_id, minute - timedelta(minutes=10))
        owed[trigger_id] = missed[7:] if recent else missed
    return owed


async def _statements_of(pool: Pool, owed: dict[str, list[datetime]]) -> set[datetime]:
    """Checks that every owed slot fired once, each trigger's in one statement; returns
    the statements' instants (one transaction, one ``created_at``)."""
    statements: set[datetime] = set()
    for trigger_id, slots in owed.items():
        runs = await executions_of(pool, trigger_id)
        # Each trigger's slots in one statement, all fired (overlap allow: under skip a
        # catch-up runs its first slot only, see test_scheduler.py).
        assert [r["scheduled_for"] for r in runs] == slots
        assert len({r["created_at"] for r in runs}) == 1
        statements.add(runs[0]["created_at"])
    return statements


async def test_a_catch_up_written_as_several_statements_keeps_each_trigger_in_one(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 4 slots: every trigger below owes 3 or 10 slots, so the catch-up takes
    # several statements, some of them concurrent, and packing must not split a trigger.
    monkeypatch.setattr(service, "INSTANT_CHUNK", 4)
    monkeypatch.setattr(service, "CATCH_UP_CHUNK", 4)
    minute, clock = _half_minute_clock()
    owed = await _owing_triggers(pool, minute, 8)

    async with running(pool, dsn, clock=clock):
        pass

    assert len(await _statements_of(pool, owed)) > 2  # the catch-up took several statements

    async with running(pool, dsn, clock=clock):
        pass  # a restart finds every slot decided
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 4 * 10 + 4 * 3


async def test_a_large_catch_up_is_written_while_the_triggers_load(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pieces of 12 slots (batches of 4): 24 triggers owe 156 slots. Before, every slot was
    # planned and held before the first was written (5.6 million slots, 1.43 GB, for
    # 1,000,000 triggers after 6 hours down); now a piece is written as soon as it fills.
    monkeypatch.setattr(service, "INSTANT_CHUNK", 4)
    monkeypatch.setattr(service, "CATCH_UP_CHUNK", 4)
    monkeypatch.setattr(service, "CATCH_UP_PIECE", 12)
    monkeypatch.setattr(service, "SLICE_ROWS", 1)
    minute, clock = _half_minute_clock()
    owed = await _owing_triggers(pool, minute, 24)
    pieces: list[tuple[int, int]] = []  # (slots in the piece, triggers loaded when written)
    write = service.CronScheduler._write_catch_up

    async def recording(self: service.CronScheduler, requests: Any, tally: Any) -> None:
        pieces.append((len(requests), len(self._table)))
        await write(self, requests, tally)

    monkeypatch.setattr(service.CronScheduler, "_write_catch_up", recording)

    async with running(pool, dsn, clock=clock):
        pass

    assert sum(size for size, _ in pieces) == 12 * 10 + 12 * 3
    # Written while loading: the first pieces went out before the table held every trigger.
    assert pieces[0][1] < len(owed)
    assert len(pieces) >= 156 // (12 + 10 - 1)
    # Held at most one piece plus one trigger's slots (10) short of a full piece.
    assert max(size for size, _ in pieces) <= 12 + 10 - 1
    assert len(await _statements_of(pool, owed)) > len(pieces)

    pieces.clear()
    async with running(pool, dsn, clock=clock):
        pass  # a restart finds every slot decided
    assert sum(size for size, _ in pieces) == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 12 * 10 + 12 * 3
