"""Pause and resume: runtime state apart from definitions, decided where slots are
recorded (exactly once across replicas), audited, and never changed by apply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from triggerd.errors import Conflict, NotFound, UsageError
from triggerd.model import OverlapPolicy
from triggerd.operations import Actor, cli_actor
from triggerd.operations.triggers import pause, resume, set_enabled
from triggerd.operations.workflows import activate, archive
from triggerd.store.slots import SlotRequest, load_cron_triggers, record_slots
from triggerd.store.workflows import get_trigger

DOC: dict[str, Any] = {"workflows": [{
    "key": "report",
    "graph": {"nodes": [{"id": "a", "type": "noop"}]},
    "triggers": [{"name": "nightly", "type": "cron", "cron": "0 2 * * *"},
                 {"name": "by-hand", "type": "manual"}],
}]}
OPERATOR = Actor(name="token:ops", via="api")


@pytest.fixture
async def nightly(pool: asyncpg.Pool) -> dict[str, Any]:
    await apply_doc(pool, DOC)
    trigger = await get_trigger(pool, "report/nightly")
    config = await pool.fetchval("SELECT config::text FROM workflow_triggers WHERE id = $1",
                                 trigger.id)
    return {"id": trigger.id, "config": config}


def _slot(trigger: dict[str, Any], at: datetime) -> SlotRequest:
    return SlotRequest(trigger_id=trigger["id"], scheduled_for=at,
                       slot_iso=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       config_text=trigger["config"], overlap=OverlapPolicy.ALLOW)


async def _slots(pool: asyncpg.Pool) -> list[tuple[str, str | None, bool]]:
    rows = await pool.fetch("SELECT outcome, detail, execution_id IS NOT NULL AS ran"
                            " FROM trigger_slots ORDER BY scheduled_for")
    return [(r["outcome"], r["detail"], r["ran"]) for r in rows]


async def test_a_paused_triggers_slots_are_recorded_skipped_paused(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    result = await pause(pool, OPERATOR, "report/nightly", "  upstream down  ")
    assert result.changed and result.state.paused
    assert (result.state.note, result.state.changed_by) == ("upstream down", "token:ops")
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    written = await record_slots(pool, [_slot(nightly, soon)], fired_at="x")
    assert written.inserted == 0
    assert await _slots(pool) == [("skipped_paused", "trigger paused: upstream down", False)]
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0


async def test_pause_twice_changes_nothing_the_second_time_and_audits_once(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    assert (await pause(pool, OPERATOR, "report/nightly")).changed
    again = await pause(pool, cli_actor(), "report/nightly", "other")
    assert not again.changed and again.state.changed_by == "token:ops"
    rows = await pool.fetch("SELECT actor, action, target, note FROM audit_log")
    assert [tuple(r) for r in rows] == [("token:ops", "pause", "report/nightly", None)]


async def test_apply_never_changes_the_runtime_state(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    await pause(pool, OPERATOR, "report/nightly", "maintenance")
    changed = json.loads(json.dumps(DOC))
    changed["workflows"][0]["triggers"][0]["cron"] = "0 3 * * *"
    await apply_doc(pool, changed)
    await apply_doc(pool, DOC)
    state = await pool.fetchrow("SELECT paused, note FROM trigger_state")
    assert (state["paused"], state["note"]) == (True, "maintenance")


async def test_resume_moves_the_catch_up_floor_to_now(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    before = (await load_cron_triggers(pool))[0].enabled_at
    await pause(pool, OPERATOR, "report/nightly")
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    result = await resume(pool, OPERATOR, "report/nightly", "fixed")
    assert result.changed and not result.state.paused
    floor = (await load_cron_triggers(pool))[0].enabled_at
    assert floor > before and floor > missed
    # A slot from before the resume is stale: nothing is recorded, nothing runs.
    written = await record_slots(pool, [_slot(nightly, missed)], fired_at="x")
    assert [s for s, _ in written.stale] == [nightly["id"]]
    assert await _slots(pool) == []
    audit = await pool.fetch("SELECT action, note, detail FROM audit_log ORDER BY id")
    assert [(r["action"], r["note"]) for r in audit] == [("pause", None), ("resume", "fixed")]
    assert audit[1]["detail"] == {"catch_up": False, "forgotten_slots": 0}


async def test_a_slot_of_the_pause_written_after_the_resume_is_recorded_skipped_paused(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    """A jittered slot whose instant fell in the pause is written up to its jitter later,
    after the resume: it had no ledger row at all (stale, below the resume's floor)."""
    await pool.execute("UPDATE workflow_triggers SET enabled_at = now() - interval '1 hour'")
    await pause(pool, OPERATOR, "report/nightly", "maintenance")
    paused_at = await pool.fetchval("SELECT changed_at FROM trigger_state")
    during = paused_at.replace(microsecond=0) + timedelta(seconds=1)
    await pool.execute("SELECT pg_sleep(1.1)")
    await resume(pool, OPERATOR, "report/nightly")
    written = await record_slots(pool, [_slot(nightly, during)], fired_at="x")
    assert written.stale == () and written.inserted == 0
    assert await _slots(pool) == [
        ("skipped_paused", "trigger paused: due before the resume, written after it", False)]
    # Before the trigger was enabled a slot stays stale; after an activation (a floor that
    # is not a resume's) too: archived time has no ledger rows.
    before = await record_slots(pool, [_slot(nightly, paused_at - timedelta(hours=2))],
                                fired_at="x")
    assert len(before.stale) == 1
    await archive(pool, OPERATOR, "report")
    await activate(pool, OPERATOR, "report")
    await pool.execute("SELECT pg_sleep(1.1)")
    later = await pool.fetchval("SELECT date_trunc('second', floor_at) FROM trigger_state")
    archived = await record_slots(pool, [_slot(nightly, later)], fired_at="x")
    assert len(archived.stale) == 1 and len(await _slots(pool)) == 1


async def test_a_slot_before_an_activations_floor_stays_stale_on_a_never_paused_trigger(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    """A trigger never paused has no changed_at: the resume test read NULL as "not a
    resume's floor" wrongly, and a slot from the archived time fired."""
    await pool.execute("UPDATE workflow_triggers SET enabled_at = now() - interval '1 hour'")
    await archive(pool, OPERATOR, "report")
    await activate(pool, OPERATOR, "report")
    assert await pool.fetchval("SELECT changed_at FROM trigger_state") is None
    floor = await pool.fetchval("SELECT floor_at FROM trigger_state")
    written = await record_slots(pool, [_slot(nightly, floor.replace(microsecond=0)
                                               - timedelta(minutes=30))], fired_at="x")
    assert len(written.stale) == 1 and written.inserted == 0
    assert await _slots(pool) == []


async def test_resume_with_catch_up_forgets_the_paused_slots_and_floors_at_the_pause(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    await pause(pool, OPERATOR, "report/nightly")
    paused_at = await pool.fetchval("SELECT changed_at FROM trigger_state")
    skipped = paused_at.replace(microsecond=0) + timedelta(seconds=1)
    await record_slots(pool, [_slot(nightly, skipped)], fired_at="x")
    assert [o for o, _, _ in await _slots(pool)] == ["skipped_paused"]
    result = await resume(pool, OPERATOR, "report/nightly", catch_up=True)
    assert result.forgotten_slots == 1 and await _slots(pool) == []
    assert (await load_cron_triggers(pool))[0].enabled_at == paused_at
    # The slot skipped while paused now runs (the scheduler's catch-up writes it so).
    written = await record_slots(pool, [_slot(nightly, skipped)], fired_at="x")
    assert written.inserted == 1
    assert [o for o, _, _ in await _slots(pool)] == ["fired"]


async def test_a_catch_up_resume_also_forgets_older_slots_the_pause_held_back(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    """A catch-up spread (catchup_rate) writes missed slots after their instants: a pause
    during it recorded slots from before the pause skipped_paused, and a resume with
    --catch-up left them so, for good."""
    await pool.execute("UPDATE workflow_triggers SET enabled_at = now() - interval '2 hours'")
    await pause(pool, OPERATOR, "report/nightly")
    paused_at = await pool.fetchval("SELECT changed_at FROM trigger_state")
    held_back = paused_at.replace(microsecond=0) - timedelta(minutes=30)
    await record_slots(pool, [_slot(nightly, held_back)], fired_at="x")
    assert [o for o, _, _ in await _slots(pool)] == ["skipped_paused"]
    result = await resume(pool, OPERATOR, "report/nightly", catch_up=True)
    assert result.forgotten_slots == 1 and await _slots(pool) == []
    assert (await load_cron_triggers(pool))[0].enabled_at == held_back
    written = await record_slots(pool, [_slot(nightly, held_back)], fired_at="x")
    assert written.inserted == 1
    assert [o for o, _, _ in await _slots(pool)] == ["fired"]


async def test_a_catch_up_resume_runs_nothing_from_before_an_activation(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    # Paused, archived, activated, then resumed with --catch-up: the floor went back to
    # the pause, so the slots of the archived time (never recorded) ran too.
    await pause(pool, OPERATOR, "report/nightly")
    # Enabled two hours ago, paused one hour ago, a slot skipped since.
    await pool.execute("UPDATE workflow_triggers SET enabled_at = now() - interval '2 hours'")
    await pool.execute("UPDATE trigger_state SET changed_at = now() - interval '1 hour',"
                       " floor_at = NULL")
    paused_at = await pool.fetchval("SELECT changed_at FROM trigger_state")
    before = paused_at.replace(microsecond=0) + timedelta(minutes=1)
    await record_slots(pool, [_slot(nightly, before)], fired_at="x")
    await archive(pool, OPERATOR, "report")
    await activate(pool, OPERATOR, "report")
    activated = (await load_cron_triggers(pool))[0].enabled_at
    after = activated.replace(microsecond=0) + timedelta(seconds=1)
    await record_slots(pool, [_slot(nightly, after)], fired_at="x")
    result = await resume(pool, OPERATOR, "report/nightly", catch_up=True)
    # Only the slot skipped after the activation is caught up; the floor stays there.
    assert result.forgotten_slots == 1
    assert await pool.fetchval("SELECT scheduled_for FROM trigger_slots") == before
    assert (await load_cron_triggers(pool))[0].enabled_at == activated


async def test_bad_input_is_refused_and_leaves_nothing(
    pool: asyncpg.Pool, nightly: dict[str, Any]
) -> None:
    with pytest.raises(NotFound, match="no trigger named 'report/nope'"):
        await pause(pool, OPERATOR, "report/nope")
    with pytest.raises(Conflict, match="trigger report/by-hand is a manual trigger; only"
                       r" scheduled triggers \(cron, interval\) can be paused"):
        await pause(pool, OPERATOR, "report/by-hand")
    with pytest.raises(UsageError, match="the note is longer than 500 characters"):
        await pause(pool, OPERATOR, "report/nightly", "x" * 501)
    assert not (await resume(pool, OPERATOR, "report/nightly")).changed
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
    assert await pool.fetchval("SELECT count(*) FROM trigger_state WHERE paused") == 0


async def test_enable_and_disable_are_audited(pool: asyncpg.Pool, nightly: dict[str, Any]
                                              ) -> None:
    _, changed = await set_enabled(pool, OPERATOR, "report/nightly", False)
    assert changed
    _, changed = await set_enabled(pool, OPERATOR, "report/nightly", False)
    assert not changed
    rows = await pool.fetch("SELECT action FROM audit_log")
    assert [r["action"] for r in rows] == ["disable"]
