"""What PostgreSQL cannot store in ``text`` and ``jsonb``: NUL characters and unpaired
UTF-16 surrogates. Every input (definition files, run input from the CLI and the API) is
checked against it before anything is written, so bad input gets a clear error, not a
half-written apply or a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# JSON documents accepted from the API and the command line nest at most this deep.
MAX_JSON_DEPTH = 64


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
    if isinstance(value, str):
        reason = unstorable(value)
        if reason:
            yield path, reason
    elif isinstance(value, dict):
        for key, child in value.items():
            reason = unstorable(key) if isinstance(key, str) else None
            if reason:
                yield (*path, key), f"the key {reason}"
            yield from unstorable_strings(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from unstorable_strings(child, (*path, index))
