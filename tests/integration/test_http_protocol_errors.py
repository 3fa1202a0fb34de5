"""Requests aiohttp cannot parse (an over-long URL, too many headers, TLS on the plain port)
over real loopback TCP: one JSON line at info each, no traceback, rate-limited, while a
handler's real crash still logs its traceback."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import free_port
from triggerd import logs
from triggerd.config import Settings
from triggerd.daemon import create_app
from triggerd.serving.sockets import app_runner

LONG_URL = b"GET /hooks/" + b"a" * 9000 + b"?token=do-not-log-me HTTP/1.1\r\nHost: x\r\n\r\n"
MANY_HEADERS = (
    b"POST /hooks/x HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-Filler-%d: v\r\n" % n for n in range(2000))
    + b"\r\n"
)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def log_stream(clock: FakeMonotonic) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.setup_logging("info", "json", stream=stream, monotonic=clock)
    try:
        yield stream
    finally:
        logs.setup_logging("warning", "text")


@pytest.fixture
async def port(pool: asyncpg.Pool) -> AsyncIterator[int]:
    """The daemon's application, served as the daemon serves it."""
    app = create_app(Settings(), pool)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a real bug")

    app.router.add_get("/boom", boom)
    runner = app_runner(app)
    await runner.setup()
    chosen = free_port()
    await web.TCPSite(runner, "127.0.0.1", chosen).start()
    try:
        yield chosen
    finally:
        await runner.cleanup()


async def send_raw(port: int, data: bytes) -> bytes:
    """``data`` on a new connection; the whole answer (the server closes after an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def named(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line["event"] == event]


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [(LONG_URL, "line_too_long"), (MANY_HEADERS, "too_many_headers")],
    ids=["long-url", "2000-headers"],
)
async def test_a_bad_request_is_one_info_line_without_traceback(
    port: int, log_stream: io.StringIO, request_bytes: bytes, reason: str
) -> None:
    answer = await send_raw(port, request_bytes)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    [line] = lines(log_stream)
    assert line["event"] == "http_protocol_error"
    assert line["level"] == "info"
    assert line["logger"] == "aiohttp.server"
    assert line["reason"] == reason
    assert line["remote"] == "127.0.0.1"
    assert line["status"] == 400
    assert "exc" not in line
    assert "Traceback" not in log_stream.getvalue()
    # What the client sent is not copied into the log.
    assert "aaaa" not in log_stream.getvalue()
    assert "do-not-log-me" not in log_stream.getvalue()
    assert "X-Filler" not in log_stream.getvalue()


async def test_tls_on_the_plain_port_is_not_an_error_either(
    port: int, clock: FakeMonotonic
) -> None:
    stream = io.StringIO()
    logs.setup_logging("debug", "json", stream=stream, monotonic=clock)
    try:
        answer = await send_raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    finally:
        logs.setup_logging("warning", "text")
    assert answer.startswith(b"HTTP/1.0 400")
    [line] = named(stream, "http_protocol_error")
    # aiohttp itself files this under debug: it stays there, without a traceback.
    assert (line["level"], line["reason"]) == ("debug", "bad_method")
    assert "exc" not in line


async def test_a_flood_logs_a_burst_then_one_summary(
    port: int, log_stream: io.StringIO, clock: FakeMonotonic
) -> None:
    for n in range(1000):
        await send_raw(port, MANY_HEADERS if n % 2 else LONG_URL)
    # The clock did not move: only the burst was written.
    assert len(named(log_stream, "http_protocol_error")) == logs.PROTOCOL_ERROR_BURST
    assert named(log_stream, "log_suppressed") == []
    clock.now += 60
    throttle = logs.protocol_error_log()
    assert throttle is not None
    assert throttle.flush() == 1
    [summary] = named(log_stream, "log_suppressed")
    assert summary["suppressed_event"] == "http_protocol_error"
    assert summary["suppressed"] == 1000 - logs.PROTOCOL_ERROR_BURST
    assert summary["level"] == "info"
    assert len(lines(log_stream)) == logs.PROTOCOL_ERROR_BURST + 1
    # Logging resumes once the budget refilled.
    await send_raw(port, LONG_URL)
    assert len(named(log_stream, "http_protocol_error")) == logs.PROTOCOL_ERROR_BURST + 1


async def test_below_info_nothing_is_written(port: int, clock: FakeMonotonic) -> None:
    stream = io.StringIO()
    logs.setup_logging("warning", "json", stream=stream, monotonic=clock)
    try:
        for _ in range(3):
            await send_raw(port, LONG_URL)
    finally:
        logs.setup_logging("warning", "text")
    assert stream.getvalue() == ""


async def test_a_crash_in_a_handler_still_logs_its_traceback(
    port: int, log_stream: io.StringIO
) -> None:
    answer = await send_raw(port, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500")
    [line] = [x for x in lines(log_stream) if x["level"] == "error"]
    assert line["event"] == "http_internal_error"
    assert "RuntimeError: a real bug" in line["exc"]


SECRET = b"s3cr3t-do-not-echo"


def long_header(path: str) -> bytes:
    """One header line past aiohttp's 8,190 bytes, holding a secret in its first bytes."""
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        + b"Authorization: Bearer " + SECRET + b"x" * 9000 + b"\r\n\r\n"
    )


def many_headers(path: str) -> bytes:
    return MANY_HEADERS.replace(b"/hooks/x", path.encode())


def long_request_line(path: str) -> bytes:
    return b"GET " + path.encode() + b"?token=" + SECRET + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("path", ["/hooks/github/push", "/api/v1/triggers", "/ui/"])
@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (
            long_header, "line_too_long",
            "the request line or a header line is longer than the server accepts (8190 bytes)",
        ),
        (many_headers, "too_many_headers",
         "the request has more header lines than the server accepts"),
        (
            long_request_line, "line_too_long",
            "the request line or a header line is longer than the server accepts (8190 bytes)",
        ),
    ],
    ids=["long-header", "many-headers", "long-request-line"],
)
async def test_an_unparsable_request_is_answered_in_the_json_envelope_without_echo(
    port: int, log_stream: io.StringIO, path: str, make: Callable[[str], bytes], code: str,
    message: str,
) -> None:
    answer = await send_raw(port, make(path))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.split(" ")[1] == "400"
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": code, "message": message}
    # Nothing the client sent comes back, nor reaches the log.
    assert SECRET not in answer and b"xxxx" not in answer and b"X-Filler" not in answer
    assert SECRET.decode() not in log_stream.getvalue()
    [line] = named(log_stream, "http_protocol_error")
    assert (line["reason"], line["status"]) == (code, 400)


def test_reasons_of_the_parser_errors() -> None:
    from aiohttp import http_exceptions as h

    reason: Callable[[h.HttpProcessingError], str] = logs.protocol_error_reason
    assert reason(h.LineTooLong("x", 8190)) == "line_too_long"
    assert reason(h.BadHttpMessage("Too many headers received")) == "too_many_headers"
    assert reason(h.BadHttpMethod("\x16\x03")) == "bad_method"
    assert reason(h.BadStatusLine("x")) == "bad_request_line"
    assert reason(h.InvalidHeader("x")) == "invalid_header"
    assert reason(h.InvalidURLError("x")) == "invalid_url"
    assert reason(h.ContentLengthError("x")) == "bad_body_framing"
    assert reason(h.TransferEncodingError("x")) == "bad_body_framing"
    assert reason(h.BadHttpMessage("Missing 'Host' header in request.")) == "bad_request"
