"""A crash while answering a request, on every route family of the daemon's application
(served as the daemon serves it, over loopback TCP): the JSON error envelope with status
500 (an HTML page under /ui/), one ``http_internal_error`` log line with the traceback,
and never the exception's text in the answer."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.helpers import free_port
from triggerd import logs
from triggerd.appkeys import FATAL, READINESS_CHECKS
from triggerd.config import Settings
from triggerd.daemon import create_app
from triggerd.serving.internal_errors import internal_errors
from triggerd.serving.sockets import app_runner
from triggerd.webhooks.ingress import setup_webhooks

SECRET = "s3cr3t-in-the-exception"
JSON_500 = {"error": "internal", "message": "internal error; the daemon log has the details"}


class Crash(RuntimeError):
    pass


async def crash(request: web.Request) -> web.StreamResponse:
    raise Crash(f"a real bug near {SECRET}")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.setup_logging("info", "json", stream=stream)
    try:
        yield stream
    finally:
        logs.setup_logging("warning", "text")


def crash_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in found if line.get("level") == "error"]


Prepare = Callable[[web.Application], None]


@pytest.fixture
async def serve(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Callable[[Prepare], Awaitable[int]]]:
    """The daemon's application with its webhooks, changed by ``prepare`` before it starts,
    served by the daemon's runner; returns the port."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(prepare: Prepare) -> int:
        settings = Settings()
        app = create_app(settings, pool)
        ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                                 pending_interval=3600.0)
        await ingress.start()
        cleanups.append(ingress.stop)
        prepare(app)
        runner = app_runner(app)
        await runner.setup()
        cleanups.append(runner.cleanup)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return port

    yield start
    for cleanup in reversed(cleanups):
        await cleanup()


async def send_raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """``data`` on a new connection (which it closes); the status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def crash_route(canonical: str) -> Prepare:
    """Every route of ``canonical`` answers by raising."""
    def prepare(app: web.Application) -> None:
        found = [r for r in app.router.routes() if r.resource is not None
                 and r.resource.canonical == canonical]
        assert found, canonical
        for route in found:
            route._handler = crash
    return prepare


def assert_json_500(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 500
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == JSON_500
    assert SECRET.encode() not in body


def assert_one_crash_line(stream: io.StringIO, method: str, path: str) -> None:
    [line] = crash_lines(stream)
    assert line["event"] == "http_internal_error"
    assert line["logger"] == "triggerd.serving.internal_errors"
    assert (line["method"], line["path"]) == (method, path)
    assert f"Crash: a real bug near {SECRET}" in line["exc"]


@pytest.mark.parametrize(
    ("canonical", "path"),
    [
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
        ("/metrics", "/metrics"),
        ("/hooks/{path}", "/hooks/_executions/0b4f6b5e-8f0e-4c39-9d1c-54f0b7c9f7a1"),
        ("/hooks/{path}", "/hooks/nothing-here"),
        ("/tenants/{tenant}/hooks/{path}", "/tenants/acme/hooks/pay"),
        ("/tenants/{tail}", "/tenants/NOT_A_TENANT/hooks/pay"),
        ("/hooks", "/hooks"),
    ],
)
async def test_a_crash_on_a_json_route_is_a_json_500_logged_once(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
    canonical: str, path: str,
) -> None:
    port = await serve(crash_route(canonical))
    assert_json_500(*await send_raw(port, get(path)))
    assert_one_crash_line(log_stream, "GET", path)


async def test_a_liveness_problem_that_is_no_text_is_a_json_500(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
) -> None:
    """A real crash of /healthz's own handler: its problem cannot be written as JSON."""
    def prepare(app: web.Application) -> None:
        app[FATAL].append(object())  # type: ignore[arg-type]

    port = await serve(prepare)
    assert_json_500(*await send_raw(port, get("/healthz")))
    [line] = crash_lines(log_stream)
    assert (line["event"], line["path"]) == ("http_internal_error", "/healthz")
    assert "TypeError" in line["exc"]


async def test_a_readiness_check_answering_no_text_is_a_json_500(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
) -> None:
    """A real crash of /readyz's own handler: a component's check answered something that
    cannot be written as JSON."""
    async def odd() -> Any:
        return object()

    def prepare(app: web.Application) -> None:
        app[READINESS_CHECKS]["odd"] = odd

    port = await serve(prepare)
    assert_json_500(*await send_raw(port, get("/readyz")))
    [line] = crash_lines(log_stream)
    assert (line["event"], line["path"]) == ("http_internal_error", "/readyz")


async def test_a_crash_in_an_expect_handler_is_a_json_500(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
) -> None:
    """``Expect: 100-continue`` is answered before the middlewares run: the connection
    handler answers its crash."""
    def prepare(app: web.Application) -> None:
        for route in app.router.routes():
            if route.resource is not None and route.resource.canonical == "/hooks/{path}":
                route._expect_handler = crash

    port = await serve(prepare)
    request = (b"POST /hooks/pay HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
               b"Expect: 100-continue\r\n\r\n")
    assert_json_500(*await send_raw(port, request))
    assert_one_crash_line(log_stream, "POST", "/hooks/pay")


async def test_a_crash_in_a_middleware_is_a_json_500(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
) -> None:
    """Above internal_errors (the daemon puts its drain there) aiohttp's connection
    handler catches it: the same answer and line."""
    @web.middleware
    async def broken(request: web.Request, handler: Any) -> web.StreamResponse:
        raise Crash(f"a real bug near {SECRET}")

    def prepare(app: web.Application) -> None:
        app.middlewares.insert(0, broken)

    port = await serve(prepare)
    assert_json_500(*await send_raw(port, get("/healthz")))
    assert_one_crash_line(log_stream, "GET", "/healthz")


async def test_a_console_page_that_crashes_is_an_html_page(
    serve: Callable[[Prepare], Awaitable[int]], log_stream: io.StringIO,
) -> None:
    port = await serve(crash_route("/ui/login"))
    status, headers, body = await send_raw(port, get("/ui/login"))
    assert status == 500
    assert headers["content-type"].startswith("text/html")
    assert b"something went wrong on the server" in body
    assert SECRET.encode() not in body
    [line] = crash_lines(log_stream)
    assert line["event"] == "console_request_failed"


async def test_a_crash_the_console_cannot_page_is_still_html(
    aiohttp_client: Any, log_stream: io.StringIO,
) -> None:
    """What is left to internal_errors under /ui/ (the console's own error page failed)
    is a page that needs no template, not JSON."""
    app = web.Application(middlewares=[internal_errors])
    app.router.add_get("/ui/broken", crash)
    client = await aiohttp_client(app)
    answer = await client.get("/ui/broken")
    assert answer.status == 500
    assert answer.content_type == "text/html"
    text = await answer.text()
    assert "something went wrong on the server" in text and SECRET not in text
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert_one_crash_line(log_stream, "GET", "/ui/broken")


async def test_a_deliberate_http_answer_passes_through(
    aiohttp_client: Any, log_stream: io.StringIO,
) -> None:
    async def refused(request: web.Request) -> web.StreamResponse:
        raise web.HTTPConflict(text="busy")

    app = web.Application(middlewares=[internal_errors])
    app.router.add_get("/refused", refused)
    client = await aiohttp_client(app)
    answer = await client.get("/refused")
    assert (answer.status, await answer.text()) == (409, "busy")
    assert crash_lines(log_stream) == []


async def test_a_crash_after_the_answer_began_closes_the_connection(
    aiohttp_client: Any, log_stream: io.StringIO,
) -> None:
    """A second status line inside a streamed answer's body would be read as its data:
    the crash is logged and the connection closed, as aiohttp does."""
    async def streams(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()
        await answer.prepare(request)
        await answer.write(b"first part,")
        raise Crash(f"a real bug near {SECRET}")

    app = web.Application(middlewares=[internal_errors])
    app.router.add_get("/stream", streams)
    client = await aiohttp_client(app)
    answer = await client.get("/stream")
    assert answer.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await answer.read()
    assert [line["event"] for line in crash_lines(log_stream)
            if line.get("event") == "http_internal_error"] == ["http_internal_error"]


async def test_a_timeout_or_a_gone_client_is_no_internal_error(
    aiohttp_client: Any, log_stream: io.StringIO,
) -> None:
    """A wait that ran out keeps aiohttp's 504; a client that went away is no bug: neither
    is logged as one."""
    async def times_out(request: web.Request) -> web.StreamResponse:
        raise TimeoutError

    async def client_gone(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("the peer went away")

    app = web.Application(middlewares=[internal_errors])
    app.router.add_get("/timeout", times_out)
    app.router.add_get("/gone", client_gone)
    client = await aiohttp_client(app)
    assert (await client.get("/timeout")).status == 504
    with contextlib.suppress(aiohttp.ClientError):
        await (await client.get("/gone")).read()
    assert [line.get("event") for line in crash_lines(log_stream)
            if line.get("event") == "http_internal_error"] == []
