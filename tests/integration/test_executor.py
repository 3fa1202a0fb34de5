"""The executor against a real PostgreSQL: claims, graph walk, records, failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import (
    apply_doc,
    final_status,
    fire,
    free_port,
    serve_get,
    wait_for,
    wait_until_blocked,
)
from triggerd import db
from triggerd.config import Settings, load_settings
from triggerd.definitions import check_documents
from triggerd.errors import Conflict, NotFound
from triggerd.executor.service import Executor
from triggerd.notifications.channels import CANCEL, DUE
from triggerd.store import executions as store_executions
from triggerd.store.executions import request_cancel, retry_execution


def workflow(
    key: str, nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "workflows": [
            {
                "key": key,
                "name": key,
                "graph": {"nodes": nodes, "edges": edges or []},
                "triggers": [{"name": "manual", "type": "manual"}],
                **extra,
            }
        ]
    }


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(
        environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms", "TRIGGERD_EXECUTOR_DRAIN": "1s"}
    )
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    yield ex
    await ex.stop()


async def stop_in_the_first_backoff(pool: asyncpg.Pool, dsn: str, settings: Settings,
                                    execution_id: str) -> None:
    """Run ``execution_id`` with an executor of its own until its first attempt failed,
    then stop that executor: it hands the run back during the backoff."""
    first = Executor(pool=pool, dsn=dsn, settings=settings)
    await first.start()
    try:
        await wait_for(lambda: pool.fetchrow(
            "SELECT 1 FROM node_executions WHERE execution_id = $1 AND attempt = 1"
            " AND status = 'ERROR'", execution_id))
    finally:
        await first.stop()


async def nodes_of(pool: asyncpg.Pool, execution_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM node_executions WHERE execution_id = $1 ORDER BY start_time NULLS LAST,"
            " node_id, attempt",
            execution_id,
        )
    )


async def test_set_if_noop_records_path_and_skipped_branch(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(
        pool,
        workflow(
            "branchy",
            [
                {"id": "compute", "type": "set", "params": {"value": {"n": "{{ input.n * 2 }}"}}},
                {
                    "id": "big",
                    "type": "if",
                    "params": {"condition": "{{ nodes.compute.output.n > 10 }}"},
                },
                {
                    "id": "yes",
                    "type": "set",
                    "params": {"value": "big {{ nodes.compute.output.n }}"},
                },
                {"id": "no", "type": "noop"},
            ],
            [
                {"from": "compute", "to": "big"},
                {"from": "big", "to": "yes", "when": "true"},
                {"from": "big", "to": "no", "when": "false"},
            ],
        ),
    )
    execution_id = await fire(pool, "branchy/manual", {"n": 7})
    row = await final_status(pool, execution_id)
    assert row["status"] == "SUCCESS"
    assert row["output"] == "big 14"
    assert row["workflow_version_id"] is not None
    nodes = {r["node_id"]: r for r in await nodes_of(pool, execution_id)}
    assert nodes["compute"]["output"] == {"n": 14}
    assert nodes["compute"]["from_node_id"] is None
    assert nodes["big"]["status"] == "SUCCESS" and nodes["big"]["branch"] == "true"
    assert (
        nodes["yes"]["status"],
        nodes["yes"]["from_node_id"],
        nodes["yes"]["edge_condition"],
    ) == ("SUCCESS", "big", "true")
    assert (nodes["no"]["status"], nodes["no"]["edge_condition"]) == ("SKIPPED", "false")
    assert nodes["yes"]["execution_time_ms"] is not None


async def test_a_valid_input_is_decided_without_the_validator(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quick check the webhook ingress uses decides valid inputs of common schemas;
    # only a failed check pays for jsonschema, which lists the violations.
    from triggerd.executor import runner

    calls: list[Any] = []
    validate = runner.input_violations

    def counted(validator: Any, value: Any) -> list[dict[str, str]]:
        calls.append(value)
        return validate(validator, value)

    monkeypatch.setattr(runner, "input_violations", counted)
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    await apply_doc(pool, workflow("quick", [{"id": "a", "type": "noop"}],
                                   parameter_schema=schema))
    ok = await fire(pool, "quick/manual", {"n": 1})
    assert (await final_status(pool, ok))["status"] == "SUCCESS"
    assert calls == []
    bad = await fire(pool, "quick/manual", {"n": "one"})
    row = await final_status(pool, bad)
    assert (row["status"], row["error_code"]) == ("ERROR", "INPUT_INVALID")
    assert row["output"] == {
        "errors": [{"path": "$.n", "message": "'one' is not of type 'integer'"}]}
    assert calls == [{"n": "one"}]


async def test_input_violating_schema_fails_before_any_node(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(
        pool,
        workflow(
            "typed",
            [{"id": "a", "type": "noop"}],
            parameter_schema={
                "type": "object",
                "required": ["day", "count"],
                "properties": {
                    "day": {"type": "string", "format": "date"},
                    "count": {"type": "integer"},
                },
            },
        ),
    )
    execution_id = await fire(pool, "typed/manual", {"day": "not-a-date"})
    row = await final_status(pool, execution_id)
    assert row["status"] == "ERROR"
    assert row["error_code"] == "INPUT_INVALID"
    assert row["output"] == {
        "errors": [
            {"path": "$", "message": "'count' is a required property"},
            {"path": "$.day", "message": "'not-a-date' is not a 'date'"},
        ]
    }
    assert await nodes_of(pool, execution_id) == []


async def test_missing_secret_names_it(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIGGERD_TEST_NO_SUCH_SECRET", raising=False)
    await apply_doc(
        pool,
        workflow(
            "secretive",
            [{"id": "a", "type": "noop"}],
            secrets={"API_TOKEN": {"env": "TRIGGERD_TEST_NO_SUCH_SECRET"}},
        ),
    )
    row = await final_status(pool, await fire(pool, "secretive/manual"))
    assert (row["status"], row["error_code"]) == ("ERROR", "SECRET_MISSING")
    assert row["error_message"] == (
        "secret API_TOKEN is missing: environment variable TRIGGERD_TEST_NO_SUCH_SECRET is not set"
    )


async def test_secrets_are_redacted_in_stored_rows(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERD_TEST_TOKEN", "s3cr3t-value")
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return web.json_response({"echo": request.headers["Authorization"]})

    async with serve_get("/x", handler) as port:
        await apply_doc(
            pool,
            workflow(
                "redacted",
                [
                    {
                        "id": "call",
                        "type": "http",
                        "params": {
                            "method": "GET",
                            "url": f"http://127.0.0.1:{port}/x",
                            "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
                        },
                    }
                ],
                secrets={"API_TOKEN": {"env": "TRIGGERD_TEST_TOKEN"}},
            ),
        )
        execution_id = await fire(pool, "redacted/manual")
        row = await final_status(pool, execution_id)
    assert row["status"] == "SUCCESS"
    assert seen == ["Bearer s3cr3t-value"]  # the real value went out
    dump = str(await pool.fetch("SELECT input, output FROM node_executions")) + str(row["output"])
    assert "s3cr3t" not in dump
    (node,) = await nodes_of(pool, execution_id)
    assert node["input"]["headers"]["Authorization"] == "Bearer ***"
    assert node["output"]["body"] == {"echo": "Bearer ***"}


async def test_http_errors_are_coded(pool: asyncpg.Pool, executor: Executor) -> None:
    closed = free_port()
    await apply_doc(
        pool,
        workflow(
            "unreachable",
            [
                {
                    "id": "call",
                    "type": "http",
                    "params": {"method": "GET", "url": f"http://127.0.0.1:{closed}/"},
                }
            ],
        ),
    )
    row = await final_status(pool, await fire(pool, "unreachable/manual"))
    assert (row["status"], row["error_code"]) == ("ERROR", "HTTP_CONNECT")
    assert row["error_message"].startswith("node 'call' failed:")


async def test_failure_edge_handles_error(pool: asyncpg.Pool, executor: Executor) -> None:
    await apply_doc(
        pool,
        workflow(
            "recovering",
            [
                {"id": "boom", "type": "fail", "params": {"code": "BOOM", "message": "nope"}},
                {"id": "handled", "type": "set", "params": {"value": "recovered"}},
            ],
            [{"from": "boom", "to": "handled", "on": "failure"}],
        ),
    )
    execution_id = await fire(pool, "recovering/manual")
    row = await final_status(pool, execution_id)
    nodes = await nodes_of(pool, execution_id)
    boom = [(r["attempt"], r["status"], r["error_code"]) for r in nodes if r["node_id"] == "boom"]
    assert boom == [(1, "ERROR", "BOOM")]
    assert row["status"] == "SUCCESS" and row["output"] == "recovered"
    handled = next(r for r in nodes if r["node_id"] == "handled")
    assert handled["edge_condition"] == "on:failure"


async def test_retries_are_rows_with_attempt_numbers(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    hits: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({"n": len(hits)}, status=503 if len(hits) < 3 else 200)

    async with serve_get("/flaky", flaky) as port:
        await apply_doc(
            pool,
            workflow(
                "flaky",
                [
                    {
                        "id": "call",
                        "type": "http",
                        "params": {"method": "GET", "url": f"http://127.0.0.1:{port}/flaky"},
                        "retry": {"max_attempts": 5, "backoff": "10ms", "retry_on": [503]},
                    }
                ],
            ),
        )
        execution_id = await fire(pool, "flaky/manual")
        row = await final_status(pool, execution_id)
    assert row["status"] == "SUCCESS"
    rows = [
        (r["attempt"], r["status"], r["error_code"]) for r in await nodes_of(pool, execution_id)
    ]
    assert rows == [(1, "ERROR", "HTTP_STATUS"), (2, "ERROR", "HTTP_STATUS"), (3, "SUCCESS", None)]
    assert len(hits) == 3


async def test_a_failed_attempt_is_stored_before_its_backoff(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    # A process that died during the backoff left the attempt INTERRUPTED: its real error
    # (here HTTP_STATUS) was only in memory.
    async def down(request: web.Request) -> web.Response:
        return web.json_response({}, status=503)

    async with serve_get("/down", down) as port:
        await apply_doc(pool, workflow("backoff", [{
            "id": "call", "type": "http",
            "params": {"method": "GET", "url": f"http://127.0.0.1:{port}/down"},
            "retry": {"max_attempts": 2, "backoff": "5m", "retry_on": [503]}}]))
        execution_id = await fire(pool, "backoff/manual")

        async def stored() -> Any:
            return await pool.fetchrow(
                "SELECT status, error_code FROM node_executions WHERE execution_id = $1"
                " AND attempt = 1 AND status <> 'RUNNING'", execution_id)

        row = await wait_for(stored)
        assert tuple(row) == ("ERROR", "HTTP_STATUS")
        await request_cancel(pool, execution_id)
        assert (await final_status(pool, execution_id))["status"] == "CANCELED"


@pytest.mark.parametrize("cut", ["hand-back", "crash"])
async def test_a_retry_cut_by_a_restart_waits_out_its_backoff_then_goes_on(
    pool: asyncpg.Pool, dsn: str, cut: str
) -> None:
    """A run handed back (or whose process died) during a retry's backoff: the next
    attempt ran as soon as the run was taken up again, the backoff cut short; it parks
    until the backoff's end (the failed attempt's end plus the backoff). And the attempt's
    stored error was read back as the node's final failure when the node had an ``on:
    failure`` edge, so the run took that edge with attempts left."""
    hits: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({}, status=503 if len(hits) == 1 else 200)

    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_DRAIN": "100ms"})
    async with serve_get("/flaky", flaky) as port:
        await apply_doc(pool, workflow("cut", [
            {"id": "call", "type": "http",
             "params": {"method": "GET", "url": f"http://127.0.0.1:{port}/flaky"},
             "retry": {"max_attempts": 3, "backoff": "5m", "retry_on": [503]}},
            {"id": "handled", "type": "noop"}],
            [{"from": "call", "to": "handled", "on": "failure"}]))
        execution_id = await fire(pool, "cut/manual")
        await stop_in_the_first_backoff(pool, dsn, settings, execution_id)
        if cut == "crash":
            # What a process that died during the backoff leaves: the run RUNNING under
            # its lease, which expires.
            await pool.execute(
                "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'dead',"
                " lease_expires_at = now() - interval '1 second' WHERE id = $1", execution_id)
        second = Executor(pool=pool, dsn=dsn, settings=settings)
        await second.start()
        try:
            parked = await wait_for(lambda: pool.fetchrow(
                "SELECT e.resume_at, n.end_time FROM workflow_executions e"
                " JOIN node_executions n ON n.execution_id = e.id AND n.attempt = 1"
                " WHERE e.id = $1 AND e.status = 'WAITING' AND e.attempt >= 2", execution_id))
            assert parked["resume_at"] == parked["end_time"] + timedelta(minutes=5)
            assert len(hits) == 1
            rows = [(r["attempt"], r["status"], r["branch"])
                    for r in await nodes_of(pool, execution_id)]
            assert rows == [(1, "ERROR", "retry")]
            # The backoff's end comes (moved here rather than waited for).
            await pool.execute(
                "UPDATE node_executions SET start_time = start_time - interval '5 minutes',"
                " end_time = end_time - interval '5 minutes' WHERE execution_id = $1",
                execution_id)
            await pool.execute("UPDATE workflow_executions SET resume_at = now() WHERE id = $1",
                               execution_id)
            row = await final_status(pool, execution_id)
        finally:
            await second.stop()
    assert row["status"] == "SUCCESS"
    rows = [(r["node_id"], r["attempt"], r["status"]) for r in await nodes_of(pool, execution_id)]
    assert rows == [("call", 1, "ERROR"), ("call", 2, "SUCCESS"), ("handled", 1, "SKIPPED")]
    assert len(hits) == 2


async def test_a_backoff_parked_after_a_restart_counts_toward_the_workflow_timeout(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """A backoff counts as working time, in the process or parked after a hand-back: the
    parked run wakes by its deadline, not at the backoff's end, and times out then."""

    async def down(request: web.Request) -> web.Response:
        return web.json_response({}, status=503)

    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_DRAIN": "100ms"})
    async with serve_get("/down", down) as port:
        await apply_doc(pool, workflow("cut-timeout", [
            {"id": "call", "type": "http",
             "params": {"method": "GET", "url": f"http://127.0.0.1:{port}/down"},
             "retry": {"max_attempts": 3, "backoff": "50m", "max_backoff": "1h",
                       "retry_on": [503]}}],
            timeout="1h"))
        execution_id = await fire(pool, "cut-timeout/manual")
        await stop_in_the_first_backoff(pool, dsn, settings, execution_id)
        second = Executor(pool=pool, dsn=dsn, settings=settings)
        await second.start()
        try:
            await wait_for(lambda: pool.fetchrow(
                "SELECT 1 FROM workflow_executions WHERE id = $1 AND status = 'WAITING'"
                " AND attempt >= 2", execution_id))
            # 20 minutes of the run's hour are left: it wakes then, before the backoff ends.
            await pool.execute(
                "UPDATE workflow_executions SET start_time = start_time - interval '40 minutes',"
                " resume_at = now() WHERE id = $1", execution_id)
            parked = await wait_for(lambda: pool.fetchrow(
                "SELECT e.resume_at, e.start_time, e.idle_ms FROM workflow_executions e"
                " WHERE e.id = $1 AND e.status = 'WAITING' AND e.attempt >= 3", execution_id))
            # (Plus the moment the run spent handed back between the two executors.)
            assert parked["resume_at"] == parked["start_time"] + timedelta(
                hours=1, milliseconds=parked["idle_ms"])
            # The deadline comes.
            await pool.execute(
                "UPDATE workflow_executions SET start_time = start_time - interval '1 hour',"
                " resume_at = now() WHERE id = $1", execution_id)
            row = await final_status(pool, execution_id)
        finally:
            await second.stop()
    assert (row["status"], row["error_code"]) == ("ERROR", "TIMEOUT")
    rows = [(r["attempt"], r["status"]) for r in await nodes_of(pool, execution_id)]
    assert rows == [(1, "ERROR")]


async def test_an_executor_started_again_after_a_stop_claims_runs(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """The stop's drain refused further claims and a start did not lift it: the started
    executor claimed nothing (and tests' "one more claim round" saw none)."""
    await executor.stop()
    await executor.start()
    await apply_doc(pool, workflow("again", [{"id": "a", "type": "noop"}]))
    execution_id = await fire(pool, "again/manual")
    assert (await final_status(pool, execution_id))["status"] == "SUCCESS"


async def test_expression_error_fails_node_with_text(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(
        pool,
        workflow(
            "badexpr",
            [{"id": "a", "type": "set", "params": {"value": "{{ input.missing.deeper }}"}}],
        ),
    )
    execution_id = await fire(pool, "badexpr/manual")
    row = await final_status(pool, execution_id)
    assert (row["status"], row["error_code"]) == ("ERROR", "EXPRESSION_ERROR")
    (node,) = await nodes_of(pool, execution_id)
    assert "input.missing.deeper" in node["error_message"]


async def test_an_optional_input_property_left_out_reads_as_absent(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """``input.t or 'x'`` failed every run without ``t`` (check passed it), though
    ``memory.x or ...`` works; a name the schema does not name still fails the run."""
    schema = {"type": "object", "properties": {"t": {"type": "string"}}}
    value = {"or": "{{ input.t or 'x' }}", "default": "{{ input.t | default('y') }}",
             "if": "{% if input.t == 'a' %}a{% else %}other{% endif %}"}
    doc = workflow("optional", [{"id": "a", "type": "set", "params": {"value": value}}],
                   parameter_schema=schema)
    assert check_documents([("f.yaml", doc)]) == []
    await apply_doc(pool, doc)
    left_out = await fire(pool, "optional/manual")
    row = await final_status(pool, left_out)
    assert (row["status"], row["output"]) == (
        "SUCCESS", {"or": "x", "default": "y", "if": "other"})
    given = await fire(pool, "optional/manual", {"t": "a"})
    row = await final_status(pool, given)
    assert row["output"] == {"or": "a", "default": "a", "if": "a"}
    await apply_doc(pool, workflow("undeclared", [{"id": "a", "type": "set", "params": {
        "value": "{{ input.u or 'x' }}"}}], parameter_schema=schema))
    row = await final_status(pool, await fire(pool, "undeclared/manual"))
    assert (row["status"], row["error_code"]) == ("ERROR", "EXPRESSION_ERROR")
    (node,) = await nodes_of(pool, str(row["id"]))
    assert node["error_message"] == ("expression \"{{ input.u or 'x' }}\" in value: undefined:"
                                     " 'dict object' has no attribute 'u'")


async def test_large_output_is_truncated_not_failed(pool: asyncpg.Pool, dsn: str) -> None:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_MAX_OUTPUT_BYTES": "1000"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    try:
        await apply_doc(
            pool,
            workflow("big", [{"id": "a", "type": "set", "params": {"value": "{{ 'x' * 5000 }}"}}]),
        )
        execution_id = await fire(pool, "big/manual")
        row = await final_status(pool, execution_id)
    finally:
        await ex.stop()
    assert row["status"] == "SUCCESS"
    assert row["output"]["_truncated"] is True
    assert row["output"]["size_bytes"] == 5002
    (node,) = await nodes_of(pool, execution_id)
    assert node["output"]["_truncated"] is True


async def test_a_failed_nodes_output_is_truncated_too(pool: asyncpg.Pool, dsn: str) -> None:
    # An http node's answer with a status it does not accept is stored with its failure:
    # it was stored whole, up to the node's 10 MiB, whatever max_output_bytes said.
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500, text="e" * 5000)

    settings = load_settings(environ={"TRIGGERD_EXECUTOR_MAX_OUTPUT_BYTES": "1000"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    try:
        async with serve_get("/down", refuse) as port:
            await apply_doc(pool, workflow("down", [{
                "id": "call", "type": "http",
                "params": {"url": f"http://127.0.0.1:{port}/down"}}]))
            execution_id = await fire(pool, "down/manual")
            row = await final_status(pool, execution_id)
    finally:
        await ex.stop()
    assert (row["status"], row["error_code"]) == ("ERROR", "HTTP_STATUS")
    (node,) = await nodes_of(pool, execution_id)
    assert (node["status"], node["error_code"]) == ("ERROR", "HTTP_STATUS")
    marker = node["output"]
    assert (marker["_truncated"], marker["limit_bytes"]) == (True, 1000)
    assert marker["size_bytes"] > 5000
    assert marker["preview"].startswith('{"status": 500')
    assert len(json.dumps(marker).encode()) <= 1000


async def test_wait_parks_run_without_a_worker_and_resumes(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(
        pool,
        workflow(
            "patient",
            [
                {"id": "pause", "type": "wait", "params": {"duration": "1s"}},
                {"id": "after", "type": "set", "params": {"value": "done"}},
                {"id": "seen", "type": "set", "params": {"value": "{{ nodes.pause.output }}"}},
            ],
            [{"from": "pause", "to": "after"}, {"from": "after", "to": "seen"}],
        ),
    )
    execution_id = await fire(pool, "patient/manual")

    async def parked() -> Any:
        row = await pool.fetchrow(
            "SELECT status, resume_at FROM workflow_executions WHERE id=$1", execution_id
        )
        return row if row["status"] == "WAITING" else None

    waiting = await wait_for(parked)
    assert waiting["resume_at"] is not None
    assert executor.in_progress == 0  # no worker held while waiting
    row = await final_status(pool, execution_id)
    assert row["status"] == "SUCCESS"
    pause = [r for r in await nodes_of(pool, execution_id) if r["node_id"] == "pause"]
    assert [(r["attempt"], r["status"]) for r in pause] == [(1, "SUCCESS")]
    # Its output as documented, {"until"}, stored and passed on: a real wait added the
    # runner's own "wait_until" note to both.
    assert list(pause[0]["output"]) == ["until"]
    assert list(row["output"]) == ["until"]


async def test_cancel_finished_run_is_refused(pool: asyncpg.Pool, executor: Executor) -> None:
    await apply_doc(pool, workflow("quick", [{"id": "a", "type": "noop"}]))
    execution_id = await fire(pool, "quick/manual")
    await final_status(pool, execution_id)
    with pytest.raises(Conflict) as info:
        await request_cancel(pool, execution_id)
    assert "already finished with status SUCCESS; nothing was changed" in str(info.value)
    row = await pool.fetchrow("SELECT status FROM workflow_executions WHERE id=$1", execution_id)
    assert row["status"] == "SUCCESS"


@contextlib.asynccontextmanager
async def slow_workflow(pool: asyncpg.Pool, key: str) -> AsyncIterator[None]:
    """A workflow ``key`` whose one http node waits 30 s on a loopback server."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async with serve_get("/slow", slow) as port:
        call = {"method": "GET", "url": f"http://127.0.0.1:{port}/slow", "timeout": "60s"}
        await apply_doc(pool, workflow(key, [{"id": "call", "type": "http", "params": call}]))
        yield


async def test_cancel_running_run(pool: asyncpg.Pool, executor: Executor) -> None:
    async with slow_workflow(pool, "slowpoke"):
        execution_id = await fire(pool, "slowpoke/manual")

        async def running() -> Any:
            return await pool.fetchval(
                "SELECT count(*) FROM node_executions WHERE execution_id=$1 AND status='RUNNING'",
                execution_id,
            )

        await wait_for(running)
        await request_cancel(pool, execution_id)
        row = await final_status(pool, execution_id)
    assert row["status"] == "CANCELED"
    (node,) = await nodes_of(pool, execution_id)
    assert node["status"] == "CANCELED"


async def test_a_cancel_heard_between_the_claim_and_the_start_cancels_the_run(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """The claim has committed (its rows said "no cancel") and the run has not started: it
    waits for its workflow version, which the claim reads next. A cancel heard meanwhile
    found no run to cancel and was lost: the run ran to SUCCESS."""
    await apply_doc(pool, workflow("late-cancel", [{"id": "a", "type": "noop"}]))
    execution_id = await fire(pool, "late-cancel/manual")
    own_pool = await db.create_pool(dsn, min_size=1, max_size=3)
    ex = Executor(pool=own_pool, dsn=dsn, settings=load_settings(environ={}))
    try:
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE workflow_versions IN ACCESS EXCLUSIVE MODE")
            await ex.start()

            async def claimed() -> bool:
                return bool(await pool.fetchval(
                    "SELECT status = 'RUNNING' FROM workflow_executions WHERE id = $1",
                    execution_id))

            await wait_for(claimed)
            # What request_cancel does to a RUNNING run (it reads the version table, which
            # is locked here): flag it, then tell the executors.
            await pool.execute("UPDATE workflow_executions SET cancel_requested = true"
                               " WHERE id = $1", execution_id)
            await pool.execute("SELECT pg_notify($1, $2)", CANCEL.wire, execution_id)

            async def heard() -> bool:
                return execution_id in ex._early_cancels

            await wait_for(heard)
        row = await final_status(pool, execution_id)
        assert row["status"] == "CANCELED"
        assert not ex._early_cancels
    finally:
        await ex.stop()
        await own_pool.close()


async def test_drain_hands_back_runs_from_a_claim_in_flight(pool: asyncpg.Pool, dsn: str) -> None:
    """Drain while a claim is waiting on the database: the runs that claim starts are
    handed back too, not left RUNNING under an owner that is about to exit."""
    async with slow_workflow(pool, "inflight"):
        execution_id = await fire(pool, "inflight/manual")
        own_pool = await db.create_pool(dsn, min_size=1, max_size=3)
        ex = Executor(pool=own_pool, dsn=dsn, settings=load_settings(environ={}))
        try:
            async with pool.acquire() as blocker, blocker.transaction():
                await blocker.execute("LOCK TABLE workflow_executions IN EXCLUSIVE MODE")
                await ex.start()
                await wait_until_blocked(pool, "WITH RECURSIVE\nlazy AS")  # the claim query
                drain = asyncio.create_task(ex.drain(timedelta(0)))
                await asyncio.sleep(0.1)
                assert not drain.done()  # it waits for the claim in flight
            assert await drain == 1
            row = await pool.fetchrow(
                "SELECT status, lease_owner FROM workflow_executions WHERE id = $1",
                execution_id,
            )
            assert (row["status"], row["lease_owner"]) == ("NEW", None)
        finally:
            await ex.stop()
            await own_pool.close()


async def test_retry_creates_linked_execution(pool: asyncpg.Pool, executor: Executor) -> None:
    await apply_doc(
        pool, workflow("again", [{"id": "a", "type": "set", "params": {"value": "{{ input.x }}"}}])
    )
    first = await fire(pool, "again/manual", {"x": 5})
    await final_status(pool, first)
    second = await retry_execution(pool, first)
    row = await final_status(pool, second)
    assert str(row["retry_of"]) == first
    assert row["input"] == {"x": 5} and row["output"] == 5


async def test_unknown_node_type_in_stored_graph(pool: asyncpg.Pool, executor: Executor) -> None:
    await apply_doc(pool, workflow("mutant", [{"id": "a", "type": "noop"}]))
    # Simulate a graph stored by a build with a node type this one lacks (bypass the
    # immutability trigger by publishing a new version row directly).
    await pool.execute(
        "UPDATE workflow_versions SET is_latest = false WHERE workflow_id ="
        " (SELECT id FROM workflows WHERE key = 'mutant')"
    )
    await pool.execute(
        "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest, published_at)"
        " SELECT id, 2, $1, true, now() FROM workflows WHERE key = 'mutant'",
        {"nodes": [{"id": "a", "type": "teleport"}], "edges": []},
    )
    row = await final_status(pool, await fire(pool, "mutant/manual"))
    assert (row["status"], row["error_code"]) == ("ERROR", "UNKNOWN_NODE_TYPE")


async def test_two_executors_share_work_and_run_each_once(pool: asyncpg.Pool, dsn: str) -> None:
    await apply_doc(
        pool,
        workflow(
            "shared",
            [{"id": "a", "type": "set", "params": {"value": 1}}, {"id": "b", "type": "noop"}],
            [{"from": "a", "to": "b"}],
        ),
    )
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_CONCURRENCY": "8"})
    executors = [Executor(pool=pool, dsn=dsn, settings=settings) for _ in range(2)]
    ids = [await fire(pool, "shared/manual") for _ in range(150)]
    for ex in executors:
        await ex.start()
    try:

        async def all_done() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE status = 'SUCCESS'"
            )
            return bool(n == len(ids))

        await wait_for(all_done, timeout=60)
    finally:
        for ex in executors:
            await ex.stop()
    counts = await pool.fetch(
        "SELECT execution_id, count(*) AS n, max(attempt) AS a FROM node_executions"
        " GROUP BY execution_id"
    )
    assert len(counts) == 150
    assert {(r["n"], r["a"]) for r in counts} == {(2, 1)}
    attempts = await pool.fetch("SELECT DISTINCT attempt FROM workflow_executions")
    assert [r["attempt"] for r in attempts] == [1]
    assert executors[0].stats["started"] + executors[1].stats["started"] == 150
    assert executors[0].stats["started"] > 0 and executors[1].stats["started"] > 0


async def test_retention_deletes_old_finished_runs_in_batches(pool: asyncpg.Pool) -> None:
    from triggerd.store.executions import release_expired_dedupe_keys, retention_batch

    await apply_doc(pool, workflow("old", [{"id": "a", "type": "noop"}]))
    ids = [await fire(pool, "old/manual") for _ in range(5)]
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', created_at = now() - interval"
        " '41 days', end_time = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
        ids[:3],
    )
    await pool.execute(
        "UPDATE workflow_executions SET status = 'ERROR', end_time = now() WHERE id = $1", ids[3]
    )
    await pool.execute(
        "UPDATE workflow_executions SET dedupe_key = 'webhook:x',"
        " dedupe_expires_at = now() - interval '1 second' WHERE id = $1",
        ids[4],
    )
    assert await retention_batch(pool, timedelta(days=30), batch=2) == 2
    assert await retention_batch(pool, timedelta(days=30), batch=2) == 1
    assert await retention_batch(pool, timedelta(days=30), batch=2) == 0
    left = {str(r["id"]) for r in await pool.fetch("SELECT id FROM workflow_executions")}
    assert left == set(ids[3:])  # the recent finished run and the NEW one stay
    assert await release_expired_dedupe_keys(pool) == 1
    assert (
        await pool.fetchval("SELECT dedupe_key FROM workflow_executions WHERE id = $1", ids[4])
        is None
    )


async def test_retention_keeps_test_runs_and_parents_of_running_children(
    pool: asyncpg.Pool,
) -> None:
    # A test run keeps [executor] test_retention (it was deleted at retention while its
    # scratch workflow stayed); a parent whose child still waits keeps the child's
    # parent_execution_id pointing at something.
    from triggerd.store.executions import retention_batch

    await apply_doc(pool, workflow("old", [{"id": "a", "type": "noop"}]))
    test, parent, child, plain = [await fire(pool, "old/manual") for _ in range(4)]
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', created_at = now() - interval"
        " '41 days', end_time = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
        [test, parent, plain])
    await pool.execute("UPDATE workflow_executions SET test = true WHERE id = $1", test)
    await pool.execute("UPDATE workflow_executions SET status = 'WAITING',"
                       " parent_execution_id = $2 WHERE id = $1", child, parent)
    assert await retention_batch(pool, timedelta(days=30)) == 1
    left = {str(r["id"]) for r in await pool.fetch("SELECT id FROM workflow_executions")}
    assert left == {test, parent, child}
    # Once the child ended, the parent goes.
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS', end_time = now()"
                       " WHERE id = $1", child)
    assert await retention_batch(pool, timedelta(days=30)) == 1
    left = {str(r["id"]) for r in await pool.fetch("SELECT id FROM workflow_executions")}
    assert left == {test, child}


async def test_a_missing_child_workflow_is_named_in_its_parents_tenant(
    pool: asyncpg.Pool
) -> None:
    """The child is looked up in the parent's tenant: the message said 'nope' bare, as if
    the default tenant had been searched."""
    from triggerd.store.subworkflows import start_child

    await apply_doc(pool, {"tenant": "acme", **workflow("caller", [{"id": "a", "type": "noop"}])})
    parent = await fire(pool, "caller/manual", tenant="acme")
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(NotFound) as caught:
            await start_child(conn, parent_id=parent, node_id="sub", key="nope",
                              version=None, run_input={}, max_depth=8)
    assert caught.value.message == "no workflow with key 'acme:nope'"


async def test_retention_keeps_an_old_child_while_its_parent_waits(pool: asyncpg.Pool) -> None:
    """The parent's workflow node reads its child's end when it goes on: deleted, the
    child was started a second time (its output lost)."""
    from triggerd.store.executions import retention_batch
    from triggerd.store.subworkflows import start_child

    await apply_doc(pool, workflow("old-parent", [{"id": "a", "type": "noop"}]))
    parent = await fire(pool, "old-parent/manual")
    async with pool.acquire() as conn, conn.transaction():
        child = await start_child(conn, parent_id=parent, node_id="sub", key="old-parent",
                                  version=None, run_input={}, max_depth=8)
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', output = '42',"
        " created_at = now() - interval '41 days', end_time = now() - interval '40 days'"
        " WHERE id = $1", child.id)
    await pool.execute("UPDATE workflow_executions SET status = 'WAITING',"
                       " created_at = now() - interval '41 days' WHERE id = $1", parent)
    assert await retention_batch(pool, timedelta(days=30)) == 0
    async with pool.acquire() as conn, conn.transaction():
        again = await start_child(conn, parent_id=parent, node_id="sub", key="old-parent",
                                  version=None, run_input={}, max_depth=8)
    assert (again.id, again.status, again.output) == (child.id, "SUCCESS", 42)
    # Once the parent ended, both go (the parent first, as a run with no live child).
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS',"
                       " end_time = now() - interval '40 days' WHERE id = $1", parent)
    assert await retention_batch(pool, timedelta(days=30)) == 2
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0


async def test_a_retention_pass_reads_the_old_runs_it_keeps_once(pool: asyncpg.Pool) -> None:
    """Old runs that retention keeps (parked for weeks) sit first in its index: each batch
    read them all again (227 ms a batch behind 100,000). A pass's batches go on from the
    last run deleted; the next pass starts over. Counted in the plan, not timed."""
    import json

    from triggerd.store.executions import _RETENTION, RetentionPositions, retention_batch

    await apply_doc(pool, workflow("kept", [{"id": "a", "type": "noop"}]))
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, status, created_at,"
        " end_time) SELECT w.id, 'manual', CASE WHEN i <= 300 THEN 'WAITING' ELSE 'SUCCESS'"
        " END, now() - interval '50 days' + i * interval '1 second',"
        " CASE WHEN i <= 300 THEN NULL ELSE now() - interval '40 days' END"
        " FROM workflows w, generate_series(1, 310) AS i")
    await pool.execute("ANALYZE workflow_executions")

    async def rows_read(positions: RetentionPositions) -> int:
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                # The plan of a big history (read in the index's order); 310 rows would
                # be read whole whatever the statement says.
                await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL"
                                   " enable_bitmapscan = off; SET LOCAL enable_sort = off")
                plan = await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + _RETENTION, 30 * 86_400_000, 2, [], [],
                    list(positions), [p[0] for p in positions.values()],
                    [p[1] for p in positions.values()])
            finally:
                await tx.rollback()
        found: list[int] = []

        def walk(node: dict[str, object]) -> None:
            if node.get("Index Name") == "workflow_executions_tenant_created":
                found.append(int(str(node["Actual Rows"]).split(".")[0])
                             + int(str(node.get("Rows Removed by Filter", 0))))
            for child in node.get("Plans", []):  # type: ignore[attr-defined]
                walk(child)
        walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        return sum(found)

    positions: RetentionPositions = {}
    assert await rows_read(positions) >= 300  # the first batch walks past the kept ones
    assert await retention_batch(pool, timedelta(days=30), 2, None, positions) == 2
    assert await rows_read(positions) <= 5  # the next batch of the pass does not
    deleted = [await retention_batch(pool, timedelta(days=30), 2, None, positions)
               for _ in range(5)]
    assert deleted == [2, 2, 2, 2, 0]
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 300


async def test_a_retention_batch_probes_active_runs_instead_of_reading_them_all(
    pool: asyncpg.Pool,
) -> None:
    """Statistics taken of a finished history say no run is active; webhooks stored since
    then are. The checks for a live parent and live children were planned as joins that
    read every active run once per candidate (1-3 s a batch behind 60,000 NEW runs, the
    retention loop's pace under ingest). Rows counted in the plan, not timed."""
    import json

    from triggerd.store.executions import _RETENTION, retention_batch

    await apply_doc(pool, workflow("busy", [{"id": "a", "type": "noop"}]))
    # 100 old finished runs, every other one a child of an old finished parent (the first).
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, status, created_at,"
        " end_time) SELECT w.id, 'manual', 'SUCCESS', now() - interval '50 days'"
        " + i * interval '1 second', now() - interval '40 days'"
        " FROM workflows w, generate_series(1, 100) AS i")
    await pool.execute(
        "UPDATE workflow_executions SET parent_execution_id = (SELECT id FROM"
        " workflow_executions ORDER BY created_at LIMIT 1) WHERE id IN (SELECT id FROM"
        " workflow_executions ORDER BY created_at OFFSET 1) AND extract(second FROM"
        " created_at)::int % 2 = 0")
    await pool.execute("ANALYZE workflow_executions")
    # Then 2,000 NEW runs: half plain (stored webhooks), half children of a recent run.
    recent = await fire(pool, "busy/manual")
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, parent_execution_id)"
        " SELECT w.id, 'manual', CASE WHEN i % 2 = 0 THEN $1::uuid END"
        " FROM workflows w, generate_series(1, 2000) AS i", recent)

    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # The plan of a big history (read in the index's order), as above.
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL"
                               " enable_bitmapscan = off; SET LOCAL enable_sort = off")
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + _RETENTION, 30 * 86_400_000, 50,
                [], [], [], [], [])
        finally:
            await tx.rollback()
    produced: list[int] = []

    def walk(node: dict[str, Any]) -> None:
        rows = float(str(node["Actual Rows"])) * float(str(node["Actual Loops"]))
        produced.append(int(rows))
        for child in node.get("Plans", []):
            walk(child)
    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    # About one row a node per candidate; a join against the active runs made 100,000.
    assert sum(produced) <= 20 * 50, sorted(produced)[-5:]
    assert await retention_batch(pool, timedelta(days=30), 50) == 50
    assert await retention_batch(pool, timedelta(days=30), 50) == 50
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = 'NEW'") == 2001


async def test_a_tenant_keeps_its_runs_for_its_own_retention(pool: asyncpg.Pool) -> None:
    """[tenants.NAME] retention: longer for one tenant, shorter for another, the default
    for the rest; only finished runs past their own tenant's cut go."""
    from triggerd.store.executions import retention_batch

    for tenant in ("default", "keeper", "brief"):
        await apply_doc(pool, {"tenant": tenant, **workflow("w", [{"id": "a", "type": "noop"}])})
    ages = {"default": [40, 10], "keeper": [40, 100], "brief": [10, 2]}
    for tenant, days in ages.items():
        for age in days:
            await pool.execute(
                "INSERT INTO workflow_executions (workflow_id, trigger_type, status, tenant_id,"
                " created_at, end_time) SELECT w.id, 'manual', 'SUCCESS', w.tenant_id,"
                " now() - make_interval(days => $2 + 1), now() - make_interval(days => $2)"
                " FROM workflows w WHERE w.tenant_id = $1", tenant, age)
    deleted = await retention_batch(pool, timedelta(days=30), 500,
                                    {"keeper": timedelta(days=365), "brief": timedelta(days=7)})
    assert deleted == 2
    left = await pool.fetch(
        "SELECT tenant_id, extract(day FROM now() - end_time)::int AS age"
        " FROM workflow_executions ORDER BY tenant_id, age")
    assert [(r["tenant_id"], r["age"]) for r in left] == [
        ("brief", 2), ("default", 10), ("keeper", 40), ("keeper", 100)]


@pytest.mark.parametrize(
    "template",
    ["{{ [1, 2, 3] }}", "{{ [[1, 2], [3]] }}", "{{ [] }}", "{{ [{'a': 1}, 'x'] }}"],
)
async def test_list_outputs_are_stored_and_passed_on(
    pool: asyncpg.Pool, executor: Executor, template: str
) -> None:
    # asyncpg reads a Python list inside a jsonb[] parameter as one more array dimension;
    # a node (or run) whose output is a JSON array must be stored as that array.
    await apply_doc(
        pool,
        workflow(
            "lists",
            [
                {"id": "a", "type": "set", "params": {"value": template}},
                {"id": "b", "type": "set", "params": {"value": "{{ nodes.a.output }}"}},
            ],
            [{"from": "a", "to": "b"}],
        ),
    )
    execution_id = await fire(pool, "lists/manual")
    row = await final_status(pool, execution_id)
    expected = eval(template[3:-3])  # noqa: S307 - the literal above, not input
    assert (row["status"], row["error_code"]) == ("SUCCESS", None)
    assert row["output"] == expected
    by_node = {n["node_id"]: n for n in await nodes_of(pool, execution_id)}
    assert by_node["a"]["output"] == expected
    assert by_node["b"]["input"] == {"value": expected}
    assert by_node["b"]["output"] == expected


async def test_rows_the_database_refuses_fail_only_their_own_write(pool: asyncpg.Pool) -> None:
    # Writes of concurrent runs share one transaction; one run's refused rows must not
    # fail the others' writes with it.
    from triggerd.executor.writer import ProgressWriter
    from triggerd.store.executions import NodeRow

    await apply_doc(pool, workflow("shared", [{"id": "a", "type": "noop"}]))
    good, bad = await fire(pool, "shared/manual"), await fire(pool, "shared/manual")
    # Held by the writer's owner, as a claim leaves them (only the lease's holder writes).
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'test',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = ANY($1::uuid[])",
        [good, bad])
    writer = ProgressWriter(pool=pool, owner="test", workers=1)  # one batch for both
    writer.start()
    try:
        results = await asyncio.gather(
            writer.write(
                nodes=[
                    NodeRow(
                        execution_id=good,
                        node_id="a",
                        node_type="noop",
                        status="SUCCESS",
                        attempt=1,
                        output=[1, 2],
                    )
                ]
            ),
            writer.write(
                nodes=[
                    NodeRow(
                        execution_id=bad, node_id="a", node_type="noop", status="BOGUS", attempt=1
                    )
                ]
            ),
            return_exceptions=True,
        )
    finally:
        await writer.stop()
    assert results[0] == set()
    assert isinstance(results[1], asyncpg.CheckViolationError)
    rows = await pool.fetch("SELECT execution_id, output FROM node_executions")
    assert [(str(r["execution_id"]), r["output"]) for r in rows] == [(good, [1, 2])]


async def _leased_run(pool: asyncpg.Pool) -> str:
    """A run of a one-node workflow, held by the owner 'test' as a claim leaves it (only
    the lease's holder writes its rows)."""
    await apply_doc(pool, workflow("ordered", [{"id": "a", "type": "noop"}]))
    run = await fire(pool, "ordered/manual")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'test',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = $1", run)
    return run


async def test_a_late_running_row_does_not_reopen_an_attempt_that_ended(
    pool: asyncpg.Pool,
) -> None:
    # A run canceled while its RUNNING row is being written (its deadline, a cancel
    # request) writes its CANCELED row next, and another writer's transaction may commit
    # that first: the late RUNNING row must not reopen the attempt, left open for ever.
    from triggerd.store.executions import NodeRow, write_progress

    run = await _leased_run(pool)

    def row(status: str, attempt: int = 1) -> NodeRow:
        return NodeRow(execution_id=run, node_id="a", node_type="noop", status=status,
                       attempt=attempt)

    async with pool.acquire() as conn:
        await write_progress(conn, "test", [row("CANCELED")], [])
        await write_progress(conn, "test", [row("RUNNING")], [])
        # A WAITING row goes on as RUNNING (a wait that ends), and a new attempt is its own.
        await write_progress(conn, "test", [row("WAITING", 2)], [])
        await write_progress(conn, "test", [row("RUNNING", 2)], [])
    rows = await pool.fetch("SELECT attempt, status FROM node_executions"
                            " WHERE execution_id = $1 ORDER BY attempt", run)
    assert [tuple(r) for r in rows] == [(1, "CANCELED"), (2, "RUNNING")]


async def test_a_runs_writes_commit_in_order_even_when_one_was_canceled(
    pool: asyncpg.Pool,
) -> None:
    # A run canceled while a write of its rows waits (here behind an operator's lock on
    # the previous node's row) writes its CANCELED row and final state next. Committed
    # first in another worker's transaction, they ended the run and the held write was then
    # refused: the previous node's SUCCESS row was lost, left RUNNING for ever.
    from triggerd.executor.writer import ProgressWriter
    from triggerd.store.executions import ExecutionUpdate, NodeRow

    run = await _leased_run(pool)
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt)"
        " VALUES ($1, 'prev', 'http', 'RUNNING', 1)", run)

    def row(node: str, status: str) -> NodeRow:
        return NodeRow(execution_id=run, node_id=node, node_type="noop", status=status,
                       attempt=1)

    writer = ProgressWriter(pool=pool, owner="test", workers=3)
    writer.start()
    try:
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("SELECT FROM node_executions WHERE execution_id = $1"
                                  " AND node_id = 'prev' FOR UPDATE", run)
            held = asyncio.create_task(writer.write(nodes=[row("prev", "SUCCESS"),
                                                           row("a", "RUNNING")]))
            await wait_until_blocked(pool, "INSERT INTO node_executions")
            held.cancel()
            final = asyncio.create_task(writer.write(
                nodes=[row("a", "CANCELED")],
                finished=[ExecutionUpdate(id=run, status="CANCELED", error_code="CANCELED")]))
            for _ in range(30):  # time for the final write to commit, were it not held back
                await asyncio.sleep(0.01)
            assert not final.done()
        assert await final == {run}
    finally:
        await writer.stop()
    rows = await pool.fetch("SELECT node_id, status FROM node_executions"
                            " WHERE execution_id = $1 ORDER BY node_id", run)
    assert [tuple(r) for r in rows] == [("a", "CANCELED"), ("prev", "SUCCESS")]


async def test_a_run_that_crashes_ends_as_internal_error_instead_of_looping(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug (here: injected) would crash the run again on every claim after its lease
    # expires; it ends ERROR with a code that says so, the exception's text kept out.
    from triggerd.executor import runner

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault holding s3cr3t data")

    monkeypatch.setattr(runner, "output_copies", broken)
    await apply_doc(pool, workflow("crashy", [{"id": "a", "type": "noop"}]))
    execution_id = await fire(pool, "crashy/manual")
    row = await final_status(pool, execution_id)
    assert (row["status"], row["error_code"], row["error_message"]) == (
        "ERROR",
        "INTERNAL_ERROR",
        "internal error (RuntimeError); see the daemon's log",
    )
    assert row["lease_owner"] is None


async def test_a_run_cut_off_from_the_database_is_a_warning_not_a_crash(
    pool: asyncpg.Pool, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database restart under a running run logged "execution crashed" at error level with
    a traceback; it is an interruption (taken up again when its lease ends)."""
    from tests.integration.test_webhooks_outage import PgProxy

    gate = asyncio.Event()

    async def wait(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response()

    proxy = PgProxy(dsn)
    await proxy.start()
    own_pool = await db.create_pool(proxy.dsn, min_size=1, max_size=4)
    ex = Executor(pool=own_pool, dsn=dsn, settings=load_settings(environ={
        "TRIGGERD_EXECUTOR_DRAIN": "1s"}))
    try:
        async with serve_get("/gate", wait) as port:
            await apply_doc(pool, workflow("cut", [{"id": "call", "type": "http", "params": {
                "url": f"http://127.0.0.1:{port}/gate", "method": "GET"}}]))
            execution_id = await fire(pool, "cut/manual")
            await ex.start()

            async def running() -> bool:
                return bool(await pool.fetchval(
                    "SELECT count(*) FROM node_executions WHERE execution_id = $1"
                    " AND status = 'RUNNING'", execution_id))

            await wait_for(running)
            await proxy.stop()
            with caplog.at_level(logging.WARNING, logger="triggerd.executor.service"):
                gate.set()

                async def interrupted() -> bool:
                    return any(getattr(r, "event", None) == "execution_interrupted"
                               for r in caplog.records)

                await wait_for(interrupted, timeout=20.0)
            assert not [r for r in caplog.records
                        if getattr(r, "event", None) == "execution_crashed"]
            assert await pool.fetchval("SELECT status FROM workflow_executions WHERE id = $1",
                                       execution_id) == "RUNNING"  # its lease decides
    finally:
        with contextlib.suppress(Exception):
            await ex.stop()
        own_pool.terminate()


async def test_a_crashed_run_leaves_no_node_row_running(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node with side effects has its RUNNING row written before it runs; the crash
    after it left that row RUNNING under a run that had ended."""
    from triggerd.executor import runner

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(runner, "output_copies", broken)
    await apply_doc(pool, workflow("crashy-wait", [
        {"id": "w", "type": "wait", "params": {"duration": "10ms"}}]))
    execution_id = await fire(pool, "crashy-wait/manual")
    row = await final_status(pool, execution_id)
    assert (row["status"], row["error_code"]) == ("ERROR", "INTERNAL_ERROR")
    nodes = await nodes_of(pool, execution_id)
    assert nodes, "the wait node's row was written"
    assert [(n["status"], n["error_code"]) for n in nodes] == [("ERROR", "INTERNAL_ERROR")]


async def test_values_derived_from_secrets_are_masked_in_rows_and_logs(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redaction matched exact values only: `| upper`, slices and joins were stored and
    # logged in clear.
    import logging

    from triggerd.logs import SECRETS_FILTER

    secret = "s3cr3t-value-0123456789"
    monkeypatch.setenv("TRIGGERD_TEST_TOKEN", secret)
    derived = {
        "upper": "{{ secrets.API_TOKEN | upper }}",
        "prefix": "{{ secrets.API_TOKEN[:10] }}",
        "joined": "{{ ['x', secrets.API_TOKEN] | join('-') }}",
        "reversed": "{{ secrets.API_TOKEN | reverse | join }}",
        "mixed": "Bearer {{ secrets.API_TOKEN }} {{ secrets.API_TOKEN | upper }}",
        "replaced": "{{ secrets.API_TOKEN | replace('-', '+') }}",
    }
    clear = {
        "upper": secret.upper(),
        "prefix": secret[:10],
        "joined": f"x-{secret}",
        "reversed": secret[::-1],
        "mixed": f"Bearer {secret} {secret.upper()}",
        "replaced": secret.replace("-", "+"),
    }
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage() + repr(vars(record)))

    handler = Capture()
    handler.addFilter(SECRETS_FILTER)
    logging.getLogger("triggerd").addHandler(handler)
    try:
        await apply_doc(
            pool,
            workflow(
                "derived",
                [
                    {"id": "make", "type": "set", "params": {"value": derived}},
                    {"id": "say", "type": "log",
                     "params": {"message": "token {{ secrets.API_TOKEN | upper }}",
                                "level": "warning"}},
                    {"id": "pass", "type": "set", "params": {"value": "{{ nodes.make.output }}"}},
                    {"id": "check", "type": "set", "params": {"value": {
                        k: "{{ nodes.make.output." + k + " == '" + v + "' }}"
                        for k, v in clear.items() if "'" not in v
                    }}},
                ],
                [{"from": "make", "to": "say"}, {"from": "say", "to": "pass"},
                 {"from": "pass", "to": "check"}],
                secrets={"API_TOKEN": {"env": "TRIGGERD_TEST_TOKEN"}},
            ),
        )
        execution_id = await fire(pool, "derived/manual")
        row = await final_status(pool, execution_id)
    finally:
        logging.getLogger("triggerd").removeHandler(handler)
    assert (row["status"], row["error_message"]) == ("SUCCESS", None)
    by_node = {n["node_id"]: n for n in await nodes_of(pool, execution_id)}
    # The real values flowed through the run...
    assert all(by_node["check"]["output"].values()), by_node["check"]["output"]
    # ...but none was stored or logged.
    dump = str(await pool.fetch("SELECT input, output, error_message FROM node_executions"))
    dump += str(row["output"]) + "\n".join(lines)
    assert lines, "the log node wrote nothing"
    for value in [secret, *clear.values()]:
        assert value not in dump, value
    assert by_node["make"]["output"]["upper"] == "***"
    # The run's own log filter masked them, the daemon-wide one did not learn them: it
    # kept every value of every run (a secret mixed with per-run text is a new one each
    # run) and scanned each log line for all of them, for as long as the process ran.
    assert not SECRETS_FILTER.redactor.secrets & {*clear.values()}


@pytest.mark.parametrize(
    ("node", "field"),
    [
        # A fail node's rendered code was stored in clear in the node row, the run's
        # error_code and an on_failure run's input.
        ({"id": "a", "type": "fail", "params": {"code": "{{ secrets.API_TOKEN }}"}},
         "error_code"),
        # The http node quoted the method upper-cased, which the redactor did not know.
        ({"id": "a", "type": "http",
          "params": {"url": "http://127.0.0.1:9/", "method": "{{ secrets.API_TOKEN }}"}},
         "error_message"),
    ],
)
async def test_a_failure_built_from_a_secret_is_stored_masked(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch,
    node: dict[str, object], field: str,
) -> None:
    secret = "supersecrettoken"
    monkeypatch.setenv("TRIGGERD_TEST_TOKEN", secret)
    await apply_doc(pool, workflow("leaks", [node],
                                   secrets={"API_TOKEN": {"env": "TRIGGERD_TEST_TOKEN"}}))
    execution_id = await fire(pool, "leaks/manual")
    row = await final_status(pool, execution_id)
    assert row["status"] == "ERROR"
    assert "***" in row[field], row[field]
    dump = str(await pool.fetch("SELECT error_code, error_message FROM node_executions"))
    dump += str(await pool.fetch("SELECT error_code, error_message FROM workflow_executions"))
    assert secret not in dump.lower(), dump


async def test_node_rows_follow_their_execution_without_a_foreign_key(
    pool: asyncpg.Pool,
) -> None:
    """Migration 0028: node rows are written only for an execution that exists (the write
    locks it, as the foreign key did), and go when their execution is deleted."""
    from datetime import UTC, datetime

    from triggerd.store.executions import NodeRow, write_progress

    await apply_doc(pool, workflow("fk", [{"id": "a", "type": "noop"}]))
    kept, deleted = await fire(pool, "fk/manual"), await fire(pool, "fk/manual")
    now = datetime.now(UTC)
    rows = [NodeRow(execution_id=e, node_id=n, node_type="noop", status="SUCCESS", attempt=1,
                    start_time=now, end_time=now)
            for e in (kept, deleted) for n in ("a", "b")]
    await pool.execute("DELETE FROM workflow_executions WHERE id = $1", deleted)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'owner'"
                       " WHERE id = $1", kept)
    lost: set[str] = set()
    async with pool.acquire() as conn:
        assert await write_progress(conn, "owner", rows, [], lost) == set()
    assert lost == {deleted}
    stored = await pool.fetch(
        "SELECT execution_id::text AS e, node_id FROM node_executions ORDER BY node_id")
    assert [(r["e"], r["node_id"]) for r in stored] == [(kept, "a"), (kept, "b")]
    constraints = await pool.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'node_executions'::regclass"
        " AND contype = 'f'")
    assert constraints == 0
    await pool.execute("DELETE FROM workflow_executions WHERE id = $1", kept)
    assert await pool.fetchval("SELECT count(*) FROM node_executions") == 0


async def test_a_process_that_lost_the_lease_writes_nothing_and_runs_no_further_node(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """A process stopped past its lease (SIGSTOP, a starved loop) while another took the run
    up: when it goes on, its writes are refused (they overwrote the new owner's rows of the
    same attempts) and the run's next node, a side effect, is not sent from it."""
    release = asyncio.Event()
    calls: list[str] = []

    async def step(request: web.Request) -> web.Response:
        calls.append(request.match_info["n"])
        if request.match_info["n"] == "1":
            await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/step/{n}", step)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        nodes = [{"id": f"n{n}", "type": "http",
                  "params": {"method": "GET", "url": f"http://127.0.0.1:{port}/step/{n}"}}
                 for n in (1, 2)]
        await apply_doc(pool, workflow("stolen", nodes, [{"from": "n1", "to": "n2"}]))
        execution_id = await fire(pool, "stolen/manual")
        await wait_for(lambda: asyncio.sleep(0, calls))
        # Another replica took the run up after this one's lease ran out, and wrote its
        # own row for n1's attempt 1.
        await pool.execute(
            "UPDATE workflow_executions SET lease_owner = 'other-replica',"
            " lease_expires_at = now() + interval '1 hour' WHERE id = $1", execution_id)
        await pool.execute(
            "UPDATE node_executions SET status = 'SUCCESS', output = '\"theirs\"',"
            " end_time = now() WHERE execution_id = $1 AND node_id = 'n1'", execution_id)
        release.set()  # this process goes on
        await wait_for(lambda: asyncio.sleep(0, executor.in_progress == 0))
    finally:
        await runner.cleanup()
    assert calls == ["1"]  # n2 was not called from here
    row = await pool.fetchrow(
        "SELECT status, lease_owner FROM workflow_executions WHERE id = $1", execution_id)
    assert (row["status"], row["lease_owner"]) == ("RUNNING", "other-replica")
    (node,) = await nodes_of(pool, execution_id)
    assert (node["node_id"], node["status"], node["output"]) == ("n1", "SUCCESS", "theirs")
    assert executor.stats["ERROR"] == 0  # not failed as a crash either


async def test_a_reload_applies_tenants_and_public_url_to_the_executor(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    """[tenants.NAME] retention and executor_share and [http] public_url were read from
    the start-up settings for ever (a reload said nothing); the port in force stays."""
    start = load_settings(environ={"TRIGGERD_HTTP_PORT": "8080"})
    executor = Executor(pool=pool, dsn=dsn, settings=start)
    config = tmp_path / "triggerd.toml"
    config.write_text('[http]\nport = 9090\npublic_url = "https://hooks.example.com/"\n'
                      '[tenants.default]\nretention = "1h"\n')
    new = load_settings(config, environ={})
    assert [t.retention for t in new.tenants] == [timedelta(hours=1)]
    executor.apply_settings(new)
    assert executor.settings.tenants == new.tenants
    assert executor.settings.http.base_url == "https://hooks.example.com"
    assert executor.settings.http.port == 8080
    executor.apply_settings(load_settings(environ={"TRIGGERD_HTTP_PORT": "9090"}))
    assert executor.settings.http.base_url == "http://127.0.0.1:8080"


async def test_a_secret_made_a_number_is_not_stored(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `{{ secrets.PIN | int }}` (a PIN sent as a JSON number) was stored in the node's
    # input and output, and in every later node's that passed it on: only strings were
    # masked.
    monkeypatch.setenv("TRIGGERD_TEST_PIN", "98765432")
    await apply_doc(
        pool,
        workflow(
            "pin",
            [
                {"id": "make", "type": "set",
                 "params": {"value": {"pin": "{{ secrets.PIN | int }}",
                                      "next": "{{ secrets.PIN | int + 1 }}"}}},
                {"id": "pass", "type": "set", "params": {"value": "{{ nodes.make.output }}"}},
                {"id": "check", "type": "set",
                 "params": {"value": "{{ nodes.pass.output.pin == 98765432 }}"}},
            ],
            [{"from": "make", "to": "pass"}, {"from": "pass", "to": "check"}],
            secrets={"PIN": {"env": "TRIGGERD_TEST_PIN"}},
        ),
    )
    execution_id = await fire(pool, "pin/manual")
    row = await final_status(pool, execution_id)
    assert (row["status"], row["error_message"]) == ("SUCCESS", None)
    by_node = {n["node_id"]: n for n in await nodes_of(pool, execution_id)}
    assert by_node["check"]["output"] is True  # the real number flowed through the run
    assert by_node["pass"]["output"] == {"pin": "***", "next": "***"}
    dump = str(await pool.fetch(
        "SELECT input, output, error_message FROM node_executions WHERE execution_id = $1",
        execution_id)) + str(row["output"])
    assert "98765432" not in dump and "98765433" not in dump


def room_again_after_a_claim(executor: Executor) -> Callable[[], Awaitable[bool]]:
    async def room_again() -> bool:
        granted = executor.take_slots(1)
        executor.adopt([], granted)
        return granted == 1

    return room_again


async def test_room_for_runs_stored_here_waits_behind_a_queue(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """Runs are taken up where they are stored only while no queue is known to wait:
    runs announced as queued (here without room, or by another process) go first, until
    a claim finds the queue empty again. Room is bounded by concurrency, and room given
    to a batch that stored nothing comes back."""

    # The start's claims found nothing queued, due or held.
    await wait_for(room_again_after_a_claim(executor), timeout=10)
    granted = executor.take_slots(5)
    assert granted == 5
    executor.adopt([], granted)  # the batch stored none of them: the room comes back
    everything = executor.settings.executor.concurrency
    assert executor.take_slots(everything + 10) == everything
    assert executor.take_slots(1) == 0  # all of it promised
    executor.adopt([], everything)

    executor._on_notify("3")  # runs were queued: they go first
    assert executor.take_slots(5) == 0
    await wait_for(room_again_after_a_claim(executor), timeout=10)
    # A parked run that is due (or held runs let go) goes first too, until a claim took it.
    executor._on_notify(DUE)
    assert executor.take_slots(5) == 0
    await wait_for(room_again_after_a_claim(executor), timeout=10)  # the claim it woke


async def test_plain_runs_waiting_sees_only_what_a_claim_would_take(pool: asyncpg.Pool) -> None:
    """The look that tells an executor whether a short claim left runs behind."""
    await apply_doc(pool, workflow("waiting", [{"id": "a", "type": "noop"}]))
    assert not await store_executions.plain_runs_waiting(pool)
    run = await fire(pool, "waiting/manual")
    assert await store_executions.plain_runs_waiting(pool)
    # Held back (a debounce time, a concurrency key) or a test run: not a claim's to take.
    for held in ("not_before = now() + interval '1 hour'",
                 "concurrency_key = 'k', concurrency_limit = 1",
                 "test = true"):
        await pool.execute(f"UPDATE workflow_executions SET {held} WHERE id = $1", run)
        assert not await store_executions.plain_runs_waiting(pool), held
        await pool.execute("UPDATE workflow_executions SET not_before = NULL,"
                           " concurrency_key = NULL, concurrency_limit = NULL, test = false"
                           " WHERE id = $1", run)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING' WHERE id = $1", run)
    assert not await store_executions.plain_runs_waiting(pool)
