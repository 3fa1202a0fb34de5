"""A run's input against its workflow's ``parameter_schema``: the one check behind every
way of starting a run by hand (CLI, admin API, console)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from triggerd.errors import Conflict, InputInvalid
from triggerd.expressions import has_template

# Listed violations, as in webhook answers: a hostile input must not make a huge answer.
MAX_LISTED_ERRORS = 100


def input_errors(schema: Mapping[str, Any], value: Any) -> list[dict[str, str]]:
    """Every violation of ``schema`` by ``value`` as ``{"path", "message"}``, sorted by path."""
    try:
        validator = Draft202012Validator(
            dict(schema), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        errors = list(validator.iter_errors(value))
    except jsonschema.SchemaError as exc:  # checked when published; never trust stored data
        raise Conflict(f"the workflow's parameter_schema is invalid: {exc.message}") from None
    except Unresolvable as exc:  # published before check resolved references
        raise Conflict(f"the workflow's parameter_schema is invalid: {unresolvable(exc)}"
                       ) from None
    errors.sort(key=lambda e: (e.json_path, e.message))
    return [{"path": e.json_path, "message": e.message[:300]}
            for e in errors[:MAX_LISTED_ERRORS]]


def unresolvable(exc: Unresolvable) -> str:
    return f"a $ref ({exc.ref[:200]!r}) cannot be resolved"


def check_input(schema: Mapping[str, Any], value: Any) -> None:
    """Raise :class:`InputInvalid` listing every violation of ``schema`` by ``value``."""
    errors = input_errors(schema, value)
    if errors:
        count = len(errors)
        raise InputInvalid(
            "the input does not match the workflow's parameter_schema"
            f" ({count} problem{'s' if count != 1 else ''})",
            errors,
        )


def closed_input_keys(schema: Any) -> list[str] | None:
    """The only keys an input passing ``schema`` can have, when the schema closes them
    (``additionalProperties: false``, no ``patternProperties``); None when any key may."""
    if not isinstance(schema, Mapping) or schema.get("additionalProperties") is not False:
        return None
    properties = schema.get("properties", {})
    if "patternProperties" in schema or not isinstance(properties, Mapping):
        return None
    return [key for key in properties if isinstance(key, str)]


def call_input_problems(schema: Mapping[str, Any], value: Any) -> list[str]:
    """What makes every run of a workflow node's call fail its child's schema, from the
    node's ``input`` as written: all of it when it holds no expression, else what its keys
    alone decide (a required key left out, a key a closed schema never allows)."""
    if not schema or not isinstance(value, Mapping):
        return []
    if not has_template(value):
        try:
            return [f"{e['path']}: {e['message']}" for e in input_errors(schema, value)]
        except Conflict:
            return []  # the child's own schema problem; its runs report it
    return input_key_problems(schema, list(value))


def input_key_problems(schema: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """What an input of exactly these top-level ``keys`` (values unknown) fails in
    ``schema`` whatever the values: a required key left out, a key a closed schema never
    allows."""
    problems = [f"$: {name!r} is a required property"
                for name in schema.get("required", []) if name not in keys]
    allowed = closed_input_keys(schema)
    if allowed is not None:
        problems += [f"$: additional property {name!r} is not allowed"
                     for name in keys if name not in allowed]
    return problems


# Two failure summaries (an error workflow's input, FAILURE_SUMMARY_KEYS) at the ends of
# what they hold: every optional value present, and every one of them null.
_SUMMARY_FULL: dict[str, Any] = {
    "execution_id": "00000000-0000-4000-8000-000000000000", "workflow": "w", "version": 1,
    "trigger": "t", "trigger_type": "cron", "failed_node": "n", "error_code": "FAILED",
    "error_message": "m", "started_at": "2026-01-01T00:00:00+00:00",
    "ended_at": "2026-01-01T00:00:01+00:00",
}
_SUMMARY_SPARE = {**_SUMMARY_FULL, "trigger": None, "failed_node": None,
                  "error_message": None}


def summary_problems(schema: Mapping[str, Any]) -> list[str]:
    """What makes ``schema`` refuse every failure summary an error run gets: the problems
    of a full summary when a sparse one (the values that may be null, null) fails too."""
    if not schema:
        return []
    try:
        full = input_errors(schema, _SUMMARY_FULL)
        spare = input_errors(schema, _SUMMARY_SPARE)
    except Conflict:
        return []  # the workflow's own schema problem; its runs report it
    if not full or not spare:
        return []
    return [f"{e['path']}: {e['message']}" for e in full]
