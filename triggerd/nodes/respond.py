"""``respond``: the webhook's answer in ``sync`` mode (and the run's output).

Params ``status`` (default 200), ``headers`` (object of strings), ``body`` (any value) ->
output ``{"status", "headers", "body"}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from triggerd.expressions import is_template
from triggerd.model import JSON
from triggerd.nodes.base import (
    ERROR_MESSAGE,
    NodeContext,
    NodeResult,
    Params,
    json_text,
    or_template,
    params_schema,
    template,
)
from triggerd.nodes.http import header_problem

PARAMS_SCHEMA = params_schema(
    "respond",
    "The webhook's answer in sync mode, and the run's output:"
    ' {"status", "headers", "body"}.',
    {
        "status": {
            "description": "The HTTP status, 200-599 (a number, or its digits as text;"
            " 1xx are no final answer); default 200.",
            "anyOf": [
                {"type": "integer", "minimum": 200, "maximum": 599},
                {"type": "string", "pattern": r"^\s*0*[2-5]\d{2}\s*$"},
                template(),
            ],
            "default": 200,
            ERROR_MESSAGE: "expected an HTTP status (200-599), got {value}",
        },
        "headers": or_template(
            "Response headers: values as text (other values as JSON text); null values are"
            " left out.",
            {"type": ["object", "null"]},
        ),
        "body": {"description": "The response body: any JSON value."},
    },
    examples=[
        {
            "status": 201,
            "headers": {"Location": "/orders/{{ input.order_id }}"},
            "body": {"id": "{{ input.order_id }}", "accepted": True},
        }
    ],
)


class RespondNode:
    name = "respond"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    def literal_problems(self, params: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
        """A literal header a run would refuse (a line break, a name that is none)."""
        headers = params.get("headers")
        for name, value in (headers.items() if isinstance(headers, dict) else ()):
            if not isinstance(name, str) or is_template(name) or value is None:
                continue
            text = "" if isinstance(value, str) and is_template(value) else json_text(value)
            problem = header_problem(name, text)
            if problem is not None:
                yield ("headers", name), problem

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("status", "headers", "body"))
        status = checked.integer("status", 200)
        if not 200 <= status <= 599:  # a 1xx is no final answer (a sync webhook sent 200)
            raise checked.invalid(
                f"parameter 'status' must be an HTTP status of 200-599, got {status}")
        headers = {
            str(name): json_text(value)
            for name, value in checked.mapping("headers").items()
            if value is not None
        }
        for name, text in headers.items():
            # As the http node: the answer would have left the header out without a word.
            problem = header_problem(name, text)
            if problem is not None:
                raise checked.invalid(f"parameter 'headers': {problem}")
        return NodeResult(
            output={"status": status, "headers": headers, "body": checked.get("body")}
        )
