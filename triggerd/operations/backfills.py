"""Backfill: run a trigger's slots over a past range again, or only the missing ones.

The plan is pure (:func:`plan_slots`): the schedule's fires in the half-open range
``[from, to)`` and, with ``only_missing``, the ledger's outcomes decide which start. The
daemons' backfill runners then start them at the backfill's rate (triggerd/backfill.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from triggerd.cron import EARLIEST_AFTER, Fire, utc_iso
from triggerd.errors import Conflict, UsageError
from triggerd.ids import canonical_uuid
from triggerd.model import DEFAULT_TENANT, OverlapPolicy, not_running_reason
from triggerd.operations.actor import Actor, home
from triggerd.operations.triggers import check_note, scheduled_trigger
from triggerd.schedules import Schedule, schedule_of
from triggerd.store import backfills as store
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.trigger_state import get_state
from triggerd.store.workflows import get_trigger

MAX_SLOTS = 10_000
DEFAULT_RATE = "10/s"
# Outcomes --only-missing runs again: the slot did not run because of a policy.
RERUN_OUTCOMES = frozenset({"skipped_misfire", "skipped_overlap"})
_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)/(s|m|h)$")


def parse_rate(text: str) -> float:
    """``10/s``, ``30/m``, ``0.5/s``: starts per second (0 < rate <= 1000/s)."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text[:40]!r} is not N/s, N/m or N/h (e.g. 10/s)", field="rate")
    per = {"s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    rate = float(match.group(1)) / per
    if not 0 < rate <= 1000:
        raise UsageError(f"{text} is out of range (more than 0, at most 1000/s)",
                         field="rate")
    return rate


@dataclass(frozen=True, kw_only=True)
class PlannedSlot:
    at: datetime
    action: str  # start | skip
    reason: str | None


def range_fires(schedule: Schedule, range_from: datetime, range_to: datetime) -> list[Fire]:
    """The fires in ``[range_from, range_to)``, at most one more than ``MAX_SLOTS``."""
    return schedule.fires_between(range_from - timedelta(microseconds=1),
                                  range_to - timedelta(microseconds=1), MAX_SLOTS + 1)


def plan_slots(fires: Sequence[Fire], only_missing: bool, outcomes: Mapping[datetime, str],
               last_fire: datetime | None = None) -> list[PlannedSlot]:
    """What the backfill does with each of the range's ``fires`` (:func:`range_fires`).
    ``last_fire``: the instant of the last fire of a trigger that made its ``max_runs``
    fires; the fires after it were never due, so ``only_missing`` does not take them for
    missing."""
    planned = []
    for fire in fires:
        outcome = outcomes.get(fire.at)
        if not only_missing:
            planned.append(PlannedSlot(at=fire.at, action="start", reason=None))
        elif outcome is None and last_fire is not None and fire.at > last_fire:
            planned.append(PlannedSlot(at=fire.at, action="skip", reason="past max_runs"))
        elif outcome is None:
            planned.append(PlannedSlot(at=fire.at, action="start", reason="no ledger row"))
        elif outcome in RERUN_OUTCOMES:
            planned.append(PlannedSlot(at=fire.at, action="start", reason=f"was {outcome}"))
        else:
            planned.append(PlannedSlot(at=fire.at, action="skip", reason=f"already {outcome}"))
    return planned


@dataclass(frozen=True, kw_only=True)
class BackfillRequest:
    trigger: str
    range_from: datetime
    range_to: datetime
    only_missing: bool = False
    overlap: str | None = None  # None: the trigger's
    rate: str = DEFAULT_RATE
    dry_run: bool = False
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class BackfillPlan:
    backfill_id: str | None  # None for a dry run
    slots: tuple[PlannedSlot, ...]

    @property
    def to_start(self) -> int:
        return sum(1 for s in self.slots if s.action == "start")


def _check_range(request: BackfillRequest, now: datetime) -> None:
    for name, value in (("from", request.range_from), ("to", request.range_to)):
        if value.tzinfo is None:
            raise UsageError("needs a UTC offset or Z (e.g. 2027-01-01T00:00:00Z)", field=name)
        try:  # year 1 at +14:00 or year 9999 at -14:00 has no UTC instant
            value.astimezone(UTC)
        except OverflowError:
            raise UsageError(f"{value.isoformat()[:40]} is out of range", field=name) from None
        if value < EARLIEST_AFTER:
            raise UsageError(f"{utc_iso(value)} is before {utc_iso(EARLIEST_AFTER)},"
                             " the earliest instant a backfill plans", field=name)
    if request.range_to <= request.range_from:
        raise UsageError(f"the range is empty: {{to}} ({utc_iso(request.range_to)}) must be"
                         f" after {{from}} ({utc_iso(request.range_from)})",
                         names=("to", "from"))
    if request.range_to > now:
        raise UsageError(f"{utc_iso(request.range_to)} is in the future; a backfill"
                         " runs past slots (skip or wait for future ones)", field="to")


async def create(pool: asyncpg.Pool, actor: Actor, request: BackfillRequest,
                 now: datetime | None = None) -> BackfillPlan:
    """Plan a backfill and, unless ``dry_run``, record it for the daemons to run (an audit
    row in the same transaction)."""
    now = now or datetime.now(UTC)
    _check_range(request, now)
    rate = parse_rate(request.rate)
    note = check_note(request.note)
    if request.overlap is not None and request.overlap not in {p.value for p in OverlapPolicy}:
        raise UsageError(f"{request.overlap[:40]!r} is not one of "
                         + ", ".join(p.value for p in OverlapPolicy), field="overlap")
    async with pool.acquire() as conn, conn.transaction():
        trigger = await scheduled_trigger(conn, request.trigger, "backfilled", home(actor))
        # As fire: an archived workflow or a disabled trigger starts no run (nor does a
        # dry run say that slots would start).
        refused = not_running_reason(trigger.workflow_status, trigger.workflow_key)
        if refused is not None:
            raise Conflict(refused)
        if not trigger.enabled:
            raise Conflict(f"trigger {trigger.workflow_key}/{trigger.name} is disabled;"
                           " enable it first")
        schedule = schedule_of(trigger.type, trigger.config)
        # Once: a 10,000-slot range of a calendar takes a few tenths of a second.
        fires = range_fires(schedule, request.range_from, request.range_to)
        if len(fires) > MAX_SLOTS:
            raise UsageError(f"the range holds more than {MAX_SLOTS:,} slots; backfill it"
                             " in smaller ranges")
        outcomes = (await store.ledger_outcomes(conn, trigger.id, [f.at for f in fires])
                    if request.only_missing else {})
        last_fire = None
        if request.only_missing and trigger.config.get("max_runs") is not None:
            completed_at = (await get_state(conn, trigger.id)).completed_at
            if completed_at is not None:
                # The due time of the last fire it made: the fires a catch-up found past
                # max_runs were due before the instant it completed, and got no ledger row.
                last_fire = await store.last_fired_slot(conn, trigger.id) or completed_at
        planned = plan_slots(fires, request.only_missing, outcomes, last_fire)
        if request.dry_run:
            return BackfillPlan(backfill_id=None, slots=tuple(planned))
        overlap = request.overlap or str(trigger.config.get("overlap", "skip"))
        backfill_id = str(uuid.uuid4())
        await store.create_backfill(
            conn, backfill_id=backfill_id, trigger_id=trigger.id,
            range_from=request.range_from, range_to=request.range_to,
            only_missing=request.only_missing, overlap=overlap, rate_per_second=rate,
            slots=[s.at for s in planned if s.action == "start"], actor=actor.name,
            note=note)
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="backfill", target_kind="trigger",
            target=request.trigger, target_id=trigger.id, note=note,
            detail={"backfill_id": backfill_id, "from": utc_iso(request.range_from),
                    "to": utc_iso(request.range_to), "only_missing": request.only_missing,
                    "slots": sum(1 for s in planned if s.action == "start")}))
    return BackfillPlan(backfill_id=backfill_id, slots=tuple(planned))


def _backfill_id(text: str) -> str:
    canonical = canonical_uuid(text)
    if canonical is None:
        raise UsageError(f"{text[:40]!r} is not a backfill id (a UUID)")
    return canonical


async def get(pool: asyncpg.Pool, backfill_id: str, tenant: str | None = None
              ) -> store.BackfillRecord:
    return await store.get_backfill(pool, _backfill_id(backfill_id), tenant)


async def list_(
    pool: asyncpg.Pool, *, tenant: str | None, trigger: str | None = None,
    state: str | None = None, before: tuple[datetime, str] | None = None, limit: int = 50,
) -> list[store.BackfillRecord]:
    """Backfills newest first, of ``tenant`` (None: of every tenant); ``trigger`` names a
    trigger of ``tenant`` (or of the default tenant)."""
    if state is not None and state not in store.BACKFILL_STATES:
        raise UsageError(f"{state[:40]!r} is not one of"
                         f" {', '.join(store.BACKFILL_STATES)}", field="state")
    trigger_id = None
    if trigger is not None:
        trigger_id = (await get_trigger(pool, trigger, tenant or DEFAULT_TENANT)).id
    return await store.list_backfills(pool, tenant=tenant, trigger_id=trigger_id,
                                      state=state, before=before, limit=limit)


async def cancel(pool: asyncpg.Pool, actor: Actor, backfill_id: str) -> store.BackfillRecord:
    """Stop a running backfill: runs already started go on; no more start."""
    backfill_id = _backfill_id(backfill_id)
    async with pool.acquire() as conn, conn.transaction():
        record = await store.get_backfill(conn, backfill_id, actor.tenant)
        if not await store.cancel_backfill(conn, backfill_id):
            # Read again: a cancel that lost a race to another said "is running".
            now = await store.get_backfill(conn, backfill_id, actor.tenant)
            raise Conflict(f"backfill {backfill_id} is {now.state}; nothing was changed")
        await record_audit(conn, store.cancel_audit(
            backfill_id=backfill_id,
            tenant_id=record.tenant_id,  # the backfill's, not the canceler's home
            actor=actor.name, trigger=record.trigger, started=record.started))
        return await store.get_backfill(conn, backfill_id)
