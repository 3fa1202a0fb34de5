"""Slots whose write failed, per trigger, until a write of them goes through.

A later slot's write may commit while an earlier one fails (both queued behind a lock): a
catch-up from the newest recorded slot alone would leave those without an outcome, so each
catch-up decides them too (:func:`triggerd.planning.plan_failed_slots`).

A failed slot stays remembered while its trigger is scheduled and the trigger's current
schedule has that slot: the scheduler drops a trigger's memory with the trigger and, when
the schedule changes, keeps only the slots of the new one (:func:`slots_of`).

Kept both per trigger and per slot instant, so a successful write looks at its batch's
distinct instants first (one for the batch of an instant, however many triggers share it)
and reads its rows only when one of them is an instant some trigger failed at.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Set
from datetime import datetime, timedelta

from triggerd.schedules import Schedule
from triggerd.store.slots import SlotBatch

__all__ = ["FailedSlots", "slots_of"]

_TINY = timedelta(microseconds=1)


def slots_of(schedule: Schedule, instants: Iterable[datetime]) -> set[datetime]:
    """The ``instants`` that are fires (slots) of ``schedule``."""
    kept: set[datetime] = set()
    for instant in instants:
        fire = schedule.next_fire(instant - _TINY)
        if fire is not None and fire.at == instant:
            kept.add(instant)
    return kept


class FailedSlots:
    """Per trigger, the slots whose write failed (at most ``limit`` per trigger: a bound on
    memory, past which a long run of failed writes keeps only its oldest)."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._by_trigger: dict[str, set[datetime]] = {}
        self._by_slot: dict[datetime, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_trigger)

    def __contains__(self, trigger_id: object) -> bool:
        return trigger_id in self._by_trigger

    def triggers(self) -> Set[str]:
        return self._by_trigger.keys()

    def of(self, trigger_id: str) -> Set[datetime]:
        """The trigger's failed slots (a view: do not keep it across changes)."""
        return self._by_trigger.get(trigger_id, frozenset())

    def add(self, trigger_id: str, slot: datetime) -> None:
        slots = self._by_trigger.setdefault(trigger_id, set())
        if len(slots) < self._limit and slot not in slots:
            slots.add(slot)
            self._by_slot.setdefault(slot, set()).add(trigger_id)

    def forget(self, trigger_id: str, which: Callable[[datetime], bool]) -> None:
        """Forget the trigger's failed slots for which ``which`` is true."""
        slots = self._by_trigger.get(trigger_id)
        if slots:
            self._discard(trigger_id, [slot for slot in slots if which(slot)])

    def drop(self, trigger_id: str) -> None:
        """Forget every failed slot of the trigger."""
        slots = self._by_trigger.get(trigger_id)
        if slots is not None:
            self._discard(trigger_id, list(slots))

    def retain(self, trigger_ids: Container[str]) -> None:
        """Forget the triggers not in ``trigger_ids``: O(remembered triggers)."""
        for trigger_id in [t for t in self._by_trigger if t not in trigger_ids]:
            self.drop(trigger_id)

    def written(self, batch: SlotBatch) -> None:
        """The slots of ``batch`` have an outcome now: forget those whose write had failed.

        O(distinct instants of the batch) unless one of them is an instant a remembered
        write failed at; only then are the batch's rows read. That is a catch-up's retry
        (at most a catch-up statement's slots) or another statement of the instant a write
        failed at (whose memory is as large as that statement)."""
        by_slot = self._by_slot
        if not by_slot or not any(slot in by_slot for slot in batch.slot_times):
            return
        times = batch.slot_times
        for trigger_id, ref in zip(batch.trigger_ids, batch.slot_refs, strict=True):
            slot = times[ref - 1]
            failed = by_slot.get(slot)
            if failed is not None and trigger_id in failed:
                self._discard(trigger_id, [slot])

    def _discard(self, trigger_id: str, slots: Iterable[datetime]) -> None:
        remembered = self._by_trigger[trigger_id]
        for slot in slots:
            remembered.discard(slot)
            triggers = self._by_slot.get(slot)
            if triggers is not None:
                triggers.discard(trigger_id)
                if not triggers:
                    del self._by_slot[slot]
        if not remembered:
            del self._by_trigger[trigger_id]
