"""The console's webhook inbox (list by outcome, a request's headers and body, replay) and
keyboard use, in Chromium, against a real daemon and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
from playwright.async_api import Browser, Page, expect

from tests.acceptance.conftest import DaemonProcess, Daemons, run_cli
from tests.helpers import wait_for

ADMIN_TOKEN = "inbox-admin-s3cret"

DEFINITIONS = """\
workflows:
  - key: shop
    graph: {nodes: [{id: take, type: set, params: {value: {id: "{{ input.id }}"}}}]}
    triggers:
      - {name: orders, type: webhook, path: shop/orders,
         filter: "{{ input.kind == 'order' }}"}
      # February 29th only: it never fires while a test runs.
      - {name: nightly, type: cron, cron: "0 3 29 2 *"}
"""


async def _daemon(daemons: Daemons, dsn: str, tmp_path: Path) -> DaemonProcess:
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": ADMIN_TOKEN}})
    path = tmp_path / "shop.yaml"
    path.write_text(DEFINITIONS)
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    return daemon


async def _login(page: Page, daemon: DaemonProcess, token: str) -> None:
    await page.goto(f"{daemon.base_url}/ui/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")


async def _deliver(daemon: DaemonProcess, bodies: list[dict[str, object]]) -> None:
    async with aiohttp.ClientSession() as session:
        async def served() -> bool:
            async with session.options(f"{daemon.base_url}/hooks/shop/orders") as response:
                return response.status != 404

        await wait_for(served, timeout=20)
        for body in bodies:
            async with session.post(f"{daemon.base_url}/hooks/shop/orders", json=body,
                                    headers={"X-Shop-Event": "order.created"}) as response:
                assert response.status in (200, 202), await response.text()


async def test_inbox_by_outcome_request_detail_and_replay(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    await _deliver(daemon, [{"kind": "order", "id": 1}, {"kind": "refund", "id": 2},
                            {"kind": "order", "id": 3}])
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.get_by_role("link", name="Webhooks").click()
    await expect(page.locator("#webhook-rows tr")).to_have_count(3)
    await page.screenshot(path=str(artifacts / "webhooks.png"), full_page=True)
    await page.get_by_label("Outcome").select_option("filtered")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("#webhook-rows tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("⊘ filtered")

    # The filtered request: its headers and body, and a replay the filter refuses again.
    await rows.get_by_role("link").click()
    await expect(page.locator("#request-body")).to_contain_text('"kind": "refund"')
    await expect(page.get_by_role("row", name="x-shop-event")).to_contain_text("order.created")
    await page.screenshot(path=str(artifacts / "webhook-request.png"), full_page=True)
    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator("#replay-error")).to_contain_text(
        "does not match the trigger's current filter")

    # An accepted one replays into a new run, shown next.
    await page.goto(f"{daemon.base_url}/ui/webhooks?outcome=accepted")
    await expect(page.locator("#webhook-rows tr")).to_have_count(2)
    await page.locator("#webhook-rows tr").first.get_by_role("link").first.click()
    request_id = page.url.rsplit("/", 1)[1]
    await page.get_by_role("button", name="Replay").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/executions/"
                                   f"{page.url.rsplit('/', 1)[1]}")
    await expect(page.locator("h1")).to_contain_text("Execution")
    conn = await asyncpg.connect(dsn)
    try:
        replayed = await conn.fetchrow(
            "SELECT dedupe_key, replay_of::text AS of FROM workflow_executions"
            " WHERE replay_of IS NOT NULL")
        audit = await conn.fetchrow(
            "SELECT actor, action FROM audit_log WHERE action = 'replay'")
    finally:
        await conn.close()
    assert (replayed["of"], replayed["dedupe_key"]) == (request_id, f"replay:{request_id}:1")
    assert tuple(audit) == ("token:[api] token (config)", "replay")
    listed = await run_cli(daemon.config, "webhooks", "list", "--json")
    assert request_id in {r["id"] for r in listed.json()}

    # Bad ids: not an id (400), unknown (404).
    answer = await page.request.get(f"{daemon.base_url}/ui/webhooks/nope")
    assert answer.status == 400 and "not a webhook request id" in await answer.text()
    answer = await page.request.get(
        f"{daemon.base_url}/ui/webhooks/0190c2a4-0000-7000-8000-000000000000")
    assert answer.status == 404
    answer = await page.request.post(f"{daemon.base_url}/ui/webhooks/{request_id}/replay")
    assert answer.status == 403  # no CSRF token


async def test_a_viewer_sees_the_inbox_but_cannot_replay(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    await _deliver(daemon, [{"kind": "order", "id": 1}])
    created = await run_cli(daemon.config, "token", "create", "--name", "watcher",
                            "--role", "viewer", "--json")
    page = await browser.new_page()
    await _login(page, daemon, created.json()["token"])
    await page.goto(f"{daemon.base_url}/ui/webhooks")
    await page.locator("#webhook-rows tr").first.get_by_role("link").first.click()
    await expect(page.get_by_text("Your token has the viewer role")).to_be_visible()
    await expect(page.get_by_role("button", name="Replay")).to_have_count(0)
    csrf = await page.locator("form.logout input[name=csrf]").get_attribute("value")
    answer = await page.request.post(f"{page.url}/replay", form={"csrf": csrf or ""})
    assert answer.status == 403 and "viewer role" in await answer.text()


async def test_keyboard_only_pause_and_one_h1_and_main_per_page(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await page.goto(f"{daemon.base_url}/ui/")
    # The login page puts the focus in the token field: type, Enter.
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(ADMIN_TOKEN)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")

    await page.goto(f"{daemon.base_url}/ui/triggers/shop/nightly")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")  # to the content: the next tab stops are the page's
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "pause-note":
            break
    else:
        raise AssertionError("the pause note was not reached by keyboard")
    await page.keyboard.type("keyboard only")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Pause"
    await page.keyboard.press("Enter")
    await expect(page.locator("#trigger-state")).to_have_text("⏸ paused")

    for path in ("/ui/", "/ui/workflows", "/ui/workflows/shop", "/ui/triggers",
                 "/ui/triggers/shop/nightly", "/ui/triggers/shop/orders", "/ui/executions",
                 "/ui/webhooks", "/ui/audit"):
        await page.goto(f"{daemon.base_url}{path}")
        assert await page.locator("h1").count() == 1, path
        assert await page.locator("main").count() == 1, path
        assert await page.locator("html").get_attribute("lang") == "en", path


PAGE_DEFINITIONS = """\
workflows:
  - key: pages
    graph:
      nodes:
        - id: answer
          type: respond
          params:
            headers:
              Content-Type: text/html
              Content-Security-Policy: "default-src 'self' 'unsafe-inline'"
              Set-Cookie: "triggerd_session=fixed; Path=/ui/"
            body: >-
              <title>served</title><script>document.title = 'ran ' + document.cookie;
              fetch('/ui/').then(r => r.text()).then(t => { document.title = 'read ' +
              t.length; });</script>
    triggers:
      - {name: page, type: webhook, path: page, methods: [GET], auth: {scheme: none},
         response: sync}
"""


async def test_a_page_a_run_serves_runs_no_script_with_a_console_session(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    # Whoever may apply a workflow (a tenant's admin) served a page whose script read the
    # console's pages and CSRF tokens with the visitor's session (the all-tenant admin's)
    # by setting its own Content-Security-Policy, and could set the session cookie.
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": ADMIN_TOKEN}})
    path = tmp_path / "pages.yaml"
    path.write_text(PAGE_DEFINITIONS)
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    session = {c["name"]: c["value"] for c in await page.context.cookies()}
    assert session.get("triggerd_session") not in (None, "fixed")

    async def served() -> bool:
        response = await page.goto(f"{daemon.base_url}/hooks/page")
        return response is not None and response.status == 200

    await wait_for(served, timeout=20)
    await page.wait_for_timeout(500)  # a script, had it run, has run by now
    assert await page.title() == "served"
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    assert cookies["triggerd_session"] == session["triggerd_session"]
