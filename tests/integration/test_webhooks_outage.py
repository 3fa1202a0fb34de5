"""The database going away under load: 503 with Retry-After, nothing acknowledged that is
not stored, and recovery without a restart.

The "outage" is a TCP proxy in front of the test server that the test stops (closing its
listener and cutting every open connection) and starts again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.integration.test_webhooks import apply, hook, workflow
from triggerd import db
from triggerd.api.health import DATABASE_PROBE
from triggerd.config import Settings
from triggerd.daemon import create_app
from triggerd.model import DedupeConfig
from triggerd.webhooks.ingress import setup_webhooks


class PgProxy:
    """A byte pipe from 127.0.0.1:<port> to the PostgreSQL of ``upstream`` (a DSN)."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        query = urllib.parse.parse_qs(parts.query)
        self._user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        self._database = parts.path
        host = query.get("host", [parts.hostname or "localhost"])[0]
        port = parts.port or int(query.get("port", ["5432"])[0])
        self._unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._tcp = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        # True: the pipe keeps its connections and forwards nothing, either way (a network
        # that went silent: no answer, no reset).
        self.silent = False

    @property
    def dsn(self) -> str:
        auth = f"{self._user}@" if self._user else ""
        return f"postgresql://{auth}127.0.0.1:{self.port}{self._database}?sslmode=disable"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._tcp)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.silent:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[PgProxy]:
    p = PgProxy(dsn)
    await p.start()
    yield p
    if p._server is not None:
        await p.stop()


async def test_database_outage_under_load_503_then_recovery(
    aiohttp_client: Any, pool: asyncpg.Pool, proxy: PgProxy
) -> None:
    await apply(pool, workflow("w", hook("h", "load", dedupe=DedupeConfig(header="X-Id"))))
    via_proxy = await db.create_pool(proxy.dsn, min_size=1, max_size=4)
    settings = Settings()
    app = create_app(settings, via_proxy)
    ingress = setup_webhooks(app, pool=via_proxy, dsn=proxy.dsn, settings=settings,
                             pending_interval=3600.0)
    await ingress.start()
    client: TestClient[Any, Any] = await aiohttp_client(app)
    counter = itertools.count()
    answers: list[tuple[int, str | None]] = []
    unavailable: list[tuple[dict[str, Any], str]] = []
    phase = {"name": "up"}
    stop = asyncio.Event()

    async def sender() -> None:
        while not stop.is_set():
            resp = await client.post("/hooks/load", json={"n": 1},
                                     headers={"X-Id": f"d-{next(counter)}"})
            body = await resp.json()
            answers.append((resp.status, body.get("execution_id")))
            if resp.status == 503:
                unavailable.append((body, resp.headers["Retry-After"]))
            if resp.status == 202 and phase["name"] == "recovering":
                phase["name"] = "recovered"

    async def wait_for(predicate: Any) -> None:
        while not predicate():  # bounded by the test timeout
            await asyncio.sleep(0.01)

    try:
        senders = [asyncio.create_task(sender()) for _ in range(8)]
        await wait_for(lambda: sum(s == 202 for s, _ in answers) >= 50)
        await proxy.stop()
        phase["name"] = "down"
        await wait_for(lambda: len(unavailable) >= 20)
        phase["name"] = "recovering"
        await proxy.start()
        await wait_for(lambda: phase["name"] == "recovered")
        accepted_after = len(answers)
        await wait_for(lambda: len(answers) >= accepted_after + 50)
        stop.set()
        await asyncio.gather(*senders)
    finally:
        stop.set()
        await ingress.stop()
        await via_proxy.close()

    statuses = {s for s, _ in answers}
    assert statuses <= {202, 503}
    # A statement sent as the link was cut got no answer: its request may have been stored,
    # and the answer says so; the later ones could not reach the database at all.
    not_stored = "the request was not stored: the database is unavailable; retry later"
    in_doubt = ("the request may or may not have been stored: the database is unavailable;"
                " retry later")
    assert {body["error"] for body, _ in unavailable} == {"database_unavailable"}
    assert {body["message"] for body, _ in unavailable} <= {not_stored, in_doubt}
    assert unavailable[-1][0]["message"] == not_stored
    assert {retry for _, retry in unavailable} == {"5"}
    acknowledged = {i for s, i in answers if s == 202}
    rows = await pool.fetch(
        "SELECT e.id::text AS id, r.id AS request FROM workflow_executions e"
        " LEFT JOIN webhook_requests r ON r.execution_id = e.id"
    )
    stored = {r["id"] for r in rows if r["request"] is not None}
    # Every 202 ever given has its execution and its request row.
    assert acknowledged <= stored
    # A 503 may still have been stored (the commit raced the cut), never the reverse.
    assert len(rows) == len(stored)
    assert answers[-1][0] == 202  # recovered without a restart


async def test_starting_without_a_database_answers_503_until_routes_load(
    aiohttp_client: Any, pool: asyncpg.Pool, proxy: PgProxy
) -> None:
    await apply(pool, workflow("w", hook("h", "early")))
    via_proxy = await db.create_pool(proxy.dsn, min_size=0, max_size=2)
    await proxy.stop()
    settings = Settings()
    app = create_app(settings, via_proxy)
    ingress = setup_webhooks(app, pool=via_proxy, dsn=proxy.dsn, settings=settings,
                             pending_interval=3600.0, reload_interval=3600.0)
    await ingress.start()  # does not fail: the database may come later
    client: TestClient[Any, Any] = await aiohttp_client(app)
    try:
        resp = await client.post("/hooks/early", json={})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert await resp.json() == {
            "error": "unavailable",
            "message": "webhooks are not loaded yet; retry later",
        }
        assert (await client.get("/readyz")).status == 503
        await proxy.start()
        while not ingress.routes.loaded:  # the listener reconnects and reconciles
            await asyncio.sleep(0.02)
        assert (await client.post("/hooks/early", json={})).status == 202
    finally:
        await ingress.stop()
        await via_proxy.close()


async def _readyz_until(client: TestClient[Any, Any], status: int) -> dict[str, Any]:
    for _ in range(300):  # 15 s
        resp = await client.get("/readyz")
        body: dict[str, Any] = await resp.json()
        if resp.status == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never answered {status}; last: {body}")


async def test_readiness_follows_the_database_from_a_background_check(
    aiohttp_client: Any, proxy: PgProxy
) -> None:
    """Probes answer from a database check made in the background (a round trip per probe
    made each one wait in a busy database's queue), and still see the database go away
    and come back."""
    via_proxy = await db.create_pool(proxy.dsn, min_size=0, max_size=2)
    app = create_app(Settings(), via_proxy)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    probe = app[DATABASE_PROBE]
    try:
        await _readyz_until(client, 200)
        before = probe.checks_run
        for _ in range(50):
            resp = await client.get("/readyz")
            assert resp.status == 200
            assert (await resp.json())["checks"]["database"] == "ok"
        assert probe.checks_run - before < 10, probe.checks_run - before  # not one a probe

        await proxy.stop()
        body = await _readyz_until(client, 503)
        assert body["checks"]["database"].startswith("unreachable: "), body
        assert body["failing"] == ["database"]
        await proxy.start()
        body = await _readyz_until(client, 200)
        assert body["checks"] == {"database": "ok", "migrations": "ok"}
    finally:
        await via_proxy.close()


async def test_a_database_that_answers_nothing_in_time_is_said_so_not_unreachable(
    aiohttp_client: Any, dsn: str
) -> None:
    """A pool whose one connection is busy (as behind an operator's lock) does not answer
    the check in time: not ready, and the check says so rather than "unreachable"."""
    small = await db.create_pool(dsn, min_size=1, max_size=1)
    app = create_app(Settings(), small)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    try:
        await _readyz_until(client, 200)
        async with small.acquire():
            body = await _readyz_until(client, 503)
        assert body["checks"] == {"database": "no answer within 2 s", "migrations": "unknown"}
        assert body["failing"] == ["database"]
        await _readyz_until(client, 200)
    finally:
        await small.close()
