"""The schedule interface every kind implements."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Protocol

from triggerd.cron import Fire


class Schedule(Protocol):
    """Fire instants of one trigger's schedule. Pure: ``now`` is always an argument."""

    @property
    def key(self) -> Hashable:
        """Equal keys mean equal fire instants: triggers sharing one are planned together."""
        ...

    def next_fire(self, after: datetime) -> Fire | None:
        """The first fire strictly after ``after``; None when there is none (ever)."""
        ...

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        """Fires with ``start < at <= end``, oldest first, at most ``limit``."""
        ...

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        """The newest ``count`` fires with ``start < at <= end``, oldest first."""
        ...

    def count_fires(self, start: datetime, end: datetime) -> int:
        """How many fires ``start < at <= end`` holds (catch-up plans count before listing)."""
        ...

    def preview(self, after: datetime, count: int) -> list[Fire]:
        """The next ``count`` fires after ``after`` for people: with DST notes, shifted fires
        with their ``nominal`` instant, and instants a calendar excludes listed but marked
        (note ``excluded``, not counted in ``count``)."""
        ...
