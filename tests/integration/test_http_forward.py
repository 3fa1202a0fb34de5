"""Forwarding from an extra HTTP process to the main one, over a real Unix socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import free_port
from triggerd.serving.forward import FORWARDED_REMOTE, client_address, forward, upstream_session


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the main process on a Unix socket: it records what it received and
    answers with a header and a body of its own."""
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({
            "method": request.method, "path_qs": request.raw_path,
            "headers": dict(request.headers), "body": await request.read(),
            "client": client_address(request),
        })
        return web.Response(status=201, body=b"made", headers={"X-Answer": "yes"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "main.sock")
    await web.UnixSite(runner, path).start()
    try:
        yield path, seen
    finally:
        await runner.cleanup()


async def serve_forwarding(socket_path: str) -> tuple[web.AppRunner, aiohttp.ClientSession,
                                                      int]:
    session = upstream_session(socket_path)

    async def handler(request: web.Request) -> web.Response:
        return await forward(session, request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, session, port


async def test_request_and_answer_pass_through(
    upstream: tuple[str, list[dict[str, Any]]]
) -> None:
    path, seen = upstream
    runner, session, port = await serve_forwarding(path)
    try:
        async with aiohttp.ClientSession() as client, client.post(
            f"http://127.0.0.1:{port}/hooks/a%2Fb?x=1&x=2", data=b"\x00raw body",
            headers={"Content-Type": "application/octet-stream", "X-Sig": "s1",
                     FORWARDED_REMOTE: "6.6.6.6"},  # a client cannot pick its address
        ) as response:
            assert response.status == 201
            assert response.headers["X-Answer"] == "yes"
            assert await response.read() == b"made"
    finally:
        await session.close()
        await runner.cleanup()
    (got,) = seen
    assert got["method"] == "POST" and got["path_qs"] == "/hooks/a%2Fb?x=1&x=2"
    assert got["body"] == b"\x00raw body"
    assert got["headers"]["X-Sig"] == "s1"
    assert got["headers"]["Content-Type"] == "application/octet-stream"
    assert got["client"] == "127.0.0.1"


async def test_head_keeps_the_main_process_content_length(
    upstream: tuple[str, list[dict[str, Any]]]
) -> None:
    # HEAD /metrics or /readyz through an HTTP process: the headers of the GET, no body.
    path, seen = upstream
    runner, session, port = await serve_forwarding(path)
    try:
        async with aiohttp.ClientSession() as client, client.head(
            f"http://127.0.0.1:{port}/metrics"
        ) as response:
            assert (response.status, response.headers["Content-Length"]) == (201, "4")
            assert response.headers["X-Answer"] == "yes"
            assert await response.read() == b""
    finally:
        await session.close()
        await runner.cleanup()
    assert [got["method"] for got in seen] == ["HEAD"]


async def test_main_process_unreachable_is_503_with_retry_after(tmp_path: Path) -> None:
    runner, session, port = await serve_forwarding(str(tmp_path / "nobody.sock"))
    try:
        async with aiohttp.ClientSession() as client, client.get(
            f"http://127.0.0.1:{port}/readyz"
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"] == "unavailable"
    finally:
        await session.close()
        await runner.cleanup()


async def test_a_cookie_the_main_process_set_for_one_client_is_never_sent_for_another(
    tmp_path: Path
) -> None:
    """The forwarding session kept the cookies of the answers it passed on (its default
    cookie jar): a console login through an HTTP process left its session cookie there,
    and the next request of any other browser through that process was forwarded with it
    (logged in as that token, of whatever tenant)."""
    seen: list[str | None] = []

    async def login(request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={"Location": "/ui/"})
        # As the console sets its session cookie (no Secure without TLS).
        response.set_cookie("triggerd_session", "alices-session", path="/ui/",
                            httponly=True, samesite="Strict")
        return response

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.Response(text="page")

    app = web.Application()
    app.router.add_post("/ui/login", login)
    app.router.add_get("/ui/", page)
    main = web.AppRunner(app)
    await main.setup()
    path = str(tmp_path / "main.sock")
    await web.UnixSite(main, path).start()
    runner, session, port = await serve_forwarding(path)
    try:
        async with aiohttp.ClientSession() as alice, alice.post(
            f"http://127.0.0.1:{port}/ui/login", allow_redirects=False
        ) as response:
            assert response.status == 303
            # Alice's browser gets its cookie, as before.
            assert "triggerd_session=alices-session" in response.headers["Set-Cookie"]
        async with aiohttp.ClientSession() as mallory, mallory.get(
            f"http://127.0.0.1:{port}/ui/"
        ) as response:
            assert response.status == 200
        # A browser's own cookie still goes through.
        async with aiohttp.ClientSession() as alice, alice.get(
            f"http://127.0.0.1:{port}/ui/", headers={"Cookie": "triggerd_session=alices-session"}
        ) as response:
            assert response.status == 200
    finally:
        await session.close()
        await runner.cleanup()
        await main.cleanup()
    assert seen == [None, "triggerd_session=alices-session"]
