"""``log``: params ``message`` (text, or any value, written as JSON) and ``level`` (debug,
info, warning, error; default info). Logs to ``triggerd.nodes.log`` with the execution and
node ids (a message over 16 KiB is logged cut, with its length); output
``{"message": message}``, whole."""

from __future__ import annotations

import json
import logging
from typing import Final

from triggerd.model import JSON
from triggerd.nodes.approval import mask_resume_links
from triggerd.nodes.base import (
    NodeContext,
    NodeResult,
    Params,
    json_text,
    or_template,
    params_schema,
)

logger = logging.getLogger("triggerd.nodes.log")

# The logged message at most this many bytes as the JSON line writes it (UTF-8, control
# characters escaped; the node's output keeps it whole): journald cuts a line longer than
# its LineMax (48 KiB by default) into several entries, none of them JSON.
MAX_LOGGED_BYTES: Final = 16 * 1024


def _line_bytes(text: str) -> int:
    """The bytes ``text`` takes in a JSON line (without its quotes)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def logged_text(message: str) -> str:
    """``message`` as its log line holds it: the start of a long one, with its length."""
    if len(message) <= MAX_LOGGED_BYTES // 6 or _line_bytes(message) <= MAX_LOGGED_BYTES:
        return message  # (a character is at most 6 bytes there: \u0001)
    cut = message[:MAX_LOGGED_BYTES]
    while _line_bytes(cut) > MAX_LOGGED_BYTES:
        cut = cut[: len(cut) * 3 // 4]
    return f"{cut}… (cut: {len(message):,} characters in all)"


LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


PARAMS_SCHEMA = params_schema(
    "log",
    "Write one line to the daemon's log (logger triggerd.nodes.log) with the execution and"
    ' node ids; the output is {"message": message}.',
    {
        "message": {
            "description": "What to log: text as it is, any other value as JSON text.",
        },
        "level": or_template(
            f"One of {', '.join(LEVELS)} (any case); default info.",
            {
                "type": "string",
                "pattern": rf"^\s*(?:{'|'.join(_any_case(level) for level in LEVELS)})\s*$",
            },
            default="info",
            error="{value} is not a log level: use debug, info, warning or error",
        ),
    },
    required=["message"],
    examples=[
        {"message": "report for {{ input.day }}: {{ nodes.build.output.rows }} rows"},
        {"message": {"order": "{{ input.order_id }}"}, "level": "warning"},
    ],
)


class LogNode:
    name = "log"
    side_effects = False
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("message", "level"))
        message = json_text(checked.require("message"))
        level = checked.text("level", "info").strip().lower()
        if level not in LEVELS:
            raise checked.invalid(
                f"parameter 'level' must be one of {', '.join(LEVELS)}, got {level!r}"
            )
        logger.log(
            LEVELS[level],
            "%s",
            # The run's stored rows mask its resume link (a decision); so does its log line.
            logged_text(mask_resume_links(message)),
            extra={
                "event": "workflow_log",
                "execution_id": ctx.execution_id,
                "node_id": ctx.node.id,
            },
        )
        return NodeResult(output={"message": message})
