"""Forwarding a request from an extra HTTP process to the main one ([http] processes > 1).

The extra processes answer plain webhook requests themselves; everything that needs the
main process's state (the admin API, /metrics, /readyz, rate-limited and sync webhooks) is
passed on over a Unix socket only this user can open. The client's address travels in
``X-Triggerd-Remote``, which the main process believes only on that socket: over TCP the
peer address always wins, so a client cannot claim another address."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

FORWARDED_REMOTE = "X-Triggerd-Remote"

# Hop-by-hop headers (RFC 9110 7.6.1) and what this hop sets itself.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # this process already answered any 100-continue
        FORWARDED_REMOTE.lower(),
    }
)
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
)


def client_address(request: web.Request) -> str | None:
    """The client's address: the TCP peer; for a request forwarded over the main process's
    Unix socket (which has no peer address), the one the forwarding process saw."""
    remote = request.remote
    if remote:
        return remote
    return request.headers.get(FORWARDED_REMOTE) or None


def upstream_session(socket_path: str) -> aiohttp.ClientSession:
    """A client session whose every request goes to the main process's Unix socket."""
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=socket_path, limit=0),
        # A cookie an answer sets is the client's, passed back to it: a jar kept it and
        # sent it with every other client's requests (one's console session for all).
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


async def forward(session: aiohttp.ClientSession, request: web.Request) -> web.Response:
    """Send ``request`` (body streamed as it arrives) to the main process and answer with
    its response. If the main process cannot be reached: 503 with ``Retry-After``."""
    headers = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if name.lower() not in _NOT_FORWARDED
    )
    headers[FORWARDED_REMOTE] = request.remote or ""
    url = URL("http://triggerd" + request.raw_path, encoded=True)
    data = request.content if request.body_exists else None
    try:
        async with session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False
        ) as upstream:
            body = await upstream.read()
            returned = CIMultiDict(
                (name, value)
                for name, value in upstream.headers.items()
                if name.lower() not in _NOT_RETURNED
            )
            length = upstream.headers.get("Content-Length")
            if request.method == "HEAD" and length is not None:
                # No body came to count: the main process's length is its GET's, which a
                # HEAD answer carries.
                returned["Content-Length"] = length
                return web.Response(status=upstream.status, headers=returned)
            return web.Response(status=upstream.status, headers=returned, body=body)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return web.json_response(
            {
                "error": "unavailable",
                "message": "the daemon's main process cannot be reached; retry later",
            },
            status=503,
            headers={"Retry-After": "1"},
        )
