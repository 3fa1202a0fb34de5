"""The admin API over real loopback HTTP against a real PostgreSQL: every route, the bearer
token, pagination, and bad input of every kind answered with a JSON 4xx (never a 500)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from tests.helpers import apply_doc, fire, free_port
from triggerd.api import admin
from triggerd.api.admin import add_admin_routes
from triggerd.api.auth import API_AUTH
from triggerd.config import ApiSettings, HttpSettings, Settings
from triggerd.daemon import create_app
from triggerd.serving.sockets import body_limit
from triggerd.storable import storage_problem
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import get_trigger
from triggerd.webhooks.decoding import request_bytes

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]

TOKEN = "admin-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = {
    "type": "object",
    "properties": {"day": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["day"],
}
DOC: dict[str, Any] = {
    "workflows": [
        {
            "key": "report",
            "name": "Report",
            "parameter_schema": SCHEMA,
            "graph": {"nodes": [{"id": "start", "type": "noop"}]},
            "triggers": [
                {"name": "nightly", "type": "cron", "cron": "0 2 * * *",
                 "timezone": "Europe/Madrid", "input": {"day": "today"}},
                {"name": "manual", "type": "manual"},
                {"name": "push", "type": "webhook", "path": "report/push"},
            ],
        }
    ]
}


@pytest.fixture
def make_client(aiohttp_client: Any, pool: asyncpg.Pool) -> ClientFactory:
    async def make(
        settings: Settings | None = None,
        *,
        environ: dict[str, str] | None = None,
        app_pool: asyncpg.Pool | None = None,
    ) -> Client:
        settings = settings or Settings(api=ApiSettings(token=TOKEN))
        app = create_app(settings, app_pool or pool)
        add_admin_routes(app, environ=environ or {})
        client: Client = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: ClientFactory, pool: asyncpg.Pool) -> Client:
    await apply_doc(pool, DOC)
    return await make_client()


class NoDatabase:
    """Stands in for the pool where a request must be answered before any query: touching
    it fails the request (a 500), so the test sees it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used (pool.{name})")


@pytest.fixture
def make_offline(aiohttp_client: Any) -> ClientFactory:
    async def make(settings: Settings | None = None, *,
                   environ: dict[str, str] | None = None, app_pool: Any = None) -> Client:
        settings = settings or Settings(api=ApiSettings(token=TOKEN))
        app = create_app(settings, app_pool if app_pool is not None else NoDatabase())
        add_admin_routes(app, environ=environ or {})
        client: Client = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def offline(make_offline: ClientFactory) -> Client:
    """A client whose app has no database: for everything refused before a query."""
    return await make_offline()


async def expect_error(
    response: Any, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert body["error"] == code, body
    if message is not None:
        assert body["message"] == message
    return body


# --- the bearer token -----------------------------------------------------------------------


async def test_missing_token_is_401_with_challenge(offline: Client) -> None:
    response = await offline.get("/api/v1/workflows")
    await expect_error(response, 401, "unauthorized",
                       "missing Authorization header (expected 'Bearer <token>')")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="triggerd"'


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer wrong", "invalid bearer token"),
        (f"Bearer {TOKEN}x", "invalid bearer token"),
        ("Bearer ünïcode", "invalid bearer token"),
        (f"Basic {TOKEN}", "the Authorization header must be 'Bearer <token>'"),
        ("Bearer", "the Authorization header must be 'Bearer <token>'"),
    ],
)
async def test_wrong_token_is_401(offline: Client, header: str, message: str) -> None:
    response = await offline.get("/api/v1/workflows", headers={"Authorization": header})
    await expect_error(response, 401, "unauthorized", message)


# A request that passes the token check and is then refused for its parameters (400)
# proves the token was accepted, without a database.
AUTHORIZED_PROBE = "/api/v1/executions?limit=0"


async def test_scheme_is_case_insensitive(offline: Client) -> None:
    response = await offline.get(AUTHORIZED_PROBE, headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 400


async def test_every_route_needs_the_token_even_unknown_ones(offline: Client) -> None:
    for method, path in [
        ("GET", "/api/v1/executions"),
        ("POST", "/api/v1/definitions"),
        ("POST", "/api/v1/triggers/report/manual/fire"),
        ("GET", "/api/v1/no-such-route"),
        ("DELETE", "/api/v1/workflows"),
    ]:
        response = await offline.request(method, path)
        await expect_error(response, 401, "unauthorized")


async def test_no_token_configured_refuses_everything(make_offline: ClientFactory) -> None:
    client = await make_offline(Settings())
    response = await client.get("/api/v1/workflows", headers={"Authorization": "Bearer "})
    await expect_error(
        response, 401, "unauthorized",
        "the admin API has no token configured: set [api] token (TRIGGERD_API_TOKEN) or the"
        " systemd credential 'api-token'",
    )


async def test_token_from_systemd_credential(
    make_offline: ClientFactory, tmp_path: Path
) -> None:
    (tmp_path / "api-token").write_text("from-credential\n")
    client = await make_offline(Settings(), environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    ok = await client.get(AUTHORIZED_PROBE, headers={"Authorization": "Bearer from-credential"})
    assert ok.status == 400
    assert client.app is not None and client.app[API_AUTH].source == "credential"
    bad = await client.get(AUTHORIZED_PROBE, headers=AUTH)
    await expect_error(bad, 401, "unauthorized", "invalid bearer token")


async def test_configured_token_wins_over_credential_and_reload_swaps_it(
    make_offline: ClientFactory, tmp_path: Path
) -> None:
    (tmp_path / "api-token").write_text("from-credential")
    client = await make_offline(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (await client.get(AUTHORIZED_PROBE, headers=AUTH)).status == 400
    assert client.app is not None
    assert client.app[API_AUTH].source == "config"
    client.app[API_AUTH].update(Settings(api=ApiSettings(token="rotated")), environ={})
    assert (await client.get(AUTHORIZED_PROBE, headers=AUTH)).status == 401
    rotated = await client.get(AUTHORIZED_PROBE, headers={"Authorization": "Bearer rotated"})
    assert rotated.status == 400


async def test_openapi_document_needs_no_token(offline: Client) -> None:
    response = await offline.get("/api/v1/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/executions/{id}/cancel" in doc["paths"]
    # HEAD is GET without the body: public too, the same status and headers.
    head = await offline.head("/api/v1/openapi.json")
    assert (head.status, await head.read()) == (200, b"")
    assert (head.content_type, head.headers["Content-Length"]) == (
        "application/json", response.headers["Content-Length"])
    # Only GET (and HEAD) of the document is public: any other method on its path needs
    # the token, and so does HEAD of any other route.
    for method in ("POST", "DELETE"):
        response = await offline.request(method, "/api/v1/openapi.json")
        await expect_error(response, 401, "unauthorized",
                           "missing Authorization header (expected 'Bearer <token>')")
    assert (await offline.head("/api/v1/workflows")).status == 401


# --- workflows ------------------------------------------------------------------------------


async def test_workflows_list_get_and_versions(client: Client, pool: asyncpg.Pool) -> None:
    listed = await (await client.get("/api/v1/workflows", headers=AUTH)).json()
    assert [w["key"] for w in listed["items"]] == ["report"]
    assert listed["items"][0]["latest_version"] == 1
    assert listed["items"][0]["status"] == "active"

    detail = await (await client.get("/api/v1/workflows/report", headers=AUTH)).json()
    assert detail["name"] == "Report"
    assert [t["name"] for t in detail["triggers"]] == [
        "report/manual", "report/nightly", "report/push"
    ]

    changed = json.loads(json.dumps(DOC))
    changed["workflows"][0]["graph"]["nodes"][0]["type"] = "log"
    changed["workflows"][0]["graph"]["nodes"][0]["params"] = {"message": "hi"}
    await apply_doc(pool, changed)
    versions = await (await client.get("/api/v1/workflows/report/versions", headers=AUTH)).json()
    assert [(v["version"], v["is_latest"]) for v in versions["items"]] == [(1, False), (2, True)]
    assert versions["items"][1]["graph"]["nodes"][0]["type"] == "log"
    assert versions["items"][0]["parameter_schema"] == SCHEMA
    for path in ["/api/v1/workflows/nope", "/api/v1/workflows/nope/versions"]:
        await expect_error(await client.get(path, headers=AUTH), 404, "not_found",
                           "no workflow with key 'nope'")


async def test_workflow_versions_come_in_pages(client: Client, pool: asyncpg.Pool) -> None:
    """Oldest first as before (the answer's items are the same), one page at a time:
    ?limit= and ?cursor= as the other lists, next_cursor null on the last page."""
    for message in ("one", "two", "three", "four"):  # versions 2-5
        changed = json.loads(json.dumps(DOC))
        changed["workflows"][0]["graph"]["nodes"][0]["type"] = "log"
        changed["workflows"][0]["graph"]["nodes"][0]["params"] = {"message": message}
        await apply_doc(pool, changed)
    url = "/api/v1/workflows/report/versions"
    whole = await (await client.get(url, headers=AUTH)).json()
    assert [v["version"] for v in whole["items"]] == [1, 2, 3, 4, 5]
    assert whole["next_cursor"] is None
    seen: list[list[int]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({} if cursor is None else {"cursor": cursor})}
        page = await (await client.get(url, headers=AUTH, params=params)).json()
        seen.append([v["version"] for v in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [[1, 2], [3, 4], [5]]
    assert (await (await client.get(url, headers=AUTH, params={"limit": "5"})).json()
            )["next_cursor"] is None
    for after_all in ("5", "2147483648", "9999999999"):  # the pattern's; none is a version
        last = await client.get(url, headers=AUTH, params={"cursor": after_all})
        assert (last.status, await last.json()) == (200, {"items": [], "next_cursor": None})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: 0 is out of range 1-500"),
        ("limit=501", "limit: 501 is out of range 1-500"),
        ("limit=abc", "limit: 'abc' is not an integer (1-500)"),
        ("cursor=abc", "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=-1", "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=12345678901",
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=", "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=1&cursor=2", "cursor: given 2 times; give it once"),
    ],
)
async def test_workflow_versions_refuse_a_bad_page(client: Client, query: str,
                                                   message: str) -> None:
    answer = await client.get(f"/api/v1/workflows/report/versions?{query}", headers=AUTH)
    await expect_error(answer, 400, "invalid_parameter", message)


async def test_a_query_parameter_an_operation_does_not_take_is_400(client: Client) -> None:
    # A misspelt filter answered the whole unfiltered list with 200.
    answer = await client.get("/api/v1/executions?statsu=ERROR", headers=AUTH)
    await expect_error(answer, 400, "invalid_parameter",
                       "unknown query parameter 'statsu' (this operation takes: agent_id,"
                       " conversation_id, cursor, limit, session_id, since, status, tenant,"
                       " trigger, until, workflow)")
    answer = await client.get("/api/v1/triggers/report/nightly/next?cnt=3", headers=AUTH)
    assert answer.status == 400
    # The ones it takes still work, and so does ?tenant= everywhere.
    answer = await client.get("/api/v1/executions?status=ERROR&limit=5&tenant=default",
                              headers=AUTH)
    assert answer.status == 200
    assert (await client.get("/api/v1/workflows?tenant=default", headers=AUTH)).status == 200
    # ?tenant= twice: the first one won silently; now refused as any repeated parameter.
    answer = await client.get("/api/v1/workflows?tenant=default&tenant=acme", headers=AUTH)
    await expect_error(answer, 400, "invalid_parameter", "tenant: given 2 times; give it once")


async def test_workflow_key_that_cannot_exist_is_404_without_a_query(offline: Client) -> None:
    response = await offline.get("/api/v1/workflows/Not%20A%20Key%00", headers=AUTH)
    await expect_error(response, 404, "not_found", "no workflow 'Not A Key\\x00'")


# --- triggers -------------------------------------------------------------------------------


async def test_triggers_list_filter_and_get(client: Client) -> None:
    everything = await (await client.get("/api/v1/triggers", headers=AUTH)).json()
    assert [(t["name"], t["type"]) for t in everything["items"]] == [
        ("report/manual", "manual"), ("report/nightly", "cron"), ("report/push", "webhook")
    ]
    crons = await (await client.get("/api/v1/triggers?type=cron", headers=AUTH)).json()
    assert [t["name"] for t in crons["items"]] == ["report/nightly"]
    assert crons["items"][0]["config"]["timezone"] == "Europe/Madrid"
    mine = await (await client.get("/api/v1/triggers?workflow=report", headers=AUTH)).json()
    assert len(mine["items"]) == 3
    await expect_error(await client.get("/api/v1/triggers?workflow=other", headers=AUTH),
                       404, "not_found", "no workflow with key 'other'")
    await expect_error(await client.get("/api/v1/triggers?type=timer", headers=AUTH),
                       400, "invalid_parameter",
                       "type: 'timer' is not one of cron, interval, webhook, manual")
    trigger = await (await client.get("/api/v1/triggers/report/nightly", headers=AUTH)).json()
    assert trigger["workflow"] == "report"
    assert trigger["trigger"] == "nightly"
    assert trigger["enabled"] is True
    assert trigger["input"] == {"day": "today"}
    await expect_error(await client.get("/api/v1/triggers/report/nope", headers=AUTH),
                       404, "not_found", "no trigger named 'report/nope'")


async def test_a_triggers_list_says_which_fire(client: Client, pool: asyncpg.Pool) -> None:
    """The text list's STATE column, in the list's JSON: a script could not find the
    paused (or completed) triggers among thousands without one request per trigger."""
    await client.post("/api/v1/triggers/report/nightly/pause", headers=AUTH)
    await client.post("/api/v1/triggers/report/push/disable", headers=AUTH)
    listed = await (await client.get("/api/v1/triggers", headers=AUTH)).json()
    assert {t["name"]: t["status"] for t in listed["items"]} == {
        "report/manual": "enabled", "report/nightly": "paused", "report/push": "disabled"}
    await client.post("/api/v1/workflows/report/archive", headers=AUTH)
    listed = await (await client.get("/api/v1/triggers", headers=AUTH)).json()
    assert {t["status"] for t in listed["items"]} == {"archived"}


async def test_enable_and_disable(client: Client, pool: asyncpg.Pool) -> None:
    first = await client.post("/api/v1/triggers/report/nightly/disable", headers=AUTH)
    assert first.status == 200
    body = await first.json()
    assert (body["changed"], body["trigger"]["enabled"]) == (True, False)
    again = await (await client.post("/api/v1/triggers/report/nightly/disable",
                                     headers=AUTH)).json()
    assert again["changed"] is False
    assert (await get_trigger(pool, "report/nightly")).enabled is False
    enabled = await (await client.post("/api/v1/triggers/report/nightly/enable",
                                       headers=AUTH)).json()
    assert (enabled["changed"], enabled["trigger"]["enabled"]) == (True, True)
    await client.post("/api/v1/triggers/report/push/disable", headers=AUTH)
    other = json.loads(json.dumps(DOC))
    other["workflows"][0]["key"] = "other"
    other["workflows"][0]["triggers"] = [{"name": "push", "type": "webhook",
                                          "path": "report/push"}]
    await apply_doc(pool, other)
    response = await client.post("/api/v1/triggers/report/push/enable", headers=AUTH)
    # The holder is a row no file being applied defines: named, so it can be found.
    await expect_error(response, 409, "conflict",
                       "cannot enable report/push: its webhook path 'report/push' is used by"
                       " the enabled trigger other/push (disable it, or give report/push"
                       " another path)")
    assert (await get_trigger(pool, "report/push")).enabled is False


async def test_fire(client: Client, pool: asyncpg.Pool) -> None:
    response = await client.post("/api/v1/triggers/report/manual/fire", headers=AUTH,
                                 json={"input": {"count": "three"}})
    body = await expect_error(
        response, 422, "input_invalid",
        "the input does not match the workflow's parameter_schema (2 problems)",
    )
    assert body["errors"] == [
        {"path": "$", "message": "'day' is a required property"},
        {"path": "$.count", "message": "'three' is not of type 'integer'"},
    ]
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0

    response = await client.post("/api/v1/triggers/report/nightly/fire", headers=AUTH,
                                 json={"input": {"count": 3}})
    assert response.status == 202
    body = await response.json()
    execution_id = body["execution_id"]
    assert body["status_url"] == f"/api/v1/executions/{execution_id}"
    assert response.headers["Location"] == body["status_url"]
    row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", execution_id)
    assert row is not None
    assert (row["status"], row["trigger_type"], row["trigger_name"]) == ("NEW", "manual",
                                                                         "nightly")
    assert row["input"] == {"day": "today", "count": 3}
    assert row["context"]["trigger"] == {"type": "manual", "name": "report/nightly",
                                         "fired_by": "api",
                                         "actor": "token:[api] token (config)"}
    assert row["workflow_version_id"] is not None
    audit = await pool.fetchrow("SELECT actor, action, target, note, detail FROM audit_log")
    assert (audit["actor"], audit["action"], audit["target"], audit["note"]) == (
        "token:[api] token (config)", "fire", "report/nightly", None)
    assert audit["detail"]["execution_id"] == execution_id

    response = await client.post("/api/v1/triggers/report/nightly/fire", headers=AUTH,
                                 json={"input": {"count": 4}, "reason": "rerun after fix"})
    assert response.status == 202
    row = await pool.fetchrow("SELECT context FROM workflow_executions WHERE id = $1",
                              (await response.json())["execution_id"])
    assert row["context"]["trigger"]["reason"] == "rerun after fix"
    assert await pool.fetchval(
        "SELECT note FROM audit_log ORDER BY id DESC LIMIT 1") == "rerun after fix"
    response = await client.post("/api/v1/triggers/report/nightly/fire", headers=AUTH,
                                 json={"reason": 7})
    assert response.status == 422
    assert (await response.json())["message"] == "reason must be a string"
    before = await pool.fetchval("SELECT count(*) FROM workflow_executions")
    response = await client.post("/api/v1/triggers/report/nightly/fire", headers=AUTH,
                                 json={"reason": "x" * 501})
    await expect_error(response, 400, "bad_request", "the reason is longer than 500 characters")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == before

    response = await client.post("/api/v1/triggers/report/nightly/fire", headers=AUTH)
    assert response.status == 202
    execution_id = (await response.json())["execution_id"]
    stored = await pool.fetchval("SELECT input FROM workflow_executions WHERE id = $1",
                                 execution_id)
    assert stored == {"day": "today"}

    await client.post("/api/v1/triggers/report/manual/disable", headers=AUTH)
    response = await client.post("/api/v1/triggers/report/manual/fire", headers=AUTH,
                                 json={"input": {"day": "x"}})
    await expect_error(response, 409, "conflict",
                       "trigger report/manual is disabled; enable it first")


@pytest.mark.parametrize(
    ("data", "status", "code", "message"),
    [
        ('{"input": ', 400, "invalid_json",
         "malformed JSON at line 1, column 11: Expecting value"),
        ('{"input": {}, "input": {}}', 400, "invalid_json",
         "malformed JSON: duplicate key 'input'"),
        ('{"input": {"x": NaN}}', 400, "invalid_json", "malformed JSON: NaN is not a JSON value"),
        ('{"input": {"x": 1e999}}', 400, "invalid_json",
         "malformed JSON: the number 1e999 is too large"),
        ("[1, 2]", 422, "invalid_body", 'the body must be an object {"input": {...}}'),
        ('"text"', 422, "invalid_body", 'the body must be an object {"input": {...}}'),
        ('{"input": "day=1"}', 422, "invalid_body", "input must be an object"),
        ('{"input": {}, "extra": 1}', 422, "invalid_body",
         "unknown field 'extra' (the body takes only 'input' and 'reason')"),
        ('{"input": {"day": "a\\u0000b"}}', 422, "invalid_body",
         "$.input.day: contains a NUL character (\\u0000), which cannot be stored"),
        ('{"input": {"day": "\\ud800"}}', 422, "invalid_body",
         "$.input.day: contains a lone UTF-16 surrogate, which is not valid Unicode"),
        ('{"input": {"\\u0000": 1}}', 422, "invalid_body",
         "$.input: a key contains a NUL character (\\u0000), which cannot be stored"),
        ('{"input": ' + "[" * 70 + "]" * 70 + "}", 422, "invalid_body",
         "$.input" + "[0]" * 64 + ": nested deeper than 64 levels"),
        ("[" * 100_000 + "]" * 100_000, 400, "invalid_json",
         "the JSON body is nested too deeply"),
    ],
)
async def test_fire_bad_bodies(
    offline: Client, data: str, status: int, code: str, message: str
) -> None:
    # Refused before any query: nothing can have been stored.
    response = await offline.post(
        "/api/v1/triggers/report/manual/fire", data=data,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    await expect_error(response, status, code, message)


async def test_fire_body_not_utf8_and_wrong_content_type(offline: Client) -> None:
    response = await offline.post("/api/v1/triggers/report/manual/fire", data=b'{"a": "\xff"}',
                                 headers={**AUTH, "Content-Type": "application/json"})
    await expect_error(response, 400, "invalid_json", "the body is not UTF-8 (byte 7)")
    response = await offline.post("/api/v1/triggers/report/manual/fire", data="input=1",
                                 headers={**AUTH,
                                          "Content-Type": "application/x-www-form-urlencoded"})
    await expect_error(response, 415, "unsupported_media_type",
                       "send the body as Content-Type: application/json, not"
                       " 'application/x-www-form-urlencoded'")


async def test_next_fires_of_a_cron_trigger(client: Client) -> None:
    response = await client.get("/api/v1/triggers/report/nightly/next?count=3", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["trigger"], body["cron"], body["timezone"]) == (
        "report/nightly", "0 2 * * *", "Europe/Madrid"
    )
    instants = [datetime.fromisoformat(f["at"].replace("Z", "+00:00")) for f in body["items"]]
    assert len(instants) == 3
    madrid = [i.astimezone(ZoneInfo("Europe/Madrid")) for i in instants]
    assert [(m.hour, m.minute) for m in madrid] == [(2, 0)] * 3
    assert instants == sorted(instants)
    assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(instants))
    default = await (await client.get("/api/v1/triggers/report/nightly/next",
                                      headers=AUTH)).json()
    assert len(default["items"]) == 10
    response = await client.get("/api/v1/triggers/report/push/next", headers=AUTH)
    await expect_error(response, 409, "conflict",
                       "trigger report/push is a webhook trigger; only scheduled triggers"
                       " (cron, interval) have fire times")


async def test_next_fires_of_a_paused_trigger_say_it_is_paused(client: Client) -> None:
    """The CLI notes a pause beside the times; the API's answer said nothing of it."""
    url = "/api/v1/triggers/report/nightly/next?count=2"
    body = await (await client.get(url, headers=AUTH)).json()
    assert (body["paused"], body["pause_note"]) == (False, None)
    await client.post("/api/v1/triggers/report/nightly/pause", headers=AUTH,
                      json={"note": "db migration"})
    body = await (await client.get(url, headers=AUTH)).json()
    assert (body["paused"], body["pause_note"], len(body["items"])) == (
        True, "db migration", 2)
    await client.post("/api/v1/triggers/report/nightly/resume", headers=AUTH,
                      json={"note": "done"})
    body = await (await client.get(url, headers=AUTH)).json()
    assert (body["paused"], body["pause_note"]) == (False, None)


async def test_next_fires_after_an_instant_say_what_the_ledger_holds(
    client: Client, pool: asyncpg.Pool
) -> None:
    """?after= starts the preview there (it was ignored), and the fires are marked as the
    CLI marks them: a slot skipped by hand ahead of its time, a past one recorded."""
    from triggerd.operations import cli_actor
    from triggerd.operations.triggers import skip

    trigger = await get_trigger(pool, "report/nightly")
    skipped = datetime(2031, 1, 2, 1, 0, tzinfo=UTC)  # 02:00 in Madrid
    await skip(pool, cli_actor(), "report/nightly", at=skipped,
               now=datetime(2031, 1, 1, tzinfo=UTC))
    await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                       " VALUES ($1, $2, 'fired')", trigger.id,
                       datetime(2031, 1, 1, 1, 0, tzinfo=UTC))
    response = await client.get("/api/v1/triggers/report/nightly/next",
                                params={"after": "2030-12-31T12:00:00Z", "count": "3"},
                                headers=AUTH)
    assert response.status == 200
    items = [(f["at"], f["note"], f.get("reason")) for f in (await response.json())["items"]]
    assert items == [
        ("2031-01-01T01:00:00Z", None, "recorded: fired"),
        ("2031-01-02T01:00:00Z", "skipped", "skipped by hand"),
        ("2031-01-03T01:00:00Z", None, None),
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("count=0", "count: 0 is out of range 1-1000"),
        ("count=1001", "count: 1001 is out of range 1-1000"),
        ("count=-5", "count: -5 is out of range 1-1000"),
        ("count=abc", "count: 'abc' is not an integer (1-1000)"),
        ("count=1.5", "count: '1.5' is not an integer (1-1000)"),
        ("count=99999999999999999999", "count: '99999999999999999999' is not an integer (1-1000)"),
        ("count=1&count=2", "count: given 2 times; give it once"),
        ("after=tomorrow", "after: 'tomorrow' is not an ISO-8601 instant"
         " (e.g. 2026-03-08T00:00:00Z)"),
        ("after=2027-01-01T00:00:00", "after: '2027-01-01T00:00:00' needs a UTC offset or Z"
         " (e.g. 2026-03-08T00:00:00Z)"),
        ("after=0001-01-01T00:00:00Z", "after: '0001-01-01T00:00:00Z' is out of range"
         " (1900-01-01 to 9000-01-01)"),
    ],
)
async def test_next_fires_bad_count(offline: Client, query: str, message: str) -> None:
    response = await offline.get(f"/api/v1/triggers/report/nightly/next?{query}", headers=AUTH)
    await expect_error(response, 400, "invalid_parameter", message)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("skip", {"at": "garbage"},
         "at: 'garbage' is not an ISO-8601 instant (e.g. 2026-03-08T00:00:00Z)"),
        # Without an offset: the same answer as a malformed instant (it was a 400
        # bad_request from the operation, where a malformed one was a 422).
        ("skip", {"at": "2027-01-01T09:00:00"},
         "at: '2027-01-01T09:00:00' needs a UTC offset or Z (e.g. 2026-03-08T00:00:00Z)"),
        ("backfills", {"from": "2027-01-01T00:00:00", "to": "2027-01-02T00:00:00Z"},
         "from: '2027-01-01T00:00:00' needs a UTC offset or Z (e.g. 2026-03-08T00:00:00Z)"),
        ("backfills", {"from": "2027-01-01T00:00:00Z", "to": "soon"},
         "to: 'soon' is not an ISO-8601 instant (e.g. 2026-03-08T00:00:00Z)"),
        ("skip", {"at": "9999-12-31T23:59:00-05:00"},
         "at: '9999-12-31T23:59:00-05:00' is out of range (years 1-9999 in UTC)"),
    ],
)
async def test_a_body_instant_is_refused_before_any_query(
    offline: Client, path: str, body: dict[str, Any], message: str
) -> None:
    response = await offline.post(f"/api/v1/triggers/report/nightly/{path}", json=body,
                                  headers=AUTH)
    await expect_error(response, 422, "invalid_body", message)


async def test_slot_history_newest_first(client: Client, pool: asyncpg.Pool) -> None:
    trigger = await get_trigger(pool, "report/nightly")
    base = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    execution_id = await fire(pool, "report/nightly")
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id, detail)"
        " SELECT $1, $2::timestamptz + d * interval '1 day',"
        " CASE WHEN d = 2 THEN 'skipped_overlap' ELSE 'fired' END,"
        " CASE WHEN d = 0 THEN $3::uuid END,"
        " CASE WHEN d = 2 THEN 'previous run still RUNNING' END"
        " FROM generate_series(0, 3) AS d",
        trigger.id, base, execution_id,
    )
    response = await client.get("/api/v1/triggers/report/nightly/slots?limit=3", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["trigger"] == "report/nightly"
    assert [(s["scheduled_for"], s["outcome"], s["detail"]) for s in body["items"]] == [
        ("2026-03-04T01:00:00+00:00", "fired", None),
        ("2026-03-03T01:00:00+00:00", "skipped_overlap", "previous run still RUNNING"),
        ("2026-03-02T01:00:00+00:00", "fired", None),
    ]
    everything = await (await client.get("/api/v1/triggers/report/nightly/slots",
                                         headers=AUTH)).json()
    assert everything["items"][-1]["execution_id"] == execution_id
    await expect_error(
        await client.get("/api/v1/triggers/report/nightly/slots?limit=501", headers=AUTH),
        400, "invalid_parameter", "limit: 501 is out of range 1-500")


# --- executions -----------------------------------------------------------------------------


async def insert_batch(pool: asyncpg.Pool, count: int, name: str = "report/manual") -> list[str]:
    """``count`` executions in one statement: they share one created_at (one transaction),
    which is exactly what pagination must get right."""
    trigger = await get_trigger(pool, name)
    items = [
        NewExecution(workflow_id=trigger.workflow_id, trigger_id=trigger.id,
                     trigger_name=trigger.name, trigger_type="manual", input={"day": str(i)})
        for i in range(count)
    ]
    await insert_executions(pool, items)
    return [item.id for item in items]


async def test_pagination(client: Client, pool: asyncpg.Pool) -> None:
    ids = await insert_batch(pool, 5)
    ids += await insert_batch(pool, 2, "report/nightly")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/api/v1/executions?{query}", headers=AUTH)
        assert response.status == 200
        page = await response.json()
        pages += 1
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 7
    assert set(seen) == set(ids)
    # Newest first: the second batch was inserted later.
    assert set(seen[:2]) == set(ids[5:])

    # A page that ends exactly at the last row says so (no cursor to an empty page).
    page = await (await client.get("/api/v1/executions?limit=2&trigger=report/nightly",
                                   headers=AUTH)).json()
    assert {e["id"] for e in page["items"]} == set(ids[5:])
    assert page["next_cursor"] is None
    empty = await (await client.get("/api/v1/executions?status=ERROR", headers=AUTH)).json()
    assert empty == {"items": [], "next_cursor": None}


async def test_the_execution_list_takes_the_clis_half_open_range(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The CLI's --since (inclusive) and --until (exclusive) were refused by the API as
    unknown parameters."""
    older, newer = await insert_batch(pool, 1), await insert_batch(pool, 1)
    await pool.execute("UPDATE workflow_executions SET created_at = $2 WHERE id = $1",
                       older[0], datetime(2027, 1, 1, 9, tzinfo=UTC))
    await pool.execute("UPDATE workflow_executions SET created_at = $2 WHERE id = $1",
                       newer[0], datetime(2027, 1, 1, 10, tzinfo=UTC))

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/api/v1/executions?{query}", headers=AUTH)
        assert response.status == 200, await response.text()
        return [e["id"] for e in (await response.json())["items"]]

    assert await ids("since=2027-01-01T09:00:00Z") == [newer[0], older[0]]
    assert await ids("since=2027-01-01T09:00:01Z") == [newer[0]]
    assert await ids("until=2027-01-01T10:00:00Z") == [older[0]]
    assert await ids("since=2027-01-01T09:00:00Z&until=2027-01-01T10:30:00%2B01:00") == [
        older[0]]
    # An empty window answers nothing (the same instant with another offset too), as the
    # CLI's; a reversed one is bad input, as the CLI's (the API answered [] for both and
    # the CLI exit 2 for both).
    assert await ids("since=2027-01-01T10:00:00Z&until=2027-01-01T11:00:00%2B01:00") == []
    assert await ids("since=1800-01-01T00:00:00Z") == [newer[0], older[0]]
    for query, message in (
        ("until=yesterday", "until: 'yesterday' is not an ISO-8601 instant"),
        ("since=2027-01-01T10:00:00", "since: '2027-01-01T10:00:00' needs a UTC offset"),
        ("since=2027-01-01T10:00:00Z&until=2027-01-01T09:00:00Z",
         "since 2027-01-01T10:00:00Z is after until 2027-01-01T09:00:00Z (swapped?)"),
    ):
        response = await client.get(f"/api/v1/executions?{query}", headers=AUTH)
        body = await response.json()
        assert (response.status, body["error"]) == (400, "invalid_parameter")
        assert body["message"].startswith(message), body


async def test_execution_filters(client: Client, pool: asyncpg.Pool) -> None:
    manual = await insert_batch(pool, 2)
    nightly = await insert_batch(pool, 1, "report/nightly")
    await pool.execute("UPDATE workflow_executions SET status = 'ERROR' WHERE id = $1",
                       manual[0])

    async def ids(query: str) -> set[str]:
        response = await client.get(f"/api/v1/executions?{query}", headers=AUTH)
        assert response.status == 200, await response.text()
        return {e["id"] for e in (await response.json())["items"]}

    assert await ids("status=ERROR") == {manual[0]}
    assert await ids("status=NEW") == {manual[1], *nightly}
    assert await ids("trigger=report/nightly") == set(nightly)
    assert await ids("trigger=report/manual&status=NEW") == {manual[1]}
    assert await ids("workflow=report") == {*manual, *nightly}
    await expect_error(await client.get("/api/v1/executions?trigger=report/nope", headers=AUTH),
                       404, "not_found", "no trigger named 'report/nope'")
    await expect_error(await client.get("/api/v1/executions?workflow=nope", headers=AUTH),
                       404, "not_found", "no workflow with key 'nope'")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: 0 is out of range 1-500"),
        ("limit=501", "limit: 501 is out of range 1-500"),
        ("limit=-1", "limit: -1 is out of range 1-500"),
        ("limit=ten", "limit: 'ten' is not an integer (1-500)"),
        ("limit=", "limit: '' is not an integer (1-500)"),
        ("limit=5%0A", "limit: '5\\n' is not an integer (1-500)"),
        ("limit=1&limit=1", "limit: given 2 times; give it once"),
        ("status=new", "status: 'new' is not one of NEW, RUNNING, WAITING, SUCCESS, ERROR,"
                       " CANCELED"),
        ("cursor=abc", "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=" + "9" * 17 + "-" + "0" * 32,
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("trigger=manual", "trigger: 'manual' is not workflow_key/trigger_name"),
        ("workflow=Report", "workflow: 'Report' is not a workflow key (1-100 lowercase letters,"
                            " digits, '-' and '_')"),
        ("workflow=report%0A", "workflow: 'report\\n' is not a workflow key (1-100 lowercase"
                               " letters, digits, '-' and '_')"),
    ],
)
async def test_execution_list_bad_parameters(offline: Client, query: str, message: str) -> None:
    response = await offline.get(f"/api/v1/executions?{query}", headers=AUTH)
    await expect_error(response, 400, "invalid_parameter", message)


async def test_get_execution_with_node_timeline(client: Client, pool: asyncpg.Pool) -> None:
    execution_id = await fire(pool, "report/manual", {"day": "mon"})
    started = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
        " output, start_time, end_time, execution_time_ms, from_node_id, edge_condition)"
        " VALUES ($1, 'second', 'log', 'SUCCESS', 1, NULL, $3, $3, 1.5, 'start', 'true'),"
        "        ($1, 'start', 'noop', 'SUCCESS', 1, $4, $2, $2, 0.5, NULL, NULL)",
        execution_id, started, started + timedelta(seconds=1), {"ok": True},
    )
    response = await client.get(f"/api/v1/executions/{execution_id}", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["workflow"], body["trigger"], body["status"]) == (
        execution_id, "report", "manual", "NEW"
    )
    assert body["input"] == {"day": "mon"}
    assert [(n["node_id"], n["from"], n["edge"], n["output"]) for n in body["nodes"]] == [
        ("start", None, None, {"ok": True}),
        ("second", "start", "true", None),
    ]
    assert body["nodes"][0]["start_time"] == "2026-01-05T10:00:00+00:00"
    missing = str(uuid.uuid4())
    for method, suffix in [("GET", ""), ("POST", "/cancel"), ("POST", "/retry")]:
        response = await client.request(method, f"/api/v1/executions/{missing}{suffix}",
                                        headers=AUTH)
        await expect_error(response, 404, "not_found", f"no execution {missing}")


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel"),
                                                ("POST", "/retry"), ("POST", "/resume")])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", uuid.UUID(int=7).hex, "urn:uuid:" + str(
    uuid.UUID(int=7))])
async def test_malformed_execution_ids_are_400_without_a_query(
    offline: Client, method: str, suffix: str, bad_id: str
) -> None:
    # uuid.UUID() takes the bare hex and urn forms; the document's format (and so this
    # API) does not. Bad input, as a malformed backfill id (and the CLI's exit 2).
    response = await offline.request(method, f"/api/v1/executions/{bad_id}{suffix}",
                                     headers=AUTH,
                                     json={"decision": "approved"} if suffix else None)
    await expect_error(response, 400, "bad_request",
                       f"{bad_id!r} is not an execution id (a UUID)")
    backfill = await offline.get("/api/v1/backfills/nope", headers=AUTH)
    await expect_error(backfill, 400, "bad_request")


async def test_cancel(client: Client, pool: asyncpg.Pool) -> None:
    execution_id = await fire(pool, "report/manual", {"day": "x"})
    response = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["error_code"]) == ("CANCELED", "CANCELED")
    again = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=AUTH)
    await expect_error(again, 409, "conflict",
                       f"execution {execution_id} already finished with status CANCELED;"
                       " nothing was changed")
    execution_id = await fire(pool, "report/manual", {"day": "x"})
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'elsewhere',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = $1", execution_id)
    response = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=AUTH)
    assert response.status == 202
    assert (await response.json())["status"] == "RUNNING"
    assert await pool.fetchval(
        "SELECT cancel_requested FROM workflow_executions WHERE id = $1", execution_id) is True


async def test_retry_creates_a_linked_execution(client: Client, pool: asyncpg.Pool) -> None:
    old = await fire(pool, "report/manual", {"day": "x"})
    # A run that has not ended is not retried: there would be two runs of one input.
    for status in ("NEW", "RUNNING", "WAITING"):
        await pool.execute("UPDATE workflow_executions SET status = $2 WHERE id = $1",
                           old, status)
        refused = await client.post(f"/api/v1/executions/{old}/retry", headers=AUTH)
        assert (refused.status, await refused.json()) == (409, {
            "error": "conflict", "message": f"execution {old} has not ended ({status});"
            " cancel it or wait for it to end before retrying it"})
    await pool.execute("UPDATE workflow_executions SET status = 'ERROR' WHERE id = $1", old)
    # As fire: a disabled trigger starts no run.
    await pool.execute("UPDATE workflow_triggers SET enabled = false WHERE name = 'manual'")
    refused = await client.post(f"/api/v1/executions/{old}/retry", headers=AUTH)
    assert (refused.status, (await refused.json())["message"]) == (
        409, "trigger report/manual is disabled; enable it first")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'retry'") == 0
    await pool.execute("UPDATE workflow_triggers SET enabled = true WHERE name = 'manual'")
    response = await client.post(f"/api/v1/executions/{old}/retry", headers=AUTH)
    assert response.status == 202
    new = (await response.json())["execution_id"]
    assert new != old
    assert response.headers["Location"] == f"/api/v1/executions/{new}"
    row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", new)
    assert row is not None
    assert (str(row["retry_of"]), row["trigger_type"], row["input"]) == (old, "retry",
                                                                         {"day": "x"})


# --- definitions ----------------------------------------------------------------------------


async def test_apply_definitions(make_client: ClientFactory, pool: asyncpg.Pool) -> None:
    client = await make_client()
    response = await client.post("/api/v1/definitions", headers=AUTH, json=DOC)
    assert response.status == 200
    body = await response.json()
    assert {key: body[key] for key in ("changed", "lines")} == {
        "changed": True,
        "lines": [
            "workflow report: created",
            "workflow report: version 1 published",
            "trigger report/nightly: created",
            "trigger report/manual: created",
            "trigger report/push: created",
        ],
    }
    # The same changes as `triggerd apply --json` prints them.
    assert body["dry_run"] is False and body["unchanged"] == 0
    assert body["changes"][1] == {"kind": "workflow", "name": "report", "action": "published",
                                  "detail": "version 1"}
    again = await (await client.post("/api/v1/definitions", headers=AUTH, json=DOC)).json()
    assert again["changed"] is False

    fewer = json.loads(json.dumps(DOC))
    fewer["workflows"][0]["triggers"] = fewer["workflows"][0]["triggers"][:2]
    kept = await (await client.post("/api/v1/definitions", headers=AUTH, json=fewer)).json()
    assert kept["lines"][-1] == "trigger report/push: disabled (not in the file)"
    pruned = await (await client.post("/api/v1/definitions?prune=true", headers=AUTH,
                                      json=fewer)).json()
    assert pruned["lines"][-1] == "trigger report/push: deleted (not in the file)"
    names = [r["name"] for r in await pool.fetch("SELECT name FROM workflow_triggers")]
    assert sorted(names) == ["manual", "nightly"]


async def test_invalid_definitions_are_422_with_every_problem(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    client = await make_client()
    bad = json.loads(json.dumps(DOC))
    bad["workflows"][0]["key"] = "Bad Key"
    bad["workflows"][0]["triggers"][0]["cron"] = "61 * * * *"
    response = await client.post("/api/v1/definitions", headers=AUTH, json=bad)
    body = await expect_error(response, 422, "definitions_invalid")
    assert [(p["file"], p["path"]) for p in body["problems"]] == [
        ("request body", "$.workflows[0].key"),
        ("request body", "$.workflows[0].triggers[0].cron"),
    ]
    assert body["problems"][0]["message"] == (
        "'Bad Key' is not a valid name: use lowercase letters, digits, '-' and '_'"
    )
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0

    not_a_document = await client.post("/api/v1/definitions", headers=AUTH, json=[1])
    body = await expect_error(not_a_document, 422, "definitions_invalid")
    assert body["problems"] == [{"file": "request body", "path": "$",
                                 "message": "the top level must be a mapping with a"
                                            " 'workflows' list"}]

    # Values the schema allows but nothing can hold: a 422, never a 500.
    huge_version = json.loads(json.dumps(DOC))
    huge_version["workflows"][0]["triggers"][1]["version"] = 99_999_999_999
    response = await client.post("/api/v1/definitions", headers=AUTH, json=huge_version)
    body = await expect_error(response, 422, "definitions_invalid")
    assert body["problems"] == [{
        "file": "request body", "path": "$.workflows[0].triggers[1].version",
        "message": "must be at most 2147483647, got 99999999999",
    }]
    huge_timeout = json.loads(json.dumps(DOC))
    huge_timeout["workflows"][0]["timeout"] = "99999999999d"
    response = await client.post("/api/v1/definitions", headers=AUTH, json=huge_timeout)
    body = await expect_error(response, 422, "definitions_invalid")
    assert len(body["problems"]) == 1
    assert body["problems"][0]["path"] == "$.workflows[0].timeout"
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0


@pytest.mark.parametrize(
    ("query", "data", "status", "code", "message"),
    [
        ("", "", 400, "invalid_json",
         'the request body is empty; expected a definition document {"workflows": [...]}'),
        ("", "{workflows: []}", 400, "invalid_json",
         "malformed JSON at line 1, column 2: Expecting property name enclosed in double"
         " quotes"),
        ("?prune=yes", json.dumps(DOC), 400, "invalid_parameter",
         "prune: 'yes' is not true or false"),
        ("", json.dumps({"workflows": [{**DOC["workflows"][0], "name": "\x00"}]}), 422,
         "invalid_body",
         "$.workflows[0].name: contains a NUL character (\\u0000), which cannot be stored"),
    ],
)
async def test_definitions_bad_requests(
    offline: Client, query: str, data: str, status: int, code: str, message: str
) -> None:
    response = await offline.post(f"/api/v1/definitions{query}", data=data,
                                 headers={**AUTH, "Content-Type": "application/json"})
    await expect_error(response, status, code, message)


# Constant expressions a check evaluates, about a second's worth (what one check may spend),
# after one that fails every run: refused (422).
_LOOPS = "{% for a in range(1000) %}{% for b in range(240) %}{% endfor %}{% endfor %}"
SLOW_DOC: dict[str, Any] = {"workflows": [{"key": "slow", "graph": {
    "nodes": [{"id": "n0", "type": "log", "params": {"message": "{{ 1 / 0 }}"}},
              *({"id": f"n{i}", "type": "log", "params": {"message": f"{_LOOPS}{i}"}}
                for i in range(1, 9))],
    "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(8)],
}}]}


async def test_concurrent_checks_leave_threads_for_other_work(aiohttp_client: Any) -> None:
    # Each check runs in a thread of the default executor: as many dry runs at once as it
    # has threads held all of them, and any other thread's work waited for a check to end.
    workers = min(32, (os.cpu_count() or 1) + 4)  # the default executor's threads
    # Refused by the check (after its loops), so no request reaches the database.
    body = {"workflows": [{"key": "slow", "graph": {
        "nodes": [{"id": "a", "type": "log", "params": {"message": "{{ 1 / 0 }}"}},
                  {"id": "b", "type": "log", "params": {"message": _LOOPS}}],
        "edges": [{"from": "a", "to": "b"}]}}]}
    entered = 0
    all_entered = asyncio.Event()

    @web.middleware
    async def whole_body_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal entered
        if request.method == "POST":
            # The handler then goes to the check without waiting for anything else.
            await request_bytes(request, body_limit(request.app))
            entered += 1
            if entered == workers + 1:
                all_entered.set()
        return await handler(request)

    app = create_app(Settings(api=ApiSettings(token=TOKEN)), NoDatabase())
    add_admin_routes(app, environ={})
    app.middlewares.append(whole_body_first)
    client: Client = await aiohttp_client(app)
    ended: list[str] = []

    async def check() -> int:
        async with client.post("/api/v1/definitions?dry_run=true", headers=AUTH,
                               json=body) as response:
            await response.read()
        ended.append("check")
        return response.status

    checks = [asyncio.create_task(check()) for _ in range(workers + 1)]
    await all_entered.wait()
    await asyncio.to_thread(ended.append, "other")
    assert await asyncio.gather(*checks) == [422] * (workers + 1)
    assert ended[0] == "other"


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/definitions?dry_run=true", SLOW_DOC),
    ("/api/v1/definitions", SLOW_DOC),
    ("/api/v1/test-runs", {"definition": SLOW_DOC, "workflow": "slow"}),
])
async def test_a_definition_is_checked_while_other_requests_are_answered(
    aiohttp_client: Any, path: str, body: dict[str, Any]
) -> None:
    # A check evaluates constant expressions (up to about a second of them, and any tenant's
    # token may send one): on the event loop, it held every other request meanwhile.
    entered = asyncio.Event()

    @web.middleware
    async def whole_body_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            # The handler then reads the body without waiting: the next it waits for is
            # the check, if it waits at all.
            await request_bytes(request, body_limit(request.app))
            entered.set()
        return await handler(request)

    app = create_app(Settings(api=ApiSettings(token=TOKEN)), NoDatabase())
    add_admin_routes(app, environ={})
    app.middlewares.append(whole_body_first)
    client: Client = await aiohttp_client(app)
    ended: list[str] = []

    async def call(name: str, request: Any) -> tuple[int, Any]:
        async with request as response:
            answer = (response.status, await response.json())
        ended.append(name)
        return answer

    check = asyncio.create_task(call("check", client.post(path, headers=AUTH, json=body)))
    await entered.wait()
    status, _ = await call("other", client.get("/api/v1/openapi.json"))
    assert status == 200
    status, refused = await check
    assert ended == ["other", "check"]
    assert (status, refused["error"]) == (422, "definitions_invalid")
    assert [(p["path"], p["message"]) for p in refused["problems"]] == [
        ("$.workflows[0].graph.nodes[0].params.message",
         "expression '{{ 1 / 0 }}': it fails in every run: ZeroDivisionError: division by"
         " zero"),
    ]


async def test_body_over_the_limit_is_413(make_offline: ClientFactory) -> None:
    client = await make_offline(Settings(api=ApiSettings(token=TOKEN),
                                        http=HttpSettings(max_body_bytes=1024)))
    response = await client.post("/api/v1/definitions", headers=AUTH,
                                 json={"workflows": [], "pad": "x" * 2000})
    await expect_error(response, 413, "body_too_large", "the request body is too large"
                       " (Maximum request body size 1024 exceeded.)")


async def test_an_encoded_body_refused_by_its_length_on_the_wire_is_413_saying_so(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """It was told the decoded limit was exceeded ("Maximum request body size 1024"), and
    its size reported as max(Content-Length, 1025): a body refused as sent may decode to
    nothing."""
    await apply_doc(pool, DOC)
    client = await make_client(Settings(api=ApiSettings(token=TOKEN),
                                        http=HttpSettings(max_body_bytes=1024)))
    # A zlib stream of empty deflate blocks: 2,511 bytes decoding to none (2,304 allowed).
    empty_blocks = b"\x78\x9c" + b"\x00\x00\x00\xff\xff" * 500 + b"\x01\x00\x00\xff\xff" + (
        b"\x00\x00\x00\x01")
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "deflate"}

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(empty_blocks), 100):
            yield empty_blocks[start:start + 100]

    for data in (empty_blocks, chunked()):
        response = await client.post("/api/v1/definitions", data=data, headers=headers)
        await expect_error(
            response, 413, "body_too_large", "the request body is too large (the encoded"
            " body takes more than 2304 bytes on the wire, the most for a limit of 1024"
            " decoded bytes)")
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 1
    assert (await client.get("/api/v1/workflows/report", headers=AUTH)).status == 200


async def test_a_nul_in_a_parameter_and_an_undecodable_body_are_400(offline: Client) -> None:
    # Both reached the database or aiohttp's decoder and came back as 500s (a DELETE with
    # such a note too); they are the client's mistakes, refused before anything runs.
    nul = "contains a NUL character (\\u0000), which cannot be stored"
    for method, path, name in [
        ("GET", "/api/v1/executions?agent_id=%00", "agent_id"),
        ("GET", "/api/v1/audit?target=a%00b", "target"),
        ("DELETE", "/api/v1/workflows/report?note=%00", "note"),
    ]:
        response = await offline.request(method, path, headers=AUTH)
        await expect_error(response, 400, "invalid_parameter", f"{name}: {nul}")
    # An audit cursor past a bigint overflowed the query (a 500), a superscript digit too.
    for cursor in ("9223372036854775808", "9999999999999999999", "%C2%B2"):
        response = await offline.get(f"/api/v1/audit?cursor={cursor}", headers=AUTH)
        await expect_error(response, 400, "invalid_parameter", "cursor: not a cursor returned"
                           " by this API (pass next_cursor back)")
    # In the path, a name that cannot exist names nothing: 404, still without a query.
    response = await offline.get("/api/v1/triggers/re%00port/hourly", headers=AUTH)
    assert response.status == 404
    response = await offline.post(
        "/api/v1/definitions", data=b"not gzip",
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    await expect_error(response, 400, "invalid_body",
                       "the body could not be decoded as its Content-Encoding 'gzip'")
    # A gzip stream cut short is undecodable too (it was read as a shorter body); a whole
    # one is decoded (here: a document the definitions refuse).
    document = gzip.compress(b'{"workflows": 5}')
    response = await offline.post(
        "/api/v1/definitions", data=document[:-3],
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    await expect_error(response, 400, "invalid_body",
                       "the body could not be decoded as its Content-Encoding 'gzip'")
    response = await offline.post(
        "/api/v1/definitions", data=document,
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 422, await response.text()
    response = await offline.post(
        "/api/v1/definitions", data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "foo"})
    assert response.headers["Accept-Encoding"] == "gzip, deflate, br, zstd"
    await expect_error(response, 415, "unsupported_encoding",
                       "the body's Content-Encoding 'foo' is not one of gzip, deflate, br,"
                       " zstd (or identity)")


async def test_the_documented_audit_cursor_is_exactly_what_the_api_takes(
    client: Client,
) -> None:
    # The document's pattern took any 19 digits, the API refuses those past a bigint (400):
    # a client checking its input against the document had them refused anyway.
    document = await (await client.get("/api/v1/openapi.json")).json()
    (parameter,) = [p for p in document["paths"]["/api/v1/audit"]["get"]["parameters"]
                    if p.get("name") == "cursor"]
    pattern = re.compile(parameter["schema"]["pattern"])
    page = document["components"]["schemas"]["AuditPage"]["properties"]["next_cursor"]
    assert page == {"type": ["string", "null"], "pattern": pattern.pattern}
    largest = 2**63 - 1
    cursors = [str(n) for n in (0, 9, 10, 10**18 - 1, 10**18, largest - 1, largest,
                                largest + 1, 10**19 - 1, 10**19)]
    cursors += ["0" * 19, "0" * 20, "09223372036854775807", "8" + "9" * 18,
                "9223372036854775799", "9223372036854775810", "9223372036854775900"]
    for cursor in cursors:
        documented = pattern.fullmatch(cursor) is not None
        response = await client.get(f"/api/v1/audit?cursor={cursor}", headers=AUTH)
        if documented:
            assert response.status == 200, (cursor, await response.text())
        else:
            await expect_error(response, 400, "invalid_parameter", "cursor: not a cursor"
                               " returned by this API (pass next_cursor back)")
        assert documented == (len(cursor) <= 19 and int(cursor) <= largest), cursor


async def test_a_bad_decision_is_answered_as_the_resume_link_answers_it(
    offline: Client,
) -> None:
    # The link said 422 invalid_body, the API 400 bad_request, for one operation's input.
    path = f"/api/v1/executions/{uuid.uuid4()}/resume"
    response = await offline.post(path, headers=AUTH, json={"decision": "maybe"})
    await expect_error(response, 422, "invalid_body",
                       "decision: 'maybe' is not one of approved, rejected")
    response = await offline.post(path, headers=AUTH, json={"decision": "approved",
                                                            "input": "x"})
    await expect_error(response, 422, "invalid_body", "input must be an object")


async def test_a_request_the_database_does_not_answer_is_503_after_the_deadline(
    client: Client, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the database frozen, the API never answered (80 s and more): a stopped server
    # cannot enforce its statement_timeout. A lock held elsewhere stands in for it here.
    monkeypatch.setattr(admin, "API_DEADLINE_SECONDS", 0.5)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
        response = await client.get("/api/v1/workflows", headers=AUTH)
        await expect_error(response, 503, "database_unavailable",
                           "the database cannot be reached right now; retry later")
        assert response.headers["Retry-After"] == "5"
    response = await client.get("/api/v1/workflows", headers=AUTH)  # answered again
    assert response.status == 200


# --- routing, methods, the database ------------------------------------------------------


async def test_unknown_route_and_wrong_method_are_json(offline: Client) -> None:
    await expect_error(await offline.get("/api/v1/nothing-here", headers=AUTH), 404,
                       "not_found", "no such admin API route (see /api/v1/openapi.json)")
    response = await offline.delete("/api/v1/workflows", headers=AUTH)
    await expect_error(response, 405, "method_not_allowed", "method not allowed here; allowed: GET")
    assert response.headers["Allow"] == "GET"
    head = await offline.head("/api/v1/workflows", headers=AUTH)
    assert head.status == 405


async def test_routes_outside_the_api_are_untouched(offline: Client) -> None:
    response = await offline.get("/healthz")
    assert response.status == 200
    head = await offline.head("/healthz")
    assert (head.status, head.headers["Content-Length"], await head.read()) == (
        200, response.headers["Content-Length"], b"")
    response = await offline.get("/api/v10/x")
    assert response.status == 404
    assert response.content_type == "text/plain"


async def test_database_down_is_503(make_offline: ClientFactory) -> None:
    # Nothing listens on the port: the pool's first connection attempt is refused.
    unreachable = await asyncpg.create_pool(
        f"postgresql://triggerd@127.0.0.1:{free_port()}/triggerd", min_size=0, max_size=1
    )
    client = await make_offline(app_pool=unreachable)
    response = await client.get("/api/v1/workflows", headers=AUTH)
    await expect_error(response, 503, "database_unavailable",
                       "the database cannot be reached right now; retry later")
    assert response.headers["Retry-After"] == "5"
    await unreachable.close()


def test_storage_problem_accepts_plain_json() -> None:
    assert storage_problem({"a": [1, 2.5, None, True, "ü", {"b": "c"}]}) is None
    assert storage_problem("\x00") == (
        "$: contains a NUL character (\\u0000), which cannot be stored"
    )


# --- pages of workflows and triggers ----------------------------------------------------------


def _many_workflows(count: int, triggers: int) -> dict[str, Any]:
    return {
        "workflows": [
            {
                "key": f"wf{i:03d}",
                "graph": {"nodes": [{"id": "start", "type": "noop"}]},
                "triggers": [{"name": f"t{j}", "type": "manual"} for j in range(triggers)],
            }
            for i in range(count)
        ]
    }


async def _walk(client: Client, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        separator = "&" if "?" in path else "?"
        query = f"{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(path + query, headers=AUTH)
        assert response.status == 200, await response.text()
        page = await response.json()
        pages += 1
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


async def test_workflows_and_triggers_come_in_pages(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """100,000 triggers must not mean 100,000 rows per request: both lists are read a page
    at a time by keyset, and walking the pages yields every item once, in order."""
    await apply_doc(pool, _many_workflows(7, 3))
    client = await make_client()
    workflows, pages = await _walk(client, "/api/v1/workflows", 3)
    assert [w["key"] for w in workflows] == [f"wf{i:03d}" for i in range(7)]
    assert pages == 3
    triggers, pages = await _walk(client, "/api/v1/triggers", 4)
    names = [t["name"] for t in triggers]
    assert names == [f"wf{i:03d}/t{j}" for i in range(7) for j in range(3)]
    assert pages == 6  # 21 triggers: 5 full pages and one of 1
    # Filters narrow the pages; a page that ends at the last item has no cursor.
    only, pages = await _walk(client, "/api/v1/triggers?workflow=wf003", 3)
    assert [t["trigger"] for t in only] == ["t0", "t1", "t2"] and pages == 1
    default = await (await client.get("/api/v1/triggers", headers=AUTH)).json()
    assert len(default["items"]) == 21 and default["next_cursor"] is None


@pytest.mark.parametrize("path", ["/api/v1/workflows", "/api/v1/triggers"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: 0 is out of range 1-500"),
        ("limit=501", "limit: 501 is out of range 1-500"),
        ("cursor=abc", "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=wf001",  # a position without its id
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=WF001." + "0" * 32,
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=a.b.c." + "0" * 32,
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("cursor=%25%25", "cursor: not a cursor returned by this API (pass next_cursor back)"),
    ],
)
async def test_workflow_and_trigger_pages_refuse_bad_parameters(
    offline: Client, path: str, query: str, message: str
) -> None:
    response = await offline.get(f"{path}?{query}", headers=AUTH)
    await expect_error(response, 400, "invalid_parameter", message)


DOC_YAML = """
workflows:
  - key: report
    graph:
      nodes:
        - id: start
          type: noop
    triggers:
      - name: manual
        type: manual
      - name: nightly
        type: cron
        cron: "0 3 * * *"
        timezone: Europe/Madrid
"""


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml",
                                          "text/yaml"])
async def test_definitions_may_be_sent_as_yaml(
    make_client: ClientFactory, pool: asyncpg.Pool, content_type: str
) -> None:
    """The files `triggerd apply` takes can be posted as they are."""
    client = await make_client()
    response = await client.post("/api/v1/definitions", data=DOC_YAML.encode(),
                                 headers={**AUTH, "Content-Type": content_type})
    assert response.status == 200, await response.text()
    assert (await response.json())["changed"] is True
    rows = await pool.fetch("SELECT name, config FROM workflow_triggers ORDER BY name")
    assert [r["name"] for r in rows] == ["manual", "nightly"]
    assert rows[1]["config"]["timezone"] == "Europe/Madrid"
    again = await client.post("/api/v1/definitions", data=DOC_YAML.encode(),
                              headers={**AUTH, "Content-Type": content_type})
    assert (await again.json())["changed"] is False
    # A byte-order mark some editors write is no part of the text, as for `apply` (the
    # JSON one was "Unexpected UTF-8 BOM").
    bom = b"\xef\xbb\xbf"
    for data, kind in ((bom + DOC_YAML.encode(), content_type),
                       (bom + json.dumps(DOC).encode(), "application/json")):
        marked = await client.post("/api/v1/definitions", data=data,
                                   headers={**AUTH, "Content-Type": kind})
        assert marked.status == 200, await marked.text()


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code", "message"),
    [
        (b"", "application/yaml", 400, "invalid_yaml",
         "the request body is empty; expected a definition document (workflows:)"),
        (b"workflows: [\n", "application/yaml", 400, "invalid_yaml",
         "YAML syntax error at line 2, column 1: expected the node content, but found"
         " '<stream end>' (while parsing a flow node)"),
        (b"\xff\xfe", "application/yaml", 400, "invalid_yaml",
         "the body is not UTF-8 (byte 0)"),
        # Read, with a mistake at a place: a problem at its path, as `check` says it.
        (b"a: &a [*a]\n", "application/yaml", 422, "definitions_invalid",
         "1 problem in definitions: request body: $.a[0]: recursive YAML alias (line 1)"),
        (b"workflows: " + b"[" * 200 + b"]" * 200, "application/yaml", 400, "invalid_yaml",
         "nested deeper than 64 levels (at line 1)"),
        (b"workflows: []", "text/plain", 415, "unsupported_media_type",
         "send the body as Content-Type: application/json or application/yaml, not"
         " 'text/plain'"),
        (b"workflows:\n  - key: \"\\0\"\n", "application/yaml", 422, "invalid_body",
         "$.workflows[0].key: contains a NUL character (\\u0000), which cannot be stored"),
    ],
)
async def test_bad_yaml_definitions_are_refused_and_change_nothing(
    make_client: ClientFactory, pool: asyncpg.Pool, data: bytes, content_type: str,
    status: int, code: str, message: str | None,
) -> None:
    client = await make_client()
    response = await client.post("/api/v1/definitions", data=data,
                                 headers={**AUTH, "Content-Type": content_type})
    body = await expect_error(response, status, code)
    if message is not None:
        assert body["message"].startswith(message), body
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    # A structurally valid document that breaks the rules is a 422 with every problem.
    response = await client.post("/api/v1/definitions", data=b"workflows:\n  - key: Bad\n",
                                 headers={**AUTH, "Content-Type": "application/yaml"})
    body = await expect_error(response, 422, "definitions_invalid")
    assert "$.workflows[0].key" in [p["path"] for p in body["problems"]], body


async def test_keys_given_twice_in_a_yaml_body_are_every_one_a_problem_at_its_path(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    """As `check` lists them for a file; the API answered 400 invalid_yaml naming the
    first only."""
    client = await make_client()
    data = (b"workflows:\n  - key: a\n    key: b\n    graph: {nodes: [{id: x, type: noop}]}\n"
            b"  - key: c\n    graph: {nodes: [{id: y, type: noop, id: z}]}\n")
    response = await client.post("/api/v1/definitions", data=data,
                                 headers={**AUTH, "Content-Type": "application/yaml"})
    body = await expect_error(response, 422, "definitions_invalid")
    assert [(p["path"], p["message"]) for p in body["problems"]] == [
        ("$.workflows[0].key", "duplicate key 'key' (line 3; first at line 2)"),
        ("$.workflows[1].graph.nodes[0].id", "duplicate key 'id' (line 6; first at line 6)"),
    ], body
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0


async def test_a_dry_run_returns_the_plan_and_writes_nothing(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    client = await make_client()
    response = await client.post("/api/v1/definitions?dry_run=true", headers=AUTH, json=DOC)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["dry_run"] is True and body["changed"] is True
    assert [(c["kind"], c["name"], c["action"]) for c in body["changes"]] == [
        ("workflow", "report", "created"), ("workflow", "report", "published"),
        ("trigger", "report/nightly", "created"), ("trigger", "report/manual", "created"),
        ("trigger", "report/push", "created")]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 0
    applied = await (await client.post("/api/v1/definitions", headers=AUTH, json=DOC)).json()
    assert applied["changes"] == body["changes"]
    again = await (await client.post("/api/v1/definitions?dry_run=true", headers=AUTH,
                                     json=DOC)).json()
    assert again["changes"] == [] and again["unchanged"] == 4  # 1 workflow, 3 triggers
    bad = await client.post("/api/v1/definitions?dry_run=maybe", headers=AUTH, json=DOC)
    await expect_error(bad, 400, "invalid_parameter", "dry_run: 'maybe' is not true or false")


async def test_next_fires_of_an_interval_and_of_a_calendar_filtered_trigger(
    make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    doc = {
        "calendars": [{"name": "weekend", "weekdays": ["sat", "sun"]}],
        "workflows": [{
            "key": "sync", "graph": {"nodes": [{"id": "start", "type": "noop"}]},
            "triggers": [
                {"name": "every", "type": "interval", "every": "6h", "offset": "5m"},
                {"name": "weekends", "type": "cron", "cron": ["0 9 * * *", "0 9 * * 6"],
                 "calendar": {"only": "weekend"}},
            ],
        }],
    }
    await apply_doc(pool, doc)
    client = await make_client()
    response = await client.get("/api/v1/triggers/sync/every/next?count=3", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["trigger"], body["type"], body["every"], body["offset"]) == (
        "sync/every", "interval", "6h", "5m")
    instants = [datetime.fromisoformat(f["at"].replace("Z", "+00:00")) for f in body["items"]]
    assert all(b - a == timedelta(hours=6) for a, b in itertools.pairwise(instants))
    assert {i.minute for i in instants} == {5}
    response = await client.get("/api/v1/triggers/sync/weekends/next?count=4", headers=AUTH)
    body = await response.json()
    assert body["cron"] == ["0 9 * * *", "0 9 * * 6"]
    fires = [f for f in body["items"] if f["note"] != "excluded"]
    assert len(fires) == 4
    days = {datetime.fromisoformat(f["at"].replace("Z", "+00:00")).weekday() for f in fires}
    assert days == {5, 6}
    excluded = [f for f in body["items"] if f["note"] == "excluded"]
    assert excluded and {f["reason"] for f in excluded} <= {
        f"weekday: {d}" for d in ("mon", "tue", "wed", "thu", "fri")}


async def test_a_null_optional_field_is_not_given(client: Client, pool: asyncpg.Pool) -> None:
    """Clients write an absent note as null: pause took it for a wrong type (422)."""
    response = await client.post("/api/v1/triggers/report/nightly/pause", headers=AUTH,
                                 json={"note": None})
    assert response.status == 200, await response.text()
    assert (await response.json())["state"]["note"] is None
    response = await client.post("/api/v1/triggers/report/nightly/resume", headers=AUTH,
                                 json={"note": None, "catch_up": None})
    assert response.status == 200, await response.text()
    response = await client.post("/api/v1/triggers/report/nightly/pause", headers=AUTH,
                                 json={"note": 5})
    assert (response.status, (await response.json())["message"]) == (422, "note must be a string")


async def test_a_catch_up_resume_says_how_many_paused_slots_it_forgot(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The operation counted them (the audit kept the count), the answer dropped it."""
    response = await client.post("/api/v1/triggers/report/nightly/pause", headers=AUTH)
    assert (await response.json())["forgotten_slots"] == 0
    trigger_id, paused_at = await pool.fetchrow(
        "SELECT trigger_id, changed_at FROM trigger_state")
    await pool.execute("UPDATE workflow_triggers"
                       " SET enabled_at = $2::timestamptz - interval '1 day' WHERE id = $1",
                       trigger_id, paused_at)
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome) VALUES"
        " ($1, $2::timestamptz + interval '1 second', 'skipped_paused'),"
        " ($1, $2::timestamptz + interval '2 seconds', 'skipped_paused')", trigger_id, paused_at)
    response = await client.post("/api/v1/triggers/report/nightly/resume", headers=AUTH,
                                 json={"catch_up": True})
    body = await response.json()
    assert (response.status, body["changed"], body["forgotten_slots"]) == (200, True, 2)


async def test_a_number_past_pythons_digit_limit_is_named_as_such(client: Client) -> None:
    """It was refused in Python's words ("use sys.set_int_max_str_digits() to increase
    the limit")."""
    body = '{"input": {"n": ' + "9" * 5001 + "}}"
    response = await client.post("/api/v1/triggers/report/manual/fire", headers={
        **AUTH, "Content-Type": "application/json"}, data=body)
    await expect_error(response, 400, "invalid_json",
                       "malformed JSON: a number with more than 4300 digits")


async def test_backfills_list_pages_filters_and_refuses_bad_parameters(
    client: Client, pool: asyncpg.Pool
) -> None:
    made = []
    for day in range(1, 6):
        answer = await client.post("/api/v1/triggers/report/nightly/backfills", headers=AUTH,
                                   json={"from": f"2026-10-0{day}T00:00:00Z",
                                         "to": f"2026-10-0{day}T23:00:00Z", "rate": "1/s"})
        assert answer.status == 202, await answer.text()
        made.append((await answer.json())["backfill_id"])
    # Three share one instant: a page that ends among them must not skip the others.
    await pool.execute("UPDATE backfills SET created_at = '2026-12-01T00:00:00Z'"
                       " WHERE id = ANY($1::uuid[])", made[1:4])
    canceled = await client.post(f"/api/v1/backfills/{made[0]}/cancel", headers=AUTH)
    assert canceled.status == 200

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=2" + ("" if cursor is None else f"&cursor={cursor}")
        page = await client.get(f"/api/v1/backfills{query}", headers=AUTH)
        assert page.status == 200, await page.text()
        body = await page.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(b["backfill_id"] for b in seen) == sorted(made)
    assert len(seen) == 5
    assert {b["trigger"] for b in seen} == {"report/nightly"}
    assert {b["tenant"] for b in seen} == {"default"}

    only = await client.get("/api/v1/backfills?state=canceled&trigger=report/nightly",
                            headers=AUTH)
    assert [b["backfill_id"] for b in (await only.json())["items"]] == [made[0]]
    for query, status, code, message in [
        ("state=paused", 400, "invalid_parameter",
         "state: 'paused' is not one of running, done, canceled"),
        ("trigger=nightly", 400, "invalid_parameter",
         "trigger: 'nightly' is not workflow_key/trigger_name"),
        ("trigger=report/nope", 404, "not_found", None),
        ("cursor=abc", 400, "invalid_parameter",
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("limit=0", 400, "invalid_parameter", None),
    ]:
        answer = await client.get(f"/api/v1/backfills?{query}", headers=AUTH)
        await expect_error(answer, status, code, message)


@pytest.mark.parametrize("path", ["/api/v1/backfills/{}", "/api/v1/webhook-requests/{}"])
async def test_backfill_and_request_ids_in_other_spellings_are_400(
    offline: Client, path: str
) -> None:
    """uuid.UUID() also reads urn:uuid: ids: they were looked up (200), where every list
    and answer spells an id with its dashes (or, in the CLI, as 32 hex digits)."""
    spelled = "urn:uuid:" + str(uuid.UUID(int=7))
    response = await offline.get(path.format(spelled), headers=AUTH)
    body = await expect_error(response, 400, "bad_request")
    assert "is not a" in body["message"] and "(a UUID)" in body["message"]
