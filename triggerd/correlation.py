"""A trigger's ``correlation``: which agent, session and conversation (or any other key) a
run belongs to, each a literal or an expression. Pure functions: the ingress and ``fire``
evaluate, ``check`` inspects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from triggerd.expressions import ExpressionError, inspect_template, is_template, render_string
from triggerd.model import CORRELATION_COLUMNS, JSON, Correlation

# What a mapping's expressions may read, per trigger type: scheduled runs have no request
# and a fixed input, so their values are literals.
CORRELATION_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "webhook": ("input", "headers", "query"),
    "manual": ("input",),
    "cron": (),
    "interval": (),
}
MAX_VALUE_CHARS: Final = 200  # a longer evaluated value is cut (ids are short)


def correlation_problems(trigger_type: str, mapping: Mapping[str, Any]
                         ) -> Iterator[tuple[str, str]]:
    """(key, problem) for each value ``check`` refuses."""
    names = CORRELATION_NAMES.get(trigger_type, ())
    for key, source in mapping.items():
        if not isinstance(source, str) or not is_template(source):
            continue
        if not names:
            yield key, (f"a {trigger_type} trigger's correlation values are literal strings"
                        " (a scheduled run has no request to read)")
            continue
        facts = inspect_template(source)
        if facts.error is not None:
            yield key, facts.error
            continue
        for name in sorted(facts.names - set(names)):
            yield key, f"unknown name {name!r} (a correlation value sees {', '.join(names)})"


class _Headers(dict[str, JSON]):
    """Request headers (stored lower-cased) that answer to any case, as HTTP's do:
    ``headers['X-Session-Id']``."""

    def __getitem__(self, key: Any) -> JSON:
        return super().__getitem__(key.lower() if isinstance(key, str) else key)

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(key.lower() if isinstance(key, str) else key, default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


def _text(value: JSON) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text[:MAX_VALUE_CHARS]


def evaluate_correlation(
    mapping: Mapping[str, str],
    *,
    input: Mapping[str, JSON],
    headers: Mapping[str, JSON] | None = None,
    query: Mapping[str, JSON] | None = None,
) -> Correlation | None:
    """The run's correlation: each key of ``mapping`` rendered over the request. A value
    that fails, or is empty, null or not a scalar, is left out (a sender's odd request
    still starts its run); None when nothing is left."""
    if not mapping:
        return None
    context = {"input": input, "headers": _Headers(headers or {}), "query": query or {}}
    values: dict[str, str] = {}
    for key, source in mapping.items():
        try:
            text = _text(render_string(source, context))
        except ExpressionError:
            continue
        if text is not None:
            values[key] = text
    return Correlation(values=values) if values else None


def fire_correlation(mapping: Mapping[str, str], input: Mapping[str, JSON]
                     ) -> Correlation | None:
    """A manual fire's correlation: the trigger's mapping over ``input``, and for the
    three id columns the mapping does not name, the input's own top-level value
    (``fire --input '{"session_id": "s-1"}'``)."""
    found = evaluate_correlation(mapping, input=input)
    values = dict(found.values) if found is not None else {}
    for key in CORRELATION_COLUMNS:
        if key not in mapping:
            text = _text(input.get(key))
            if text is not None:
                values[key] = text
    return Correlation(values=values) if values else None


def correlation_mapping(config: Mapping[str, JSON]) -> dict[str, str]:
    """A stored trigger config's ``correlation`` (empty when it maps nothing)."""
    mapping = config.get("correlation")
    if not isinstance(mapping, dict):
        return {}
    return {k: v for k, v in mapping.items() if isinstance(v, str)}


def correlation_json(correlation: Correlation | None) -> dict[str, str]:
    """What nodes read as ``execution.correlation``."""
    return {} if correlation is None else dict(correlation.values)
