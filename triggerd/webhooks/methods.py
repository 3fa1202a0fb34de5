"""Which HTTP methods a webhook answers: the trigger's ``methods``, and ``HEAD`` wherever
``GET`` is one of them (RFC 9110 9.3.2: HEAD is answered as GET, without the body). HEAD is
a safe method: it goes through a GET's checks before the body (address, rate,
backpressure, credentials) and is then answered ``200`` with no body; it never stores a
request or starts a run. Pure: values in, values out."""

from __future__ import annotations

from collections.abc import Collection

HEAD = "HEAD"


def allows(methods: Collection[str], method: str) -> bool:
    """Whether a trigger with ``methods`` answers ``method``."""
    return method in methods or (method == HEAD and "GET" in methods)


def allow_header(methods: Collection[str]) -> str:
    """The ``Allow`` header of a 405 (RFC 9110 10.2.1): every method answered."""
    listed = list(methods)
    if "GET" in listed and HEAD not in listed:
        listed.append(HEAD)
    return ", ".join(listed)
