"""Crash recovery sees real node outputs (issue 12 item 1), with real processes.

The workflow is ``set s -> http(/slow) -> set t``: ``s`` builds an output whose stored
display copy differs from it (over ``max_output_bytes``, or holding a secret), the first
``/slow`` request hangs so the daemon can be SIGKILLed there, and ``t`` computes from
``nodes.s.output``. Another daemon with the same resume key finishes the run; ``t`` must
compute what it computes in a run that was never interrupted.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import Daemons
from tests.acceptance.test_recovery import Loopback
from tests.helpers import apply_doc, final_status, fire, free_port

SECRET = "correct-horse-battery-staple"
SECTIONS: dict[str, Any] = {"executor": {"lease": "3s", "poll_interval": "300ms"}}


@pytest.fixture
async def slow() -> AsyncIterator[Loopback]:
    """test_recovery's loopback server: counts requests, the first /slow hangs."""
    server = Loopback(first_slow_delay=3.0, port=free_port())
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def workflow(base_url: str, value: Any, summary: Any, **extra: Any) -> dict[str, Any]:
    return {"workflows": [{
        "key": "resumed",
        "name": "resumed",
        "graph": {
            "nodes": [
                {"id": "s", "type": "set", "params": {"value": value}},
                {"id": "slow", "type": "http",
                 "params": {"method": "GET", "url": f"{base_url}/slow"}},
                {"id": "t", "type": "set", "params": {"value": summary}},
            ],
            "edges": [{"from": "s", "to": "slow"}, {"from": "slow", "to": "t"}],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
        **extra,
    }]}


async def kill_at_slow_and_resume(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, slow: Loopback, *,
    state_dir: Path | None = None, env: dict[str, str] | None = None,
) -> tuple[asyncpg.Record, asyncpg.Record, bytes]:
    """Run one execution into a SIGKILL at /slow, resume it in a second daemon, then run a
    second execution uninterrupted. Returns both final rows and s's resume copy."""
    first = await daemons.start(database_url=dsn, sections=SECTIONS, name="first",
                                state_dir=state_dir, env=env)
    interrupted = await fire(pool, "resumed/manual")
    await asyncio.wait_for(slow.slow_hit.wait(), 20)
    first.kill()
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
    copies = await pool.fetch(
        "SELECT node_id, attempt, ciphertext FROM node_outputs_resume WHERE execution_id = $1",
        interrupted)
    assert [(r["node_id"], r["attempt"]) for r in copies] == [("s", 1)]

    second = await daemons.start(database_url=dsn, sections=SECTIONS, name="second",
                                 state_dir=state_dir, env=env)
    resumed = await final_status(pool, interrupted, timeout=30)
    straight = await final_status(pool, await fire(pool, "resumed/manual"), timeout=30)
    assert await second.stop(signal.SIGTERM) == 0
    assert resumed["attempt"] == 2 and straight["attempt"] == 1
    assert dict(slow.hits) == {"/slow": 3}  # once killed, once resumed, once straight
    assert await pool.fetchval("SELECT count(*) FROM node_outputs_resume") == 0
    return resumed, straight, bytes(copies[0]["ciphertext"])


async def test_sigkill_then_resume_sees_the_whole_large_output(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, slow: Loopback, tmp_path: Path
) -> None:
    summary = {"count": "{{ nodes.s.output | length }}",
               "first": "{{ nodes.s.output[0] | length }}"}
    await apply_doc(pool, workflow(slow.base_url, "{{ ['x' * 999999] * 3 }}", summary))
    # One state directory for both daemons: the key the first created is the second's too.
    resumed, straight, _ = await kill_at_slow_and_resume(
        daemons, dsn, pool, slow, state_dir=tmp_path / "shared-state")
    assert (straight["status"], straight["output"]) == ("SUCCESS", {"count": 3, "first": 999999})
    assert (resumed["status"], resumed["error_message"]) == ("SUCCESS", None)
    assert resumed["output"] == straight["output"]


async def test_sigkill_then_resume_sees_the_real_secret_in_an_output(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, slow: Loopback, tmp_path: Path
) -> None:
    # The key as a systemd credential, the same on both "machines" (separate state dirs).
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "resume-key").write_text("UFNrbWhhc0xDRG1ISGlmU1FjNFZ1TDVkR2l4cEpqVGs=\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "RESUME_TEST_TOKEN": SECRET}
    value = {"auth": "Bearer {{ secrets.TOKEN }}"}
    summary = {"same": "{{ nodes.s.output.auth == 'Bearer ' ~ secrets.TOKEN }}",
               "length": "{{ nodes.s.output.auth | length }}"}
    await apply_doc(pool, workflow(slow.base_url, value, summary,
                                   secrets={"TOKEN": {"env": "RESUME_TEST_TOKEN"}}))
    resumed, straight, ciphertext = await kill_at_slow_and_resume(
        daemons, dsn, pool, slow, env=env)
    assert SECRET.encode() not in ciphertext and b"Bearer" not in ciphertext
    assert straight["output"] == {"same": True, "length": len("Bearer " + SECRET)}
    assert (resumed["status"], resumed["error_message"]) == ("SUCCESS", None)
    assert resumed["output"] == straight["output"]
    shown = await pool.fetch(
        "SELECT output FROM node_executions WHERE node_id = 's' ORDER BY start_time")
    assert [r["output"] for r in shown] == [{"auth": "Bearer ***"}] * 2


async def test_missing_configured_key_file_stops_the_start_with_one_line(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    missing = tmp_path / "shared" / "resume.key"
    config, port = daemons.write_config(
        database_url=dsn, sections={"executor": {"resume_key_file": str(missing)}})
    daemon = daemons.spawn(config, port)
    assert await daemon.wait_exit() == 2
    assert daemon.stderr_lines == [
        f"triggerd: error: executor.resume_key_file: cannot read the resume key {missing}:"
        " No such file or directory; make one with: head -c 32 /dev/urandom | base64"
    ]
    assert not missing.exists()
