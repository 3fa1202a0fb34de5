"""What the scheduler still owes, kept incrementally for readiness.

Every timer set for an instant, every jitter bucket and every slot write in flight (or
failed) is an entry with the instant it was due. The timer path adds and resolves entries
as it plans and records slots, so readiness only peeks at the oldest entry: O(1) (amortized
O(log n) for the entries resolved meanwhile), whatever the number of triggers. Only when
that entry is older than the lag threshold does the scheduler look closer (and ask the
database about those triggers alone).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

__all__ = ["OverdueWatch", "Owed", "OwedKind"]

# Rebuild the heap when lazily deleted entries outnumber live ones by this much.
_COMPACT_ABOVE = 1024


class OwedKind(Enum):
    INSTANT = "instant"  # a group timer that has not run yet
    JITTER = "jitter"  # a jitter bucket that has not run yet
    WRITE = "write"  # a slot write in flight
    FAILED = "failed"  # a slot write that gave up: its slots may have no outcome


@dataclass(frozen=True, kw_only=True, slots=True)
class Owed:
    token: int
    due: datetime
    kind: OwedKind
    ref: object  # the instant, or the SlotBatch of a write


class OverdueWatch:
    """A min-heap of owed entries by due instant, with lazy deletion."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int]] = []
        self._live: dict[int, Owed] = {}
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._live)

    def add(self, due: datetime, kind: OwedKind, ref: object) -> int:
        token = next(self._tokens)
        self._live[token] = Owed(token=token, due=due, kind=kind, ref=ref)
        heapq.heappush(self._heap, (due, token))
        if len(self._heap) > 2 * len(self._live) + _COMPACT_ABOVE:
            self._heap = [(o.due, o.token) for o in self._live.values()]
            heapq.heapify(self._heap)
        return token

    def resolve(self, token: int) -> Owed | None:
        return self._live.pop(token, None)

    def oldest(self) -> datetime | None:
        """The due instant of the oldest entry still owed."""
        heap = self._heap
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_by(self, cutoff: datetime) -> Iterator[Owed]:
        """The entries due at or before ``cutoff``, oldest first. Walks every entry: only
        for when :meth:`oldest` says something is late."""
        late = sorted((o for o in self._live.values() if o.due <= cutoff),
                      key=lambda o: (o.due, o.token))
        return iter(late)

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()
