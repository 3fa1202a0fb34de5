"""``wait``: park the run. Params: ``duration`` (e.g. ``"10m"``) or ``until`` (an ISO-8601
instant with an offset); exactly one.

The node returns ``NodeResult(wait_until=...)`` computed from ``ctx.now``; the executor parks
the run as WAITING until then and records the node's SUCCESS when it resumes (running the
node again would start a new wait). An instant not after the attempt's start by the clock
(``ctx.started``, else ``ctx.now``) does not wait: a wait cut by a dead process and taken
up after its end goes on at once.
Output: ``{"until": "<ISO-8601 instant>"}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from triggerd.expressions import is_template
from triggerd.model import JSON
from triggerd.nodes.base import (
    ERROR_MESSAGE,
    NodeContext,
    NodeResult,
    Params,
    duration_param,
    or_template,
    params_schema,
)

# What datetime.fromisoformat reads, with a time and a UTC offset (the node refuses an
# instant without one); the node's parse decides the rest.
_UNTIL_PATTERN = (
    r"^\s*\d{4}-?(?:\d{2}-?\d{2}|W\d{2}(?:-?\d)?).\d{2}.*"
    r"(?:Z|[+-]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?)\s*$"
)

PARAMS_SCHEMA = params_schema(
    "wait",
    "Park the run (WAITING, no worker held) for a while or until an instant, then go on;"
    ' the output is {"until": "<ISO-8601 instant>"}.',
    {
        "duration": duration_param("How long to wait, e.g. '10m' or '1h30m'."),
        "until": or_template(
            "The instant to wait for: ISO-8601 with a UTC offset, e.g."
            " '2027-03-01T09:00:00+01:00' or '2027-03-01T08:00:00Z'. An instant already"
            " past does not wait.",
            {"type": "string", "pattern": _UNTIL_PATTERN},
            error="{value} is not an ISO-8601 instant with a UTC offset, e.g."
            " '2027-03-01T09:00:00+01:00' or '2027-03-01T08:00:00Z'",
        ),
    },
    extra={
        "oneOf": [{"required": ["duration"]}, {"required": ["until"]}],
        ERROR_MESSAGE: {"oneOf": "give exactly one of 'duration' and 'until'"},
    },
    examples=[{"duration": "10m"}, {"until": "{{ input.remind_at }}"}],
)


def until_problem(text: str) -> tuple[datetime | None, str | None]:
    """``until`` as an instant, or why it is none (the message names the parameter)."""
    try:
        until = datetime.fromisoformat(text.strip())
    except ValueError:
        return None, f"parameter 'until': {text!r} is not an ISO-8601 instant"
    if until.tzinfo is None:
        return None, f"parameter 'until': {text!r} has no UTC offset (e.g. add 'Z' or '+02:00')"
    try:  # 9999-12-31T23:59:59-05:00 is past the last instant that can be stored
        until.astimezone(UTC)
    except OverflowError:
        return None, f"parameter 'until': {text!r} is out of range (years 1-9999 in UTC)"
    return until, None


class WaitNode:
    name = "wait"
    # Parks the run: its row must be durable before the run is handed back.
    side_effects = True
    external_effects = False
    params_schema = PARAMS_SCHEMA

    def literal_problems(self, params: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
        """A literal ``until`` that is no instant (a 13th month, past year 9999 in UTC)
        fails every run; the schema's pattern only sees its shape."""
        text = params.get("until")
        if isinstance(text, str) and not is_template(text):
            _, problem = until_problem(text)
            if problem is not None:
                yield ("until",), problem.removeprefix("parameter 'until': ")

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("duration", "until"))
        if ("duration" in checked) == ("until" in checked):
            raise checked.invalid("give exactly one of 'duration' and 'until'")
        if "duration" in checked:
            until = ctx.now + checked.duration("duration")
        else:
            parsed, problem = until_problem(checked.text("until"))
            if parsed is None:
                raise checked.invalid(problem or "parameter 'until' is not an instant")
            until = parsed
        output = {"until": until.isoformat()}
        clock = ctx.started or ctx.now
        return NodeResult(output=output, wait_until=until if until > clock else None)
