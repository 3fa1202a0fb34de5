"""Rate-limited log lines, for events that anyone on the network can cause.

:class:`LineLimiter` is the pure part: a token bucket per key (a burst, then ``rate`` lines
per second) over a monotonic ``now`` passed in, counting what it drops. :class:`ThrottledLog`
is the thin shell around a logger: it writes the admitted lines, and one ``log_suppressed``
line per key for the ones it dropped, as soon as the key's budget allows another line (from a
timer on the running event loop, so a flood that stops is still reported).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from triggerd.webhooks.ratelimit import TokenBucket

Monotonic = Callable[[], float]

SUPPRESSED_EVENT = "log_suppressed"


@dataclass(frozen=True, slots=True)
class Admission:
    log: bool  # write this line
    suppressed: int  # lines of this key dropped since the last report: report them first


_LOG_NOTHING_OWED = Admission(log=True, suppressed=0)
_DROP = Admission(log=False, suppressed=0)


@dataclass
class _Budget:
    """One key's bucket and what it dropped. Mutable private state of a LineLimiter."""

    bucket: TokenBucket
    suppressed: int = 0


@dataclass
class LineLimiter:
    """Per-key budgets of log lines: ``burst`` at once, then ``rate`` per second."""

    rate: float = 1.0
    burst: int = 10
    budgets: dict[Hashable, _Budget] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The bucket's own checks, with its messages.
        TokenBucket(rate=self.rate, burst=self.burst, tokens=0.0, updated=0.0)

    def admit(self, key: Hashable, now: float) -> Admission:
        """Take a line from ``key``'s budget. An admitted line carries the count dropped
        before it (then reset), so that the caller reports them first."""
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = _Budget(
                TokenBucket(rate=self.rate, burst=self.burst, tokens=float(self.burst),
                            updated=now)
            )
        if budget.bucket.take(now) > 0:
            budget.suppressed += 1
            return _DROP
        if not budget.suppressed:
            return _LOG_NOTHING_OWED
        owed, budget.suppressed = budget.suppressed, 0
        return Admission(log=True, suppressed=owed)

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """The keys whose dropped lines can be reported now (their budget has a line
        again), with the counts, which are reset; reporting takes no line. Budgets that are
        full and owe nothing are forgotten: a fresh one behaves the same."""
        found: list[tuple[Hashable, int]] = []
        forget: list[Hashable] = []
        for key, budget in self.budgets.items():
            bucket = budget.bucket
            bucket.refill(now)
            if budget.suppressed and bucket.tokens >= 1.0:
                found.append((key, budget.suppressed))
                budget.suppressed = 0
            elif not budget.suppressed and bucket.tokens >= bucket.burst:
                forget.append(key)
        for key in forget:
            del self.budgets[key]
        return found

    def next_due(self, now: float) -> float | None:
        """Seconds until the first report :meth:`due` would give; ``None``: nothing owed."""
        waits = [
            max(0.0, (1.0 - b.bucket.tokens - max(0.0, now - b.bucket.updated) * self.rate)
                / self.rate)
            for b in self.budgets.values()
            if b.suppressed
        ]
        return min(waits) if waits else None


class ThrottledLog:
    """One event written through a :class:`LineLimiter`. ``key`` values name the
    ``key_fields`` (e.g. trigger and reason), which the summary lines repeat."""

    def __init__(
        self,
        logger: logging.Logger,
        event: str,
        *,
        key_fields: Sequence[str] = (),
        rate: float = 1.0,
        burst: int = 10,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.logger = logger
        self.event = event
        self._key_fields = tuple(key_fields)
        self._limiter = LineLimiter(rate=rate, burst=burst)
        self._monotonic = monotonic
        self._timer: asyncio.TimerHandle | None = None
        self._level = logging.INFO

    def log(self, key: tuple[Any, ...], level: int, msg: str, fields: Mapping[str, Any]) -> None:
        """Write ``msg`` with ``fields`` (and the event name) unless ``key`` is over budget."""
        if self.admit(key, level):
            self.logger.log(level, msg, extra={"event": self.event, **fields})

    def admit(self, key: tuple[Any, ...], level: int) -> bool:
        """Whether a line of ``key`` may be written now; writes the summary it owes first.
        Lines the logger would not write anyway are not counted."""
        if not self.logger.isEnabledFor(level):
            return False
        self._level = level
        admission = self._limiter.admit(key, self._monotonic())
        if admission.suppressed:
            self._summary(key, admission.suppressed)
        if not admission.log:
            self._schedule()
        return admission.log

    def flush(self) -> int:
        """Write the summaries that are due; how many were written."""
        due = self._limiter.due(self._monotonic())
        for key, count in due:
            self._summary(key, count)
        return len(due)

    def _summary(self, key: Hashable, count: int) -> None:
        values = key if isinstance(key, tuple) else (key,)
        fields = dict(zip(self._key_fields, values, strict=False))
        self.logger.log(
            self._level,
            f"{count} more {self.event} lines were not logged",
            extra={"event": SUPPRESSED_EVENT, "suppressed_event": self.event,
                   "suppressed": count, **fields},
        )

    def _schedule(self) -> None:
        """Report the drops when the budget allows, even if no other line comes. Outside an
        event loop the report waits for the next admitted line of the key."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        wait = self._limiter.next_due(self._monotonic())
        if wait is not None:
            # A little late rather than early: the budget must have its line by then.
            self._timer = loop.call_later(wait + 0.01, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
        if self._limiter.next_due(self._monotonic()) is not None:
            self._schedule()
