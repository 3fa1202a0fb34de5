"""Request keys of ``debounce`` and ``concurrency``: an expression over the request's
``input``, ``headers`` and ``query``, evaluated to the text that groups requests."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from triggerd.expressions import (
    CONTEXT_NAMES,
    KNOWN_NAMES,
    ExpressionError,
    constant_budget,
    constant_oversized,
    constant_value,
    inspect_template,
    is_template,
    render_string,
)
from triggerd.model import JSON

KEY_NAMES: Final = ("input", "headers", "query")
# Jinja2's globals (range, dict, ...) are readable too, as in every expression.
_GLOBALS: Final = KNOWN_NAMES - frozenset(CONTEXT_NAMES)

# Stored in an indexed text column: a key longer than this is refused, not truncated
# (two different long keys must not become one).
MAX_KEY_LENGTH: Final = 1000


def key_problems(source: str) -> Iterator[str]:
    """What ``check`` says about a key expression (nothing when it is fine)."""
    if not is_template(source):
        return  # a constant: every request shares one key
    facts = inspect_template(source)
    if facts.error is not None:
        yield facts.error
        return
    unknown = sorted(facts.names - _GLOBALS - set(KEY_NAMES))
    for name in unknown:
        yield f"unknown name {name!r} (a key sees {', '.join(KEY_NAMES)})"
    if unknown or facts.names & set(KEY_NAMES) or facts.random:
        return
    # It reads nothing of the request: computed here as for each request, it fails (every
    # request refused 422) or it is the one key of them all.
    with constant_budget():  # one for the look and for what it kept
        found = constant_value(source, {})
        oversized = found is None and constant_oversized(source)
    if oversized:
        # Past MAX_CONSTANT_SIZE, so past MAX_KEY_LENGTH: no request's key can be it.
        yield ("it fails on every request, which is refused: the key is longer than"
               f" {MAX_KEY_LENGTH} characters")
        return
    if found is None:
        return  # not evaluated (see constant_value)
    value, failure = found
    if failure is None:
        try:
            _key_text(source, value)
        except ExpressionError as exc:
            failure = exc.detail
    if failure is not None:
        yield f"it fails on every request, which is refused: {failure}"


def request_key(
    source: str, *, input: JSON, headers: Mapping[str, str], query: Mapping[str, str]
) -> str:
    """The key of one request. Raises :class:`ExpressionError` when the expression fails
    on it (an undefined field, say) or the key is empty or too long."""
    context: dict[str, Any] = {"input": input, "headers": headers, "query": query}
    return _key_text(source, render_string(source, context))


def _key_text(source: str, value: JSON) -> str:
    """The key a rendered ``value`` is (see :func:`request_key`)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if value is None or text == "":
        raise ExpressionError(source, "the key is empty")
    if len(text) > MAX_KEY_LENGTH:
        raise ExpressionError(source, f"the key is longer than {MAX_KEY_LENGTH} characters")
    return text
