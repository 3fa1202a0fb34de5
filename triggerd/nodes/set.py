"""``set``: build a JSON value. Params: ``value`` (required) -> output that value."""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params, params_schema

PARAMS_SCHEMA = params_schema(
    "set",
    "Build a JSON value; the node's output is that value.",
    {"value": {"description": "The output: any JSON value, with expressions rendered inside."}},
    required=["value"],
    examples=[{"value": {"day": "{{ input.day }}", "rows": "{{ input.rows | default(0) }}"}}],
)


class SetNode:
    name = "set"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return NodeResult(output=Params(self.name, params, ("value",)).require("value"))
