"""``noop``: does nothing; its output is its (rendered) params, or None when it has none."""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, params_schema

PARAMS_SCHEMA = params_schema(
    "noop",
    "Does nothing; its output is its rendered params (any keys), or null when it has none.",
    {},
    closed=False,
    examples=[{}, {"note": "joined {{ input.branch }}"}],
)


class NoopNode:
    name = "noop"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return NodeResult(output=params or None)
