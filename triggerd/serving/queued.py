"""Where the request being handled stands among its connection's pipelined requests."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class PipelinePosition:
    number: int  # the request's number on its connection (1 for the first parsed)
    behind: int  # requests parsed after it and not started yet
    reading_paused: bool  # aiohttp stopped reading the connection: its queue is full


def pipeline_position(request: web.BaseRequest) -> PipelinePosition:
    """Where ``request`` stands among its connection's pipelined requests.

    aiohttp handles a connection's requests one after another, keeps those parsed ahead in
    its protocol's queue (``RequestHandler._messages``), counts every request parsed
    (``_request_count``) and stops reading while the queue is full (``_buffer_paused``):
    private, but in every 3.x release that bounds the queue;
    ``tests/integration/test_webhooks.py``'s shedding tests fail if a release moves them."""
    protocol = request.protocol
    messages = getattr(protocol, "_messages", None)
    behind = len(messages) if messages is not None else 0
    parsed = getattr(protocol, "_request_count", None)
    return PipelinePosition(
        number=parsed - behind if isinstance(parsed, int) else 0, behind=behind,
        reading_paused=getattr(protocol, "_buffer_paused", False) is True)


def connection_closed(protocol: object) -> bool:
    """Whether the connection of ``protocol`` (a ``request.protocol``) has ended: aiohttp
    drops its transport then."""
    return getattr(protocol, "transport", None) is None
