from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from triggerd.definitions import check_documents
from triggerd.model import JSON, Node, RetryPolicy
from triggerd.nodes.base import NodeContext, NodeFailure, NodeResult, retry_delay, should_retry
from triggerd.nodes.registry import (
    NodeRegistry,
    builtin_node_types,
    get_node_type,
    load_registry,
    node_type_names,
    run_node,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BUILTIN_NODE_TYPES = ("http", "set", "if", "switch", "wait", "log", "fail", "respond", "noop",
                      "approval", "memory", "workflow")


def context(
    node_type: str, *, node_id: str = "n1", timeout: timedelta | None = None
) -> NodeContext:
    return NodeContext(
        execution_id="exec-1",
        node=Node(id=node_id, type=node_type, timeout=timeout),
        attempt=1,
        http=None,
        now=NOW,
        log=logging.getLogger("tests.nodes"),
    )


async def run(node_type: str, params: JSON) -> NodeResult:
    return await run_node(params, context(node_type))


async def failure(node_type: str, params: JSON) -> NodeFailure:
    with pytest.raises(NodeFailure) as caught:
        await run(node_type, params)
    return caught.value


# --- registry ------------------------------------------------------------------------


def test_builtin_types_are_the_declared_ones() -> None:
    assert set(builtin_node_types()) == set(BUILTIN_NODE_TYPES)
    assert node_type_names() >= frozenset(BUILTIN_NODE_TYPES)
    assert get_node_type("http").name == "http"


def test_unknown_node_type() -> None:
    with pytest.raises(NodeFailure) as caught:
        get_node_type("sftp")
    assert caught.value.code == "UNKNOWN_NODE_TYPE"
    assert caught.value.retryable is False
    assert caught.value.message.startswith("unknown node type 'sftp' (known: approval, fail, http,")


PLUGIN = textwrap.dedent(
    """
    from triggerd.nodes.base import NodeResult

    class Shout:
        name = "shout"

        async def run(self, params, ctx):
            return NodeResult(output=str(params["text"]).upper())

    class Whisper:
        name = "whisper"

        async def run(self, params, ctx):
            return NodeResult(output="psst")

    WHISPER = Whisper()

    class NotANode:
        name = "nothing"

    class SyncRun:
        name = "sync"

        def run(self, params, ctx):
            return NodeResult()
    """
)


def plugin_entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="triggerd.nodes")


@pytest.fixture
def plugin_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeRegistry:
    (tmp_path / "acme_triggerd_nodes.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return load_registry(
        [
            plugin_entry_point("shout", "acme_triggerd_nodes:Shout"),  # a class
            plugin_entry_point("whisper", "acme_triggerd_nodes:WHISPER"),  # an instance
            plugin_entry_point("missing", "acme_triggerd_nodes_gone:Node"),
            plugin_entry_point("nothing", "acme_triggerd_nodes:NotANode"),
            plugin_entry_point("sync", "acme_triggerd_nodes:SyncRun"),
            plugin_entry_point("http", "acme_triggerd_nodes:Shout"),
            plugin_entry_point("renamed", "acme_triggerd_nodes:Shout"),
        ]
    )


async def test_entry_point_node_types_are_loaded(plugin_registry: NodeRegistry) -> None:
    assert plugin_registry.names() == frozenset({*BUILTIN_NODE_TYPES, "shout", "whisper"})
    result = await run_node({"text": "hi"}, context("shout"), registry=plugin_registry)
    assert result == NodeResult(output="HI")
    result = await run_node(None, context("whisper"), registry=plugin_registry)
    assert result == NodeResult(output="psst")
    assert plugin_registry.get("http").__class__.__name__ == "HttpNode"  # built-in kept


def test_broken_entry_points_are_left_out_with_a_reason(plugin_registry: NodeRegistry) -> None:
    problems = plugin_registry.problems()
    assert problems["missing"] == (
        "entry point 'acme_triggerd_nodes_gone:Node' left out:"
        " No module named 'acme_triggerd_nodes_gone'"
    )
    assert problems["nothing"].endswith("(it needs a 'name' and an 'async def run')")
    assert problems["sync"].endswith("(it needs a 'name' and an 'async def run')")
    assert problems["http"].endswith("the name 'http' is already taken")
    assert problems["renamed"].endswith(
        "it names itself 'shout'; the entry point's name must be the same"
    )
    with pytest.raises(NodeFailure) as caught:
        plugin_registry.get("missing")
    assert caught.value.code == "UNKNOWN_NODE_TYPE"
    assert caught.value.message == (
        "unknown node type 'missing': entry point 'acme_triggerd_nodes_gone:Node' left out:"
        " No module named 'acme_triggerd_nodes_gone'"
    )


class Slow:
    name = "slow"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        await asyncio.Event().wait()
        raise AssertionError("never set")


class Crash:
    name = "crash"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        raise KeyError("oops")


class Liar:
    name = "liar"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return {"output": 1}  # type: ignore[return-value]


TEST_REGISTRY = NodeRegistry({"slow": Slow(), "crash": Crash(), "liar": Liar()})


async def test_run_node_applies_the_node_timeout() -> None:
    ctx = context("slow", timeout=timedelta(milliseconds=10))
    with pytest.raises(NodeFailure) as caught:
        await run_node(None, ctx, registry=TEST_REGISTRY)
    assert (caught.value.code, caught.value.message) == (
        "TIMEOUT",
        "node 'n1' timed out after 10ms",
    )


async def test_run_node_turns_crashes_into_node_error(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(NodeFailure) as caught:
        await run_node(None, context("crash"), registry=TEST_REGISTRY)
    assert (caught.value.code, caught.value.message) == (
        "NODE_ERROR",
        "crash node 'n1' crashed: KeyError: 'oops'",
    )
    assert [r.event for r in caplog.records] == ["node_crashed"]  # type: ignore[attr-defined]
    with pytest.raises(NodeFailure) as caught:
        await run_node(None, context("liar"), registry=TEST_REGISTRY)
    assert caught.value.message == "liar node 'n1' returned dict, not a NodeResult"


# --- simple node types ---------------------------------------------------------------


async def test_set() -> None:
    assert await run("set", {"value": {"a": [1]}}) == NodeResult(output={"a": [1]})
    assert await run("set", {"value": None}) == NodeResult(output=None)
    assert (await failure("set", {})).message == "set node: parameter 'value' is required"


@pytest.mark.parametrize(
    ("condition", "result"),
    [(True, True), ("false", False), (0, False), ("yes", True), (None, False)],
)
async def test_if(condition: JSON, result: bool) -> None:
    assert await run("if", {"condition": condition}) == NodeResult(
        output={"result": result}, branch="true" if result else "false"
    )


async def test_if_requires_a_condition() -> None:
    lost = await failure("if", {"conditon": True})
    assert lost.code == "INVALID_PARAMS"
    assert lost.retryable is False
    assert lost.message == "if node: unknown parameter 'conditon' (allowed: condition)"


@pytest.mark.parametrize(
    ("value", "cases", "branch"),
    [
        ("push", ["push", "pull_request"], "push"),
        ("pull_request", ["push", "pull_request"], "pull_request"),
        ("tag", ["push", "pull_request"], "default"),
        (200, ["200", "404"], "200"),
        ("404", [200, 404], "404"),
        (True, ["true"], "true"),
        (None, [], "default"),
    ],
)
async def test_switch(value: JSON, cases: list[JSON], branch: str) -> None:
    assert await run("switch", {"value": value, "cases": cases}) == NodeResult(
        output={"value": value, "case": branch}, branch=branch
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"value": 1}, "switch node: parameter 'cases' is required"),
        ({"value": 1, "cases": "a"}, "switch node: parameter 'cases' must be a list"),
        (
            {"value": 1, "cases": ["default"]},
            "switch node: 'default' cannot be a case: it names the fallback",
        ),
    ],
)
async def test_switch_invalid(params: JSON, message: str) -> None:
    assert (await failure("switch", params)).message == message


@pytest.mark.parametrize(
    ("params", "until", "wait_until"),
    [
        ({"duration": "90s"}, "2024-03-01T12:01:30+00:00", NOW + timedelta(seconds=90)),
        (
            {"until": "2024-03-02T00:00:00+01:00"},
            "2024-03-02T00:00:00+01:00",
            datetime(2024, 3, 1, 23, tzinfo=UTC),
        ),
        ({"until": "2024-03-01T13:00:00Z"}, "2024-03-01T13:00:00+00:00", NOW + timedelta(hours=1)),
        ({"until": "2024-03-01T11:00:00Z"}, "2024-03-01T11:00:00+00:00", None),  # past
        ({"duration": "0s"}, "2024-03-01T12:00:00+00:00", None),
    ],
)
async def test_wait(params: JSON, until: str, wait_until: datetime | None) -> None:
    assert await run("wait", params) == NodeResult(output={"until": until}, wait_until=wait_until)


@pytest.mark.parametrize(("started", "wait_until"), [
    (NOW + timedelta(minutes=30), NOW + timedelta(hours=1)),  # still ahead: parks
    (NOW + timedelta(hours=1), None),  # its end, by the clock: on at once
    (NOW + timedelta(hours=2), None),
])
async def test_a_wait_decided_from_an_earlier_start_parks_only_until_a_later_instant(
    started: datetime, wait_until: datetime | None
) -> None:
    """Taken up again after a dead process cut it, a wait's end is decided from the cut
    attempt's start (``now``); whether it still waits, from the clock (``started``)."""
    ctx = replace(context("wait"), started=started)
    assert await run_node({"duration": "1h"}, ctx) == NodeResult(
        output={"until": "2024-03-01T13:00:00+00:00"}, wait_until=wait_until)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "wait node: give exactly one of 'duration' and 'until'"),
        (
            {"duration": "1s", "until": "2024-03-01T13:00:00Z"},
            "wait node: give exactly one of 'duration' and 'until'",
        ),
        (
            {"duration": "soon"},
            "wait node: parameter 'duration': 'soon' is not a duration (use a number and a"
            " unit: ms, s, m, h, d; e.g. '500ms', '30s', '6h')",
        ),
        (
            {"until": "tomorrow"},
            "wait node: parameter 'until': 'tomorrow' is not an ISO-8601 instant",
        ),
        (
            {"until": "2024-03-01T13:00:00"},
            "wait node: parameter 'until': '2024-03-01T13:00:00' has no UTC offset"
            " (e.g. add 'Z' or '+02:00')",
        ),
        (
            {"until": "9999-12-31T23:59:59-05:00"},
            "wait node: parameter 'until': '9999-12-31T23:59:59-05:00' is out of range"
            " (years 1-9999 in UTC)",
        ),
    ],
)
async def test_wait_invalid(params: JSON, message: str) -> None:
    assert (await failure("wait", params)).message == message


async def test_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="triggerd.nodes.log")
    assert await run("log", {"message": "100% done", "level": "WARNING"}) == NodeResult(
        output={"message": "100% done"}
    )
    assert await run("log", {"message": {"n": 1}}) == NodeResult(output={"message": '{"n": 1}'})
    records = [r for r in caplog.records if r.name == "triggerd.nodes.log"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "100% done"),
        (logging.INFO, '{"n": 1}'),
    ]
    assert vars(records[0])["execution_id"] == "exec-1"
    assert vars(records[0])["node_id"] == "n1"
    assert (await failure("log", {"message": "x", "level": "loud"})).message == (
        "log node: parameter 'level' must be one of debug, info, warning, error, got 'loud'"
    )


async def test_a_long_log_message_is_logged_cut_and_output_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 1 MB message was one 1 MB line: journald cut it into entries none of which was
    JSON. The line keeps 16 KiB and says how long the message was; the output keeps it."""
    caplog.set_level(logging.INFO, logger="triggerd.nodes.log")
    message = "x" * 1_000_000
    assert await run("log", {"message": message}) == NodeResult(output={"message": message})
    [record] = [r for r in caplog.records if r.name == "triggerd.nodes.log"]
    assert record.getMessage() == "x" * 16384 + "… (cut: 1,000,000 characters in all)"
    # Bytes as the JSON line writes them, not characters: 16 KiB of CJK text is 48 KiB of
    # UTF-8, and a control character is six bytes escaped.
    for wide in ("中" * 40_000, "\x01" * 40_000):
        caplog.clear()
        await run("log", {"message": wide})
        [record] = [r for r in caplog.records if r.name == "triggerd.nodes.log"]
        line = json.dumps(record.getMessage(), ensure_ascii=False).encode()
        assert 8 * 1024 < len(line) <= 16 * 1024 + 64, len(line)
        assert record.getMessage().endswith("… (cut: 40,000 characters in all)")


async def test_log_masks_a_resume_link(caplog: pytest.LogCaptureFixture) -> None:
    """A resume link decides its run: the log line (read by whoever reads the logs) masks
    its token, as the run's stored rows do."""
    caplog.set_level(logging.INFO, logger="triggerd.nodes.log")
    link = "https://t.example.com/hooks/_resume/0RBb49z2Qx-_tk9"
    await run("log", {"message": f"decide at {link} or {link}."})
    [record] = [r for r in caplog.records if r.name == "triggerd.nodes.log"]
    assert record.getMessage() == (
        "decide at https://t.example.com/hooks/_resume/*** or"
        " https://t.example.com/hooks/_resume/***.")


async def test_fail() -> None:
    failed = await failure("fail", {})
    assert (failed.code, failed.message, failed.retryable) == ("FAILED", "node 'n1' failed", True)
    failed = await failure("fail", {"code": "NO_DATA", "message": "nothing for 2024-03-01"})
    assert (failed.code, failed.message) == ("NO_DATA", "nothing for 2024-03-01")


async def test_respond() -> None:
    assert await run("respond", {}) == NodeResult(
        output={"status": 200, "headers": {}, "body": None}
    )
    params = {"status": "201", "headers": {"X-Id": 7, "X-None": None}, "body": {"ok": True}}
    assert await run("respond", params) == NodeResult(
        output={"status": 201, "headers": {"X-Id": "7"}, "body": {"ok": True}}
    )
    assert (await failure("respond", {"status": 999})).message == (
        "respond node: parameter 'status' must be an HTTP status of 200-599, got 999"
    )
    assert (await failure("respond", {"status": True})).message == (
        "respond node: parameter 'status' must be an integer, got a boolean"
    )
    # Number-like text that is no integer: INVALID_PARAMS (int() raised: NODE_ERROR).
    for text in ("--5", "²", " 2² ", "9" * 5000):
        failed = await failure("respond", {"status": text})
        assert (failed.code, failed.message) == (
            "INVALID_PARAMS", "respond node: parameter 'status' must be an integer, got a string")
    assert (await run("respond", {"status": " 204\n"})).output == {
        "status": 204, "headers": {}, "body": None}
    # A rendered header that would split the answer: the answer dropped it silently.
    assert (await failure("respond", {"headers": {"X-Y": "a\r\nInjected: 1"}})).message == (
        "respond node: parameter 'headers': the value of 'X-Y' has a line break or another"
        " control character"
    )


async def test_a_workflow_node_refuses_version_0_as_check_does() -> None:
    # A version of {{ 0 }}: check refused it (the schema's minimum is 1) while the node ran
    # the child's latest version.
    problems = check_documents([("f.yaml", {"workflows": [{
        "key": "wf", "graph": {"nodes": [{"id": "call", "type": "workflow", "params": {
            "workflow": "child", "version": "{{ 0 }}"}}], "edges": []}}]})])
    assert [(p.path, p.message) for p in problems] == [(
        "$.workflows[0].graph.nodes[0].params.version",
        "expected an integer from 1 to 2147483647, got 0 ('{{ 0 }}' in every run)")]
    for version in (0, "0 ", -1, 2**31):
        failed = await failure("workflow", {"workflow": "child", "version": version})
        assert (failed.code, failed.message) == (
            "INVALID_PARAMS",
            f"workflow node: parameter 'version' must be 1-2147483647, got {int(version)}")


async def test_noop() -> None:
    assert await run("noop", None) == NodeResult(output=None)
    assert await run("noop", {}) == NodeResult(output=None)
    assert await run("noop", {"a": 1}) == NodeResult(output={"a": 1})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "http node: parameter 'url' is required"),
        ({"url": "ftp://x/"}, "http node: parameter 'url': 'ftp://x/' is not an http(s) URL"),
        ({"url": "/relative"}, "http node: parameter 'url': '/relative' is not an http(s) URL"),
        (
            {"url": "http://x/", "method": "GE T"},
            "http node: parameter 'method': 'GE T' is not an HTTP method",
        ),
        (
            {"url": "http://x/", "json": {}, "body": ""},
            "http node: give at most one of 'json' and 'body'",
        ),
        (
            {"url": "http://x/", "accept": [200, "201"]},
            "http node: parameter 'accept' must be a non-empty list of HTTP statuses (100-599)",
        ),
        (
            {"url": "http://x/", "body": 5},
            "http node: parameter 'body' must be a string, got a number",
        ),
        (
            {"url": "http://x/", "headers": ["a"]},
            "http node: parameter 'headers' must be an object, got a list",
        ),
        (
            {"url": "http://x/", "timeout": 30},
            "http node: parameter 'timeout': expected a duration string such as '30s', got int 30",
        ),
        (
            {"url": "http://x/", "data": "x"},
            "http node: unknown parameter 'data'"
            " (allowed: accept, body, headers, json, method, query, timeout, url)",
        ),
        ("http://x/", "http node: params must be an object, got a string"),
    ],
)
async def test_http_params_are_checked_before_any_request(params: JSON, message: str) -> None:
    failed = await failure("http", params)
    assert (failed.code, failed.message, failed.retryable) == ("INVALID_PARAMS", message, False)


# --- retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (1000, 30)],
)
def test_retry_delay_doubles_up_to_the_cap(attempt: int, delay: int) -> None:
    policy = RetryPolicy(backoff=timedelta(seconds=2), max_backoff=timedelta(seconds=30))
    assert retry_delay(policy, attempt) == timedelta(seconds=delay)


def test_retry_delay_edge_cases() -> None:
    assert retry_delay(RetryPolicy(backoff=timedelta(0)), 3) == timedelta(0)
    small_cap = RetryPolicy(backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=5))
    assert retry_delay(small_cap, 1) == timedelta(seconds=5)
    with pytest.raises(ValueError, match="attempt numbers start at 1, got 0"):
        retry_delay(RetryPolicy(), 0)


STATUS_503 = NodeFailure("HTTP_STATUS", "503", retryable_status=503)
CONNECT = NodeFailure("HTTP_CONNECT", "refused")
BAD_PARAMS = NodeFailure("INVALID_PARAMS", "bad", retryable=False)


@pytest.mark.parametrize(
    ("retry_on", "failure_", "attempt", "expected"),
    [
        ((), CONNECT, 1, True),
        ((), CONNECT, 2, True),
        ((), CONNECT, 3, False),  # max_attempts reached
        ((), BAD_PARAMS, 1, False),  # never retried
        (("HTTP_CONNECT",), CONNECT, 1, True),
        (("HTTP_CONNECT",), STATUS_503, 1, False),
        ((503,), STATUS_503, 1, True),
        (("503",), STATUS_503, 1, True),
        ((502, 504), STATUS_503, 1, False),
        (("HTTP_STATUS",), STATUS_503, 1, True),
        ((503,), CONNECT, 1, False),
    ],
)
def test_should_retry(
    retry_on: tuple[str | int, ...], failure_: NodeFailure, attempt: int, expected: bool
) -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=retry_on)
    assert should_retry(policy, failure_, attempt) is expected
