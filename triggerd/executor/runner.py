"""Running one claimed execution: version, secrets and input first, then the graph walk,
with every node's row recorded and crash recovery from the rows already written.

At-least-once for nodes: a node that finished is never run again (its row is read back);
a node that was running when its process died runs again as a new attempt. Nodes without
side effects (set, if, switch, noop, log, fail, respond) are recorded when they finish, in
the same commit as the next durable point; the others (http, wait, third-party types) get a
RUNNING row before they start, so the retry is visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from triggerd.definitions import graph_from_json
from triggerd.errors import ResumeCopyError, SecretError
from triggerd.executor.resume import RESUME_COPY_MISSING, ResumeKey
from triggerd.expressions import (
    ExpressionError,
    build_context,
    has_template,
    render,
    secret_renderings,
)
from triggerd.inputs import unresolvable
from triggerd.logs import SECRETS_FILTER
from triggerd.model import JSON, Edge, Graph, NodeStatus
from triggerd.nodes.approval import RESUME_LINK_TOKENS, resume_token
from triggerd.nodes.base import NodeContext, NodeFailure, NodeResult, retry_delay, should_retry
from triggerd.nodes.registry import (
    buffered_node_types,
    default_registry,
    run_node,
    stubbed_when_dry,
)
from triggerd.quickcheck import ValidityCheck, compile_quick_check
from triggerd.redaction import NO_SECRETS, RUN_LOG_REDACTOR, Redactor, derived_secrets
from triggerd.secrets import SecretPolicy, resolve_secrets, secret_ref_from_json
from triggerd.storable import is_truncation_marker
from triggerd.store.executions import ClaimedExecution, ExecutionUpdate, NodeRow, storable
from triggerd.testrun_rules import would_call
from triggerd.walker import NodeOutcome, final_output, plan_next, recorded_branch

logger = logging.getLogger(__name__)

BUFFERED_TYPES = buffered_node_types()
EXPRESSION_ERROR = "EXPRESSION_ERROR"
# An attempt cut short by a dead process: not a failure of the node, never handled as one.
INTERRUPTED = "INTERRUPTED"
# The branch of a failed attempt that is followed by another: read back after a hand-back
# or a crash in its backoff, it is not the node's failure (a failure edge was taken with
# attempts left).
RETRIED = "retry"
OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
# What params without any expression are rendered with (they never read it).
NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})


# Parked node types that decide again when their run wakes, rather than succeed with the
# output they parked with (``wait``).
RUN_AGAIN_ON_RESUME = frozenset({"approval", "workflow"})
# Nodes that park the run (WAITING): what a run parked by a triggerd before migration 0040
# (a rolling upgrade) has instead of its idle time (see parked_time).
PARKING_TYPES = frozenset({"wait", *RUN_AGAIN_ON_RESUME})
# Node types whose result is decided from the instant they start (a ``duration`` wait):
# an attempt cut by a dead process before it parked is taken up again from the instant
# the cut attempt started, so the wait's end is decided once.
KEEPS_START = frozenset({"wait"})


def _latest_attempts(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each node's row of its highest attempt."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = latest.get(row["node_id"])
        if current is None or row["attempt"] > current["attempt"]:
            latest[row["node_id"]] = row
    return latest


def parked_time(previous_rows: Sequence[Mapping[str, Any]], now: datetime) -> timedelta:
    """How long a run being taken up again has waited parked so far, read from its rows:
    the spans of its parking nodes' rows (to their end, or to ``now`` for the park ending
    now). A floor under the idle time the store keeps: a triggerd before migration 0040
    that parked the run recorded no idle time."""
    total = timedelta(0)
    for row in previous_rows:
        start = row.get("start_time")
        if row["node_type"] not in PARKING_TYPES or start is None:
            continue
        end = row.get("end_time") or now
        if end > start:
            total += end - start
    return total


def started_before(rows: Sequence[Mapping[str, Any]], node_id: str) -> datetime | None:
    """When the node's attempts cut by dead processes began: the start of the earliest of
    its latest run of attempts that ended INTERRUPTED or were left RUNNING (None: its
    latest attempt was not cut)."""
    own = sorted((r for r in rows if r["node_id"] == node_id), key=lambda r: r["attempt"])
    began: datetime | None = None
    for row in reversed(own):
        cut = row["status"] == NodeStatus.RUNNING or (
            row["status"] == NodeStatus.ERROR and row["error_code"] == INTERRUPTED)
        if not cut or row.get("start_time") is None:
            break
        began = row["start_time"]
    return began


@dataclass(frozen=True, kw_only=True)
class PreparedVersion:
    """A workflow version parsed once and cached (versions are immutable)."""

    id: str
    version: int
    graph: Graph
    workflow_key: str | None
    validator: Draft202012Validator
    env: dict[str, str]
    secret_refs: dict[str, Any]
    timeout: timedelta
    # Nodes whose params hold an expression (None: not known, treat all as such). The
    # others need no expression context, which is the costly part of rendering.
    templated: frozenset[str] | None = None
    reads_memory: bool = False
    # The input properties the parameter schema names: one a run's input leaves out reads
    # as absent (falsy, ``or``/``default`` work), not as an unknown name.
    input_properties: frozenset[str] = frozenset()
    # False for an empty parameter schema, which every input passes.
    checks_input: bool = True
    # Decides most valid inputs without jsonschema (triggerd.quickcheck); None: the schema
    # is outside its subset. A False answer goes to the validator, which lists the errors.
    quick_check: ValidityCheck | None = None


def prepare_version(row: Mapping[str, Any]) -> PreparedVersion:
    schema = row["parameter_schema"] or {}
    env_config = row["env_config"] or {}
    prepared = PreparedVersion(
        id=str(row["id"]),
        version=row["version"],
        workflow_key=row.get("workflow_key"),
        graph=graph_from_json(row["graph"]),
        validator=Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER),
        env={str(k): str(v) for k, v in (env_config.get("env") or {}).items()},
        secret_refs={
            name: secret_ref_from_json(ref)
            for name, ref in (env_config.get("secrets") or {}).items()
        },
        timeout=timedelta(milliseconds=row["timeout_ms"]),
    )
    templated = frozenset(n.id for n in prepared.graph.nodes if has_template(n.params))
    # Expressions that may read `memory` (a textual test: a false positive only costs one
    # read of the workflow's memory when a run starts).
    reads_memory = any("memory" in json.dumps(n.params) for n in prepared.graph.nodes
                       if n.id in templated)
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return replace(prepared, templated=templated, reads_memory=reads_memory,
                   checks_input=schema not in ({}, True), quick_check=compile_quick_check(schema),
                   input_properties=frozenset(
                       k for k in (properties if isinstance(properties, dict) else ())
                       if isinstance(k, str)))


def input_violations(validator: Draft202012Validator, value: JSON) -> list[dict[str, str]]:
    """Every violation of the parameter schema, with its JSON path, in a stable order."""
    errors = sorted(validator.iter_errors(value), key=lambda e: (e.json_path, e.message))
    return [{"path": e.json_path, "message": e.message} for e in errors]


def truncate_output(value: JSON, max_bytes: int) -> JSON:
    """Outputs over the limit are stored as a marker with a preview; the run goes on.
    What PostgreSQL cannot store (a NUL, a lone surrogate an expression made) is shown as
    U+FFFD, as in node rows: a run's output holding one crashed its last write."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    try:
        encoded = text.encode()
        clean = b"\\u0000" not in encoded
    except UnicodeEncodeError:
        clean = False
    if not clean:
        value = storable(value)
        encoded = json.dumps(value, default=str, ensure_ascii=False).encode()
    if len(encoded) <= max_bytes:
        return value
    return _truncation_marker(encoded, max_bytes)


def _truncation_marker(encoded: bytes, max_bytes: int) -> JSON:
    preview = encoded[: max(0, max_bytes - 200)].decode(errors="ignore")
    return {
        "_truncated": True,
        "size_bytes": len(encoded),
        "limit_bytes": max_bytes,
        "preview": preview,
    }


class OutputTooLarge(Exception):
    """Internal: a node output above ``[executor] max_resume_output_bytes``."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(
            f"{size} bytes, above [executor] max_resume_output_bytes ({cap} bytes)"
        )
        self.size = size
        self.cap = cap


# What is stored of one node output: the display copy (truncated, secrets masked) and the
# JSON text of the real value, only when the two differ. A tuple, not a dataclass: it is
# built for every node on the executor's hot path.
OutputCopies = tuple[JSON, str | None]


def output_copies(value: JSON, redactor: Redactor, max_bytes: int, cap: int) -> OutputCopies:
    """The display copy of ``value`` and, when it is not the value itself, the text of the
    resume copy. Raises :class:`OutputTooLarge` above ``cap``. One serialization in the
    common case (small, no secrets)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        # A lone surrogate: ASCII JSON keeps it exactly (as an escape) for the resume copy.
        text = json.dumps(value, default=str)
        encoded = text.encode()
        if len(encoded) > cap:
            raise OutputTooLarge(len(encoded), cap) from None
        return truncate_output(redactor.redact(storable(value)), max_bytes), text
    if len(encoded) > cap:
        raise OutputTooLarge(len(encoded), cap)
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        # What PostgreSQL cannot store (NUL, NaN): the display copy shows U+FFFD or null.
        return truncate_output(redactor.redact(storable(value)), max_bytes), text
    if redactor.redact_text(text) == text:
        # No secret anywhere in it (keys included): only the size can make it differ.
        if len(encoded) <= max_bytes:
            return value, None
        return _truncation_marker(encoded, max_bytes), text
    display = truncate_output(redactor.redact(value), max_bytes)
    return display, (None if display == value else text)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    update: ExecutionUpdate
    nodes: tuple[NodeRow, ...]


class Parked(Exception):
    """Internal: every runnable branch is done and the rest waits (``wait`` nodes)."""


@dataclass(kw_only=True)
class Runner:
    """Walks one execution. ``write`` makes rows durable (group-committed)."""

    claimed: ClaimedExecution
    version: PreparedVersion
    http: aiohttp.ClientSession | None
    write: Callable[..., Any]
    previous_rows: list[dict[str, Any]]
    max_output_bytes: int
    resume_key: ResumeKey
    max_resume_output_bytes: int = 16 * 1024 * 1024
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    environ: Mapping[str, str] | None = None
    secret_roots: tuple[str, ...] = ()  # [daemon] secret_roots
    # Which secrets the run's tenant may read (None: any, as in a lone test of a node).
    secret_policy: SecretPolicy | None = None
    # The executor's pool, handed to node types that keep state (approval).
    db: Any = None
    # ``execution.resume_url`` in expressions (runs of versions with an approval node).
    resume_url: str | None = None
    # ``memory`` in expressions: the workflow's memory as the run (re)started.
    memory: dict[str, JSON] | None = None
    max_workflow_depth: int = 8
    # A dry test run: nodes that act outside the run are not run; their rows record
    # {"would_call": params} (triggerd.testrun_rules.would_call).
    dry: bool = False
    pending: list[NodeRow] = field(default_factory=list)
    redactor: Redactor = NO_SECRETS
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    next_attempt: dict[str, int] = field(default_factory=dict)
    parked_until: dict[str, datetime] = field(default_factory=dict)
    # The nodes of parked_until that wait out a retry's backoff cut by a restart: that
    # time counts toward the workflow's timeout, as a backoff in the process does.
    backoff_parks: set[str] = field(default_factory=set)
    # When the run's working time ends (set as the walk starts).
    deadline: datetime | None = None
    # The instant a node's next attempt starts from (KEEPS_START).
    start_from: dict[str, datetime] = field(default_factory=dict)
    # (node type, milliseconds) of every finished attempt, for metrics.
    timings: list[tuple[str, float]] = field(default_factory=list)
    # Whether this run has resume copies in the database (dropped when it ends).
    has_resume_copies: bool = False
    _base_context: dict[str, Any] | None = None
    _secrets: dict[str, str] = field(default_factory=dict)
    # What templates derived from the secrets, for this run's log lines (RUN_LOG_REDACTOR).
    _derived: Redactor = NO_SECRETS

    # -- helpers -------------------------------------------------------------------------

    def _log_extra(self, **more: Any) -> dict[str, Any]:
        return {
            "execution_id": self.claimed.id,
            "workflow_id": self.claimed.workflow_id,
            "trigger_id": self.claimed.trigger_id,
            **more,
        }

    def _final(
        self,
        status: str,
        *,
        output: JSON = None,
        code: str | None = None,
        message: str | None = None,
        resume_at: datetime | None = None,
        failed_node: str | None = None,
    ) -> ExecutionUpdate:
        return ExecutionUpdate(
            id=self.claimed.id,
            status=status,
            output=truncate_output(self.redactor.redact(output), self.max_output_bytes),
            error_code=code,
            error_message=None if message is None else self.redactor.redact_text(message),
            resume_at=resume_at,
            drop_resume_copies=self.has_resume_copies,
            failed_node=failed_node,
        )

    def _resumed_output(self, row: Mapping[str, Any]) -> JSON:
        """The output a finished node passed on: its resume copy when it has one, else the
        stored row (then identical to the value). Never a truncated or redacted value."""
        blob = row.get("resume_copy")
        if blob is not None:
            return self.resume_key.decrypt(
                blob,
                execution_id=self.claimed.id,
                node_id=row["node_id"],
                attempt=row["attempt"],
            )
        output: JSON = row["output"]
        if is_truncation_marker(output):
            # Written by a build without resume copies: the value is lost.
            raise ResumeCopyError(
                RESUME_COPY_MISSING,
                f"the output of node {row['node_id']!r} was stored truncated and has no"
                " resume copy; run the workflow again",
            )
        return output

    def _resume_copy(self, text: str, node_id: str, attempt: int) -> bytes:
        """The encrypted resume copy of a row's real output (its JSON ``text``)."""
        self.has_resume_copies = True
        return self.resume_key.encrypt(
            text, execution_id=self.claimed.id, node_id=node_id, attempt=attempt
        )

    def _close_open_rows(self) -> None:
        """A run canceled as it is taken up: the attempts its rows left open (RUNNING under
        a process that died, WAITING in a park) end CANCELED with it."""
        latest = _latest_attempts(self.previous_rows)
        now = self.clock()
        self.pending.extend(
            NodeRow(
                execution_id=self.claimed.id,
                node_id=node_id,
                node_type=row["node_type"],
                status=NodeStatus.CANCELED,
                attempt=row["attempt"],
                output=row["output"],
                error_code="CANCELED",
                error_message="canceled by request",
                end_time=now,
            )
            for node_id, row in latest.items()
            if row["status"] in (NodeStatus.RUNNING, NodeStatus.WAITING)
        )

    def _restore(self) -> None:
        """Outcomes from rows written before (resume after a crash, a wait or a hand-back)."""
        now = self.clock()
        for row in self.previous_rows:
            self.next_attempt[row["node_id"]] = max(
                self.next_attempt.get(row["node_id"], 1), row["attempt"] + 1
            )
        for node_id, row in _latest_attempts(self.previous_rows).items():
            status = row["status"]
            if status == NodeStatus.RUNNING:
                # The process running this attempt died (its lease expired): close the
                # attempt out; the node runs again as the next attempt.
                if row["node_type"] in KEEPS_START:
                    began = started_before(self.previous_rows, node_id)
                    if began is not None:
                        self.start_from[node_id] = began
                self.pending.append(
                    NodeRow(
                        execution_id=self.claimed.id,
                        node_id=node_id,
                        node_type=row["node_type"],
                        status=NodeStatus.ERROR,
                        attempt=row["attempt"],
                        error_code=INTERRUPTED,
                        error_message="the process running this attempt stopped before it"
                        " finished; the node runs again as a new attempt",
                        end_time=now,
                    )
                )
                continue
            if status == NodeStatus.WAITING and row["node_type"] in RUN_AGAIN_ON_RESUME:
                # Woken by a decision or its deadline: the node runs again (same attempt)
                # and finds which; with neither it parks again until its deadline.
                self.next_attempt[node_id] = row["attempt"]
                continue
            if status == NodeStatus.WAITING:
                until = _parse_instant((row["output"] or {}).get("wait_until"))
                if until is not None and until > now:
                    self.parked_until[node_id] = until
                    self.next_attempt[node_id] = row["attempt"]
                    continue
                # The wait is over: the node succeeded, with the output it gave (the parked
                # row's "wait_until" is this runner's own note of when to wake it).
                done = NodeRow(
                    execution_id=self.claimed.id,
                    node_id=node_id,
                    node_type=row["node_type"],
                    status=NodeStatus.SUCCESS,
                    attempt=row["attempt"],
                    output=_without_wait_note(row["output"]),
                    end_time=now,
                )
                self.pending.append(done)
                self.outcomes[node_id] = NodeOutcome(
                    node_id=node_id, status=NodeStatus.SUCCESS,
                    output=_without_wait_note(self._resumed_output(row)),
                )
                continue
            if status == NodeStatus.ERROR and row["branch"] == RETRIED:
                # Cut in its backoff (a hand-back, a crash): the next attempt is due when
                # the backoff after this one ends, not when the run is taken up again;
                # until then the run parks as a ``wait`` does.
                due = self._retry_due(node_id, row)
                if due is not None and due > now:
                    self.parked_until[node_id] = due
                    self.backoff_parks.add(node_id)
                continue
            if status in (NodeStatus.SUCCESS, NodeStatus.SKIPPED) or (
                status == NodeStatus.ERROR
                and row["error_code"] not in (None, INTERRUPTED)
                and row["branch"] != RETRIED
                and self._handled_failure(node_id)
            ):
                branch = row["branch"] or recorded_branch(row["node_type"], row["output"])
                self.outcomes[node_id] = NodeOutcome(
                    node_id=node_id,
                    status=NodeStatus(status),
                    output=(
                        self._resumed_output(row) if status == NodeStatus.SUCCESS else row["output"]
                    ),
                    error_code=row["error_code"],
                    branch=branch,
                )

    def _retry_due(self, node_id: str, row: Mapping[str, Any]) -> datetime | None:
        """When the attempt after the failed one in ``row`` is due: its end plus the
        node's backoff after it (the policy is the version's, which never changes)."""
        ended: datetime | None = row.get("end_time")
        if ended is None:
            return None
        try:
            policy = self.version.graph.node(node_id).retry
        except KeyError:
            return None
        return ended + retry_delay(policy, max(int(row["attempt"]), 1))

    def _handled_failure(self, node_id: str) -> bool:
        return any(e.on == "failure" for e in self.version.graph.outgoing(node_id))

    def _context(self) -> dict[str, Any]:
        base = self._base_context
        if base is None:
            # Everything but the node outputs is fixed for the run: built once. Sharing it
            # between nodes is safe, the sandbox cannot change what expressions read.
            claimed = self.claimed
            trigger = dict(claimed.context.get("trigger") or {})
            trigger.setdefault("type", claimed.trigger_type)
            trigger.setdefault("name", claimed.trigger_name)
            if claimed.scheduled_for is not None:
                trigger.setdefault("scheduled_for", claimed.scheduled_for.isoformat())
            base = self._base_context = build_context(
                input=claimed.input,
                input_properties=self.version.input_properties,
                env=self.version.env,
                secrets=self._secrets,
                trigger=trigger,
                execution={
                    "id": claimed.id,
                    "attempt": claimed.attempt,
                    "workflow_id": claimed.workflow_id,
                    "version": self.version.version,
                    "created_at": claimed.created_at.isoformat(),
                    "tenant": claimed.tenant_id,
                    "correlation": claimed.correlation,
                    **({} if self.resume_url is None else {"resume_url": self.resume_url}),
                },
                memory=self.memory or {},
            )
        context = dict(base)
        context["nodes"] = {
            k: {"output": v.output}
            for k, v in self.outcomes.items()
            if v.status == NodeStatus.SUCCESS
        }
        return context

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> ExecutionUpdate:
        claimed = self.claimed
        # Not reset on return: the caller's lines about this run (a crash) are its too.
        RUN_LOG_REDACTOR.set(lambda: self._derived)
        if claimed.cancel_requested:
            self._close_open_rows()
            return self._final("CANCELED", code="CANCELED", message="canceled by request")
        if self.version.secret_refs:
            try:
                self._secrets = resolve_secrets(
                    self.version.secret_refs, self.environ, roots=self.secret_roots,
                    policy=self.secret_policy,
                )
            except SecretError as exc:
                return self._final("ERROR", code="SECRET_MISSING", message=exc.message)
            self.redactor = Redactor(self._secrets.values())
            SECRETS_FILTER.add_secrets(self._secrets.values())
        if self.resume_url is not None:
            # The link decides the run: whoever may read the run's rows (a viewer) must
            # not be able to act through it. Nodes get it whole; the rows keep it masked,
            # the encrypted resume copy keeps it for the nodes after a restart.
            # Every link of the run, not only this one: links issued before it was taken
            # up again still decide it, and come back whole in restored node outputs.
            self.redactor = self.redactor.with_secrets(
                [resume_token(self.resume_url)]).with_patterns(RESUME_LINK_TOKENS)
        version = self.version
        try:
            violations = (
                input_violations(version.validator, claimed.input)
                if version.checks_input
                and (version.quick_check is None or not version.quick_check(claimed.input))
                else []
            )
        except Unresolvable as exc:  # a schema published before check resolved references
            return self._final("ERROR", code="INPUT_INVALID", message="the workflow's"
                               f" parameter_schema is invalid: {unresolvable(exc)}")
        if violations:
            text = "; ".join(f"{v['path']}: {v['message']}" for v in violations)
            return self._final(
                "ERROR",
                code="INPUT_INVALID",
                message=f"input fails the parameter schema: {text}",
                output={"errors": violations},
            )
        self.has_resume_copies = any(
            row.get("resume_copy") is not None for row in self.previous_rows
        )
        try:
            self._restore()
        except ResumeCopyError as exc:
            return self._final("ERROR", code=exc.code, message=exc.message)
        # The run's working time: time it was not worked on (parked for a wait, an
        # approval or a sub-workflow; handed back; after a dead process's last heartbeat)
        # does not count, or a decision made after the timeout, or a restart after an
        # outage, would fail the run.
        # A run parked by an older triggerd during a rolling upgrade has no worked_at, so
        # no idle time recorded for its parks: then never less than its rows show. Only
        # then: the rows' spans overlap (parallel branches parked at once add up).
        idle = claimed.idle
        if not claimed.idle_known:
            idle = max(idle, parked_time(self.previous_rows, self.clock()))
        deadline = claimed.start_time + self.version.timeout + idle
        self.deadline = deadline
        remaining = (deadline - self.clock()).total_seconds()
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                return await self._walk()
        except TimeoutError:
            return self._timed_out()

    def _timed_out(self) -> ExecutionUpdate:
        return self._final(
            "ERROR",
            code="TIMEOUT",
            message=f"workflow timed out after {self.version.timeout.total_seconds():g}s",
        )

    async def _walk(self) -> ExecutionUpdate:
        graph = self.version.graph
        tasks: dict[str, asyncio.Task[NodeOutcome | None]] = {}
        try:
            while True:
                step = plan_next(graph, self.outcomes, set(tasks) | set(self.parked_until))
                for node_id, edge in step.skipped:
                    node = graph.node(node_id)
                    self.pending.append(
                        NodeRow(
                            execution_id=self.claimed.id,
                            node_id=node_id,
                            node_type=node.type,
                            status=NodeStatus.SKIPPED,
                            attempt=self.next_attempt.get(node_id, 1),
                            from_node_id=None if edge is None else edge.source,
                            edge_condition=_edge_condition(edge),
                        )
                    )
                    self.outcomes[node_id] = NodeOutcome(node_id=node_id, status=NodeStatus.SKIPPED)
                if step.failed is not None:
                    await self._cancel_tasks(tasks)
                    failed = step.failed
                    reason = (
                        failed.output.get("_error") if isinstance(failed.output, dict) else None
                    )
                    return self._final(
                        "ERROR",
                        code=failed.error_code or "NODE_FAILED",
                        message=f"node {failed.node_id!r} failed: {reason or failed.error_code}",
                        failed_node=failed.node_id,
                    )
                if len(step.ready) == 1 and not tasks:
                    # One branch only: run it inline, no task or wait needed.
                    node_id, edge = step.ready[0]
                    outcome = await self._run_node(node_id, edge)
                    if outcome is not None:
                        self.outcomes[node_id] = outcome
                    continue
                for node_id, edge in step.ready:
                    tasks[node_id] = asyncio.create_task(self._run_node(node_id, edge))
                if step.finished and not tasks:
                    output = final_output(graph, self.outcomes)
                    return self._final("SUCCESS", output=output)
                if not tasks:
                    if self.parked_until:
                        until = min(self.parked_until.values())
                        worked_until = None
                        if self.backoff_parks and self.deadline is not None:
                            # A backoff's park counts as working time: the run wakes by
                            # its deadline to time out then, not at the backoff's end.
                            if self.deadline <= self.clock():
                                return self._timed_out()
                            until = worked_until = min(until, self.deadline)
                        return replace(self._final("WAITING", resume_at=until),
                                       worked_until=worked_until)
                    # Nothing runs, nothing is ready and the graph is not finished: a bug.
                    return self._final(
                        "ERROR",
                        code="WALK_STUCK",
                        message="no node can run; the graph walk is stuck",
                    )
                done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
                for node_id in [k for k, t in tasks.items() if t in done]:
                    task = tasks.pop(node_id)
                    outcome = task.result()
                    if outcome is not None:
                        self.outcomes[node_id] = outcome
        except BaseException:
            await self._cancel_tasks(tasks)
            raise

    async def _cancel_tasks(self, tasks: dict[str, asyncio.Task[NodeOutcome | None]]) -> None:
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        tasks.clear()

    def _mask_derived(self, template: JSON, params: JSON) -> None:
        """Values a template derived from secrets are masked like the secrets themselves,
        from this node's stored parameters on, in rows and log lines alike."""
        derived = derived_secrets(secret_renderings(template, params), self.redactor)
        if derived:
            self.redactor = self.redactor.with_secrets(derived)
            self._derived = self._derived.with_secrets(derived)

    async def _run_node(self, node_id: str, edge: Edge | None) -> NodeOutcome | None:
        node = self.version.graph.node(node_id)
        attempt = self.next_attempt.get(node_id, 1)
        while True:
            started = self.clock()
            # A cut wait's end is decided from when the cut attempt started (KEEPS_START).
            began = self.start_from.pop(node_id, started)
            t0 = time.perf_counter()
            try:
                templated = self.version.templated
                params = render(
                    node.params,
                    self._context() if templated is None or node_id in templated else NO_CONTEXT,
                )
                failure: NodeFailure | None = None
                if self._secrets:
                    self._mask_derived(node.params, params)
            except ExpressionError as exc:
                failure = NodeFailure(EXPRESSION_ERROR, exc.message, retryable=False)
                params = node.params
            # The fields every row of this attempt shares (rows are built directly rather
            # than with dataclasses.replace: this is the executor's hot path).
            common: dict[str, Any] = {
                "execution_id": self.claimed.id,
                "node_id": node_id,
                "node_type": node.type,
                "attempt": attempt,
                "start_time": started,
                "from_node_id": None if edge is None else edge.source,
                "edge_condition": _edge_condition(edge),
                "input": self.redactor.redact(params),
            }
            result: NodeResult | None = None
            if failure is None:
                try:
                    if node.type not in BUFFERED_TYPES:
                        # Durable point: earlier rows and this RUNNING row land before the
                        # side effect (inside the try: a cancel or the workflow's deadline
                        # that comes during the write closes the row too).
                        base = NodeRow(status=NodeStatus.RUNNING, **common)
                        rows, self.pending = [*self.pending, base], []
                        await self.write(nodes=rows)
                    if self.dry and _dry_stubbed(node.type, params):
                        result = NodeResult(output={"would_call": would_call(params)})
                    else:
                        result = await run_node(
                            params,
                            NodeContext(
                                execution_id=self.claimed.id,
                                node=node,
                                attempt=attempt,
                                http=self.http,
                                now=began,
                                log=logger,
                                started=started,
                                db=self.db,
                                workflow_id=self.claimed.workflow_id,
                                max_workflow_depth=self.max_workflow_depth,
                                max_output_bytes=self.max_resume_output_bytes,
                            ),
                        )
                except NodeFailure as exc:
                    failure = exc
                except asyncio.CancelledError:
                    # Canceled by request, by the workflow timeout or handed back on
                    # shutdown: this attempt ends here; a resumed run starts a new one.
                    self.pending.append(
                        NodeRow(
                            **common,
                            status=NodeStatus.CANCELED,
                            end_time=self.clock(),
                            error_code="CANCELED",
                            error_message="canceled",
                            execution_time_ms=(time.perf_counter() - t0) * 1000,
                        )
                    )
                    raise
            elapsed_ms = (time.perf_counter() - t0) * 1000
            self.timings.append((node.type, elapsed_ms))
            ended = self.clock()
            output: JSON = None
            resume_text: str | None = None
            if failure is None:
                assert result is not None
                try:
                    output, resume_text = output_copies(
                        result.output,
                        self.redactor,
                        self.max_output_bytes,
                        self.max_resume_output_bytes,
                    )
                except OutputTooLarge as exc:
                    # Kept in full it could not be (memory, the resume copy): fail now
                    # rather than pass on a cut value.
                    failure = NodeFailure(
                        OUTPUT_TOO_LARGE, f"output of node {node_id!r} is {exc}", retryable=False
                    )
            if failure is None:
                assert result is not None
                if result.wait_until is not None:
                    until = result.wait_until.isoformat()
                    shown = output if isinstance(output, dict) else {}
                    wait_output = {"wait_until": until, **shown}
                    wait_copy = None
                    if resume_text is not None:
                        raw = result.output if isinstance(result.output, dict) else {}
                        full = json.dumps(
                            {"wait_until": until, **raw}, default=str, ensure_ascii=False
                        )
                        wait_copy = self._resume_copy(full, node_id, attempt)
                    self.pending.append(
                        NodeRow(
                            **common,
                            status=NodeStatus.WAITING,
                            output=wait_output,
                            resume_copy=wait_copy,
                        )
                    )
                    self.parked_until[node_id] = result.wait_until
                    self.next_attempt[node_id] = attempt
                    return None
                self.pending.append(
                    NodeRow(
                        **common,
                        status=NodeStatus.SUCCESS,
                        output=output,
                        branch=result.branch,
                        end_time=ended,
                        execution_time_ms=elapsed_ms,
                        resume_copy=None
                        if resume_text is None
                        else self._resume_copy(resume_text, node_id, attempt),
                    )
                )
                return NodeOutcome(
                    node_id=node_id,
                    status=NodeStatus.SUCCESS,
                    output=result.output,
                    branch=result.branch,
                )
            message = self.redactor.redact_text(failure.message)
            # A code may be rendered too (a fail node's `code`): stored, it is masked.
            code = self.redactor.redact_text(failure.code)
            retried = should_retry(node.retry, failure, attempt)
            self.pending.append(
                NodeRow(
                    **common,
                    status=NodeStatus.ERROR,
                    error_code=code,
                    error_message=message,
                    # Stored as a success's display copy is: an http node's refused
                    # answer was kept whole (up to 10 MiB), whatever max_output_bytes said.
                    output=truncate_output(self.redactor.redact(failure.output),
                                           self.max_output_bytes),
                    branch=RETRIED if retried else None,
                    end_time=ended,
                    execution_time_ms=elapsed_ms,
                )
            )
            logger.info(
                "node failed",
                extra={
                    "event": "node_failed",
                    **self._log_extra(
                        node_id=node_id,
                        node_type=node.type,
                        attempt=attempt,
                        error_code=code,
                        error=message,
                    ),
                },
            )
            if retried:
                if node.type not in BUFFERED_TYPES:
                    # The failed attempt's row lands before the backoff: a process that dies
                    # while it waits left the attempt INTERRUPTED, its real error lost.
                    rows, self.pending = self.pending, []
                    await self.write(nodes=rows)
                await asyncio.sleep(retry_delay(node.retry, attempt).total_seconds())
                attempt += 1
                self.next_attempt[node_id] = attempt
                continue
            self.next_attempt[node_id] = attempt + 1
            return NodeOutcome(
                node_id=node_id,
                status=NodeStatus.ERROR,
                error_code=code,
                output={"_error": message},
            )


def _dry_stubbed(name: str, params: JSON) -> bool:
    """Whether a dry run records this node instead of running it (an unknown type is run:
    it then fails as it would in any run)."""
    try:
        node_type = default_registry().get(name)
    except NodeFailure:
        return False
    return stubbed_when_dry(node_type, params)


def _edge_condition(edge: Edge | None) -> str | None:
    if edge is None:
        return None
    if edge.on == "failure":
        return "on:failure"
    return edge.when


def _without_wait_note(output: JSON) -> JSON:
    """A parked node's output as the node gave it: without the ``wait_until`` key the
    runner stores beside it while the run waits."""
    if isinstance(output, dict) and "wait_until" in output:
        return {k: v for k, v in output.items() if k != "wait_until"}
    return output


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
