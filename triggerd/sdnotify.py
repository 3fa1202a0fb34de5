"""systemd's notify protocol over ``$NOTIFY_SOCKET`` with plain datagram writes.

Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing. A socket that points
nowhere is logged once and otherwise ignored: notification must never stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)


# While the daemon starts or reloads it asks systemd for this much more time, again every
# third of it: TimeoutStartSec= (90 s by default, a reload's timeout too) killed a start
# whose migrations or definitions took longer, and the restart began them again, forever.
START_EXTENSION_S = 90.0
# But not for ever: a start stuck awaiting (a migration lock another process holds, a
# database that does not answer) keeps the loop alive, and systemd must still give up and
# let Restart= act. 60 extensions 30 s apart: about half an hour in all, then the last
# extension's 90 s.
START_EXTENSIONS = 60


def _address(raw: str) -> str | bytes:
    # "@name" is an abstract socket: a leading NUL byte on the wire.
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.target = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000 / 2
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.target is not None

    def send(self, *lines: str) -> bool:
        if self.target is None:
            return False
        message = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, _address(self.target))
        except OSError as exc:
            if not self._warned:
                logger.warning(
                    "cannot notify systemd",
                    extra={"event": "sd_notify_failed", "socket": self.target, "error": str(exc)},
                )
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    async def extend_while_busy(self, extension: float = START_EXTENSION_S,
                                times: int = START_EXTENSIONS) -> None:
        """Extend the start's (or a reload's) timeout from the event loop, every third of
        ``extension``, until cancelled (once the daemon is ready again) or ``times``
        extensions were sent: a long start or reload is not killed, a blocked loop or one
        stuck for hours is."""
        if not self.enabled:
            return
        for _ in range(times):
            self.extend_timeout(extension)
            await asyncio.sleep(extension / 3)

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    async def watchdog_loop(self, status: Callable[[], str] | None = None) -> None:
        """Ping from the event loop itself, so a blocked loop stops the pings and systemd
        restarts the service."""
        if self.watchdog_interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            if status is not None:
                self.status(status())
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
