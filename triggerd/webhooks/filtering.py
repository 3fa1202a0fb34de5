"""A webhook trigger's ``filter``: an expression over the request's ``input``, ``headers``
and ``query``. Pure functions: the ingress and a replay evaluate, ``check`` inspects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from triggerd.expressions import (
    ExpressionError,
    constant_failure,
    evaluate_condition,
    inspect_template,
    is_template,
    render_string,
)
from triggerd.model import JSON

FILTER_NAMES: Final = ("input", "headers", "query")


def filter_problems(source: str) -> Iterator[str]:
    """What ``check`` says about a filter (nothing when it is fine)."""
    if not is_template(source):
        yield "a filter is an expression, e.g. \"{{ input.action == 'opened' }}\""
        return
    facts = inspect_template(source)
    if facts.error is not None:
        yield facts.error
        return
    unknown = sorted(facts.names - set(FILTER_NAMES))
    for name in unknown:
        yield f"unknown name {name!r} (a filter sees {', '.join(FILTER_NAMES)})"
    failure = None if unknown else constant_failure(source, {})
    if failure is not None:
        # It reads nothing of the request: every request is stored as filtered.
        yield f"it fails on every request, which is then filtered: {failure}"


def evaluate_filter(
    source: str,
    *,
    input: Mapping[str, JSON],
    headers: Mapping[str, JSON],
    query: Mapping[str, JSON],
) -> tuple[bool, str | None]:
    """(matched, why it failed): a filter that raises does not match (the request is kept,
    as filtered, with the error), so a sender's odd payload never starts a run."""
    try:
        value = render_string(source, {"input": input, "headers": headers, "query": query})
    except ExpressionError as exc:
        return False, f"the filter failed: {exc.detail}"
    return evaluate_condition(value), None
