"""``set``: build a JSON value. Params: ``value`` (required) -> output that value."""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params


class SetNode:
    name = "set"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return NodeResult(output=Params(self.name, params, ("value",)).require("value"))
