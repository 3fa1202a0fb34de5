"""``fail``: params ``code`` (default ``FAILED``) and ``message`` -> fails the node.

Like any failure it is retried as the node's retry policy says (``retry_on`` can name the
code), and a failure edge handles it.
"""

from __future__ import annotations

from typing import NoReturn

from triggerd.model import JSON
from triggerd.nodes.base import NodeContext, NodeFailure, Params, json_text

DEFAULT_CODE = "FAILED"


class FailNode:
    name = "fail"

    async def run(self, params: JSON, ctx: NodeContext) -> NoReturn:
        checked = Params(self.name, params, ("code", "message"))
        code = checked.text("code", DEFAULT_CODE)
        if not code:
            raise checked.invalid("parameter 'code' must not be empty")
        message = json_text(checked.get("message", f"node {ctx.node.id!r} failed"))
        raise NodeFailure(code, message)
