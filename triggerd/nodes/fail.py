"""``fail``: params ``code`` (default ``FAILED``) and ``message`` -> fails the node.

Like any failure it is retried as the node's retry policy says (``retry_on`` can name the
code), and a failure edge handles it.
"""

from __future__ import annotations

from typing import NoReturn

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeFailure, Params, json_text, params_schema

DEFAULT_CODE = "FAILED"

PARAMS_SCHEMA = params_schema(
    "fail",
    "Fail the node with a code and a message; retried as its retry policy says and handled"
    " by a failure edge like any failure.",
    {
        "code": {
            "description": f"The failure's code, which retry_on can name; default {DEFAULT_CODE}.",
            "type": "string",
            "minLength": 1,
            "pattern": "\\S",  # a blank code names nothing retry_on could match
            "default": DEFAULT_CODE,
        },
        "message": {
            "description": "The failure's message: text as it is, any other value as JSON"
            " text; default \"node '<id>' failed\".",
        },
    },
    examples=[{"code": "TOO_BIG", "message": "{{ input.rows }} rows is more than we handle"}],
)


class FailNode:
    name = "fail"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NoReturn:
        checked = Params(self.name, params, ("code", "message"))
        code = checked.text("code", DEFAULT_CODE)
        if not code.strip():
            raise checked.invalid("parameter 'code' must not be empty or blank")
        message = json_text(checked.get("message", f"node {ctx.node.id!r} failed"))
        raise NodeFailure(code, message)
