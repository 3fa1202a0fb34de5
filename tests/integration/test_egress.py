"""http nodes and the egress policy (issue 12 item 8), over real loopback connections.

One loopback server stands for an outside service, another for the daemon's own listener
(its port is the policy's own port). A resolver served by the test maps names to addresses,
including one that answers differently on the second lookup (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from triggerd.egress import EgressConnector, EgressPolicy, egress_session
from triggerd.model import JSON, Node
from triggerd.nodes.base import NodeContext, NodeFailure, NodeResult
from triggerd.nodes.registry import run_node


@dataclass
class Loopback:
    base: str = ""
    port: int = 0
    hits: list[str] = field(default_factory=list)


async def _serve(server: Loopback) -> web.AppRunner:
    async def handle(request: web.Request) -> web.StreamResponse:
        server.hits.append(request.path_qs)
        if request.path == "/redirect":
            raise web.HTTPFound(request.query["to"])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = int(runner.addresses[0][1])
    server.base = f"http://127.0.0.1:{server.port}"
    return runner


@pytest_asyncio.fixture(loop_scope="function")
async def servers() -> AsyncIterator[tuple[Loopback, Loopback]]:
    """(an outside service, the daemon's own listener)"""
    outside, own = Loopback(), Loopback()
    runners = [await _serve(outside), await _serve(own)]
    try:
        yield outside, own
    finally:
        for runner in runners:
            await runner.cleanup()


class Names(AbstractResolver):
    """DNS answers chosen by the test: each name's answers in turn, the last one repeated."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        queue = self.answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        version = ipaddress.ip_address(address).version
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET if version == 4 else socket.AF_INET6,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


async def call(params: JSON, http: aiohttp.ClientSession | None) -> NodeResult:
    ctx = NodeContext(
        execution_id="exec-1", node=Node(id="fetch", type="http"), attempt=1, http=http,
        now=datetime(2024, 3, 1, tzinfo=UTC), log=logging.getLogger("tests.egress"),
    )
    return await run_node(params, ctx)


async def refused(params: JSON, http: aiohttp.ClientSession | None) -> NodeFailure:
    with pytest.raises(NodeFailure) as caught:
        await call(params, http)
    assert caught.value.code == "EGRESS_DENIED", caught.value.message
    assert caught.value.retryable is False
    return caught.value


def own_self(port: int) -> str:
    return (f"egress to 127.0.0.1:{port} refused: it is this daemon's own listener"
            " (set [egress] allow_self = true to allow)")


METADATA = ("egress to 169.254.169.254:80 refused: 169.254.0.0/16 is link-local or cloud"
            " metadata (add it to [egress] allow to allow)")


async def test_an_outside_service_on_loopback_is_reached(
    servers: tuple[Loopback, Loopback],
) -> None:
    outside, own = servers
    async with egress_session(EgressPolicy(own_ports=frozenset({own.port}))) as session:
        result = await call({"url": f"{outside.base}/ok"}, session)
    assert (result.output["status"], result.output["body"]) == (200, {"ok": True})
    assert (outside.hits, own.hits) == (["/ok"], [])


async def test_the_daemons_own_port_is_refused_without_a_request(
    servers: tuple[Loopback, Loopback],
) -> None:
    _, own = servers
    async with egress_session(EgressPolicy(own_ports=frozenset({own.port}))) as session:
        failed = await refused({"url": f"{own.base}/api/v1/workflows"}, session)
    assert failed.message == f"GET {own.base}/api/v1/workflows: {own_self(own.port)}"
    assert own.hits == []


async def test_allow_self_reaches_the_daemons_own_port(
    servers: tuple[Loopback, Loopback],
) -> None:
    _, own = servers
    policy = EgressPolicy(own_ports=frozenset({own.port}), allow_self=True)
    async with egress_session(policy) as session:
        result = await call({"url": f"{own.base}/healthz"}, session)
    assert result.output["status"] == 200 and own.hits == ["/healthz"]


@pytest.mark.parametrize("shared", [True, False], ids=["executor-session", "private-session"])
async def test_cloud_metadata_is_refused_before_connecting(shared: bool) -> None:
    # No route to 169.254.169.254 is needed: the refusal comes before any connect.
    url = "http://169.254.169.254/latest/meta-data/iam/"
    if shared:
        async with egress_session() as session:
            failed = await refused({"url": url}, session)
    else:
        failed = await refused({"url": url}, None)
    assert failed.message == f"GET {url}: {METADATA}"


async def test_a_name_resolving_to_a_denied_address_is_refused(
    servers: tuple[Loopback, Loopback],
) -> None:
    _, own = servers
    names = Names({"metadata.internal": ["169.254.169.254"],
                   "admin.internal": ["127.0.0.1"]})
    connector = EgressConnector(EgressPolicy(own_ports=frozenset({own.port})), resolver=names)
    async with aiohttp.ClientSession(connector=connector) as session:
        failed = await refused({"url": "http://metadata.internal/x"}, session)
        assert failed.message == (
            f"GET http://metadata.internal/x: metadata.internal resolves to denied addresses;"
            f" {METADATA}")
        failed = await refused({"url": f"http://admin.internal:{own.port}/x"}, session)
        assert failed.message == (
            f"GET http://admin.internal:{own.port}/x: admin.internal resolves to denied"
            f" addresses; {own_self(own.port)}")
    assert names.asked == ["metadata.internal", "admin.internal"]
    assert own.hits == []


async def test_dns_rebinding_is_checked_on_every_connection(
    servers: tuple[Loopback, Loopback],
) -> None:
    outside, _ = servers
    # The same URL twice; between the two lookups the name moves to the metadata address.
    names = Names({"rebind.test": ["127.0.0.1", "169.254.169.254"]})
    connector = EgressConnector(EgressPolicy(), resolver=names, use_dns_cache=False,
                                force_close=True)
    url = f"http://rebind.test:{outside.port}/ok"
    async with aiohttp.ClientSession(connector=connector) as session:
        first = await call({"url": url}, session)
        assert first.output["status"] == 200
        failed = await refused({"url": url}, session)
    assert failed.message == (
        f"GET {url}: rebind.test resolves to denied addresses; egress to"
        f" 169.254.169.254:{outside.port} refused: 169.254.0.0/16 is link-local or cloud"
        " metadata (add it to [egress] allow to allow)")
    assert names.asked == ["rebind.test", "rebind.test"]
    assert outside.hits == ["/ok"]


async def test_a_redirect_to_a_denied_address_is_refused(
    servers: tuple[Loopback, Loopback],
) -> None:
    outside, own = servers
    target = f"{own.base}/api/v1/tokens"
    async with egress_session(EgressPolicy(own_ports=frozenset({own.port}))) as session:
        failed = await refused({"url": f"{outside.base}/redirect?to={target}"}, session)
        metadata = await refused(
            {"url": f"{outside.base}/redirect?to=http://169.254.169.254/"}, session)
    assert failed.message == f"GET {outside.base}/redirect: {own_self(own.port)}"
    assert metadata.message == f"GET {outside.base}/redirect: {METADATA}"
    assert len(outside.hits) == 2 and own.hits == []


async def test_deny_refuses_more_and_allow_reopens(servers: tuple[Loopback, Loopback]) -> None:
    outside, _ = servers
    deny = (ipaddress.ip_network("127.0.0.0/8"),)
    async with egress_session(EgressPolicy(deny=deny)) as session:
        failed = await refused({"url": f"{outside.base}/ok"}, session)
    assert failed.message == (f"GET {outside.base}/ok: egress to 127.0.0.1:{outside.port}"
                              " refused: 127.0.0.0/8 is in [egress] deny")
    allow = (ipaddress.ip_network("127.0.0.1/32"),)
    async with egress_session(EgressPolicy(deny=deny, allow=allow)) as session:
        result = await call({"url": f"{outside.base}/ok"}, session)
    assert result.output["status"] == 200 and outside.hits == ["/ok"]


async def test_the_socket_factory_refuses_what_resolution_would(
    servers: tuple[Loopback, Loopback],
) -> None:
    # The last check before connect() holds even if a code path skipped resolution.
    _, own = servers
    connector = EgressConnector(EgressPolicy(own_ports=frozenset({own.port})))
    try:
        with pytest.raises(PermissionError, match="this daemon's own listener"):
            connector._socket(
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", own.port)))
        connector._socket(
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", own.port + 1))).close()
    finally:
        await connector.close()
