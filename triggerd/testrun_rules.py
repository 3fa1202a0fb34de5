"""Test runs of unapplied definitions (``triggerd test``, ``POST /api/v1/test-runs``): the
pure parts. Which workflow and trigger of the loaded definitions run, what a dry run records
instead of a side effect, and the timeline line of a node. The I/O is in
:mod:`triggerd.operations.testruns`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from triggerd.errors import UsageError
from triggerd.model import JSON, TriggerType, WorkflowSpec
from triggerd.redaction import CREDENTIAL_WORDS, MASK

# Parameter names that carry credentials (a header, a query parameter, a body field):
# masked in a dry run's "would call" record, whatever their value. Secrets of the
# workflow are masked everywhere anyway; these may be literal values. A signature the
# node would send is one too.
_CREDENTIAL = re.compile(CREDENTIAL_WORDS + "|signature", re.IGNORECASE)
DECISIONS: Final = ("approved", "rejected")
# The trigger type of a run with no --trigger: as `triggers fire` would start it.
DEFAULT_TRIGGER_TYPE: Final = "manual"


def _sent_credential(name: str) -> bool:
    return _CREDENTIAL.search(name) is not None


def would_call(params: JSON) -> JSON:
    """What a dry run records for a node it does not run: its rendered params, every
    value under a credential-like name masked."""
    if isinstance(params, dict):
        return {k: MASK if _sent_credential(str(k)) and v is not None else would_call(v)
                for k, v in params.items()}
    if isinstance(params, list | tuple):
        return [would_call(v) for v in params]
    return params


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a test run runs: the workflow of the definitions and how it was triggered."""

    spec: WorkflowSpec
    trigger_name: str | None
    trigger_type: str
    # The trigger's fixed input (its `input:` in the file), under the run's --input.
    trigger_input: dict[str, JSON]


def pick_target(specs: Sequence[WorkflowSpec], key: str, trigger: str | None) -> Target:
    """The workflow ``key`` of the loaded definitions and its trigger ``trigger`` (none: a
    manual run); :class:`UsageError` naming what the file has instead."""
    found = [s for s in specs if s.key == key]
    if not found:
        keys = ", ".join(sorted(s.key for s in specs)) or "none"
        raise UsageError(f"no workflow {key!r} in the definitions"
                         f" (they have: {keys})")
    spec = found[0]
    if trigger is None:
        return Target(spec=spec, trigger_name=None, trigger_type=DEFAULT_TRIGGER_TYPE,
                      trigger_input={})
    for t in spec.triggers:
        if t.name == trigger:
            return Target(spec=spec, trigger_name=t.name, trigger_type=TriggerType(t.type).value,
                          trigger_input=dict(t.input))
    names = ", ".join(sorted(t.name for t in spec.triggers)) or "none"
    raise UsageError(f"workflow {key!r} has no trigger {trigger!r}"
                     f" (it has: {names})")


def decision_of(approve: bool, reject: bool) -> str | None:
    if approve and reject:
        raise UsageError("--approve and --reject exclude each other")
    return "approved" if approve else "rejected" if reject else None


def timeline_line(node: dict[str, Any]) -> str:
    """One node of the timeline as it is printed: key, type, status, duration, error."""
    ms = node.get("execution_time_ms")
    took = "-" if ms is None else f"{ms:.1f}ms"
    line = f"{node['node_id']:<20} {node['node_type']:<10} {node['status']:<8} {took:>10}"
    if node.get("error_code"):
        line += f"  {node['error_code']}: {node.get('error_message') or '-'}"
    output = node.get("output")
    if isinstance(output, dict) and "would_call" in output:
        line += "  (dry: not run)"
    return line.rstrip()
