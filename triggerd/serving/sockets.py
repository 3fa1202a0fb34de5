"""The daemon's listening socket."""

from __future__ import annotations

import errno
import socket
from typing import Any, Final

from aiohttp import web

from triggerd.errors import TriggerdError, Unavailable
from triggerd.serving.protocol_errors import JsonErrorAppRunner

# Every process serving the port runs aiohttp with these: a connection that sends no
# complete request (nothing at all, or headers trickled without an end) is closed after
# KEEPALIVE_TIMEOUT seconds, as nginx does by default; aiohttp's own default is an hour.
KEEPALIVE_TIMEOUT = 75.0


# Bodies are read as sent and decoded by triggerd.webhooks.decoding: aiohttp's own
# decoding took a gzip, br or zstd stream cut short for a whole body. (The tests' servers
# run with these too.)
SERVER_OPTIONS: Final[dict[str, Any]] = {"auto_decompress": False}


# Seconds the runner's cleanup gives connections at a stop (within the unit's
# TimeoutStopSec, with the other steps of a stop).
RUNNER_SHUTDOWN_TIMEOUT = 5.0


def app_runner(app: web.Application) -> web.AppRunner:
    """The runner of every process that serves the port (unparsable requests are answered
    in JSON, see :mod:`triggerd.serving.protocol_errors`)."""
    return JsonErrorAppRunner(app, access_log=None, handle_signals=False,
                              shutdown_timeout=RUNNER_SHUTDOWN_TIMEOUT,
                              keepalive_timeout=KEEPALIVE_TIMEOUT, **SERVER_OPTIONS)


def set_body_limit(app: web.Application, limit: int) -> None:
    """The largest body ``request.read()`` accepts in ``app`` from now on ([http]
    max_body_bytes, which a reload may change). aiohttp takes the limit when the
    application is made and passes it to every request it makes; it has no setter."""
    app._client_max_size = limit


def body_limit(app: web.Application) -> int:
    """The limit :func:`set_body_limit` set (aiohttp's default before)."""
    return int(app._client_max_size)


def open_listener(
    host: str, port: int, *, reuse_port: bool = False, join: bool = False
) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port``.

    With ``reuse_port`` several processes of this user listen on the same port and the
    kernel spreads the connections over them ([http] processes > 1). The first of them
    still fails when anything else holds the port (it binds once without the option
    first); ``join`` is for the others, which share the port it took."""
    if reuse_port and not join:
        _listen(host, port, reuse_port=False).close()  # is the port free?
    return _listen(host, port, reuse_port=reuse_port)


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(message) from None  # exit 5: held by another process
        raise TriggerdError(message) from None
    sock.setblocking(False)
    return sock
