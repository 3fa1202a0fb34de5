"""The extensions of systemd's start (and reload) timeout: one every third of the extension,
and no more than the limit, so a start stuck for hours still times out."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

from triggerd.sdnotify import Notifier


async def test_the_extensions_stop_at_their_limit() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.setblocking(False)
            notifier = Notifier(environ={"NOTIFY_SOCKET": path})
            # Fast extensions (30 ms apart); after the third none follows.
            try:
                await asyncio.wait_for(
                    notifier.extend_while_busy(extension=0.09, times=3), 5)
            finally:
                notifier.close()
            received = []
            while True:
                try:
                    received.append(listener.recv(256).decode())
                except BlockingIOError:
                    break
    assert received == ["EXTEND_TIMEOUT_USEC=90000"] * 3


async def test_without_a_notify_socket_nothing_is_sent_and_it_returns() -> None:
    await asyncio.wait_for(Notifier(environ={}).extend_while_busy(), 1)
