"""What PostgreSQL cannot store in ``text`` and ``jsonb``: NUL characters and unpaired
UTF-16 surrogates. Every input (definition files, run input from the CLI and the API) is
checked against it before anything is written, so bad input gets a clear error, not a
half-written apply or a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# JSON documents accepted from the API and the command line nest at most this deep.
MAX_JSON_DEPTH = 64
BIGINT_MAX = 2**63 - 1


def at_most_pattern(high: int) -> str:
    """A regular expression (JSON Schema's dialect too) for the ASCII digits of 0..``high``,
    leading zeros allowed, no longer than ``high``'s: the numbers shorter than it, then, for
    each of its digits, its digits before that one and a smaller one there."""
    digits = str(high)
    size = len(digits)
    choices = [f"[0-9]{{1,{size - 1}}}"] if size > 1 else []
    for at, digit in enumerate(digits):
        if digit != "0":
            rest = size - at - 1
            smaller = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
            choices.append(digits[:at] + smaller + (f"[0-9]{{{rest}}}" if rest else ""))
    choices.append(digits)
    return f"^(?:{'|'.join(choices)})$"


# An audit row's id as a cursor, as the API documents it: exactly what is_bigint_text takes.
BIGINT_TEXT_PATTERN = at_most_pattern(BIGINT_MAX)


def is_bigint_text(text: str) -> bool:
    """Whether ``text`` is the ASCII digits of a non-negative PostgreSQL ``bigint`` (an
    audit row's id: a cursor beyond it overflowed the query)."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= BIGINT_MAX


# The keys of what is stored instead of an output above [executor] max_output_bytes.
TRUNCATION_KEYS = frozenset({"_truncated", "size_bytes", "limit_bytes", "preview"})


def is_truncation_marker(value: Any) -> bool:
    """Whether ``value`` is the marker stored for an output above the limit."""
    if not isinstance(value, dict) or value.get("_truncated") is not True:
        return False
    return set(value) >= TRUNCATION_KEYS


def storage_problem(value: Any) -> str | None:
    """Why PostgreSQL could not store this JSON value (NUL characters and lone surrogates
    in ``jsonb``), or why it is refused (nesting), naming the JSON path; ``None`` when fine."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{path}: nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            reason = unstorable(item)
            if reason:
                return f"{path}: {reason}"
        elif isinstance(item, dict):
            for key, child in item.items():
                reason = unstorable(key)
                if reason:
                    return f"{path}: a key {reason}"
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                stack.append((child, f"{path}[{index}]", depth + 1))
    return None


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None``."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate, which is not valid Unicode"
    return None



def unstorable_strings(value: Any, path: tuple[str | int, ...] = ()
                       ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string (or key) of ``value`` that cannot be stored: its path and why."""
    if _plain_text_only(value):
        return
    yield from _unstorable_strings(value, path)


def _suspect(text: str) -> bool:
    return "\x00" in text or not text.isascii()


def _plain_text_only(value: Any) -> bool:
    """Whether every string and key of ``value`` is ASCII without NUL, so storable: one
    walk without paths, which is all a large valid file needs."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _suspect(item):
                return False
        elif isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and _suspect(key):
                    return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _unstorable_strings(value: Any, path: tuple[str | int, ...]
                        ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        reason = unstorable(value)
        if reason:
            yield path, reason
    elif isinstance(value, dict):
        for key, child in value.items():
            reason = unstorable(key) if isinstance(key, str) else None
            if reason:
                yield (*path, key), f"the key {reason}"
            yield from _unstorable_strings(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _unstorable_strings(child, (*path, index))
