"""``respond``: the webhook's answer in ``sync`` mode (and the run's output).

Params ``status`` (default 200), ``headers`` (object of strings), ``body`` (any value) ->
output ``{"status", "headers", "body"}``.
"""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params, json_text


class RespondNode:
    name = "respond"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("status", "headers", "body"))
        status = checked.integer("status", 200)
        if not 100 <= status <= 599:
            raise checked.invalid(f"parameter 'status' must be an HTTP status, got {status}")
        headers = {
            str(name): json_text(value)
            for name, value in checked.mapping("headers").items()
            if value is not None
        }
        return NodeResult(
            output={"status": status, "headers": headers, "body": checked.get("body")}
        )
