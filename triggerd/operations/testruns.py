"""Test runs of unapplied definitions: the one implementation behind ``triggerd test`` and
``POST /api/v1/test-runs``.

A test run is an ordinary execution of a scratch copy of the workflow (status ``test``, key
``KEY~test-<id>``, one version, no triggers), marked ``test`` so that no executor's claim
takes it: the process that starts it runs it to its end with the executor's own run path
(:meth:`~triggerd.executor.service.Executor.run_one`), claiming it again after each park.
A ``wait`` node is waited out for real; an ``approval`` node is decided through the
operations layer (audited) with the decision given, and without one the run ends ERROR
``APPROVAL_UNDECIDED``. A dry run records ``{"would_call": params}`` for the nodes that act
outside the run instead of running them. The scratch copy never starts the workflow's
``on_failure`` workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import asyncpg

from triggerd.config import Settings
from triggerd.executor.service import Executor
from triggerd.inputs import check_input
from triggerd.model import JSON, WorkflowSpec
from triggerd.operations.actor import Actor
from triggerd.operations.approvals import DecisionRequest, decide
from triggerd.store import testruns as store
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.executions import (
    FINAL_STATUSES,
    ExecutionUpdate,
    NodeRow,
    close_open_nodes,
    get_execution,
    node_timeline,
)
from triggerd.store.records import ExecutionRecord, NodeExecutionRecord
from triggerd.store.workflows import version_document
from triggerd.testrun_rules import pick_target
from triggerd.views import node_json

APPROVAL_UNDECIDED: Final = "APPROVAL_UNDECIDED"
# How often a parked test run is looked at (a decision, a child's end or a cancel may move
# its wake-up time).
POLL_SECONDS: Final = 0.2
DECISION_NOTE: Final = "test run"


@dataclass(frozen=True, kw_only=True)
class TestRunRequest:
    __test__: ClassVar[bool] = False  # a request, not a test case (pytest collects Test*)

    specs: Sequence[WorkflowSpec]  # the loaded (and checked) definitions
    workflow: str
    input: dict[str, JSON] = field(default_factory=dict)
    trigger: str | None = None
    decision: str | None = None  # approved | rejected: every approval the run meets
    dry: bool = False


@dataclass(frozen=True, kw_only=True)
class TestRunResult:
    __test__: ClassVar[bool] = False

    execution: ExecutionRecord
    nodes: list[NodeExecutionRecord]
    dry: bool

    @property
    def ended(self) -> bool:
        return self.execution.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        e = self.execution
        return {
            "execution_id": e.id,
            "workflow": (e.workflow_key or "").split(store.SCRATCH_MARK)[0],
            "scratch_workflow": e.workflow_key,
            "status": e.status,
            "test": True,
            "dry": self.dry,
            "output": e.output,
            "error_code": e.error_code,
            "error_message": e.error_message,
            "nodes": [node_json(n) for n in self.nodes],
        }


def new_test_run(request: TestRunRequest) -> store.NewTestRun:
    """The rows of the test run (no I/O): raises :class:`UsageError` for an unknown
    workflow or trigger and :class:`InputInvalid` for an input the schema refuses."""
    target = pick_target(request.specs, request.workflow, request.trigger)
    spec = target.spec
    run_input = {**target.trigger_input, **request.input}
    check_input(spec.parameter_schema, run_input)
    version = version_document(spec)
    # A failed test run is no failure of the workflow: its error workflow is not started.
    version["env_config"].pop("on_failure", None)
    return store.NewTestRun(
        key=spec.key, tenant_id=spec.tenant_id, name=spec.name, description=spec.description,
        version=version, trigger_name=target.trigger_name, trigger_type=target.trigger_type,
        input=run_input, context={"test": {"dry": request.dry}}, id=store.new_run_id())


async def start_test_run(pool: asyncpg.Pool, request: TestRunRequest,
                         actor: Actor | None = None) -> str:
    """Check the request, then write the scratch workflow and the run; returns its id.
    With ``actor``, audited: a test run runs its nodes for real (http calls, child runs
    of applied workflows) unless it is dry."""
    run = new_test_run(request)
    async with pool.acquire() as conn, conn.transaction():
        await store.create_test_run(conn, run)
        if actor is not None:
            await record_audit(conn, AuditEntry(
                tenant_id=run.tenant_id, actor=actor.name, action="test-run",
                target_kind="execution", target=run.id, target_id=run.id,
                detail={"workflow": run.key, "trigger": run.trigger_name,
                        "dry": request.dry}))
    return run.id


async def drive_test_run(
    pool: asyncpg.Pool,
    executor: Executor,
    actor: Actor,
    execution_id: str,
    *,
    decision: str | None,
    observe: Callable[[Sequence[NodeRow]], None] | None = None,
) -> None:
    """Run the test run to its end: claim it, run it, and after each park wait for its
    wake-up (deciding an approval it waits on) and claim it again."""
    while True:
        async with pool.acquire() as conn:
            claimed = await store.claim_test_run(conn, execution_id, executor.owner,
                                                 executor.lease)
        if claimed is None:
            return  # ended meanwhile (canceled)
        update = await executor.run_one(claimed, observe)
        if update is None or update.status != "WAITING":
            # Children it started without waiting for them run now too, so the test's
            # effects are complete when it returns.
            await _run_children(pool, executor, execution_id)
            return
        if not await _await_wake_up(pool, executor, actor, execution_id, decision):
            return


async def _await_wake_up(pool: asyncpg.Pool, executor: Executor, actor: Actor,
                         execution_id: str, decision: str | None) -> bool:
    """Wait until the parked run may go on (True), or it ended (False)."""
    while True:
        async with pool.acquire() as conn:
            state = await store.run_state(conn, execution_id)
            node = await store.waiting_approval_node(conn, execution_id)
        if state is None or state.status in FINAL_STATUSES:
            return False
        if node is not None and state.status == "WAITING" and (
                state.resume_at is None or state.resume_at > state.now):
            if decision is None:
                await _fail_undecided(pool, executor, execution_id, node)
                return False
            # Through the operations layer, as an operator's decision (audited).
            await decide(pool, actor, execution_id,
                         DecisionRequest(decision=decision, note=DECISION_NOTE))
            return True
        if state.status == "WAITING" and state.resume_at is not None:
            left = (state.resume_at - state.now).total_seconds()
            if left <= 0:
                return True
            if await _run_children(pool, executor, execution_id):
                continue  # one ended or parked: the parent may have been woken
            async with pool.acquire() as conn:
                child = await store.undecided_descendant(conn, execution_id)
            if child is not None:
                # "Every approval the run meets": its children's too.
                child_id, child_node = child
                if decision is None:
                    await _fail_undecided(pool, executor, execution_id, child_node,
                                          child=child_id)
                    return False
                await decide(pool, actor, child_id,
                             DecisionRequest(decision=decision, note=DECISION_NOTE))
                continue
            await asyncio.sleep(min(left, POLL_SECONDS))
        else:
            await asyncio.sleep(POLL_SECONDS)


async def _run_children(pool: asyncpg.Pool, executor: Executor, execution_id: str) -> bool:
    """Run the test run's children that can run now (a workflow node's child run waits for
    an executor: without a daemon none would take it and the test waited for ever); True
    when one ran."""
    ran = False
    while True:
        async with pool.acquire() as conn:
            child = await store.claim_descendant(conn, execution_id, executor.owner,
                                                 executor.lease)
        if child is None:
            return ran
        await executor.run_one(child)
        ran = True


async def _fail_undecided(pool: asyncpg.Pool, executor: Executor, execution_id: str,
                          node: str, *, child: str | None = None) -> None:
    """End the test run ERROR APPROVAL_UNDECIDED: it (or its ``child`` run) waits on
    approval ``node`` and no decision was given. A child, an ordinary run, keeps waiting
    for an operator's decision."""
    async with pool.acquire() as conn:
        claimed = await store.claim_test_run(conn, execution_id, executor.owner,
                                             executor.lease)
    if claimed is None:
        return
    where = "" if child is None else f" of its child run {child}"
    message = (f"approval node {node!r}{where} waits for a decision: a test run decides it"
               " only when told to (--approve or --reject; \"decision\" in the API)")
    written = await executor.record_final(ExecutionUpdate(
        id=execution_id, status="ERROR", error_code=APPROVAL_UNDECIDED, error_message=message,
        failed_node=None if child is not None else node, drop_resume_copies=True))
    if execution_id in written:
        # Its parked node row ends with it (it stayed WAITING under an ended run).
        async with pool.acquire() as conn:
            await close_open_nodes(conn, execution_id, APPROVAL_UNDECIDED, message)


async def finished_test_run(pool: asyncpg.Pool, execution_id: str, *, dry: bool
                          ) -> TestRunResult:
    async with pool.acquire() as conn:
        execution = await get_execution(conn, execution_id)
        nodes = await node_timeline(conn, execution_id)
    return TestRunResult(execution=execution, nodes=nodes, dry=dry)


async def run_test(
    pool: asyncpg.Pool,
    settings: Settings,
    actor: Actor,
    request: TestRunRequest,
    *,
    observe: Callable[[Sequence[NodeRow]], None] | None = None,
    own_ports: frozenset[int] = frozenset(),
    started: Callable[[str], None] | None = None,
) -> TestRunResult:
    """Start the test run and run it to its end in this task; ``started`` is told its id
    as soon as it is written."""
    execution_id = await start_test_run(pool, request, actor)
    if started is not None:
        started(execution_id)
    # The daemon's listener is off limits to http nodes ([egress] allow_self), test runs'
    # too: the daemon passes the port it took, the CLI has the configured one.
    own_ports = own_ports or frozenset({settings.http.port})
    executor = Executor(pool=pool, dsn="", settings=settings, own_ports=own_ports)
    await executor.open_single()
    try:
        await drive_test_run(pool, executor, actor, execution_id, decision=request.decision,
                             observe=observe)
    finally:
        await executor.close_single()
    return await finished_test_run(pool, execution_id, dry=request.dry)
