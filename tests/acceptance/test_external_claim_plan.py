"""The executor's claim on Debian's PostgreSQL (an external server, with the JIT): planned
without sorts (see QUEUE_PLANNING), a sort that cannot be avoided is costed, before
PostgreSQL 18, at the disabled-node penalty (10^10), far past ``jit_above_cost``: without
``jit = off`` the plan would be compiled by the JIT at every claim (tens of ms each)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests import external_pg
from tests.external_pg import Endpoint
from tests.helpers import apply_doc, fire
from triggerd import db
from triggerd.store import executions
from triggerd.store.executions import QUEUE_PLANNING

DOC: dict[str, Any] = {"workflows": [{
    "key": "queued", "name": "queued",
    "graph": {"nodes": [{"id": "n", "type": "noop"}], "edges": []},
    "triggers": [{"name": "manual", "type": "manual"}],
}]}


@pytest.fixture(scope="module")
def debian_postgres() -> Iterator[Endpoint]:
    """Debian's PostgreSQL alone (the session's ``external_postgres`` also wants PgBouncer)."""
    if external_pg.postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries (Debian's postgresql package) are not installed")
    with external_pg.postgres_server({"fsync": "off"}) as server:
        yield server


class _Undo(Exception):
    """Rolls the explained claim back."""


async def _plan(conn: asyncpg.Connection, settings: str) -> str:
    rows: list[Any] = []
    with pytest.raises(_Undo):
        async with conn.transaction():
            await conn.execute(settings)
            rows = await conn.fetch("EXPLAIN (ANALYZE) " + executions._CLAIM,
                                    "owner", 30_000, 64, [], [])
            raise _Undo
    return "\n".join(r[0] for r in rows)


async def test_the_claim_is_not_compiled_by_the_jit(debian_postgres: Endpoint) -> None:
    dsn = debian_postgres.dsn("postgres")  # a server of this test's own
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        await apply_doc(pool, DOC)
        for _ in range(3):
            await fire(pool, "queued/manual")  # runs to claim: the plan's parts all run
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_jit_available()"):
                pytest.skip("this PostgreSQL has no JIT (Debian's has: postgresql-15's llvmjit)")
            assert "JIT:" not in await _plan(conn, QUEUE_PLANNING)
            if conn.get_server_version().major < 18:
                # What the JIT setting is for: the sorts alone disabled, it compiles.
                assert "JIT:" in await _plan(conn, "SET LOCAL enable_sort = off")
    finally:
        await pool.close()
