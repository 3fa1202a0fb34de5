"""``noop``: does nothing; its output is its (rendered) params, or None when it has none."""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult


class NoopNode:
    name = "noop"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return NodeResult(output=params or None)
