"""The console over real loopback HTTP against a real PostgreSQL, with three tenants that
hold the same workflow: logins, the tenant a page works in, bad input of every kind
answered 4xx (never a 500) with nothing changed, and the links each page carries."""

from __future__ import annotations

import gzip
import html
import io
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.helpers import apply_doc, fire
from triggerd.api.auth import StoredTokens
from triggerd.config import ApiSettings, HttpSettings, Settings
from triggerd.console.pages import SHOWN_BYTES, _short_id, form_page
from triggerd.daemon import create_app
from triggerd.store.api_tokens import create_token, revoke_token
from triggerd.tokens import display_prefix, generate_token, hash_token

Client = TestClient[Any, Any]

ALL_TENANTS = "console-all-s3cret"
TENANTS = ("default", "acme", "globex")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def workflow_doc(tenant: str) -> dict[str, Any]:
    """The same workflow, trigger names and webhook path in every tenant."""
    return {"tenant": tenant, "workflows": [{
        "key": "xss",
        "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [
            {"name": "hook", "type": "webhook", "path": "hook"},
            {"name": "every", "type": "cron", "cron": "0 3 * * *"},
            {"name": "by-hand", "type": "manual"},
        ],
    }]}


class Visitor:
    """One browser: its own cookies, logged in with one token."""

    def __init__(self, base: URL) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    def url(self, path: str) -> URL:
        return URL(str(self.base) + path, encoded=True)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.get(self.url(path), allow_redirects=False, **kwargs) as answer:
            return answer.status, await answer.text()

    async def post(self, path: str, form: dict[str, str], **kwargs: Any
                   ) -> tuple[int, str, str | None]:
        async with self.http.post(self.url(path), data={"csrf": self.csrf, **form},
                                  allow_redirects=False, **kwargs) as answer:
            return answer.status, await answer.text(), answer.headers.get("Location")

    async def log_in(self, token: str, next_path: str = "/ui/") -> str | None:
        """Log in through the form; the address the login sends the browser to."""
        _, page = await self.get("/ui/login")
        login_csrf = _field(page, "csrf")
        async with self.http.post(self.url("/ui/login"), allow_redirects=False, data={
                "csrf": login_csrf, "token": token, "next": next_path}) as answer:
            location = answer.headers.get("Location")
            if answer.status != 303:
                return None
        _, home = await self.get("/ui/")
        self.csrf = _field(home, "csrf")
        return location


def _field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def message_of(page: str) -> str:
    """The message of a console error page."""
    found = re.search(r'id="error-message">✗ ([^<]*)</p>', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'(?:href|action)="([^"]*)"', page)]


async def new_token(pool: asyncpg.Pool, name: str, tenant: str | None) -> str:
    token = generate_token()
    await create_token(pool, name=name, role="admin", tenant=tenant,
                       token_hash=hash_token(token), prefix=display_prefix(token))
    return token


@pytest.fixture
async def served(aiohttp_client: Any, pool: asyncpg.Pool) -> Client:
    for tenant in TENANTS:
        await apply_doc(pool, workflow_doc(tenant))
    app = create_app(Settings(api=ApiSettings(token=ALL_TENANTS)), pool,
                     tokens=StoredTokens(pool))
    client: Client = await aiohttp_client(app)
    return client


@pytest.fixture
async def visitors(served: Client) -> AsyncIterator[list[Visitor]]:
    made: list[Visitor] = []
    yield made
    for visitor in made:
        await visitor.close()


@pytest.fixture
async def admin(served: Client, visitors: list[Visitor]) -> Visitor:
    """A session of the all-tenant token."""
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    assert await visitor.log_in(ALL_TENANTS) == "/ui/"
    return visitor


@pytest.fixture
async def acme_admin(served: Client, visitors: list[Visitor], pool: asyncpg.Pool) -> Visitor:
    """A session of an admin token scoped to acme."""
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    assert await visitor.log_in(await new_token(pool, "acme-admin", "acme")) == "/ui/"
    return visitor


async def workflow_states(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT tenant_id, status FROM workflows WHERE key = 'xss'")
    return {r["tenant_id"]: r["status"] for r in rows}


# --- logging in -------------------------------------------------------------------------------


async def test_a_deep_link_keeps_its_whole_query_through_the_login(served: Client,
                                                                   visitors: list[Visitor]
                                                                   ) -> None:
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    wanted = "/ui/executions?status=SUCCESS&trigger=xss/hook&tenant=acme"
    status, _ = await visitor.get(wanted)
    assert status == 303
    async with visitor.http.get(visitor.url(wanted), allow_redirects=False) as answer:
        login_url = answer.headers["Location"]
    _, page = await visitor.get(login_url)
    assert _field(page, "next") == wanted
    assert await visitor.log_in(ALL_TENANTS, next_path=_field(page, "next")) == wanted
    # Still no open redirect: a next= that leaves the console goes home.
    # A dot segment too: /ui/../evil is /evil once the browser resolves it.
    for elsewhere in ("//evil.example/ui/", "https://evil.example/", "/ui/..//evil",
                      "/ui/\\evil", "%2F%2Fevil.example", "/ui/\r\nSet-Cookie: a=b", "/ui/\x00",
                      "/ui/../evil", "/ui/%2e%2e/evil", "/ui/./../x", "/ui/a/../../x"):
        other = Visitor(served.make_url(""))
        visitors.append(other)
        assert await other.log_in(ALL_TENANTS, next_path=elsewhere) == "/ui/", elsewhere


async def test_an_empty_token_is_asked_for_in_the_form_s_words(served: Client,
                                                               visitors: list[Visitor]) -> None:
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    _, page = await visitor.get("/ui/login")
    async with visitor.http.post(visitor.url("/ui/login"), allow_redirects=False, data={
            "csrf": _field(page, "csrf"), "token": "  ", "next": "/ui/"}) as answer:
        assert answer.status == 401
        text = await answer.text()
    assert "✗ enter a token" in text
    assert "Authorization" not in text


async def test_a_token_revoked_seconds_ago_opens_no_session(
    served: Client, visitors: list[Visitor], pool: asyncpg.Pool
) -> None:
    """The API remembers a token it saw for a few seconds; a login does not: a token
    revoked in that window was let in, with a session that ended on the next page."""
    token = await new_token(pool, "leaving", None)
    seen = await served.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
    assert seen.status == 200  # now remembered by the API's cache
    await revoke_token(pool, "leaving")
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    _, page = await visitor.get("/ui/login")
    async with visitor.http.post(visitor.url("/ui/login"), allow_redirects=False, data={
            "csrf": _field(page, "csrf"), "token": token, "next": "/ui/"}) as answer:
        assert answer.status == 401
        assert "token &#39;leaving&#39; has been revoked" in await answer.text()
    assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 0


async def test_the_overview_works_in_the_tenant_asked_for(admin: Visitor,
                                                           pool: asyncpg.Pool) -> None:
    """An all-tenant session's overview with ?tenant=acme listed every tenant's paused
    triggers and counted every tenant's runs."""
    for tenant in ("default", "globex"):
        await pool.execute(
            "INSERT INTO trigger_state (trigger_id, paused, note) SELECT t.id, true, $2"
            " FROM workflow_triggers t WHERE t.tenant_id = $1 AND t.name = 'every'",
            tenant, f"paused in {tenant}")
    status, every = await admin.get("/ui/")
    assert status == 200
    assert "paused in default" in every and "paused in globex" in every
    status, acme = await admin.get("/ui/?tenant=acme")
    assert status == 200
    assert "paused in" not in acme
    _, globex = await admin.get("/ui/?tenant=globex")
    assert "paused in globex" in globex and "paused in default" not in globex


async def test_a_session_ends_when_its_token_expires(
    served: Client, visitors: list[Visitor], pool: asyncpg.Pool
) -> None:
    token = await new_token(pool, "shortlived", None)
    visitor = Visitor(served.make_url(""))
    visitors.append(visitor)
    assert await visitor.log_in(token) == "/ui/"
    assert (await visitor.get("/ui/executions"))[0] == 200
    await pool.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
                       " WHERE name = 'shortlived'")
    status, _ = await visitor.get("/ui/executions")
    assert status == 303  # back to the login page
    _, page = await visitor.get("/ui/login")
    async with visitor.http.post(visitor.url("/ui/login"), allow_redirects=False, data={
            "csrf": _field(page, "csrf"), "token": token, "next": "/ui/"}) as answer:
        assert answer.status == 401
        assert "token &#39;shortlived&#39; expired at " in await answer.text()


async def test_logging_in_again_ends_the_browsers_previous_session(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    old_cookie = {c.key: c.value for c in admin.http.cookie_jar}["triggerd_session"]
    _, page = await admin.get("/ui/login")
    # The login form's field, the page's last (the logged-in page's menu has one first).
    login_csrf = html.unescape(re.findall(r'name="csrf" value="([^"]*)"', page)[-1])
    async with admin.http.post(admin.url("/ui/login"), allow_redirects=False, data={
            "csrf": login_csrf, "token": ALL_TENANTS, "next": "/ui/"}) as answer:
        assert answer.status == 303
    assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 1
    async with aiohttp.ClientSession() as other, other.get(
            admin.url("/ui/"), allow_redirects=False,
            headers={"Cookie": f"triggerd_session={old_cookie}"}) as answer:
        assert answer.status == 303  # the old cookie opens nothing


async def test_a_login_posted_from_another_site_is_refused_even_with_a_planted_cookie(
    admin: Visitor, pool: asyncpg.Pool, served: Client
) -> None:
    """A page on another port of the host (or a sibling subdomain) can write the login
    form's double-submit cookie and post the attacker's token with it: the victim's admin
    session was replaced by the attacker's viewer session. Browsers say where a form comes
    from (Sec-Fetch-Site; older ones only Origin)."""
    viewer = generate_token()
    await create_token(pool, name="attacker", role="viewer", tenant=None,
                       token_hash=hash_token(viewer), prefix=display_prefix(viewer))
    sessions = await pool.fetch("SELECT principal FROM console_sessions")
    planted = {"Cookie": "triggerd_login=PLANTED; " + "; ".join(
        f"{c.key}={c.value}" for c in admin.http.cookie_jar)}
    assert served.port is not None
    other = f"http://{served.host}:{served.port + 1}"
    for headers in ({"Sec-Fetch-Site": "same-site", "Origin": other},
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": other}, {"Origin": "null"}):
        async with aiohttp.ClientSession() as browser, browser.post(
                admin.url("/ui/login"), allow_redirects=False,
                data={"csrf": "PLANTED", "token": viewer, "next": "/ui/"},
                headers={**planted, **headers}) as answer:
            assert answer.status == 403, headers
            assert message_of(await answer.text()).startswith("a form posted from another")
            assert answer.headers["X-Frame-Options"] == "DENY"
    # Nothing changed: the admin's session is the only one, and still works.
    assert await pool.fetch("SELECT principal FROM console_sessions") == sessions
    assert (await admin.get("/ui/"))[0] == 200
    # The console's own pages post as before (a browser says same-origin; a client that
    # says nothing is no browser).
    status, _, _ = await admin.post("/ui/logout", {}, headers={
        "Sec-Fetch-Site": "same-origin", "Origin": str(served.make_url("")).rstrip("/")})
    assert status == 303


async def test_the_inbox_takes_a_trigger_as_its_rows_label_it(admin: Visitor) -> None:
    # An all-tenant session's inbox labels acme's rows acme:xss/hook; the filter with that
    # label said "no trigger named" (the executions page took it).
    status, page = await admin.get("/ui/webhooks?trigger=acme:xss/hook")
    assert status == 200, page
    status, page = await admin.get("/ui/webhooks?trigger=nowhere:xss/hook")
    assert status == 404


def test_short_ids_tell_time_ordered_ids_apart() -> None:
    # The first 8 hex digits of a UUIDv7 are its time to a minute: a burst's runs all
    # showed the same "01a24e0a".
    first, second = "01a24e0a-1b2c-7d3e-8f40-5a6b7c8d9e0f", "01a24e0a-1b2c-7d3e-8f40-5a6b7c8d1234"
    assert _short_id(first) == "01a24e0a…9e0f"
    assert _short_id(first) != _short_id(second)
    assert _short_id("42") == "42"


async def test_raised_refusals_carry_the_consoles_headers(admin: Visitor) -> None:
    # A 404 of the router or a handler's raised 400 went out with none of them.
    for path in ("/ui/nope", "/ui/executions/xx", "/ui/executions?status=%3Cb%3E"):
        async with admin.http.get(admin.url(path), allow_redirects=False) as answer:
            assert answer.status in (400, 404), path
            assert answer.headers["X-Content-Type-Options"] == "nosniff", path
            assert answer.headers["Cache-Control"] == "no-store", path
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


# --- the tenant a page works in ---------------------------------------------------------------


async def test_a_scoped_session_naming_another_tenant_finds_nothing_and_changes_nothing(
    acme_admin: Visitor, pool: asyncpg.Pool
) -> None:
    """As the admin API: acme's token naming ?tenant=default is a 404 on every page and
    action; before, the console worked in acme's namesake (it archived acme's xss)."""
    refused = (404, "nothing here belongs to tenant 'default'")
    status, text, _ = await acme_admin.post("/ui/workflows/xss/archive?tenant=default",
                                            {"note": "wrong tenant"})
    assert (status, message_of(text)) == refused
    for path in ("/ui/workflows/xss?tenant=default", "/ui/triggers?tenant=default",
                 "/ui/triggers/xss/every?tenant=default", "/ui/executions?tenant=globex",
                 "/ui/webhooks?tenant=globex", "/ui/audit?tenant=default"):
        status, text = await acme_admin.get(path)
        assert (status, message_of(text)) == (
            404, refused[1].replace("default", path.rsplit("=")[-1])), path
    assert await workflow_states(pool) == dict.fromkeys(TENANTS, "active")
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action <> 'apply'") == 0
    # Naming its own tenant is fine, and acts there.
    status, _, location = await acme_admin.post("/ui/workflows/xss/archive?tenant=acme", {})
    assert (status, location) == (303, "/ui/workflows/xss?tenant=acme")
    assert await workflow_states(pool) == {"default": "active", "acme": "archived",
                                           "globex": "active"}


async def test_an_all_tenant_session_naming_a_bad_tenant_is_a_bad_request(admin: Visitor
                                                                          ) -> None:
    status, text = await admin.get("/ui/triggers/xss/every?tenant=A%20B")
    assert status == 400
    assert message_of(text).startswith("tenant: 'A B' is invalid: use ")


# --- bad input: a 4xx with the API's words, never a 500, and nothing changed --------------------

NUL = "contains a NUL character (\\u0000), which cannot be stored"
SURROGATE = "contains a lone UTF-16 surrogate, which is not valid Unicode"
OUT_OF_RANGE = "is out of range (1900-01-01 to 9000-01-01)"
ZERO_ID = "00000000000000000000000000000000"

BAD_INPUT: list[tuple[str, dict[str, str] | None, int, str]] = [
    # (path, form (None: a GET), status, words on the answer)
    ("/ui/executions?trigger=x%00y/z", None, 400, f"trigger: {NUL}"),
    ("/ui/webhooks?trigger=a%00b/c", None, 400, f"trigger: {NUL}"),
    ("/ui/audit?target=%00", None, 400, f"target: {NUL}"),
    ("/ui/triggers?workflow=%00", None, 400, f"workflow: {NUL}"),
    (f"/ui/workflows?cursor=%00.{ZERO_ID}", None, 400, f"cursor: {NUL}"),
    ("/ui/audit?cursor=9999999999999999999", None, 400, "cursor: not one this page made"),
    ("/ui/audit?cursor=%C2%B2", None, 400, "cursor: not one this page made"),
    # Checked as the admin API checks them (an unknown type listed nothing at all).
    ("/ui/triggers?type=bogus", None, 400,
     "type: 'bogus' is not one of cron, interval, webhook, manual"),
    (f"/ui/triggers?cursor=XSS.every.{ZERO_ID}", None, 400, "cursor: not one this page made"),
    ("/ui/triggers?cursor=xss.every", None, 400, "cursor: not one this page made"),
    ("/ui/workflows?cursor=xss.zz", None, 400, "cursor: not one this page made"),
    ("/ui/workflows/xss?from=%201&to=1", None, 400, "from and to must be version numbers"),
    # Python's own words ("use sys.set_int_max_str_digits()") were the form's.
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": ' + "1" * 5000 + "}"}, 400,
     "not valid JSON: a number with more than 4300 digits"),
    # A path parameter PostgreSQL cannot store names nothing (the admin API's answer).
    ("/ui/triggers/%00/x", None, 404, "no workflow '\\x00'"),
    ("/ui/triggers/xss/a%00", None, 404, "no trigger 'a\\x00'"),
    ("/ui/workflows/%00", None, 404, "no workflow '\\x00'"),
    ("/ui/triggers/xss/every/pause", {"note": "a\x00b"}, 400, f"note: {NUL}"),
    ("/ui/triggers/xss/every/resume", {"note": "a\x00b"}, 400, f"note: {NUL}"),
    ("/ui/triggers/xss/every/skip", {"note": "a\x00b"}, 400, f"note: {NUL}"),
    ("/ui/workflows/xss/archive", {"note": "a\x00b"}, 400, f"note: {NUL}"),
    ("/ui/workflows/xss/activate", {"note": "a\x00b"}, 400, f"note: {NUL}"),
    ("/ui/triggers/xss/every/backfill", {
        "from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z", "note": "a\x00b",
        "do": "start"}, 400, f"note: {NUL}"),
    ("/ui/triggers/xss/by-hand/fire", {"input": "{}", "reason": "a\x00b"}, 400,
     f"reason: {NUL}"),
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": "x\\u0000y"}'}, 422,
     f"$.a: {NUL}"),
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": "\\ud800"}'}, 422,
     f"$.a: {SURROGATE}"),
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": 1e999}'}, 400,
     "not valid JSON: the number 1e999 is too large"),
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": 1, "a": 2}'}, 400,
     "not valid JSON: duplicate key 'a'"),
    ("/ui/triggers/xss/by-hand/fire", {"input": '{"a": NaN}'}, 400,
     "not valid JSON: NaN is not a JSON value"),
    # null was read as "no input" and started a run; [1] was headed "not valid JSON".
    ("/ui/triggers/xss/by-hand/fire", {"input": "null"}, 422,
     "✗ the input must be a JSON object"),
    ("/ui/triggers/xss/by-hand/fire", {"input": "[1]"}, 422,
     "✗ the input must be a JSON object"),
    ("/ui/triggers/xss/every/backfill", {
        "from": "9999-12-31T23:59:59+14:00", "to": "2024-01-02T00:00:00Z", "do": "preview"},
     422, f"from: '9999-12-31T23:59:59+14:00' {OUT_OF_RANGE}"),
    ("/ui/triggers/xss/every/backfill", {
        "from": "2024-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-14:00", "do": "start"},
     422, f"to: '9999-12-31T23:59:59-14:00' {OUT_OF_RANGE}"),
    ("/ui/triggers/xss/every/backfill", {
        "from": "0001-01-01T00:00:00+14:00", "to": "2024-01-02T00:00:00Z", "do": "start"},
     422, f"from: '0001-01-01T00:00:00+14:00' {OUT_OF_RANGE}"),
]


@pytest.mark.parametrize(("path", "form", "status", "words"), BAD_INPUT,
                         ids=[f"{p} {sorted(f or {})}" for p, f, _, _ in BAD_INPUT])
async def test_bad_input_gets_a_clear_answer_and_changes_nothing(
    admin: Visitor, pool: asyncpg.Pool, path: str, form: dict[str, str] | None, status: int,
    words: str
) -> None:
    if form is None:
        answer_status, text = await admin.get(path)
    else:
        answer_status, text, _ = await admin.post(path, form)
    assert answer_status == status, text
    assert words in html.unescape(re.sub(r"<[^>]+>", "", text))
    assert await workflow_states(pool) == dict.fromkeys(TENANTS, "active")
    for table in ("workflow_executions", "backfills", "trigger_slots"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action <> 'apply'") == 0
    assert await pool.fetchval("SELECT count(*) FROM trigger_state WHERE paused") == 0


# --- links, filters and pages keep the tenant -------------------------------------------------


async def _fire(visitor: Visitor, tenant: str) -> str:
    status, text, location = await visitor.post(
        f"/ui/triggers/xss/by-hand/fire?tenant={tenant}", {"input": "{}"})
    assert status == 303 and location is not None, text
    return location.rsplit("/", 1)[-1]


async def test_an_all_tenant_sessions_filters_find_every_tenants_objects(
    admin: Visitor
) -> None:
    """Without ?tenant= the lists show every tenant's objects, labelled; their filters
    looked in the default tenant only (a workflow key found nothing there, a labelled
    trigger name was a bare 404)."""
    runs = {tenant: await _fire(admin, tenant) for tenant in TENANTS}
    _, page = await admin.get("/ui/triggers?workflow=xss&type=manual")
    for label in ("xss/by-hand", "acme:xss/by-hand", "globex:xss/by-hand"):
        assert f">{label}</a>" in page, label
    status, page = await admin.get("/ui/executions?trigger=acme%3Axss%2Fby-hand")
    assert status == 200, page
    assert runs["acme"] in page
    assert runs["default"] not in page and runs["globex"] not in page


async def test_an_all_tenant_session_stays_in_the_tenant_it_opened(admin: Visitor,
                                                                   pool: asyncpg.Pool) -> None:
    runs = {tenant: await _fire(admin, tenant) for tenant in TENANTS}
    status, _, _ = await admin.post("/ui/triggers/xss/every/pause?tenant=acme", {"note": "n"})
    assert status == 303

    _, page = await admin.get("/ui/triggers/xss/every?tenant=acme")
    assert "<h1>acme:xss/every</h1>" in page
    links = hrefs(page)
    assert "/ui/executions?trigger=xss%2Fevery&tenant=acme" in links
    assert "/ui/audit?target=xss%2Fevery&tenant=acme" in links
    _, page = await admin.get("/ui/audit?target=xss%2Fevery&tenant=acme")
    assert page.count("<td>pause</td>") == 1

    # The runs of acme's trigger, and the refresh of that list, are acme's.
    wanted = "/ui/executions?trigger=xss%2Fby-hand&tenant=acme"
    _, page = await admin.get(wanted)
    assert f'data-refresh="{wanted.replace("&", "&amp;")}"' in page
    assert runs["acme"] in page and runs["default"] not in page
    assert ">acme:xss/by-hand</a>" in page
    status, rows = await admin.get(wanted, headers={"HX-Request": "true"})
    assert status == 200 and rows.lstrip().startswith("<tr>")
    assert runs["acme"] in rows and runs["default"] not in rows and runs["globex"] not in rows
    # Its filter form keeps the tenant.
    assert '<input type="hidden" name="tenant" value="acme">' in page
    # Without ?tenant= the list has every tenant's runs, each named.
    _, page = await admin.get("/ui/executions")
    assert all(run in page for run in runs.values())
    assert ">globex:xss/by-hand</a>" in page and ">xss/by-hand</a>" in page

    # The inbox filter finds acme's trigger (it looked in the default tenant: 404).
    status, page = await admin.get("/ui/webhooks?trigger=xss/hook&tenant=acme")
    assert status == 200, page
    assert '<input type="hidden" name="tenant" value="acme">' in page


async def _acme_workflow_with_manual_triggers(pool: asyncpg.Pool, count: int) -> None:
    """acme's workflow `many` with manual triggers t000, t001, ... (more than a page)."""
    await apply_doc(pool, {"tenant": "acme", "workflows": [{
        "key": "many", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": f"t{n:03}", "type": "manual"} for n in range(count)]}]})


async def test_next_pages_keep_the_tenant_and_only_the_first_page_refreshes(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    await _acme_workflow_with_manual_triggers(pool, 60)
    _, page = await admin.get("/ui/triggers?workflow=many&tenant=acme")
    [next_page] = [h for h in hrefs(page) if "cursor=" in h]
    assert next_page.endswith("&tenant=acme")
    _, page = await admin.get(next_page)
    assert "No triggers" not in page and page.count("acme:many/t0") == 10

    for _ in range(51):
        await _fire(admin, "acme")
    _, page = await admin.get("/ui/executions?tenant=acme")
    assert 'id="live"' in page and "data-refresh=" in page
    [older] = [h for h in hrefs(page) if "cursor=" in h]
    assert older.endswith("&tenant=acme")
    status, page = await admin.get(older)
    assert status == 200
    # An older page is not refreshed: the refresh replaced it with the newest runs.
    assert "data-refresh=" not in page and 'id="live"' not in page
    assert page.count("acme:xss/by-hand</a>") == 1


# --- limits -------------------------------------------------------------------------------------


async def test_a_form_over_256_kib_is_refused_before_it_is_read(
    admin: Visitor, served: Client, visitors: list[Visitor], pool: asyncpg.Pool
) -> None:
    def form(fields: dict[str, str]) -> io.BytesIO:
        # A large body as a stream (aiohttp's client warns about one in a single write).
        return io.BytesIO(urllib.parse.urlencode(fields).encode())

    big = '{"a": "' + "x" * (2 * 1024 * 1024) + '"}'
    async with admin.http.post(admin.url("/ui/triggers/xss/by-hand/fire"), headers=FORM,
                               data=form({"csrf": admin.csrf, "input": big})) as answer:
        assert answer.status == 413
        assert message_of(await answer.text()).endswith(
            "a console form may send at most 256 KiB")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    # Nobody logged in: the login form is refused the same way.
    stranger = Visitor(served.make_url(""))
    visitors.append(stranger)
    async with stranger.http.post(stranger.url("/ui/login"), headers=FORM,
                                  data=form({"token": "x" * (5 * 1024 * 1024)})) as answer:
        assert answer.status == 413
    # A form within the limit still works.
    status, _, _ = await admin.post("/ui/triggers/xss/by-hand/fire",
                                    {"input": '{"a": "' + "x" * 1000 + '"}'})
    assert status == 303
    # A form sent with a Content-Encoding is refused unread (bodies are read as sent).
    encoded = gzip.compress(urllib.parse.urlencode({"csrf": admin.csrf, "input": "{}"}).encode())
    async with admin.http.post(admin.url("/ui/triggers/xss/by-hand/fire"), data=encoded,
                               headers={**FORM, "Content-Encoding": "gzip"}) as answer:
        assert answer.status == 415
        assert message_of(await answer.text()) == \
            "a console form is sent without a Content-Encoding"
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_a_workflow_with_more_triggers_than_its_page_shows_says_so(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    await _acme_workflow_with_manual_triggers(pool, 205)
    _, page = await admin.get("/ui/workflows/many?tenant=acme")
    assert page.count("(manual, enabled)") == 200
    assert 'id="more-triggers"' in page
    assert "/ui/triggers?workflow=many&tenant=acme" in hrefs(page)
    _, page = await admin.get("/ui/workflows/xss?tenant=acme")
    assert page.count("enabled)") == 3 and 'id="more-triggers"' not in page


# --- the session cookie behind a TLS proxy -----------------------------------------------------


@pytest.mark.parametrize(("trusted", "header", "secure"), [
    (("127.0.0.0/8", "::1/128"), "https", True),
    (("127.0.0.0/8", "::1/128"), "http", False),
    (("127.0.0.0/8", "::1/128"), None, False),
    # Anyone may write the header: only a trusted proxy's counts.
    ((), "https", False),
    (("10.0.0.5/32",), "https", False),
])
async def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_browser_used_tls(
    aiohttp_client: Any, pool: asyncpg.Pool, trusted: tuple[str, ...], header: str | None,
    secure: bool
) -> None:
    settings = Settings(api=ApiSettings(token=ALL_TENANTS),
                        http=HttpSettings(trusted_proxies=trusted))
    client: Client = await aiohttp_client(create_app(settings, pool))
    headers = {} if header is None else {"X-Forwarded-Proto": header}
    page = await client.get("/ui/login", headers=headers)
    cookies = page.headers.getall("Set-Cookie")
    login_csrf = _field(await page.text(), "csrf")
    # A Secure cookie does not come back over plain HTTP by itself: the proxy's TLS is not
    # here.
    login_cookie = f"triggerd_login={page.cookies['triggerd_login'].value}"
    answer = await client.post("/ui/login", headers={**headers, "Cookie": login_cookie},
                               allow_redirects=False, data={
        "csrf": login_csrf, "token": ALL_TENANTS, "next": "/ui/"})
    assert answer.status == 303
    cookies += [c for c in answer.headers.getall("Set-Cookie") if "triggerd_session=" in c]
    assert len(cookies) == 2
    for cookie in cookies:
        assert ("; Secure" in cookie) is secure, cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_triggers_of_draft_and_archived_workflows_are_not_shown_running(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    """The console listed them as enabled with a next fire, and the trigger's page said
    running with ten next fires, where the CLI and the API say draft / archived."""
    await pool.execute("UPDATE workflows SET status = 'draft' WHERE tenant_id = 'acme'")
    await pool.execute("UPDATE workflows SET status = 'archived' WHERE tenant_id = 'globex'")
    await pool.execute(
        "INSERT INTO trigger_state (trigger_id, paused) SELECT t.id, true"
        " FROM workflow_triggers t WHERE t.tenant_id = 'default' AND t.name = 'every'")
    status, page = await admin.get("/ui/triggers?type=cron")
    assert status == 200
    rows = {re.sub(r"<[^>]+>", "", row).split()[0]: row
            for row in re.findall(r"<tr>(.*?)</tr>", page, re.S) if "xss/every" in row}
    assert "draft (its workflow)" in rows["acme:xss/every"]
    assert "archived (its workflow)" in rows["globex:xss/every"]
    assert "paused" in rows["xss/every"]
    assert all("<time" not in row for row in rows.values())  # no next fire for any
    _, detail = await admin.get("/ui/triggers/xss/every?tenant=acme")
    assert "not running: its workflow is a draft" in detail
    assert "None: its workflow is a draft" in detail


async def test_the_audit_page_takes_names_as_the_lists_print_them(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    for tenant in TENANTS:
        await pool.execute(
            "INSERT INTO audit_log (tenant_id, actor, action, target_kind, target, note)"
            " VALUES ($1, 'cli:root', 'pause', 'trigger', 'xss/every', $2)",
            tenant, f"note of {tenant}")
    _, bare = await admin.get("/ui/audit?target=xss/every")
    assert "note of default" in bare and "note of acme" not in bare
    _, labelled = await admin.get("/ui/audit?target=acme:xss/every")
    assert "note of acme" in labelled and "note of default" not in labelled


async def test_assets_are_named_by_their_content_so_an_upgrade_is_never_cached_past(
    admin: Visitor,
) -> None:
    # Served for an hour under one URL, a previous release's console.js was kept after an
    # upgrade: the pages' fixes did not reach the browser.
    import hashlib

    from triggerd.console.pages import STATIC

    _, page = await admin.get("/ui/")
    for name in ("console.js", "console.css", "htmx.min.js"):
        digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
        url = f"/ui/static/{name}?v={digest}"
        assert url in page, name
        named = await admin.http.get(admin.url(url))
        assert named.status == 200
        assert named.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert named.headers["X-Content-Type-Options"] == "nosniff"
        assert await named.read() == (STATIC / name).read_bytes()
        for stale in (f"/ui/static/{name}", f"/ui/static/{name}?v=0123456789ab"):
            answer = await admin.http.get(admin.url(stale))
            assert answer.status == 200
            assert answer.headers["Cache-Control"] == "no-cache"


# --- error pages, an ended session, the icon ----------------------------------------------------


async def test_console_errors_are_pages_in_its_layout_with_their_status(
    admin: Visitor, served: Client
) -> None:
    """A refusal or an error under /ui/ was bare text, with no way back into the console."""
    cases = [
        ("/ui/nope", 404, "Not Found", "there is no console page /ui/nope"),
        ("/ui/workflows/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "Not Found",
         "no workflow with key '<script>alert(1)</script>'"),
        ("/ui/triggers?type=%3Cb%3E", 400, "Bad Request",
         "type: '<b>' is not one of cron, interval, webhook, manual"),
        ("/ui/triggers/xss/every/pause", 405, "Method Not Allowed",
         "GET is not allowed here (only POST)"),
        ("/ui/static/nope.js", 404, "Not Found", "no such asset"),
    ]
    for path, status, reason, message in cases:
        async with admin.http.get(admin.url(path), allow_redirects=False) as answer:
            page = await answer.text()
            assert (answer.status, answer.content_type) == (status, "text/html"), path
            assert answer.headers["Cache-Control"] == "no-store", path
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            if status == 405:
                assert answer.headers["Allow"] == "POST"
        assert f"<h1>{status} {reason}</h1>" in page, path
        assert message_of(page) == message, path
        assert "<script>" not in page and "<b>" not in page, path
        assert "/ui/logout" in page or path.startswith("/ui/static/"), path  # the layout
    # A form with a wrong CSRF token: the page, and its 403.
    status, page, _ = await admin.post("/ui/workflows/xss/archive", {"csrf": "forged"})
    assert status == 403
    assert message_of(page) == ("the form's CSRF token is missing or wrong; reload the page"
                                " and try again")
    # The admin API answers as before: JSON, with a token too (its 404 and 405).
    for path in ("/api/v1/workflows", "/api/v1/nope"):
        answer = await served.get(path)
        assert (answer.status, answer.content_type) == (401, "application/json"), path
    bearer = {"Authorization": f"Bearer {ALL_TENANTS}"}
    for method, path, status in (("GET", "/api/v1/nope", 404),
                                 ("DELETE", "/api/v1/workflows", 405)):
        answer = await served.request(method, path, headers=bearer)
        assert (answer.status, answer.content_type) == (status, "application/json"), path


async def test_a_form_sent_after_the_session_ended_gets_the_login_page_back_to_the_form(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    """It was a bare "401" text, with no way on but the browser's back button."""
    await pool.execute("DELETE FROM console_sessions")
    status, page, _ = await admin.post("/ui/triggers/xss/every/pause?tenant=acme",
                                       {"note": "typed"}, headers={"Referer": "x"})
    assert status == 401
    assert "Your console session has ended: the form you sent was not carried out" in page
    assert 'data-unsent' in page
    # The login leads back to the page the form is on, in its tenant.
    assert _field(page, "next") == "/ui/triggers/xss/every?tenant=acme"
    assert await pool.fetchval("SELECT count(*) FROM trigger_state WHERE paused") == 0
    login_csrf = _field(page, "csrf")
    async with admin.http.post(admin.url("/ui/login"), allow_redirects=False, data={
            "csrf": login_csrf, "token": ALL_TENANTS, "next": _field(page, "next")}) as answer:
        assert answer.status == 303
        assert answer.headers["Location"] == "/ui/triggers/xss/every?tenant=acme"
    # Still no open redirect: an action path that leaves the console leads home.
    await pool.execute("DELETE FROM console_sessions")
    status, page, _ = await admin.post("/ui/a/%2e%2e/%2e%2e/x/y", {})
    assert (status, _field(page, "next")) == (401, "/ui/")
    # A page opened with a cookie that opens nothing says that the session ended.
    status, page = await admin.get("/ui/login?next=/ui/audit")
    assert status == 200
    assert "Your console session has ended; log in again." in page
    assert "data-unsent" not in page
    # A logout of a session that ended is done already: to the login page, cookie gone.
    async with admin.http.post(admin.url("/ui/logout"), data={"csrf": admin.csrf},
                               allow_redirects=False) as answer:
        assert (answer.status, answer.headers["Location"]) == (303, "/ui/login")
        assert answer.cookies["triggerd_session"].value == ""


def test_the_page_a_form_is_on_is_its_actions_parent() -> None:
    assert form_page("/ui/triggers/w/t/fire") == "/ui/triggers/w/t"
    assert form_page("/ui/triggers/w/t/pause?tenant=acme") == "/ui/triggers/w/t?tenant=acme"
    assert form_page("/ui/backfills/9/cancel?") == "/ui/backfills/9"
    assert form_page("/ui/logout") == "/ui"


async def test_the_icon_is_served(admin: Visitor, served: Client) -> None:
    """Browsers asked for /favicon.ico on every page and logged its 404."""
    from triggerd.console.pages import STATIC, asset_version

    answer = await served.get("/favicon.ico")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/x-icon"
    assert await answer.read() == (STATIC / "favicon.ico").read_bytes()
    assert (STATIC / "favicon.ico").read_bytes()[:4] == b"\0\0\1\0"  # an icon file
    _, page = await admin.get("/ui/")
    link = f'<link rel="icon" href="/ui/static/favicon.svg?v={asset_version("favicon.svg")}"'
    assert link in page
    icon = await admin.http.get(admin.url(hrefs(link + ">")[0]))
    assert (icon.status, icon.content_type) == (200, "image/svg+xml")
    assert icon.headers["Cache-Control"] == "public, max-age=31536000, immutable"


async def test_an_execution_with_megabyte_values_is_shown_as_a_bounded_page(
        admin: Visitor, pool: asyncpg.Pool) -> None:
    """Every node's input and output was rendered whole: ten nodes of 1.3 MB values made a
    38 MB page. Each value over SHOWN_BYTES is shown as its start, saying so; small ones
    stay whole."""
    big = {"rows": [{"id": i, "name": "<b>" + "x" * 40} for i in range(20_000)]}
    execution_id = await fire(pool, "xss/by-hand", big)
    for n in range(10):
        await pool.execute(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, input,"
            " output, start_time, end_time) VALUES ($1, $2, 'set', 'SUCCESS', $3, $4,"
            " now(), now())", execution_id, f"n{n}", big, {"small": n})
    status, page = await admin.get(f"/ui/executions/{execution_id}")
    assert status == 200
    # 11 cut values (10 node inputs and the run's input) and the page around them.
    assert len(page.encode()) < 12 * 2 * SHOWN_BYTES + 100_000, len(page)
    assert page.count("Too large to show whole: ") == 11
    assert "&lt;b&gt;xxx" in page and "<b>x" not in page
    assert '"small": 3' in html.unescape(page)
    # An output the runner stored cut already shows its size and its preview's start, not
    # the start of the marker's own JSON.
    marker = {"_truncated": True, "size_bytes": 5_000_000, "limit_bytes": 1_048_576,
              "preview": "[{\"id\": 0" + "y" * 100_000}
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, output,"
        " start_time, end_time) VALUES ($1, 'cut', 'set', 'SUCCESS', $2, now(), now())",
        execution_id, marker)
    status, page = await admin.get(f"/ui/executions/{execution_id}")
    assert "Too large to show whole: 5000000 bytes of JSON" in page
    assert '<pre>[{"id": 0yyy' in html.unescape(page)


async def test_the_next_fires_say_which_are_skipped_by_hand_and_past_max_runs(
    admin: Visitor, pool: asyncpg.Pool
) -> None:
    """The trigger's page listed the schedule's next fires as if each would run, where
    `triggers next` marks one skipped by hand and those past what max_runs allows."""
    from datetime import UTC, datetime

    from triggerd.cron import fire_to_json
    from triggerd.schedules import schedule_of
    from triggerd.store.trigger_state import record_manual_skips
    from triggerd.store.workflows import get_trigger

    await pool.execute("UPDATE workflow_triggers SET config = config || '{\"max_runs\": 2}'"
                       " WHERE tenant_id = 'default' AND name = 'every'")
    trigger = await get_trigger(pool, "xss/every")
    upcoming = schedule_of(trigger.type, trigger.config).preview(datetime.now(UTC), 4)
    await record_manual_skips(pool, trigger.id, [upcoming[0].at], detail="x")
    status, page = await admin.get("/ui/triggers/xss/every")
    assert status == 200
    rows = re.findall(r'<tr class="fire ([a-z]*)">(.*?)</tr>', page, re.S)
    shown = [(kind, re.sub(r"<[^>]+>", " ", row).split()[0]) for kind, row in rows[:4]]
    at = [fire_to_json(f)["at"] for f in upcoming]
    assert shown == [("skipped", at[0]), ("", at[1]), ("", at[2]), ("skipped", at[3])]
    assert page.count("⊘ skipped: skipped by hand") == 1
    assert page.count("⊘ skipped: past max_runs") == len(rows) - 3


async def test_a_webhook_request_with_a_large_body_is_shown_as_a_bounded_page(
        admin: Visitor, pool: asyncpg.Pool) -> None:
    """A request's page rendered its body whole (up to max_body_bytes, 10 MB): the start of
    a body over SHOWN_BYTES is shown, saying so and where the whole is; a small one whole."""
    # A text body whose cut splits a 3-byte character: the page still shows it as text.
    big = ('{"text": "<' + "€" * 1_000_000 + '"}').encode()
    small = b'{"text": "<b>small</b>"}'
    rows = [await pool.fetchrow(
        "INSERT INTO webhook_requests (trigger_id, method, path, body, outcome)"
        " SELECT id, 'POST', '/hooks/hook', $1, 'filtered' FROM workflow_triggers"
        " WHERE tenant_id = 'default' AND name = 'hook' RETURNING id::text AS id", body)
        for body in (big, small)]
    status, page = await admin.get(f"/ui/webhooks/{rows[0]['id']}")
    assert status == 200
    assert len(page.encode()) < 2 * SHOWN_BYTES + 50_000, len(page)
    assert (f"Too large to show whole: {len(big)} bytes; its start is below."
            f" <code>triggerd webhooks show {rows[0]['id']}</code>") in page
    shown = re.search(r'<pre id="request-body">([^<]*)</pre>', page)
    assert shown is not None, page
    text = html.unescape(shown.group(1))
    assert text.startswith('{"text": "<€€') and text.endswith("€…")
    assert SHOWN_BYTES - 3 <= len(text[:-1].encode()) <= SHOWN_BYTES
    status, page = await admin.get(f"/ui/webhooks/{rows[1]['id']}")
    assert status == 200
    assert "Too large to show whole" not in page
    shown = re.search(r'<pre id="request-body">([^<]*)</pre>', page)
    assert shown is not None and html.unescape(shown.group(1)) == small.decode(), page


async def test_a_workflow_with_hundreds_of_versions_lists_a_page_and_diffs_the_pair(
        admin: Visitor, pool: asyncpg.Pool) -> None:
    """The page read every version's graph to list them all: it lists the newest
    VERSIONS_SHOWN (older ones by pages) and reads only the two it compares."""
    from triggerd.console.pages import VERSIONS_SHOWN

    async with pool.acquire() as conn, conn.transaction():
        workflow_id = await conn.fetchval(
            "UPDATE workflow_versions v SET is_latest = false FROM workflows w"
            " WHERE w.id = v.workflow_id AND w.tenant_id = 'default' AND w.key = 'xss'"
            " RETURNING w.id")
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest,"
            " published_at) SELECT $1, n, jsonb_build_object('nodes', jsonb_build_array("
            "jsonb_build_object('id', 'a', 'type', 'noop', 'note', 'v' || n))), n = 300,"
            " now() FROM generate_series(2, 300) n", workflow_id)

    def listed(page: str) -> list[int]:
        return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page)]

    def changed(page: str) -> list[str]:
        return [html.unescape(line) for line in
                re.findall(r'<span class="(?:add|remove)">([^<]*)</span>', page)]

    status, page = await admin.get("/ui/workflows/xss")
    assert status == 200
    assert listed(page) == list(range(300, 300 - VERSIONS_SHOWN, -1))
    assert "<dt>Versions</dt><dd>300</dd>" in page
    # By default the newest two are compared.
    assert "<h3>Version 299 → 300</h3>" in page
    assert changed(page) == ['-        "note": "v299",', '+        "note": "v300",']
    older = [h for h in hrefs(page) if "before=" in h]
    assert older == [f"/ui/workflows/xss?before={301 - VERSIONS_SHOWN}"]
    status, page = await admin.get(older[0] + "&from=3&to=250")
    assert status == 200
    assert listed(page) == list(range(300 - VERSIONS_SHOWN, 300 - 2 * VERSIONS_SHOWN, -1))
    assert "<h3>Version 3 → 250</h3>" in page
    assert changed(page) == ['-        "note": "v3",', '+        "note": "v250",']
    assert "Too large to compare whole" not in page
    # The compare form offers this page's versions and the pair compared.
    offered = re.findall(r'<select id="from" name="from">(.*?)</select>', page, re.S)[0]
    assert {3, 250} <= {int(n) for n in re.findall(r'value="(\d+)"', offered)}
    status, page = await admin.get("/ui/workflows/xss?before=0")
    assert (status, message_of(page)) == (400, "before must be a version number")


async def test_login_attempts_are_limited_per_address(
    aiohttp_client: Any, pool: asyncpg.Pool
) -> None:
    """An [api] token chosen by hand could be guessed at the form's full speed: 20 attempts
    at once, then one every 3 s; a successful login gives its attempt back."""
    from triggerd.console.sessions import LOGIN_ATTEMPTS, LOGIN_BURST, LoginAttempts

    clock = [1000.0]
    app = create_app(Settings(api=ApiSettings(token=ALL_TENANTS)), pool,
                     tokens=StoredTokens(pool))
    app[LOGIN_ATTEMPTS] = LoginAttempts(clock=lambda: clock[0])
    client: Client = await aiohttp_client(app)
    visitor, guesser = Visitor(client.make_url("")), Visitor(client.make_url(""))
    try:
        assert await visitor.log_in(ALL_TENANTS) == "/ui/"  # given back: it costs nothing

        async def attempt(token: str) -> tuple[int, str, str | None]:
            _, page = await guesser.get("/ui/login")
            async with guesser.http.post(guesser.url("/ui/login"), allow_redirects=False,
                                         data={"csrf": _field(page, "csrf"), "token": token,
                                               "next": "/ui/"}) as answer:
                return answer.status, await answer.text(), answer.headers.get("Retry-After")

        for n in range(LOGIN_BURST):
            assert (await attempt(f"guess-{n}"))[0] == 401
        status, page, retry = await attempt("guess-more")
        assert (status, retry) == (429, "3")
        assert "✗ too many login attempts from this address; try again in 3 s" in page
        # Refused before the token is looked at: the right one waits too, and opens nothing.
        assert (await attempt(ALL_TENANTS))[0] == 429
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 1
        clock[0] += 3
        assert await Visitor.log_in(guesser, ALL_TENANTS) == "/ui/"
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 2
        await guesser.close()
        guesser = Visitor(client.make_url(""))
        assert (await attempt("guess-late"))[0] == 401  # the login gave its attempt back
        assert (await attempt("guess-later"))[0] == 429
    finally:
        await visitor.close()
        await guesser.close()


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same host's /64
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    (None, "unknown"),
])
def test_login_attempts_of_an_ipv6_host_share_its_64(address: str | None, key: str) -> None:
    from triggerd.console.sessions import login_key
    from triggerd.webhooks.allowlist import client_ip

    # As the login's address is made: the peer through client_ip.
    assert login_key(client_ip(address, [], ())) == key


async def test_cross_site_refusals_are_logged_at_info_and_rate_limited(
    aiohttp_client: Any, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who reaches the port can post with another Origin: each refusal was a warning
    line, as many as the client sent."""
    from triggerd.console.sessions import CROSS_SITE_BURST, CROSS_SITE_LOG, cross_site_log

    clock = [1000.0]
    app = create_app(Settings(api=ApiSettings(token=ALL_TENANTS)), pool,
                     tokens=StoredTokens(pool))
    app[CROSS_SITE_LOG] = cross_site_log(lambda: clock[0])
    client: Client = await aiohttp_client(app)
    caplog.set_level(logging.INFO, logger="triggerd.console.sessions")

    async def refused() -> None:
        answer = await client.post("/ui/logout", headers={"Origin": "http://evil.example"})
        assert answer.status == 403

    for _ in range(CROSS_SITE_BURST + 25):
        await refused()
    clock[0] += 1.0
    await refused()
    lines = [(r.levelno, getattr(r, "event", None), getattr(r, "suppressed", None))
             for r in caplog.records if r.name == "triggerd.console.sessions"]
    assert lines == [(logging.INFO, "console_cross_site_refused", None)] * CROSS_SITE_BURST + [
        (logging.INFO, "log_suppressed", 25), (logging.INFO, "console_cross_site_refused", None)]


async def test_csrf_refusals_are_logged_at_info_and_rate_limited(
    aiohttp_client: Any, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """A session posting forms with a wrong CSRF token wrote a warning line each, as many
    as it sent; the line names the client."""
    from triggerd.console.sessions import CROSS_SITE_BURST, CSRF_LOG, cross_site_log

    clock = [1000.0]
    app = create_app(Settings(api=ApiSettings(token=ALL_TENANTS)), pool,
                     tokens=StoredTokens(pool))
    app[CSRF_LOG] = cross_site_log(lambda: clock[0], event="console_csrf_refused")
    client: Client = await aiohttp_client(app)
    visitor = Visitor(client.make_url(""))
    try:
        assert await visitor.log_in(ALL_TENANTS) == "/ui/"
        caplog.set_level(logging.INFO, logger="triggerd.console.sessions")
        for _ in range(CROSS_SITE_BURST + 5):
            status, _, _ = await visitor.post("/ui/logout", {"csrf": "wrong"})
            assert status == 403
        clock[0] += 1.0
        assert (await visitor.post("/ui/logout", {"csrf": "wrong"}))[0] == 403
    finally:
        await visitor.close()
    lines = [(r.levelno, getattr(r, "event", None), getattr(r, "suppressed", None))
             for r in caplog.records if r.name == "triggerd.console.sessions"]
    assert lines == [(logging.INFO, "console_csrf_refused", None)] * CROSS_SITE_BURST + [
        (logging.INFO, "log_suppressed", 5), (logging.INFO, "console_csrf_refused", None)]
    first = next(r for r in caplog.records if getattr(r, "event", None) == "console_csrf_refused")
    assert first.__dict__["remote"] == "127.0.0.1"
