"""The cron scheduler's live reload (LISTEN/NOTIFY), readiness guard and slot races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    scheduler_settings,
    slots_of,
    wait_for,
)
from triggerd import db
from triggerd.cron import utc_iso
from triggerd.model import OverlapPolicy, SlotOutcome
from triggerd.store.slots import SlotRequest, iter_cron_triggers, load_cron_triggers, record_slots

Pool = Any
EVERY_SECOND = "* * * * * *"


async def test_sql_changes_reach_the_scheduler_within_a_second(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    disabled = await make_trigger(pool, workflow_id, "disabled", {"cron": EVERY_SECOND,
                                                                  "overlap": "allow"})
    edited = await make_trigger(pool, workflow_id, "edited", {"cron": EVERY_SECOND,
                                                              "overlap": "allow"})
    async with running(pool, dsn) as scheduler:
        assert scheduler.stats.triggers == 2
        assert await wait_for(lambda: executions_of(pool, disabled), timeout=2.0)

        await pool.execute("UPDATE workflow_triggers SET enabled = false WHERE id = $1", disabled)
        await pool.execute(
            "UPDATE workflow_triggers SET config = $2 WHERE id = $1",
            edited,
            {"cron": "0 0 1 1 *", "overlap": "allow"},
        )
        changed_at = await pool.fetchval("SELECT now()")  # both changes are committed
        added = await make_trigger(pool, workflow_id, "added", {"cron": EVERY_SECOND,
                                                                "overlap": "allow"})
        assert await wait_for(
            lambda: scheduler.stats.triggers == 2 and scheduler.stats.schedules == 2,
            timeout=1.0,
        ), "the changes did not reach the scheduler within a second"
        assert await wait_for(lambda: executions_of(pool, added), timeout=2.0)
        await asyncio.sleep(1.0)

    for trigger_id in (disabled, edited):
        runs = await executions_of(pool, trigger_id)
        assert runs, "fired before the change"
        assert [r["scheduled_for"] for r in runs if r["scheduled_for"] > changed_at] == []
    # The history of the edited trigger is kept, one execution per slot.
    edited_runs = await executions_of(pool, edited)
    assert len({r["scheduled_for"] for r in edited_runs}) == len(edited_runs)

    # Deleting a trigger keeps its executions.
    await pool.execute("DELETE FROM workflow_triggers WHERE id = $1", disabled)
    kept = await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE trigger_name = 'disabled'"
    )
    assert kept >= 1


async def test_readiness_names_a_trigger_whose_slot_is_overdue(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool, key="reports")
    await make_trigger(pool, workflow_id, "every", {"cron": EVERY_SECOND, "overlap": "allow"})
    settings = scheduler_settings(lag_threshold=timedelta(seconds=1))
    blocker = await db.connect(dsn)
    try:
        async with running(pool, dsn, settings) as scheduler:
            await asyncio.sleep(1.2)
            assert await scheduler.readiness() is None
            # Slots cannot be written while the table is locked.
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE trigger_slots IN EXCLUSIVE MODE")
            try:
                await asyncio.sleep(2.2)
                assert await scheduler.readiness() == "overdue triggers: reports/every"
            finally:
                await transaction.rollback()
            assert await wait_for(lambda: _ready(scheduler), timeout=2.0)
        assert await scheduler.readiness() == "scheduler not running"
    finally:
        await blocker.close()


async def _ready(scheduler: Any) -> bool:
    return await scheduler.readiness() is None


async def test_racing_writers_decide_each_slot_once(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    for i in range(20):
        await make_trigger(pool, workflow_id, f"t{i:02}", {"cron": EVERY_SECOND,
                                                          "overlap": "skip"})
    rows = await load_cron_triggers(pool)
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    requests = [
        SlotRequest(
            trigger_id=row.id,
            scheduled_for=slot,
            slot_iso=utc_iso(slot),
            config_text=row.config_text,
            overlap=OverlapPolicy.SKIP,
        )
        for row in rows
    ]
    other = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        results = await asyncio.gather(
            record_slots(pool, requests, fired_at="a"),
            record_slots(other, list(reversed(requests)), fired_at="b"),
            record_slots(pool, requests[::2], fired_at="c"),
        )
    finally:
        await other.close()
    assert sum(len(r.recorded) for r in results) == 20
    assert sum(r.lost for r in results) == 20 + 10
    assert sum(r.inserted for r in results) == 20
    assert {s.outcome for r in results for s in r.recorded} == {SlotOutcome.FIRED}
    for row in rows:
        assert [s["outcome"] for s in await slots_of(pool, row.id)] == ["fired"]
        assert len(await executions_of(pool, row.id)) == 1


async def test_stale_and_disabled_slots_are_not_fired(pool: Pool) -> None:
    workflow_id = await make_workflow(pool)
    first = await make_trigger(pool, workflow_id, "first", {"cron": EVERY_SECOND})
    second = await make_trigger(pool, workflow_id, "second", {"cron": EVERY_SECOND})
    rows = {r.id: r for r in await load_cron_triggers(pool)}
    await pool.execute("UPDATE workflow_triggers SET enabled = false WHERE id = $1", first)
    await pool.execute(
        "UPDATE workflow_triggers SET config = '{\"cron\": \"0 * * * *\"}' WHERE id = $1", second
    )
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    requests = [
        SlotRequest(trigger_id=tid, scheduled_for=at, slot_iso=utc_iso(at),
                    config_text=rows[tid].config_text, overlap=OverlapPolicy.SKIP)
        for tid in (first, second)
        for at in (slot, before)
    ]
    result = await record_slots(pool, requests, fired_at="x")
    # The disabled trigger's slot is recorded as such; the one before it was enabled and
    # the edited trigger's (computed from its old config) are stale: nothing is written.
    assert [(r.trigger_id, r.outcome) for r in result.recorded] == [
        (first, SlotOutcome.SKIPPED_DISABLED)
    ]
    assert sorted(result.stale) == sorted([(first, before), (second, slot), (second, before)])
    assert result.inserted == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0


@pytest.fixture
def full_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many full loads the scheduler makes (its calls of iter_cron_triggers), in [0]."""
    from triggerd.scheduler import service

    calls = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return iter_cron_triggers(*args, **kwargs)

    monkeypatch.setattr(service, "iter_cron_triggers", counting)
    return calls


async def test_the_periodic_reconcile_reads_every_trigger_only_when_their_digest_changed(
    pool: Pool, dsn: str, full_loads: list[int]
) -> None:
    """A periodic reconcile first compares the scheduled triggers' digest with the one read
    with the last full reconcile's rows: unchanged, it loads nothing (counted, not timed);
    a change no notification announced is found and loaded."""
    workflow_id = await make_workflow(pool)
    ids = [await make_trigger(pool, workflow_id, f"t{i}", {"cron": f"{i} 3 * * *"})
           for i in range(20)]
    settings = scheduler_settings(reconcile=timedelta(milliseconds=200))
    async with running(pool, dsn, settings) as scheduler:
        assert scheduler.stats.schedules == 20
        # The start's load (its digest read from the same snapshot), then digests only.
        assert await wait_for(lambda: scheduler.stats.reconciles_skipped >= 3, timeout=10.0)
        assert full_loads[0] == 1
        # An edit nobody announced: the table's notifications are off for its transaction.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "ALTER TABLE workflow_triggers DISABLE TRIGGER workflow_triggers_updated_notify")
            await conn.execute("UPDATE workflow_triggers SET config = $2 WHERE id = $1",
                               ids[0], {"cron": "1 3 * * *"})  # now shares t1's schedule
            await conn.execute(
                "ALTER TABLE workflow_triggers ENABLE TRIGGER workflow_triggers_updated_notify")
        assert await wait_for(lambda: scheduler.stats.schedules == 19, timeout=10.0)
        assert full_loads[0] == 2
        skipped = scheduler.stats.reconciles_skipped
        assert await wait_for(
            lambda: scheduler.stats.reconciles_skipped >= skipped + 3, timeout=10.0)
        assert full_loads[0] == 2
        # An announced edit is reloaded by itself; the next periodic reconcile is a full one
        # (the table changed since the digest was read), then digests only again.
        await pool.execute("UPDATE workflow_triggers SET config = $2 WHERE id = $1",
                           ids[2], {"cron": "1 3 * * *"})
        assert await wait_for(lambda: scheduler.stats.schedules == 18 and full_loads[0] == 3,
                              timeout=10.0)
        skipped = scheduler.stats.reconciles_skipped
        assert await wait_for(
            lambda: scheduler.stats.reconciles_skipped >= skipped + 3, timeout=10.0)
        assert full_loads[0] == 3


async def test_without_a_second_connection_the_periodic_reconcile_is_a_full_one(
    dsn: str, full_loads: list[int]
) -> None:
    """The digest of a load is read on a second connection; a pool of one has none, and
    every periodic reconcile then loads everything, as before digests."""
    small = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        workflow_id = await make_workflow(small)
        await make_trigger(small, workflow_id, "t", {"cron": "0 3 * * *"})
        settings = scheduler_settings(reconcile=timedelta(milliseconds=200))
        async with running(small, dsn, settings) as scheduler:
            assert await wait_for(lambda: full_loads[0] >= 4, timeout=10.0)
            assert scheduler.stats.reconciles_skipped == 0
            assert scheduler.stats.triggers == 1
    finally:
        await small.close()
