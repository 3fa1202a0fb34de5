"""The http node against a real aiohttp server on the loopback interface."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from triggerd.egress import EgressConnector
from triggerd.executor.service import http_client
from triggerd.model import JSON, Node
from triggerd.nodes.base import NodeContext, NodeFailure, NodeResult
from triggerd.nodes.registry import run_node

SEEN: web.AppKey[list[dict[str, JSON]]] = web.AppKey("seen", list)
RELEASE: web.AppKey[asyncio.Event] = web.AppKey("release", asyncio.Event)


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    request.app[SEEN].append(
        {
            "method": request.method,
            "path": request.path,
            "query": [[k, v] for k, v in request.query.items()],
            "authorization": request.headers.get("Authorization"),
            "content_type": request.content_type,
            "body": body,
        }
    )
    return web.json_response({"ok": True, "n": 1}, headers={"X-Trace": "t-1"})


async def text(request: web.Request) -> web.Response:
    return web.Response(text="plain words", content_type="text/plain")


async def broken_json(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


async def raw_json(request: web.Request) -> web.Response:
    """?text= as the body, typed application/json."""
    return web.Response(text=request.query["text"], content_type="application/json")


async def nested_json(request: web.Request) -> web.Response:
    """A JSON list nested ?depth= levels deep."""
    depth = int(request.query["depth"])
    return web.Response(text="[" * depth + "]" * depth, content_type="application/json")


async def empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def error(request: web.Request) -> web.Response:
    return web.json_response({"error": "down"}, status=500)


async def headers_seen(request: web.Request) -> web.Response:
    request.app[SEEN].append({
        "method": request.method, "query": [[k, v] for k, v in request.query.items()],
        "authorization": request.headers.get("Authorization"),
        "api_key": request.headers.get("X-Api-Key"), "body": await request.text()})
    return web.json_response({"ok": True})


async def redirect(request: web.Request) -> web.Response:
    """302 (307 with ?status=307) to ?to=, relative or absolute."""
    if request.query.get("status") == "307":
        raise web.HTTPTemporaryRedirect(request.query["to"])
    raise web.HTTPFound(request.query["to"])


async def raw_redirect(request: web.Request) -> web.Response:
    """302 with ?to= as the Location header, unchecked (aiohttp's own redirects parse it)."""
    return web.Response(status=302, headers={"Location": request.query["to"]})


async def see_other(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(request.query["to"])


async def loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def loop_query(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.path_qs)  # itself, query kept (as an http -> https hop)


async def slow_hops(request: web.Request) -> web.Response:
    """0.3 s, then a redirect to the next hop (?n= left)."""
    await asyncio.sleep(0.3)
    left = int(request.query["n"])
    if left == 0:
        return web.Response(text="end")
    raise web.HTTPFound(f"/slow-hops?n={left - 1}")


async def login(request: web.Request) -> web.Response:
    """302 to ?to= (default /home), setting a session cookie and cookies it must not send
    on: one for another path, one Secure (the hop is plain http), one for another domain."""
    answer = web.HTTPFound(request.query.get("to", "/home"))
    answer.set_cookie("sid", "abc", path="/")
    answer.set_cookie("admin", "no", path="/admin")
    answer.set_cookie("tls", "no", secure=True)
    answer.set_cookie("elsewhere", "no", domain="other.example")
    raise answer


async def home(request: web.Request) -> web.Response:
    """What a logged-in page sees: the Cookie header (401 without the session cookie)."""
    cookie = request.headers.get("Cookie")
    return web.json_response({"cookie": cookie},
                             status=200 if "sid" in request.cookies else 401)


async def slow(request: web.Request) -> web.Response:
    await request.app[RELEASE].wait()  # released when the test ends
    return web.Response(text="late")


@pytest_asyncio.fixture(loop_scope="function")
async def server() -> AsyncIterator[tuple[str, web.Application]]:
    app = web.Application()
    app[SEEN] = []
    app[RELEASE] = asyncio.Event()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/text", text)
    app.router.add_get("/broken-json", broken_json)
    app.router.add_get("/empty", empty)
    app.router.add_get("/raw-json", raw_json)
    app.router.add_get("/nested-json", nested_json)
    app.router.add_get("/error", error)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/raw-redirect", raw_redirect)
    app.router.add_route("*", "/seen", headers_seen)
    app.router.add_route("*", "/see-other", see_other)
    app.router.add_get("/loop", loop)
    app.router.add_get("/loop-query", loop_query)
    app.router.add_get("/slow-hops", slow_hops)
    app.router.add_route("*", "/login", login)
    app.router.add_get("/home", home)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        app[RELEASE].set()
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="function")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(params: JSON, http: aiohttp.ClientSession | None) -> NodeResult:
    ctx = NodeContext(
        execution_id="exec-1",
        node=Node(id="fetch", type="http"),
        attempt=1,
        http=http,
        now=datetime(2024, 3, 1, tzinfo=UTC),
        log=logging.getLogger("tests.http"),
    )
    return await run_node(params, ctx)


async def call_fails(params: JSON, http: aiohttp.ClientSession | None) -> NodeFailure:
    with pytest.raises(NodeFailure) as caught:
        await call(params, http)
    return caught.value


async def test_json_response_is_parsed_and_request_is_sent_as_given(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, app = server
    result = await call(
        {
            "method": "post",
            "url": f"{base}/echo?fixed=1",
            "headers": {"Authorization": "Bearer s3cr3t", "X-Absent": None},
            "query": {"day": "2024-03-01", "tag": ["a", "b"], "flag": True, "none": None},
            "json": {"n": 1, "list": [True, None]},
        },
        session,
    )
    assert result.output["status"] == 200
    assert result.output["body"] == {"ok": True, "n": 1}
    assert result.output["headers"]["x-trace"] == "t-1"
    assert result.output["headers"]["content-type"] == "application/json; charset=utf-8"
    assert app[SEEN] == [
        {
            "method": "POST",
            "path": "/echo",
            "query": [
                ["fixed", "1"],
                ["day", "2024-03-01"],
                ["tag", "a"],
                ["tag", "b"],
                ["flag", "true"],
            ],
            "authorization": "Bearer s3cr3t",
            "content_type": "application/json",
            "body": json.dumps({"n": 1, "list": [True, None]}),
        }
    ]


async def test_raw_body_is_sent_as_is(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, app = server
    await call(
        {
            "method": "PUT",
            "url": f"{base}/echo",
            "headers": {"Content-Type": "text/csv"},
            "body": "a,b\n1,2\n",
        },
        session,
    )
    assert [(s["method"], s["content_type"], s["body"]) for s in app[SEEN]] == [
        ("PUT", "text/csv", "a,b\n1,2\n")
    ]


async def test_json_null_is_sent_as_json(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    # aiohttp reads json=None as "no body": an empty octet-stream went out.
    base, app = server
    await call({"method": "POST", "url": f"{base}/echo", "json": None}, session)
    await call({"method": "POST", "url": f"{base}/echo", "json": None,
                "headers": {"Content-Type": "application/vnd.x+json"}}, session)
    assert [(s["content_type"], s["body"]) for s in app[SEEN]] == [
        ("application/json", "null"), ("application/vnd.x+json", "null")]


async def test_a_timeout_of_zero_is_refused_not_unlimited(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, app = server
    failed = await call_fails({"url": f"{base}/echo", "timeout": "0s"}, session)
    assert (failed.code, failed.message) == (
        "INVALID_PARAMS", "http node: parameter 'timeout' must be more than 0")
    assert app[SEEN] == []


async def test_text_body_is_kept_as_text(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    result = await call({"url": f"{base}/text"}, session)
    assert (result.output["status"], result.output["body"]) == (200, "plain words")
    result = await call({"url": f"{base}/broken-json"}, session)
    assert result.output["body"] == "{not json"
    result = await call({"url": f"{base}/empty"}, session)
    assert (result.output["status"], result.output["body"]) == (204, None)


async def test_json_that_jsonb_cannot_hold_is_kept_as_text(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    # A number past a float's range parsed as infinity: stored as null, and the next
    # node's expression failed on it.
    for text in ('{"n": 1e999}', '{"n": NaN}', "[-Infinity]"):
        result = await call({"url": f"{base}/raw-json", "query": {"text": text}}, session)
        assert result.output["body"] == text
    result = await call({"url": f"{base}/raw-json", "query": {"text": '{"n": 1.5e300}'}},
                        session)
    assert result.output["body"] == {"n": 1.5e300}
    # Nested as deep as a webhook's body may be, it is parsed; deeper it is text. Deeper
    # still, the parser's RecursionError crashed the node (NODE_ERROR, a traceback).
    result = await call({"url": f"{base}/nested-json", "query": {"depth": "128"}}, session)
    assert isinstance(result.output["body"], list)
    for depth in (129, 5000):
        result = await call({"url": f"{base}/nested-json", "query": {"depth": str(depth)}},
                            session)
        assert result.output["body"] == "[" * depth + "]" * depth


async def test_without_a_shared_session_a_private_one_is_used(
    server: tuple[str, web.Application],
) -> None:
    base, _ = server
    result = await call({"url": f"{base}/text"}, None)
    assert result.output["body"] == "plain words"


async def test_a_header_value_with_a_line_break_fails_the_node_cleanly(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    # Rendered at run time (check cannot see it): aiohttp's ValueError crashed the node.
    base, _ = server
    failed = await call_fails({"url": f"{base}/text", "headers": {"X-A": "a\r\nX-B: b"}},
                              session)
    assert (failed.code, failed.message) == (
        "INVALID_PARAMS", "http node: parameter 'headers': the value of 'X-A' has a line"
        " break or another control character")


async def test_status_not_accepted_is_http_status(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    failed = await call_fails({"url": f"{base}/error?token=s3cr3t"}, session)
    assert failed.code == "HTTP_STATUS"
    assert failed.message == f"GET {base}/error: answered status 500"  # query left out
    assert failed.retryable_status == 500
    assert failed.output["body"] == {"error": "down"}
    accepted = await call({"url": f"{base}/error", "accept": [200, 500]}, session)
    assert accepted.output["status"] == 500
    refused = await call_fails({"url": f"{base}/text", "accept": [201]}, session)
    assert (refused.code, refused.retryable_status) == ("HTTP_STATUS", 200)


async def test_closed_port_is_http_connect(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failed = await call_fails({"url": f"http://127.0.0.1:{port}/x"}, session)
    assert failed.code == "HTTP_CONNECT"
    assert failed.message.startswith(f"GET http://127.0.0.1:{port}/x: cannot connect: ")
    assert failed.retryable is True
    # Credentials in the url stay out of the message (stored, logged).
    failed = await call_fails({"url": f"http://bot:pa55w0rd@127.0.0.1:{port}/x"}, session)
    assert failed.message.startswith(f"GET http://127.0.0.1:{port}/x: cannot connect: ")
    assert "pa55w0rd" not in failed.message


async def test_slow_server_is_timeout(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    failed = await call_fails({"url": f"{base}/slow", "timeout": "200ms"}, session)
    assert (failed.code, failed.message) == (
        "TIMEOUT",
        f"GET {base}/slow: no complete response within 200ms",
    )


async def test_redirects_keep_the_nodes_headers_at_their_origin(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    """aiohttp carried every header but Authorization to wherever a redirect pointed: a
    secret API key went to another origin."""
    base, app = server
    port = base.rsplit(":", 1)[1]
    secret = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"}
    # Same origin (a relative Location): the headers, the method and the body go on.
    result = await call({"url": f"{base}/redirect?to=/seen%3Fa%3D1", "method": "POST",
                         "headers": secret, "json": {"n": 1}, "query": {"x": "y"}}, session)
    assert result.output["status"] == 200
    [same] = app[SEEN]
    assert (same["method"], same["query"], same["authorization"], same["api_key"]) == (
        "GET", [["a", "1"]], "Bearer s3cret", "k3y")  # 302 after a POST: a GET, as browsers
    # Another origin (localhost is not 127.0.0.1): no header of the node's goes along.
    app[SEEN].clear()
    other = f"http://localhost:{port}/seen"
    await call({"url": f"{base}/redirect?to={other}&status=307", "method": "PUT",
                "headers": secret, "body": "payload"}, session)
    [cross] = app[SEEN]
    assert (cross["method"], cross["body"], cross["authorization"], cross["api_key"]) == (
        "PUT", "payload", None, None)  # 307 keeps the method and the body
    # 303: a GET without the body, headers kept at the same origin.
    app[SEEN].clear()
    await call({"url": f"{base}/see-other?to=/seen", "method": "POST", "headers": secret,
                "json": {"n": 2}}, session)
    [other_see] = app[SEEN]
    assert (other_see["method"], other_see["body"], other_see["api_key"]) == ("GET", "", "k3y")
    failure = await call_fails({"url": f"{base}/loop"}, session)
    assert failure.code == "HTTP_ERROR"
    assert failure.message == (
        f"GET {base}/loop: more than 10 redirects in a row (the last to {base}/loop)")


@pytest.mark.parametrize("client", ["the executor's", "its own"])
async def test_cookies_set_on_a_redirect_go_with_that_requests_next_hops_only(
    server: tuple[str, web.Application], client: str
) -> None:
    """A login answering 302 with its session cookie, then the page it points to: the
    page got no cookie once the executor's client kept none (it answered 401). The
    cookies follow their own rules (path, Secure, domain), stay at their host, and live
    for that one request's redirects: a later request, of this node or another, has none."""
    base, _ = server
    port = base.rsplit(":", 1)[1]
    async with contextlib.AsyncExitStack() as stack:
        http = (await stack.enter_async_context(http_client(EgressConnector()))
                if client == "the executor's" else None)
        result = await call({"url": f"{base}/login", "method": "POST",
                             "headers": {"Cookie": "mine=1"}}, http)
        assert (result.output["status"], result.output["body"]) == (
            200, {"cookie": "mine=1; sid=abc"})
        # Another host (localhost is not 127.0.0.1): neither the node's Cookie header nor
        # the cookie the login's host set go along.
        failed = await call_fails({"url": f"{base}/login?to=http://localhost:{port}/home",
                                   "headers": {"Cookie": "mine=1"}}, http)
        assert (failed.code, failed.output["body"]) == ("HTTP_STATUS", {"cookie": None})
        # Nothing is kept for the next request.
        failed = await call_fails({"url": f"{base}/home"}, http)
        assert (failed.code, failed.output["body"]) == ("HTTP_STATUS", {"cookie": None})


async def test_the_timeout_bounds_the_whole_chain_of_redirects(
    server: tuple[str, web.Application], session: aiohttp.ClientSession
) -> None:
    """Each hop had the node's whole timeout: four hops of 0.3 s passed a 1 s limit."""
    base, _ = server
    assert (await call({"url": f"{base}/slow-hops?n=1", "timeout": "1s"}, session)
            ).output["body"] == "end"
    failure = await call_fails({"url": f"{base}/slow-hops?n=4", "timeout": "1s"}, session)
    assert failure.code == "TIMEOUT"
    assert failure.message == f"GET {base}/slow-hops: no complete response within 1s"


@pytest_asyncio.fixture(loop_scope="function")
async def malformed() -> AsyncIterator[str]:
    """A server whose answer is no HTTP (a header line without a colon)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("where", ["query", "url"])
async def test_a_malformed_response_names_the_url_without_its_query(
    malformed: str, where: str
) -> None:
    # aiohttp's error for an unparsable answer names the whole URL, query included, as
    # yarl writes it ("+" as %2B, "=" as %3D): a base64 key in the query reached the
    # stored error message and the log in a form the run's redactor did not know.
    key = "Zm9v+YmFy/YmF6=="
    params: JSON = (
        {"url": f"{malformed}/p", "query": {"api_key": key}} if where == "query"
        else {"url": f"{malformed}/p?api_key={key}"}
    )
    failure = await call_fails(params, None)
    assert failure.code == "HTTP_ERROR"
    assert failure.message.startswith(f"GET {malformed}/p: a malformed response: "), (
        failure.message)
    assert "api_key" not in failure.message


async def test_too_many_redirects_names_the_last_url_without_its_query(
    server: tuple[str, web.Application]
) -> None:
    # The query a redirect keeps may hold a key, in yarl's spelling (see above).
    base, _ = server
    failure = await call_fails(
        {"url": f"{base}/loop-query", "query": {"api_key": "Zm9v+YmFy/YmF6=="}}, None)
    assert failure.code == "HTTP_ERROR"
    assert failure.message == (f"GET {base}/loop-query: more than 10 redirects in a row"
                               f" (the last to {base}/loop-query)")


@pytest.mark.parametrize(("url", "problem"), [
    # The first crashed the node (NODE_ERROR: the resolver's UnicodeError); the others
    # failed every attempt with HTTP_CONNECT or EGRESS_DENIED, retried for nothing.
    ("http://a..b/x", "its host 'a..b' has an empty label or one longer than 63 characters"),
    ("http://exa mple.com/", "its host 'exa mple.com' has ' ', which no host name has"),
    ("http://127.0.0.1:0/", "port 0 is no port a server listens on"),
    ("http://[1::2::3]/", "[1::2::3] is not an IPv6 address"),
    ("http://1.2.3.999/", "'1.2.3.999' is not an IPv4 address (four numbers 0-255, e.g."
                          " 10.0.0.1)"),
])
async def test_a_host_that_can_never_be_connected_to_is_invalid_params(
    session: aiohttp.ClientSession, url: str, problem: str
) -> None:
    failure = await call_fails({"url": url}, session)
    assert (failure.code, failure.message, failure.retryable) == (
        "INVALID_PARAMS",
        f"http node: parameter 'url': {url!r} can never be connected to: {problem}", False)


@pytest.mark.parametrize(("location", "problem"), [
    ("ftp://files.example/x?key=s3cr3t", "a redirect to a ftp URL (only http and https are"
                                         " followed)"),
    ("http://[::1/x", "a Location that is not a URL"),
    ("https:x", "a redirect to a URL without a host"),
    ("http://:80/x", "a Location that is not a URL"),
])
async def test_a_redirect_that_cannot_be_followed_is_the_servers_fault(
    server: tuple[str, web.Application], session: aiohttp.ClientSession, location: str,
    problem: str,
) -> None:
    """It failed INVALID_PARAMS, "parameter 'url': invalid URL (<the Location>)": the
    definition blamed for the server's answer, and the Location (which may echo a key)
    in the stored message."""
    base, _ = server
    failure = await call_fails(
        {"url": f"{base}/raw-redirect", "query": {"to": location}}, session)
    assert (failure.code, failure.message, failure.retryable) == (
        "HTTP_ERROR", f"GET {base}/raw-redirect: {problem}", False)


@pytest.mark.parametrize(("location", "problem"), [
    # The first two crashed the node in the resolver (NODE_ERROR: a UnicodeError); the
    # third failed INVALID_PARAMS "parameter 'url': invalid URL", blaming the node's url.
    ("http://a..b/x?key=s3cr3t",
     "its host 'a..b' has an empty label or one longer than 63 characters"),
    (f"http://{'a' * 64}.example/",
     f"its host '{'a' * 60}' has an empty label or one longer than 63 characters"),
    ("http://127.1/", "'127.1' is not an IPv4 address (four numbers 0-255, e.g. 10.0.0.1)"),
    ("http://127.0.0.1:0/", "port 0 is no port a server listens on"),
])
async def test_a_redirect_to_a_host_no_connection_can_reach_is_the_servers_fault(
    server: tuple[str, web.Application], session: aiohttp.ClientSession, location: str,
    problem: str,
) -> None:
    base, _ = server
    failure = await call_fails(
        {"url": f"{base}/raw-redirect", "query": {"to": location}}, session)
    assert (failure.code, failure.message, failure.retryable) == (
        "HTTP_ERROR",
        f"GET {base}/raw-redirect: a redirect to a host no connection can ever reach:"
        f" {problem}", False)
