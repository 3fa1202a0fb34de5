"""catchup_rate: catch-up fires after downtime are written progressively at the rate, not
in one burst, and each slot still gets one ledger row across replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    slots_of,
    wait_for,
)
from triggerd import db

Pool = Any


async def test_catch_up_fires_are_spread_at_the_rate(pool: Pool, dsn: str) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    workflow_id = await make_workflow(pool)
    config = {"cron": "* * * * *", "misfire": "all", "overlap": "allow", "catchup_rate": "2/s"}
    spread = await make_trigger(pool, workflow_id, "spread", config,
                                enabled_at=minute - timedelta(hours=1))
    burst = await make_trigger(pool, workflow_id, "burst",
                               {k: v for k, v in config.items() if k != "catchup_rate"},
                               enabled_at=minute - timedelta(hours=1))
    for trigger in (spread, burst):
        await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                           " VALUES ($1, $2, 'fired')", trigger, minute - timedelta(minutes=8))
    other_pool = await db.create_pool(dsn, min_size=1, max_size=3)
    try:
        async with running(pool, dsn) as first:
            started = datetime.now(UTC)
            # Right after the start: the burst trigger has all its catch-up runs, the
            # spread one its first (and, on a slow machine, the one due 0.5 s later).
            after_start = len(await executions_of(pool, spread))
            assert len(await executions_of(pool, burst)) >= 8
            # A second replica joins while the first is spreading: it spreads its own
            # catch-up of what is left, and the ledger keeps each slot once.
            async with running(other_pool, dsn) as second:
                assert await wait_for(
                    lambda: _caught_up(pool, spread, minute), timeout=30.0
                ), "the spread catch-up never completed"
                fires = first.stats.fires + second.stats.fires
    finally:
        await other_pool.close()
    assert 1 <= after_start <= 2
    runs = await executions_of(pool, spread)
    slots = await slots_of(pool, spread)
    missed = [r["scheduled_for"] for r in runs if r["scheduled_for"] < started]
    assert len(missed) >= 8
    assert len({r["scheduled_for"] for r in runs}) == len(runs)  # once each, two replicas
    assert [s["scheduled_for"] for s in slots[1:]] == [r["scheduled_for"] for r in runs]
    # Not a burst: the catch-up fires were written at different instants, over seconds
    # (8 fires at 2/s; the two replicas' spreads interleave, so the gaps may halve). Not in
    # slot order: once in a CI run a later slot was written first (0.5 s before the one
    # ahead of it), with two replicas racing for the same slots. Not every fire at an
    # instant of its own either: on a loaded machine a spread that fell behind wrote the
    # two slots then due in one statement (7 instants for 8 fires); a burst is one.
    fired_at = [datetime.fromisoformat(r["context"]["trigger"]["fired_at"].replace("Z", "+00:00"))
                for r in runs if r["scheduled_for"] < started]
    assert len(set(fired_at)) >= len(fired_at) // 2
    assert max(fired_at) - min(fired_at) >= timedelta(seconds=1.5)
    assert fires >= len(runs)


async def _caught_up(pool: Pool, trigger: str, minute: datetime) -> bool:
    # Only the missed slots count: the spread takes seconds, so it can cross a whole
    # minute, whose slot then fires live alongside the catch-up.
    runs = await executions_of(pool, trigger)
    missed: int = sum(r["scheduled_for"] <= minute for r in runs)
    return missed >= 8
