"""Skip: future slots recorded skipped_manual, which the live schedule then leaves alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from tests.integration.test_pause_resume import DOC, OPERATOR, _slot
from triggerd.errors import Conflict, UsageError
from triggerd.operations.triggers import skip
from triggerd.store.slots import load_cron_triggers, record_slots
from triggerd.store.workflows import get_trigger

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)  # the nightly trigger fires at 02:00 UTC


@pytest.fixture
async def nightly(pool: asyncpg.Pool) -> dict[str, Any]:
    await apply_doc(pool, DOC)
    trigger = await get_trigger(pool, "report/nightly")
    config = await pool.fetchval("SELECT config::text FROM workflow_triggers WHERE id = $1",
                                 trigger.id)
    return {"id": trigger.id, "config": config}


async def test_skip_next_records_the_next_slots_and_the_schedule_leaves_them(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    result = await skip(pool, OPERATOR, "report/nightly", next_count=2, note="holiday",
                        now=NOW)
    assert result.skipped == (datetime(2027, 3, 2, 2, tzinfo=UTC),
                              datetime(2027, 3, 3, 2, tzinfo=UTC))
    written = await record_slots(pool, [_slot(nightly, result.skipped[0])], fired_at="x")
    assert written.inserted == 0 and written.recorded == ()
    rows = await pool.fetch("SELECT outcome, detail FROM trigger_slots ORDER BY scheduled_for")
    assert [tuple(r) for r in rows] == [("skipped_manual", "skipped by token:ops: holiday")] * 2
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    audit = await pool.fetchrow("SELECT action, note FROM audit_log")
    assert tuple(audit) == ("skip", "holiday")


async def test_skip_at_one_instant_of_the_schedule(pool: asyncpg.Pool, nightly: dict[str, Any]
                                                   ) -> None:
    at = datetime(2027, 3, 5, 2, tzinfo=UTC)
    assert (await skip(pool, OPERATOR, "report/nightly", at=at, now=NOW)).skipped == (at,)


async def test_bad_skips_are_refused_and_skip_nothing(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    with pytest.raises(UsageError, match=r"at: 2027-03-05T03:00:00Z is not a fire of this"
                       r" schedule \(nearest: 2027-03-05T02:00:00Z, 2027-03-06T02:00:00Z\)"):
        await skip(pool, OPERATOR, "report/nightly", at=datetime(2027, 3, 5, 3, tzinfo=UTC),
                   now=NOW)
    with pytest.raises(UsageError, match="at: 2027-02-01T02:00:00Z is not in the future"):
        await skip(pool, OPERATOR, "report/nightly", at=datetime(2027, 2, 1, 2, tzinfo=UTC),
                   now=NOW)
    with pytest.raises(UsageError, match="next: 0 is out of range 1-1000"):
        await skip(pool, OPERATOR, "report/nightly", next_count=0, now=NOW)
    with pytest.raises(UsageError, match="give exactly one of next and at"):
        await skip(pool, OPERATOR, "report/nightly", now=NOW)
    with pytest.raises(Conflict, match="only scheduled triggers"):
        await skip(pool, OPERATOR, "report/by-hand", next_count=1, now=NOW)
    # A slot already decided, named by --at: nothing of the request is kept.
    third = datetime(2027, 3, 3, 2, tzinfo=UTC)
    await skip(pool, OPERATOR, "report/nightly", at=third, now=NOW)
    with pytest.raises(Conflict, match=r"slot 2027-03-03T02:00:00Z of report/nightly is"
                       r" already decided \(skipped_manual\); nothing was skipped"):
        await skip(pool, OPERATOR, "report/nightly", at=third, now=NOW)
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1
    # --next goes past the slots already skipped to the next ones still due (it was a
    # conflict: after one "skip next" the console's button refused every later one).
    result = await skip(pool, OPERATOR, "report/nightly", next_count=3, now=NOW)
    assert result.skipped == tuple(datetime(2027, 3, d, 2, tzinfo=UTC) for d in (2, 4, 5))
    again = await skip(pool, OPERATOR, "report/nightly", next_count=1, now=NOW)
    assert again.skipped == (datetime(2027, 3, 6, 2, tzinfo=UTC),)
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 5


async def test_a_slot_skipped_ahead_is_not_how_far_the_schedule_got(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    """The restart's catch-up starts after the newest slot the scheduler decided, the
    overdue check and ledger retention look at it too: a slot skipped ahead of its time
    (even one now past, skipped while the daemon was down) is not one. It was, and the
    slots missed before it were lost: no row, no run."""
    from datetime import timedelta

    from triggerd.store.slots import ExpectedSlot, delete_old_slots, find_overdue

    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    decided = today - timedelta(days=40)  # the last slot the scheduler decided
    await pool.execute("UPDATE workflow_triggers SET enabled_at = $1", decided - timedelta(1))
    assert len((await record_slots(pool, [_slot(nightly, decided)], fired_at="x")).recorded) == 1
    # While the daemon was down: one slot skipped in the past, one far ahead.
    for at in (today - timedelta(days=1), today + timedelta(days=300)):
        await skip(pool, OPERATOR, "report/nightly", at=at, now=at - timedelta(hours=1))
    [row] = await load_cron_triggers(pool, [nightly["id"]])
    assert row.last_slot == decided
    # The slot before the past skip was never decided: the trigger is overdue.
    expected = ExpectedSlot(trigger_id=nightly["id"], expected=today - timedelta(days=2),
                            config_text=nightly["config"])
    assert await find_overdue(pool, [expected]) == [nightly["id"]]
    # A slot skipped by hand is decided: not overdue.
    at_skip = ExpectedSlot(trigger_id=nightly["id"], expected=today - timedelta(days=1),
                           config_text=nightly["config"])
    assert await find_overdue(pool, [at_skip]) == []
    # Retention keeps the newest decided slot however old (the skips are not newer ones).
    assert await delete_old_slots(pool, timedelta(days=1)) == 0
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 3


async def test_a_buffered_run_starts_once_the_active_run_has_ended(pool: asyncpg.Pool) -> None:
    """buffer_one queues one run behind the active one: the executor's claims leave it
    until every run of the trigger has ended. It started at once, beside the active run."""
    from datetime import timedelta

    from triggerd.model import OverlapPolicy
    from triggerd.store.executions import ExecutionUpdate, claim_executions, write_progress
    from triggerd.store.keyed import claim_held
    from triggerd.store.slots import SlotRequest

    await apply_doc(pool, {"workflows": [{
        "key": "w", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "t", "type": "cron", "cron": "* * * * * *",
                      "overlap": "buffer_one"},
                     {"name": "other", "type": "cron", "cron": "* * * * * *"}]}]})
    trigger = await get_trigger(pool, "w/t")
    config = await pool.fetchval("SELECT config::text FROM workflow_triggers WHERE id = $1",
                                 trigger.id)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)

    async def fire_slot(at: datetime) -> str:
        written = await record_slots(pool, [SlotRequest(
            trigger_id=trigger.id, scheduled_for=at, slot_iso=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            config_text=config, overlap=OverlapPolicy.BUFFER_ONE)], fired_at="x")
        [slot] = written.recorded
        assert slot.execution_id is not None
        return slot.execution_id

    lease = timedelta(minutes=1)
    active = await fire_slot(first)
    async with pool.acquire() as conn:
        # Held, as a concurrency key's runs are: the claim of plain runs leaves it.
        assert await claim_executions(conn, "ex", lease, 10) == []
        assert [c.id for c in (await claim_held(conn, "ex", lease, 10)).claimed] == [active]
        buffered = await fire_slot(first + timedelta(seconds=1))
        outcome = await conn.fetchval("SELECT outcome FROM trigger_slots WHERE execution_id"
                                      " = $1", buffered)
        assert outcome == "buffered"
        assert (await claim_held(conn, "ex", lease, 10)).claimed == []  # the first runs
        await write_progress(conn, "ex", [], [ExecutionUpdate(id=active, status="WAITING",
                             resume_at=datetime.now(UTC) + timedelta(hours=1))])
        assert (await claim_held(conn, "ex", lease, 10)).claimed == []  # parked: still on
        # A run of the trigger fired by hand counts too, as the policy counted it.
        await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1",
                           active)
        by_hand = await pool.fetchval(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status)"
            " VALUES ($1, $2, 'manual', 'RUNNING') RETURNING id::text",
            trigger.workflow_id, trigger.id)
        assert (await claim_held(conn, "ex", lease, 10)).claimed == []
        await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1",
                           by_hand)
        assert [c.id for c in (await claim_held(conn, "ex", lease, 10)).claimed] == [buffered]
