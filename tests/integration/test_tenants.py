"""Tenants end to end over real loopback HTTP against a real PostgreSQL: definitions name
their tenant, the same keys and webhook paths live side by side, a tenant's webhooks are
served at /tenants/{tenant}/hooks/{path}, a scoped token sees nothing of another tenant
on any route (404, never 403), correlation ids are recorded and filterable, per-tenant
quotas refuse one tenant's flood only, claims are fair between tenants, and a database
from before tenants keeps its rows in the default one."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import apply_doc
from tests.integration.test_api_tokens import bearer, new_token
from triggerd.api.admin_routes import ADMIN_ROUTES
from triggerd.api.auth import StoredTokens
from triggerd.config import ApiSettings, Settings, TenantSettings
from triggerd.daemon import create_app
from triggerd.store.executions import claim_executions
from triggerd.store.keyed import claim_held
from triggerd.webhooks.ingress import WebhookIngress, setup_webhooks

Client = TestClient[Any, Any]


def billing(tenant: str | None, **hook: Any) -> dict[str, Any]:
    """The same workflow (key, trigger names, webhook path) for any tenant."""
    doc: dict[str, Any] = {"workflows": [{
        "key": "billing",
        "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [
            {"name": "run", "type": "manual"},
            {"name": "nightly", "type": "cron", "cron": "0 3 * * *"},
            {"name": "hook", "type": "webhook", "path": "pay", **hook},
        ],
    }]}
    if tenant is not None:
        doc["tenant"] = tenant
    return doc


CORRELATED = {"correlation": {
    "session_id": "{{ headers['X-Session-Id'] }}",
    "agent_id": "{{ input.agent }}",
    "conversation_id": "{{ query.conversation }}",
    "channel": "billing-bot",
}}


async def make_client(aiohttp_client: Any, pool: asyncpg.Pool, dsn: str,
                      settings: Settings) -> tuple[Client, WebhookIngress]:
    app = create_app(settings, pool, tokens=StoredTokens(pool))
    ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                             pending_interval=3600.0)
    client: Client = await aiohttp_client(app)
    await ingress.start()
    return client, ingress


@pytest.fixture
async def two_tenants(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, billing(None))
    await apply_doc(pool, billing("acme", **CORRELATED))


@pytest.fixture
async def served(aiohttp_client: Any, pool: asyncpg.Pool, dsn: str, two_tenants: None
                 ) -> Any:
    client, ingress = await make_client(aiohttp_client, pool, dsn,
                                        Settings(api=ApiSettings(token="configured-token")))
    yield client
    await ingress.stop()


async def test_the_same_key_and_path_live_in_two_tenants(pool: asyncpg.Pool,
                                                         two_tenants: None) -> None:
    rows = await pool.fetch(
        "SELECT w.tenant_id, w.key, t.tenant_id AS trigger_tenant, t.config->>'path' AS path"
        " FROM workflows w JOIN workflow_triggers t ON t.workflow_id = w.id"
        " WHERE t.type = 'webhook' ORDER BY w.tenant_id")
    assert [tuple(r) for r in rows] == [("acme", "billing", "acme", "pay"),
                                        ("default", "billing", "default", "pay")]


async def test_a_file_cannot_use_one_path_twice_in_one_tenant(pool: asyncpg.Pool) -> None:
    from triggerd.definitions.api import load_documents
    from triggerd.errors import DefinitionError

    other = {"tenant": "acme", "workflows": [{
        "key": "refunds", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "hook", "type": "webhook", "path": "pay"}]}]}
    with pytest.raises(DefinitionError) as caught:
        load_documents([("a.yaml", billing("acme")), ("b.yaml", other)])
    assert caught.value.problems[0].message == (
        "webhook path 'pay' is already used by the enabled trigger billing/hook"
        " (in a.yaml at $.workflows[0].triggers[2])")
    # Another tenant may: paths are unique per tenant.
    load_documents([("a.yaml", billing("acme")), ("b.yaml", {**other, "tenant": "globex"})])


async def test_each_tenant_is_served_at_its_own_url(served: Client, pool: asyncpg.Pool) -> None:
    default = await served.post("/hooks/pay", json={"n": 1})
    acme = await served.post("/tenants/acme/hooks/pay", json={"n": 2, "agent": "a-7"},
                             headers={"X-Session-Id": "s-42"},
                             params={"conversation": "c-9"})
    assert (default.status, acme.status) == (202, 202), await acme.text()
    runs = {r["tenant_id"]: r for r in await pool.fetch(
        "SELECT id::text, tenant_id, agent_id, session_id, conversation_id, correlation,"
        " input FROM workflow_executions")}
    assert runs["default"]["id"] == (await default.json())["execution_id"]
    assert runs["acme"]["id"] == (await acme.json())["execution_id"]
    assert runs["acme"]["input"] == {"n": 2, "agent": "a-7"}
    assert (runs["acme"]["agent_id"], runs["acme"]["session_id"],
            runs["acme"]["conversation_id"]) == ("a-7", "s-42", "c-9")
    assert runs["acme"]["correlation"] == {"agent_id": "a-7", "session_id": "s-42",
                                           "conversation_id": "c-9", "channel": "billing-bot"}
    assert runs["default"]["correlation"] is None
    # The inbox says whose each request is (both were "billing/hook" and nothing else).
    from triggerd.store.inbox import list_inbox
    from triggerd.webhooks.inbox_views import summary_json

    async with pool.acquire() as conn:
        listed = [summary_json(s) for s in await list_inbox(conn)]
    assert sorted((s["tenant"], s["trigger"]) for s in listed) == [
        ("acme", "billing/hook"), ("default", "billing/hook")]
    missing = await served.post("/tenants/globex/hooks/pay", json={})
    assert missing.status == 404
    assert (await missing.json())["message"] == "no webhook at /tenants/globex/hooks/pay"
    # Addresses no tenant or webhook can have are JSON 404s too (they were plain text).
    for path in ("/tenants/ACME/hooks/pay", "/tenants/-x/hooks/pay", "/tenants/acme/hooks",
                 "/hooks"):
        nowhere = await served.post(path, json={})
        assert (nowhere.status, await nowhere.json()) == (404, {
            "error": "not_found", "message": f"no webhook at {path}"}), path
    # The default tenant's address under /tenants/ is the same hook.
    assert (await served.post("/tenants/default/hooks/pay", json={})).status == 202


async def test_a_correlation_value_that_fails_leaves_that_key_out(served: Client,
                                                                  pool: asyncpg.Pool) -> None:
    response = await served.post("/tenants/acme/hooks/pay", json={"n": 1})
    assert response.status == 202
    row = await pool.fetchrow("SELECT agent_id, session_id, correlation"
                              " FROM workflow_executions")
    assert (row["agent_id"], row["session_id"]) == (None, None)
    assert row["correlation"] == {"channel": "billing-bot"}


async def test_keyed_webhooks_carry_their_correlation_ids(aiohttp_client: Any,
                                                           pool: asyncpg.Pool, dsn: str) -> None:
    """Triggers with a concurrency key or a debounce dropped their correlation ids: their
    requests are stored by another path than the group commit's."""
    await apply_doc(pool, billing("acme", **CORRELATED,
                                  concurrency={"key": "{{ input.agent }}", "limit": 5}))
    await apply_doc(pool, billing("beta", **CORRELATED,
                                  debounce={"key": "{{ input.agent }}", "period": "1h"}))
    client, ingress = await make_client(aiohttp_client, pool, dsn, Settings())
    try:
        for tenant in ("acme", "beta"):
            for session in ("s-1", "s-2"):  # the second folds into beta's window
                answer = await client.post(f"/tenants/{tenant}/hooks/pay",
                                           json={"agent": "bot-7"},
                                           headers={"X-Session-Id": session},
                                           params={"conversation": "c-9"})
                assert answer.status in (202, 200), await answer.text()
    finally:
        await ingress.stop()
    rows = await pool.fetch("SELECT tenant_id, agent_id, session_id, conversation_id,"
                            " correlation FROM workflow_executions ORDER BY tenant_id, id")
    expected = {"agent_id": "bot-7", "conversation_id": "c-9", "channel": "billing-bot"}
    assert [(r["tenant_id"], r["session_id"]) for r in rows] == [
        ("acme", "s-1"), ("acme", "s-2"), ("beta", "s-2")]  # beta's run: the latest request's
    for r in rows:
        assert (r["agent_id"], r["conversation_id"]) == ("bot-7", "c-9")
        assert r["correlation"] == {**expected, "session_id": r["session_id"]}


async def test_lists_filter_on_correlation_ids(served: Client, pool: asyncpg.Pool) -> None:
    for session in ("s-1", "s-2", "s-1"):
        await served.post("/tenants/acme/hooks/pay", json={}, headers={"X-Session-Id": session})
    token = await new_token(pool, "ops")
    listed = await served.get("/api/v1/executions", params={"session_id": "s-1"},
                              headers=bearer(token))
    items = (await listed.json())["items"]
    assert [i["session_id"] for i in items] == ["s-1", "s-1"]
    assert {i["tenant"] for i in items} == {"acme"}
    bad = await served.get("/api/v1/executions", params={"agent_id": "x" * 201},
                           headers=bearer(token))
    assert bad.status == 400
    assert (await bad.json())["message"] == "agent_id: must be 1-200 characters"


# --- isolation: every route, with a token of another tenant ---------------------------------


def _filled(path: str, names: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: names[m.group(1)], path)


async def test_a_scoped_token_finds_nothing_of_another_tenant_on_any_route(
    served: Client, pool: asyncpg.Pool
) -> None:
    """Every route of the admin API, called by acme's admin token with the default
    tenant's names and ids: objects are 404 (the same answer as for ones that do not
    exist), lists are empty, and nothing is written."""
    admin = await new_token(pool, "root")
    fired = await served.post("/api/v1/triggers/billing/run/fire", headers=bearer(admin))
    execution_id = (await fired.json())["execution_id"]
    hooked = await served.post("/hooks/pay", json={"x": 1})
    request_id = (await hooked.json())["execution_id"]  # a request shares its run's id
    backfill = await served.post("/api/v1/triggers/billing/nightly/backfills",
                                 json={"from": "2026-01-01T00:00:00Z",
                                       "to": "2026-01-03T00:00:00Z"},
                                 headers=bearer(admin))
    assert backfill.status == 202, await backfill.text()
    backfill_id = (await backfill.json())["backfill_id"]
    names = {"key": "billing", "workflow": "billing", "trigger": "run", "name": "run",
             "id": execution_id}
    ids = {"getBackfill": backfill_id, "cancelBackfill": backfill_id,
           "getWebhookRequest": request_id, "replayWebhookRequest": request_id}
    acme = await new_token(pool, "acme-root", tenant="acme")
    default_workflow = str(await pool.fetchval(
        "SELECT id FROM workflows WHERE tenant_id = 'default'"))
    counts = "SELECT (SELECT count(*) FROM workflow_executions), (SELECT count(*) FROM audit_log)"
    before = tuple(await pool.fetchrow(counts))
    lists = {"listWorkflows", "listTriggers", "listExecutions", "listWebhookRequests",
             "listAudit", "listBackfills"}
    # The acme tenant's own objects are not touched either: its token addresses "billing"
    # of acme, so pick routes' names that exist only in the default tenant.
    await pool.execute("UPDATE workflows SET key = 'acme-billing' WHERE tenant_id = 'acme'")
    checked = set()
    for route in ADMIN_ROUTES:
        # Both carry a document instead of naming stored objects: tested on their own.
        if route.public or route.operation_id in ("applyDefinitions", "createTestRun"):
            continue
        path = _filled(route.path, {**names, "id": ids.get(route.operation_id, execution_id)})
        body = {"resumeExecution": {"decision": "approved"}, "skipSlots": {"next": 1},
                "createBackfill": {"from": "2026-01-01T00:00:00Z",
                                   "to": "2026-01-02T00:00:00Z"}}.get(route.operation_id)
        response = await served.request(route.method, path, json=body, headers=bearer(acme))
        checked.add(route.operation_id)
        if route.operation_id in lists:
            # Its own tenant's rows only: none of the default tenant's.
            assert response.status == 200, (route.operation_id, await response.text())
            text = await response.text()
            for default_id in (default_workflow, execution_id, request_id, backfill_id):
                assert default_id not in text, (route.operation_id, text)
        else:
            assert response.status == 404, (route.operation_id, await response.text())
            message = (await response.json())["message"]
            # It may name the tenant it looked in (the token's own, acme:NAME, as the lists
            # print names), and nothing else of acme's.
            assert "acme" not in message.replace("'acme:", "'"), message
            assert "forbidden" not in message, message
    assert tuple(await pool.fetchrow(counts)) == before
    # Every operation of the API was tried (a new route must be added to this test).
    assert checked == {r.operation_id for r in ADMIN_ROUTES
                       if not r.public
                       and r.operation_id not in ("applyDefinitions", "createTestRun")}
    # A document of another tenant is refused; one naming none lands in acme.
    refused = await served.post("/api/v1/definitions", json=billing("default"),
                                headers=bearer(acme))
    assert refused.status == 404
    assert (await refused.json())["message"] == "nothing here belongs to tenant 'default'"
    # (acme's own "acme-billing" holds path pay in acme: a new workflow needs another.)
    applied = await served.post("/api/v1/definitions", json=billing(None, path="pay2"),
                                headers=bearer(acme))
    assert applied.status == 200, await applied.text()
    assert await pool.fetchval(
        "SELECT count(*) FROM workflows WHERE tenant_id = 'acme' AND key = 'billing'") == 1
    # A test run likewise: another tenant's document is refused, one naming none runs in
    # acme (under a scratch copy of acme's).
    refused = await served.post("/api/v1/test-runs", headers=bearer(acme),
                                json={"definition": billing("default"), "workflow": "billing"})
    assert refused.status == 404
    assert (await refused.json())["message"] == "nothing here belongs to tenant 'default'"
    ran = await served.post("/api/v1/test-runs", headers=bearer(acme),
                            json={"definition": billing(None), "workflow": "billing"})
    assert ran.status == 200, await ran.text()
    assert await pool.fetchval(
        "SELECT e.tenant_id || '/' || w.tenant_id FROM workflow_executions e"
        " JOIN workflows w ON w.id = e.workflow_id WHERE e.test") == "acme/acme"


async def test_an_all_tenant_token_works_in_the_tenant_it_names(served: Client,
                                                                pool: asyncpg.Pool) -> None:
    root = await new_token(pool, "root")
    fired = await served.post("/api/v1/triggers/billing/run/fire", params={"tenant": "acme"},
                              headers=bearer(root))
    assert fired.status == 202
    run = await pool.fetchrow("SELECT tenant_id FROM workflow_executions")
    assert run["tenant_id"] == "acme"
    every = await served.get("/api/v1/workflows", headers=bearer(root))
    assert sorted(w["tenant_id"] for w in (await every.json())["items"]) == ["acme", "default"]
    only = await served.get("/api/v1/workflows", params={"tenant": "acme"}, headers=bearer(root))
    assert [w["tenant_id"] for w in (await only.json())["items"]] == ["acme"]
    bad = await served.get("/api/v1/workflows", params={"tenant": "Not A Tenant"},
                           headers=bearer(root))
    assert bad.status == 400
    scoped = await new_token(pool, "acme-viewer", role="viewer", tenant="acme")
    other = await served.get("/api/v1/workflows", params={"tenant": "default"},
                             headers=bearer(scoped))
    assert other.status == 404
    # A name no tenant can have is a bad parameter for a scoped token too (it was a 404
    # carrying the 400's message).
    invalid = await served.get("/api/v1/workflows", params={"tenant": "ACME"},
                               headers=bearer(scoped))
    assert (invalid.status, (await invalid.json())["error"]) == (400, "invalid_parameter")
    audit = await served.get("/api/v1/audit", headers=bearer(scoped))
    rows = (await audit.json())["items"]
    assert [(r["action"], r["tenant"]) for r in rows] == [("fire", "acme")]


async def test_a_triggers_recent_actions_are_its_tenants_only(served: Client,
                                                              pool: asyncpg.Pool) -> None:
    """The same trigger name in two tenants: the detail of acme's listed the default
    tenant's pause (its actor and note) to acme's viewer."""
    root = await new_token(pool, "root")
    paused = await served.post("/api/v1/triggers/billing/nightly/pause", headers=bearer(root),
                               json={"note": "default tenant's maintenance"})
    assert paused.status == 200, await paused.text()
    viewer = await new_token(pool, "acme-viewer", role="viewer", tenant="acme")
    detail = await served.get("/api/v1/triggers/billing/nightly", headers=bearer(viewer))
    assert detail.status == 200
    assert (await detail.json())["recent_actions"] == []
    mine = await served.get("/api/v1/triggers/billing/nightly", headers=bearer(root))
    assert [(a["action"], a["tenant"]) for a in (await mine.json())["recent_actions"]] == [
        ("pause", "default")]
    # The audit list takes names as the lists print them: bare is the default tenant's.
    await served.post("/api/v1/triggers/billing/nightly/pause", params={"tenant": "acme"},
                      headers=bearer(root))
    for target, tenants in (("billing/nightly", ["default"]),
                            ("acme:billing/nightly", ["acme"])):
        listed = await served.get("/api/v1/audit", params={"target": target},
                                  headers=bearer(root))
        assert [r["tenant"] for r in (await listed.json())["items"]] == tenants, target
    # A scoped token naming another tenant's object finds nothing.
    listed = await served.get("/api/v1/audit", params={"target": "default:billing/nightly"},
                              headers=bearer(viewer))
    assert (await listed.json())["items"] == []


# --- quotas ----------------------------------------------------------------------------------


async def test_a_tenants_backlog_limit_refuses_its_webhooks_only(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str, two_tenants: None
) -> None:
    settings = Settings(tenants=(TenantSettings(name="acme", max_pending=2),))
    client, ingress = await make_client(aiohttp_client, pool, dsn, settings)
    try:
        answers = [(await client.post("/tenants/acme/hooks/pay", json={})).status
                   for _ in range(4)]
        assert answers == [202, 202, 202, 429]
        refused = await client.post("/tenants/acme/hooks/pay", json={})
        assert (await refused.json())["message"] == (
            "3 executions of tenant acme are waiting to run; retry later")
        assert (await client.post("/hooks/pay", json={})).status == 202
        await ingress.refresh_pending()  # the database's count agrees
        assert (await client.post("/tenants/acme/hooks/pay", json={})).status == 429
        await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS'")
        await ingress.refresh_pending()
        assert (await client.post("/tenants/acme/hooks/pay", json={})).status == 202
        counts = dict(await pool.fetch(
            "SELECT tenant_id, count(*) FROM workflow_executions GROUP BY 1"))
        assert counts == {"acme": 4, "default": 1}  # nothing refused was stored
    finally:
        await ingress.stop()


async def test_runs_a_keyed_webhook_creates_count_against_the_backlog_at_once(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str
) -> None:
    """Runs stored through the debounce and concurrency-key path count toward a tenant's
    backlog as soon as they are created, not only at the next recount."""
    await apply_doc(pool, billing("acme", concurrency={"key": "{{ input.k }}", "limit": 5}))
    settings = Settings(tenants=(TenantSettings(name="acme", max_pending=2),))
    client, ingress = await make_client(aiohttp_client, pool, dsn, settings)
    try:
        answers = [(await client.post("/tenants/acme/hooks/pay", json={"k": str(i)})).status
                   for i in range(4)]
        assert answers == [202, 202, 202, 429]
        assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 3
    finally:
        await ingress.stop()


async def test_a_tenants_webhook_rate_refuses_its_webhooks_only(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str, two_tenants: None
) -> None:
    settings = Settings(tenants=(TenantSettings(name="acme", webhook_rate=0.01,
                                                webhook_burst=2),))
    client, ingress = await make_client(aiohttp_client, pool, dsn, settings)
    try:
        answers = [(await client.post("/tenants/acme/hooks/pay", json={})).status
                   for _ in range(3)]
        assert answers == [202, 202, 429]
        refused = await client.post("/tenants/acme/hooks/pay", json={})
        assert (await refused.json())["message"] == (
            "tenant acme accepts 0.01 webhook requests per second; retry later")
        assert int(refused.headers["Retry-After"]) >= 1
        assert [(await client.post("/hooks/pay", json={})).status for _ in range(3)] == [
            202, 202, 202]
    finally:
        await ingress.stop()


# --- fair claiming ---------------------------------------------------------------------------


async def _backlog(pool: asyncpg.Pool, tenant: str, count: int, offset_s: int) -> None:
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, tenant_id, created_at)"
        " SELECT w.id, 'manual', w.tenant_id, now() - make_interval(secs => $2 - g)"
        " FROM workflows w, generate_series(1, $3) g WHERE w.tenant_id = $1",
        tenant, offset_s, count)


async def test_a_flooded_tenant_cannot_starve_another(pool: asyncpg.Pool,
                                                      two_tenants: None) -> None:
    # acme's 500 runs are all older than default's 3: oldest-first would take only acme's.
    await _backlog(pool, "acme", 500, 10_000)
    await _backlog(pool, "default", 3, 100)
    claimed = await claim_executions(pool, "test", timedelta(seconds=30), 10)
    by_tenant = [c.tenant_id for c in claimed]
    assert sorted(by_tenant) == ["acme"] * 7 + ["default"] * 3
    # Within a tenant, oldest first; nothing beyond the batch stays locked or claimed.
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING'") == 10


async def test_shares_weigh_the_turns(pool: asyncpg.Pool, two_tenants: None) -> None:
    await _backlog(pool, "acme", 100, 10_000)
    await _backlog(pool, "default", 100, 5_000)
    claimed = await claim_executions(pool, "test", timedelta(seconds=30), 8, {"acme": 3})
    assert sorted(c.tenant_id for c in claimed) == ["acme"] * 6 + ["default"] * 2


async def _keyed_backlog(pool: asyncpg.Pool, tenant: str, count: int, offset_s: int) -> None:
    """Runs held by a concurrency key (each its own key, limit 1: every one may start),
    as a keyed webhook of the tenant stores them."""
    await pool.execute(
        "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, tenant_id,"
        " created_at, concurrency_key, concurrency_limit)"
        " SELECT w.id, t.id, 'webhook', w.tenant_id, now() - make_interval(secs => $2 - g),"
        " g || '@' || $2, 1 FROM workflows w JOIN workflow_triggers t ON t.workflow_id = w.id"
        " AND t.name = 'hook', generate_series(1, $3) g WHERE w.tenant_id = $1",
        tenant, offset_s, count)


async def test_a_flood_of_keyed_runs_cannot_starve_another_tenants_held_runs(
    pool: asyncpg.Pool, two_tenants: None
) -> None:
    """Runs held by a key, a debounce or a buffer_one schedule are claimed by a claim of
    their own, which took the oldest of every tenant: acme's flood of keyed requests
    held back every held run of the default tenant (its buffered cron fires too) until
    the whole flood had started."""
    await _keyed_backlog(pool, "acme", 500, 10_000)
    await _keyed_backlog(pool, "default", 3, 100)
    async with pool.acquire() as conn:
        held = await claim_held(conn, "test", timedelta(seconds=30), 10)
    assert sorted(c.tenant_id for c in held.claimed) == ["acme"] * 7 + ["default"] * 3
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING'") == 10
    # The tenants' shares weigh these turns as they weigh the plain runs'.
    async with pool.acquire() as conn:
        held = await claim_held(conn, "test", timedelta(seconds=30), 8, {"acme": 3})
    assert sorted(c.tenant_id for c in held.claimed) == ["acme"] * 8
    await _keyed_backlog(pool, "default", 100, 5_000)
    async with pool.acquire() as conn:
        held = await claim_held(conn, "test", timedelta(seconds=30), 8, {"acme": 3})
    assert sorted(c.tenant_id for c in held.claimed) == ["acme"] * 6 + ["default"] * 2


# --- the upgrade -----------------------------------------------------------------------------


async def test_an_upgrade_keeps_existing_rows_in_the_default_tenant(empty_dsn: str) -> None:
    from triggerd import db

    await db.migrate(empty_dsn, [m for m in db.known_migrations() if m.version < 26])
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute("INSERT INTO workflows (key, name) VALUES ('w', 'w')")
        await conn.execute(
            "INSERT INTO workflow_triggers (workflow_id, name, type, config)"
            " SELECT id, 'h', 'webhook', '{\"path\": \"pay\"}' FROM workflows")
        await conn.execute(
            "INSERT INTO workflow_executions (workflow_id, trigger_type, status)"
            " SELECT id, 'webhook', 'NEW' FROM workflows")
        await conn.execute(
            "INSERT INTO audit_log (actor, action, target_kind, target)"
            " VALUES ('cli:x', 'pause', 'trigger', 'w/h')")
        await db.migrate(empty_dsn)
        assert await conn.fetchval("SELECT tenant_id FROM workflow_triggers") == "default"
        assert await conn.fetchval("SELECT tenant_id FROM workflow_executions") == "default"
        assert await conn.fetchval("SELECT tenant_id FROM audit_log") == "default"
        # The path is unique per tenant now: another tenant may take it, the same may not.
        await conn.execute("INSERT INTO workflows (tenant_id, key, name) VALUES ('acme', 'w', 'w')")
        await conn.execute(
            "INSERT INTO workflow_triggers (workflow_id, tenant_id, name, type, config)"
            " SELECT id, 'acme', 'h', 'webhook', '{\"path\": \"pay\"}' FROM workflows"
            " WHERE tenant_id = 'acme'")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO workflow_triggers (workflow_id, name, type, config)"
                " SELECT id, 'h2', 'webhook', '{\"path\": \"pay\"}' FROM workflows"
                " WHERE tenant_id = 'default'")
        # The run is claimable through the new queue index.
        claimed = await claim_executions(conn, "x", timedelta(seconds=30), 5)
        assert [c.tenant_id for c in claimed] == ["default"]
    finally:
        await conn.close()


def test_tenant_settings_refuse_bad_values(tmp_path: Any) -> None:
    from triggerd.config import load_settings
    from triggerd.errors import ConfigError

    cases = [
        ('[tenants.acme]\nmax_pending = -1\n',
         "tenants.acme.max_pending: expected an integer 0-1000000000, got -1"),
        ('[tenants.acme]\nexecutor_share = 0\n',
         "tenants.acme.executor_share: expected an integer 1-1000, got 0"),
        ('[tenants.acme]\nwebhook_rate = "fast"\n',
         "tenants.acme.webhook_rate: expected a number of requests per second (0-1000000),"
         " got 'fast'"),
        ('[tenants.acme]\nretention = "soon"\n', "tenants.acme.retention"),
        # As [executor] retention: a second deleted the tenant's runs as they ended.
        ('[tenants.acme]\nretention = "1s"\n', "tenants.acme.retention: must be at least 1h"),
        ('[tenants.acme]\nquota = 1\n', "unknown key tenants.acme.quota (known in"
         " [tenants.acme]: executor_share, max_pending, retention, secrets, webhook_burst,"
         " webhook_rate)"),
        ('[tenants.acme]\nsecrets = "env:A"\n', "tenants.acme.secrets: expected a list of"
         " patterns such as 'env:ACME_*', got 'env:A'"),
        ('[tenants.acme]\nsecrets = ["ACME_KEY"]\n', "tenants.acme.secrets: 'ACME_KEY' must"
         " start with env:, file: or credential: and name something after it"),
        ('[tenants.acme]\nsecrets = ["env:"]\n', "tenants.acme.secrets: 'env:' must start"),
        ('[tenants.acme]\nsecrets = ["file:acme/*"]\n', "tenants.acme.secrets: 'file:acme/*'"
         " must name an absolute path"),
        ('[tenants.Acme]\nmax_pending = 1\n', "[tenants.Acme]: the tenant name must be"),
        ('tenants = 1\n', "tenants: expected tables [tenants.NAME]"),
    ]
    for text, message in cases:
        path = tmp_path / "t.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_settings(path, environ={})
        assert message in str(caught.value), (text, str(caught.value))
    path = tmp_path / "ok.toml"
    path.write_text('[tenants.acme]\nmax_pending = 5\nretention = "90d"\n'
                    'secrets = ["env:ACME_*", "credential:acme-*"]\n')
    settings = load_settings(path, environ={})
    assert settings.tenant("acme").secrets == ("env:ACME_*", "credential:acme-*")
    assert settings.tenant("other").secrets is None
    assert settings.tenant("acme").max_pending == 5
    assert settings.tenant("acme").retention == timedelta(days=90)
    assert settings.tenant("other") == TenantSettings(name="other")
    assert json.dumps(settings.tenant("acme").executor_share) == "1"


# --- what nodes and metrics see --------------------------------------------------------------


async def test_nodes_read_the_runs_tenant_and_correlation(pool: asyncpg.Pool, dsn: str) -> None:
    from tests.helpers import final_status
    from triggerd.config import load_settings
    from triggerd.executor.service import Executor
    from triggerd.expressions import EXECUTION_KEYS
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.triggers import FireRequest, fire

    await apply_doc(pool, {"tenant": "acme", "workflows": [{
        "key": "echo",
        "graph": {"nodes": [{"id": "a", "type": "set", "params": {"value": {
            "tenant": "{{ execution.tenant }}",
            "session": "{{ execution.correlation.session_id }}",
            "channel": "{{ execution.correlation.channel }}",
            "keys": "{{ execution | list | sort }}"}}}]},
        "triggers": [{"name": "run", "type": "manual",
                      "correlation": {"channel": "ops", "agent_id": "{{ input.who }}"}}],
    }]})
    fired = await fire(pool, cli_actor("acme"), FireRequest(
        trigger="echo/run", input={"who": "a-1", "session_id": "s-9"}))
    executor = Executor(pool=pool, dsn=dsn, settings=load_settings(environ={}))
    await executor.start()
    try:
        row = await final_status(pool, fired.execution_id)
    finally:
        await executor.stop()
    # What check knows of execution is what a run has (a workflow without an approval
    # node has no resume_url).
    assert row["output"] == {"tenant": "acme", "session": "s-9", "channel": "ops",
                             "keys": sorted(EXECUTION_KEYS)}
    stored = await pool.fetchrow(
        "SELECT agent_id, session_id, correlation FROM workflow_executions WHERE id = $1",
        fired.execution_id)
    # The mapping's agent_id, and the input's own session_id (the mapping names none).
    assert (stored["agent_id"], stored["session_id"]) == ("a-1", "s-9")
    assert stored["correlation"] == {"channel": "ops", "agent_id": "a-1", "session_id": "s-9"}


async def test_a_cookie_one_tenants_run_was_given_is_never_sent_by_another_tenants_run(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """The executor's http nodes share one client: its cookie jar kept the session cookie
    an answer gave the default tenant's run and sent it with acme's next request to that
    site, so acme's workflow acted there as the default tenant's login."""
    from aiohttp import web

    from tests.helpers import final_status, free_port
    from triggerd.config import load_settings
    from triggerd.executor.service import Executor
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.triggers import FireRequest, fire

    seen: list[str | None] = []

    async def login(request: web.Request) -> web.Response:
        response = web.json_response({"logged_in": True})
        response.set_cookie("session", "default-tenant-session", path="/")
        return response

    async def me(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.json_response({"cookie": request.headers.get("Cookie")})

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/me", me)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    # A host name, not an address: a cookie jar keeps no cookie of an IP address.
    await web.TCPSite(runner, "127.0.0.1", port).start()
    site = f"http://localhost:{port}"

    def calling(tenant: str, path: str) -> dict[str, Any]:
        url = site + path
        return {"tenant": tenant, "workflows": [{
            "key": "call",
            "graph": {"nodes": [{"id": "get", "type": "http",
                                 "params": {"method": "GET", "url": url}}]},
            "triggers": [{"name": "run", "type": "manual"}]}]}

    await apply_doc(pool, calling("default", "/login"))
    await apply_doc(pool, calling("acme", "/me"))
    executor = Executor(pool=pool, dsn=dsn, settings=load_settings(environ={}))
    await executor.start()
    try:
        logged_in = await fire(pool, cli_actor("default"), FireRequest(trigger="call/run"))
        row = await final_status(pool, logged_in.execution_id)
        assert row["status"] == "SUCCESS", row
        peeked = await fire(pool, cli_actor("acme"), FireRequest(trigger="call/run"))
        row = await final_status(pool, peeked.execution_id)
    finally:
        await executor.stop()
        await runner.cleanup()
    assert row["status"] == "SUCCESS", row
    assert seen == [None]
    assert row["output"]["body"] == {"cookie": None}


async def test_metrics_count_runs_by_tenant(pool: asyncpg.Pool, two_tenants: None) -> None:
    from triggerd.api.metrics import Metrics

    await _backlog(pool, "acme", 3, 100)
    await _backlog(pool, "default", 1, 100)
    metrics = Metrics(label_limit=1)  # one tenant has a series; the other is _overflow
    async with pool.acquire() as conn:
        await metrics.refresh(conn)
    text = metrics.render()[0].decode()
    assert 'triggerd_tenant_queue_depth{status="NEW",tenant="acme"} 3.0' in text
    assert 'triggerd_tenant_queue_depth{status="NEW",tenant="_overflow"} 1.0' in text
    assert 'triggerd_queue_depth{status="NEW"} 4.0' in text
    metrics.execution_finished("acme:billing", "SUCCESS", 0.1, "acme")
    assert ('triggerd_tenant_executions_total{status="SUCCESS",tenant="acme"} 1.0'
            in metrics.render()[0].decode())


async def test_each_tenants_audit_of_an_apply_names_only_its_own_files(
    pool: asyncpg.Pool, tmp_path: Any
) -> None:
    # One apply of several tenants' files (the daemon's [daemon] definitions) wrote one
    # audit row per tenant, each listing every file: acme's audit showed globex's names.
    from triggerd.operations.apply import apply_files

    def write(name: str, tenant: str | None, key: str) -> str:
        doc: dict[str, Any] = {"workflows": [{
            "key": key, "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}
        if tenant is not None:
            doc["tenant"] = tenant
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return str(path)

    files = [write("acme-billing.json", "acme", "bill"),
             write("globex-secret-merger.json", "globex", "merge"),
             write("shared.json", None, "ops")]
    async with pool.acquire() as conn:
        await apply_files(conn, files)
    rows = await pool.fetch("SELECT tenant_id, target, detail FROM audit_log"
                            " WHERE action = 'apply' ORDER BY tenant_id")
    seen = {r["tenant_id"]: (r["target"], r["detail"]["files"]) for r in rows}
    assert seen == {
        "acme": ("acme-billing.json", [files[0]]),
        "default": ("shared.json", [files[2]]),
        "globex": ("globex-secret-merger.json", [files[1]]),
    }


@pytest.mark.parametrize("path", [
    "/hooks//pay", "/tenants/acme/hooks//pay", "/tenants/default/hooks//pay",
    "/hooks///pay", "/hooks/pay//", "/tenants/acme/hooks/pay//",
])
async def test_an_empty_path_segment_names_no_webhook(served: Client, pool: asyncpg.Pool,
                                                      path: str) -> None:
    """No webhook path has an empty segment (a leading '/' or '//' are refused in a
    definition), so an address with one names none: it reached pay (its slashes were
    stripped), whatever the sender meant."""
    answer = await served.post(path, json={})
    assert (answer.status, await answer.json()) == (404, {
        "error": "not_found", "message": f"no webhook at {path}"})
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    # One slash at the end is still the same path (README: webhook paths).
    one_slash = re.sub("/+", "/", path).rstrip("/") + "/"
    assert (await served.post(one_slash, json={})).status == 202, one_slash
