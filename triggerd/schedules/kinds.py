"""The base schedule kinds: one cron expression, a list of them, and fixed intervals."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from triggerd import cron
from triggerd.cron import CronSchedule, Fire

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TINY = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronPlan:
    """A cron expression in a time zone."""

    cron: CronSchedule

    @property
    def key(self) -> Hashable:
        return ("cron", self.cron.expression, self.cron.timezone)

    def next_fire(self, after: datetime) -> Fire | None:
        return cron.next_fire(self.cron, after)

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        return cron.fires_between(self.cron, start, end, limit)

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        return cron.last_fires(self.cron, start, end, count)

    def count_fires(self, start: datetime, end: datetime) -> int:
        return cron.count_fires(self.cron, start, end)

    def preview(self, after: datetime, count: int) -> list[Fire]:
        return cron.next_fires(self.cron, after, count)


@dataclass(frozen=True, slots=True)
class CronList:
    """Several cron expressions in one zone: the union of their fires, an instant matched
    by several firing once."""

    plans: tuple[CronPlan, ...]

    @property
    def key(self) -> Hashable:
        return ("cron-list", tuple(p.key for p in self.plans))

    def next_fire(self, after: datetime) -> Fire | None:
        fires = [f for f in (p.next_fire(after) for p in self.plans) if f is not None]
        return min(fires, key=lambda f: f.at, default=None)

    def _iter(self, after: datetime) -> Iterator[Fire]:
        # A merge of each expression's fires; equal instants come out once.
        streams = [_tagged(plan, after, index) for index, plan in enumerate(self.plans)]
        last: datetime | None = None
        for at, _, fire in heapq.merge(*streams):
            if at != last:
                last = at
                yield fire

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        fires: list[Fire] = []
        for fire in self._iter(start):
            if fire.at > end or (limit is not None and len(fires) >= limit):
                break
            fires.append(fire)
        return fires

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        if count <= 0:
            return []
        # The newest `count` of the union are among each expression's newest `count`.
        merged = {f.at: f for p in self.plans for f in p.last_fires(start, end, count)}
        return [merged[at] for at in sorted(merged)[-count:]]

    def count_fires(self, start: datetime, end: datetime) -> int:
        # Counted, not listed: listing a year of minutely fires to count them took 8 s of
        # CPU on the event loop at a catch-up. Coinciding instants count once.
        return cron.count_union([p.cron for p in self.plans], start, end)

    def preview(self, after: datetime, count: int) -> list[Fire]:
        return self.fires_between(after, datetime.max.replace(tzinfo=UTC), count)


def _tagged(plan: CronPlan, after: datetime, index: int) -> Iterator[tuple[datetime, int, Fire]]:
    at = after
    while (fire := plan.next_fire(at)) is not None:
        yield fire.at, index, fire
        at = fire.at


@dataclass(frozen=True, slots=True)
class IntervalPlan:
    """Every ``every``, at ``anchor + k * every`` for every integer k: an absolute duration,
    so a DST change moves the local wall time of the fires, never their spacing."""

    every: timedelta
    anchor: datetime  # start_at + offset, or the Unix epoch + offset
    timezone: str = "UTC"  # only for the local times of previews

    @property
    def key(self) -> Hashable:
        return ("interval", self.every // _TINY, cron.utc_iso(self.anchor), self.timezone)

    def _fire(self, index: int) -> Fire | None:
        try:
            at = self.anchor + self.every * index
            return Fire(at=at, local=at.astimezone(ZoneInfo(self.timezone)))
        except OverflowError:
            return None

    def _after_index(self, after: datetime) -> int:
        """The index of the first fire strictly after ``after``."""
        return (after - self.anchor) // self.every + 1

    def next_fire(self, after: datetime) -> Fire | None:
        return self._fire(self._after_index(after))

    def count_fires(self, start: datetime, end: datetime) -> int:
        if end <= start:
            return 0
        return max(0, self._after_index(end) - self._after_index(start))

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        first = self._after_index(start)
        stop = self._after_index(end)
        if limit is not None:
            stop = min(stop, first + max(limit, 0))
        return [f for i in range(first, stop) if (f := self._fire(i)) is not None]

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        first = self._after_index(start)
        stop = self._after_index(end)
        return [f for i in range(max(first, stop - max(count, 0)), stop)
                if (f := self._fire(i)) is not None]

    def preview(self, after: datetime, count: int) -> list[Fire]:
        first = self._after_index(after)
        return [f for i in range(first, first + count) if (f := self._fire(i)) is not None]
