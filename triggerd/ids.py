"""Execution ids as people type them: a full UUID, or its first 8 or more hex digits.

Pure: :func:`parse_execution_id` turns the text into the UUID range it names; the store
looks the range up on the primary key (``id BETWEEN low AND high``), which an index can
answer, unlike ``id::text LIKE 'prefix%'``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from triggerd.errors import UsageError

MIN_PREFIX_DIGITS = 8
_HEX = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, kw_only=True)
class IdQuery:
    """The ids an execution id (or prefix) can name: every UUID from ``low`` to ``high``."""

    prefix: str  # what was typed, in lower case
    full: str | None  # the canonical UUID when all 32 digits were given
    low: str
    high: str


def parse_execution_id(text: str) -> IdQuery:
    """``text`` as a full UUID or a prefix of one; a :class:`UsageError` otherwise."""
    lower = text.lower()
    digits = lower.replace("-", "")
    if _HEX.fullmatch(digits) is None or len(digits) < MIN_PREFIX_DIGITS:
        raise _malformed(text)
    low = str(uuid.UUID(hex=digits.ljust(32, "0")))
    # Dashes only where the canonical form has them (any prefix of it), or none at all.
    if lower != digits and lower != low[: len(lower)]:
        raise _malformed(text)
    high = str(uuid.UUID(hex=digits.ljust(32, "f")))
    full = low if len(digits) == 32 else None
    return IdQuery(prefix=lower, full=full, low=low, high=high)


def _malformed(text: str) -> UsageError:
    return UsageError(
        f"{text!r} is not an execution id (a UUID, or {MIN_PREFIX_DIGITS} or more of its"
        " leading hex digits)"
    )
