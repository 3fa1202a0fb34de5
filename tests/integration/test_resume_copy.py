"""Resume copies of node outputs (issue 12 item 1): a run resumed after a ``wait`` sees the
same node outputs as a run that never stopped, although the stored display copy of an
output is truncated or redacted. The copies are encrypted, and gone once the run ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import apply_doc, final_status, fire, serve_get, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.store.executions import drop_stale_resume_copies

BIG = "{{ ['x' * 999999] * 3 }}"
# What a later node computes from the big output: its length, an item's length, a value.
SUMMARY = {
    "count": "{{ nodes.s.output | length }}",
    "first": "{{ nodes.s.output[0] | length }}",
    "tail": "{{ nodes.s.output[2][-3:] }}",
}
SECRET = "hunter2-very-secret"


def workflow(
    key: str, value: Any, summary: Any, *, wait: bool, duration: str = "1s", **extra: Any
) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "s", "type": "set", "params": {"value": value}}]
    edges: list[dict[str, str]] = []
    if wait:
        nodes.append({"id": "pause", "type": "wait", "params": {"duration": duration}})
        edges += [{"from": "s", "to": "pause"}, {"from": "pause", "to": "t"}]
    else:
        edges.append({"from": "s", "to": "t"})
    nodes.append({"id": "t", "type": "set", "params": {"value": summary}})
    return {
        "workflows": [
            {
                "key": key,
                "name": key,
                "graph": {"nodes": nodes, "edges": edges},
                "triggers": [{"name": "manual", "type": "manual"}],
                **extra,
            }
        ]
    }


def executor_for(pool: asyncpg.Pool, dsn: str, state_dir: Path, **env: str) -> Executor:
    settings = load_settings(
        environ={
            "TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
            "TRIGGERD_EXECUTOR_DRAIN": "1s",
            "TRIGGERD_DAEMON_STATE_DIR": str(state_dir),
            **env,
        }
    )
    return Executor(pool=pool, dsn=dsn, settings=settings)


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str, tmp_path: Path) -> AsyncIterator[Executor]:
    ex = executor_for(pool, dsn, tmp_path / "state")
    await ex.start()
    yield ex
    await ex.stop()


async def resume_rows(pool: asyncpg.Pool, execution_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT node_id, attempt, ciphertext FROM node_outputs_resume"
            " WHERE execution_id = $1 ORDER BY node_id",
            execution_id,
        )
    )


async def parked(pool: asyncpg.Pool, execution_id: str) -> None:
    async def check() -> bool:
        status = await pool.fetchval(
            "SELECT status FROM workflow_executions WHERE id = $1", execution_id
        )
        return bool(status == "WAITING")

    await wait_for(check)


async def test_large_output_after_a_wait_is_what_the_uninterrupted_run_saw(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, workflow("straight", BIG, SUMMARY, wait=False))
    await apply_doc(pool, workflow("waiting", BIG, SUMMARY, wait=True))
    straight = await final_status(pool, await fire(pool, "straight/manual"))
    assert straight["status"] == "SUCCESS", straight["error_message"]
    assert straight["output"] == {"count": 3, "first": 999999, "tail": "xxx"}

    execution_id = await fire(pool, "waiting/manual")
    await parked(pool, execution_id)
    # While parked: the display copy is the truncation marker, the resume copy is kept.
    display = await pool.fetchval(
        "SELECT output FROM node_executions WHERE execution_id = $1 AND node_id = 's'",
        execution_id,
    )
    assert display["_truncated"] is True
    assert [(r["node_id"], r["attempt"]) for r in await resume_rows(pool, execution_id)] == [
        ("s", 1)
    ]
    waited = await final_status(pool, execution_id)
    assert waited["status"] == "SUCCESS", waited["error_message"]
    assert waited["output"] == straight["output"]
    assert await resume_rows(pool, execution_id) == []  # gone once the run ended


async def test_secret_in_an_output_after_a_wait_is_the_real_value(
    pool: asyncpg.Pool, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERD_TEST_RESUME_SECRET", SECRET)
    secrets = {"TOKEN": {"env": "TRIGGERD_TEST_RESUME_SECRET"}}
    value = {"auth": "Bearer {{ secrets.TOKEN }}"}
    summary = {
        "same": "{{ nodes.s.output.auth == 'Bearer ' ~ secrets.TOKEN }}",
        "length": "{{ nodes.s.output.auth | length }}",
    }
    await apply_doc(pool, workflow("plain", value, summary, wait=False, secrets=secrets))
    await apply_doc(pool, workflow("patient", value, summary, wait=True, secrets=secrets))
    straight = await final_status(pool, await fire(pool, "plain/manual"))
    assert straight["output"] == {"same": True, "length": len("Bearer " + SECRET)}

    execution_id = await fire(pool, "patient/manual")
    await parked(pool, execution_id)
    (row,) = await resume_rows(pool, execution_id)
    # The resume copy is encrypted: neither the secret nor the output's text is in it.
    assert SECRET.encode() not in row["ciphertext"]
    assert b"Bearer" not in row["ciphertext"]
    waited = await final_status(pool, execution_id)
    assert waited["status"] == "SUCCESS", waited["error_message"]
    assert waited["output"] == straight["output"]
    display = await pool.fetchval(
        "SELECT output FROM node_executions WHERE execution_id = $1 AND node_id = 's'",
        execution_id,
    )
    assert display == {"auth": "Bearer ***"}  # what is shown stays redacted
    assert await resume_rows(pool, execution_id) == []


async def test_small_outputs_without_secrets_get_no_resume_copy(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    small = {"n": "{{ 1 + 2 }}", "text": "plain"}
    await apply_doc(pool, workflow("small", small, "{{ nodes.s.output }}", wait=True))
    execution_id = await fire(pool, "small/manual")
    await parked(pool, execution_id)
    assert await resume_rows(pool, execution_id) == []
    row = await final_status(pool, execution_id)
    assert (row["status"], row["output"]) == ("SUCCESS", {"n": 3, "text": "plain"})


async def test_output_above_the_hard_cap_fails_the_node_at_once(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    ex = executor_for(
        pool, dsn, tmp_path / "state", TRIGGERD_EXECUTOR_MAX_RESUME_OUTPUT_BYTES="100000"
    )
    await ex.start()
    try:
        await apply_doc(pool, workflow("huge", "{{ 'x' * 200000 }}", "unreached", wait=False))
        execution_id = await fire(pool, "huge/manual")
        row = await final_status(pool, execution_id)
    finally:
        await ex.stop()
    assert (row["status"], row["error_code"]) == ("ERROR", "OUTPUT_TOO_LARGE")
    message = (
        "output of node 's' is 200002 bytes, above [executor] max_resume_output_bytes"
        " (100000 bytes)"
    )
    assert row["error_message"] == f"node 's' failed: {message}"
    node = await pool.fetchrow(
        "SELECT attempt, status, error_code, error_message, output"
        " FROM node_executions WHERE execution_id = $1 AND node_id = 's'",
        execution_id,
    )
    assert tuple(node) == (1, "ERROR", "OUTPUT_TOO_LARGE", message, None)
    assert await resume_rows(pool, execution_id) == []


async def test_a_replica_with_another_key_fails_the_run_clearly(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    await apply_doc(pool, workflow("keyed", BIG, SUMMARY, wait=True))
    first = executor_for(pool, dsn, tmp_path / "first")
    await first.start()
    try:
        execution_id = await fire(pool, "keyed/manual")
        await parked(pool, execution_id)
    finally:
        await first.stop()
    second = executor_for(pool, dsn, tmp_path / "second")  # a key of its own
    await second.start()
    try:
        row = await final_status(pool, execution_id)
    finally:
        await second.stop()
    assert (row["status"], row["error_code"]) == ("ERROR", "RESUME_KEY_MISMATCH")
    assert row["error_message"] == (
        "the resume copy of node 's' was encrypted with another key than this process's"
        " (key id " + first.resume_key_id + ", this process has " + second.resume_key_id
        + "); every replica must use the same [executor] resume_key_file"
    )
    assert await resume_rows(pool, execution_id) == []


async def test_deleting_an_execution_deletes_its_resume_copies(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, workflow("dropped", BIG, SUMMARY, wait=True))
    execution_id = await fire(pool, "dropped/manual")
    await parked(pool, execution_id)
    assert len(await resume_rows(pool, execution_id)) == 1
    await pool.execute("DELETE FROM workflows WHERE key = 'dropped'")
    assert await resume_rows(pool, execution_id) == []


async def test_canceling_a_waiting_run_deletes_its_resume_copies(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    from triggerd.store.executions import request_cancel

    await apply_doc(pool, workflow("stopped", BIG, SUMMARY, wait=True))
    execution_id = await fire(pool, "stopped/manual")
    await parked(pool, execution_id)
    assert len(await resume_rows(pool, execution_id)) == 1
    record = await request_cancel(pool, execution_id)
    assert record.status == "CANCELED"
    assert await resume_rows(pool, execution_id) == []


async def test_a_handed_back_run_continues_with_the_real_output(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    """Drain hands the run back while an http node after ``s`` runs; the next executor
    (same state directory, so the same key) continues with s's whole output."""
    hits: list[int] = []
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        hits.append(1)
        if len(hits) == 1:
            await asyncio.wait_for(release.wait(), 30)
        return web.json_response({})

    async with serve_get("/slow", slow) as port:
        call = {"method": "GET", "url": f"http://127.0.0.1:{port}/slow"}
        await apply_doc(
            pool,
            {
                "workflows": [
                    {
                        "key": "handed",
                        "name": "handed",
                        "graph": {
                            "nodes": [
                                {"id": "s", "type": "set", "params": {"value": BIG}},
                                {"id": "call", "type": "http", "params": call},
                                {"id": "t", "type": "set", "params": {"value": SUMMARY}},
                            ],
                            "edges": [{"from": "s", "to": "call"}, {"from": "call", "to": "t"}],
                        },
                        "triggers": [{"name": "manual", "type": "manual"}],
                    }
                ]
            },
        )
        first = executor_for(pool, dsn, tmp_path / "state")
        await first.start()
        try:
            execution_id = await fire(pool, "handed/manual")

            async def called() -> bool:
                return bool(hits)

            await wait_for(called)
            assert await first.drain(timedelta(0)) == 1
        finally:
            await first.stop()
            release.set()
        status = await pool.fetchval(
            "SELECT status FROM workflow_executions WHERE id = $1", execution_id
        )
        assert status == "NEW"
        assert [r["node_id"] for r in await resume_rows(pool, execution_id)] == ["s"]
        second = executor_for(pool, dsn, tmp_path / "state")
        await second.start()
        try:
            row = await final_status(pool, execution_id)
        finally:
            await second.stop()
    assert (row["status"], row["error_message"]) == ("SUCCESS", None)
    assert row["output"] == {"count": 3, "first": 999999, "tail": "xxx"}
    assert await resume_rows(pool, execution_id) == []


async def test_copies_left_by_other_paths_are_swept(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """Runs that ended by a path that did not drop their copies, and copies whose run is
    gone, are deleted by the retention sweep; a waiting run keeps its copy."""
    await apply_doc(pool, workflow("swept", BIG, SUMMARY, wait=True, duration="1h"))
    await apply_doc(pool, workflow("done", BIG, SUMMARY, wait=False))
    waiting = await fire(pool, "swept/manual")
    await parked(pool, waiting)
    ended = await fire(pool, "done/manual")
    await final_status(pool, ended)
    gone = "00000000-0000-0000-0000-000000000001"
    await pool.execute(
        "INSERT INTO node_outputs_resume (execution_id, node_id, attempt, ciphertext)"
        " VALUES ($1, 's', 1, 'x'), ($2, 's', 1, 'x')",
        ended,
        gone,
    )
    async with pool.acquire() as conn:
        assert await drop_stale_resume_copies(conn) == 2
        assert await drop_stale_resume_copies(conn) == 0
    left = await pool.fetch("SELECT execution_id::text FROM node_outputs_resume")
    assert [r["execution_id"] for r in left] == [waiting]


async def test_truncated_output_without_a_copy_fails_the_resumed_run(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    """A run parked by a build without resume copies: its truncated output is not passed
    on as if it were the value. The parked state is written directly."""
    await apply_doc(pool, workflow("legacy", BIG, SUMMARY, wait=True))
    execution_id = await fire(pool, "legacy/manual")
    marker = {"_truncated": True, "size_bytes": 3000008, "limit_bytes": 1048576, "preview": "["}
    await pool.execute(
        "UPDATE workflow_executions SET status = 'WAITING', resume_at = now(), attempt = 1,"
        " start_time = now() WHERE id = $1",
        execution_id,
    )
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt, output)"
        " VALUES ($1, 's', 'set', 'SUCCESS', 1, $2),"
        " ($1, 'pause', 'wait', 'WAITING', 1, $3)",
        execution_id,
        marker,
        {"wait_until": "2000-01-01T00:00:00+00:00", "until": "2000-01-01T00:00:00+00:00"},
    )
    ex = executor_for(pool, dsn, tmp_path / "state")  # started once the state is written
    await ex.start()
    try:
        row = await final_status(pool, execution_id)
    finally:
        await ex.stop()
    assert (row["status"], row["error_code"], row["error_message"]) == (
        "ERROR",
        "RESUME_COPY_MISSING",
        "the output of node 's' was stored truncated and has no resume copy; run the"
        " workflow again",
    )


@pytest.mark.parametrize(
    ("value", "char"),
    [("{{ 'a\\x00b' }}", "\x00"), ("{{ 'a\\ud800b' }}", "\ud800")],
    ids=["nul", "lone-surrogate"],
)
async def test_outputs_postgresql_cannot_hold_are_stored_and_passed_on_exactly(
    pool: asyncpg.Pool, executor: Executor, value: str, char: str
) -> None:
    # PostgreSQL text and jsonb hold neither NUL nor lone surrogates (an http node may well
    # receive them): the display copy replaces them with U+FFFD, later nodes see the value.
    summary = {
        "exact": "{{ nodes.s.output == " + value[3:-3] + " }}",
        "length": "{{ nodes.s.output | length }}",
    }
    for key, wait in (("straight", False), ("waiting", True)):
        await apply_doc(pool, workflow(key, value, summary, wait=wait))
        row = await final_status(pool, await fire(pool, f"{key}/manual"))
        assert (row["status"], row["error_code"]) == ("SUCCESS", None), row["error_message"]
        assert row["output"] == {"exact": True, "length": 3}
        display = await pool.fetchval(
            "SELECT output FROM node_executions WHERE execution_id = $1 AND node_id = 's'",
            row["id"],
        )
        assert display == "a\ufffdb"
        assert char not in display



@pytest.mark.parametrize("value", ["{{ 'a\\x00b' }}", "{{ 'a\\ud800b' }}"],
                         ids=["nul", "lone-surrogate"])
async def test_a_run_whose_own_output_postgresql_cannot_hold_ends_success(
    pool: asyncpg.Pool, executor: Executor, value: str
) -> None:
    """The run's output is its last node's: a lone surrogate there crashed the run's final
    write (INTERNAL_ERROR, a traceback); it is stored as the node row is, with U+FFFD."""
    await apply_doc(pool, {"workflows": [{
        "key": "last", "graph": {"nodes": [{"id": "s", "type": "set",
                                            "params": {"value": {"text": value}}}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    row = await final_status(pool, await fire(pool, "last/manual"))
    assert (row["status"], row["error_code"]) == ("SUCCESS", None), row["error_message"]
    assert row["output"] == {"text": "a\ufffdb"}
