"""What every node type shares: its context, result, failure, the NodeType protocol and the
metadata built-in types declare (side effects, a JSON Schema of their params), checked access
to params, and the pure retry arithmetic."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from triggerd.durations import DURATION_PATTERN, parse_duration
from triggerd.errors import DurationError, TriggerdError
from triggerd.model import JSON, Node, RetryPolicy

if TYPE_CHECKING:
    import aiohttp

# Failure codes of the built-in node types and of the runner.
INVALID_PARAMS: Final = "INVALID_PARAMS"
UNKNOWN_NODE_TYPE: Final = "UNKNOWN_NODE_TYPE"
TIMEOUT: Final = "TIMEOUT"
NODE_ERROR: Final = "NODE_ERROR"  # a node type raised something other than NodeFailure


@dataclass(frozen=True, kw_only=True)
class NodeContext:
    """What a node gets besides its rendered params."""

    execution_id: str
    node: Node
    attempt: int  # 1 for the first attempt
    http: aiohttp.ClientSession | None  # the executor's shared session
    now: datetime  # when this attempt started (timezone-aware)
    log: logging.Logger
    # When this attempt started by the clock. ``now`` is earlier for a wait taken up again
    # after a dead process cut it: its end is decided from the cut attempt's start
    # (triggerd/executor/runner.py KEEPS_START). None (outside the executor): ``now``.
    started: datetime | None = None
    # The executor's database pool, for node types that keep state there (approval,
    # memory), and the run's workflow (memory is per workflow).
    db: Any = None
    workflow_id: str = ""
    max_workflow_depth: int = 8  # [executor] max_workflow_depth (workflow nodes)
    # [executor] max_resume_output_bytes: an output above it fails the node after it ran,
    # so a node that writes its output somewhere checks the size before it writes.
    max_output_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class NodeResult:
    output: JSON = None
    # ``if``: "true"/"false"; ``switch``: the matched case's label or "default".
    branch: str | None = None
    # Set by ``wait``: park the run (WAITING) until this instant, then record the node's
    # SUCCESS with ``output`` and continue.
    wait_until: datetime | None = None


class NodeFailure(TriggerdError):
    """A node failed. ``code`` is a stable identifier (``HTTP_STATUS``, ``TIMEOUT``, ...)
    that retry policies and failure handling match on.

    ``retryable_status``: the HTTP status, matched against ``retry_on``.
    ``retryable``: False for failures that are the same on every attempt (bad params,
    unknown node type): they are never retried.
    ``output``: what the node had produced when it failed (e.g. the HTTP response), to be
    stored with the failure.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable_status: int | None = None,
        retryable: bool = True,
        output: JSON = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable_status = retryable_status
        self.retryable = retryable
        self.output = output

    def __repr__(self) -> str:
        return f"NodeFailure({self.code!r}, {self.message!r})"


@runtime_checkable
class NodeType(Protocol):
    """A kind of node. Implementations are stateless; one instance serves every run."""

    @property
    def name(self) -> str: ...

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        """Run once with ``params`` already rendered; raise :class:`NodeFailure` to fail."""
        ...


@runtime_checkable
class DescribedNodeType(NodeType, Protocol):
    """A node type that also says what it is, as every built-in type must (mypy checks the
    registry's list, :func:`described` checks at load). Third-party types need not: the
    executor writes a RUNNING row before every third-party node, whatever it declares."""

    @property
    def side_effects(self) -> bool:
        """True when running the node acts outside the run (a request sent, a run parked),
        so the executor writes its RUNNING row before it starts; False for pure nodes,
        whose rows are buffered and written with the next durable point."""
        ...

    @property
    def params_schema(self) -> Mapping[str, Any]:
        """A JSON Schema (draft 2020-12) of the params as written in a definition, before
        rendering: a ``{{ }}`` template may stand in for a typed value. ``check`` (and every
        load of definitions) validates params against it; :meth:`run` still validates the
        rendered params itself."""
        ...


def described(node_type: object, *, check_schema: bool = True) -> DescribedNodeType:
    """``node_type``, once it is known to declare its metadata; raises TypeError naming
    what is missing or wrong. ``check_schema=False`` skips checking ``params_schema``
    against the metaschema (for the built-in types, whose schemas the unit tests check:
    it costs about 50 ms at every start)."""
    name = getattr(node_type, "name", repr(node_type))
    for attribute, what in (("side_effects", "a bool"), ("params_schema", "a JSON Schema")):
        if not hasattr(node_type, attribute):
            raise TypeError(f"node type {name!r} does not declare {attribute!r} ({what})")
    side_effects = getattr(node_type, "side_effects")  # noqa: B009 (not typed as having it)
    if not isinstance(side_effects, bool):
        raise TypeError(
            f"node type {name!r}: 'side_effects' must be a bool, got {type(side_effects).__name__}"
        )
    schema = getattr(node_type, "params_schema")  # noqa: B009
    try:
        if check_schema:
            Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise TypeError(
            f"node type {name!r}: 'params_schema' is not a valid JSON Schema: {exc.message}"
        ) from None
    if not isinstance(node_type, DescribedNodeType):
        raise TypeError(f"node type {name!r} is not a node type (it needs 'name' and 'run')")
    return node_type


# --- params schemas ------------------------------------------------------------------
# Fragments for the built-in types' params schemas. They describe params as written in a
# definition: the nodes strip surrounding whitespace where the patterns allow it.

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# The message `check` gives when a value fails this (sub)schema, as in the definition
# file's schema (the ajv-errors convention): one string, or a mapping from keyword to
# message; ``{value}`` stands for the offending value.
ERROR_MESSAGE: Final = "errorMessage"
# Any string with "{{" or "{%" is rendered before the node sees it (triggerd.expressions).
TEMPLATE_PATTERN: Final = r"\{\{|\{%"
DURATION_TEXT_PATTERN: Final = (
    r"^\s*" + DURATION_PATTERN.removeprefix("^").removesuffix("$") + r"\s*$"
)


def template() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": TEMPLATE_PATTERN,
        "description": "An expression ({{ ... }}); its rendered value is checked by the node.",
    }


def or_template(
    description: str,
    schema: Mapping[str, Any],
    default: JSON = None,
    *,
    error: str | None = None,
) -> dict[str, Any]:
    """A parameter of type ``schema`` that may also be given as a template string, with
    the node's ``default`` (an annotation for readers; the node applies it) and the message
    ``check`` gives for a wrong value (``errorMessage``, see :data:`ERROR_MESSAGE`)."""
    prop: dict[str, Any] = {"description": description, "anyOf": [dict(schema), template()]}
    if default is not None:
        prop["default"] = default
    if error is not None:
        prop[ERROR_MESSAGE] = error
    return prop


def duration_param(description: str, default: str | None = None) -> dict[str, Any]:
    return or_template(
        description,
        {"type": "string", "pattern": DURATION_TEXT_PATTERN},
        default,
        error="{value} is not a duration: use a number and a unit (ms, s, m, h, d),"
        " e.g. '500ms', '30s', '6h'",
    )


def params_schema(
    node_type: str,
    description: str,
    properties: Mapping[str, Mapping[str, Any]],
    *,
    required: Sequence[str] = (),
    closed: bool = True,
    extra: Mapping[str, Any] | None = None,
    examples: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The params schema of ``node_type``: an object of ``properties``; ``closed`` when
    the node refuses unknown keys; ``extra``: further keywords (``oneOf``, ``not``...,
    with their messages under ``errorMessage``); ``examples``: params as a definition
    writes them (the node reference shows them, a test checks them)."""
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "title": f"{node_type} node parameters",
        "description": description,
        "type": "object",
        "properties": {key: dict(value) for key, value in properties.items()},
    }
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra or {})
    if examples:
        schema["examples"] = [dict(example) for example in examples]
    return schema


def invalid_params(node_type: str, message: str) -> NodeFailure:
    return NodeFailure(INVALID_PARAMS, f"{node_type} node: {message}", retryable=False)


def json_text(value: JSON) -> str:
    """A scalar as text for places that want strings (headers, query values): strings as
    they are, everything else as JSON (``true``, ``3``, ``null``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


_MISSING: Final = object()

# An integer written out in text: ASCII digits only ("²" and "--5" pass str.isdigit and
# lstrip("-"), and int() refused them with a ValueError).
_INTEGER_TEXT: Final = re.compile(r"\s*-?[0-9]+\s*")


def integer_text(value: str) -> int | None:
    """The integer ``value`` writes (one rendered inside text: ``"{{ x }} "``), else None."""
    if _INTEGER_TEXT.fullmatch(value) is None:
        return None
    try:
        return int(value)
    except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits)
        return None



class Params:
    """Checked access to a node's rendered params; every problem is an INVALID_PARAMS failure
    naming the node type and the parameter."""

    def __init__(self, node_type: str, params: JSON, allowed: Collection[str]) -> None:
        self.node_type = node_type
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise invalid_params(node_type, f"params must be an object, got {_kind(params)}")
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise invalid_params(
                node_type,
                f"unknown parameter {', '.join(map(repr, unknown))}"
                f" (allowed: {', '.join(sorted(allowed))})",
            )
        self._values: dict[str, JSON] = params

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def invalid(self, message: str) -> NodeFailure:
        return invalid_params(self.node_type, message)

    def get(self, key: str, default: JSON = None) -> JSON:
        return self._values.get(key, default)

    def require(self, key: str) -> JSON:
        if key not in self._values:
            raise self.invalid(f"parameter {key!r} is required")
        return self._values[key]

    def text(self, key: str, default: str | None = None) -> str:
        value = self._values.get(key, _MISSING if default is None else default)
        if value is _MISSING:
            raise self.invalid(f"parameter {key!r} is required")
        if not isinstance(value, str):
            raise self.invalid(f"parameter {key!r} must be a string, got {_kind(value)}")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self._values.get(key, default)
        number = integer_text(value) if isinstance(value, str) else None
        if number is not None:
            value = number  # rendered inside text, e.g. "{{ x }} "
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.invalid(f"parameter {key!r} must be an integer, got {_kind(value)}")
        return value

    def mapping(self, key: str) -> dict[str, JSON]:
        value = self._values.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.invalid(f"parameter {key!r} must be an object, got {_kind(value)}")
        return value

    def duration(self, key: str, default: str | None = None) -> timedelta:
        value = self._values.get(key, default)
        try:
            return parse_duration(value, what=f"parameter {key!r}")
        except DurationError as exc:
            raise self.invalid(exc.message) from exc


def _kind(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


# --- retries -------------------------------------------------------------------------


def retry_delay(policy: RetryPolicy, attempt: int) -> timedelta:
    """How long to wait after failed attempt number ``attempt`` (1-based) before the next:
    ``backoff * 2 ** (attempt - 1)``, at most ``max_backoff``."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if policy.backoff <= timedelta(0):
        return timedelta(0)
    # Compare exponents rather than multiplying, which would overflow timedelta.
    ratio = policy.max_backoff / policy.backoff
    if attempt - 1 >= 63 or (1 << (attempt - 1)) >= ratio:
        return policy.max_backoff
    return policy.backoff * (1 << (attempt - 1))


def should_retry(policy: RetryPolicy, failure: NodeFailure, attempt: int) -> bool:
    """Whether failed attempt number ``attempt`` (1-based) is followed by another.

    Yes when attempts remain, the failure is retryable and ``retry_on`` is empty or lists
    the failure's code or its HTTP status (as a number or as text).
    """
    if attempt >= policy.max_attempts or not failure.retryable:
        return False
    if not policy.retry_on:
        return True
    if failure.code in policy.retry_on:
        return True
    status = failure.retryable_status
    return status is not None and (status in policy.retry_on or str(status) in policy.retry_on)
