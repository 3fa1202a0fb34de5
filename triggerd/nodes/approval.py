"""``approval``: wait for a person (or another system) to decide. Params: ``message``
(shown with the request) and ``timeout`` (optional: without it the run waits until
decided or canceled).

The run parks as WAITING (no worker held). A decision arrives through ``POST
{{ execution.resume_url }}`` with ``{"decision": "approved" | "rejected", "note",
"input"}`` or ``triggerd executions resume ID --approve | --reject``; the run is then
claimed again and this node, run again, finds it. Output: ``{"decision", "note", "by",
"input"}``, and the decision is the node's branch, so edges can take ``when: approved``,
``rejected`` or ``timeout``. Past the deadline (measured from the first time the node ran)
the decision is ``timeout``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from triggerd.model import JSON
from triggerd.nodes.base import (
    NodeContext,
    NodeFailure,
    NodeResult,
    Params,
    duration_param,
    or_template,
    params_schema,
)
from triggerd.store import approvals

BRANCHES = ("approved", "rejected", "timeout")
# Where resume tokens are posted: [http] public_url + RESUME_PATH + "/" + token.
RESUME_PATH = "/hooks/_resume"
# A resume link in text (a log node's message): its token is masked as a secret would be.
RESUME_LINK = re.compile(re.escape(RESUME_PATH) + r"/[A-Za-z0-9_-]+")


# A token inside any resume link, also percent-encoded (a link sent as a query value): the
# redactor masks it, whichever of the run's links it is.
RESUME_LINK_TOKENS = (
    "(?<=" + re.escape(RESUME_PATH + "/") + ")[A-Za-z0-9_-]+",
    "(?i:(?<=%2Fhooks%2F_resume%2F))[A-Za-z0-9_-]+",
)


def resume_token(url: str) -> str:
    """The token of a resume link."""
    return url.rsplit("/", 1)[-1]


def mask_resume_links(text: str) -> str:
    return RESUME_LINK.sub(RESUME_PATH + "/***", text)
# Without a timeout the run waits this long before it is looked at again (a decision wakes
# it at once whatever this says).
NO_TIMEOUT_RECHECK = timedelta(days=1)

PARAMS_SCHEMA = params_schema(
    "approval",
    "Park the run until a decision arrives (execution.resume_url, or triggerd executions"
    ' resume ID --approve | --reject); the output is {"decision": "approved" | "rejected" |'
    ' "timeout", "note", "by", "input"} and the decision is the branch edges take.',
    {
        "message": or_template("What is asked (stored with the request).",
                               {"type": "string", "maxLength": 2000}),
        "timeout": duration_param(
            "How long to wait for a decision, from the first time the node runs; then the"
            " decision is 'timeout'. Default: no limit."),
    },
    examples=[{"message": "Ship release {{ input.version }}?", "timeout": "24h"}],
)


class ApprovalNode:
    name = "approval"
    # Parks the run and writes its request: its row must be durable before it runs.
    side_effects = True
    external_effects = False
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("message", "timeout"))
        message = checked.text("message", "") or None
        timeout = checked.duration("timeout") if "timeout" in checked else None
        if ctx.db is None:
            raise NodeFailure("NO_DATABASE", "approval node: no database to wait on",
                              retryable=False)
        async with ctx.db.acquire() as conn, conn.transaction():
            deadline = await approvals.request(
                conn, ctx.execution_id, ctx.node.id, message=message,
                expires_at=None if timeout is None else ctx.now + timeout)
            decided = await approvals.consume(conn, ctx.execution_id, ctx.node.id)
        if decided is not None:
            output: JSON = {"decision": decided.decision, "note": decided.note,
                            "by": decided.by, "input": decided.input}
            return NodeResult(output=output, branch=decided.decision)
        if deadline is not None and ctx.now >= deadline:
            return NodeResult(output={"decision": "timeout", "note": None, "by": None,
                                      "input": None}, branch="timeout")
        until: datetime = deadline if deadline is not None else ctx.now + NO_TIMEOUT_RECHECK
        return NodeResult(output={"message": message, "expires_at":
                                  None if deadline is None else deadline.isoformat()},
                          wait_until=until)
