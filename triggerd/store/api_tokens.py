"""SQL of the ``api_tokens`` table: named admin API tokens, stored as SHA-256 hashes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from triggerd.errors import Conflict, NotFound
from triggerd.store.records import columns, row_to

# An asyncpg Connection or Pool (asyncpg ships no type information).
Conn = Any


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """One token, without its hash: nothing read from here can authenticate."""

    id: str
    name: str
    role: str
    tenant: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class FoundToken:
    """A token found by its hash, and how it stands now by the database's clock."""

    record: TokenRecord
    expired: bool
    # Seconds until it expires (None: it never does); a cache trusts it no longer.
    expires_in: float | None


_COLUMNS = columns(TokenRecord, "t")


async def create_token(
    conn: Conn, *, name: str, role: str, tenant: str | None, token_hash: bytes, prefix: str,
    expires_in: timedelta | None = None,
) -> TokenRecord:
    """A new token, valid for ``expires_in`` from now by the database's clock (None:
    until revoked); :class:`Conflict` when the name is taken (also by a revoked token)."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO api_tokens AS t (name, role, tenant, hash, prefix, expires_at)"
            f" VALUES ($1, $2, $3, $4, $5, now() + $6) RETURNING {_COLUMNS}",
            name, role, tenant, token_hash, prefix, expires_in,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a token named {name!r} already exists") from None
    result: TokenRecord = row_to(TokenRecord, row)
    return result


async def create_first_token(
    conn: Conn, *, name: str, role: str, token_hash: bytes, prefix: str,
    before_commit: Callable[[], Awaitable[None]],
) -> bool:
    """Create a token only if the table has never held one, calling ``before_commit``
    inside the transaction (to write the token where its user finds it: a failure there
    leaves no token behind). False when a token existed. Processes starting together on
    one database create one token between them: the unique name decides."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO api_tokens (name, role, tenant, hash, prefix)"
            " SELECT $1, $2, NULL, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM api_tokens)"
            " ON CONFLICT (name) DO NOTHING RETURNING id",
            name, role, token_hash, prefix,
        )
        if row is None:
            return False
        await before_commit()
        return True


async def list_tokens(conn: Conn) -> list[TokenRecord]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_tokens t ORDER BY t.name")
    return [row_to(TokenRecord, r) for r in rows]


async def revoke_token(conn: Conn, name: str) -> tuple[TokenRecord, bool]:
    """Revoke the token named ``name``; the record and whether it was revoked just now
    (False: it already was). :class:`NotFound` when there is no such token."""
    row = await conn.fetchrow(
        "WITH hit AS (SELECT id, revoked_at IS NOT NULL AS was FROM api_tokens WHERE name = $1"
        " FOR UPDATE)"
        " UPDATE api_tokens t SET revoked_at = coalesce(t.revoked_at, now()) FROM hit"
        f" WHERE t.id = hit.id RETURNING {_COLUMNS}, NOT hit.was AS changed",
        name,
    )
    if row is None:
        raise NotFound(f"no token named {name!r}")
    record: TokenRecord = row_to(TokenRecord, row)
    return record, bool(row["changed"])


async def find_token(conn: Conn, token_hash: bytes) -> FoundToken | None:
    """The token with this hash, revoked, expired or not. A live token's ``last_used_at``
    is set to now when it is older than a minute, in the same statement: at most one write
    per token and minute, however many requests it makes."""
    row = await conn.fetchrow(
        "WITH hit AS (SELECT id, last_used_at, revoked_at,"
        " expires_at IS NOT NULL AND expires_at <= now() AS expired,"
        " extract(epoch FROM expires_at - now())::float8 AS expires_in"
        " FROM api_tokens WHERE hash = $1),"
        " touched AS (UPDATE api_tokens t SET last_used_at = now() FROM hit"
        " WHERE t.id = hit.id AND hit.revoked_at IS NULL AND NOT hit.expired"
        " AND (hit.last_used_at IS NULL OR hit.last_used_at < now() - interval '1 minute'))"
        f" SELECT {_COLUMNS}, hit.expired, hit.expires_in"
        " FROM api_tokens t JOIN hit ON hit.id = t.id",
        token_hash,
    )
    if row is None:
        return None
    record: TokenRecord = row_to(TokenRecord, row)
    return FoundToken(record=record, expired=bool(row["expired"]),
                      expires_in=row["expires_in"])


async def count_tokens(conn: Conn) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM api_tokens")
    return value


__all__ = [
    "FoundToken",
    "TokenRecord",
    "count_tokens",
    "create_first_token",
    "create_token",
    "find_token",
    "list_tokens",
    "revoke_token",
]
