"""The HTTP drain of a stopping process: it waits for the requests in progress, ends their
connections with the answer, and gives up after its limit, saying how many it cut."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from triggerd.serving.drain import RequestDrain


def app_with(drain: RequestDrain, release: asyncio.Event, entered: asyncio.Event
             ) -> web.Application:
    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    async def quick(request: web.Request) -> web.Response:
        return web.Response(text="quick")

    app = web.Application(middlewares=[drain.middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/quick", quick)
    return app


async def test_a_stop_waits_for_the_request_in_progress_and_closes_its_connection() -> None:
    drain, release, entered = RequestDrain(limit=30.0), asyncio.Event(), asyncio.Event()
    async with TestClient(TestServer(app_with(drain, release, entered))) as client:
        quick = await client.get("/quick")
        assert quick.headers.get("Connection") != "close"  # not stopping: kept alive
        request = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        waiting = asyncio.create_task(drain.wait())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the request is still in progress
        assert drain.in_flight == 1
        release.set()
        assert await waiting == 0
        response = await request
        assert (response.status, await response.text()) == (200, "done")
        assert response.headers["Connection"] == "close"


async def test_the_drain_gives_up_after_its_limit_and_counts_what_it_cut() -> None:
    drain, release, entered = RequestDrain(limit=0.2), asyncio.Event(), asyncio.Event()
    async with TestClient(TestServer(app_with(drain, release, entered))) as client:
        request = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        assert await drain.wait() == 1
        release.set()
        await request


async def test_nothing_in_progress_returns_at_once() -> None:
    drain = RequestDrain(limit=3600.0)
    assert await asyncio.wait_for(drain.wait(), 30) == 0
    assert drain.stopping
