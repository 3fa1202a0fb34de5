"""Above what the executor can run, the real daemon answers 429 once the backlog of NEW runs
passes ``[http] max_pending``, and the backlog stops growing there (issue 14.5 item 2).

The executor is made the bottleneck by a workflow whose http node waits on a loopback
service the test holds, with ``[executor] concurrency = 2``: every run past the first two
stays NEW until the test lets the service answer."""

from __future__ import annotations

import asyncio
import collections

import aiohttp
import asyncpg
from aiohttp import web

from tests.acceptance.conftest import Daemons
from tests.helpers import apply_doc, serve_get, wait_for

MAX_PENDING = 200
CONCURRENCY = 2
WAVE = 20  # requests in flight at once
# Admission can let in the requests in flight, and those a count of NEW rows taken while
# they were stored missed, beyond max_pending; the two running runs are not NEW.
BOUND = MAX_PENDING + 1 + CONCURRENCY + 2 * WAVE
WAVES = 40  # 800 requests: four times max_pending


def definitions(service_port: int) -> dict[str, object]:
    return {"workflows": [{
        "key": "slow", "name": "slow",
        "graph": {"nodes": [{"id": "call", "type": "http", "timeout": "5m",
                             "params": {"url": f"http://127.0.0.1:{service_port}/slow"}}],
                  "edges": []},
        "triggers": [{"name": "hook", "type": "webhook", "path": "slow", "response": "async"}],
    }]}


async def backlog(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status IN ('NEW', 'RUNNING')")
    return value


async def test_backlog_stops_at_max_pending_with_429_and_drains_after(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool
) -> None:
    release = asyncio.Event()
    calls = collections.Counter[str]()

    async def slow(_request: web.Request) -> web.Response:
        calls["slow"] += 1
        await release.wait()
        return web.json_response({"ok": True})

    async with serve_get("/slow", slow) as service_port:
        await apply_doc(pool, definitions(service_port))
        daemon = await daemons.start(database_url=dsn, sections={
            "http": {"max_pending": MAX_PENDING},
            "executor": {"concurrency": CONCURRENCY},
        })
        url = daemon.base_url + "/hooks/slow"
        statuses = collections.Counter[int]()
        refusals: list[tuple[str | None, object]] = []
        backlogs: list[int] = []

        async def post(session: aiohttp.ClientSession, n: int) -> None:
            async with session.post(url, json={"n": n}) as response:
                statuses[response.status] += 1
                if response.status == 429:
                    refusals.append((response.headers.get("Retry-After"), await response.json()))

        async with aiohttp.ClientSession() as session:
            for wave in range(WAVES):
                await asyncio.gather(*(post(session, wave * WAVE + i) for i in range(WAVE)))
                backlogs.append(await backlog(pool))

            accepted = statuses[202]
            # Every request was answered 202 or 429, and the refusals came: 429 with the
            # overload message, once more than max_pending runs were waiting.
            assert sum(statuses.values()) == WAVE * WAVES
            assert set(statuses) == {202, 429}
            assert MAX_PENDING < accepted <= BOUND
            for retry_after, body in refusals:
                assert retry_after == "5"
                assert isinstance(body, dict)
                assert body["error"] == "overloaded"
                assert body["message"].endswith(" executions are waiting to run; retry later")
            # The backlog stopped growing: after it first reached max_pending, no sample is
            # larger than that bound, and the last half of the waves added nothing.
            assert max(backlogs) <= BOUND
            assert backlogs[-1] == backlogs[WAVES // 2] == accepted
            # Only the runs the executor could hold reached the slow service.
            assert calls["slow"] <= CONCURRENCY

            # Let the service answer: the backlog drains and requests are accepted again.
            release.set()
            await wait_for(lambda: _drained(pool), timeout=60)
            await wait_for(lambda: _accepted_again(session, url), timeout=30)
        await daemon.stop()


async def _drained(pool: asyncpg.Pool) -> bool:
    return await backlog(pool) == 0


async def _accepted_again(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.post(url, json={"n": -1}) as response:
        return response.status == 202
