"""What JSON text we read from users holds to, beyond the grammar: no duplicate keys, no
NaN or Infinity, and no number too large for a float (``1e999`` reads as infinity, which
PostgreSQL's json types refuse). One set of rules for the admin API's bodies, the CLI's
``--input`` and definition files, so each refuses the same text with the same words."""

from __future__ import annotations

import math
import sys
from typing import Any, NoReturn


class JsonRefusal(ValueError):
    """Text the JSON grammar allows and we do not; the message says what."""


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: an object with a key twice is refused."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonRefusal(f"duplicate key {key[:60]!r}")
        result[key] = value
    return result


def refuse_constant(name: str) -> NoReturn:
    """``parse_constant``: NaN, Infinity and -Infinity are not JSON."""
    raise JsonRefusal(f"{name} is not a JSON value")


def finite_float(text: str) -> float:
    """``parse_float``: a number beyond a float's range is refused, not read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefusal(f"the number {text[:40]} is too large")
    return value


# How deep parsed JSON from outside (a webhook's body, an http node's answer) may nest.
# Far beyond any real payload (GitHub's and Stripe's are about ten levels), and far below
# what the code that stores and reads runs back can recurse through: the parsers took
# about 1,000 levels, which the admin API then failed to answer.
MAX_JSON_NESTING = 128


def deeper_than(text: str, value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed from ``text``) nests more than ``limit`` containers deep.
    A text with fewer brackets than that cannot, and is not walked."""
    if not isinstance(value, (dict, list)) or text.count("[") + text.count("{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def too_many_digits() -> str:
    """Python's limit on an integer's digits, in our words (its own name a function)."""
    return f"a number with more than {sys.get_int_max_str_digits()} digits"


def refusal_text(exc: ValueError) -> str:
    """What a ``ValueError`` of ``json.loads`` with these rules says: a :class:`JsonRefusal`
    its own message, Python's digit limit :func:`too_many_digits`."""
    if "integer string conversion" in str(exc):
        return too_many_digits()
    return str(exc)
