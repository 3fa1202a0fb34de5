"""Backfills: planned from the schedule and the ledger, started by the daemons' runners at
their rate, exactly once per slot whoever races (the schedule, another backfill, another
runner)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from triggerd.backfill import BackfillRunner
from triggerd.cron import utc_iso
from triggerd.errors import Conflict, NotFound, UsageError
from triggerd.operations import Actor
from triggerd.operations.backfills import (
    BackfillRequest,
    cancel,
    create,
    get,
    list_,
    parse_rate,
)
from triggerd.store.backfills import claim_backfills
from triggerd.store.workflows import get_trigger

DOC: dict[str, Any] = {"workflows": [{
    "key": "report",
    "graph": {"nodes": [{"id": "a", "type": "noop"}]},
    "triggers": [{"name": "hourly", "type": "cron", "cron": "0 * * * *",
                  "overlap": "allow"},
                 {"name": "by-hand", "type": "manual"}],
}]}
OPERATOR = Actor(name="token:ops", via="api")
FROM = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
TO = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # [00:00, 06:00): six slots


@pytest.fixture
async def hourly(pool: asyncpg.Pool) -> str:
    await apply_doc(pool, DOC)
    return (await get_trigger(pool, "report/hourly")).id


def _request(**kw: Any) -> BackfillRequest:
    return BackfillRequest(**{"trigger": "report/hourly", "range_from": FROM,
                              "range_to": TO, **kw})


async def _a_running_run(pool: asyncpg.Pool, trigger_id: str) -> None:
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status)"
        " SELECT workflow_id, id, 'cron', 'RUNNING' FROM workflow_triggers WHERE id = $1",
        trigger_id)


async def _runs(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') AS at, dedupe_key"
        " FROM workflow_executions ORDER BY scheduled_for, dedupe_key")
    return [(r["at"], r["dedupe_key"]) for r in rows]


async def test_dry_run_lists_the_slots_of_the_half_open_range_and_records_nothing(
    pool: asyncpg.Pool, hourly: str
) -> None:
    plan = await create(pool, OPERATOR, _request(dry_run=True))
    assert plan.backfill_id is None
    assert [s.at.hour for s in plan.slots] == [0, 1, 2, 3, 4, 5]
    assert {s.action for s in plan.slots} == {"start"}
    assert await pool.fetchval("SELECT count(*) FROM backfills") == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_only_missing_starts_the_missing_slots_under_the_live_key(
    pool: asyncpg.Pool, hourly: str
) -> None:
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome) VALUES"
        " ($1, $2, 'fired'), ($1, $3, 'skipped_misfire'), ($1, $4, 'skipped_manual')",
        hourly, FROM + timedelta(hours=1), FROM + timedelta(hours=2), FROM + timedelta(hours=3))
    plan = await create(pool, OPERATOR, _request(only_missing=True, rate="1000/s"))
    assert [(s.at.hour, s.action, s.reason) for s in plan.slots] == [
        (0, "start", "no ledger row"), (1, "skip", "already fired"),
        (2, "start", "was skipped_misfire"), (3, "skip", "already skipped_manual"),
        (4, "start", "no ledger row"), (5, "start", "no ledger row")]
    runner = BackfillRunner(pool, owner="a")
    assert [await runner.work_once(1.0) for _ in range(2)] == [1, 3]
    assert await _runs(pool) == [("00:00", "cron:2026-11-01T00:00:00Z"),
                                 ("02:00", "cron:2026-11-01T02:00:00Z"),
                                 ("04:00", "cron:2026-11-01T04:00:00Z"),
                                 ("05:00", "cron:2026-11-01T05:00:00Z")]
    outcomes = await pool.fetch("SELECT outcome, execution_id IS NOT NULL AS ran"
                                " FROM trigger_slots ORDER BY scheduled_for")
    assert [tuple(r) for r in outcomes] == [("fired", True), ("fired", False),
                                            ("fired", True), ("skipped_manual", False),
                                            ("fired", True), ("fired", True)]
    done = await get(pool, plan.backfill_id or "")
    assert (done.state, done.total, done.started, done.skipped) == ("done", 4, 4, 0)


async def test_without_only_missing_every_slot_runs_once_more_at_the_rate(
    pool: asyncpg.Pool, hourly: str
) -> None:
    await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                       " VALUES ($1, $2, 'fired')", hourly, FROM)
    plan = await create(pool, OPERATOR, _request(rate="2/s"))
    assert plan.backfill_id is not None and plan.to_start == 6
    runner = BackfillRunner(pool, owner="a")
    counts = [await runner.work_once(0.5) for _ in range(4)]
    assert counts == [1, 1, 1, 1]  # a start at once, then 2/s over half-second ticks
    assert await runner.work_once(1.0) == 2
    keys = [k for _, k in await _runs(pool)]
    assert keys == [f"backfill:{plan.backfill_id}:2026-11-01T0{h}:00:00Z" for h in range(6)]
    assert (await get(pool, plan.backfill_id)).state == "done"
    assert await runner.work_once(1.0) == 0


async def test_two_runners_and_two_backfills_start_each_slot_once(
    pool: asyncpg.Pool, hourly: str
) -> None:
    first = await create(pool, OPERATOR, _request(only_missing=True, rate="1000/s"))
    second = await create(pool, OPERATOR, _request(only_missing=True, rate="1000/s",
                                                   range_from=FROM + timedelta(hours=3),
                                                   range_to=TO + timedelta(hours=2)))
    # The live schedule decides one of the slots first.
    await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                       " VALUES ($1, $2, 'fired')", hourly, FROM + timedelta(hours=4))
    a, b = BackfillRunner(pool, owner="a"), BackfillRunner(pool, owner="b")
    for _ in range(3):
        await a.work_once(1.0)
        await b.work_once(1.0)
    runs = await _runs(pool)
    assert [at for at, _ in runs] == ["00:00", "01:00", "02:00", "03:00", "05:00", "06:00",
                                      "07:00"]
    states = [(await get(pool, x.backfill_id or "")).state for x in (first, second)]
    assert states == ["done", "done"]


async def test_cancel_stops_a_running_backfill(pool: asyncpg.Pool, hourly: str) -> None:
    plan = await create(pool, OPERATOR, _request(rate="1/s"))
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(0.0) == 1
    canceled = await cancel(pool, OPERATOR, plan.backfill_id or "")
    assert (canceled.state, canceled.started) == ("canceled", 1)
    assert await runner.work_once(10.0) == 0
    with pytest.raises(Conflict, match="is canceled; nothing was changed"):
        await cancel(pool, OPERATOR, plan.backfill_id or "")
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["backfill", "cancel_backfill"]


async def test_disabling_the_trigger_stops_its_running_backfill(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """It went on starting runs of the disabled trigger until canceled by hand."""
    from triggerd.operations.triggers import set_enabled

    plan = await create(pool, OPERATOR, _request(rate="1/s"))
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(0.0) == 1
    await set_enabled(pool, OPERATOR, "report/hourly", False)
    assert await runner.work_once(10.0) == 0
    stopped = await get(pool, plan.backfill_id or "")
    assert (stopped.state, stopped.started) == ("canceled", 1)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_a_backfill_canceled_by_a_disable_is_audited_and_keeps_no_owner(
    pool: asyncpg.Pool
) -> None:
    """Canceled because its trigger was disabled, a backfill had no audit row (a cancel by
    hand has one) and kept the runner that worked it as its owner."""
    from triggerd.operations.triggers import set_enabled

    acme = Actor(name="token:acme-ops", via="api", tenant="acme")
    await apply_doc(pool, {**DOC, "tenant": "acme"})
    plan = await create(pool, acme, _request(rate="1/s"))
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(0.0) == 1
    await set_enabled(pool, acme, "report/hourly", False)
    assert await runner.work_once(10.0) == 0
    row = await pool.fetchrow("SELECT state, owner, started FROM backfills")
    assert tuple(row) == ("canceled", None, 1)
    audit = await pool.fetch("SELECT tenant_id, actor, action, target_kind, target, target_id,"
                             " note, detail FROM audit_log ORDER BY id")
    assert [(r["actor"], r["action"]) for r in audit] == [
        ("token:acme-ops", "backfill"), ("token:acme-ops", "disable"),
        ("scheduler", "cancel_backfill")]
    last = audit[-1]
    assert (last["tenant_id"], last["target_kind"], last["target"], str(last["target_id"]),
            last["note"]) == ("acme", "backfill", plan.backfill_id, plan.backfill_id,
                              "trigger report/hourly is disabled")
    assert last["detail"] == {"trigger": "report/hourly", "started": 1,
                              "reason": "trigger_disabled"}
    # Once canceled, later ticks write nothing more.
    assert await runner.work_once(10.0) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 3


async def test_a_backfill_canceled_by_an_archive_is_audited_and_keeps_no_owner(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """The archive's own row counted the canceled backfills, but the backfill's trail had
    nothing, and it kept the runner that worked it as its owner."""
    from triggerd.operations.workflows import archive

    plan = await create(pool, OPERATOR, _request(rate="1/s"))
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(0.0) == 1
    assert (await archive(pool, OPERATOR, "report", note="retired")).canceled_backfills == 1
    row = await pool.fetchrow("SELECT state, owner, started FROM backfills")
    assert tuple(row) == ("canceled", None, 1)
    audit = await pool.fetch("SELECT actor, action, target, note, detail FROM audit_log"
                             " ORDER BY id")
    assert [(r["actor"], r["action"], r["target"], r["note"]) for r in audit] == [
        ("token:ops", "backfill", "report/hourly", None),
        ("token:ops", "archive", "report", "retired"),
        ("token:ops", "cancel_backfill", plan.backfill_id, "workflow report is archived")]
    assert audit[-1]["detail"] == {"trigger": "report/hourly", "started": 1,
                                   "reason": "workflow_archived"}
    assert await runner.work_once(10.0) == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_only_missing_claims_no_ledger_row_for_a_slot_whose_run_is_there(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """The ledger row is gone (its retention is shorter than the runs') and the slot's run
    is not: nothing starts, and no row names a run that never was."""
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status,"
        " dedupe_key, scheduled_for) SELECT workflow_id, id, 'cron', 'SUCCESS',"
        " 'cron:2026-11-01T00:00:00Z', $2 FROM workflow_triggers WHERE id = $1",
        hourly, FROM)
    plan = await create(pool, OPERATOR, _request(only_missing=True, rate="1000/s",
                                                 range_to=FROM + timedelta(hours=2)))
    runner = BackfillRunner(pool, owner="a")
    assert [await runner.work_once(1.0) for _ in range(2)] == [0, 1]  # 01:00 only
    ledger = await pool.fetch(
        "SELECT to_char(s.scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') AS at,"
        " e.id IS NOT NULL AS names_a_run FROM trigger_slots s"
        " LEFT JOIN workflow_executions e ON e.id = s.execution_id ORDER BY 1")
    assert [tuple(r) for r in ledger] == [("01:00", True)]
    done = await get(pool, plan.backfill_id or "")
    assert (done.started, done.skipped) == (1, 1)


async def test_only_missing_knows_the_runs_of_slots_at_fractions_of_a_second(
    pool: asyncpg.Pool
) -> None:
    """The live key keeps a slot's fraction of a second (`cron:...00.250000Z`); the backfill
    wrote it without (`cron:...00Z`), so it started each such slot a second time."""
    await apply_doc(pool, {"workflows": [{
        "key": "frac", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "i15", "type": "interval", "every": "1500ms", "offset": "250ms",
                      "overlap": "allow"}]}]})
    trigger = (await get_trigger(pool, "frac/i15")).id
    slots = [FROM + timedelta(milliseconds=250), FROM + timedelta(milliseconds=1750)]
    for at in slots:  # the schedule ran them; their ledger rows are gone (retention)
        await pool.execute(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status,"
            " dedupe_key, scheduled_for) SELECT workflow_id, id, 'interval', 'SUCCESS',"
            " $3, $2 FROM workflow_triggers WHERE id = $1",
            trigger, at, f"cron:{utc_iso(at)}")
    request = BackfillRequest(trigger="frac/i15", range_from=FROM,
                              range_to=FROM + timedelta(seconds=4), only_missing=True,
                              rate="1000/s")
    plan = await create(pool, OPERATOR, request)
    runner = BackfillRunner(pool, owner="a")
    for _ in range(4):  # the first call claims the backfill, each later one starts a slot
        await runner.work_once(1.0)
    done = await get(pool, plan.backfill_id or "")
    keys = await pool.fetch("SELECT dedupe_key FROM workflow_executions ORDER BY scheduled_for")
    assert [k["dedupe_key"] for k in keys] == [
        "cron:2026-11-01T00:00:00.250000Z", "cron:2026-11-01T00:00:01.750000Z",
        "cron:2026-11-01T00:00:03.250000Z"]
    assert (done.started, done.skipped) == (1, 2)


async def test_a_backfill_held_back_by_active_runs_says_how_many(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """Under overlap skip a backfill starts a slot only when no run of the trigger is
    active: a schedule whose runs always overlap held it back for ever, and nothing said
    why."""
    await _a_running_run(pool, hourly)
    plan = await create(pool, OPERATOR, _request(overlap="skip", rate="1000/s"))
    runner = BackfillRunner(pool, owner="a")
    assert [await runner.work_once(1.0) for _ in range(3)] == [0, 0, 0]
    held = await get(pool, plan.backfill_id or "")
    assert (held.state, held.started, held.waiting_for) == ("running", 0, 1)
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS'")
    assert await runner.work_once(1.0) == 1
    # Its own run is active now: the next slot waits for it.
    assert (await get(pool, plan.backfill_id or "")).waiting_for == 1
    unheld = await create(pool, OPERATOR, _request(overlap="allow", rate="1000/s"))
    assert (await get(pool, unheld.backfill_id or "")).waiting_for == 0


async def test_disabling_a_trigger_cancels_its_backfill_waiting_for_an_active_run(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """A backfill held back by an active run never looked at its trigger: disabled and
    enabled again before the run ended, the trigger went on with the backfill."""
    from triggerd.operations.triggers import set_enabled

    await _a_running_run(pool, hourly)
    plan = await create(pool, OPERATOR, _request(overlap="skip", rate="1000/s"))
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(1.0) == 0
    await set_enabled(pool, OPERATOR, "report/hourly", False)
    assert await runner.work_once(1.0) == 0
    assert (await get(pool, plan.backfill_id or "")).state == "canceled"
    await set_enabled(pool, OPERATOR, "report/hourly", True)
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS'")
    assert await runner.work_once(1.0) == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_canceling_another_tenants_backfill_is_audited_in_that_tenant(
    pool: asyncpg.Pool
) -> None:
    # An all-tenant actor's cancel of acme's backfill was audited in the default tenant:
    # the default tenant's admins read acme's backfill id and trigger, acme's did not.
    await apply_doc(pool, {**DOC, "tenant": "acme"})
    plan = await create(pool, Actor(name="token:acme-ops", via="api", tenant="acme"),
                        _request(rate="1/s"))
    await cancel(pool, OPERATOR, plan.backfill_id or "")  # OPERATOR: every tenant
    rows = await pool.fetch("SELECT action, tenant_id FROM audit_log ORDER BY id")
    assert [tuple(r) for r in rows] == [("backfill", "acme"), ("cancel_backfill", "acme")]


async def test_bad_backfills_are_refused_and_record_nothing(pool: asyncpg.Pool, hourly: str
                                                            ) -> None:
    cases = [
        (_request(range_to=FROM), UsageError, "the range is empty: to (2026-11-01T00:00:00Z)"
         " must be after from (2026-11-01T00:00:00Z)"),
        (_request(range_to=datetime(2099, 1, 1, tzinfo=UTC)), UsageError,
         "to: 2099-01-01T00:00:00Z is in the future"),
        (_request(range_from=datetime(2025, 1, 1, tzinfo=UTC)), UsageError,
         "the range holds more than 10,000 slots; backfill it in smaller ranges"),
        (_request(rate="fast"), UsageError, "rate: 'fast' is not N/s, N/m or N/h (e.g. 10/s)"),
        (_request(overlap="queue"), UsageError, "overlap: 'queue' is not one of"),
        (_request(trigger="report/by-hand"), Conflict, "trigger report/by-hand is a manual"
         " trigger; only scheduled triggers (cron, interval) can be backfilled"),
        # Instants without a UTC one (they were a 500 of an OverflowError).
        (_request(range_from=datetime.fromisoformat("0001-01-01T00:00:00+14:00")), UsageError,
         "from: 0001-01-01T00:00:00+14:00 is out of range"),
        (_request(range_to=datetime.fromisoformat("9999-12-31T23:59:59-14:00")), UsageError,
         "to: 9999-12-31T23:59:59-14:00 is out of range"),
    ]
    for request, error, message in cases:
        with pytest.raises(error) as caught:
            await create(pool, OPERATOR, request)
        assert str(caught.value).startswith(message)
    assert await pool.fetchval("SELECT count(*) FROM backfills") == 0
    with pytest.raises(UsageError, match="'nope' is not a backfill id"):
        await get(pool, "nope")


def test_rates() -> None:
    assert [parse_rate(t) for t in ("10/s", "30/m", "0.5/s", "3600/h")] == [10, 0.5, 0.5, 1]
    with pytest.raises(UsageError, match="rate: 5000/s is out of range"):
        parse_rate("5000/s")


async def test_an_archived_workflow_takes_no_backfill(pool: asyncpg.Pool, hourly: str) -> None:
    # Archive stops every trigger (and cancels running backfills); a backfill asked for
    # afterwards was still accepted and started its runs.
    from triggerd.operations.workflows import activate, archive

    await archive(pool, OPERATOR, "report")
    with pytest.raises(Conflict, match=r"^workflow report is archived; activate it first$"):
        await create(pool, OPERATOR, _request())
    with pytest.raises(Conflict, match=r"^workflow report is archived; activate it first$"):
        await create(pool, OPERATOR, _request(dry_run=True))  # nothing would start
    assert await pool.fetchval("SELECT count(*) FROM backfills") == 0
    # One that slipped in (created as the archive committed) waits instead of running.
    await activate(pool, OPERATOR, "report")
    created = await create(pool, OPERATOR, _request(rate="1000/s"))
    await pool.execute("UPDATE workflows SET status = 'archived'")
    runner = BackfillRunner(pool, owner="a")
    assert [await runner.work_once(1.0) for _ in range(2)] == [0, 0]
    await pool.execute("UPDATE workflows SET status = 'active'")
    assert await runner.work_once(1.0) == 6
    assert created.backfill_id is not None
    assert (await get(pool, created.backfill_id)).state == "done"


async def test_a_disabled_trigger_takes_no_backfill_and_odd_ranges_are_refused(
    pool: asyncpg.Pool, hourly: str
) -> None:
    await pool.execute("UPDATE workflow_triggers SET enabled = false WHERE name = 'hourly'")
    for dry_run in (False, True):
        with pytest.raises(Conflict, match=r"^trigger report/hourly is disabled; enable it"
                                           r" first$"):
            await create(pool, OPERATOR, _request(dry_run=dry_run))
    await pool.execute("UPDATE workflow_triggers SET enabled = true")
    # Year 1 was an internal error (the instant before the range overflowed).
    for start, end in ((datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, 5, tzinfo=UTC)),
                       (datetime(1899, 12, 31, tzinfo=UTC), datetime(1900, 1, 2, tzinfo=UTC))):
        with pytest.raises(UsageError, match=r"^from: .* is before 1900-01-01T00:00:00Z,"
                                             r" the earliest instant a backfill plans$"):
            await create(pool, OPERATOR, _request(range_from=start, range_to=end,
                                                  dry_run=True))
    assert await pool.fetchval("SELECT count(*) FROM backfills") == 0


async def test_a_run_of_an_archived_workflow_is_not_retried(
    pool: asyncpg.Pool, hourly: str
) -> None:
    from triggerd.operations.executions import retry
    from triggerd.operations.workflows import archive

    await create(pool, OPERATOR, _request(rate="1000/s"))
    assert await BackfillRunner(pool, owner="a").work_once(1.0) == 1
    run = await pool.fetchval("SELECT id::text FROM workflow_executions")
    await archive(pool, OPERATOR, "report")
    with pytest.raises(Conflict, match=r"^workflow report is archived; activate it first$"):
        await retry(pool, OPERATOR, run)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_backfills_list_newest_first_by_tenant_trigger_and_state(
    pool: asyncpg.Pool, hourly: str
) -> None:
    await apply_doc(pool, {**DOC, "tenant": "acme"})
    acme = Actor(name="token:acme-ops", via="api", tenant="acme")
    first = (await create(pool, OPERATOR, _request(rate="1/s"))).backfill_id
    theirs = (await create(pool, acme, _request(rate="1/s"))).backfill_id
    last = (await create(pool, OPERATOR, _request(rate="1/s"))).backfill_id
    await cancel(pool, OPERATOR, last or "")

    every = await list_(pool, tenant=None)
    assert [b.id for b in every] == [last, theirs, first]
    assert [b.tenant_id for b in every] == ["default", "acme", "default"]
    assert [b.id for b in await list_(pool, tenant="acme")] == [theirs]
    # A name is looked up in the tenant worked in (the default one for every tenant).
    assert [b.id for b in await list_(pool, tenant=None, trigger="report/hourly")] == [
        last, first]
    assert [b.id for b in await list_(pool, tenant="acme", trigger="report/hourly")] == [
        theirs]
    assert [b.id for b in await list_(pool, tenant=None, state="canceled")] == [last]
    assert [b.id for b in await list_(pool, tenant=None, state="running")] == [theirs, first]
    with pytest.raises(NotFound, match="report/nope"):
        await list_(pool, tenant=None, trigger="report/nope")
    with pytest.raises(UsageError, match="state: 'paused' is not one of running, done,"
                                         " canceled"):
        await list_(pool, tenant=None, state="paused")


async def test_backfill_pages_sharing_one_instant_lose_none(
    pool: asyncpg.Pool, hourly: str
) -> None:
    made = {(await create(pool, OPERATOR, _request(rate="1/s"))).backfill_id or ""
            for _ in range(5)}
    await pool.execute("UPDATE backfills SET created_at = '2026-12-01T00:00:00Z'")
    seen: list[str] = []
    before = None
    while True:
        page = await list_(pool, tenant=None, before=before, limit=2)
        seen += [b.id for b in page]
        if len(page) < 2:
            break
        before = (page[-1].created_at, page[-1].id)
    assert sorted(seen) == sorted(made) and len(seen) == 5


async def test_watching_a_backfill_deleted_with_its_trigger_says_so(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """`triggers backfill` watches until the backfill ends; pruned away with its trigger,
    it ended with the bare 'no backfill <id>'."""
    import asyncio

    from triggerd.cli import _watch_backfill
    from triggerd.store.lifecycle import delete_workflow
    from triggerd.store.workflows import get_workflow

    plan = await create(pool, OPERATOR, _request(rate="1/s"))
    watching = asyncio.create_task(_watch_backfill(pool, plan.backfill_id or "", quiet=True))
    await asyncio.sleep(0.2)
    async with pool.acquire() as conn, conn.transaction():
        await delete_workflow(conn, (await get_workflow(conn, "report")).id)
    with pytest.raises(NotFound) as gone:
        await asyncio.wait_for(watching, 10)
    assert gone.value.message == (
        f"backfill {plan.backfill_id} is gone: its trigger (or workflow) was deleted while it"
        " ran; the runs it started go on")


async def test_a_stop_does_not_wait_on_a_locked_backfill_row(
    pool: asyncpg.Pool, hourly: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator's lock on a running backfill held the stop for as long as it lasted.
    plan = await create(pool, OPERATOR, _request(rate="1/s"))
    runner = BackfillRunner(pool, owner="a")
    await runner.work_once(0.1)  # holds it now
    async with pool.acquire() as operator, operator.transaction():
        await operator.execute("SELECT FROM backfills WHERE id = $1 FOR UPDATE",
                               plan.backfill_id)
        # It returns while the lock is held (the wait is a bound, not a speed).
        await asyncio.wait_for(runner.stop(), timeout=60)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("backfills_not_released") == 1
    owner = await pool.fetchval("SELECT owner FROM backfills WHERE id = $1", plan.backfill_id)
    assert owner == "a"  # released by its lease's end, not by the stop


async def test_two_backfills_of_one_trigger_under_skip_start_one_run_at_a_time(
    pool: asyncpg.Pool, hourly: str
) -> None:
    """Leased by two daemons, each counted no active run and each started one: the second
    start waits for the first's commit and sees its run. Made deterministic by holding the
    first start's transaction open until the second waits on it."""
    import asyncio

    from triggerd.store.backfills import start_slots

    first = await create(pool, OPERATOR, _request(overlap="skip", rate="1000/s"))
    second = await create(pool, OPERATOR, _request(overlap="skip", rate="1000/s"))
    claimed = {b.id: b for b in await claim_backfills(pool, "a", timedelta(seconds=15))}
    one, other = claimed[first.backfill_id or ""], claimed[second.backfill_id or ""]
    async with pool.acquire() as conn, pool.acquire() as conn2:
        outer = conn.transaction()
        await outer.start()
        assert (await start_slots(conn, one, "a", 1, "x", one_at_a_time=True))[0] == 1
        later = asyncio.create_task(start_slots(conn2, other, "a", 1, "x", one_at_a_time=True))
        for _ in range(500):  # until it waits on the first (no wall-clock bound asserted)
            if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                   " AND NOT granted"):
                break
            await asyncio.sleep(0.01)
        assert not later.done()
        await outer.commit()
        assert (await later)[0] == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_a_claim_carries_the_count_of_slots_not_their_instants(
    pool: asyncpg.Pool, hourly: str
) -> None:
    # Every tick claims each running backfill: with its up to 10,000 instants read each
    # time, eight slow backfills cost an idle daemon a fifth of a core.
    start = datetime(2025, 1, 1, tzinfo=UTC)
    plan = await create(pool, OPERATOR, _request(
        range_from=start, range_to=start + timedelta(hours=10_000), rate="1/h"))
    assert plan.to_start == 10_000
    [claimed] = await claim_backfills(pool, "a", timedelta(seconds=15))
    assert claimed.total == 10_000
    assert not [v for v in dataclasses.asdict(claimed).values() if isinstance(v, list)]
    runner = BackfillRunner(pool, owner="a")
    assert await runner.work_once(0.0) == 1  # the first slot, read from the row
    assert await _runs(pool) == [("00:00", f"backfill:{plan.backfill_id}:2025-01-01T00:00:00Z")]
