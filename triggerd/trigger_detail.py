"""A trigger described for people (``triggers show``, ``GET /api/v1/triggers/{w}/{t}``):
its definition, runtime state, next fires, recent actions, runs in flight and what its
ledger recorded. Reads only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from triggerd.cron import fire_to_json
from triggerd.schedules import SCHEDULED_TYPES, schedule_of
from triggerd.store.audit import list_audit
from triggerd.store.records import TriggerRecord
from triggerd.store.trigger_state import get_state, running_executions, slot_counts
from triggerd.views import audit_json, state_json, trigger_json

RECENT_ACTIONS = 10


async def describe(conn: Any, trigger: TriggerRecord, *, now: datetime, count: int
                   ) -> dict[str, Any]:
    doc = trigger_json(trigger)
    doc["state"] = state_json(await get_state(conn, trigger.id))
    doc["next_fires"] = (
        [fire_to_json(f) for f in schedule_of(trigger.type, trigger.config).preview(now, count)]
        if trigger.type in SCHEDULED_TYPES else [])
    doc["recent_actions"] = [audit_json(a) for a in
                             await list_audit(conn, target=trigger.full_name,
                                              limit=RECENT_ACTIONS)]
    doc["running"] = await running_executions(conn, trigger.id)
    doc["slot_counts"] = await slot_counts(conn, trigger.id)
    return doc
