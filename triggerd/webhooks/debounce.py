"""Trailing debounce as a plan over values: given a key's open window (if any) and the
time a request arrives, where the request goes and when the window's run may start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, kw_only=True)
class Window:
    """A key's window as stored: its run, when it opened, and whether that run is still
    waiting to start (NEW). A window whose run started is closed."""

    execution_id: str
    opened_at: datetime
    pending: bool


@dataclass(frozen=True, kw_only=True)
class WindowPlan:
    fold: bool  # True: the request joins the open window's run; False: it opens a window
    opened_at: datetime
    due_at: datetime  # the run's not-before time


def plan_window(
    window: Window | None, now: datetime, period: timedelta, max_wait: timedelta
) -> WindowPlan:
    """The run starts ``period`` after the last request, but no later than ``max_wait``
    after the first (so a never-ending burst still runs)."""
    if window is None or not window.pending:
        return WindowPlan(fold=False, opened_at=now, due_at=now + min(period, max_wait))
    return WindowPlan(
        fold=True,
        opened_at=window.opened_at,
        due_at=min(now + period, window.opened_at + max_wait),
    )
