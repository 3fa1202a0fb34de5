"""The embedded server's state directory as an operator meets it after a crash: a stale
``postmaster.pid`` whose pid another program has since been given."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from tests.acceptance.conftest import Daemons


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def postmaster_pid(state_dir: Path) -> int:
    return int((state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


async def test_a_stale_postmaster_pid_naming_another_program_is_removed_not_killed(
    daemons: Daemons, embedded_state_dir: Path
) -> None:
    config, port = daemons.write_config(database_url=None, state_dir=embedded_state_dir)
    first = daemons.spawn(config, port)
    await first.wait_ready()
    server = postmaster_pid(embedded_state_dir)
    # A crash: the daemon and its server die, their postmaster.pid stays.
    first.kill()
    os.kill(server, signal.SIGKILL)
    # Gone and reaped: PostgreSQL's own lock file check takes a zombie for a live server.
    for _ in range(400):
        if not pid_exists(server):
            break
        await asyncio.sleep(0.05)
    assert not pid_exists(server)
    # After the reboot the pid belongs to another program.
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        pid_file = embedded_state_dir / "postgres" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(bystander.pid), *lines[1:]]) + "\n")

        second = daemons.spawn(config, port)
        await second.wait_ready()
        assert second.events_named("embedded_postgres_stale_pid")
        assert postmaster_pid(embedded_state_dir) != bystander.pid
        assert await second.stop() == 0
        assert bystander.poll() is None, "the other program was killed"
    finally:
        bystander.kill()
        bystander.wait()
