"""A trigger described for people (``triggers show``, ``GET /api/v1/triggers/{w}/{t}``):
its definition, runtime state, next fires, recent actions, runs in flight and what its
ledger recorded. Reads only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from triggerd.cron import EARLIEST_AFTER, LATEST_AFTER, Fire, fire_to_json
from triggerd.errors import UsageError
from triggerd.model import SlotOutcome, WorkflowStatus
from triggerd.schedules import SCHEDULED_TYPES, count_up_to, schedule_of
from triggerd.store.audit import list_audit
from triggerd.store.records import TriggerRecord
from triggerd.store.trigger_state import (
    TriggerState,
    count_skipped_by_hand,
    get_state,
    recorded_slots,
    running_executions,
    slot_counts,
)
from triggerd.views import audit_json, state_json, trigger_json

RECENT_ACTIONS = 10


def parse_instant(text: str, option: str) -> datetime:
    """``text`` as an instant given by a person (``--at``, ``--from``, ``?after=``):
    ISO-8601 with an offset; :class:`UsageError` naming ``option`` otherwise."""
    value = _offset_instant(text, option)
    try:  # 0001-01-01T00:00:00+05:00 is before the first instant there is (an exit 70)
        value.astimezone(UTC)
    except OverflowError:
        raise UsageError(f"{option}: {text[:60]!r} is out of range (years 1-9999 in UTC)"
                         ) from None
    return value


def _offset_instant(text: str, option: str) -> datetime:
    """``text`` as ISO-8601 with a UTC offset (not yet checked to have a UTC instant)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: {text[:60]!r} is not an ISO-8601 instant (e.g. 2026-03-08T00:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise UsageError(
            f"{option}: {text[:60]!r} needs a UTC offset or Z (e.g. 2026-03-08T00:00:00Z)"
        )
    return value


def preview_instant(text: str, option: str) -> datetime:
    """``text`` as the instant a preview starts after (``--after``, ``?after=``): as
    :func:`parse_instant`, and 1900-9000."""
    value = _offset_instant(text, option)
    if not EARLIEST_AFTER <= value <= LATEST_AFTER:
        raise UsageError(f"{option}: {text[:60]!r} is out of range (1900-01-01 to 9000-01-01)")
    return value


async def describe(conn: Any, trigger: TriggerRecord, *, now: datetime, count: int
                   ) -> dict[str, Any]:
    doc = trigger_json(trigger)
    state = await get_state(conn, trigger.id)
    doc["state"] = state_json(state)
    remaining, completed = progress(trigger.config, state, now=now)
    doc["next_fires"] = (
        await preview(conn, trigger, now, count, now=now)
        if trigger.type in SCHEDULED_TYPES and completed is None
        and trigger.workflow_status == WorkflowStatus.ACTIVE else [])
    doc["recent_actions"] = [audit_json(a) for a in
                             await list_audit(conn, target=trigger.full_name,
                                              limit=RECENT_ACTIONS,
                                              tenant=trigger.tenant_id)]
    doc["running"] = await running_executions(conn, trigger.id)
    doc["slot_counts"] = await slot_counts(conn, trigger.id)
    doc["remaining_runs"] = remaining
    doc["completed"] = completed
    return doc


async def preview(conn: Any, trigger: TriggerRecord, after: datetime, count: int, *,
                  now: datetime) -> list[dict[str, str | None]]:
    """The schedule's next ``count`` fires after ``after``; one the ledger has already
    decided (skipped by hand ahead of its time; fired, for a past ``after``) says so in
    its ``reason``, and so does one that ``max_runs`` leaves unrun."""
    schedule = schedule_of(trigger.type, trigger.config)
    fires = schedule.preview(after, count)
    recorded = await recorded_slots(conn, trigger.id, [f.at for f in fires])
    runs_left, _ = progress(trigger.config, await get_state(conn, trigger.id), now=now)
    if runs_left and after > now:
        # The fires from now to `after` use runs up first (not one skipped by hand); past
        # runs_left + skipped of them the answer is 0 however many more there are.
        skipped = await count_skipped_by_hand(conn, trigger.id, now, after)
        ahead = count_up_to(schedule, now, after, runs_left + skipped) - skipped
        runs_left = max(0, runs_left - ahead)
    return marked_fires(fires, recorded, runs_left=runs_left, now=now)


def marked_fires(fires: Sequence[Fire], recorded: Mapping[datetime, str], *,
                 runs_left: int | None, now: datetime) -> list[dict[str, str | None]]:
    """Previewed fires as shown, marked with what the ledger holds for them and, past the
    ``runs_left`` scheduled runs ``max_runs`` still allows (None: no limit), as skipped:
    a trigger with one run left listed five fires as if all five would run. Only future
    fires with no ledger row use up a run (a calendar's excluded instants run nothing)."""
    shown = []
    for fire in fires:
        doc = fire_to_json(fire)
        outcome = recorded.get(fire.at)
        if outcome is not None:  # a past fire (--after) is in the ledger too
            said = ("skipped by hand" if outcome == SlotOutcome.SKIPPED_MANUAL
                    else f"recorded: {outcome}")
            if outcome != SlotOutcome.FIRED:
                doc["note"] = doc["note"] or "skipped"  # like a calendar's "excluded"
            doc["reason"] = f"{doc['reason']}; {said}" if doc.get("reason") else said
        elif runs_left is not None and fire.note != "excluded" and fire.at > now:
            if runs_left == 0:
                doc["note"] = doc["note"] or "skipped"
                doc["reason"] = "past max_runs"
            runs_left = max(0, runs_left - 1)
        shown.append(doc)
    return shown


def progress(config: Mapping[str, Any], state: TriggerState, *, now: datetime
             ) -> tuple[int | None, str | None]:
    """``(remaining_runs, completed)`` of a scheduled trigger's stored ``config``: the
    scheduled fires ``max_runs`` still allows (``None`` without a limit), and why its
    schedule has ended (``None`` while it goes on)."""
    max_runs = config.get("max_runs")
    remaining = None if max_runs is None else max(0, int(max_runs) - state.scheduled_runs)
    if remaining == 0:
        return remaining, f"max_runs reached ({max_runs} scheduled runs)"
    end_at = config.get("end_at")
    if isinstance(end_at, str) and datetime.fromisoformat(end_at) <= now:
        return remaining, f"end_at passed ({end_at})"
    return remaining, None
