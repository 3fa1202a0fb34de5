"""Misfire, catch-up and jitter policy for scheduled triggers (any schedule kind): values
in, a plan out.

Pure: the scheduler reads the clock and the ledger, calls these functions and carries out
the returned plan (insert an execution per firing slot, a ``trigger_slots`` row per
decision). Nothing here reads the clock or the database.

Catch-up (:func:`plan_catchup`) covers the missed slots ``since < S <= now``, where
``since`` is the trigger's last recorded slot, or the instant it was enabled when that is
later (or there is no slot yet): a new or re-enabled trigger never fires for instants
before it was enabled. The scheduler then continues with ``next_fire(schedule, now)``.

* A slot is inside the catch-up window when ``now - S <= catchup_window`` (the boundary
  is inside); older slots are recorded as ``skipped_misfire``.
* Inside the window the misfire policy decides: ``skip`` records every slot as skipped,
  ``latest`` fires the newest and skips the rest, ``all`` fires the newest
  ``max_catchup`` (oldest first) and skips the older extras.
* The plan stays small whatever the downtime: the slots that fire are always the newest,
  so the skipped ones are the oldest. The newest ``max_catchup`` skipped slots get one
  decision each; all older ones share ONE summary decision, placed on the newest of them,
  whose detail reads ``"N older slots skipped, from A to B"``. A minutely trigger down for
  a year yields at most ``2 * max(max_catchup, 1) + 1`` decisions (``latest`` fires one
  slot even with ``max_catchup`` 0, which definitions refuse), computed without enumerating
  its 525,600 slots (``Schedule.count_fires``, ``Schedule.last_fires``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from triggerd.cron import CronSchedule, utc_iso
from triggerd.durations import format_duration
from triggerd.model import MisfirePolicy, SlotOutcome
from triggerd.schedules import CronPlan, Schedule

__all__ = ["SlotDecision", "group_due", "jitter_offset", "plan_catchup"]

_TINY = timedelta(microseconds=1)


@dataclass(frozen=True, kw_only=True)
class SlotDecision:
    """What to do with one missed slot."""

    scheduled_for: datetime  # UTC
    fire: bool  # True: insert an execution for it; False: record it as skipped
    reason: str  # a SlotOutcome value: "fired" or "skipped_misfire"
    detail: str | None = None


def plan_catchup(
    schedule: Schedule | CronSchedule,
    *,
    misfire: MisfirePolicy,
    catchup_window: timedelta,
    max_catchup: int,
    last_slot: datetime | None,
    enabled_since: datetime,
    now: datetime,
) -> list[SlotDecision]:
    """Decisions for the slots missed in ``(max(last_slot, enabled_since), now]``, oldest first."""
    for name, value in (("enabled_since", enabled_since), ("now", now), ("last_slot", last_slot)):
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if max_catchup < 0:
        raise ValueError(f"max_catchup must not be negative, got {max_catchup}")
    if catchup_window < timedelta(0):
        raise ValueError(f"catchup_window must not be negative, got {catchup_window}")
    if isinstance(schedule, CronSchedule):
        schedule = CronPlan(schedule)
    since = enabled_since if last_slot is None else max(last_slot, enabled_since)
    if now <= since:
        return []
    missed = schedule.count_fires(since, now)
    if missed == 0:
        return []
    window_start = now - catchup_window
    # Slots at or after window_start; fires are whole seconds, so `> start - 1µs` is `>=`.
    in_window = schedule.count_fires(max(since, window_start - _TINY), now)
    firing = {
        MisfirePolicy.SKIP: 0,
        MisfirePolicy.LATEST: min(1, in_window),
        MisfirePolicy.ALL: min(max_catchup, in_window),
    }[misfire]
    skipped = missed - firing
    listed = min(skipped, max_catchup)
    summarized = skipped - listed
    wanted = firing + listed + (1 if summarized else 0)
    slots = [f.at for f in schedule.last_fires(since, now, wanted)]

    decisions: list[SlotDecision] = []
    if summarized:
        newest = slots.pop(0)
        oldest = newest
        if summarized > 1:
            first = schedule.next_fire(since)
            assert first is not None  # counted above, so it exists
            oldest = first.at
        decisions.append(
            SlotDecision(
                scheduled_for=newest,
                fire=False,
                reason=SlotOutcome.SKIPPED_MISFIRE,
                detail=_summary(summarized, oldest, newest),
            )
        )
    in_window_detail = {
        MisfirePolicy.SKIP: "misfire policy skip",
        MisfirePolicy.LATEST: "misfire policy latest: only the newest missed slot runs",
        MisfirePolicy.ALL: f"misfire policy all: only the newest {max_catchup} missed slots run",
    }[misfire]
    outside_detail = f"older than the catch-up window of {format_duration(catchup_window)}"
    for slot in slots[:listed]:
        decisions.append(
            SlotDecision(
                scheduled_for=slot,
                fire=False,
                reason=SlotOutcome.SKIPPED_MISFIRE,
                detail=outside_detail if slot < window_start else in_window_detail,
            )
        )
    for slot in slots[listed:]:
        decisions.append(
            SlotDecision(
                scheduled_for=slot,
                fire=True,
                reason=SlotOutcome.FIRED,
                detail=f"catch-up (misfire policy {misfire.value})",
            )
        )
    return decisions


def plan_failed_slots(
    failed: Iterable[datetime],
    *,
    misfire: MisfirePolicy,
    catchup_window: timedelta,
    max_catchup: int,
    now: datetime,
    newer_missed: bool,
) -> list[SlotDecision]:
    """Decisions for slots whose write failed while a later slot of the same trigger was
    recorded (the first writes behind a lock timed out, the ones queued after them went
    through): missed slots like any other, decided by the misfire policy, oldest first.
    ``newer_missed``: the catch-up after the trigger's last recorded slot found missed slots
    too, so under ``latest`` none of these is the newest."""
    ordered = sorted(set(failed))
    window_start = now - catchup_window
    in_window = [slot for slot in ordered if slot >= window_start]
    firing = {
        MisfirePolicy.SKIP: 0,
        MisfirePolicy.LATEST: 0 if newer_missed else min(1, len(in_window)),
        MisfirePolicy.ALL: min(max_catchup, len(in_window)),
    }[misfire]
    fire = set(in_window[len(in_window) - firing:]) if firing else set()
    in_window_detail = {
        MisfirePolicy.SKIP: "misfire policy skip",
        MisfirePolicy.LATEST: "misfire policy latest: only the newest missed slot runs",
        MisfirePolicy.ALL: f"misfire policy all: only the newest {max_catchup} missed slots run",
    }[misfire]
    return [
        SlotDecision(scheduled_for=slot, fire=True, reason=SlotOutcome.FIRED,
                     detail=f"catch-up (misfire policy {misfire.value})")
        if slot in fire else
        SlotDecision(scheduled_for=slot, fire=False, reason=SlotOutcome.SKIPPED_MISFIRE,
                     detail=in_window_detail if slot >= window_start else
                     f"older than the catch-up window of {format_duration(catchup_window)}")
        for slot in ordered
    ]


def _summary(count: int, oldest: datetime, newest: datetime) -> str:
    if count == 1:
        return f"1 older slot skipped, at {utc_iso(newest)}"
    return f"{count} older slots skipped, from {utc_iso(oldest)} to {utc_iso(newest)}"


def jitter_offset(trigger_id: str, scheduled_for: datetime, jitter: timedelta) -> timedelta:
    """A delay in ``[0, jitter)``, the same on every replica for one trigger and slot.

    Derived from a BLAKE2b hash of the trigger id and the slot's UTC instant, so replicas
    agree without talking and the delays of many triggers spread uniformly.
    """
    if jitter < timedelta(0):
        raise ValueError(f"jitter must not be negative, got {jitter}")
    span = jitter // _TINY  # whole microseconds
    if span == 0:
        return timedelta(0)
    if scheduled_for.utcoffset() is None:
        raise ValueError(f"scheduled_for must be timezone-aware, got {scheduled_for!r}")
    key = f"{trigger_id}\x00{utc_iso(scheduled_for)}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return timedelta(microseconds=(value * span) >> 64)


def group_due(fires: Iterable[tuple[str, datetime]]) -> dict[datetime, list[str]]:
    """Trigger ids grouped by their (UTC) fire instant, instants ascending, ids in input order."""
    groups: dict[datetime, list[str]] = {}
    for trigger_id, instant in fires:
        if instant.utcoffset() is None:
            raise ValueError(f"fire instants must be timezone-aware, got {instant!r}")
        groups.setdefault(instant.astimezone(UTC), []).append(trigger_id)
    return dict(sorted(groups.items()))
