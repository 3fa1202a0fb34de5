"""The webhook inbox over real loopback HTTP against a real PostgreSQL: filters, outcomes,
a duplicate's bump, retention of rows without a run, and list/show/replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import wait_for, wait_until_blocked
from triggerd.api.admin import add_admin_routes
from triggerd.api.metrics import METRICS
from triggerd.config import ApiSettings, Settings
from triggerd.daemon import create_app
from triggerd.errors import Conflict, NotFound
from triggerd.model import (
    ConcurrencyConfig,
    DedupeConfig,
    Graph,
    Node,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
)
from triggerd.operations.actor import Actor
from triggerd.operations.webhooks import replay, show_request
from triggerd.store.workflows import apply_workflows
from triggerd.webhooks.ingress import WebhookIngress, setup_webhooks

Client = TestClient[Any, Any]
TOKEN = "admin-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILTER = "{{ input.action == 'opened' and headers['x-kind'] == 'pr' }}"


def spec(*, schema: dict[str, Any] | None = None, filter: str | None = FILTER) -> WorkflowSpec:
    return WorkflowSpec(
        key="gh", name="gh", graph=Graph(nodes=(Node(id="start", type="noop"),)),
        parameter_schema=schema or {},
        triggers=(
            TriggerSpec(name="push", type=TriggerType.WEBHOOK,
                        config=WebhookConfig(path="gh", filter=filter,
                                             dedupe=DedupeConfig(header="X-Id"))),
        ),
    )


async def apply(pool: asyncpg.Pool, *specs: WorkflowSpec) -> None:
    async with pool.acquire() as conn:
        await apply_workflows(conn, list(specs))


@pytest.fixture
async def make_client(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str
) -> AsyncIterator[Callable[[], Awaitable[tuple[Client, WebhookIngress]]]]:
    started: list[WebhookIngress] = []

    async def make() -> tuple[Client, WebhookIngress]:
        settings = Settings(api=ApiSettings(token=TOKEN))
        app = create_app(settings, pool)
        add_admin_routes(app, environ={})
        ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                                 pending_interval=3600.0)
        ingress.stats.sink = app[METRICS]  # as the daemon wires it
        await ingress.start()
        started.append(ingress)
        client: Client = await aiohttp_client(app)
        return client, ingress

    yield make
    for ingress in started:
        await ingress.stop()


async def post(client: Client, body: Any, *, kind: str = "pr", id: str | None = None,
               ) -> tuple[int, Any]:
    headers = {"X-Kind": kind, **({"X-Id": id} if id else {})}
    response = await client.post("/hooks/gh", json=body, headers=headers)
    return response.status, await response.json()


async def test_filter_match_no_match_and_error(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    await apply(pool, spec())
    client, ingress = await make_client()
    status, answer = await post(client, {"action": "opened"})
    assert status == 202 and "execution_id" in answer
    status, answer = await post(client, {"action": "closed"})
    assert (status, answer) == (200, {"filtered": True})
    # headers['x-kind'] is missing: the filter raises, which counts as not matching
    response = await client.post("/hooks/gh", json={"action": "opened"})
    assert (response.status, await response.json()) == (200, {"filtered": True})
    rows = await pool.fetch(
        "SELECT outcome, execution_id IS NULL AS no_run, detail FROM webhook_requests"
        " ORDER BY id")
    assert [(r["outcome"], r["no_run"]) for r in rows] == [
        ("accepted", False), ("filtered", True), ("filtered", True)]
    assert rows[1]["detail"] is None
    assert rows[2]["detail"].startswith("the filter failed: ")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    assert ingress.stats.filtered == 2
    metrics = await (await client.get("/metrics")).text()
    assert 'triggerd_webhook_filtered_total{trigger="gh/push"} 2.0' in metrics


async def test_duplicate_bumps_its_first_delivery(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    await apply(pool, spec(filter=None))
    client, _ = await make_client()
    first = await post(client, {"n": 1}, id="d-1")
    again = await post(client, {"n": 2}, id="d-1")
    third = await post(client, {"n": 3}, id="d-1")
    assert first[0] == 202 and again[0] == 200 and third[0] == 200
    assert again[1]["execution_id"] == first[1]["execution_id"]
    rows = await pool.fetch(
        "SELECT id::text AS id, delivery_count, last_seen_at, received_at"
        " FROM webhook_requests")
    assert len(rows) == 1
    assert rows[0]["id"] == first[1]["execution_id"]
    assert rows[0]["delivery_count"] == 3
    assert rows[0]["last_seen_at"] is not None


async def _runs_then_is_its_duplicate(client: Client, pool: asyncpg.Pool, *,
                                      filtered_count: int) -> Any:
    """A redelivery of the filtered d-1 that the filter now passes runs, once: the next is
    its duplicate, and the run's own row counts it (not the filtered one's)."""
    status, ran = await post(client, {"action": "closed"}, id="d-1")
    assert status == 202 and "duplicate" not in ran
    status, again = await post(client, {"action": "closed"}, id="d-1")
    assert (status, again["execution_id"], again["duplicate"]) == (
        200, ran["execution_id"], True)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    outcomes = await pool.fetch("SELECT outcome, delivery_count FROM webhook_requests"
                                " ORDER BY received_at")
    assert [tuple(r) for r in outcomes] == [("filtered", filtered_count), ("accepted", 2)]
    return ran


async def test_a_filtered_requests_redelivery_is_a_duplicate_while_the_filter_refuses_it(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """Each redelivery of a filtered request was stored as another filtered row (and
    counted again). Once the filter matches it (an operator fixed the filter and the sender
    redelivers), the delivery that never ran runs, once."""
    await apply(pool, spec())
    client, ingress = await make_client()
    assert await post(client, {"action": "closed"}, id="d-1") == (200, {"filtered": True})
    assert await post(client, {"action": "closed"}, id="d-1") == (
        200, {"filtered": True, "duplicate": True})
    rows = await pool.fetch("SELECT outcome, delivery_count, last_seen_at IS NOT NULL AS seen"
                            " FROM webhook_requests")
    assert [tuple(r) for r in rows] == [("filtered", 2, True)]
    assert ingress.stats.filtered == 1
    # The filter changed, and now matches: the redelivery runs, and its own redelivery is
    # a duplicate of that run.
    await apply(pool, spec(filter=None))
    await ingress.reload()
    ran = await _runs_then_is_its_duplicate(client, pool, filtered_count=2)
    # The filter refuses it again: the delivery ran, so its redelivery is that run's
    # duplicate (not the filtered one's), and the run's row counts it.
    await apply(pool, spec())
    await ingress.reload()
    status, again = await post(client, {"action": "closed"}, id="d-1")
    assert (status, again["execution_id"], again["duplicate"]) == (
        200, ran["execution_id"], True)
    outcomes = await pool.fetch("SELECT outcome, delivery_count FROM webhook_requests"
                                " ORDER BY received_at")
    assert [tuple(r) for r in outcomes] == [("filtered", 2), ("accepted", 3)]


async def in_one_batch(client: Client, ingress: WebhookIngress, pool: asyncpg.Pool,
                       *bodies: dict[str, Any], id: str) -> list[tuple[int, Any]]:
    """The answers to deliveries of ``id`` posted one after the other (received in this
    order) and written by one statement: the writer's statement before them, a filtered
    request without an id (the first answer), waits for the trigger's row while they
    queue."""
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM workflow_triggers FOR UPDATE")
        blocker = asyncio.create_task(post(client, {"action": "closed"}))
        await wait_until_blocked(pool, "WITH d AS")
        tasks = []
        for n, body in enumerate(bodies, 1):
            tasks.append(asyncio.create_task(post(client, body, id=id)))

            async def queued(n: int = n) -> bool:
                return ingress.group_commit.queued == n

            await wait_for(queued)
        batches = ingress.group_commit.stats.batches
        await transaction.commit()
        answers = [await blocker] + [await task for task in tasks]
    assert ingress.group_commit.stats.batches == batches + 1  # the deliveries in one
    return answers


async def test_two_filtered_deliveries_of_one_id_in_one_batch_store_one_row(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """Two deliveries of d-1, both filtered, written by one statement: each was stored as
    a filtered row (the statement's check of earlier rows cannot see its own). The first
    received is stored and answered as filtered; the second is its duplicate and counted
    on its row, as a redelivery after the first's commit is."""
    await apply(pool, spec())
    client, ingress = await make_client()
    answers = await in_one_batch(client, ingress, pool, {"action": "closed", "n": 1},
                                 {"action": "closed", "n": 2}, id="d-1")
    assert answers == [(200, {"filtered": True}), (200, {"filtered": True}),
                       (200, {"filtered": True, "duplicate": True})]
    rows = await pool.fetch(
        "SELECT dedupe_key, body, delivery_count, last_seen_at IS NOT NULL AS seen"
        " FROM webhook_requests WHERE outcome = 'filtered' ORDER BY received_at")
    assert [(r["dedupe_key"], json.loads(r["body"]).get("n"), r["delivery_count"], r["seen"])
            for r in rows] == [(None, None, 1, False), ("webhook:d-1", 1, 2, True)]
    assert ingress.stats.filtered == 2
    # A later redelivery is that row's duplicate too.
    assert await post(client, {"action": "closed"}, id="d-1") == (
        200, {"filtered": True, "duplicate": True})
    assert await pool.fetchval("SELECT max(delivery_count) FROM webhook_requests") == 3
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == 2


async def _delivery_rows(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """d-1's inbox rows, in the order received: outcome, delivery count, whether a
    redelivery was seen."""
    rows = await pool.fetch(
        "SELECT outcome, delivery_count, last_seen_at IS NOT NULL AS seen"
        " FROM webhook_requests WHERE dedupe_key IS NOT NULL OR outcome = 'accepted'"
        " ORDER BY received_at")
    return [tuple(r) for r in rows]


async def test_a_filtered_delivery_after_an_accepted_one_in_one_batch_is_its_duplicate(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """The filter matches d-1's first delivery and not its retry (a filter that reads a
    retry header, say), and one statement writes both: the retry was stored as a filtered
    row next to the run (the check for a run of its id cannot see this statement's). One
    after the other, the retry is the run's duplicate, and so it is together."""
    await apply(pool, spec())
    client, ingress = await make_client()
    answers = await in_one_batch(client, ingress, pool, {"action": "opened"},
                                 {"action": "closed"}, id="d-1")
    status, ran = answers[1]
    assert status == 202 and "duplicate" not in ran
    assert answers[2] == (200, {**ran, "duplicate": True})
    assert await _delivery_rows(pool) == [("accepted", 2, True)]
    assert ingress.stats.filtered == 1  # the request without an id
    # A later filtered redelivery is that run's duplicate too.
    assert await post(client, {"action": "closed"}, id="d-1") == answers[2]
    assert await _delivery_rows(pool) == [("accepted", 3, True)]


async def test_a_filtered_delivery_before_an_accepted_one_in_one_batch_is_stored(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """d-1 filtered, then accepted, then filtered, in one statement. One after the other:
    the first is stored as filtered (no delivery of the id ran yet), the second runs (a
    filtered row does not stop a delivery the filter matches), and the third is the run's
    duplicate. Together, the third was the first one's duplicate (the filtered rows of
    one statement were grouped without the run)."""
    await apply(pool, spec())
    client, ingress = await make_client()
    answers = await in_one_batch(client, ingress, pool, {"action": "closed"},
                                 {"action": "opened"}, {"action": "closed"}, id="d-1")
    assert answers[1] == (200, {"filtered": True})
    status, ran = answers[2]
    assert status == 202 and "duplicate" not in ran
    assert answers[3] == (200, {**ran, "duplicate": True})
    assert await _delivery_rows(pool) == [("filtered", 1, False), ("accepted", 2, True)]
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    assert ingress.stats.filtered == 2


async def test_a_filtered_delivery_to_another_replica_meanwhile_is_the_runs_duplicate(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """d-1 passes the filter at one replica, and its retry, which the filter refuses,
    reaches another while the first one's statement is running: it found no run of its
    id (not committed yet) and was stored as filtered next to the run. The accepted
    request takes its id's lock too (its trigger has a filter), so the retry's statement
    waits for the run's commit, sees it, and is its duplicate."""
    await apply(pool, spec())
    (one, _), (other, _) = await make_client(), await make_client()

    async def waiting(n: int) -> bool:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()")
        return count == n

    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM workflow_triggers FOR UPDATE")
        first = asyncio.create_task(post(one, {"action": "opened"}, id="d-1"))
        await wait_until_blocked(pool, "WITH d AS")
        retry = asyncio.create_task(post(other, {"action": "closed"}, id="d-1"))
        await wait_for(lambda: waiting(2))
        await transaction.commit()
        (status, ran), again = await first, await retry
    assert status == 202
    assert again == (200, {**ran, "duplicate": True})
    assert await _delivery_rows(pool) == [("accepted", 2, True)]


async def test_a_filtered_redelivery_of_a_delivery_that_ran_is_its_duplicate(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """The delivery started a run; the trigger got a filter that refuses it: its
    redelivery is a duplicate of that run, not a new filtered row."""
    await apply(pool, spec(filter=None))
    client, ingress = await make_client()
    status, first = await post(client, {"action": "closed"}, id="d-1")
    assert status == 202
    await apply(pool, spec())
    await ingress.reload()
    status, again = await post(client, {"action": "closed"}, id="d-1")
    assert (status, again["execution_id"], again["duplicate"]) == (
        200, first["execution_id"], True)
    rows = await pool.fetch("SELECT id::text AS id, outcome, delivery_count"
                            " FROM webhook_requests")
    assert [tuple(r) for r in rows] == [(first["execution_id"], "accepted", 2)]
    assert ingress.stats.filtered == 0


async def test_a_filtered_requests_redelivery_to_a_keyed_trigger_runs_once_it_passes(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """The filter was removed and the trigger has a concurrency key (its own store path):
    the redelivery of the filtered request runs, as on the plain path."""
    await apply(pool, spec())
    client, ingress = await make_client()
    assert await post(client, {"action": "closed"}, id="d-1") == (200, {"filtered": True})
    keyed = spec(filter=None)
    trigger = keyed.triggers[0]
    assert isinstance(trigger.config, WebhookConfig)
    keyed = replace(keyed, triggers=(replace(trigger, config=replace(
        trigger.config, concurrency=ConcurrencyConfig(key="{{ input.action }}", limit=1))),))
    await apply(pool, keyed)
    await ingress.reload()
    await _runs_then_is_its_duplicate(client, pool, filtered_count=1)


async def test_retention_deletes_old_rows_without_a_run(pool: asyncpg.Pool) -> None:
    from triggerd.store.inbox import inbox_retention_batch

    await apply(pool, spec())
    trigger_id = await pool.fetchval("SELECT id FROM workflow_triggers")
    await pool.execute(
        "INSERT INTO webhook_requests (trigger_id, method, path, outcome, received_at)"
        " SELECT $1, 'POST', '/hooks/gh', 'filtered', now() - n * interval '1 day'"
        " FROM unnest(ARRAY[40, 35, 1]) AS n", trigger_id)
    assert await inbox_retention_batch(pool, timedelta(days=30), batch=1) == 1
    assert await inbox_retention_batch(pool, timedelta(days=30), batch=10) == 1
    assert await inbox_retention_batch(pool, timedelta(days=30), batch=10) == 0
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == 1


async def test_list_show_replay(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    await apply(pool, spec())
    client, _ = await make_client()
    accepted = await post(client, {"action": "opened", "n": 1})
    await post(client, {"action": "closed"})
    request_id = accepted[1]["execution_id"]

    response = await client.get("/api/v1/webhook-requests?outcome=filtered", headers=AUTH)
    assert response.status == 200
    page = await response.json()
    assert [r["outcome"] for r in page["items"]] == ["filtered"]
    response = await client.get("/api/v1/webhook-requests?trigger=gh/push&limit=1",
                                headers=AUTH)
    page = await response.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    response = await client.get(
        f"/api/v1/webhook-requests?trigger=gh/push&limit=1&cursor={page['next_cursor']}",
        headers=AUTH)
    rest = await response.json()
    assert [r["id"] for r in rest["items"]] == [request_id] and rest["next_cursor"] is None

    response = await client.get(f"/api/v1/webhook-requests/{request_id}", headers=AUTH)
    shown = await response.json()
    assert shown["body_text"] == '{"action": "opened", "n": 1}'
    assert shown["body_base64"] is None and shown["headers"]["x-kind"] == "pr"
    assert shown["trigger"] == "gh/push" and shown["execution_id"] == request_id

    replays = []
    for _ in range(2):
        response = await client.post(f"/api/v1/webhook-requests/{request_id}/replay",
                                     headers=AUTH)
        assert response.status == 202, await response.text()
        replays.append(await response.json())
    rows = await pool.fetch(
        "SELECT dedupe_key, replay_of::text AS replay_of, input FROM workflow_executions"
        " WHERE replay_of IS NOT NULL ORDER BY dedupe_key")
    assert [r["dedupe_key"] for r in rows] == [f"replay:{request_id}:1",
                                               f"replay:{request_id}:2"]
    assert {r["replay_of"] for r in rows} == {request_id}
    assert {x["execution_id"] for x in replays} == {
        str(x) for x in await pool.fetch(
            "SELECT id::text FROM workflow_executions WHERE replay_of IS NOT NULL")
        for x in [x["id"]]}
    assert await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'replay' AND target = $1",
        request_id) == 2


async def test_replays_go_on_after_retention_removed_older_ones(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    """Replays were numbered by their count + 1: once retention had removed replays 1 and
    2 while 3 was kept, the next one was numbered 2 (free) and every one after it 3, a
    kept key: "replayed at the same time; retry", for ever."""
    await apply(pool, spec())
    client, _ = await make_client()
    request_id = (await post(client, {"action": "opened"}))[1]["execution_id"]
    actor = Actor(name="ops", tenant=None, via="cli")
    made = [await replay(pool, actor, request_id) for _ in range(3)]
    await pool.execute("DELETE FROM workflow_executions WHERE id = ANY($1::uuid[])",
                       [r.execution_id for r in made[:2]])  # what retention does
    later = [await replay(pool, actor, request_id) for _ in range(2)]
    assert [r.dedupe_key for r in later] == [f"replay:{request_id}:4", f"replay:{request_id}:5"]


async def test_a_request_whose_trigger_is_gone_is_not_found_by_a_tenants_replay(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    # Its 409 "its trigger was deleted" told another tenant's admin the request existed,
    # where GET answered 404.
    await apply(pool, spec())
    client, _ = await make_client()
    status, accepted = await post(client, {"action": "opened"})
    assert status == 202
    request_id = accepted["execution_id"]
    await pool.execute("DELETE FROM workflow_triggers WHERE name = 'push'")
    acme = Actor(name="token:acme-admin", via="api", tenant="acme")
    for look in (lambda: show_request(pool, request_id, "acme"),
                 lambda: replay(pool, acme, request_id)):
        with pytest.raises(NotFound, match=f"no webhook request {request_id}"):
            await look()
    with pytest.raises(Conflict, match="its trigger was deleted"):
        await replay(pool, Actor(name="token:root", via="api"), request_id)


async def test_replay_uses_the_current_version(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    await apply(pool, spec(filter=None))
    client, _ = await make_client()
    _, answer = await post(client, {"n": "one"})
    request_id = answer["execution_id"]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    await apply(pool, spec(filter=None, schema=schema))
    response = await client.post(f"/api/v1/webhook-requests/{request_id}/replay",
                                 headers=AUTH)
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "input_invalid"
    await apply(pool, spec(filter="{{ input.n == 'two' }}"))
    response = await client.post(f"/api/v1/webhook-requests/{request_id}/replay",
                                 headers=AUTH)
    assert response.status == 409
    assert (await response.json())["message"] == (
        f"webhook request {request_id} does not match the trigger's current filter")
    await apply(pool, spec(filter=None, schema={"type": "object", "required": ["n"]}))
    response = await client.post(f"/api/v1/webhook-requests/{request_id}/replay",
                                 headers=AUTH)
    assert response.status == 202
    version = await pool.fetchval(
        "SELECT v.version FROM workflow_executions e JOIN workflow_versions v"
        " ON v.id = e.workflow_version_id WHERE e.replay_of IS NOT NULL")
    assert version == 4


async def test_bad_ids(
    make_client: Callable[[], Awaitable[tuple[Client, WebhookIngress]]], pool: asyncpg.Pool
) -> None:
    client, _ = await make_client()
    response = await client.get("/api/v1/webhook-requests/nope", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["message"] == (
        "'nope' is not a webhook request id (a UUID)")
    # The command line takes a prefix; the API's paths stay full ids (a contract).
    for method, url in [("GET", "/api/v1/webhook-requests/abcdef01"),
                        ("POST", "/api/v1/webhook-requests/abcdef01/replay")]:
        response = await client.request(method, url, headers=AUTH)
        assert response.status == 400
        assert (await response.json())["message"] == (
            "'abcdef01' is not a webhook request id (a UUID)")
    missing = "0190c2a4-0000-7000-8000-000000000000"
    for method, url in [("GET", f"/api/v1/webhook-requests/{missing}"),
                        ("POST", f"/api/v1/webhook-requests/{missing}/replay")]:
        response = await client.request(method, url, headers=AUTH)
        assert response.status == 404
        assert (await response.json())["message"] == (
            f"no webhook request {missing}")
    # Refused as the other lists refuse a bad parameter (400 invalid_parameter).
    response = await client.get("/api/v1/webhook-requests?outcome=lost", headers=AUTH)
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_parameter",
        "message": "outcome: 'lost' is not one of accepted, filtered, debounced"}
    response = await client.get("/api/v1/webhook-requests?cursor=nope", headers=AUTH)
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_parameter",
        "message": "cursor: not a cursor returned by this API (pass next_cursor back)"}
