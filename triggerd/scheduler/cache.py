"""The scheduler's in-memory trigger table.

Triggers are grouped by schedule, i.e. by the schedule's ``key`` (for cron: expression and
time zone): a group computes its next fire once per instant for all its members, however
many there are. Stored configs
are parsed once per distinct ``config`` text, so 100,000 triggers sharing a few dozen
configs cost a few dozen parses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from triggerd.cron import utc_iso
from triggerd.definitions import parse_trigger_config
from triggerd.errors import TriggerdError
from triggerd.model import ScheduledConfig
from triggerd.schedules import Schedule, schedule_of
from triggerd.store.slots import CronTriggerRow, SlotBatch, SlotRequest

logger = logging.getLogger(__name__)

ScheduleKey = Hashable  # Schedule.key: equal keys, equal fire instants


@dataclass(slots=True, kw_only=True, eq=False)
class CronEntry:
    """One scheduled trigger. Mutable on purpose: ``floor`` moves as catch-ups happen."""

    id: str
    full_name: str  # workflow_key/trigger_name, for logs and /readyz
    config: ScheduledConfig
    config_text: str
    key: ScheduleKey  # the schedule's key, shared by the group's entries
    enabled_at: datetime
    # Slots at or before this instant belong to a catch-up (or were decided already); the
    # timer path only fires later ones.
    floor: datetime


@dataclass(slots=True, kw_only=True, eq=False)
class ScheduleGroup:
    """Every trigger sharing one schedule."""

    key: ScheduleKey
    schedule: Schedule
    members: dict[str, CronEntry] = field(default_factory=dict)
    next_at: datetime | None = None  # the instant the group's timer is set for


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedConfig:
    text: str  # the stored text, shared by every trigger with this config
    config: ScheduledConfig
    schedule: Schedule
    key: ScheduleKey


class ConfigCache:
    """Parsed configs by their stored text; a config that does not parse is logged once
    and its triggers are not scheduled."""

    def __init__(self) -> None:
        self._parsed: dict[str, ParsedConfig | None] = {}

    def get(self, text: str, row: CronTriggerRow) -> ParsedConfig | None:
        try:
            return self._parsed[text]
        except KeyError:
            pass
        result: ParsedConfig | None = None
        try:
            doc = json.loads(text)
            config = parse_trigger_config(row.type, doc)
            assert isinstance(config, ScheduledConfig)
            schedule = schedule_of(row.type, doc)
            result = ParsedConfig(text=text, config=config, schedule=schedule, key=schedule.key)
        except (TriggerdError, ValueError) as exc:
            logger.warning(
                "cron trigger has an invalid config; not scheduled",
                extra={"event": "cron_trigger_invalid", "trigger": row.full_name,
                       "trigger_id": row.id, "error": str(exc)},
            )
        self._parsed[text] = result
        return result

    def retain(self, texts: set[str]) -> None:
        """Forget configs no trigger uses any more."""
        for text in [t for t in self._parsed if t not in texts]:
            del self._parsed[text]


class TriggerTable:
    """Entries by trigger id and groups by schedule key."""

    def __init__(self) -> None:
        self.entries: dict[str, CronEntry] = {}
        self.groups: dict[ScheduleKey, ScheduleGroup] = {}
        self.changes = 0  # bumped by every add and remove: plans made earlier are stale

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CronEntry]:
        return iter(self.entries.values())

    def add(self, entry: CronEntry, schedule: Schedule) -> tuple[ScheduleGroup, bool]:
        """Add (or replace) an entry; returns its group and whether the group is new."""
        if entry.id in self.entries:
            self.remove(entry.id)
        self.changes += 1
        self.entries[entry.id] = entry
        group = self.groups.get(entry.key)
        created = group is None
        if group is None:
            group = ScheduleGroup(key=entry.key, schedule=schedule)
            self.groups[entry.key] = group
        group.members[entry.id] = entry
        return group, created

    def remove(self, trigger_id: str) -> CronEntry | None:
        entry = self.entries.pop(trigger_id, None)
        if entry is None:
            return None
        self.changes += 1
        group = self.groups.get(entry.key)
        if group is not None:
            group.members.pop(trigger_id, None)
            if not group.members:
                del self.groups[entry.key]
        return entry

    def current(self, entry: CronEntry) -> bool:
        """Whether ``entry`` is still the scheduled version of its trigger."""
        return self.entries.get(entry.id) is entry


def unchanged(entry: CronEntry, row: CronTriggerRow) -> bool:
    """Whether a loaded row schedules exactly like the entry (a rename is not a change)."""
    return entry.config_text == row.config_text and entry.enabled_at == row.enabled_at


@dataclass(frozen=True, kw_only=True, slots=True)
class InstantPlan:
    """What one instant writes, planned from the table as it was at ``changes``."""

    keys: frozenset[ScheduleKey]  # the schedules registered for the instant
    changes: int  # TriggerTable.changes when planned: a later change makes the plan stale
    due: tuple[ScheduleGroup, ...]  # the groups firing (each then schedules its next instant)
    batches: tuple[SlotBatch, ...]  # the slots to write now, at most ``chunk`` per batch
    jittered: tuple[CronEntry, ...]  # entries that fire later, at their jittered instants


def catch_up_batches(requests: Sequence[SlotRequest], chunk: int) -> Iterator[SlotBatch]:
    """A catch-up's slots as batches of at most ``chunk`` slots that never end inside a
    trigger's slots, so the batches can be written as concurrent statements: two
    statements never decide slots of one trigger, whose overlap policy looks at the runs
    active before its statement. A trigger with more than ``chunk`` slots has a batch of
    its own. Each trigger's slots are next to each other (the catch-up plans one trigger
    at a time). Batches are made one at a time, as they are taken: millions of slots after
    a long downtime are neither copied at once nor packed in one turn of the loop."""
    total = len(requests)
    start = 0
    while start < total:
        end = min(start + chunk, total)
        if end < total:
            cut = end
            while cut > start and requests[cut].trigger_id == requests[cut - 1].trigger_id:
                cut -= 1
            if cut == start:  # one trigger fills the batch: take all of its slots
                cut = end
                while cut < total and requests[cut].trigger_id == requests[cut - 1].trigger_id:
                    cut += 1
            end = cut
        yield SlotBatch.of(requests[start:end])
        start = end


def plan_instant(
    table: TriggerTable, at: datetime, keys: Set[ScheduleKey], chunk: int
) -> InstantPlan:
    """The groups of ``keys`` due at ``at`` and their members' slots.

    A large instant is split into batches of ``chunk`` slots, written as concurrent
    statements so PostgreSQL spreads the work over its cores. Members whose ``floor`` is
    at or after ``at`` are left out (a catch-up decided the slot), and so are groups that
    went away or were rescheduled to another instant.
    """
    batch = SlotBatch()
    batches = [batch]
    slot = batch.slot_ref(at, utc_iso(at))
    due: list[ScheduleGroup] = []
    jittered: list[CronEntry] = []
    for key in keys:
        group = table.groups.get(key)
        if group is None or group.next_at != at:
            continue
        due.append(group)
        for entry in group.members.values():
            if entry.floor >= at:
                continue
            if entry.config.jitter:
                jittered.append(entry)
                continue
            if len(batch) >= chunk:
                batch = SlotBatch()
                batches.append(batch)
                slot = batch.slot_ref(at, utc_iso(at))
            batch.add(entry.id, batch.config_ref(entry.config_text, entry.config.overlap), slot)
    return InstantPlan(
        keys=frozenset(keys),
        changes=table.changes,
        due=tuple(due),
        batches=tuple(b for b in batches if b),
        jittered=tuple(jittered),
    )
