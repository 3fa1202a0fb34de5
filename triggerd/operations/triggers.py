"""Operations on triggers. Each is the one implementation behind the CLI, the admin API
and the console: typed arguments and an actor in; validation, the store and an audit row
in one transaction; a typed result or an error of :mod:`triggerd.errors` out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from triggerd.correlation import correlation_mapping, fire_correlation
from triggerd.cron import utc_iso
from triggerd.durations import parse_duration
from triggerd.errors import Conflict, DefinitionError, UsageError
from triggerd.inputs import check_input
from triggerd.model import DEFAULT_TENANT, JSON, not_running_reason
from triggerd.operations.actor import Actor, home
from triggerd.planning import jitter_offset
from triggerd.schedules import SCHEDULED_TYPES, Schedule, schedule_of
from triggerd.store import trigger_state
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.records import TriggerRecord
from triggerd.store.trigger_state import TriggerState, record_manual_skips
from triggerd.store.workflows import (
    get_trigger,
    get_workflow,
    resolve_version,
    set_trigger_enabled,
)

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


@dataclass(frozen=True, kw_only=True)
class FireRequest:
    trigger: str  # workflow_key/trigger_name
    input: dict[str, JSON] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class FireResult:
    execution_id: str
    trigger: str
    version: int


def _check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"the {{reason}} is longer than {MAX_REASON_CHARS} characters",
                         names=("reason",))
    return reason


async def fire(pool: asyncpg.Pool, actor: Actor, request: FireRequest) -> FireResult:
    """Start a manual run of a trigger's workflow now.

    The trigger must be enabled and its workflow active with a published version (the
    pinned one, if the trigger pins one); the trigger's static input merged under
    ``request.input`` must match the version's ``parameter_schema``. The run's context
    records who fired it and why (its provenance)."""
    reason = _check_reason(request.reason)
    async with pool.acquire() as conn, conn.transaction():
        trigger = await get_trigger(conn, request.trigger, home(actor))
        if not trigger.enabled:
            raise Conflict(f"trigger {request.trigger} is disabled; enable it first")
        workflow = await get_workflow(conn, trigger.workflow_key, trigger.tenant_id)
        refused = not_running_reason(workflow.status, trigger.workflow_key)
        if refused is not None:
            raise Conflict(refused)
        version = await resolve_version(conn, trigger.workflow_id, trigger.version)
        if version is None:
            wanted = "no published version" if trigger.version is None else (
                f"no version {trigger.version}")
            raise Conflict(f"workflow {trigger.workflow_key} has {wanted}")
        merged = {**trigger.input, **request.input}
        check_input(version.parameter_schema or {}, merged)
        provenance: dict[str, Any] = {"type": "manual", "name": request.trigger,
                                      "fired_by": actor.via, "actor": actor.name}
        if reason is not None:
            provenance["reason"] = reason
        item = NewExecution(
            workflow_id=trigger.workflow_id,
            trigger_id=trigger.id,
            trigger_name=trigger.name,
            trigger_type="manual",
            input=merged,
            context={"trigger": provenance},
            version=version.version,
            correlation=fire_correlation(correlation_mapping(trigger.config), merged),
        )
        await insert_executions(conn, [item])
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="fire", target_kind="trigger", target=request.trigger,
            target_id=trigger.id, note=reason,
            detail={"execution_id": item.id, "version": version.version},
        ))
    logger.info("trigger fired", extra={"event": "trigger_fired", "trigger": request.trigger,
                                        "execution": item.id, "actor": actor.name})
    return FireResult(execution_id=item.id, trigger=request.trigger, version=version.version)


MAX_NOTE_CHARS = 500


def check_note(note: str | None) -> str | None:
    """A note as stored: None for none or blank; too long is a usage error."""
    if note is None or not note.strip():
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise UsageError(f"the {{note}} is longer than {MAX_NOTE_CHARS} characters",
                         names=("note",))
    return note.strip()


@dataclass(frozen=True, kw_only=True)
class StateChange:
    """The answer of pause, resume, enable and disable: the trigger and whether anything
    changed (doing it twice is not an error: the second time changes nothing)."""

    trigger: str
    changed: bool
    state: TriggerState
    enabled: bool
    forgotten_slots: int = 0


async def scheduled_trigger(conn: asyncpg.Connection, name: str, doing: str,
                            tenant: str = DEFAULT_TENANT) -> TriggerRecord:
    trigger = await get_trigger(conn, name, tenant)
    if trigger.type not in SCHEDULED_TYPES:
        raise Conflict(f"trigger {name} is a {trigger.type} trigger; only scheduled triggers"
                       f" ({', '.join(SCHEDULED_TYPES)}) can be {doing}")
    return trigger


async def pause(pool: asyncpg.Pool, actor: Actor, name: str, note: str | None = None
                ) -> StateChange:
    """Pause a scheduled trigger: its slots are recorded ``skipped_paused`` until it is
    resumed. Runtime state: ``apply`` and reloads leave it alone."""
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        trigger = await scheduled_trigger(conn, name, "paused", home(actor))
        state = await trigger_state.get_state(conn, trigger.id, lock=True)
        changed = not state.paused
        if changed:
            await trigger_state.pause(conn, trigger.id, note=note, actor=actor.name)
            await record_audit(conn, AuditEntry(
                tenant_id=home(actor),
                actor=actor.name, action="pause", target_kind="trigger", target=name,
                target_id=trigger.id, note=note))
        state = await trigger_state.get_state(conn, trigger.id)
    if changed:
        logger.info("trigger paused", extra={"event": "trigger_paused", "trigger": name,
                                             "actor": actor.name})
    return StateChange(trigger=name, changed=changed, state=state, enabled=trigger.enabled)


async def resume(pool: asyncpg.Pool, actor: Actor, name: str, note: str | None = None,
                 *, catch_up: bool = False) -> StateChange:
    """Resume a paused trigger. No slot from before the resume runs, unless ``catch_up``:
    then the slots skipped while paused are caught up under the misfire policy."""
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        trigger = await scheduled_trigger(conn, name, "resumed", home(actor))
        state = await trigger_state.get_state(conn, trigger.id, lock=True)
        changed = state.paused
        forgotten = 0
        if changed:
            forgotten = await trigger_state.resume(
                conn, trigger.id, note=note, actor=actor.name, catch_up=catch_up,
                paused_at=state.changed_at)
            await record_audit(conn, AuditEntry(
                tenant_id=home(actor),
                actor=actor.name, action="resume", target_kind="trigger", target=name,
                target_id=trigger.id, note=note,
                detail={"catch_up": catch_up, "forgotten_slots": forgotten}))
        state = await trigger_state.get_state(conn, trigger.id)
    if changed:
        logger.info("trigger resumed", extra={"event": "trigger_resumed", "trigger": name,
                                              "actor": actor.name, "catch_up": catch_up})
    return StateChange(trigger=name, changed=changed, state=state, enabled=trigger.enabled,
                       forgotten_slots=forgotten)


async def set_enabled(pool: asyncpg.Pool, actor: Actor, name: str, enabled: bool
                      ) -> tuple[TriggerRecord, bool]:
    """Enable or disable a trigger (the definition's ``enabled``: the next ``apply`` of a
    file that says otherwise reverts it; pause is the operator's switch)."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            trigger, changed = await set_trigger_enabled(conn, name, enabled, home(actor))
        except DefinitionError as exc:  # its webhook path is taken by another trigger
            raise Conflict(exc.message) from None
        if changed:
            await record_audit(conn, AuditEntry(
                tenant_id=home(actor),
                actor=actor.name, action="enable" if enabled else "disable",
                target_kind="trigger", target=name, target_id=trigger.id))
    return trigger, changed


MAX_SKIP = 1000


@dataclass(frozen=True, kw_only=True)
class SkipResult:
    trigger: str
    skipped: tuple[datetime, ...]


@dataclass(frozen=True, kw_only=True)
class Jitter:
    """What decides whether a slot whose instant has passed still waits out its jitter:
    the scheduler writes slot ``at`` at ``at`` plus :func:`jitter_offset` (the same on
    every replica), and a slot from before the trigger was enabled is never written."""

    trigger_id: str
    jitter: timedelta
    enabled_at: datetime

    def waiting(self, at: datetime, now: datetime) -> bool:
        return (self.enabled_at <= at <= now
                and now < at + jitter_offset(self.trigger_id, at, self.jitter))


def _slots_to_skip(schedule: Schedule, now: datetime, next_count: int | None,
                   at: datetime | None, decided: frozenset[datetime] = frozenset(),
                   jitter: Jitter | None = None) -> list[datetime]:
    """The instants a skip names: the next ``next_count`` slots not ``decided`` yet
    (skipped before: "skip the next" goes on to the next one still due), the first being
    those past ``now`` but still waiting out their ``jitter``, then the fires after
    ``now``; or ``at`` (which must be one of the schedule's future fires, or one still
    waiting out its jitter)."""
    def waiting(instant: datetime) -> bool:
        return jitter is not None and jitter.waiting(instant, now)

    if next_count is not None:
        if not 1 <= next_count <= MAX_SKIP:
            raise UsageError(f"{next_count} is out of range 1-{MAX_SKIP}", field="next")
        instants: list[datetime] = []
        after = now
        if jitter is not None:  # from the oldest slot that may still wait
            after = min(now, max(now - jitter.jitter,
                                 jitter.enabled_at - timedelta(microseconds=1)))
        while len(instants) < next_count:
            fire = schedule.next_fire(after)
            if fire is None:
                break
            if (fire.at > now or waiting(fire.at)) and fire.at not in decided:
                instants.append(fire.at)
            after = fire.at
        if not instants:
            raise Conflict("the schedule has no fires left to skip")
        return instants
    assert at is not None
    if at.tzinfo is None:
        raise UsageError("needs a UTC offset or Z (e.g. 2027-01-01T09:00:00Z)", field="at")
    if at <= now and not waiting(at):
        raise UsageError(f"{utc_iso(at)} is not in the future", field="at")
    found = schedule.next_fire(at - timedelta(microseconds=1))
    if found is None or found.at != at:
        before = schedule.last_fires(at - timedelta(days=366), at, 1)
        near = [utc_iso(f.at) for f in before] + ([utc_iso(found.at)] if found else [])
        raise UsageError(f"{utc_iso(at)} is not a fire of this schedule"
                         + (f" (nearest: {', '.join(near)})" if near else ""), field="at")
    return [at]


# Outcomes of a slot that started (or queued) its run.
_FIRED = frozenset({"fired", "buffered", "canceled_previous"})


def _already_decided(name: str, at: datetime, outcome: str) -> Conflict:
    if outcome in _FIRED:
        how = "" if outcome == "fired" else f" ({outcome})"
        return Conflict(f"slot {utc_iso(at)} of {name} already fired{how}; nothing was skipped")
    return Conflict(f"slot {utc_iso(at)} of {name} is already decided ({outcome});"
                    " nothing was skipped")


async def skip(pool: asyncpg.Pool, actor: Actor, name: str, *, next_count: int | None = None,
               at: datetime | None = None, note: str | None = None,
               now: datetime | None = None) -> SkipResult:
    """Record slots still to come as ``skipped_manual`` in the ledger: the live schedule
    then finds them decided and starts nothing for them (the same primary key decides on
    every replica). A slot to come is a future one, or one whose instant has passed but
    whose jittered write has not come yet. A slot that already has a ledger row (fired,
    or decided otherwise) is a conflict."""
    if (next_count is None) == (at is None):
        raise UsageError("give exactly one of next and at")
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        trigger = await scheduled_trigger(conn, name, "skipped", home(actor))
        schedule = schedule_of(trigger.type, trigger.config)
        jitter = Jitter(trigger_id=trigger.id, enabled_at=trigger.enabled_at,
                        jitter=parse_duration(str(trigger.config.get("jitter", "0s"))))
        now = now or datetime.now(UTC)
        _, completed = await trigger_state.paused_and_completed(conn, [trigger.id])
        if completed:
            # Its schedule starts nothing more: a skip would record fires never to come.
            raise Conflict(f"trigger {name} fires no more (max_runs reached:"
                           f" {trigger.config.get('max_runs')} scheduled runs); nothing to skip")
        if at is not None and at.tzinfo is not None and at <= now:
            # A past slot the ledger holds: say what became of it (fired, most often).
            outcome = (await trigger_state.recorded_slots(conn, trigger.id, [at])).get(at)
            if outcome is not None:
                raise _already_decided(name, at, outcome)
        decided = (frozenset(await trigger_state.decided_after(
                       conn, trigger.id, now - jitter.jitter))
                   if next_count is not None else frozenset())
        instants = _slots_to_skip(schedule, now, next_count, at, decided, jitter)
        taken = await record_manual_skips(conn, trigger.id, instants,
                                          detail=f"skipped by {actor.name}"
                                          + (f": {note}" if note else ""))
        if taken:
            # A race lost to the schedule (the slot's jittered write) or another skip.
            raise _already_decided(name, *min(taken))
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="skip", target_kind="trigger", target=name,
            target_id=trigger.id, note=note,
            detail={"slots": [utc_iso(i) for i in instants]}))
    logger.info("trigger slots skipped", extra={"event": "trigger_skipped", "trigger": name,
                                                "slots": len(instants), "actor": actor.name})
    return SkipResult(trigger=name, skipped=tuple(instants))
