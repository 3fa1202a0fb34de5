"""The scheduler's memory of failed slot writes (triggerd.scheduler.failed)."""

from __future__ import annotations

import functools
import operator
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from triggerd.cron import utc_iso
from triggerd.model import OverlapPolicy
from triggerd.scheduler.failed import FailedSlots, slots_of
from triggerd.schedules import schedule_of
from triggerd.store.slots import SlotBatch, SlotRequest

T0 = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _batch(rows: list[tuple[str, datetime]]) -> SlotBatch:
    return SlotBatch.of(
        SlotRequest(trigger_id=t, scheduled_for=s, slot_iso=utc_iso(s), config_text="{}",
                    overlap=OverlapPolicy.ALLOW)
        for t, s in rows
    )


def _instant_batch(size: int, at: datetime) -> SlotBatch:
    """A batch as the timer builds one for an instant: every row shares the slot."""
    batch = SlotBatch()
    slot = batch.slot_ref(at, utc_iso(at))
    config = batch.config_ref("{}", OverlapPolicy.ALLOW)
    for i in range(size):
        batch.add(f"t{i}", config, slot)
    return batch


class _CountingList(list[Any]):
    """A list that counts how many of its items are read."""

    reads = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.reads += 1
            yield item

    def __getitem__(self, index: Any) -> Any:
        self.reads += 1
        return super().__getitem__(index)

    def __contains__(self, item: object) -> bool:
        self.reads += len(self)
        return super().__contains__(item)

    def index(self, *args: Any) -> int:
        self.reads += len(self)
        return super().index(*args)


def test_a_large_instant_is_not_read_for_another_instants_failed_slot() -> None:
    """One trigger remembers a failed slot; the 100,000 slots of a later instant are written:
    the batch's one distinct instant is looked at, none of its rows."""
    failed = FailedSlots(limit=1000)
    failed.add("t7", _at(0))
    batch = _instant_batch(100_000, _at(1))
    batch.trigger_ids = rows = _CountingList(batch.trigger_ids)
    batch.slot_refs = refs = _CountingList(batch.slot_refs)
    batch.slot_times = times = _CountingList(batch.slot_times)
    failed.written(batch)
    assert rows.reads == refs.reads == 0
    assert times.reads == 1
    assert failed.of("t7") == {_at(0)}


def test_empty_memory_reads_nothing_of_a_written_batch() -> None:
    failed = FailedSlots(limit=1000)
    batch = _instant_batch(1000, _at(1))
    batch.slot_times = times = _CountingList(batch.slot_times)
    batch.trigger_ids = rows = _CountingList(batch.trigger_ids)
    failed.written(batch)
    assert times.reads == rows.reads == 0


def test_a_write_forgets_only_its_own_triggers_slots() -> None:
    """Two statements of one instant: the first failed, the second's success forgets
    nothing of the first's triggers; a retry of one of them forgets that one."""
    failed = FailedSlots(limit=1000)
    for trigger in ("a", "b"):
        failed.add(trigger, _at(1))
    failed.written(_batch([("c", _at(1)), ("d", _at(1))]))
    assert set(failed.triggers()) == {"a", "b"}
    failed.written(_batch([("a", _at(1)), ("b", _at(0))]))
    assert set(failed.triggers()) == {"b"}
    failed.written(_batch([("b", _at(1))]))
    assert not failed


def test_the_memory_matches_a_plain_set_of_pairs() -> None:
    """Random adds, writes, forgets, drops and retains against a set of (trigger, slot)."""
    rng = random.Random(7)
    failed = FailedSlots(limit=4)
    model: set[tuple[str, datetime]] = set()
    triggers = [f"t{i}" for i in range(6)]
    for _ in range(3000):
        op = rng.randrange(5)
        trigger = rng.choice(triggers)
        if op == 0:
            slot = _at(rng.randrange(8))
            failed.add(trigger, slot)
            if (trigger, slot) in model or sum(t == trigger for t, _ in model) < 4:
                model.add((trigger, slot))
        elif op == 1:
            rows = [(rng.choice(triggers), _at(rng.randrange(8))) for _ in range(rng.randrange(5))]
            failed.written(_batch(rows))
            model -= set(rows)
        elif op == 2:
            cut = _at(rng.randrange(8))
            failed.forget(trigger, functools.partial(operator.ge, cut))
            model = {(t, s) for t, s in model if t != trigger or s > cut}
        elif op == 3:
            failed.drop(trigger)
            model = {(t, s) for t, s in model if t != trigger}
        else:
            kept = set(rng.sample(triggers, 3))
            failed.retain(kept)
            model = {(t, s) for t, s in model if t in kept}
        assert {(t, s) for t in failed.triggers() for s in failed.of(t)} == model
        assert bool(failed) == bool(model)
    # The per-instant index holds nothing once the memory is empty.
    failed.retain(set())
    assert not failed and not failed._by_slot


def test_slots_of_keeps_the_instants_a_schedule_fires_at() -> None:
    every_ten = schedule_of("cron", {"cron": "*/10 * * * *"})
    instants = [_at(50), _at(55), _at(60), _at(60) + timedelta(seconds=1)]
    assert slots_of(every_ten, instants) == {_at(50), _at(60)}
    assert slots_of(every_ten, []) == set()
