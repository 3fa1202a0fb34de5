"""``switch``: params ``value`` and ``cases`` (a list of values).

The first case whose label equals the value's label matches (labels per
:func:`triggerd.walker.branch_label`: strings as they are, other values as JSON text, so the
case ``"200"`` matches the value ``200``). Branch: the matched case's label, else
``"default"``. Output: ``{"value": value, "case": branch}``.
"""

from __future__ import annotations

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeResult, Params, or_template, params_schema
from triggerd.walker import DEFAULT_BRANCH, branch_label

PARAMS_SCHEMA = params_schema(
    "switch",
    "Branch on a value: the edges leaving the node take the first case equal to the value,"
    f" else {DEFAULT_BRANCH!r}.",
    {
        "value": {"description": "The value to match, usually an expression."},
        "cases": or_template(
            "The branch labels, in order. Strings match as they are, other values by their"
            f" JSON text (the case \"200\" matches the value 200). {DEFAULT_BRANCH!r} names"
            " the fallback and cannot be a case.",
            {"type": "array", "items": {"not": {"const": DEFAULT_BRANCH}}},
        ),
    },
    required=["value", "cases"],
    examples=[{"value": "{{ input.action }}", "cases": ["opened", "closed"]}],
)


class SwitchNode:
    name = "switch"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("value", "cases"))
        value = checked.require("value")
        cases = checked.require("cases")
        if not isinstance(cases, list):
            raise checked.invalid("parameter 'cases' must be a list")
        labels = [branch_label(case) for case in cases]
        if DEFAULT_BRANCH in labels:
            raise checked.invalid(f"{DEFAULT_BRANCH!r} cannot be a case: it names the fallback")
        wanted = branch_label(value)
        branch = wanted if wanted in labels else DEFAULT_BRANCH
        return NodeResult(output={"value": value, "case": branch}, branch=branch)
