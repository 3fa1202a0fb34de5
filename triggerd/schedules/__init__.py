"""The one schedule interface: every schedule kind (cron, and those that follow: intervals,
calendar filters, bounds) answers the same questions, so planning, catch-up, overlap,
the slot ledger, previews, skip and backfill work the same for all of them.

Build a trigger's schedule with :func:`schedule_of`; never branch on the kind elsewhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from triggerd import cron
from triggerd.cron import CronSchedule, Fire
from triggerd.errors import Conflict

__all__ = ["CronPlan", "Fire", "Schedule", "schedule_of"]


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


@dataclass(frozen=True, slots=True)
class CronPlan:
    """A cron expression in a time zone, behind the :class:`Schedule` interface."""

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


def schedule_of(trigger_type: str, config: Mapping[str, Any]) -> Schedule:
    """The schedule of a stored trigger (its type and config); :class:`Conflict` for a
    trigger that has none (webhook, manual)."""
    if trigger_type == "cron":
        return CronPlan(cron.parse_cron(str(config["cron"]), str(config.get("timezone", "UTC"))))
    raise Conflict(f"a {trigger_type} trigger has no schedule")
