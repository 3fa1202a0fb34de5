"""A graceful stop of one process's HTTP side: the requests already in progress (a webhook
whose body is still arriving, a sync answer waiting for its run) finish and are answered
before the parts they need stop.

aiohttp's own shutdown (``AppRunner.cleanup``) marks every connection closing, and from
then on a connection drops the bytes it receives: a body still arriving never completes,
and the sender got no answer at all after the 5 s shutdown timeout. So the process stops
listening, waits here for its requests in progress (answering each with
``Connection: close``), and only then stops its components and the runner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# How long a stopping process waits for its requests in progress; what is still running
# then is cut by the runner's shutdown. Within systemd's TimeoutStopSec with the other
# steps of a stop (systemd/triggerd.service adds them up).
HTTP_DRAIN_TIMEOUT = 10.0


@dataclass(kw_only=True)
class RequestDrain:
    """Counts the requests in progress; ``middleware`` goes first in the application.
    Per request it costs two integer updates and a flag test: the event that ends the
    wait is set only while stopping."""

    limit: float = HTTP_DRAIN_TIMEOUT
    in_flight: int = 0
    stopping: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        try:
            response = await handler(request)
        finally:
            self.in_flight -= 1
            if self.stopping and not self.in_flight:
                self._idle.set()
        if self.stopping:
            # The connection ends with this answer: a keep-alive client's next request
            # goes to a process that is not stopping.
            response.force_close()
        return response

    async def wait(self) -> int:
        """Mark the process stopping and wait (at most ``limit`` seconds) until no request
        is in progress; returns how many still are."""
        self.stopping = True
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limit):
                    await self._idle.wait()
        return self.in_flight
