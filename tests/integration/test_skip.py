"""Skip: future slots recorded skipped_manual, which the live schedule then leaves alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from tests.integration.test_pause_resume import DOC, OPERATOR, _slot
from triggerd.cron import utc_iso
from triggerd.errors import Conflict, UsageError
from triggerd.operations.triggers import skip
from triggerd.planning import jitter_offset
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


JITTER = timedelta(minutes=30)
JITTERED: dict[str, Any] = {"workflows": [{
    "key": "report",
    "graph": {"nodes": [{"id": "a", "type": "noop"}]},
    "triggers": [{"name": "nightly", "type": "cron", "cron": "0 2 * * *", "jitter": "30m"}],
}]}


@pytest.fixture
async def jittered(pool: asyncpg.Pool) -> dict[str, Any]:
    """The nightly trigger with 30m of jitter, and its first slot from NOW on whose offset
    is a minute or more (its write comes that long after the instant)."""
    await apply_doc(pool, JITTERED)
    trigger = await get_trigger(pool, "report/nightly")
    config = await pool.fetchval("SELECT config::text FROM workflow_triggers WHERE id = $1",
                                 trigger.id)
    slot = next(at for at in (NOW.replace(hour=2) + timedelta(days=d) for d in range(1, 60))
                if jitter_offset(trigger.id, at, JITTER) >= timedelta(minutes=1))
    return {"id": trigger.id, "config": config, "slot": slot,
            "offset": jitter_offset(trigger.id, slot, JITTER)}


async def test_skip_reaches_a_slot_still_waiting_out_its_jitter(
    pool: asyncpg.Pool, jittered: dict[str, Any]
) -> None:
    """Past its instant but not yet written (the scheduler writes it at instant + offset),
    the slot was out of skip's reach: --next took the following one, --at said "not in
    the future", and the slot fired."""
    slot, offset = jittered["slot"], jittered["offset"]
    now = slot + offset / 2
    result = await skip(pool, OPERATOR, "report/nightly", next_count=2, now=now)
    assert result.skipped == (slot, slot + timedelta(days=1))
    # The scheduler's write of the jittered slot, at instant + offset: the ledger decides.
    written = await record_slots(pool, [_slot(jittered, slot)], fired_at="x")
    assert written.inserted == 0 and written.recorded == ()
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    # --next goes on past the slots skipped, the waiting one included.
    again = await skip(pool, OPERATOR, "report/nightly", next_count=1, now=now)
    assert again.skipped == (slot + timedelta(days=2),)
    rows = await pool.fetch("SELECT outcome FROM trigger_slots")
    assert {r["outcome"] for r in rows} == {"skipped_manual"}
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0


async def test_skip_at_a_slot_waiting_out_its_jitter(
    pool: asyncpg.Pool, jittered: dict[str, Any]
) -> None:
    slot, offset = jittered["slot"], jittered["offset"]
    result = await skip(pool, OPERATOR, "report/nightly", at=slot,
                        now=slot + offset - timedelta(microseconds=1))
    assert result.skipped == (slot,)
    written = await record_slots(pool, [_slot(jittered, slot)], fired_at="x")
    assert written.inserted == 0 and written.recorded == ()
    assert [r["outcome"] for r in await pool.fetch("SELECT outcome FROM trigger_slots")] == [
        "skipped_manual"]
    # Once its jitter is out, the slot is past: nothing to skip.
    with pytest.raises(UsageError, match=r"^at: 2027-02-01T02:00:00Z is not in the future$"):
        await skip(pool, OPERATOR, "report/nightly", at=datetime(2027, 2, 1, 2, tzinfo=UTC),
                   now=datetime(2027, 2, 1, 2, 30, tzinfo=UTC))


async def test_skipping_a_slot_that_already_fired_says_so(
    pool: asyncpg.Pool, jittered: dict[str, Any]
) -> None:
    """A skip of a slot that fired (another replica's clock a little ahead, or its jitter
    over) is refused with what happened to it, and records nothing."""
    slot, offset = jittered["slot"], jittered["offset"]
    fired = await record_slots(pool, [_slot(jittered, slot)], fired_at="x")
    assert fired.inserted == 1
    message = (rf"^slot {utc_iso(slot)} of report/nightly already fired;"
               r" nothing was skipped$")
    for now in (slot + offset / 2, slot + offset + timedelta(minutes=1), NOW + timedelta(365)):
        with pytest.raises(Conflict, match=message):
            await skip(pool, OPERATOR, "report/nightly", at=slot, now=now)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
    assert [tuple(r) for r in await pool.fetch("SELECT outcome FROM trigger_slots")] == [
        ("fired",)]
    # "Skip the next" is the next slot still to come: not the one that fired.
    result = await skip(pool, OPERATOR, "report/nightly", next_count=1, now=slot + offset / 2)
    assert result.skipped == (slot + timedelta(days=1),)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_the_live_scheduler_leaves_a_slot_skipped_while_it_waits_out_its_jitter(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """End to end: the scheduler holds the slot in its jitter timer; a skip then writes
    the ledger row first, and the timer's write finds it decided."""
    import asyncio

    from tests.helpers import wait_for
    from tests.integration.test_scheduler_support import running

    jitter = timedelta(seconds=10)
    await apply_doc(pool, {"workflows": [{
        "key": "w", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "t", "type": "cron", "cron": "* * * * * *", "jitter": "10s",
                      "overlap": "allow"}]}]})
    trigger = await get_trigger(pool, "w/t")
    start = datetime.now(UTC).replace(microsecond=0)
    # A slot a few seconds ahead whose write comes 8.5 s or more after its instant: the
    # skip, half a second after the instant, has 8 s to land first on a busy machine.
    slot = next(at for at in (start + timedelta(seconds=s) for s in range(3, 400))
                if jitter_offset(trigger.id, at, jitter) >= timedelta(seconds=8.5))
    async with running(pool, dsn):
        await asyncio.sleep((slot - datetime.now(UTC)).total_seconds() + 0.5)
        result = await skip(pool, OPERATOR, "w/t", at=slot)
        assert result.skipped == (slot,)

        async def decided_past_its_write() -> bool:
            # Every slot from 11 s after it is written after the slot's own write.
            return bool(await pool.fetchval(
                "SELECT count(*) FROM trigger_slots WHERE trigger_id = $1"
                " AND scheduled_for >= $2", trigger.id, slot + timedelta(seconds=11)))

        await wait_for(decided_past_its_write, timeout=60)
    rows = await pool.fetch("SELECT scheduled_for, outcome FROM trigger_slots"
                            " WHERE trigger_id = $1 AND scheduled_for BETWEEN $2 AND $3"
                            " ORDER BY 1", trigger.id, slot - timedelta(seconds=1),
                            slot + timedelta(seconds=1))
    assert [(r["scheduled_for"], r["outcome"]) for r in rows] == [
        (slot - timedelta(seconds=1), "fired"), (slot, "skipped_manual"),
        (slot + timedelta(seconds=1), "fired")]
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE dedupe_key = $1",
        f"cron:{utc_iso(slot)}") == 0
