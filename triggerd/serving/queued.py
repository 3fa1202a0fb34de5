"""Where the request being handled stands among its connection's pipelined requests."""

from __future__ import annotations

from aiohttp import web


def pipeline_position(request: web.BaseRequest) -> tuple[int, int]:
    """``(number, behind)``: the request's number on its connection (1 for the first
    parsed) and how many aiohttp has parsed after it and not started yet.

    aiohttp handles a connection's requests one after another and keeps those parsed
    ahead in its protocol's queue (``RequestHandler._messages``) and counts every request
    parsed (``_request_count``): both private but in every 3.x release;
    ``tests/integration/test_webhooks.py``'s shedding tests fail if a release moves them."""
    protocol = request.protocol
    messages = getattr(protocol, "_messages", None)
    behind = len(messages) if messages is not None else 0
    parsed = getattr(protocol, "_request_count", None)
    return (parsed - behind if isinstance(parsed, int) else 0), behind


def connection_closed(protocol: object) -> bool:
    """Whether the connection of ``protocol`` (a ``request.protocol``) has ended: aiohttp
    drops its transport then."""
    return getattr(protocol, "transport", None) is None
