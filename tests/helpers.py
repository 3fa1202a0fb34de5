"""Small helpers shared by the integration and acceptance tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from triggerd.definitions import load_documents
from triggerd.model import DEFAULT_TENANT
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import apply_workflows, get_trigger


async def apply_doc(pool: asyncpg.Pool, doc: dict[str, Any]) -> None:
    specs = load_documents([("test.yaml", doc)])
    async with pool.acquire() as conn:
        await apply_workflows(conn, specs)


async def fire(pool: asyncpg.Pool, name: str, run_input: dict[str, Any] | None = None,
               tenant: str = DEFAULT_TENANT) -> str:
    trigger = await get_trigger(pool, name, tenant)
    item = NewExecution(
        workflow_id=trigger.workflow_id,
        trigger_id=trigger.id,
        trigger_name=trigger.name,
        trigger_type="manual",
        input={**trigger.input, **(run_input or {})},
        version=trigger.version,
    )
    await insert_executions(pool, [item])
    return item.id


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.
    (A bound on waiting, not a speed assertion.)"""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def final_status(pool: asyncpg.Pool, execution_id: str, timeout: float = 15.0) -> Any:
    async def check() -> Any:
        row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", execution_id)
        return row if row["status"] in ("SUCCESS", "ERROR", "CANCELED") else None

    return await wait_for(check, timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_get(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> AsyncIterator[int]:
    """A loopback HTTP server answering GET ``path`` (a stand-in for an outside service);
    yields its port."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def wait_until_blocked(pool: asyncpg.Pool, query_prefix: str) -> None:
    """Until a backend running a query starting with ``query_prefix`` waits for a lock."""
    for _ in range(400):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND ltrim(query, E' \\n') LIKE $1 || '%'",
            query_prefix,
        )
        if waiting:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the writer never waited for the delete")


def record_digest_lengths(monkeypatch: Any) -> list[tuple[int, int]]:
    """The lengths of the two values of every ``hmac.compare_digest`` call from now on (it
    returns at once for values of different lengths, which tells a caller how long the
    secret is)."""
    import hmac

    lengths: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        lengths.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return lengths
