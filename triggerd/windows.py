"""Time windows of history lists (``--since``/``--until``, ``?since=``/``?until=``):
half-open, ``[since, until)``, as every range of the program (DESIGN, "Slots and the
ledger"). One check for the API and the CLI, so the same window gets the same answer."""

from __future__ import annotations

from datetime import datetime

from triggerd.cron import utc_iso
from triggerd.errors import UsageError


def check_window(since: datetime | None, until: datetime | None, *,
                 names: tuple[str, str] = ("since", "until")) -> None:
    """Refuse a window whose start is after its end (:class:`UsageError` naming both, by
    ``names``). An empty window (``since == until``) is a window: it holds no rows, as a
    script's window over an instant that saw none (not a mistake, so no error)."""
    if since is not None and until is not None and since > until:
        raise UsageError(
            f"{names[0]} {utc_iso(since)} is after {names[1]} {utc_iso(until)} (swapped?)")
