"""``memory``: the workflow's own key/value store, kept between runs (a cursor, a counter,
a seen-set). Params: ``op`` (get, set, delete, increment, cas), ``key``, ``value`` (set,
cas; increment: the amount, default 1), ``ttl`` (set, increment, cas: the key expires
after it), ``expected`` (cas: the value the key must hold, null for absent).

Output ``{"found", "value"}`` (get, set, delete, increment; ``found`` says whether the key
held a value before: set and increment answer with the new value); cas answers
``{"swapped", "value"}`` with the value the key holds afterwards. A write is applied once
per run and node: a node run again after a crash answers what its first run did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from triggerd.expressions import is_template
from triggerd.model import JSON
from triggerd.nodes.base import (
    NodeContext,
    NodeFailure,
    NodeResult,
    Params,
    duration_param,
    or_template,
    params_schema,
)
from triggerd.storable import storage_problem, unstorable
from triggerd.store import memory

OPS = ("get", "set", "delete", "increment", "cas")

PARAMS_SCHEMA = params_schema(
    "memory",
    "Read or change the workflow's memory (kept between runs): get, set, delete,"
    ' increment, cas (compare-and-set). Output {"found", "value"}; cas {"swapped",'
    ' "value"}.',
    {
        "op": or_template("What to do.", {"enum": list(OPS)},
                          error="{value} is not an op: use get, set, delete, increment or"
                                " cas"),
        "key": or_template("The key (1-512 characters), e.g. 'cursor:orders'.",
                           {"type": "string", "minLength": 1, "maxLength": 512}),
        "value": {"description": "set/cas: the value to store (any JSON but null); increment: the"
                                 " amount (default 1)."},
        "ttl": duration_param("set/increment/cas: the key expires this long after the"
                              " write (default: never)."),
        "expected": {"description": "cas: the value the key must hold for the swap (null:"
                                    " the key is absent)."},
    },
    required=("op", "key"),
    examples=[{"op": "get", "key": "cursor"},
              {"op": "set", "key": "cursor", "value": "{{ input.last_id }}"},
              {"op": "increment", "key": "runs", "value": 1, "ttl": "7d"}],
)

_WRITES = ("set", "delete", "increment", "cas")


def _number(text: str) -> int | float:
    """An increment given as text (a template renders to text): ValueError if no number,
    or none that can be stored."""
    number = float(text) if "." in text else int(text)
    if not _finite(number):
        raise ValueError(text)
    return number


def _finite(number: float) -> bool:
    """Infinity and NaN (YAML's .inf, text past 1e308) turned the stored counter into the
    string "Infinity" (what jsonb makes of PostgreSQL's numeric), for good."""
    return not isinstance(number, float) or math.isfinite(number)


class MemoryNode:
    name = "memory"
    # Writes to the database: its RUNNING row is durable before it runs.
    side_effects = True
    # Writes (not reads, see dry_safe) change the workflow's memory: a dry test run
    # records them instead.
    external_effects = True
    params_schema = PARAMS_SCHEMA

    def literal_problems(self, params: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
        """A ``set`` or ``cas`` without a value, or an ``increment`` by a literal that is
        no number, fails every run."""
        value = params.get("value")
        if params.get("op") in ("set", "cas") and "value" not in params:
            yield ("value",), f"is required for op {params['op']!r}"
            return
        if params.get("op") in ("set", "cas") and value is None:
            yield ("value",), NULL_VALUE
            return
        if params.get("op") != "increment" or "value" not in params:
            return
        if isinstance(value, str) and not is_template(value):
            try:
                _number(value)
            except ValueError:
                yield ("value",), f"must be a number for op 'increment', got {value[:60]!r}"
        elif isinstance(value, bool) or not isinstance(value, int | float | str):
            yield ("value",), "must be a number for op 'increment'"
        elif isinstance(value, float) and not _finite(value):
            yield ("value",), f"must be a finite number for op 'increment', got {value!r}"

    def dry_safe(self, params: JSON) -> bool:
        """A read changes nothing: a dry test run performs it."""
        return isinstance(params, dict) and params.get("op") == "get"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("op", "key", "value", "ttl", "expected"))
        op = checked.text("op")
        if op not in OPS:
            raise checked.invalid(f"parameter 'op': {op!r} is not one of {', '.join(OPS)}")
        key = checked.text("key")
        if not 1 <= len(key) <= 512:
            raise checked.invalid("parameter 'key' must be 1-512 characters")
        if unstorable(key) is not None:
            raise checked.invalid(f"parameter 'key' {unstorable(key)}")
        ttl = checked.duration("ttl") if "ttl" in checked else None
        if ctx.db is None or not ctx.workflow_id:
            raise NodeFailure("NO_DATABASE", "memory node: no database", retryable=False)
        async with ctx.db.acquire() as conn, conn.transaction():
            if op == "get":
                found, value = await memory.get(conn, ctx.workflow_id, key)
                return NodeResult(output={"found": found, "value": value})
            done = await memory.applied(conn, ctx.execution_id, ctx.node.id)
            if done is not None:
                return NodeResult(output=done)
            result = await self._write(op, checked, conn, ctx.workflow_id, key, ttl,
                                       ctx.max_output_bytes)
            await memory.record(conn, ctx.execution_id, ctx.node.id, result)
        return NodeResult(output=result)

    async def _write(self, op: str, checked: Params, conn: Any, workflow_id: str,
                     key: str, ttl: timedelta | None, max_output_bytes: int) -> JSON:
        if op == "set":
            if "value" not in checked:
                raise checked.invalid("parameter 'value' is required for op 'set'")
            value = _storable_value(checked)
            _check_size(value, max_output_bytes)
            found, _ = await memory.get(conn, workflow_id, key)
            await memory.set_value(conn, workflow_id, key, value, ttl)
            return {"found": found, "value": value}
        if op == "delete":
            found, old = await memory.delete(conn, workflow_id, key)
            return {"found": found, "value": old}
        if op == "increment":
            amount = checked.get("value", 1)
            if isinstance(amount, str):
                try:
                    amount = _number(amount)
                except ValueError:
                    raise checked.invalid(
                        f"parameter 'value' must be a number for op 'increment', got"
                        f" {amount!r}") from None
            if not isinstance(amount, int | float) or isinstance(amount, bool):
                raise checked.invalid("parameter 'value' must be a number for op 'increment'")
            if not _finite(amount):
                raise checked.invalid("parameter 'value' must be a finite number for op"
                                      f" 'increment', got {amount!r}")
            found, _ = await memory.get(conn, workflow_id, key)
            value, ok = await memory.increment(conn, workflow_id, key, amount, ttl)
            if not ok:
                raise NodeFailure("MEMORY_NOT_A_NUMBER",
                                  f"memory node: key {key!r} does not hold a number",
                                  retryable=False)
            return {"found": found, "value": value}
        if "value" not in checked:
            raise checked.invalid("parameter 'value' is required for op 'cas'")
        value = _storable_value(checked)
        _check_size(value, max_output_bytes)
        swapped, now = await memory.compare_and_set(
            conn, workflow_id, key, checked.get("expected"), value, ttl)
        return {"swapped": swapped, "value": now}


# A stored null would read back as an absent key (get's found, cas's expected: null).
NULL_VALUE = "is null: memory holds no null values (op 'delete' removes a key)"


def _check_size(value: JSON, cap: int) -> None:
    """A value the node's output (which holds it) could not carry: refused before the
    write. Written, the run failed OUTPUT_TOO_LARGE with the value already in memory, and
    every retry failed again."""
    # Measured as the runner measures the output, in the larger of the two wrappers.
    output = {"swapped": False, "value": value}
    size = len(json.dumps(output, ensure_ascii=False, default=str).encode())
    if size > cap:
        raise NodeFailure(
            "OUTPUT_TOO_LARGE",
            f"memory node: its output with this value would be {size} bytes, above"
            f" [executor] max_resume_output_bytes ({cap} bytes); nothing was written",
            retryable=False)


def _storable_value(checked: Params) -> JSON:
    """The value a set or cas writes; INVALID_PARAMS for null and for text PostgreSQL
    cannot hold (a NUL, a lone surrogate), which failed the write with the row's SQL."""
    value = checked.get("value")
    if value is None:
        raise checked.invalid(f"parameter 'value' {NULL_VALUE}")
    problem = storage_problem(value)
    if problem is not None:
        raise checked.invalid(f"parameter 'value': {problem}")
    return value
