"""The embedded PostgreSQL dying under the daemon (issue 12 item 5): the daemon starts it
again and carries on, losing no accepted request; when it cannot, it fails liveness and
exits non-zero so its supervisor restarts it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import DaemonProcess, Daemons

DEFINITIONS = """\
workflows:
  - key: inbox
    name: Inbox
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: hook, type: webhook, path: inbox/in}
"""


def postmaster_pid(state_dir: Path) -> int:
    return int((state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


async def post(daemon: DaemonProcess, n: int) -> tuple[int, dict[str, Any], str | None]:
    async with aiohttp.ClientSession() as session, session.post(
        daemon.base_url + "/hooks/inbox/in", json={"n": n},
        timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def start(
    daemons: Daemons, tmp_path: Path, state_dir: Path
) -> tuple[DaemonProcess, Path]:
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    daemon = await daemons.start(
        database_url=None, state_dir=state_dir,
        # A run whose writes failed while the server was down is taken up again when its
        # lease expires: short here, so the test need not wait 30 s.
        sections={"daemon": {"definitions": [str(definitions)]},
                  "executor": {"lease": "3s", "poll_interval": "500ms", "drain": "2s"}},
    )
    return daemon, state_dir


async def test_killed_embedded_server_is_started_again_and_nothing_accepted_is_lost(
    daemons: Daemons, tmp_path: Path, embedded_state_dir: Path
) -> None:
    daemon, state_dir = await start(daemons, tmp_path, embedded_state_dir)
    accepted: list[str] = []
    for n in range(20):
        status, body, _ = await post(daemon, n)
        assert status == 202, body
        accepted.append(body["execution_id"])

    os.kill(postmaster_pid(state_dir), signal.SIGKILL)
    # Until it is back, a webhook is answered 202 (stored) or 503 with Retry-After.
    n = 100
    while not daemon.events_named("embedded_postgres_restarted"):
        n += 1
        try:
            status, body, retry_after = await post(daemon, n)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AssertionError(f"the daemon stopped answering: {exc!r}") from exc
        assert status in (202, 503), (status, body)
        if status == 202:
            accepted.append(body["execution_id"])
        else:
            assert retry_after is not None, body
        daemon._fail_if_exited("waiting for the restart")
        await asyncio.sleep(0.05)
        assert n < 2000, daemon.describe()  # a bound on the loop, not a speed figure

    await daemon.wait_ready()
    status, body, _ = await post(daemon, 9999)
    assert status == 202, body
    accepted.append(body["execution_id"])
    # Every accepted request has its run, and every run finishes.
    for execution_id in accepted:
        for _ in range(400):
            code, run = await daemon.get(f"/hooks/_executions/{execution_id}")
            assert code == 200, (execution_id, run)
            if run["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.05)
        assert run["status"] == "SUCCESS", (execution_id, run)
    status, body = await daemon.get("/healthz")
    assert (status, body) == (200, {"status": "ok"})
    assert await daemon.stop() == 0


async def test_embedded_server_that_cannot_start_again_stops_the_daemon_non_zero(
    daemons: Daemons, tmp_path: Path, embedded_state_dir: Path
) -> None:
    daemon, state_dir = await start(daemons, tmp_path, embedded_state_dir)
    # A setting the server refuses: read only when it starts again.
    conf = state_dir / "postgres" / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as f:
        f.write("\nshared_buffers = 'not a size'\n")
    os.kill(postmaster_pid(state_dir), signal.SIGKILL)

    code = await daemon.wait_exit(timeout=60)
    assert code != 0
    failing = daemon.events_named("daemon_failing")
    assert len(failing) == 1
    assert failing[0]["error"].startswith(
        "the embedded PostgreSQL died and could not be started again: "
    )
    assert len(daemon.events_named("embedded_postgres_restart_failed")) == 3
    assert [line for line in daemon.stderr_lines if line.strip()] == [
        f"triggerd: error: {failing[0]['error']}"
    ]
    assert "not a size" in failing[0]["error"] or "shared_buffers" in failing[0]["error"]
