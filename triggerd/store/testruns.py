"""The SQL of test runs (migration 0025): a scratch copy of a workflow (status ``test``, no
triggers) with one version, its one run (marked ``test``, which the executors' claims never
take), the claim of that run by the process that drives it, and their retention."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from triggerd.model import JSON
from triggerd.store.executions import (
    CLAIM_RETURNING,
    DESCENDANTS,
    ClaimedExecution,
    claimed_execution,
    taking_up,
)

Conn = Any  # a connection (inside a transaction where it says so) or a pool

# `~` is never in a workflow key (definitions allow a-z, 0-9, '-' and '_'): a scratch key
# cannot collide with a real one.
SCRATCH_MARK = "~test-"
SCRATCH_STATUS = "test"


def scratch_key(key: str, execution_id: str) -> str:
    return f"{key}{SCRATCH_MARK}{execution_id[:8]}"


@dataclass(frozen=True, kw_only=True)
class NewTestRun:
    key: str  # the definition's workflow key
    tenant_id: str
    name: str
    description: str
    version: dict[str, Any]  # graph, parameter_schema, env_config, timeout_ms
    trigger_name: str | None
    trigger_type: str
    input: dict[str, JSON]
    context: dict[str, JSON]
    id: str


def new_run_id() -> str:
    return str(uuid.uuid4())


async def create_test_run(conn: Conn, run: NewTestRun) -> str:
    """The scratch workflow, its version and the run (status NEW, marked ``test``), in one
    transaction; returns the scratch workflow's id. No executor is told: none takes it."""
    doc = run.version
    async with conn.transaction():
        workflow_id: str = await conn.fetchval(
            "INSERT INTO workflows (tenant_id, key, name, description, status)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id::text",
            run.tenant_id, scratch_key(run.key, run.id), run.name, run.description,
            SCRATCH_STATUS)
        version_id: str = await conn.fetchval(
            "INSERT INTO workflow_versions (workflow_id, version, graph, parameter_schema,"
            " env_config, timeout_ms, is_latest, published_at)"
            " VALUES ($1, 1, $2, $3, $4, $5, true, now()) RETURNING id::text",
            workflow_id, doc["graph"], doc["parameter_schema"], doc["env_config"],
            doc["timeout_ms"])
        await conn.execute(
            "INSERT INTO workflow_executions (id, workflow_id, workflow_version_id,"
            " trigger_name, trigger_type, input, context, tenant_id, test)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)",
            run.id, workflow_id, version_id, run.trigger_name, run.trigger_type, run.input,
            run.context, run.tenant_id)
    return workflow_id


_CLAIM_TEST = """
UPDATE workflow_executions e
   SET status = 'RUNNING', lease_owner = $2, resume_at = NULL,
       lease_expires_at = now() + $3 * interval '1 millisecond',
       attempt = e.attempt + 1, start_time = COALESCE(e.start_time, now()),
       """ + taking_up() + """
 WHERE e.id = $1 AND e.test AND e.status IN ('NEW', 'WAITING')
RETURNING """ + CLAIM_RETURNING


async def claim_test_run(
    conn: Conn, execution_id: str, owner: str, lease: timedelta
) -> ClaimedExecution | None:
    """Take the test run (NEW, or parked WAITING: the caller decides when) for ``owner``;
    ``None`` when it is not there to take (ended, canceled)."""
    row = await conn.fetchrow(_CLAIM_TEST, execution_id, owner,
                              int(lease.total_seconds() * 1000))
    return None if row is None else claimed_execution(row)


# A test run's children (workflow nodes) are ordinary runs that a daemon's executor would
# take; the process running the test takes them itself, one at a time, when they can run
# now (NEW, or parked until a time already past), so `triggerd test` ends without a daemon.
# With a daemon running too, the row lock and the status check decide who runs each.
_CLAIM_DESCENDANT = f"WITH RECURSIVE {DESCENDANTS}" + """
UPDATE workflow_executions e
   SET status = 'RUNNING', lease_owner = $2, resume_at = NULL,
       lease_expires_at = now() + $3 * interval '1 millisecond',
       attempt = e.attempt + 1, start_time = COALESCE(e.start_time, now()),
       """ + taking_up() + """
 WHERE e.id = (
    SELECT c.id FROM workflow_executions c
     WHERE c.id IN (SELECT id FROM tree) AND NOT c.test
       AND c.not_before IS NULL AND c.concurrency_key IS NULL
       AND (c.status = 'NEW' OR (c.status = 'WAITING' AND c.resume_at <= now()))
     ORDER BY c.created_at LIMIT 1
     FOR UPDATE SKIP LOCKED)
RETURNING """ + CLAIM_RETURNING


async def claim_descendant(
    conn: Conn, execution_id: str, owner: str, lease: timedelta
) -> ClaimedExecution | None:
    """Take one child (or deeper descendant) of test run ``execution_id`` that can run
    now; ``None`` when none can."""
    row = await conn.fetchrow(_CLAIM_DESCENDANT, execution_id, owner,
                              int(lease.total_seconds() * 1000))
    return None if row is None else claimed_execution(row)


@dataclass(frozen=True, kw_only=True)
class TestRunState:
    __test__: ClassVar[bool] = False  # not a test case (pytest collects Test*)

    status: str
    resume_at: datetime | None
    now: datetime  # the database's clock, which resume_at is on


async def run_state(conn: Conn, execution_id: str) -> TestRunState | None:
    row = await conn.fetchrow(
        "SELECT status, resume_at, now() AS now FROM workflow_executions"
        " WHERE id = $1 AND test", execution_id)
    if row is None:
        return None
    return TestRunState(status=row["status"], resume_at=row["resume_at"], now=row["now"])


async def waiting_approval_node(conn: Conn, execution_id: str) -> str | None:
    """The approval node a parked run waits on (``None``: it waits for something else)."""
    node: str | None = await conn.fetchval(
        "SELECT n.node_id FROM node_executions n JOIN workflow_executions e"
        " ON e.id = n.execution_id WHERE n.execution_id = $1 AND e.status = 'WAITING'"
        " AND n.node_type = 'approval' AND n.status = 'WAITING'"
        " ORDER BY n.start_time LIMIT 1", execution_id)
    return node


async def undecided_descendant(conn: Conn, execution_id: str) -> tuple[str, str] | None:
    """A child (or deeper descendant) of test run ``execution_id`` parked on an approval
    that has no decision yet: its id and the node's, else ``None``."""
    row = await conn.fetchrow(
        f"WITH RECURSIVE {DESCENDANTS}"
        " SELECT n.execution_id::text AS execution_id, n.node_id FROM node_executions n"
        " JOIN workflow_executions e ON e.id = n.execution_id"
        " WHERE n.execution_id IN (SELECT id FROM tree) AND e.status = 'WAITING'"
        " AND n.node_type = 'approval' AND n.status = 'WAITING'"
        " AND NOT EXISTS (SELECT 1 FROM resume_tokens r WHERE r.execution_id = e.id"
        "   AND r.decision IS NOT NULL AND r.used_by_node IS NULL)"
        " ORDER BY n.start_time LIMIT 1", execution_id)
    return None if row is None else (row["execution_id"], row["node_id"])


async def delete_old_test_runs(conn: Conn, older_than: timedelta, batch: int = 100) -> int:
    """Delete up to ``batch`` scratch workflows created more than ``older_than`` ago, with
    their runs (the delete cascades as for any workflow); returns how many."""
    result: str = await conn.execute(
        "DELETE FROM workflows WHERE id IN ("
        " SELECT w.id FROM workflows w WHERE w.status = 'test'"
        " AND w.created_at < now() - $1 * interval '1 millisecond'"
        # A test run a process still holds (a `triggerd test` going on) stays, and so does
        # one whose child (an ordinary run) has not ended: deleted, the child pointed at
        # nothing. One left NEW or WAITING that long was given up (only the process that
        # started a test run runs it).
        " AND NOT EXISTS (SELECT FROM workflow_executions e WHERE e.workflow_id = w.id"
        "   AND ((e.status = 'RUNNING' AND e.lease_expires_at > now()) OR EXISTS ("
        "     SELECT FROM workflow_executions k WHERE k.parent_execution_id = e.id"
        "     AND k.status IN ('NEW', 'RUNNING', 'WAITING'))))"
        " LIMIT $2 FOR UPDATE SKIP LOCKED)",
        int(older_than.total_seconds() * 1000), batch)
    return int(result.split()[-1])
