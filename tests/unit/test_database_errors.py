"""Which database errors mean "unreachable right now" (retry: 503, a run taken up again
after its lease) rather than "refused" (a bug or bad data)."""

from __future__ import annotations

import asyncpg
import pytest

from triggerd import db
from triggerd.errors import DatabaseUnavailable
from triggerd.store import webhooks

UNAVAILABLE = [
    ConnectionRefusedError(111, "refused"),
    TimeoutError(),
    asyncpg.InterfaceError("connection has been released back to the pool"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    # Seen when the embedded server was SIGKILLed under webhook load: a kept connection
    # was left mid-operation; it was answered 500 instead of 503.
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    DatabaseUnavailable("cannot connect"),
]
REFUSED = [
    asyncpg.CheckViolationError("new row violates check constraint"),
    asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_unreachable(exc: BaseException) -> None:
    assert db.is_unavailable(exc)
    assert webhooks.is_unavailable(exc)


@pytest.mark.parametrize("exc", REFUSED, ids=lambda e: type(e).__name__)
def test_refused(exc: BaseException) -> None:
    assert not db.is_unavailable(exc)
    assert not webhooks.is_unavailable(exc)
