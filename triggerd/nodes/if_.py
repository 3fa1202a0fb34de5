"""``if``: params ``condition`` -> output ``{"result": bool}``, branch ``"true"``/``"false"``.

The condition's truth follows :func:`triggerd.expressions.evaluate_condition`, so both a
native value (``"{{ x > 1 }}"``) and text (``"false"``, ``""``, ``"0"``) work.
"""

from __future__ import annotations

from triggerd.expressions import evaluate_condition
from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params, params_schema

PARAMS_SCHEMA = params_schema(
    "if",
    'Branch on a condition: the edges leaving the node take "true" or "false".',
    {
        "condition": {
            "description": 'Any value, usually an expression. False: false, null, 0, an empty'
            ' list or object, and the strings "", "false", "0", "no", "off", "null" and'
            ' "none" (any case, surrounding spaces ignored); anything else is true.'
        }
    },
    required=["condition"],
    examples=[{"condition": "{{ input.total > 100 }}"}],
)


class IfNode:
    name = "if"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        result = evaluate_condition(Params(self.name, params, ("condition",)).require("condition"))
        return NodeResult(output={"result": result}, branch="true" if result else "false")
