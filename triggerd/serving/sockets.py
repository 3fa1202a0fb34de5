"""The daemon's listening socket."""

from __future__ import annotations

import errno
import socket

from triggerd.errors import TriggerdError, Unavailable


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
