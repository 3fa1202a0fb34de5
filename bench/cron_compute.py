"""Micro-benchmark: next-fire throughput of triggerd.cron against croniter's get_next.

Run: ``.venv/bin/python bench/cron_compute.py`` (about 10 s). Prints fires per second for
chained next-fire calls on a handful of expressions, the ratio to croniter on the same
expressions, and the start-up cost of parsing distinct expressions and computing each
one's first fire (what the daemon does once per distinct expression and zone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from croniter import croniter

from triggerd.cron import _parse_cached, count_fires, next_fire, parse_cron

START = datetime(2026, 1, 1, tzinfo=UTC)
SECONDS_PER_CASE = 0.5

CASES = [
    ("*/5 * * * *", "UTC"),
    ("0 2 * * *", "Europe/Madrid"),
    ("30 9 * * 1-5", "America/New_York"),
    ("0 0 L * *", "UTC"),
    ("0 12 * * 1#1", "Asia/Tokyo"),
    ("*/10 * * * * *", "UTC"),
    ("0 0 29 2 *", "UTC"),
]


def _rate(step: Callable[[], None]) -> float:
    """Calls per second of ``step`` over about SECONDS_PER_CASE."""
    calls = 0
    began = time.perf_counter()
    deadline = began + SECONDS_PER_CASE
    while True:
        for _ in range(100):
            step()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - began)


def _ours(expression: str, tz: str) -> Callable[[], None]:
    schedule = parse_cron(expression, tz)
    state = [START]

    def step() -> None:
        fire = next_fire(schedule, state[0])
        state[0] = START if fire is None else fire.at

    return step


def _croniter(expression: str, tz: str) -> Callable[[], None]:
    zone = parse_cron(expression, tz).zone

    def fresh() -> croniter:
        return croniter(expression, START.astimezone(zone), second_at_beginning=True)

    state = [fresh()]

    def step() -> None:
        try:
            state[0].get_next(datetime)
        except ValueError:  # croniter runs past the year 9999 instead of stopping
            state[0] = fresh()

    return step


def _startup(count: int) -> float:
    """Seconds to parse `count` distinct expressions and compute each one's first fire."""
    _parse_cached.cache_clear()
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
    began = time.perf_counter()
    for i in range(count):
        expression = f"{i % 60} {(i // 60) % 24} * * {(i // 1440) % 7}"
        schedule = parse_cron(expression, zones[(i // 10_080) % len(zones)])
        next_fire(schedule, START)
    return time.perf_counter() - began


def main() -> None:
    print(f"{'expression':<18} {'zone':<17} {'triggerd':>12} {'croniter':>12} {'ratio':>7}")
    for expression, tz in CASES:
        ours = _rate(_ours(expression, tz))
        theirs = _rate(_croniter(expression, tz))
        print(
            f"{expression:<18} {tz:<17} {ours:>10,.0f}/s {theirs:>10,.0f}/s {ours / theirs:>6.1f}x"
        )
    count = 20_000
    seconds = _startup(count)
    print(
        f"start-up: {count:,} distinct expressions parsed + first fire in {seconds:.2f} s"
        f" ({seconds / count * 1e6:.0f} µs each; 100,000 would take ~{seconds * 5:.1f} s)"
    )
    schedule = parse_cron("* * * * * *", "Europe/London")
    began = time.perf_counter()
    total = count_fires(schedule, START - timedelta(days=365), START)
    print(
        f"count_fires over a year of a per-second schedule: {total:,} fires counted in"
        f" {(time.perf_counter() - began) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
