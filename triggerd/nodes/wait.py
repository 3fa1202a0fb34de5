"""``wait``: park the run. Params: ``duration`` (e.g. ``"10m"``) or ``until`` (an ISO-8601
instant with an offset); exactly one.

The node returns ``NodeResult(wait_until=...)`` computed from ``ctx.now``; the executor parks
the run as WAITING until then and records the node's SUCCESS when it resumes (running the
node again would start a new wait). An instant not after ``ctx.now`` does not wait.
Output: ``{"until": "<ISO-8601 instant>"}``.
"""

from __future__ import annotations

from datetime import datetime

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params


class WaitNode:
    name = "wait"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("duration", "until"))
        if ("duration" in checked) == ("until" in checked):
            raise checked.invalid("give exactly one of 'duration' and 'until'")
        if "duration" in checked:
            until = ctx.now + checked.duration("duration")
        else:
            text = checked.text("until")
            try:
                until = datetime.fromisoformat(text.strip())
            except ValueError as exc:
                raise checked.invalid(
                    f"parameter 'until': {text!r} is not an ISO-8601 instant"
                ) from exc
            if until.tzinfo is None:
                raise checked.invalid(
                    f"parameter 'until': {text!r} has no UTC offset (e.g. add 'Z' or '+02:00')"
                )
        output = {"until": until.isoformat()}
        return NodeResult(output=output, wait_until=until if until > ctx.now else None)
