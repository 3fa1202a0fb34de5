"""Webhook ingress over real loopback HTTP against a real PostgreSQL: every answer with its
JSON body, what is stored, dedupe races, auth schemes end to end, sync mode and the
status page."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.helpers import wait_until_blocked
from triggerd.config import HttpSettings, Settings, load_settings
from triggerd.daemon import create_app
from triggerd.executor.service import Executor
from triggerd.ids import time_ordered_id
from triggerd.model import (
    AuthConfig,
    DedupeConfig,
    Graph,
    Node,
    ResponseMode,
    SecretRef,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
)
from triggerd.store.workflows import apply_workflows
from triggerd.webhooks.ingress import WebhookIngress, setup_webhooks

ClientFactory = Callable[..., Awaitable[tuple[TestClient[Any, Any], WebhookIngress]]]

TOKEN = "s3cret-token"
GITHUB_SECRET = "It's a Secret to Everybody"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32by").decode()
SCHEMA = {
    "type": "object",
    "properties": {
        "day": {"type": "string", "format": "date"},
        "count": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["day"],
}


def hook(name: str, path: str, *, enabled: bool = True, input: dict[str, Any] | None = None,
         **config: Any) -> TriggerSpec:
    return TriggerSpec(
        name=name,
        type=TriggerType.WEBHOOK,
        config=WebhookConfig(path=path, **config),
        enabled=enabled,
        input=input or {},
    )


def token_auth() -> AuthConfig:
    return AuthConfig(scheme="token", secret=SecretRef(env="WH_TOKEN"))


def workflow(key: str, *triggers: TriggerSpec, schema: dict[str, Any] | None = None,
             ) -> WorkflowSpec:
    return WorkflowSpec(
        key=key,
        name=key,
        graph=Graph(nodes=(Node(id="start", type="noop"),)),
        parameter_schema=schema or {},
        triggers=triggers,
    )


async def apply(pool: asyncpg.Pool, *specs: WorkflowSpec) -> None:
    async with pool.acquire() as conn:
        await apply_workflows(conn, list(specs))


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_TOKEN", TOKEN)
    monkeypatch.setenv("WH_GITHUB", GITHUB_SECRET)
    monkeypatch.setenv("WH_STANDARD", STANDARD_SECRET)


@pytest.fixture
async def make_client(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str
) -> AsyncIterator[ClientFactory]:
    started: list[WebhookIngress] = []

    async def make(
        settings: Settings | None = None, **options: Any
    ) -> tuple[TestClient[Any, Any], WebhookIngress]:
        settings = settings or Settings()
        app = create_app(settings, pool)
        options.setdefault("pending_interval", 3600.0)
        ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings, **options)
        await ingress.start()
        started.append(ingress)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client, ingress

    yield make
    for ingress in started:
        await ingress.stop()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def executions(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM workflow_executions ORDER BY created_at, id"))


async def requests_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM webhook_requests ORDER BY received_at, id"))


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# --- 202 and what is stored --------------------------------------------------------------


async def test_accepted_request_is_stored_with_its_execution(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(
        pool,
        workflow(
            "report",
            hook("push", "ci/push", auth=token_auth(), input={"region": "eu", "day": "x"},
                 dedupe=DedupeConfig(header="X-Delivery", ttl=timedelta(days=2))),
            schema=SCHEMA,
        ),
    )
    client, _ = await make_client()
    body = b'{"day": "2024-05-01", "count": 3}'
    resp = await client.post(
        "/hooks/ci/push?a=1&a=2&b=x",
        data=body,
        headers={**bearer(), "Content-Type": "application/json", "X-Delivery": "d-1",
                 "Cookie": "session=abc", "X-Custom": "yes"},
    )
    assert resp.status == 202
    answer = await resp.json()
    execution_id = answer["execution_id"]
    assert is_uuid(execution_id)
    assert answer == {
        "execution_id": execution_id,
        "status_url": f"/hooks/_executions/{execution_id}",
    }
    assert resp.headers["Location"] == f"/hooks/_executions/{execution_id}"

    [row] = await executions(pool)
    assert str(row["id"]) == execution_id
    assert row["status"] == "NEW"
    assert row["trigger_type"] == "webhook"
    assert row["trigger_name"] == "push"
    assert row["dedupe_key"] == "webhook:d-1"
    assert row["input"] == {"region": "eu", "day": "2024-05-01", "count": 3}
    assert row["workflow_version_id"] is not None
    expiry = row["dedupe_expires_at"] - row["created_at"]
    assert timedelta(days=2) - timedelta(seconds=5) < expiry <= timedelta(days=2)
    request = row["context"]["trigger"]["request"]
    assert row["context"]["trigger"]["type"] == "webhook"
    assert row["context"]["trigger"]["name"] == "push"
    assert request["method"] == "POST"
    assert request["path"] == "/hooks/ci/push"
    assert request["query"] == {"a": ["1", "2"], "b": "x"}
    assert request["headers"]["x-custom"] == "yes"
    assert request["headers"]["x-delivery"] == "d-1"
    assert "authorization" not in request["headers"]
    assert "cookie" not in request["headers"]

    [stored] = await requests_rows(pool)
    assert str(stored["execution_id"]) == execution_id
    assert stored["trigger_id"] == row["trigger_id"]
    assert stored["method"] == "POST"
    assert stored["path"] == "/hooks/ci/push"
    assert stored["query"] == {"a": ["1", "2"], "b": "x"}
    assert stored["body"] == body
    assert stored["remote_addr"] == "127.0.0.1"
    assert stored["headers"] == request["headers"]
    assert stored["headers"]["content-type"] == "application/json"
    assert not {"authorization", "cookie"} & set(stored["headers"])


async def test_a_credential_sent_along_is_masked_in_what_is_stored(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # The trigger checks no such header: the sender's own API key, a GitLab token or a
    # token in the URL were stored (and shown to the run) as sent.
    await apply(pool, workflow("w", hook("h", "along", dedupe=DedupeConfig(
        header="X-Idempotency-Token"))))
    client, _ = await make_client()
    sent = {"X-Api-Key": "sk_live_51abc", "X-Gitlab-Token": "glpat-xyz",
            "X-Idempotency-Token": "delivery-1", "X-Trace": "t-1"}
    resp = await client.post("/hooks/along?api_key=q-secret&page=2&access_token=at-secret-1",
                             json={"n": 1}, headers=sent)
    assert resp.status == 202
    again = await client.post("/hooks/along", json={"n": 2},
                              headers={**sent, "X-Idempotency-Token": "delivery-2"})
    assert again.status == 202  # the dedupe key still reads the header as sent
    [stored, _] = await requests_rows(pool)
    assert {k: stored["headers"][k] for k in
            ("x-api-key", "x-gitlab-token", "x-idempotency-token", "x-trace")} == {
        "x-api-key": "***", "x-gitlab-token": "***", "x-idempotency-token": "***",
        "x-trace": "t-1"}
    assert stored["query"] == {"api_key": "***", "page": "2", "access_token": "***"}
    row = await pool.fetchrow(
        "SELECT context::text AS context, dedupe_key FROM workflow_executions"
        " WHERE id = $1", stored["execution_id"])
    for secret in ("sk_live_51abc", "glpat-xyz", "q-secret", "at-secret-1"):
        assert secret not in row["context"]
        assert secret.encode() not in json.dumps(dict(stored), default=str).encode()
    assert row["dedupe_key"] == "webhook:delivery-1"


async def test_duplicate_delivery_answers_200_with_the_first_id(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "dup", dedupe=DedupeConfig(header="X-Id"))))
    client, _ = await make_client()
    first = await client.post("/hooks/dup", json={"n": 1}, headers={"X-Id": "abc"})
    assert first.status == 202
    first_id = (await first.json())["execution_id"]
    again = await client.post("/hooks/dup", json={"n": 2}, headers={"X-Id": "abc"})
    assert again.status == 200
    assert await again.json() == {
        "execution_id": first_id,
        "status_url": f"/hooks/_executions/{first_id}",
        "duplicate": True,
    }
    other = await client.post("/hooks/dup", json={"n": 3}, headers={"X-Id": "def"})
    assert other.status == 202
    assert len(await executions(pool)) == 2
    assert len(await requests_rows(pool)) == 2  # a duplicate stores nothing


async def test_concurrent_identical_deliveries_create_exactly_one_execution(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "race", dedupe=DedupeConfig(json_pointer="/id"))))
    client, _ = await make_client()

    async def deliver() -> tuple[int, str]:
        resp = await client.post("/hooks/race", json={"id": "evt_1", "x": 1})
        return resp.status, (await resp.json())["execution_id"]

    answers = await asyncio.gather(*(deliver() for _ in range(20)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [202]
    assert len({execution_id for _, execution_id in answers}) == 1
    rows = await executions(pool)
    assert len(rows) == 1
    assert str(rows[0]["id"]) == answers[0][1]
    assert len(await requests_rows(pool)) == 1


async def test_two_ingresses_racing_on_one_key_create_one_execution(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """Two processes (two group commits) at once: the unique key decides."""
    await apply(pool, workflow("w", hook("h", "race2", dedupe=DedupeConfig(header="X-Id"))))
    one, _ = await make_client()
    two, _ = await make_client()

    async def deliver(client: TestClient[Any, Any]) -> tuple[int, str]:
        resp = await client.post("/hooks/race2", json={}, headers={"X-Id": "same"})
        return resp.status, (await resp.json())["execution_id"]

    answers = await asyncio.gather(*(deliver(c) for c in [one, two] * 10))
    assert sorted(s for s, _ in answers) == [200] * 19 + [202]
    assert len({i for _, i in answers}) == 1
    assert len(await executions(pool)) == 1


# --- refusals, in check order ------------------------------------------------------------


async def test_unknown_reserved_and_disabled_paths_are_404(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("off", "off", enabled=False), hook("on", "on")))
    client, _ = await make_client()
    for path in ("nope", "off", "_reserved", "_executions", "_executions/a/b", "on/extra"):
        resp = await client.post(f"/hooks/{path}", json={})
        assert resp.status == 404, path
        assert await resp.json() == {
            "error": "not_found",
            "message": f"no webhook at /hooks/{path}",
        }
    assert (await client.post("/hooks/on", json={})).status == 202
    assert len(await executions(pool)) == 1


async def test_wrong_method_is_405_with_allow(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "m", methods=("POST", "PUT"))))
    client, _ = await make_client()
    resp = await client.get("/hooks/m")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST, PUT"
    assert await resp.json() == {
        "error": "method_not_allowed",
        "message": "GET is not allowed here (allowed: POST, PUT)",
    }
    assert (await client.put("/hooks/m", json={})).status == 202


async def raw_head(client: TestClient[Any, Any], path: str, headers: str = "") -> bytes:
    """Everything the server sends for a HEAD on a connection of our own (aiohttp's client
    would not read a body after a HEAD even if one were sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"HEAD {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
                 .encode())
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_head_is_answered_as_get_without_storing_or_running(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """HEAD on a GET trigger was 405. It is answered as the GET's checks would answer it,
    without a body, and stores and starts nothing (a safe method: monitors send it)."""
    await apply(pool, workflow("w", hook("g", "g", methods=("GET",), auth=token_auth()),
                               hook("p", "p")))
    client, _ = await make_client()
    resp = await client.head("/hooks/g", headers=bearer())
    assert resp.status == 200
    assert await resp.read() == b""
    # Wrong credentials: what the GET would be told (401), still without a body.
    assert (await client.head("/hooks/g", headers=bearer("wrong"))).status == 401
    assert (await client.head("/hooks/g")).status == 401
    answer = await raw_head(client, "/hooks/g", f"Authorization: Bearer {TOKEN}\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    refused = await raw_head(client, "/hooks/g")
    assert refused.startswith(b"HTTP/1.1 401 ") and refused.endswith(b"\r\n\r\n")
    assert await executions(pool) == [] and await requests_rows(pool) == []
    # Where GET is not allowed, neither is HEAD; where it is, Allow names HEAD too.
    resp = await client.head("/hooks/p")
    assert (resp.status, resp.headers["Allow"]) == (405, "POST")
    resp = await client.delete("/hooks/g", headers=bearer())
    assert (resp.status, resp.headers["Allow"]) == (405, "GET, HEAD")
    assert (await resp.json())["message"] == "DELETE is not allowed here (allowed: GET, HEAD)"
    resp = await client.get("/hooks/g", headers=bearer())
    assert resp.status == 202
    assert len(await executions(pool)) == 1 and len(await requests_rows(pool)) == 1


async def test_a_head_that_verifies_spends_none_of_the_rate(make_client: ClientFactory,
                                                            pool: asyncpg.Pool) -> None:
    """A monitor probing with HEAD took the rate's tokens, and real deliveries were
    refused with 429. A HEAD with wrong credentials still spends them: guessing a token
    with HEAD is throttled like any other request."""
    await apply(pool, workflow("w", hook("g", "g", methods=("GET",), auth=token_auth(),
                                         rate=0.001, burst=2)))
    client, ingress = await make_client()
    for _ in range(3):
        assert (await client.head("/hooks/g", headers=bearer())).status == 200
    assert (await client.head("/hooks/g", headers=bearer("guess-1"))).status == 401
    assert (await client.get("/hooks/g", headers=bearer())).status == 202
    assert (await client.head("/hooks/g", headers=bearer("guess-2"))).status == 429
    assert (await client.get("/hooks/g", headers=bearer())).status == 429
    assert ingress.stats.rate_limited == 2
    assert len(await executions(pool)) == 1


async def test_a_head_without_auth_spends_the_rate(make_client: ClientFactory,
                                                   pool: asyncpg.Pool) -> None:
    """On a trigger without auth every HEAD gave its tokens back (nothing refused it), so
    a flood of HEADs was never limited. No credentials were checked: the tokens stay
    spent, and the flood is refused with 429 like GETs."""
    await apply(pool, workflow("w", hook("g", "g", methods=("GET",), rate=0.001, burst=2)))
    client, ingress = await make_client()
    assert (await client.head("/hooks/g")).status == 200
    assert (await client.head("/hooks/g")).status == 200
    assert (await client.head("/hooks/g")).status == 429
    assert (await client.get("/hooks/g")).status == 429
    assert ingress.stats.rate_limited == 2
    assert await executions(pool) == [] and await requests_rows(pool) == []


async def test_head_of_the_status_page_is_its_get_without_a_body(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "h")))
    client, _ = await make_client()
    status_url = (await (await client.post("/hooks/h", json={})).json())["status_url"]
    get = await client.get(status_url)
    head = await client.head(status_url)
    assert (head.status, head.headers["Content-Type"]) == (200, get.headers["Content-Type"])
    answer = await raw_head(client, status_url)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")
    assert len(await executions(pool)) == 1


async def test_rate_limit_is_429_with_retry_after(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "rl", rate=0.5, burst=2)))
    now = [100.0]
    client, ingress = await make_client(monotonic=lambda: now[0])
    assert (await client.post("/hooks/rl", json={})).status == 202
    assert (await client.post("/hooks/rl", json={})).status == 202
    resp = await client.post("/hooks/rl", json={})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"  # one token at 0.5/s
    assert await resp.json() == {
        "error": "rate_limited",
        "message": "this webhook accepts 0.5 requests per second; retry later",
    }
    now[0] += 2.0
    assert (await client.post("/hooks/rl", json={})).status == 202
    assert ingress.stats.rate_limited == 1
    assert len(await executions(pool)) == 3


async def test_backpressure_is_429_when_new_executions_exceed_max_pending(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "bp")))
    settings = Settings(http=HttpSettings(max_pending=2))
    client, ingress = await make_client(settings)
    for _ in range(3):
        assert (await client.post("/hooks/bp", json={})).status == 202
    resp = await client.post("/hooks/bp", json={})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "5"
    assert await resp.json() == {
        "error": "overloaded",
        "message": "3 executions are waiting to run; retry later",
    }
    assert ingress.stats.backpressure_rejections == 1
    # The executor takes two: the next count lets requests in again.
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', end_time = now()"
        " WHERE id IN (SELECT id FROM workflow_executions LIMIT 2)"
    )
    assert await ingress.refresh_pending() == 1
    assert ingress.stats.pending_new == 1
    assert (await client.post("/hooks/bp", json={})).status == 202
    assert len(await executions(pool)) == 4


async def test_too_large_by_content_length_is_413_before_reading(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "big", max_body_bytes=100), hook("g", "global")))
    client, _ = await make_client(Settings(http=HttpSettings(max_body_bytes=50)))
    resp = await client.post("/hooks/big", data=b"x" * 101,
                             headers={"Content-Type": "text/plain"})
    assert resp.status == 413
    assert await resp.json() == {
        "error": "payload_too_large",
        "message": "the body is larger than this webhook's limit of 100 bytes",
    }
    ok = await client.post("/hooks/big", data=b"x" * 100, headers={"Content-Type": "text/plain"})
    assert ok.status == 202
    # Without a per-trigger limit, [http] max_body_bytes applies.
    resp = await client.post("/hooks/global", data=b"x" * 51,
                             headers={"Content-Type": "text/plain"})
    assert resp.status == 413
    assert (await resp.json())["message"] == (
        "the body is larger than this webhook's limit of 50 bytes"
    )
    assert len(await executions(pool)) == 1


async def test_a_compressed_body_counts_as_decoded_against_the_limit(
    make_client: ClientFactory, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp inflates gzip as it is read: 1 KB sent was 1 MB stored (a bomb: gigabytes),
    # because a Content-Length under the limit was taken as the body's size.
    await apply(pool, workflow("w", hook("h", "gz", max_body_bytes=5000)))
    client, _ = await make_client()
    bomb = gzip.compress(b'{"a": "' + b"x" * 1_000_000 + b'"}')
    assert len(bomb) < 5000
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/hooks/gz", data=bomb, headers=headers)
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"] == "payload_too_large"
    # Within the limit once decoded, a compressed body is accepted as the decoded one.
    resp = await client.post("/hooks/gz", data=gzip.compress(b'{"a": 1}'), headers=headers)
    assert resp.status == 202
    [row] = await executions(pool)
    assert row["input"] == {"a": 1}
    # Garbage sent as gzip is the sender's mistake: 400, not a 500 with a traceback.
    resp = await client.post("/hooks/gz", data=b"not gzip at all", headers=headers)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_body",
        "message": "the body could not be decoded as its Content-Encoding 'gzip'"}
    # Closed, not drained through the failing decoder: that logged an error with a
    # traceback for every such request anyone sent.
    assert resp.headers.get("Connection", "").lower() == "close"
    await asyncio.sleep(0.1)
    assert [r.getMessage() for r in caplog.records
            if r.name in ("aiohttp.server", "triggerd.serving.internal_errors")
            and r.levelno >= logging.ERROR] == []
    assert len(await executions(pool)) == 1


async def test_an_encoded_body_longer_than_the_limit_that_decodes_within_it_is_accepted(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # The limit counts decoded bytes, but the Content-Length (the encoded size) was compared
    # with it: a body that does not compress grows when encoded (gzip's header and trailer,
    # stored blocks), so 100 bytes sent gzipped as 123 were 413, plain they were 202.
    await apply(pool, workflow("w", hook("h", "enc", max_body_bytes=100)))
    client, _ = await make_client()
    body = b'{"a": "' + b"x" * 91 + b'"}'
    assert len(body) == 100
    stored = gzip.compress(body, compresslevel=0)
    assert len(stored) == 123
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/hooks/enc", data=stored, headers=headers)
    assert resp.status == 202, await resp.text()
    # Asked first with Expect: 100-continue, it is let in the same.
    resp = await client.post("/hooks/enc", data=stored, headers=headers, expect100=True)
    assert resp.status == 202, await resp.text()
    assert [r["input"] for r in await executions(pool)] == [{"a": "x" * 91}] * 2
    # One byte more, decoded, is still 413.
    resp = await client.post("/hooks/enc", data=gzip.compress(body + b" ", compresslevel=0),
                             headers=headers)
    assert resp.status == 413
    assert await resp.json() == {
        "error": "payload_too_large",
        "message": "the body is larger than this webhook's limit of 100 bytes"}
    # What is taken on the wire stays bounded (100 + 25 + 1024 bytes here), with a length or
    # chunked: a deflate stream of empty blocks decodes to nothing however long it is, and
    # was read whole and run as an empty body.
    empty_blocks = b"\x78\x9c" + b"\x00\x00\x00\xff\xff" * 300 + b"\x01\x00\x00\xff\xff" + (
        b"\x00\x00\x00\x01")
    deflate = {"Content-Type": "application/json", "Content-Encoding": "deflate"}

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(empty_blocks), 100):
            yield empty_blocks[start:start + 100]

    # Refused by its length as sent, not by what it decodes to (nothing here): the answer
    # says so (it said the body was larger than the limit of 100 bytes), with a length (also
    # asked first with Expect: 100-continue) or chunked.
    wire = {"error": "payload_too_large",
            "message": "the encoded body takes more than 1149 bytes on the wire, the most for"
                       " this webhook's limit of 100 decoded bytes"}
    for data, expect100 in ((empty_blocks, False), (empty_blocks, True), (chunked(), False)):
        resp = await client.post("/hooks/enc", data=data, headers=deflate, expect100=expect100)
        assert (resp.status, await resp.json()) == (413, wire)
    assert len(await requests_rows(pool)) == 2
    assert len(await executions(pool)) == 2


async def test_br_and_zstd_bodies_decode_and_other_encodings_are_415(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    import brotli  # type: ignore[import-untyped]

    from triggerd.webhooks.answers import DECODABLE_ENCODINGS

    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]

    await apply(pool, workflow("w", hook("h", "enc", max_body_bytes=5000)))
    client, _ = await make_client()
    assert DECODABLE_ENCODINGS == ("gzip", "deflate", "br", "zstd")
    body = b'{"a": 1}'
    for encoding, data in (("br", brotli.compress(body)), ("zstd", zstd.compress(body))):
        resp = await client.post("/hooks/enc", data=data, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding})
        assert resp.status == 202, await resp.text()
        # A bomb is limited decoded, as gzip is.
        bomb = (brotli.compress if encoding == "br" else zstd.compress)(
            b'{"a": "' + b"x" * 1_000_000 + b'"}')
        resp = await client.post("/hooks/enc", data=bomb, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding})
        assert resp.status == 413
    assert [r["input"] for r in await executions(pool)] == [{"a": 1}, {"a": 1}]
    # Taken as plain bytes before (an input of compressed garbage, or a 400 in plain text).
    for encoding in ("foo", "gzip, br", "compress"):
        resp = await client.post("/hooks/enc", data=body, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding})
        assert resp.status == 415
        assert resp.headers["Accept-Encoding"] == "gzip, deflate, br, zstd"
        assert await resp.json() == {
            "error": "unsupported_encoding",
            "message": f"the body's Content-Encoding {encoding!r} is not one of gzip,"
                       " deflate, br, zstd (or identity)"}
    resp = await client.post("/hooks/enc", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "identity"})
    assert resp.status == 202
    assert len(await executions(pool)) == 3


async def test_two_content_encoding_lines_are_two_codings_and_415(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # RFC 9110 5.3: two Content-Encoding lines are the list "gzip, gzip". Only the first
    # was read: the body was decoded once and its remaining gzip bytes stored and run.
    await apply(pool, workflow("w", hook("h", "enc", body="raw")))
    client, _ = await make_client()
    twice = gzip.compress(gzip.compress(b'{"a": 1}'))
    resp = await client.post("/hooks/enc", data=twice, headers=[
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")])
    assert resp.status == 415
    assert resp.headers["Accept-Encoding"] == "gzip, deflate, br, zstd"
    assert await resp.json() == {
        "error": "unsupported_encoding",
        "message": "the body's Content-Encoding 'gzip, gzip' is not one of gzip,"
                   " deflate, br, zstd (or identity)"}
    assert await requests_rows(pool) == []
    assert await executions(pool) == []
    # An empty element is no coding (RFC 9110 5.6.1): "gzip" and an empty line is gzip.
    resp = await client.post("/hooks/enc", data=gzip.compress(b'{"a": 1}'), headers=[
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"), ("Content-Encoding", "")])
    assert resp.status == 202, await resp.text()
    assert len(await executions(pool)) == 1


async def test_a_compressed_body_cut_short_is_400_and_nothing_is_stored(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """aiohttp took the end of the bytes sent for the end of the body: a gzip, br or zstd
    stream cut short was stored (a shorter body, or an empty one) and run."""
    import zlib

    import brotli  # type: ignore[import-untyped, unused-ignore]

    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]

    await apply(pool, workflow("w", hook("h", "cut", body="raw")))
    client, _ = await make_client()
    text = b"hello world " * 200
    for encoding, compress in (("gzip", gzip.compress), ("br", brotli.compress),
                               ("zstd", zstd.compress), ("deflate", zlib.compress)):
        whole = compress(text)
        for short in (whole[: len(whole) // 3], whole[:-2]):
            resp = await client.post("/hooks/cut", data=short, headers={
                "Content-Type": "text/plain", "Content-Encoding": encoding})
            assert resp.status == 400, (encoding, await resp.text())
            assert await resp.json() == {
                "error": "invalid_body",
                "message": f"the body could not be decoded as its Content-Encoding"
                           f" {encoding!r}"}
        resp = await client.post("/hooks/cut", data=whole, headers={
            "Content-Type": "text/plain", "Content-Encoding": encoding})
        assert resp.status == 202, (encoding, await resp.text())
    rows = await requests_rows(pool)
    assert [bytes(r["body"]) for r in rows] == [text] * 4
    assert len(await executions(pool)) == 4


async def test_a_store_that_gets_no_answer_says_the_request_may_have_been_stored(
    make_client: ClientFactory, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The statement was sent and no answer came in time: it may have committed. "The
    # request was not stored" made a sender retry into a second run when no delivery id
    # dedupes it.
    from triggerd.store import webhooks as inbox

    monkeypatch.setattr(inbox, "STORE_TIMEOUT", 0.3)
    await apply(pool, workflow("w", hook("h", "slow")))
    client, _ = await make_client()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE webhook_requests IN ACCESS EXCLUSIVE MODE")
        resp = await client.post("/hooks/slow", json={"a": 1})
        assert resp.status == 503
        assert await resp.json() == {
            "error": "database_unavailable",
            "message": "the request may or may not have been stored: the database is"
                       " unavailable; retry later"}
    resp = await client.post("/hooks/slow", json={"a": 2})  # answered again
    assert resp.status == 202


async def test_a_body_that_stops_arriving_is_408_and_the_connection_closed(
    make_client: ClientFactory, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Headers, then 5 of 100 bytes, then nothing: the handler waited for the rest for ever
    # (a slow sender held a connection and a handler each; slowloris).
    from triggerd.webhooks import ingress

    monkeypatch.setattr(ingress, "BODY_TIMEOUT", 0.3)
    await apply(pool, workflow("w", hook("h", "trickle")))
    client, _ = await make_client()
    host, port = client.server.host, client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /hooks/trickle HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 100\r\n\r\nabcde")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    assert lines[0].startswith("HTTP/1.1 408 ")
    assert headers["connection"] == "close"  # closed once aiohttp's lingering ends
    assert json.loads(body) == {"error": "request_timeout",
                                "message": "the body did not arrive within 0.3 s"}
    assert await executions(pool) == []


async def test_a_connection_that_never_completes_its_headers_is_closed(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiohttp keeps such a connection an hour by default; every serving process closes it
    # after KEEPALIVE_TIMEOUT (75 s, 0.3 s here).
    from triggerd.serving import sockets

    monkeypatch.setattr(sockets, "KEEPALIVE_TIMEOUT", 0.3)
    runner = sockets.app_runner(create_app(Settings(), pool))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")  # no end of headers
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
    finally:
        await runner.cleanup()


async def raw_http(client: TestClient[Any, Any], head: bytes,
                   chunks: list[bytes]) -> tuple[int, dict[str, str], bytes, int]:
    """Send a request by hand (head, then chunks one by one, stopping as soon as the
    server has answered); returns status, headers, body and how many chunks were sent."""
    host, port = client.server.host, client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    sent = 0
    try:
        writer.write(head)
        await writer.drain()
        read_head = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
        for chunk in chunks:
            done, _ = await asyncio.wait([read_head], timeout=0.05)
            if done:
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += 1
        raw_head = await read_head
        lines = raw_head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return status, headers, body, sent
    finally:
        writer.close()


async def test_a_transfer_coding_other_than_chunked_is_501_and_nothing_is_stored(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """aiohttp took `gzip, chunked` for chunked and the gzip bytes for a plain body."""
    await apply(pool, workflow("w", hook("h", "te")))
    client, _ = await make_client()
    head = (b"POST /hooks/te HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: gzip, chunked\r\n\r\n")
    status, _, body, _ = await raw_http(client, head, [gzip.compress(b'{"a": 1}'), b""])
    assert (status, json.loads(body)) == (501, {
        "error": "unsupported_transfer_coding",
        "message": "the transfer coding 'gzip, chunked' is not supported (only chunked)"})
    status, _, body, _ = await raw_http(client, head.replace(b"gzip, chunked", b"Chunked"),
                                        [b'{"a": 1}', b""])
    assert status == 202, body
    assert [r["input"] for r in await executions(pool)] == [{"a": 1}]


async def test_chunked_body_past_the_limit_is_413_without_reading_the_rest(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "chunked", max_body_bytes=1000)))
    client, _ = await make_client()
    head = (
        b"POST /hooks/chunked HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [b"a" * 600] * 50  # 30 kB offered; the limit is passed at the second chunk
    status, headers, body, sent = await raw_http(client, head, chunks)
    assert status == 413
    assert json.loads(body) == {
        "error": "payload_too_large",
        "message": "the body is larger than this webhook's limit of 1000 bytes",
    }
    assert headers["connection"] == "close"
    assert sent < len(chunks)  # answered before the sender finished: the rest was not read
    assert await executions(pool) == []
    # A chunked body within the limit is accepted.
    status, _, body, _ = await raw_http(client, head, [b"b" * 500, b"c" * 500, b""])
    assert status == 202
    [row] = await executions(pool)
    assert row["input"] == {"body": "b" * 500 + "c" * 500}


async def test_expect_continue_refuses_a_large_body_before_it_is_sent(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "ask", max_body_bytes=1000)))
    client, _ = await make_client()
    host, port = client.server.host, client.server.port
    assert port is not None

    async def ask(length: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /hooks/ask HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % length
        )
        await writer.drain()
        return reader, writer, await reader.readuntil(b"\r\n\r\n")

    reader, writer, head = await ask(5000)
    assert head.startswith(b"HTTP/1.1 413 ")
    writer.close()
    reader, writer, head = await ask(3)
    assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"abc")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 202 ")
    writer.close()
    [row] = await executions(pool)
    assert row["input"] == {"body": "abc"}


async def test_expect_continue_refuses_missing_credentials_before_the_body_is_sent(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # A token or basic trigger has its credentials in the headers: the sender was told
    # "100 Continue" and uploaded its body only to be refused.
    await apply(pool, workflow("w", hook("h", "guarded", auth=token_auth())))
    client, _ = await make_client()
    host, port = client.server.host, client.server.port
    assert port is not None

    async def ask(extra: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"POST /hooks/guarded HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain"
                         b"\r\nExpect: 100-continue\r\nContent-Length: 3\r\n" + extra + b"\r\n")
            await writer.drain()
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        finally:
            writer.close()

    assert (await ask(b"")).startswith(b"HTTP/1.1 401 ")
    assert (await ask(b"Authorization: Bearer wrong\r\n")).startswith(b"HTTP/1.1 401 ")
    assert await ask(f"Authorization: Bearer {TOKEN}\r\n".encode()) == (
        b"HTTP/1.1 100 Continue\r\n\r\n")
    assert await executions(pool) == []


async def expect_answer(client: TestClient[Any, Any], method: str, path: str,
                         headers: bytes, body: bytes = b"abc") -> bytes:
    """The first answer to a request that asks ``Expect: 100-continue``; after a "100
    Continue" the body is sent and the final answer's status line is added."""
    host, port = client.server.host, client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                     f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n".encode()
                     + headers + b"\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if head != b"HTTP/1.1 100 Continue\r\n\r\n":
            return head.split(b"\r\n")[0]
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        return b"100 then " + final.strip()
    finally:
        writer.close()


async def test_expect_continue_checks_address_method_and_rate_before_credentials(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """Asked to continue, a token trigger checked the token first: a refused address told
    a good token (100) from a bad one (401), a flood of bad tokens never spent the rate,
    and a wrong method was a 401."""
    await apply(pool, workflow(
        "w",
        hook("fenced", "fenced", auth=token_auth(), allow_from=("10.9.9.0/24",)),
        hook("limited", "limited", auth=token_auth(), rate=0.001, burst=1),
        hook("open", "open", auth=token_auth()),
    ))
    client, ingress = await make_client()
    good = f"Authorization: Bearer {TOKEN}\r\n".encode()
    bad = b"Authorization: Bearer wrong\r\n"
    for credentials in (good, bad):
        assert (await expect_answer(client, "POST", "/hooks/fenced", credentials)
                ).startswith(b"HTTP/1.1 403 ")
    answers = [await expect_answer(client, "POST", "/hooks/limited", bad) for _ in range(3)]
    assert [a.split()[1] for a in answers] == [b"401", b"429", b"429"]
    assert (await expect_answer(client, "GET", "/hooks/open", bad)).startswith(
        b"HTTP/1.1 405 ")
    # The one burst was spent once per request, not once by the question and once by
    # the request.
    assert ingress.stats.rate_limited == 2
    # Every answer given to the question is counted, as the handler counts its own (the
    # 401 of bad credentials was not).
    assert {key: n for key, n in ingress.stats.responses.items() if n} == {
        ("w/fenced", 403): 2, ("w/limited", 401): 1, ("w/limited", 429): 2,
        ("w/open", 405): 1}
    assert await expect_answer(client, "POST", "/hooks/open", good) == (
        b"100 then HTTP/1.1 202 Accepted")
    assert len(await executions(pool)) == 1


async def test_bytes_jsonb_cannot_hold_are_replaced_not_fatal(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """A header that is not UTF-8 or a NUL in the query must not turn into a 500."""
    await apply(pool, workflow("w", hook("h", "clean")))
    client, _ = await make_client()
    host, port = client.server.host, client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /hooks/clean?q=%00a&r=%FF HTTP/1.1\r\nHost: x\r\nX-Bin: a\xffb\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n"
        b"\r\n{}"
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 202 ")
    writer.close()
    [stored] = await requests_rows(pool)
    assert stored["headers"]["x-bin"] == "a\ufffdb"
    assert stored["query"] == {"q": "\ufffda", "r": "\ufffd"}


async def test_unsupported_content_type_is_415(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "ct", auth=token_auth())))
    client, _ = await make_client()
    # 415 comes before authentication: the wrong token is not even looked at.
    resp = await client.post("/hooks/ct", data=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert resp.status == 415
    assert await resp.json() == {
        "error": "unsupported_media_type",
        "message": "unsupported Content-Type 'image/png' (send application/json,"
        " application/x-www-form-urlencoded or text/*)",
    }
    resp = await client.post("/hooks/ct", data=b"x", headers={**bearer(), "Content-Type": ""})
    assert resp.status == 415
    assert (await resp.json())["error"] == "unsupported_media_type"
    resp = await client.post(
        "/hooks/ct", data=b"{}", headers={**bearer(), "Content-Type": "text/plain; charset=nope"}
    )
    assert resp.status == 415
    assert await resp.json() == {
        "error": "unsupported_media_type",
        "message": "unsupported charset 'nope'",
    }
    assert await executions(pool) == []


async def test_raw_body_mode_accepts_any_type_and_keeps_the_bytes(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "raw", body="raw")))
    client, _ = await make_client()
    payload = b"\x89PNG\x00\xff"
    resp = await client.post("/hooks/raw", data=payload, headers={"Content-Type": "image/png"})
    assert resp.status == 202
    [row] = await executions(pool)
    assert row["input"] == {"body_base64": base64.b64encode(payload).decode()}
    [stored] = await requests_rows(pool)
    assert stored["body"] == payload


async def test_form_and_text_bodies_become_input(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "f", input={"static": True, "a": "under"})))
    client, _ = await make_client()
    resp = await client.post("/hooks/f", data=b"a=1&b=2&b=3",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 202
    resp = await client.post("/hooks/f", data="héllo".encode(),
                             headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status == 202
    resp = await client.post("/hooks/f", json=[1, 2])
    assert resp.status == 202
    resp = await client.post("/hooks/f")  # no body at all
    assert resp.status == 202
    inputs = [r["input"] for r in await executions(pool)]
    assert sorted(inputs, key=json.dumps) == sorted(
        [
            {"static": True, "a": "1", "b": ["2", "3"]},
            {"static": True, "a": "under", "body": "héllo"},
            {"static": True, "a": "under", "body": [1, 2]},
            {"static": True, "a": "under"},
        ],
        key=json.dumps,
    )


async def test_invalid_json_is_400(make_client: ClientFactory, pool: asyncpg.Pool) -> None:
    await apply(pool, workflow("w", hook("h", "j")))
    client, _ = await make_client()
    resp = await client.post("/hooks/j", data=b'{"a": ',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_body",
        "message": "invalid JSON body: Expecting value at line 1, column 7 (character 6)",
    }
    resp = await client.post("/hooks/j", data=b'{"a": NaN}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_body",
        "message": "invalid JSON body: NaN is not a JSON value",
    }
    resp = await client.post("/hooks/j", data=b'\xff\xfe{}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_body"
    assert await executions(pool) == []


async def test_input_failing_the_schema_is_422_listing_every_error(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "s", input={"count": 0}), schema=SCHEMA))
    client, _ = await make_client()
    resp = await client.post("/hooks/s", json={"day": "2024-02-30", "tags": ["a", 5]})
    assert resp.status == 422
    assert await resp.json() == {
        "error": "input_invalid",
        "message": "the input does not match the workflow's parameter_schema (3 problems)",
        "errors": [
            {"path": "$.count", "message": "0 is less than the minimum of 1"},
            {"path": "$.day", "message": "'2024-02-30' is not a 'date'"},
            {"path": "$.tags[1]", "message": "5 is not of type 'string'"},
        ],
    }
    resp = await client.post("/hooks/s", json={"count": 2})
    assert resp.status == 422
    assert (await resp.json())["errors"] == [
        {"path": "$", "message": "'day' is a required property"}
    ]
    resp = await client.post("/hooks/s", json={"day": "2024-02-29", "count": 2})
    assert resp.status == 202
    assert len(await executions(pool)) == 1


# --- authentication schemes end to end ----------------------------------------------------


async def test_token_auth_refuses_missing_and_wrong_tokens_alike(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "tok", auth=token_auth())))
    client, _ = await make_client()
    expected = {"error": "unauthorized", "message": "authentication failed"}
    for headers in ({}, bearer("wrong"), {"Authorization": TOKEN}, {"Authorization": "Bearer"}):
        resp = await client.post("/hooks/tok", json={}, headers=headers)
        assert resp.status == 401
        assert await resp.json() == expected
        # The challenge RFC 9110 asks of a 401: the token goes as a Bearer credential.
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="triggerd"'
    assert (await client.post("/hooks/tok", json={}, headers=bearer())).status == 202
    [stored] = await requests_rows(pool)
    assert "authorization" not in stored["headers"]


async def test_the_bearer_word_is_case_insensitive(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # RFC 9110 11.1: "bearer" and "BEARER" name the same scheme; senders use either.
    await apply(pool, workflow("w", hook("h", "tok", auth=token_auth(), dedupe=None)))
    client, _ = await make_client()
    for word in ("bearer", "BEARER"):
        resp = await client.post("/hooks/tok", json={},
                                 headers={"Authorization": f"{word} {TOKEN}"})
        assert resp.status == 202
        assert set(await resp.json()) == {"execution_id", "status_url"}
    # The token itself is still compared exactly.
    resp = await client.post("/hooks/tok", json={},
                             headers={"Authorization": f"bearer {TOKEN.upper()}"})
    assert resp.status == 401
    assert await resp.json() == {"error": "unauthorized", "message": "authentication failed"}
    assert len(await requests_rows(pool)) == 2


async def test_signature_schemes_name_no_http_challenge(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # HTTP has no scheme for a body signature, nor for a token in a header of its own.
    auth = AuthConfig(scheme="github", secret=SecretRef(env="WH_GITHUB"))
    custom = AuthConfig(scheme="token", secret=SecretRef(env="WH_TOKEN"), header="X-Key")
    await apply(pool, workflow("w", hook("gh", "gh", auth=auth), hook("k", "k", auth=custom)))
    client, _ = await make_client()
    for path in ("/hooks/gh", "/hooks/k"):
        resp = await client.post(path, json={})
        assert resp.status == 401
        assert "WWW-Authenticate" not in resp.headers


async def test_github_signature_end_to_end(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    auth = AuthConfig(scheme="github", secret=SecretRef(env="WH_GITHUB"))
    await apply(pool, workflow(
        "w", hook("gh", "github/push", auth=auth, dedupe=DedupeConfig(header="X-GitHub-Delivery"))
    ))
    client, _ = await make_client()
    # GitHub's published example: secret "It's a Secret to Everybody", payload "Hello, World!".
    body = b"Hello, World!"
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature == "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, "sha256").hexdigest()
    headers = {
        "Content-Type": "text/plain",
        "X-Hub-Signature-256": signature,
        "X-Hub-Signature": "sha1=legacy",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Event": "push",
    }
    resp = await client.post("/hooks/github/push", data=body, headers=headers)
    assert resp.status == 202
    for bad in ("sha256=" + "0" * 64, "sha256=zz", "757107ea", ""):
        resp = await client.post("/hooks/github/push", data=body,
                                 headers={**headers, "X-Hub-Signature-256": bad})
        assert resp.status == 401
        assert await resp.json() == {"error": "unauthorized", "message": "authentication failed"}
    resp = await client.post("/hooks/github/push", data=b"Hello, World?", headers=headers)
    assert resp.status == 401
    [stored] = await requests_rows(pool)
    assert stored["body"] == body
    assert stored["headers"]["x-github-event"] == "push"
    assert "x-hub-signature-256" not in stored["headers"]
    assert "x-hub-signature" not in stored["headers"]


async def test_standard_webhooks_end_to_end_with_the_reference_client(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    auth = AuthConfig(scheme="standard", secret=SecretRef(env="WH_STANDARD"))
    await apply(pool, workflow(
        "w", hook("std", "std", auth=auth, dedupe=DedupeConfig(header="webhook-id"))
    ))
    fixed = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    client, _ = await make_client(clock=lambda: fixed)
    sender = Webhook(STANDARD_SECRET)
    payload = '{"type": "invoice.paid", "id": 7}'

    def signed(msg_id: str, at: datetime, data: str = payload) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": sender.sign(msg_id, at, data),
        }

    resp = await client.post("/hooks/std", data=payload.encode(), headers=signed("msg_1", fixed))
    assert resp.status == 202
    first = (await resp.json())["execution_id"]
    # The sender retries the same message: deduplicated by webhook-id.
    later = fixed + timedelta(seconds=30)
    resp = await client.post("/hooks/std", data=payload.encode(), headers=signed("msg_1", later))
    assert resp.status == 200
    assert (await resp.json())["execution_id"] == first
    failed = "authentication failed"
    refused = [
        (signed("msg_2", fixed - timedelta(minutes=6)), failed),  # expired
        (signed("msg_2", fixed + timedelta(minutes=6)), failed),  # far in the future
        ({**signed("msg_2", fixed), "webhook-signature": "v1,AAAA"}, failed),  # wrong
        ({**signed("msg_2", fixed), "webhook-signature": "garbage"}, failed),  # malformed
        ({k: v for k, v in signed("msg_2", fixed).items() if k != "webhook-signature"},
         f"{failed}: incomplete webhook-* headers: no webhook-signature"),  # missing
        ({**signed("msg_2", fixed), "webhook-id": "msg_3"}, failed),  # signed for another id
    ]
    for headers, message in refused:
        resp = await client.post("/hooks/std", data=payload.encode(), headers=headers)
        assert resp.status == 401
        assert await resp.json() == {"error": "unauthorized", "message": message}
    # A body that is not UTF-8 cannot be signed text: 401, not 500.
    resp = await client.post(
        "/hooks/std",
        data=b"\xff\xfe",
        headers={**signed("msg_4", fixed), "Content-Type": "text/plain"},
    )
    assert resp.status == 401
    [stored] = await requests_rows(pool)
    assert stored["headers"]["webhook-id"] == "msg_1"
    assert "webhook-signature" not in stored["headers"]
    assert len(await executions(pool)) == 1


@pytest.mark.parametrize("dedupe", [None, DedupeConfig(header="webhook-id")],
                         ids=["scheme default", "dedupe on webhook-id"])
async def test_standard_webhooks_under_svix_header_names(
    make_client: ClientFactory, pool: asyncpg.Pool, dedupe: DedupeConfig | None
) -> None:
    """Svix-based senders (Clerk, Resend, ...) send the standard scheme as svix-id,
    svix-timestamp and svix-signature; the set is read whole, and dedupes on svix-id."""
    auth = AuthConfig(scheme="standard", secret=SecretRef(env="WH_STANDARD"))
    await apply(pool, workflow("w", hook("std", "std", auth=auth, dedupe=dedupe)))
    fixed = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    client, _ = await make_client(clock=lambda: fixed)
    sender = Webhook(STANDARD_SECRET)
    payload = '{"type": "user.created", "id": 7}'

    def signed(msg_id: str, at: datetime) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": str(int(at.timestamp())),
            "svix-signature": sender.sign(msg_id, at, payload),
        }

    async def post(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        resp = await client.post("/hooks/std", data=payload.encode(), headers=headers)
        return resp.status, await resp.json()

    async def stored() -> tuple[int, int]:
        return (await pool.fetchval("SELECT count(*) FROM webhook_requests"),
                await pool.fetchval("SELECT count(*) FROM workflow_executions"))

    # Refused before anything is stored: a wrong signature, and sets that are incomplete
    # or mixed (a webhook-* header present means the webhook-* set is read).
    good = signed("msg_1", fixed)
    refused = [
        ({**good, "svix-signature": "v1,AAAA"}, "authentication failed"),
        ({**good, "svix-signature": signed("msg_1", fixed - timedelta(minutes=6))[
            "svix-signature"]}, "authentication failed"),  # signed for another timestamp
        ({k: v for k, v in good.items() if k != "svix-timestamp"},
         "authentication failed: incomplete svix-* headers: no svix-timestamp"),
        ({"Content-Type": "application/json", "webhook-id": "msg_1",
          "svix-timestamp": good["svix-timestamp"], "svix-signature": good["svix-signature"]},
         "authentication failed: incomplete webhook-* headers: no webhook-timestamp"
         " (svix-* headers are read only when no webhook-* header is sent)"),
    ]
    for headers, message in refused:
        assert await post(headers) == (401, {"error": "unauthorized", "message": message})
    assert await stored() == (0, 0)

    status, answer = await post(good)
    assert status == 202
    first = answer["execution_id"]
    [run] = await executions(pool)
    assert str(run["id"]) == first
    assert run["dedupe_key"] == "webhook:msg_1"
    # The sender retries the same message with a new timestamp and signature: deduplicated
    # by svix-id, and the redelivery stores nothing new.
    status, answer = await post(signed("msg_1", fixed + timedelta(seconds=30)))
    assert (status, answer["execution_id"], answer["duplicate"]) == (200, first, True)
    assert await stored() == (1, 1)
    # Another message is another run.
    status, answer = await post(signed("msg_2", fixed))
    assert status == 202
    assert answer["execution_id"] != first
    [request, _] = await requests_rows(pool)
    assert str(request["execution_id"]) == first
    assert request["headers"]["svix-id"] == "msg_1"
    assert request["headers"]["svix-timestamp"] == good["svix-timestamp"]
    assert "svix-signature" not in request["headers"]
    everything = await pool.fetchval(
        "SELECT string_agg(row_to_json(r)::text, ' ') FROM webhook_requests r")
    assert good["svix-signature"].removeprefix("v1,") not in everything


async def test_unresolvable_secret_is_a_retryable_503(
    make_client: ClientFactory, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WH_TOKEN")
    await apply(pool, workflow("w", hook("h", "nosecret", auth=token_auth())))
    client, ingress = await make_client()
    resp = await client.post("/hooks/nosecret", json={}, headers=bearer())
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert await resp.json() == {
        "error": "unavailable",
        "message": "this webhook cannot verify requests right now; retry later",
    }
    monkeypatch.setenv("WH_TOKEN", TOKEN)
    await ingress.reload()
    assert (await client.post("/hooks/nosecret", json={}, headers=bearer())).status == 202


# --- reloads --------------------------------------------------------------------------------


async def test_reload_swaps_routes(make_client: ClientFactory, pool: asyncpg.Pool) -> None:
    await apply(pool, workflow("w", hook("a", "a")))
    client, ingress = await make_client(reload_interval=3600.0)
    assert (await client.post("/hooks/a", json={})).status == 202
    assert (await client.post("/hooks/b", json={})).status == 404
    await apply(pool, workflow("w", hook("a", "a", enabled=False), hook("b", "b")))
    await ingress.reload()
    assert (await client.post("/hooks/a", json={})).status == 404
    assert (await client.post("/hooks/b", json={})).status == 202


async def test_trigger_change_notification_reloads_without_a_call(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("a", "a")))
    client, ingress = await make_client(reload_interval=3600.0)
    table = ingress.routes.table
    await apply(pool, workflow("w", hook("a", "a"), hook("n", "notified")))
    for _ in range(400):  # bounded by the test timeout, not asserted as a duration
        if ingress.routes.table is not table and ingress.routes.table.get("notified"):
            break
        await asyncio.sleep(0.01)
    assert (await client.post("/hooks/notified", json={})).status == 202


async def test_reloads_never_404_a_trigger_that_stays(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("a", "stay"), hook("b", "other")))
    client, ingress = await make_client(reload_interval=3600.0)
    stop = asyncio.Event()

    async def reloader() -> int:
        count = 0
        flip = False
        while not stop.is_set():
            flip = not flip
            await apply(pool, workflow("w", hook("a", "stay"), hook("b", "other", enabled=flip)))
            await ingress.reload()
            count += 1
        return count

    task = asyncio.create_task(reloader())
    statuses = []
    for _ in range(60):
        statuses.append((await client.post("/hooks/stay", json={})).status)
    stop.set()
    reloads = await task
    assert reloads > 1
    assert set(statuses) == {202}


async def test_pinned_version_and_new_versions(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """Runs use the version whose schema validated them; a new version applies after a
    reload."""
    await apply(pool, workflow("w", hook("h", "v"), schema=SCHEMA))
    client, ingress = await make_client(reload_interval=3600.0)
    assert (await client.post("/hooks/v", json={})).status == 422
    await apply(pool, workflow("w", hook("h", "v"), schema={"type": "object"}))
    await ingress.reload()
    assert (await client.post("/hooks/v", json={})).status == 202
    [row] = await pool.fetch(
        "SELECT v.version FROM workflow_executions e"
        " JOIN workflow_versions v ON v.id = e.workflow_version_id"
    )
    assert row["version"] == 2


# --- sync mode and the status page ------------------------------------------------------------


async def test_sync_mode_falls_back_to_202_after_the_timeout(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow(
        "w", hook("h", "sync", response=ResponseMode.SYNC, timeout=timedelta(milliseconds=100))
    ))
    client, _ = await make_client()
    resp = await client.post("/hooks/sync", json={"a": 1})  # no executor runs it
    assert resp.status == 202
    answer = await resp.json()
    assert answer == {
        "execution_id": answer["execution_id"],
        "status_url": f"/hooks/_executions/{answer['execution_id']}",
    }


async def finish(pool: asyncpg.Pool, execution_id: str, status: str, output: Any,
                 *, respond: bool = False) -> None:
    """Play the executor: record the final state and notify."""
    async with pool.acquire() as conn, conn.transaction():
        if respond:
            await conn.execute(
                "INSERT INTO node_executions (execution_id, node_id, node_type, status, output,"
                " start_time, end_time) VALUES ($1, 'reply', 'respond', 'SUCCESS', $2, now(),"
                " now())",
                execution_id,
                output,
            )
        await conn.execute(
            "UPDATE workflow_executions SET status = $2, output = $3, start_time = now(),"
            " end_time = now(), error_code = CASE WHEN $2 = 'ERROR' THEN 'BOOM' END"
            " WHERE id = $1",
            execution_id,
            status,
            output,
        )
        await conn.execute("SELECT pg_notify('triggerd_finished', $1)", execution_id)


async def sync_call(
    client: TestClient[Any, Any], pool: asyncpg.Pool, path: str, status: str, output: Any,
    *, respond: bool = False,
) -> Any:
    call = asyncio.ensure_future(client.post(path, json={}))
    while True:  # wait for the execution to exist, then finish it
        row = await pool.fetchrow("SELECT id::text FROM workflow_executions WHERE status = 'NEW'")
        if row is not None:
            break
        await asyncio.sleep(0.01)
    await finish(pool, row["id"], status, output, respond=respond)
    return await call, row["id"]


async def test_sync_mode_answers_with_the_run(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "sync", response=ResponseMode.SYNC)))
    client, _ = await make_client()
    # A respond node ran: its status, headers and body are the answer.
    output = {"status": 201, "headers": {"X-Reply": "yes", "Content-Length": "1"},
              "body": {"ok": True}}
    resp, execution_id = await sync_call(client, pool, "/hooks/sync", "SUCCESS", output,
                                         respond=True)
    assert resp.status == 201
    assert resp.headers["X-Reply"] == "yes"
    assert resp.headers["Triggerd-Execution-Id"] == execution_id
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # no sniffing into HTML
    # Served from the console's origin: a body runs no script there unless the run says so.
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert await resp.json() == {"ok": True}
    # A run's own policy is enforced besides the sandbox, never instead of it: a page a
    # tenant's admin serves ran its script with an all-tenant admin's console session.
    # Nor may it set a cookie of the console's origin (a session fixed, or logged out).
    page = {"status": 200, "body": "<script>1</script>",
            "headers": {"Content-Type": "text/html",
                        "content-security-policy": "default-src 'self' 'unsafe-inline'",
                        "Set-Cookie": "triggerd_session=fixed; Path=/ui/",
                        "Clear-Site-Data": '"cookies"',
                        "Strict-Transport-Security": "max-age=31536000"}}
    resp, _ = await sync_call(client, pool, "/hooks/sync", "SUCCESS", page, respond=True)
    assert resp.headers.getall("Content-Security-Policy") == [
        "default-src 'self' 'unsafe-inline', sandbox"]
    assert resp.headers["Content-Type"] == "text/html"
    assert not {"Set-Cookie", "Clear-Site-Data", "Strict-Transport-Security"} & set(
        resp.headers)
    blank = {"status": 200, "body": "<p>", "headers": {"Content-Security-Policy": " "}}
    resp, _ = await sync_call(client, pool, "/hooks/sync", "SUCCESS", blank, respond=True)
    assert resp.headers.getall("Content-Security-Policy") == ["sandbox"]
    # No respond node: 200 with the run's output, whatever its shape.
    resp, _ = await sync_call(client, pool, "/hooks/sync", "SUCCESS",
                              {"status": 999, "body": "not a respond node"})
    assert resp.status == 200
    assert await resp.json() == {"status": 999, "body": "not a respond node"}
    # A failed run.
    resp, execution_id = await sync_call(client, pool, "/hooks/sync", "ERROR", None)
    assert resp.status == 500
    assert await resp.json() == {
        "error": "execution_failed",
        "message": f"execution {execution_id} failed",
        "execution_id": execution_id,
    }


async def test_sync_answer_larger_than_the_stored_output_is_an_error_not_an_empty_200(
    make_client: ClientFactory, pool: asyncpg.Pool, dsn: str
) -> None:
    # The answer is built from the run's stored output, which above max_output_bytes is a
    # truncation marker: it was answered 200 with no body, the 201 and its headers lost.
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_MAX_OUTPUT_BYTES": "1000"})
    reply = Node(id="reply", type="respond", params={
        "status": 201, "headers": {"X-Reply": "yes"}, "body": {"rows": "x" * 5000}})
    await apply(pool, WorkflowSpec(
        key="w", name="w", graph=Graph(nodes=(reply,)),
        triggers=(hook("h", "sync", response=ResponseMode.SYNC,
                       timeout=timedelta(seconds=30)),)))
    executor = Executor(pool=pool, dsn=dsn, settings=settings)
    await executor.start()
    try:
        client, _ = await make_client(settings)
        resp = await client.post("/hooks/sync", json={})
    finally:
        await executor.stop()
    execution_id = resp.headers["Triggerd-Execution-Id"]
    assert resp.status == 500
    assert "X-Reply" not in resp.headers
    row = await pool.fetchrow("SELECT status, output FROM workflow_executions WHERE id = $1",
                              execution_id)
    size = row["output"]["size_bytes"]
    assert size > 5000
    assert await resp.json() == {
        "error": "response_too_large",
        "message": f"execution {execution_id} answered {size} bytes, above [executor]"
                   " max_output_bytes (1000 bytes): raise it to send answers this large",
        "execution_id": execution_id,
    }
    # The run itself succeeded; what it stored is the marker, nothing else was lost.
    assert (row["status"], row["output"]["_truncated"]) == ("SUCCESS", True)


async def test_status_page_shows_status_and_times_only_unless_exposed(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("closed", "closed"), hook("open", "open",
                                                                   expose_output=True)))
    client, _ = await make_client()
    closed_id = (await (await client.post("/hooks/closed", json={})).json())["execution_id"]
    open_id = (await (await client.post("/hooks/open", json={})).json())["execution_id"]
    resp = await client.get(f"/hooks/_executions/{closed_id}")
    assert resp.status == 200
    page = await resp.json()
    assert page == {
        "execution_id": closed_id,
        "status": "NEW",
        "created_at": page["created_at"],
        "started_at": None,
        "finished_at": None,
    }
    assert datetime.fromisoformat(page["created_at"]).tzinfo is not None
    await finish(pool, closed_id, "SUCCESS", {"secret": 1})
    await finish(pool, open_id, "SUCCESS", {"result": 2})
    page = await (await client.get(f"/hooks/_executions/{closed_id}")).json()
    assert page["status"] == "SUCCESS"
    assert "output" not in page
    assert page["finished_at"] is not None
    page = await (await client.get(f"/hooks/_executions/{open_id}")).json()
    assert page["output"] == {"result": 2}
    assert page["error_code"] is None

    for bad in ("not-a-uuid", str(uuid.uuid4())):
        resp = await client.get(f"/hooks/_executions/{bad}")
        assert resp.status == 404
        assert await resp.json() == {"error": "not_found", "message": f"no execution {bad}"}
    resp = await client.post(f"/hooks/_executions/{open_id}", json={})
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    # Executions of other trigger types are not shown on this unauthenticated page.
    cron_id = await pool.fetchval(
        "INSERT INTO workflow_executions (workflow_id, trigger_type)"
        " SELECT id, 'cron' FROM workflows LIMIT 1 RETURNING id::text"
    )
    assert (await client.get(f"/hooks/_executions/{cron_id}")).status == 404


# --- bookkeeping ----------------------------------------------------------------------------


async def test_stats_count_answers_per_trigger(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "st", auth=token_auth())))
    client, ingress = await make_client()
    await client.post("/hooks/st", json={}, headers=bearer())
    await client.post("/hooks/st", json={})
    await client.post("/hooks/none", json={})
    assert ingress.stats.responses == {("w/h", 202): 1, ("w/h", 401): 1, ("-", 404): 1}
    assert len(ingress.stats.latency["w/h"]) == 2
    assert ingress.stats.group_commit.rows == 1


async def test_readiness_reports_loaded_routes(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    client, _ = await make_client()
    resp = await client.get("/readyz")
    assert (await resp.json())["checks"]["webhooks"] == "ok"


async def test_stop_answers_new_requests_503(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "late")))
    client, ingress = await make_client()
    await ingress.stop()
    resp = await client.post("/hooks/late", json={})
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert await resp.json() == {
        "error": "database_unavailable",
        "message": "the request was not stored: triggerd is shutting down; retry later",
    }
    assert await executions(pool) == []



async def test_json_object_bodies_are_stored_as_parsed(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """Whether the input is stored from the sender's text or re-encoded, it is the same
    document the schema check saw."""
    await apply(pool, workflow("w", hook("h", "doc")))
    client, _ = await make_client()
    body = '  {"a": 1, "a": 2, "n": 1.50, "s": "\\u00e9t\\u00e9", "deep": {"x": [true, null]}}'
    for content_type in ("application/json", "application/json; charset=UTF-8",
                         "application/vnd.api+json", "application/json; charset=latin-1"):
        resp = await client.post("/hooks/doc", data=body.encode("latin-1"),
                                 headers={"Content-Type": content_type})
        assert resp.status == 202, content_type
    # A leading BOM is not JSON to PostgreSQL: that body is re-encoded, not stored as sent.
    resp = await client.post("/hooks/doc", data=b"\xef\xbb\xbf" + body.encode("latin-1"),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 202
    inputs = [r["input"] for r in await executions(pool)]
    assert inputs == [{"a": 2, "n": 1.5, "s": "été", "deep": {"x": [True, None]}}] * 5


def test_execution_ids_are_time_ordered_uuid7() -> None:
    ids = [time_ordered_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (str(parsed), parsed.version, parsed.variant) == (value, 7, uuid.RFC_4122)
    # The first 48 bits are Unix milliseconds: never decreasing, and close to now.
    millis = [int(value.replace("-", "")[:12], 16) for value in ids]
    assert millis == sorted(millis)
    assert abs(millis[-1] - time.time() * 1000) < 60_000


async def test_trigger_deleted_while_its_request_is_stored_is_a_503_and_stores_nothing(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "doomed")))
    client, _ = await make_client()
    async with pool.acquire() as deleter:
        transaction = deleter.transaction()
        await transaction.start()
        await deleter.execute("DELETE FROM workflow_triggers WHERE name = 'h'")
        # Not committed yet: the route is still served, and the insert waits for the delete.
        sending = asyncio.create_task(client.post("/hooks/doomed", json={"a": 1}))
        await wait_until_blocked(pool, "WITH d AS")
        await transaction.commit()
        response = await sending
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.json() == {
        "error": "trigger_changed",
        "message": "the request was not stored: the trigger was changed while the request"
        " was being stored; retry later",
    }
    assert await executions(pool) == []
    assert await requests_rows(pool) == []


async def test_a_large_body_is_parsed_off_the_event_loop(
    make_client: ClientFactory, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 MB of small lists held the loop for seconds in the parse and its nesting check:
    # every other request and probe waited. Which thread parses is counted, not timed.
    from triggerd.webhooks import ingress
    from triggerd.webhooks.body import parse_input as real

    threads: list[int] = []

    def parse(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(ingress, "parse_input", parse)
    await apply(pool, workflow("w", hook("h", "big")))
    client, _ = await make_client()
    loop_thread = threading.get_ident()
    small = await client.post("/hooks/big", json={"n": 1})
    big = await client.post("/hooks/big", json={"a": [[]] * 50_000})
    # Refused the same way off the loop: an invalid body, a body nested too deep.
    broken = await client.post("/hooks/big", data=b'{"a": [' + b"1," * 100_000 + b"]",
                               headers={"Content-Type": "application/json"})
    deep = await client.post("/hooks/big", data=b" " * 200_000 + b"[" * 200 + b"]" * 200,
                             headers={"Content-Type": "application/json"})
    assert (small.status, big.status, broken.status, deep.status) == (202, 202, 400, 400)
    assert (await deep.json())["message"] == (
        "invalid JSON body: nested more than 128 levels deep")
    assert (await broken.json())["error"] == "invalid_body"
    assert threads[0] == loop_thread
    assert loop_thread not in threads[1:] and len(threads) == 4
    inputs = [r["input"] for r in await executions(pool)]
    assert sorted(len(json.dumps(i)) for i in inputs)[0] == len(json.dumps({"n": 1}))
    assert len(inputs) == 2


def pipelined_posts(path: str, count: int) -> bytes:
    one = (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
           "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
    return one * count


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    answers = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        answers.append(head + await reader.readexactly(length))
    return answers


async def pipelined(client: TestClient[Any, Any], requests: bytes, count: int) -> list[bytes]:
    """``requests`` (``count`` of them) written at once on one connection (HTTP/1.1
    pipelining), and the answers, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(requests)
    try:
        return await read_answers(reader, count)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_a_connection_whose_queued_requests_wait_too_long_is_refused(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "q", auth=token_auth())))
    # A bound of 0: a request that waited behind another on its connection waited too
    # long. Forty written at once (more than aiohttp parses ahead: it stops reading at 32
    # and reads again at 16): the first is taken, and the others, which waited for it,
    # are refused.
    client, ingress = await make_client(queue_wait_bound=0.0)
    answers = await pipelined(client, pipelined_posts("/hooks/q", 40), 40)
    statuses = [status_of(a) for a in answers]
    refused = [a for a in answers if status_of(a) == 429]
    assert statuses[0] == 202 and len(refused) >= 30 and set(statuses) == {202, 429}
    for answer in refused:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"\r\nRetry-After: 5\r\n" in head
        assert json.loads(body) == {
            "error": "overloaded",
            "message": "requests wait too long on this connection (this server is behind);"
                       " retry later",
        }
    assert ingress.stats.backpressure_rejections == len(refused)
    # Nothing refused was stored; every 202 has its request and its run.
    accepted = [json.loads(a.partition(b"\r\n\r\n")[2])["execution_id"]
                for a in answers if status_of(a) == 202]
    assert sorted(str(r["id"]) for r in await executions(pool)) == sorted(accepted)
    assert len(await requests_rows(pool)) == len(accepted)


async def test_a_pipelined_burst_that_did_not_wait_long_is_accepted_whole(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "q", auth=token_auth())))
    # The ingress's clock stands still: no request waits, however many are queued behind
    # (a version that refused on a long queue alone, without a wait, failed this).
    client, ingress = await make_client(monotonic=lambda: 100.0)
    answers = await pipelined(client, pipelined_posts("/hooks/q", 20), 20)
    assert [status_of(a) for a in answers] == [202] * 20
    assert ingress.stats.backpressure_rejections == 0
    assert len(await executions(pool)) == 20


async def test_a_request_that_did_not_ask_lends_no_wait_to_the_next(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "q", auth=token_auth())))
    now = [100.0]
    client, ingress = await make_client(monotonic=lambda: now[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        # A webhook with a request for a path that is no webhook behind it (answered 404
        # before any queue-time look), then three idle seconds, then one more webhook.
        writer.write(pipelined_posts("/hooks/q", 1) + pipelined_posts("/hooks/nope", 1))
        assert [status_of(a) for a in await read_answers(reader, 2)] == [202, 404]
        now[0] += 3.0
        writer.write(pipelined_posts("/hooks/q", 1))
        assert [status_of(a) for a in await read_answers(reader, 1)] == [202]
    finally:
        writer.close()
    assert ingress.stats.backpressure_rejections == 0


async def new_run(pool: asyncpg.Pool) -> str:
    """The id of the first run to appear ``NEW`` (polling)."""
    while True:
        found = await pool.fetchval("SELECT id::text FROM workflow_executions"
                                    " WHERE status = 'NEW'")
        if found is not None:
            return str(found)
        await asyncio.sleep(0.01)


async def test_requests_behind_a_sync_request_are_not_refused_for_its_wait(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "sync", response=ResponseMode.SYNC)))
    now = [100.0]
    client, ingress = await make_client(monotonic=lambda: now[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(pipelined_posts("/hooks/sync", 2))
        answer = asyncio.ensure_future(read_answers(reader, 1))
        for ok in (1, 2):
            # The run of the request in progress appears, takes 5 s (by the ingress's
            # clock) and ends; the one behind waited for it, as it asked. Refused, the
            # second is answered before any run of its own appears.
            stored = asyncio.ensure_future(new_run(pool))
            done, _ = await asyncio.wait({answer, stored},
                                         return_when=asyncio.FIRST_COMPLETED)
            if answer in done:
                stored.cancel()
                pytest.fail(f"answered before its run was stored: {answer.result()}")
            now[0] += 5.0
            await finish(pool, stored.result(), "SUCCESS", {"ok": ok})
            [answered] = await answer
            assert status_of(answered) == 200, answered
            answer = asyncio.ensure_future(read_answers(reader, 1))
        answer.cancel()
    finally:
        writer.close()
    assert ingress.stats.backpressure_rejections == 0


async def test_a_connection_closed_while_backlogged_is_forgotten(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    await apply(pool, workflow("w", hook("h", "q", auth=token_auth())))
    # The clock stands still: nothing is refused, and the table keeps the connection
    # while requests are queued on it.
    client, ingress = await make_client(monotonic=lambda: 100.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    # Forty: more than aiohttp parses ahead, so the connection is still backlogged when
    # the first answer arrives.
    writer.write(pipelined_posts("/hooks/q", 40))
    await read_answers(reader, 1)
    assert ingress.shedder.tracked() == 1
    writer.close()
    await writer.wait_closed()
    await ingress._every_second()  # what the ingress does every second
    for _ in range(100):  # until aiohttp has seen the end (a few turns of the loop)
        if ingress.shedder.tracked() == 0:
            break
        await asyncio.sleep(0.05)
        await ingress._every_second()
    assert ingress.shedder.tracked() == 0
