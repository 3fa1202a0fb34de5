"""Duration strings (``500ms``, ``30s``, ``5m``, ``6h``, ``7d``), in definitions and config."""

from __future__ import annotations

import re
from datetime import timedelta

from triggerd.errors import DurationError

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
# One or more <number><unit> parts, e.g. "1h30m"; numbers may be decimal ("1.5s"). ASCII
# digits only (\d takes Arabic-Indic and other Unicode digits too).
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+")

DURATION_PATTERN = r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+$"

# The longest duration anything takes: a century. Longer ones are typing slips, and a
# jitter, catch-up window or offset added to an instant must stay within the calendar
# (999999999d passed, then failed every timer of the scheduler with an OverflowError).
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: object, *, what: str = "duration") -> timedelta:
    """Parse a duration string; raise :class:`DurationError` naming ``what`` when invalid.

    Negative durations are refused; ``0s`` is allowed.
    """
    if not isinstance(text, str):
        raise DurationError(
            f"{what}: expected a duration string such as '30s', got {type(text).__name__} {text!r}"
        )
    stripped = text.strip()
    if not stripped or not _WHOLE.fullmatch(stripped):
        raise DurationError(
            f"{what}: {text!r} is not a duration (use a number and a unit: ms, s, m, h, d;"
            " e.g. '500ms', '30s', '6h')"
        )
    total = timedelta(0)
    try:
        for number, unit in _PART.findall(stripped):
            total += _UNITS[unit] * float(number)
    except OverflowError:
        total = MAX_DURATION * 2
    if total > MAX_DURATION:
        raise DurationError(
            f"{what}: {text!r} is too long a duration (at most {MAX_DURATION.days}d)"
        )
    return total


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the shortest exact duration syntax (``90s`` -> ``1m30s``)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
