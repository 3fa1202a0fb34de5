"""A large body's per-request expressions (filter, debounce key, correlation) and its check
against the workflow's parameter_schema leave the event loop serving: over real loopback
HTTP against a real PostgreSQL, a ticker task counts while a frame of the evaluation is on
some thread's stack. On the loop, the ticker cannot advance in that time; in a worker
thread it does."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import CodeType
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from triggerd.config import Settings
from triggerd.correlation import evaluate_correlation
from triggerd.daemon import create_app
from triggerd.model import (
    DebounceConfig,
    Graph,
    Node,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
)
from triggerd.store.workflows import apply_workflows
from triggerd.webhooks.filtering import evaluate_filter
from triggerd.webhooks.ingress import PARSE_ON_LOOP_BYTES, WebhookIngress, setup_webhooks
from triggerd.webhooks.keys import request_key
from triggerd.webhooks.validation import validation_errors

Client = TestClient[Any, Any]
# Re-encodes the whole input three times: far longer than the body's parse.
HEAVY = ("(input | tojson | length) + (input | tojson | length)"
         " + (input['items'] | map(attribute='name') | sort | list | tojson | length)")
# Each evaluation the ingress makes, and the function whose frame shows it running.
CASES: dict[str, tuple[CodeType, dict[str, Any], dict[str, str]]] = {
    "filter": (evaluate_filter.__code__, {"filter": "{{ " + HEAVY + " > 0 }}"}, {}),
    "debounce": (request_key.__code__, {"debounce": DebounceConfig(
        key="{{ " + HEAVY + " }}", period=timedelta(hours=1), max_wait=timedelta(hours=2))},
        {}),
    "correlation": (evaluate_correlation.__code__, {}, {"session_id": "{{ " + HEAVY + " }}"}),
    # The input's check against the workflow's parameter_schema (SCHEMA).
    "schema": (validation_errors.__code__, {}, {}),
}
# Every item's name matched against a pattern: jsonschema walks all 30,000 items.
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"items": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string", "pattern": "^item-[0-9]+$"},
                                     "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
    "required": ["id", "name"]}}}}


def big_body(items: int = 30_000) -> bytes:
    body = json.dumps({"action": "opened", "items": [
        {"id": i, "name": f"item-{i:06d}", "tags": ["a", "b"]} for i in range(items)]}).encode()
    assert len(body) > PARSE_ON_LOOP_BYTES  # the path under test
    return body


async def apply(pool: asyncpg.Pool, config: dict[str, Any],
                correlation: dict[str, str], schema: dict[str, Any] | None = None) -> None:
    spec = WorkflowSpec(
        key="big", name="big", graph=Graph(nodes=(Node(id="start", type="noop"),)),
        parameter_schema=schema or {},
        triggers=(TriggerSpec(name="hook", type=TriggerType.WEBHOOK,
                              config=WebhookConfig(path="big", **config),
                              correlation=correlation),),
    )
    async with pool.acquire() as conn:
        await apply_workflows(conn, [spec])


@pytest.fixture
async def make_client(aiohttp_client: Any, pool: asyncpg.Pool,
                      dsn: str) -> AsyncIterator[Callable[[], Awaitable[Client]]]:
    started: list[WebhookIngress] = []

    async def make() -> Client:
        settings = Settings()
        app = create_app(settings, pool)
        ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                                 pending_interval=3600.0)
        await ingress.start()
        started.append(ingress)
        client: Client = await aiohttp_client(app)
        return client

    yield make
    for ingress in started:
        await ingress.stop()


@contextmanager
def watching(code: CodeType, ticks: Callable[[], int]) -> Iterator[list[int]]:
    """The tick count, sampled by a thread of its own each time it finds a frame of
    ``code`` on any thread's stack (observation only: nothing is replaced)."""
    seen: list[int] = []
    done = threading.Event()

    def running() -> bool:
        for frame in sys._current_frames().values():
            current: Any = frame
            while current is not None:
                if current.f_code is code:
                    return True
                current = current.f_back
        return False

    def sample() -> None:
        while not done.wait(0.001):
            if running():
                seen.append(ticks())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_loop_keeps_serving_while_a_large_body_is_evaluated(
    case: str, make_client: Callable[[], Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    code, config, correlation = CASES[case]
    await apply(pool, config, correlation, SCHEMA if case == "schema" else None)
    client = await make_client()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        with watching(code, lambda: ticks) as seen:
            # A stream: aiohttp's client warns about a large body in one write.
            response = await client.post("/hooks/big", data=io.BytesIO(big_body()),
                                         headers={"Content-Type": "application/json"})
            assert response.status == 202, await response.text()
    finally:
        task.cancel()
    assert seen, "the evaluation was never seen running"
    # The ticker advanced while the evaluation ran: the loop was not held by it.
    assert max(seen) > min(seen), f"the loop stood still for {len(seen)} samples"
    row = await pool.fetchrow("SELECT outcome FROM webhook_requests")
    assert row is not None and row["outcome"] == "accepted"


FAILING = "{{ (input['items'] | map(attribute='name') | sort | first) + 1 }}"  # str + int


@pytest.mark.parametrize(("config", "status", "outcome"), [
    ({"filter": "{{ input['items'] | length > 10 ** 6 }}"}, 200, "filtered"),
    ({"filter": FAILING}, 200, "filtered"),
    ({"debounce": DebounceConfig(key="{{ input.missing }}", period=timedelta(hours=1),
                                 max_wait=timedelta(hours=2))}, 422, None),
])
async def test_a_large_body_gets_the_answers_a_small_one_gets(
    config: dict[str, Any], status: int, outcome: str | None,
    make_client: Callable[[], Awaitable[Client]], pool: asyncpg.Pool,
) -> None:
    await apply(pool, config, {})
    client = await make_client()
    body = big_body()
    response = await client.post("/hooks/big", data=io.BytesIO(body),
                                 headers={"Content-Type": "application/json"})
    answer = await response.json()
    assert response.status == status, answer
    row = await pool.fetchrow("SELECT outcome, detail FROM webhook_requests")
    if outcome is None:
        assert row is None
        assert answer["error"] == "key_invalid"
        assert answer["message"].startswith("the debounce key of this request could not be")
        return
    assert row is not None and row["outcome"] == outcome
    # The message a filter failing on the loop would give, word for word.
    if "filter" in config:
        expected = evaluate_filter(config["filter"], input=json.loads(body), headers={},
                                   query={})[1]
        assert row["detail"] == expected
        assert (expected is not None) == (config["filter"] == FAILING)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
