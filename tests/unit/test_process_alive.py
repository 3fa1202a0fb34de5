"""The pieces behind restarting a dead embedded PostgreSQL: the restart pauses, telling a
dead postmaster from a live one, and the watchdog that stops pinging when the daemon is not
alive any more."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from pathlib import Path

from triggerd.db import process_alive
from triggerd.embedded import restart_delays
from triggerd.sdnotify import Notifier


def test_restart_delays_double_and_are_capped() -> None:
    assert restart_delays() == [1.0, 2.0, 4.0, 8.0]
    assert restart_delays(attempts=7, first=0.5, most=4.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert restart_delays(attempts=1) == []


def test_process_alive_tells_running_reaped_and_zombie_processes_apart() -> None:
    assert process_alive(os.getpid())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    # Not reaped yet: a zombie still answers kill(pid, 0), but it is dead.
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        os.sched_yield()
    assert not process_alive(pid)
    os.waitpid(pid, 0)
    assert not process_alive(pid)


async def test_watchdog_pings_stop_while_the_daemon_is_not_alive() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "notify.sock")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        receiver.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
        alive = True

        async def messages_during(turns: int) -> list[bytes]:
            task = asyncio.create_task(notifier.watchdog_loop(alive=lambda: alive))
            for _ in range(turns):
                await asyncio.sleep(notifier.watchdog_interval or 0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            received = []
            while True:
                try:
                    received.append(receiver.recv(4096))
                except BlockingIOError:
                    return received

        try:
            assert b"WATCHDOG=1" in await messages_during(3)
            alive = False
            assert await messages_during(3) == []
        finally:
            notifier.close()
            receiver.close()
