"""max_runs and pause_after_failures: runtime state the scheduler and the executor keep
beside the trigger (trigger_state), decided in the statements that record slots and final
states, so every replica and executor agrees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, fire, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.model import DEFAULT_TENANT, OverlapPolicy
from triggerd.operations import Actor
from triggerd.operations.triggers import resume
from triggerd.store.audit import list_audit
from triggerd.store.executions import ExecutionUpdate, claim_executions, write_progress
from triggerd.store.slots import SlotRequest, load_cron_triggers, record_slots
from triggerd.store.trigger_state import get_state, record_manual_skips
from triggerd.store.workflows import get_trigger
from triggerd.trigger_detail import preview

OPERATOR = Actor(name="token:ops", via="api")
START = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def _doc(extra: dict[str, Any], nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"workflows": [{
        "key": "report",
        "graph": {"nodes": nodes or [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "hourly", "type": "cron", "cron": "0 * * * *",
                      "overlap": "allow", **extra},
                     {"name": "by-hand", "type": "manual"}],
    }]}


async def _trigger(pool: asyncpg.Pool, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
    trigger = await get_trigger(pool, "report/hourly", tenant)
    # Every slot of these tests is before the trigger was enabled: move that back.
    await pool.execute("UPDATE workflow_triggers SET enabled_at = $2 WHERE id = $1",
                       trigger.id, START - timedelta(days=1))
    config = await pool.fetchval("SELECT config::text FROM workflow_triggers WHERE id = $1",
                                 trigger.id)
    return {"id": trigger.id, "config": config}


def _slot(trigger: dict[str, Any], hour: int) -> SlotRequest:
    at = START + timedelta(hours=hour)
    return SlotRequest(trigger_id=trigger["id"], scheduled_for=at,
                       slot_iso=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       config_text=trigger["config"], overlap=OverlapPolicy.ALLOW)


# --- max_runs ---------------------------------------------------------------------------


async def test_max_runs_counts_scheduled_fires_and_completes_the_trigger(
    pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, _doc({"max_runs": 2}))
    trigger = await _trigger(pool)
    for hour in (0, 1):
        assert (await record_slots(pool, [_slot(trigger, hour)], fired_at="x")).inserted == 1
    state = await get_state(pool, trigger["id"])
    assert state.scheduled_runs == 2 and state.completed_at is not None
    # The third slot is not written: it comes back stale, and the reload drops the trigger.
    third = await record_slots(pool, [_slot(trigger, 2)], fired_at="x")
    assert third.inserted == 0 and [t for t, _ in third.stale] == [trigger["id"]]
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 2
    assert await load_cron_triggers(pool) == []


async def test_max_runs_limits_one_catch_up_batch(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc({"max_runs": 2}))
    trigger = await _trigger(pool)
    written = await record_slots(pool, [_slot(trigger, h) for h in range(4)], fired_at="x")
    assert written.inserted == 2 and len(written.stale) == 2
    rows = await pool.fetch("SELECT scheduled_for FROM trigger_slots ORDER BY 1")
    assert [r["scheduled_for"] for r in rows] == [START, START + timedelta(hours=1)]
    assert (await get_state(pool, trigger["id"])).scheduled_runs == 2


async def test_manual_fires_do_not_count_and_raising_max_runs_reopens_the_trigger(
    pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, _doc({"max_runs": 1}))
    trigger = await _trigger(pool)
    await fire(pool, "report/hourly")
    assert (await get_state(pool, trigger["id"])).scheduled_runs == 0
    await record_slots(pool, [_slot(trigger, 0)], fired_at="x")
    assert await load_cron_triggers(pool) == []
    first_completion = (await get_state(pool, trigger["id"])).completed_at
    await apply_doc(pool, _doc({"max_runs": 3}))
    loaded = await load_cron_triggers(pool)
    assert [t.id for t in loaded] == [trigger["id"]]
    # Reopened as a re-enable would: the slots that passed while it was completed were
    # never due (they all ran at once as a catch-up of the reload), and it is no longer
    # completed.
    reopened = loaded[0].enabled_at
    assert reopened > START + timedelta(days=300)
    assert (await get_state(pool, trigger["id"])).completed_at is None
    # The count survives the edit (runtime state): two more, then complete again, dated
    # when it happens (it kept the first completion's time).
    await pool.execute("UPDATE workflow_triggers SET enabled_at = $2 WHERE id = $1",
                       trigger["id"], START - timedelta(days=1))  # these tests' past slots
    trigger["config"] = loaded[0].config_text
    written = await record_slots(pool, [_slot(trigger, h) for h in (1, 2, 3)], fired_at="x")
    assert written.inserted == 2
    state = await get_state(pool, trigger["id"])
    assert state.scheduled_runs == 3
    assert state.completed_at is not None and first_completion is not None
    assert state.completed_at > first_completion


async def test_triggers_without_max_runs_keep_no_count(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc({}))
    trigger = await _trigger(pool)
    written = await record_slots(pool, [_slot(trigger, h) for h in range(3)], fired_at="x")
    assert written.inserted == 3
    assert await pool.fetchval("SELECT count(*) FROM trigger_state") == 0


# --- pause_after_failures ---------------------------------------------------------------


async def _finish(pool: asyncpg.Pool, outcomes: dict[int, str], trigger: dict[str, Any]
                  ) -> dict[int, str]:
    """Record the slots of ``outcomes`` (hour -> final status), claim their runs and write
    every final state in one batch, as an executor's writer does; returns hour -> run id."""
    await record_slots(pool, [_slot(trigger, h) for h in outcomes], fired_at="x")
    rows = await pool.fetch("SELECT id::text AS id, scheduled_for FROM workflow_executions"
                            " WHERE scheduled_for = ANY($1::timestamptz[])",
                            [START + timedelta(hours=h) for h in outcomes])
    ids = {int((r["scheduled_for"] - START) / timedelta(hours=1)): r["id"] for r in rows}
    async with pool.acquire() as conn:
        claimed = await claim_executions(conn, "test-owner", timedelta(minutes=1), 100)
        assert {c.id for c in claimed} == set(ids.values())
        done = await write_progress(conn, "test-owner", [], [
            ExecutionUpdate(id=ids[h], status=status,
                            error_code="FAILED" if status == "ERROR" else None)
            for h, status in outcomes.items()])
    assert done == set(ids.values())
    return ids


async def test_consecutive_failures_pause_the_trigger_naming_the_runs(
    pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, _doc({"pause_after_failures": 3}))
    trigger = await _trigger(pool)
    first = await _finish(pool, {0: "ERROR", 1: "ERROR"}, trigger)
    state = await get_state(pool, trigger["id"])
    assert (state.paused, state.consecutive_failures) == (False, 2)
    third = await _finish(pool, {2: "ERROR"}, trigger)
    state = await get_state(pool, trigger["id"])
    failed = (first[0], first[1], third[2])
    assert state.paused and state.changed_by == "scheduler"
    assert state.failed_executions == failed
    assert state.note == f"paused after 3 consecutive failed scheduled runs: {', '.join(failed)}"
    audit = await pool.fetchrow("SELECT actor, action, target, note, detail FROM audit_log")
    assert (audit["actor"], audit["action"], audit["target"], audit["note"]) == (
        "scheduler", "pause", "report/hourly", state.note)
    assert audit["detail"] == {"reason": "pause_after_failures", "threshold": 3,
                               "failed_executions": list(failed)}
    # Paused: the next slot is recorded skipped_paused, and runs that still end count on
    # without pausing (or auditing) again.
    await record_slots(pool, [_slot(trigger, 3)], fired_at="x")
    assert await pool.fetchval(
        "SELECT outcome FROM trigger_slots WHERE scheduled_for = $1",
        START + timedelta(hours=3)) == "skipped_paused"
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1
    # A resume clears the count and the named runs.
    await resume(pool, OPERATOR, "report/hourly", "fixed upstream")
    state = await get_state(pool, trigger["id"])
    assert (state.paused, state.consecutive_failures, state.failed_executions) == (
        False, 0, ())


async def test_an_automatic_pause_is_audited_in_the_triggers_tenant(
    pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, {"tenant": "acme", **_doc({"pause_after_failures": 1})})
    trigger = await _trigger(pool, "acme")
    await _finish(pool, {0: "ERROR"}, trigger)
    assert (await get_state(pool, trigger["id"])).paused
    # acme's audit list shows it; the default tenant's does not.
    assert [(r.actor, r.action, r.target, r.tenant_id)
            for r in await list_audit(pool, tenant="acme")] == [
        ("scheduler", "pause", "report/hourly", "acme")]
    assert await list_audit(pool, tenant=DEFAULT_TENANT) == []


async def test_a_success_resets_the_count_also_within_one_batch(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc({"pause_after_failures": 2}))
    trigger = await _trigger(pool)
    await _finish(pool, {0: "ERROR"}, trigger)
    ids = await _finish(pool, {1: "ERROR", 2: "SUCCESS", 3: "ERROR"}, trigger)
    state = await get_state(pool, trigger["id"])
    assert (state.paused, state.consecutive_failures, state.failed_executions) == (
        False, 1, (ids[3],))
    assert state.last_success_at is not None
    await _finish(pool, {4: "ERROR"}, trigger)
    assert (await get_state(pool, trigger["id"])).paused


async def test_manual_runs_and_cancellations_do_not_count(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc({"pause_after_failures": 1}))
    trigger = await _trigger(pool)
    await _finish(pool, {0: "CANCELED"}, trigger)
    run = await fire(pool, "report/hourly")
    async with pool.acquire() as conn:
        await claim_executions(conn, "test-owner", timedelta(minutes=1), 10)
        await write_progress(conn, "test-owner", [],
                             [ExecutionUpdate(id=run, status="ERROR", error_code="X")])
    state = await get_state(pool, trigger["id"])
    assert (state.paused, state.consecutive_failures) == (False, 0)


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    yield ex
    await ex.stop()


async def test_the_executor_pauses_a_failing_schedule(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, _doc({"pause_after_failures": 2},
                               [{"id": "boom", "type": "fail",
                                 "params": {"message": "upstream is down"}}]))
    trigger = await _trigger(pool)
    await record_slots(pool, [_slot(trigger, 0), _slot(trigger, 1)], fired_at="x")

    async def paused() -> bool:
        return (await get_state(pool, trigger["id"])).paused

    await wait_for(paused)
    runs = await pool.fetch("SELECT id::text AS id, status FROM workflow_executions"
                            " ORDER BY scheduled_for")
    assert [r["status"] for r in runs] == ["ERROR", "ERROR"]
    state = await get_state(pool, trigger["id"])
    # Named in the order they ended (the executor may finish them in either order).
    assert sorted(state.failed_executions) == sorted(r["id"] for r in runs)


async def test_migration_0020_stores_double_encoded_details_as_objects(empty_dsn: str) -> None:
    from triggerd import db

    known = db.known_migrations()
    before = [m for m in known if m.version < 20]
    await db.migrate(empty_dsn, before)
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute(
            "INSERT INTO audit_log (actor, action, target_kind, target, detail)"
            " VALUES ('cli:x', 'pause', 'trigger', 'a/b', to_jsonb($1::text)),"
            " ('cli:x', 'resume', 'trigger', 'a/b', '{\"ok\": true}')",
            '{"catch_up": false}')
        await conn.execute("INSERT INTO workflows (key, name) VALUES ('w', 'w')")
        await conn.execute(
            "INSERT INTO workflow_triggers (workflow_id, name, type, config)"
            " SELECT id, 'h', 'cron', '{}' FROM workflows")
        await conn.execute(
            "INSERT INTO backfills (id, trigger_id, range_from, range_to, only_missing, overlap,"
            " rate_per_second, slots, actor, created_at)"
            " SELECT gen_random_uuid(), id, now(), now(), false, 'skip', 1, '{}', 'cli:x',"
            " now() - interval '1 day'"
            " FROM workflow_triggers")
        await conn.execute(
            "INSERT INTO workflow_executions (workflow_id, trigger_type, input, context)"
            " SELECT id, 'cron', to_jsonb($1::text), to_jsonb($2::text) FROM workflows",
            '{"n": 1}', '{"trigger": {"backfill": "b1"}}')
        await db.migrate(empty_dsn)
        details = await conn.fetch("SELECT detail::text AS d FROM audit_log ORDER BY id")
        assert [r["d"] for r in details] == ['{"catch_up": false}', '{"ok": true}']
        run = await conn.fetchrow("SELECT input::text AS i, context::text AS c"
                                  " FROM workflow_executions")
        assert (run["i"], run["c"]) == ('{"n": 1}', '{"trigger": {"backfill": "b1"}}')
    finally:
        await conn.close()


# --- monitor: true ----------------------------------------------------------------------


def _series(text: str, metric: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            found[labels[len(metric) + len('{trigger="'):-2]] = float(value)
    return found


async def test_monitored_triggers_export_last_success_and_next_fire(pool: asyncpg.Pool) -> None:
    from triggerd.api.metrics import Metrics
    from triggerd.operations.triggers import pause

    doc = _doc({"monitor": True})
    doc["workflows"][0]["triggers"] += [
        {"name": "daily", "type": "cron", "cron": "0 3 * * *", "monitor": True},
        {"name": "quiet", "type": "cron", "cron": "0 4 * * *"},
        {"name": "sync", "type": "interval", "every": "6h", "monitor": True}]
    await apply_doc(pool, doc)
    trigger = await _trigger(pool)
    await _finish(pool, {0: "SUCCESS"}, trigger)
    ended = await pool.fetchval("SELECT end_time FROM workflow_executions")
    await pause(pool, OPERATOR, "report/daily")
    metrics = Metrics(process_metrics=False)
    await metrics.refresh(pool)
    text = metrics.render()[0].decode()
    assert _series(text, "triggerd_trigger_last_success_timestamp_seconds") == {
        "report/hourly": ended.timestamp()}
    next_fires = _series(text, "triggerd_trigger_next_fire_timestamp_seconds")
    assert set(next_fires) == {"report/hourly", "report/sync"}  # daily is paused
    hourly = datetime.fromtimestamp(next_fires["report/hourly"], UTC)
    assert (hourly.minute, hourly.second) == (0, 0) and hourly > datetime.now(UTC)
    assert next_fires["report/sync"] % (6 * 3600) == 0
    # Bounded: at most label_limit monitored triggers, by name (daily, hourly; not sync).
    small = Metrics(process_metrics=False, label_limit=2)
    await small.refresh(pool)
    assert set(_series(small.render()[0].decode(),
                       "triggerd_trigger_next_fire_timestamp_seconds")) == {"report/hourly"}


async def test_a_monitored_config_no_schedule_is_made_of_leaves_the_scrape_whole(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture,
) -> None:
    """The next fires are computed in a thread whose error was not caught: the scrape
    answered 500 for every metric. Now it says why and serves the rest."""
    import logging

    from triggerd.api.metrics import Metrics

    doc = _doc({"monitor": True})
    doc["workflows"][0]["triggers"].append(
        {"name": "daily", "type": "cron", "cron": "0 3 * * *", "monitor": True})
    await apply_doc(pool, doc)
    # A stored config an older or damaged database may hold (apply refuses it).
    await pool.execute("""UPDATE workflow_triggers SET config = config || '{"cron": "bogus"}'"""
                       " WHERE name = 'hourly'")
    caplog.set_level(logging.WARNING, logger="triggerd.api.metrics")
    metrics = Metrics(process_metrics=False)
    await metrics.refresh(pool)
    text = metrics.render()[0].decode()
    assert "triggerd_queue_depth" in text
    # Only the bad one's gauges are left out: the other monitored trigger stays current.
    assert set(_series(text, "triggerd_trigger_next_fire_timestamp_seconds")) == {
        "report/daily"}
    [record] = [r for r in caplog.records if r.__dict__.get("event") == "metrics_monitor_failed"]
    assert record.getMessage() == "metrics: cannot make the schedule of a monitored trigger"
    assert record.__dict__["trigger"] == "report/hourly"


async def test_next_fires_mark_the_fires_max_runs_leaves_unrun(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc({"max_runs": 3}))
    trigger = await _trigger(pool)
    await record_slots(pool, [_slot(trigger, 0)], fired_at="x")
    # Skipped by hand ahead of its time: it uses up no run, so one more fire runs.
    await record_manual_skips(pool, trigger["id"], [START + timedelta(hours=2)], detail="x")
    record = await get_trigger(pool, "report/hourly")
    fires = await preview(pool, record, START, 5, now=START + timedelta(minutes=30))
    assert [(f["at"], f["note"], f.get("reason")) for f in fires] == [
        ("2026-01-05T03:00:00Z", None, None),
        ("2026-01-05T04:00:00Z", "skipped", "skipped by hand"),
        ("2026-01-05T05:00:00Z", None, None),
        ("2026-01-05T06:00:00Z", "skipped", "past max_runs"),
        ("2026-01-05T07:00:00Z", "skipped", "past max_runs"),
    ]
    # Asked from a later instant: the fires between now and then use the runs up first
    # (03:00 and 05:00; 04:00 was skipped by hand).
    later = await preview(pool, record, START + timedelta(hours=3, minutes=30), 2,
                          now=START + timedelta(minutes=30))
    assert [(f["at"], f["note"], f.get("reason")) for f in later] == [
        ("2026-01-05T06:00:00Z", "skipped", "past max_runs"),
        ("2026-01-05T07:00:00Z", "skipped", "past max_runs"),
    ]


async def test_a_skip_of_a_trigger_that_made_its_max_runs_fires_is_a_conflict(
    pool: asyncpg.Pool
) -> None:
    """Its schedule starts nothing more: the skip recorded fires that would never come."""
    from triggerd.errors import Conflict
    from triggerd.operations.triggers import skip

    await apply_doc(pool, _doc({"max_runs": 2}))
    trigger = await _trigger(pool)
    for hour in (0, 1):
        await record_slots(pool, [_slot(trigger, hour)], fired_at="x")
    audit = await pool.fetchval("SELECT count(*) FROM audit_log")
    with pytest.raises(Conflict) as refused:
        await skip(pool, OPERATOR, "report/hourly", next_count=3)
    assert refused.value.message == ("trigger report/hourly fires no more (max_runs reached:"
                                     " 2 scheduled runs); nothing to skip")
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 2
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == audit
    # Raised again, the trigger goes on, and its next fire can be skipped.
    await apply_doc(pool, _doc({"max_runs": 5}))
    assert len((await skip(pool, OPERATOR, "report/hourly", next_count=1)).skipped) == 1


async def test_an_only_missing_backfill_does_not_take_the_fires_after_max_runs_for_missing(
    pool: asyncpg.Pool
) -> None:
    from triggerd.operations.backfills import BackfillRequest, create

    await apply_doc(pool, _doc({"max_runs": 2}))
    trigger = await _trigger(pool)
    for hour in (0, 2):  # hour 1 was missed (the daemon was down)
        await record_slots(pool, [_slot(trigger, hour)], fired_at="x")
    # Completed by a catch-up hours after its last fire was due: the fires in between were
    # past max_runs too (the catch-up wrote no ledger row for them).
    await pool.execute("UPDATE trigger_state SET completed_at = $2 WHERE trigger_id = $1",
                       trigger["id"], START + timedelta(hours=10))
    plan = await create(pool, OPERATOR, BackfillRequest(
        trigger="report/hourly", range_from=START, range_to=START + timedelta(hours=5),
        only_missing=True, dry_run=True))
    assert [(s.at.hour, s.action) for s in plan.slots] == [
        (2, "skip"), (3, "start"), (4, "skip"), (5, "skip"), (6, "skip")]
    assert [s.reason for s in plan.slots][1:] == [
        "no ledger row", "already fired", "past max_runs", "past max_runs"]


async def test_the_last_fire_an_only_missing_backfill_stops_at_is_the_schedule_s_own(
    pool: asyncpg.Pool
) -> None:
    """What max_runs counts: a buffered last slot is a fire; a row a backfill wrote is not
    (it moved the boundary past fires the schedule never made)."""
    from triggerd.operations.backfills import BackfillRequest, create

    await apply_doc(pool, _doc({"max_runs": 2}))
    trigger = await _trigger(pool)
    for hour in (0, 2):
        await record_slots(pool, [_slot(trigger, hour)], fired_at="x")
    await pool.execute("UPDATE trigger_slots SET outcome = 'buffered'"
                       " WHERE scheduled_for = $1", START + timedelta(hours=2))
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id, detail)"
        " VALUES ($1, $2, 'fired', gen_random_uuid(), 'backfill 1234')",
        trigger["id"], START + timedelta(hours=4))
    await pool.execute("UPDATE trigger_state SET completed_at = $2 WHERE trigger_id = $1",
                       trigger["id"], START + timedelta(hours=10))
    plan = await create(pool, OPERATOR, BackfillRequest(
        trigger="report/hourly", range_from=START, range_to=START + timedelta(hours=5),
        only_missing=True, dry_run=True))
    assert [(s.at.hour - START.hour, s.action, s.reason) for s in plan.slots] == [
        (0, "skip", "already fired"), (1, "start", "no ledger row"),
        (2, "skip", "already buffered"), (3, "skip", "past max_runs"),
        (4, "skip", "already fired")]
