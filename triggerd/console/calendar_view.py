"""The trigger page's calendar: one row per day around today, in the trigger's zone — the
slots the ledger recorded on past days counted by outcome, the fires projected for the
coming days, and the days a calendar filter excludes. Pure: ``today`` and the inputs are
arguments; the page reads them (bounded) and renders the rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from triggerd.cron import Fire

DAYS_BACK = 7
DAYS_AHEAD = 7
# Bounds on what one page reads: an every-second trigger has 86,400 slots a day.
PAST_ROWS = 20_000
FUTURE_FIRES = 500


@dataclass(frozen=True, kw_only=True)
class CalendarDay:
    day: date
    past: bool  # before today (today counts both what was recorded and what is projected)
    today: bool
    outcomes: tuple[tuple[str, int], ...] = ()  # recorded, by outcome (most first)
    projected: int = 0
    projected_more: bool = False  # the projection stopped at FUTURE_FIRES
    excluded: tuple[str, ...] = field(default_factory=tuple)  # why a calendar removes fires
    dst: tuple[str, ...] = field(default_factory=tuple)  # dst-gap / dst-fold notes

    @property
    def recorded(self) -> int:
        return sum(n for _, n in self.outcomes)


def calendar_days(
    *,
    today: date,
    recorded: Mapping[tuple[date, str], int],
    fires: Iterable[Fire],
    fires_capped: bool,
    days_back: int = DAYS_BACK,
    days_ahead: int = DAYS_AHEAD,
) -> list[CalendarDay]:
    """Rows from ``today - days_back`` to ``today + days_ahead``. ``recorded`` counts
    ledger rows by (local day, outcome); ``fires`` are the projected fires in order (with
    excluded instants marked, as previews mark them); ``fires_capped`` says the
    projection stopped early, so days after its last fire are unknown, not empty."""
    projected: dict[date, int] = {}
    excluded: dict[date, list[str]] = {}
    dst: dict[date, list[str]] = {}
    last_day: date | None = None
    for fire in fires:
        day = fire.local.date()
        last_day = day
        if fire.note == "excluded":
            excluded.setdefault(day, []).append(fire.reason or "excluded")
            continue
        projected[day] = projected.get(day, 0) + 1
        if fire.note in ("dst-gap", "dst-fold"):
            dst.setdefault(day, []).append(f"{fire.note} at {fire.local.strftime('%H:%M')}")
    rows = []
    for offset in range(-days_back, days_ahead + 1):
        day = today + timedelta(days=offset)
        outcomes = sorted(((o, n) for (d, o), n in recorded.items() if d == day),
                          key=lambda item: (-item[1], item[0]))
        more = fires_capped and last_day is not None and day >= last_day
        rows.append(CalendarDay(
            day=day, past=offset < 0, today=offset == 0, outcomes=tuple(outcomes),
            projected=0 if offset < 0 else projected.get(day, 0),
            projected_more=offset >= 0 and more,
            excluded=tuple(dict.fromkeys(excluded.get(day, []))),
            dst=tuple(dst.get(day, []))))
    return rows
