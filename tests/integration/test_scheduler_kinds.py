"""Schedule kinds other than a single cron expression, through the real scheduler and
PostgreSQL: intervals (exactly once across two replicas, catch-up) and calendar filters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    slots_of,
)
from triggerd import db
from triggerd.cron import utc_iso
from triggerd.schedules import schedule_of

Pool = Any
MADRID = {"name": "madrid", "timezone": "Europe/Madrid",
          "holidays": {"country": "ES", "subdivision": "MD"}}


async def test_an_interval_fires_each_slot_once_across_two_replicas(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(pool, workflow_id, "tick",
                                 {"every": "1s", "overlap": "allow"}, kind="interval")
    other_pool = await db.create_pool(dsn, min_size=1, max_size=3)
    try:
        async with running(pool, dsn) as first, running(other_pool, dsn) as second:
            await asyncio.sleep(3.2)
        fires = first.stats.fires + second.stats.fires
    finally:
        await other_pool.close()
    runs = await executions_of(pool, trigger)
    instants = [r["scheduled_for"] for r in runs]
    assert len(instants) >= 3
    assert len(set(instants)) == len(instants), "a slot fired twice"
    span = int((instants[-1] - instants[0]).total_seconds())
    assert instants == [instants[0] + timedelta(seconds=i) for i in range(span + 1)]
    for run in runs:
        # The same key scheme as cron: exactly-once, skip and backfill work unchanged.
        assert run["dedupe_key"] == f"cron:{utc_iso(run['scheduled_for'])}"
        assert run["trigger_type"] == "interval"
        assert run["context"]["trigger"]["type"] == "interval"
    assert fires == len(runs)


def fixed_clock(at: datetime) -> Any:
    """A clock that reads ``at`` when the scheduler starts and runs on from there."""
    shift = at - datetime.now(UTC)
    return lambda: datetime.now(UTC) + shift


async def test_an_interval_catches_up_its_own_slots(pool: Pool, dsn: str) -> None:
    now = datetime(2027, 3, 28, 3, 0, 30, tzinfo=UTC)
    config = {"every": "90m", "offset": "5m", "misfire": "all", "catchup_window": "1d",
              "timezone": "Europe/Madrid", "overlap": "allow"}
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(pool, workflow_id, "sync", config, kind="interval",
                                 enabled_at=now - timedelta(hours=6))
    async with running(pool, dsn, clock=fixed_clock(now)):
        pass
    expected = [f.at for f in schedule_of("interval", config).fires_between(
        now - timedelta(hours=6), now)]
    # Every 90 minutes from the epoch + 5m, straight across Madrid's spring-forward at
    # 01:00 UTC (an absolute duration).
    assert [utc_iso(at) for at in expected] == [
        "2027-03-27T21:05:00Z", "2027-03-27T22:35:00Z", "2027-03-28T00:05:00Z",
        "2027-03-28T01:35:00Z",
    ]
    slots = await slots_of(pool, trigger)
    assert [(s["scheduled_for"], s["outcome"]) for s in slots] == [(at, "fired") for at in expected]


async def test_calendar_filters_remove_and_shift_slots(pool: Pool, dsn: str) -> None:
    # Thursday 9 December 2027, noon: since Saturday the 4th, Madrid had a Sunday and two
    # public holidays (Monday 6th, Wednesday 8th).
    now = datetime(2027, 12, 9, 12, 0, 0, tzinfo=UTC)
    base = {"cron": "0 9 * * *", "timezone": "Europe/Madrid", "misfire": "all",
            "catchup_window": "7d", "max_catchup": 100, "overlap": "allow"}
    configs = {
        "only": {**base, "calendar": {"only": "madrid", "definition": MADRID}},
        "shift": {**base, "calendar": {"only": "madrid", "shift": "next", "definition": MADRID}},
        "skip": {**base, "calendar": {"skip": "madrid", "definition": MADRID}},
    }
    workflow_id = await make_workflow(pool)
    ids = {name: await make_trigger(pool, workflow_id, name, config,
                                    enabled_at=datetime(2027, 12, 4, 12, tzinfo=UTC))
           for name, config in configs.items()}
    async with running(pool, dsn, clock=fixed_clock(now)):
        pass

    async def fired(name: str) -> list[str]:
        slots = await slots_of(pool, ids[name])
        assert {s["outcome"] for s in slots} <= {"fired"}  # excluded days leave no row
        return [utc_iso(s["scheduled_for"]) for s in slots]

    assert await fired("only") == ["2027-12-07T08:00:00Z", "2027-12-09T08:00:00Z"]
    # Sunday's and Monday's slots move to Tuesday 09:00 and Wednesday's to Thursday: each
    # coincides with that day's own slot and fires once.
    assert await fired("shift") == ["2027-12-07T08:00:00Z", "2027-12-09T08:00:00Z"]
    assert await fired("skip") == ["2027-12-05T08:00:00Z", "2027-12-07T08:00:00Z",
                                   "2027-12-09T08:00:00Z"]
    runs = await executions_of(pool, ids["shift"])
    assert [r["dedupe_key"] for r in runs] == ["cron:2027-12-07T08:00:00Z",
                                               "cron:2027-12-09T08:00:00Z"]
