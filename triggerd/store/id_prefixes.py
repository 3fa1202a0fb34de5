"""An id prefix typed on the command line, resolved to the one row it names. Each table
brings its own statement (the range on its primary key, and its tenant condition); the
rules and the messages are shared, so executions and webhook requests answer alike."""

from __future__ import annotations

from typing import Any

from triggerd.errors import NotFound, UsageError
from triggerd.ids import IdKind, IdQuery

Conn = Any  # a connection or a pool


async def resolve_id(conn: Conn, statement: str, query: IdQuery, kind: IdKind,
                     tenant: str | None) -> str:
    """The one id ``query`` names. ``statement`` takes the range ($1, $2) and the tenant
    ($3, None: any) and returns at most two ids. A full id is returned as is (the caller's
    lookup says whether it exists); a prefix must match exactly one row:
    :class:`NotFound` when none does, :class:`UsageError` when several do."""
    if query.full is not None:
        return query.full
    rows = await conn.fetch(statement, query.low, query.high, tenant)
    if not rows:
        raise NotFound(f"no {kind.noun} whose id starts with {query.prefix!r}")
    if len(rows) > 1:
        raise UsageError(
            f"{kind.noun} id prefix {query.prefix!r} is ambiguous: it matches more than one"
            f" {kind.noun}; give more digits"
        )
    found: str = rows[0]["id"]
    return found
