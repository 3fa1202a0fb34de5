"""The scheduler's owed-entries heap: oldest first, lazy deletion, bounded heap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triggerd.scheduler.overdue import OverdueWatch, OwedKind

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_oldest_follows_adds_and_resolves() -> None:
    watch = OverdueWatch()
    assert watch.oldest() is None
    late = watch.add(T0 + timedelta(seconds=5), OwedKind.INSTANT, "b")
    early = watch.add(T0, OwedKind.WRITE, "a")
    assert watch.oldest() == T0
    assert watch.resolve(early) is not None
    assert watch.resolve(early) is None  # twice is harmless
    assert watch.oldest() == T0 + timedelta(seconds=5)
    watch.resolve(late)
    assert watch.oldest() is None
    assert len(watch) == 0


def test_due_by_lists_only_late_entries_oldest_first() -> None:
    watch = OverdueWatch()
    for seconds in (3, 1, 2, 10):
        watch.add(T0 + timedelta(seconds=seconds), OwedKind.JITTER, seconds)
    assert [o.ref for o in watch.due_by(T0 + timedelta(seconds=3))] == [1, 2, 3]


def test_resolved_entries_do_not_pile_up_in_the_heap() -> None:
    watch = OverdueWatch()
    keep = watch.add(T0, OwedKind.INSTANT, "kept")  # stays at the top: nothing is popped
    for i in range(100_000):
        watch.resolve(watch.add(T0 + timedelta(seconds=i + 1), OwedKind.WRITE, i))
    assert len(watch) == 1
    assert len(watch._heap) <= 2 * len(watch) + 1025
    assert watch.oldest() == T0
    watch.clear()
    assert watch.oldest() is None and keep not in watch._live
