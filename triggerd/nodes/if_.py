"""``if``: params ``condition`` -> output ``{"result": bool}``, branch ``"true"``/``"false"``.

The condition's truth follows :func:`triggerd.expressions.evaluate_condition`, so both a
native value (``"{{ x > 1 }}"``) and text (``"false"``, ``""``, ``"0"``) work.
"""

from __future__ import annotations

from triggerd.expressions import evaluate_condition
from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params


class IfNode:
    name = "if"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        result = evaluate_condition(Params(self.name, params, ("condition",)).require("condition"))
        return NodeResult(output={"result": result}, branch="true" if result else "false")
