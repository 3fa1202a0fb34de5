"""How many requests wait behind the one being handled on its connection."""

from __future__ import annotations

from aiohttp import web


def queued_behind(request: web.BaseRequest) -> int:
    """Requests aiohttp has parsed on ``request``'s connection and not started yet.

    aiohttp handles a connection's requests one after another and keeps those parsed
    ahead in its protocol's queue (``RequestHandler._messages``, private but in every 3.x
    release); ``tests/integration/test_queue_shedding.py`` fails if a release moves it."""
    messages = getattr(request.protocol, "_messages", None)
    return len(messages) if messages is not None else 0


def connection_closed(protocol: object) -> bool:
    """Whether the connection of ``protocol`` (a ``request.protocol``) has ended: aiohttp
    drops its transport then."""
    return getattr(protocol, "transport", None) is None
