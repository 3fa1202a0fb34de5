"""``workflow``: start another workflow's run (a child). Params: ``workflow`` (its key),
``version`` (a published version; default the latest), ``input`` (an object), ``wait``
(default true).

With ``wait`` the parent parks as WAITING (no worker held) until the child ends: then the
node's output is the child's output, and a child that ended ERROR or CANCELED fails the
node (``CHILD_FAILED``). Without it the output is ``{"execution_id": <child>}`` at once.
The child is started once per parent run and node (a node run again after a crash finds
it); it names its parent (``parent_execution_id``), canceling the parent cancels it, and
runs nest at most ``[executor] max_workflow_depth`` deep.
"""

from __future__ import annotations

from datetime import timedelta

from triggerd.errors import Conflict, NotFound
from triggerd.model import JSON
from triggerd.nodes.base import (
    NodeContext,
    NodeFailure,
    NodeResult,
    Params,
    or_template,
    params_schema,
)
from triggerd.store import subworkflows

# A parent waiting for a child is woken when the child ends; it also looks again after
# this long (in case a wake-up was lost with its process).
RECHECK = timedelta(hours=1)

MAX_VERSION = 2_147_483_647  # versions are int4, as a trigger's `version`

PARAMS_SCHEMA = params_schema(
    "workflow",
    "Start a run of another workflow (a child) with an input; wait for its output (the"
    ' default) or go on at once with {"execution_id"}.',
    {
        "workflow": or_template("The key of the workflow to run.",
                                {"type": "string", "minLength": 1, "maxLength": 200}),
        "version": or_template("A published version to run (default: the latest).",
                               {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}),
        "input": or_template("The child's input (an object; null: an empty one).",
                             {"type": ["object", "null"]}),
        "wait": or_template("Wait for the child's end (default true).", {"type": "boolean"}),
    },
    required=("workflow",),
    examples=[{"workflow": "send-invoice", "input": {"order": "{{ input.order }}"}},
              {"workflow": "audit-trail", "wait": False}],
)


class WorkflowNode:
    name = "workflow"
    # Starts a run: its RUNNING row is durable before it does.
    side_effects = True
    # Starts another workflow's run: a dry test run records it instead.
    external_effects = True
    params_schema = PARAMS_SCHEMA

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, ("workflow", "version", "input", "wait"))
        key = checked.text("workflow")
        version = checked.integer("version", 0) if "version" in checked else None
        if version is not None and not 1 <= version <= MAX_VERSION:
            # A rendered one: past int32 the database refused the statement (a crash); 0
            # is no version (check refuses it too: it ran the latest one).
            raise checked.invalid(f"parameter 'version' must be 1-{MAX_VERSION}, got {version}")
        run_input = checked.mapping("input")
        wait = checked.get("wait", True)
        if not isinstance(wait, bool):
            raise checked.invalid("parameter 'wait' must be true or false")
        if ctx.db is None:
            raise NodeFailure("NO_DATABASE", "workflow node: no database", retryable=False)
        try:
            async with ctx.db.acquire() as conn, conn.transaction():
                child = await subworkflows.start_child(
                    conn, parent_id=ctx.execution_id, node_id=ctx.node.id, key=key,
                    version=version, run_input=run_input,
                    max_depth=ctx.max_workflow_depth)
        except (NotFound, Conflict) as exc:
            raise NodeFailure("CHILD_NOT_STARTED", f"workflow node: {exc.message}",
                              retryable=False) from None
        if not wait:
            return NodeResult(output={"execution_id": child.id})
        if child.status == "SUCCESS":
            if _cut(child.output):
                # The parent gets the child's stored output, which was cut at the limit:
                # its nodes would read the marker's keys as if they were the output's.
                assert isinstance(child.output, dict)
                raise NodeFailure(
                    "CHILD_OUTPUT_TRUNCATED",
                    f"workflow node: the output of the run {child.id} of {key}"
                    f" ({child.output['size_bytes']} bytes) was cut at [executor]"
                    f" max_output_bytes ({child.output['limit_bytes']}); a parent gets the"
                    " child's stored output: return less from the child, or raise the limit",
                    retryable=False)
            return NodeResult(output=child.output)
        if child.status in ("ERROR", "CANCELED"):
            raise NodeFailure(
                "CHILD_FAILED",
                f"workflow node: the run {child.id} of {key} ended {child.status}"
                + (f" ({child.error_code}: {child.error_message})" if child.error_code else ""),
                retryable=False)
        return NodeResult(output={"execution_id": child.id}, wait_until=ctx.now + RECHECK)


def _cut(output: JSON) -> bool:
    """Whether a stored output is the marker of one cut at max_output_bytes (see
    triggerd.executor.runner.truncate_output)."""
    return (isinstance(output, dict) and output.get("_truncated") is True
            and {"size_bytes", "limit_bytes"} <= set(output))
