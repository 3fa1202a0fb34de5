"""Ids made here (time-ordered UUIDs: executions, and the workflows and triggers an apply
creates), and execution and webhook request ids read as people type them (a full UUID, or
its first 8 or more hex digits).

Pure: :func:`parse_id` turns the text into the UUID range it names; the store
looks the range up on the primary key (``id BETWEEN low AND high``), which an index can
answer, unlike ``id::text LIKE 'prefix%'``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass

from triggerd.errors import UsageError

MIN_PREFIX_DIGITS = 8
_HEX = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, kw_only=True)
class IdKind:
    """What an id names, as the messages about it say: "an execution"."""

    article: str
    noun: str


EXECUTION = IdKind(article="an", noun="execution")
WEBHOOK_REQUEST = IdKind(article="a", noun="webhook request")


@dataclass(frozen=True, kw_only=True)
class IdQuery:
    """The ids an id (or prefix) can name: every UUID from ``low`` to ``high``."""

    prefix: str  # what was typed, in lower case
    full: str | None  # the canonical UUID when all 32 digits were given
    low: str
    high: str


def parse_id(text: str, kind: IdKind) -> IdQuery:
    """``text`` as a full UUID or a prefix of one; a :class:`UsageError` that names
    ``kind`` otherwise."""
    lower = text.lower()
    digits = lower.replace("-", "")
    if _HEX.fullmatch(digits) is None or len(digits) < MIN_PREFIX_DIGITS:
        raise _malformed(text, kind)
    low = str(uuid.UUID(hex=digits.ljust(32, "0")))
    # Dashes only where the canonical form has them (any prefix of it), or none at all.
    if lower != digits and lower != low[: len(lower)]:
        raise _malformed(text, kind)
    high = str(uuid.UUID(hex=digits.ljust(32, "f")))
    full = low if len(digits) == 32 else None
    return IdQuery(prefix=lower, full=full, low=low, high=high)


def parse_execution_id(text: str) -> IdQuery:
    return parse_id(text, EXECUTION)


_CANONICAL = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def canonical_uuid(text: str) -> str | None:
    """A whole id as PostgreSQL spells it, from its 36-character form or its 32 hex digits
    (any case); None for anything else, including the other spellings ``uuid.UUID``
    takes (braces, ``urn:uuid:``), which no list or answer ever shows."""
    lower = text.lower()
    if _CANONICAL.fullmatch(lower) is None or len(lower) not in (32, 36):
        return None
    return str(uuid.UUID(lower))


def _malformed(text: str, kind: IdKind) -> UsageError:
    return UsageError(
        f"{text!r} is not {kind.article} {kind.noun} id (a UUID, or {MIN_PREFIX_DIGITS} or"
        " more of its leading hex digits)"
    )


# Random hex digits for ids, fetched from the OS in blocks (one system call per ~860
# ids), 19 per id (74 random bits are used).
_RANDOM_HEX_PER_ID = 19
_random_hex: list[str] = []
# The 4th group's first digit: the variant's two bits (10), then two random bits.
_VARIANT = "89ab"


def _forget_random() -> None:
    _random_hex.clear()  # a forked child must not reuse its parent's random bytes


os.register_at_fork(after_in_child=_forget_random)


def time_ordered_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made
    one after the other land next to each other in the primary-key B-trees, which keeps
    the group commit's inserts on few, hot index pages instead of random ones. The random
    part comes from the OS (the ids are the capability to read a status page), fetched in
    blocks to spare a system call per request, and is formatted as text directly."""
    if not _random_hex:
        block = os.urandom(8192).hex()
        size = _RANDOM_HEX_PER_ID
        _random_hex.extend(block[i : i + size] for i in range(0, len(block) - size + 1, size))
    r = _random_hex.pop()
    m = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    return f"{m[:8]}-{m[8:]}-7{r[:3]}-{_VARIANT[int(r[3], 16) & 3]}{r[4:7]}-{r[7:]}"
