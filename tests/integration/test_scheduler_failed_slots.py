"""The cron scheduler's memory of failed slot writes when triggers go or change: a removed
or disabled trigger owes nothing, a changed schedule owes only the slots it still has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_kinds import fixed_clock
from tests.integration.test_scheduler_support import (
    make_trigger,
    make_workflow,
    running,
    slots_of,
    wait_for,
)
from triggerd.cron import utc_iso
from triggerd.model import OverlapPolicy
from triggerd.store.slots import SlotBatch, SlotRequest, load_cron_triggers, record_slots

Pool = Any
NOW = datetime(2027, 5, 1, 12, 0, 30, tzinfo=UTC)
NOON = NOW.replace(second=0)
EVERY_FIVE = {"cron": "*/5 * * * *", "overlap": "allow", "misfire": "all",
              "catchup_window": "1h", "max_catchup": 10}
EVERY_TEN = {**EVERY_FIVE, "cron": "*/10 * * * *"}


def _minutes_before_noon(minutes: int) -> datetime:
    return NOON - timedelta(minutes=minutes)


async def _triggers(pool: Pool) -> tuple[dict[str, str], dict[str, str]]:
    """Four triggers every five minutes whose noon slot is recorded (their catch-ups start
    after it); their ids and config texts by name."""
    workflow_id = await make_workflow(pool)
    ids = {name: await make_trigger(pool, workflow_id, name, EVERY_FIVE,
                                    enabled_at=NOW - timedelta(hours=1))
           for name in ("removed", "disabled", "changed", "kept")}
    rows = await load_cron_triggers(pool, sorted(ids.values()))
    texts = {name: next(r.config_text for r in rows if r.id == tid) for name, tid in ids.items()}
    await record_slots(pool, [
        SlotRequest(trigger_id=tid, scheduled_for=NOON, slot_iso=utc_iso(NOON),
                    config_text=texts[name], overlap=OverlapPolicy.ALLOW)
        for name, tid in ids.items()
    ], fired_at=utc_iso(NOW))
    return ids, texts


async def _change(pool: Pool, ids: dict[str, str]) -> None:
    await pool.execute("DELETE FROM workflow_triggers WHERE id = $1", ids["removed"])
    await pool.execute("UPDATE workflow_triggers SET enabled = false WHERE id = $1",
                       ids["disabled"])
    await pool.execute("UPDATE workflow_triggers SET config = $2 WHERE id = $1",
                       ids["changed"], EVERY_TEN)


async def _decided(pool: Pool, trigger_id: str) -> dict[datetime, str]:
    return {s["scheduled_for"]: s["outcome"] for s in await slots_of(pool, trigger_id)}


@pytest.mark.parametrize("path", ["rebuild", "reconcile", "notification"])
async def test_failed_slots_go_with_their_trigger_or_its_old_schedule(
    pool: Pool, dsn: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes of 11:50 and 11:55 failed behind the recorded noon slot. Then one trigger is
    removed, one disabled, one goes from every five to every ten minutes. Whichever way the
    scheduler learns it (a rebuild after a gap, a full reconcile, a notification), the
    removed and disabled ones are forgotten and the changed one catches up 11:50 (a slot of
    its new schedule too) but not 11:55 (only the old one had it). An unchanged trigger
    keeps both, caught up by its next catch-up (a rebuild's)."""
    ids, _ = await _triggers(pool)
    ten_to, five_to = _minutes_before_noon(10), _minutes_before_noon(5)
    async with running(pool, dsn, clock=fixed_clock(NOW)) as scheduler:
        for trigger_id in ids.values():
            for slot in (ten_to, five_to):
                scheduler._failed.add(trigger_id, slot)
        if path != "notification":
            # Not heard: the path under test alone applies the changes.
            monkeypatch.setattr(scheduler, "_on_trigger_change", lambda trigger_id: None)
        await _change(pool, ids)
        if path == "rebuild":
            await scheduler._rebuild("test")
        elif path == "reconcile":
            await scheduler.reconcile()
        assert await wait_for(lambda: set(scheduler._failed.triggers()) <= {ids["kept"]},
                              timeout=3.0), sorted(scheduler._failed.triggers())
        kept = set(scheduler._failed.of(ids["kept"]))
    assert await _decided(pool, ids["changed"]) == {ten_to: "fired", NOON: "fired"}
    if path == "rebuild":
        assert not kept
        assert await _decided(pool, ids["kept"]) == {ten_to: "fired", five_to: "fired",
                                                     NOON: "fired"}
    else:
        assert kept == {ten_to, five_to}
    assert await _decided(pool, ids["removed"]) == {}
    assert await _decided(pool, ids["disabled"]) == {NOON: "fired"}

async def test_a_write_that_fails_after_its_trigger_went_or_changed_is_not_remembered(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write still out when its trigger is removed or its schedule changes, failing
    after the reload: the removed trigger's slots are not remembered, the changed one's
    only where its new schedule has them."""
    ids, texts = await _triggers(pool)
    async with running(pool, dsn, clock=fixed_clock(NOW)) as scheduler:
        monkeypatch.setattr(scheduler, "_on_trigger_change", lambda trigger_id: None)
        await _change(pool, ids)
        await scheduler.reconcile()
        assert scheduler.trigger_count == 2
        scheduler._note_failed(SlotBatch.of(
            SlotRequest(trigger_id=ids[name], scheduled_for=slot, slot_iso=utc_iso(slot),
                        config_text=texts[name], overlap=OverlapPolicy.ALLOW)
            for name in ("removed", "disabled", "changed", "kept")
            for slot in (_minutes_before_noon(10), _minutes_before_noon(5))
        ))
        remembered = {t: set(scheduler._failed.of(t)) for t in scheduler._failed.triggers()}
    assert remembered == {
        ids["changed"]: {_minutes_before_noon(10)},
        ids["kept"]: {_minutes_before_noon(10), _minutes_before_noon(5)},
    }

