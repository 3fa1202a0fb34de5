"""The console's pages and actions, in Chromium, against a real daemon and PostgreSQL."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from playwright.async_api import Browser, Page, Request, Response, expect

from tests.acceptance.conftest import DaemonProcess, Daemons, run_cli

ADMIN_TOKEN = "console-admin-s3cret"

DEFINITIONS = """\
workflows:
  - key: orders
    parameter_schema:
      type: object
      required: [count]
      properties: {count: {type: integer, minimum: 1}}
    graph:
      nodes:
        - {id: check, type: if, params: {condition: "{{ input.count > 2 }}"}}
        - {id: big, type: set, params: {value: {size: big}}}
        - {id: small, type: set, params: {value: {size: small}}}
      edges:
        - {from: check, to: big, when: "true"}
        - {from: check, to: small, when: "false"}
    triggers:
      - {name: by-hand, type: manual}
      # February 29th only: it never fires while a test runs (tests count the runs).
      - {name: nightly, type: cron, cron: "0 3 29 2 *", timezone: Europe/Madrid,
         input: {count: 5}}
"""


async def _daemon(daemons: Daemons, dsn: str, tmp_path: Path) -> DaemonProcess:
    daemon = await daemons.start(database_url=dsn,
                                 sections={"api": {"token": ADMIN_TOKEN}})
    path = tmp_path / "orders.yaml"
    path.write_text(DEFINITIONS)
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    return daemon


async def _login(page: Page, daemon: DaemonProcess, token: str) -> None:
    await page.goto(f"{daemon.base_url}/ui/")
    await expect(page).to_have_url(f"{daemon.base_url}/ui/login?next=/ui/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Log in").click()


def _message(page: str) -> str:
    """The message of a console error page."""
    found = re.search(r'id="error-message">✗ ([^<]*)</p>', page)
    assert found is not None, page
    return html.unescape(found.group(1))


async def test_login_pages_logout(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, "wrong-token")
    await expect(page.get_by_role("alert")).to_have_text("✗ invalid bearer token")
    # A screen reader hears the error with the field it concerns.
    await expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("API token")).to_have_accessible_description(
        "✗ invalid bearer token")
    await page.screenshot(path=str(artifacts / "login.png"), full_page=True)

    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")
    await expect(page.get_by_role("heading", name="Readiness: ✓ ready")).to_be_visible()
    await expect(page.locator("#scheduler-lag")).to_have_text("0.0 s")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "triggerd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    await page.get_by_role("link", name="Triggers").click()
    await expect(page.get_by_role("link", name="orders/nightly")).to_be_visible()
    await page.screenshot(path=str(artifacts / "triggers.png"), full_page=True)
    await page.get_by_role("link", name="orders/nightly").click()
    await expect(page.get_by_role("heading", name="orders/nightly")).to_be_visible()
    # Ten next fires, each in UTC and in the trigger's zone.
    rows = page.locator("section:has(#fires-h) tbody tr")
    await expect(rows).to_have_count(10)
    assert "+01:00" in (await rows.first.inner_text()) or \
        "+02:00" in (await rows.first.inner_text())
    await page.screenshot(path=str(artifacts / "trigger.png"), full_page=True)

    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/login")
    await page.goto(f"{daemon.base_url}/ui/executions")
    await expect(page).to_have_url(f"{daemon.base_url}/ui/login?next=/ui/executions")


async def test_post_without_csrf_token_is_refused(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")
    url = f"{daemon.base_url}/ui/triggers/orders/by-hand/fire"
    answer = await page.request.post(url, form={"input": '{"count": 3}'})
    assert answer.status == 403
    assert "CSRF token is missing or wrong" in await answer.text()
    answer = await page.request.post(url, form={"input": '{"count": 3}', "csrf": "forged"})
    assert answer.status == 403
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action <> 'apply'") == 0
    finally:
        await conn.close()


async def test_viewer_can_look_but_not_act(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    created = await run_cli(daemon.config, "token", "create", "--name", "watcher",
                            "--role", "viewer", "--json")
    assert created.returncode == 0, created.stderr
    page = await browser.new_page()
    await _login(page, daemon, created.json()["token"])
    await expect(page.get_by_text("watcher (viewer)")).to_be_visible()
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/by-hand")
    await expect(page.get_by_text("Your token has the viewer role")).to_be_visible()
    await expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    # Even a well-formed form (with the session's CSRF token) is refused.
    csrf = await page.locator("form.logout input[name=csrf]").get_attribute("value")
    answer = await page.request.post(f"{daemon.base_url}/ui/triggers/orders/by-hand/fire",
                                     form={"input": '{"count": 3}', "csrf": csrf or ""})
    assert answer.status == 403
    assert "viewer role" in await answer.text()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 0
    finally:
        await conn.close()


async def _fire(daemon: DaemonProcess, run_input: dict[str, object] | None = None) -> str:
    """Fire orders/by-hand through the CLI; the new run's id."""
    fired = await run_cli(daemon.config, "triggers", "fire", "orders/by-hand", "--input",
                          json.dumps(run_input or {"count": 3}), "--json")
    assert fired.returncode == 0, fired.stderr
    return str(fired.json()["execution_id"])


async def _wait_final(dsn: str, execution_id: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(300):
            status = await conn.fetchval(
                "SELECT status FROM workflow_executions WHERE id = $1", execution_id)
            if status in ("SUCCESS", "ERROR", "CANCELED"):
                return str(status)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"execution {execution_id} did not finish")


async def test_run_now_shows_input_errors_then_the_graph_of_the_path_taken(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/by-hand")
    await page.get_by_label("Input (a JSON object").fill('{"count": 0}')
    await page.get_by_role("button", name="Run now").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "✗ the input does not match the workflow's parameter_schema (1 problem)")
    problems = page.get_by_role("list", name="Input problems")
    await expect(problems).to_have_text("$.count: 0 is less than the minimum of 1")
    # What was typed stays in the editor, which is marked invalid and described by the
    # problems (a screen reader in the field heard nothing of them).
    editor = page.get_by_label("Input (a JSON object")
    await expect(editor).to_have_value('{"count": 0}')
    await expect(editor).to_have_attribute("aria-invalid", "true")
    await expect(editor).to_have_accessible_description(re.compile(
        r"does not match the workflow's parameter_schema.*"
        r"\$\.count: 0 is less than the minimum of 1"))
    await page.screenshot(path=str(artifacts / "run-now-error.png"), full_page=True)

    await page.get_by_label("Input (a JSON object").fill('{"count": 5}')
    await page.get_by_label("Reason").fill("checking the console")
    await page.get_by_role("button", name="Run now").click()
    await page.wait_for_url(re.compile(r".*/ui/executions/[0-9a-f-]{36}$"))
    execution_id = page.url.rsplit("/", 1)[-1]
    assert await _wait_final(dsn, execution_id) == "SUCCESS"
    await page.reload()
    await expect(page.locator("#run-status")).to_have_text("✓ SUCCESS")
    taken = page.locator('g.edge[data-from="check"][data-to="big"]')
    not_taken = page.locator('g.edge[data-from="check"][data-to="small"]')
    await expect(taken).to_have_attribute("data-taken", "yes")
    await expect(not_taken).to_have_attribute("data-taken", "no")
    await expect(page.locator('g.node[data-node="big"]')).to_have_attribute(
        "data-status", "SUCCESS")
    await expect(page.locator('g.node[data-node="small"]')).to_have_attribute(
        "data-status", "SKIPPED")
    await page.screenshot(path=str(artifacts / "execution.png"), full_page=True)

    await page.get_by_role("link", name="Executions").click()
    await expect(page.locator("#execution-rows tr")).to_have_count(1)
    await page.screenshot(path=str(artifacts / "executions.png"), full_page=True)
    conn = await asyncpg.connect(dsn)
    try:
        audit = await conn.fetchrow("SELECT actor, action, note FROM audit_log"
                                    " WHERE action <> 'apply'")
        context = json.loads(await conn.fetchval(
            "SELECT context::text FROM workflow_executions WHERE id = $1", execution_id))
    finally:
        await conn.close()
    assert tuple(audit) == ("token:[api] token (config)", "fire", "checking the console")
    assert context["trigger"]["fired_by"] == "console"


async def test_workflow_versions_and_their_difference(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    changed = tmp_path / "orders-v2.yaml"
    changed.write_text(DEFINITIONS.replace("minimum: 1", "minimum: 2"))
    applied = await run_cli(daemon.config, "apply", str(changed))
    assert applied.returncode == 0, applied.stderr
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.get_by_role("link", name="Workflows").click()
    await page.get_by_role("link", name="orders").click()
    await expect(page.get_by_role("heading", name="Version 1 → 2")).to_be_visible()
    diff = page.get_by_label("Difference between the versions")
    await expect(diff.locator("span.remove")).to_have_text(['-            "minimum": 1,'])
    await expect(diff.locator("span.add")).to_have_text(['+            "minimum": 2,'])
    await page.screenshot(path=str(artifacts / "workflow-versions.png"), full_page=True)
    await page.goto(f"{daemon.base_url}/ui/workflows/orders?from=1&to=1")
    await expect(page.get_by_text("The two versions are identical.")).to_be_visible()
    answer = await page.request.get(f"{daemon.base_url}/ui/workflows/orders?from=1&to=9")
    assert answer.status == 404
    assert _message(await answer.text()) == "workflow orders has no version 1 or 9"


async def test_unknown_objects_and_bad_parameters_get_clear_answers(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    base = daemon.base_url
    cases = [
        ("/ui/triggers/orders/nope", 404, "no trigger named 'orders/nope'"),
        ("/ui/workflows/nope", 404, "no workflow with key 'nope'"),
        ("/ui/executions/not-an-id", 404, "no execution 'not-an-id'"),
        ("/ui/executions?status=DONE", 400, "status: 'DONE' is not a run status"),
        ("/ui/triggers?cursor=x", 400, "cursor: not one this page made"),
        ("/ui/executions?cursor=x", 400,
         "cursor: not a cursor returned by this API (pass next_cursor back)"),
        ("/ui/workflows/orders?from=a&to=1", 400, "from and to must be version numbers"),
    ]
    for path, status, text in cases:
        answer = await page.request.get(base + path)
        assert (answer.status, _message(await answer.text())) == (status, text), path

    # A filter naming no trigger is refused at the field, with the form to correct it (it
    # was a bare text page).
    await page.goto(f"{base}/ui/executions")
    await page.get_by_label("Trigger").fill("orders/nope")
    async with page.expect_response(re.compile(r"/ui/executions\?")) as answered:
        await page.get_by_role("button", name="Filter").click()
    assert (await answered.value).status == 404
    await expect(page.get_by_role("alert")).to_have_text("✗ no trigger named 'orders/nope'")
    await expect(page.get_by_label("Trigger")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Trigger")).to_have_accessible_description(
        "✗ no trigger named 'orders/nope'")
    await page.get_by_label("Trigger").fill("orders/by-hand")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("alert")).to_have_count(0)
    await expect(page.locator("#execution-rows")).to_have_text("No executions.")


async def test_trigger_page_marks_calendar_excluded_days(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    day_off = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    path = tmp_path / "calendar.yaml"
    path.write_text(f"""\
calendars:
  - {{name: office, timezone: UTC, weekdays: [mon, tue, wed, thu, fri, sat, sun],
     dates: [{day_off}]}}
workflows:
  - key: daily
    graph: {{nodes: [{{id: a, type: noop}}]}}
    triggers:
      - {{name: morning, type: cron, cron: "0 9 * * *", calendar: {{skip: office}}}}
""")
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/daily/morning")
    excluded = page.locator("section:has(#fires-h) tr.excluded")
    await expect(excluded).to_have_count(1)
    await expect(excluded).to_contain_text(f"{day_off}T09:00:00Z")
    await expect(excluded).to_contain_text(f"⊘ excluded: date off: {day_off}")
    # Ten fires besides the excluded one.
    await expect(page.locator("section:has(#fires-h) tbody tr")).to_have_count(11)
    # The calendar: 7 days back, today, 7 ahead; the day off marked, recorded slots counted.
    conn = await asyncpg.connect(dsn)
    try:
        yesterday = datetime.now(UTC).replace(hour=9, minute=0, second=0,
                                              microsecond=0) - timedelta(days=1)
        await conn.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
            " SELECT id, $1, 'skipped_misfire' FROM workflow_triggers WHERE name = 'morning'",
            yesterday)
    finally:
        await conn.close()
    await page.reload()
    days = page.locator("table.calendar tbody tr")
    await expect(days).to_have_count(15)
    await expect(page.locator('table.calendar tr[aria-current="date"]')).to_contain_text(
        "(today)")
    marked = page.locator("table.calendar tr.excluded")
    await expect(marked).to_have_count(1)
    await expect(marked).to_contain_text(f"{day_off}")
    await expect(marked).to_contain_text(f"⊘ excluded: date off: {day_off}")
    await expect(marked).to_contain_text("none")
    await expect(days.nth(6)).to_contain_text("⌛ 1 skipped_misfire")
    await expect(days.nth(8)).to_contain_text("◌ 1 fire(s)")
    await page.screenshot(path=str(artifacts / "trigger-calendar.png"), full_page=True)


async def test_pause_in_the_console_shows_as_paused_in_the_cli(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/nightly")
    await page.get_by_label("Note (why").fill("vendor maintenance")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#trigger-state")).to_have_text("⏸ paused")
    await expect(page.get_by_role("status")).to_contain_text("vendor maintenance")
    await page.screenshot(path=str(artifacts / "trigger-paused.png"), full_page=True)

    listed = await run_cli(daemon.config, "triggers", "list")
    line = next(x for x in listed.stdout.splitlines() if x.startswith("orders/nightly"))
    assert line.split()[2] == "paused"
    audit = await run_cli(daemon.config, "audit", "--json")
    [row] = [r for r in audit.json() if r["action"] != "apply"]
    assert (row["actor"], row["action"], row["note"]) == (
        "token:[api] token (config)", "pause", "vendor maintenance")

    # The CLI resumes it; the console shows it running, and the actions on the trigger.
    assert (await run_cli(daemon.config, "triggers", "resume", "orders/nightly")).returncode == 0
    await page.reload()
    await expect(page.locator("#trigger-state")).to_have_text("✓ running")
    actions = page.locator("section:has(#actions-h) tbody tr")
    await expect(actions).to_have_count(2)
    await expect(actions.first).to_contain_text("resume")
    await page.get_by_role("link", name="Audit").click()
    await expect(page.locator("main tbody tr")).to_have_count(3)  # with the apply
    await page.screenshot(path=str(artifacts / "audit.png"), full_page=True)


async def test_archive_and_activate_a_workflow_in_the_console(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/workflows/orders")
    await page.get_by_label("Note (why").fill("replaced by orders-v2")
    await page.get_by_role("button", name="Archive").click()
    await expect(page.get_by_role("status")).to_contain_text("Archived")
    listed = await run_cli(daemon.config, "workflows", "list", "--json")
    assert [(w["key"], w["status"]) for w in listed.json()] == [("orders", "archived")]
    fired = await run_cli(daemon.config, "triggers", "fire", "orders/by-hand")
    assert fired.returncode == 4
    await page.get_by_role("button", name="Activate").click()
    await expect(page.get_by_role("button", name="Archive")).to_be_visible()
    audit = await run_cli(daemon.config, "audit", "--target", "orders", "--json")
    assert [(r["action"], r["note"]) for r in audit.json()] == [
        ("activate", None), ("archive", "replaced by orders-v2")]


async def test_backfill_preview_lists_the_slots_then_the_run_shows_its_progress(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/nightly")
    await page.get_by_label("From").fill("2016-01-01T00:00:00Z")
    await page.get_by_label("To", exact=True).fill("2025-01-01T00:00:00Z")
    await page.get_by_role("button", name="Preview (dry run)").click()
    preview = page.get_by_role("table", name="Backfill preview")
    # 03:00 in Madrid (UTC+1 in February) on each February 29th of the range.
    await expect(preview.locator("tbody tr td:first-child")).to_have_text([
        "2016-02-29T02:00:00Z", "2020-02-29T02:00:00Z", "2024-02-29T02:00:00Z"])
    await expect(preview.locator("tbody tr td:nth-child(2)")).to_have_text(["▶ start"] * 3)
    await page.screenshot(path=str(artifacts / "backfill-preview.png"), full_page=True)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM backfills") == 0
    finally:
        await conn.close()

    await page.get_by_role("button", name="Start backfill").click()
    await page.wait_for_url(re.compile(r".*/ui/backfills/[0-9a-f-]{36}$"))
    await expect(page.locator("#backfill-state")).to_have_text("✓ done", timeout=20_000)
    await expect(page.locator("#backfill-counts")).to_have_text(
        "3/3 handled: 3 started, 0 already decided elsewhere")
    await page.screenshot(path=str(artifacts / "backfill.png"), full_page=True)

    # A bad range is refused on the trigger's page, with the operation's message.
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/nightly")
    await page.get_by_label("From").fill("2024-11-04T00:00:00Z")
    await page.get_by_label("To", exact=True).fill("2024-11-01T00:00:00Z")
    await page.get_by_role("button", name="Preview (dry run)").click()
    await expect(page.locator("#backfill-error")).to_have_text(
        "✗ the range is empty: to (2024-11-01T00:00:00Z) must be after from"
        " (2024-11-04T00:00:00Z)")
    await expect(page.get_by_label("To", exact=True)).to_have_accessible_description(
        re.compile("the range is empty"))


ACME = DEFINITIONS.replace("key: orders", "key: invoices")


async def test_a_tenant_token_sees_only_its_tenant(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    """A token scoped to acme (token create --tenant acme), in the console: acme's
    workflow (applied with apply --tenant acme) and its runs are there, the default
    tenant's are not, and addressing them is a 404 like a name that does not exist."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    path = tmp_path / "acme.yaml"
    path.write_text(ACME)
    applied = await run_cli(daemon.config, "--tenant", "acme", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    fired = await run_cli(daemon.config, "triggers", "fire", "orders/by-hand",
                          "--input", '{"count": 3}', "--json")
    assert fired.returncode == 0, fired.stderr
    default_run = fired.json()["execution_id"]
    acme_fired = await run_cli(daemon.config, "triggers", "fire", "invoices/by-hand",
                               "--input", '{"count": 1}', "--tenant", "acme", "--json")
    assert acme_fired.returncode == 0, acme_fired.stderr
    created = await run_cli(daemon.config, "token", "create", "--name", "acme-ops",
                            "--tenant", "acme", "--json")
    assert created.returncode == 0, created.stderr
    page = await browser.new_page()
    await _login(page, daemon, created.json()["token"])
    await page.get_by_role("link", name="Triggers").click()
    await expect(page.get_by_role("link", name="invoices/nightly")).to_be_visible()
    await expect(page.get_by_role("link", name="orders/nightly")).to_have_count(0)
    await page.get_by_role("link", name="Executions").click()
    acme_run = acme_fired.json()["execution_id"]
    await expect(page.locator(f"a[href$='/executions/{acme_run}']")).to_have_count(1)
    await expect(page.locator(f"a[href$='/executions/{default_run}']")).to_have_count(0)
    await page.screenshot(path=str(artifacts / "tenant-executions.png"), full_page=True)
    base = daemon.base_url
    for target, text in [
        ("/ui/triggers/orders/nightly", "no trigger named 'acme:orders/nightly'"),
        ("/ui/workflows/orders", "no workflow with key 'acme:orders'"),
        (f"/ui/executions/{default_run}", f"no execution {default_run}"),
    ]:
        answer = await page.request.get(base + target)
        assert (answer.status, _message(await answer.text())) == (404, text), target
    # The CLI, which works in every tenant, lists both runs; --tenant narrows it.
    both = await run_cli(daemon.config, "executions", "list", "--json")
    assert sorted(r["tenant"] for r in both.json()) == ["acme", "default"]
    only = await run_cli(daemon.config, "executions", "list", "--tenant", "acme", "--json")
    assert [r["workflow"] for r in only.json()] == ["invoices"]


async def test_an_all_tenant_session_opens_and_acts_on_the_tenant_it_clicked(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    """Two tenants with the same workflow: an all-tenant token's lists name each one's
    (acme:orders/nightly), its links carry the tenant, and a pause there pauses acme's
    trigger. Names resolved in the default tenant: the link opened, and paused, the
    default tenant's namesake."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    path = tmp_path / "acme-orders.yaml"
    path.write_text(DEFINITIONS)
    applied = await run_cli(daemon.config, "--tenant", "acme", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.get_by_role("link", name="Triggers").click()
    await expect(page.get_by_role("link", name="orders/nightly", exact=True)).to_have_count(1)
    await page.get_by_role("link", name="acme:orders/nightly").click()
    await expect(page).to_have_url(re.compile(r"/ui/triggers/orders/nightly\?tenant=acme$"))
    await page.get_by_label("Note (why").fill("acme's vendor")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#trigger-state")).to_have_text("⏸ paused")
    await expect(page).to_have_url(re.compile(r"\?tenant=acme$"))
    await page.screenshot(path=str(artifacts / "tenant-paused.png"), full_page=True)
    states = {}
    for tenant in ("acme", "default"):
        listed = await run_cli(daemon.config, "--tenant", tenant, "triggers", "list")
        line = next(x for x in listed.stdout.splitlines() if "orders/nightly" in x)
        states[tenant] = line.split()[2]
    assert states == {"acme": "paused", "default": "enabled"}
    # The workflow list names the tenant too, and its page shows acme's.
    await page.get_by_role("link", name="Workflows").click()
    await page.get_by_role("link", name="acme:orders").click()
    await expect(page).to_have_url(re.compile(r"/ui/workflows/orders\?tenant=acme$"))
    # A tenant name that is not one is refused.
    answer = await page.request.get(f"{daemon.base_url}/ui/triggers/orders/nightly?tenant=A%20B")
    assert answer.status == 400
    assert _message(await answer.text()).startswith("tenant: 'A B' is invalid: use ")


def _is_refresh(response: Response) -> bool:
    return _is_refresh_request(response.request)


def _is_refresh_request(request: Request) -> bool:
    return "/ui/executions" in request.url and request.headers.get("hx-request") == "true"


# The refresh period of console.js. The live-refresh tests install Playwright's clock on
# the page (it keeps running in real time) and jump it ahead by one period for each refresh:
# waiting for the page's own 3 s timer took most of their run time.
REFRESH_MS = 3000


async def _next_refresh(page: Page) -> None:
    """Fire the page's refresh timer once and wait for its answer."""
    async with page.expect_response(_is_refresh):
        await page.clock.fast_forward(REFRESH_MS)


async def test_live_refresh_keeps_the_tenant_and_stops_when_the_session_ends(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """The executions list of acme's trigger refreshes with acme's runs (it showed the
    default tenant's), and when the session ends the refresh shows the login page as a
    page (it put the whole login page inside the table)."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    path = tmp_path / "acme-orders.yaml"
    path.write_text(DEFINITIONS)
    applied = await run_cli(daemon.config, "--tenant", "acme", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    runs = {}
    for tenant in ("acme", "default"):
        fired = await run_cli(daemon.config, "--tenant", tenant, "triggers", "fire",
                              "orders/by-hand", "--input", '{"count": 3}', "--json")
        assert fired.returncode == 0, fired.stderr
        runs[tenant] = fired.json()["execution_id"]
    page = await browser.new_page()
    await page.clock.install()
    await _login(page, daemon, ADMIN_TOKEN)
    listed = f"{daemon.base_url}/ui/executions?trigger=orders/by-hand&tenant=acme"
    await page.goto(listed)
    for _ in range(2):
        await _next_refresh(page)
    rows = page.locator("#execution-rows")
    await expect(rows.locator(f"a[href$='/executions/{runs['acme']}']")).to_have_count(1)
    await expect(rows.locator(f"a[href$='/executions/{runs['default']}']")).to_have_count(0)

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM console_sessions")
    finally:
        await conn.close()
    async with page.expect_navigation(url=re.compile(r"/ui/login\?next=")):
        await page.clock.fast_forward(REFRESH_MS)
    await expect(page.get_by_role("heading", name="Log in")).to_have_count(1)
    await expect(page.locator("#execution-rows")).to_have_count(0)
    # Logging in again comes back to the list, with its tenant and filter.
    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/ui/executions\?trigger=orders/by-hand&tenant=acme$"))


async def test_live_refresh_waits_while_the_keyboard_focus_is_in_the_list(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """A keyboard user tabbing through the executions list keeps their place: the refresh
    replaced the rows under the focused link every 3 s, and the focus fell to the page's
    start. It refreshes again once the focus leaves the list."""
    daemon = await _daemon(daemons, dsn, tmp_path)

    first = await _fire(daemon)
    page = await browser.new_page()
    await page.clock.install()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/executions")
    rows = page.locator("#execution-rows")
    link = rows.locator(f"a[href$='/executions/{first}']")
    await link.focus()
    second = await _fire(daemon)
    # The timer's callback sends its request as it runs, so the request event of a refresh
    # is in before fast_forward returns: none is sent in two periods.
    refreshes: list[Request] = []
    page.on("request", lambda request: refreshes.append(request)
            if _is_refresh_request(request) else None)
    for _ in range(2):
        await page.clock.fast_forward(REFRESH_MS)
    assert refreshes == []
    await expect(link).to_be_focused()
    await expect(rows.locator(f"a[href$='/executions/{second}']")).to_have_count(0)

    await page.get_by_label("Trigger").focus()
    await _next_refresh(page)
    await expect(rows.locator(f"a[href$='/executions/{second}']")).to_have_count(1)


async def test_bidi_controls_in_a_run_s_json_are_shown_as_escapes(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """A right-to-left override in a run's input turned the rest of its line around on
    the page (``"\\u202eevil"`` read ``live"``); the JSON shows it as its escape."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    execution_id = await _fire(daemon, {"count": 3, "file": "invoice\u202efdp.exe"})
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/executions/{execution_id}")
    run_input = page.locator("section:has(#io-h) pre").first
    await expect(run_input).to_contain_text('"file": "invoice\\u202efdp.exe"')
    assert "\u202e" not in await run_input.inner_text()


async def test_long_unbroken_values_do_not_widen_the_pages(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """A note or an error of one long word wrapped nowhere: the audit trail was six
    screens wide and an execution's error thirty."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    execution_id = await _fire(daemon)
    assert await _wait_final(dsn, execution_id) == "SUCCESS"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE workflow_executions SET error_code = 'FAILED',"
                           " error_message = repeat('E', 3000) WHERE id = $1", execution_id)
    finally:
        await conn.close()
    page = await browser.new_page(viewport={"width": 1000, "height": 800})
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/nightly")
    await page.get_by_label("Note (why;").fill("N" * 500)
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#trigger-state")).to_have_text("⏸ paused")
    for path in ("/ui/triggers/orders/nightly", "/ui/audit", "/ui/",
                 f"/ui/executions/{execution_id}"):
        await page.goto(f"{daemon.base_url}{path}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1000, (path, width)


async def test_live_refresh_leaves_unchanged_rows_in_place(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """The list is a live region: each refresh replaced its rows with the same rows, and a
    screen reader read the whole table again every 3 s. An unchanged list stays; a new
    run still shows."""
    daemon = await _daemon(daemons, dsn, tmp_path)

    first = await _fire(daemon)
    assert await _wait_final(dsn, first) == "SUCCESS"
    page = await browser.new_page()
    await page.clock.install()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/executions")
    for _ in range(2):  # the first refresh may put the rows in as the partial writes them
        await _next_refresh(page)
    row = page.locator(f"#execution-rows tr:has(a[href$='/executions/{first}'])")
    await row.evaluate("row => { window.keptRow = row; }")
    for _ in range(2):
        await _next_refresh(page)
    await page.wait_for_timeout(200)  # the swap htmx would make after the answer
    assert await page.evaluate("window.keptRow.isConnected")

    second = await _fire(daemon)
    await _next_refresh(page)
    await expect(page.locator(f"#execution-rows a[href$='/executions/{second}']")
                 ).to_have_count(1)


async def _end_console_sessions(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM console_sessions")
    finally:
        await conn.close()


async def test_a_form_sent_after_the_session_ended_comes_back_with_what_was_typed(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    """A form sent after the session ended was answered with a bare "401" text: the
    operator had to find their way back and type it all again."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    trigger_page = f"{daemon.base_url}/ui/triggers/orders/nightly"
    await page.goto(trigger_page)
    await page.get_by_label("Note (why;").fill("the warehouse is closed for stocktaking")
    await _end_console_sessions(dsn)
    async with page.expect_response(re.compile(r"/pause$")) as answered:
        await page.get_by_role("button", name="Pause").click()
    assert (await answered.value).status == 401
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text(
        "Your console session has ended: the form you sent was not carried out. Log in"
        " again to return to its page and send it again.")
    await page.screenshot(path=str(artifacts / "session-ended.png"), full_page=True)
    # A mistyped token first: what was typed is still kept.
    await page.get_by_label("API token").fill("wrong-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("✗ invalid bearer token")
    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(trigger_page)
    note = page.get_by_label("Note (why;")
    await expect(note).to_have_value("the warehouse is closed for stocktaking")
    await expect(note).to_be_focused()
    await expect(page.get_by_role("status").filter(has_text="is back in this form")
                 ).to_be_visible()
    await expect(page.locator("#trigger-state")).to_have_text("✓ running")  # nothing done
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#trigger-state")).to_have_text("⏸ paused")
    await expect(page.locator("p.paused")).to_contain_text(
        "the warehouse is closed for stocktaking")
    # A form that was sent is not put back anywhere later.
    await page.goto(trigger_page)
    await expect(page.get_by_label("Note", exact=True).first).to_have_value("")
    # Kept ten minutes at most: a login much later (another operator at this browser)
    # finds nothing of it.
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#trigger-state")).to_have_text("✓ running")
    await page.get_by_label("Note (why;").fill("typed long ago")
    await _end_console_sessions(dsn)
    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await page.evaluate("""() => {
        const saved = JSON.parse(sessionStorage.getItem("triggerd-unsent"));
        saved.at -= 11 * 60 * 1000;
        sessionStorage.setItem("triggerd-unsent", JSON.stringify(saved));
    }""")
    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(trigger_page)
    await expect(page.get_by_label("Note (why;")).to_have_value("")
    await expect(page.get_by_role("status").filter(has_text="is back in this form")
                 ).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('triggerd-unsent')") is None


async def test_console_errors_are_pages_with_the_way_back(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    answer = await page.goto(f"{daemon.base_url}/ui/workflows/%3Cb%3Enope")
    assert answer is not None and answer.status == 404
    await expect(page).to_have_title("404 Not Found · triggerd console")
    await expect(page.get_by_role("heading", name="404 Not Found")).to_be_visible()
    await expect(page.get_by_role("alert")).to_have_text("✗ no workflow with key '<b>nope'")
    await page.screenshot(path=str(artifacts / "not-found.png"), full_page=True)
    await page.get_by_role("link", name="Back to the overview").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")
    answer = await page.goto(f"{daemon.base_url}/ui/no/such/page")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("alert")).to_have_text(
        "✗ there is no console page /ui/no/such/page")
    await expect(page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Triggers")).to_be_visible()


async def test_bidi_controls_in_names_and_notes_do_not_turn_the_line_around(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """A right-to-left override in a note or a name reversed the rest of its line (the
    paused notice read backwards after the note); the pages show it as its escape, as
    the JSON blocks do, and the line keeps its order."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    await _login(page, daemon, ADMIN_TOKEN)
    await page.goto(f"{daemon.base_url}/ui/triggers/orders/nightly")
    await page.get_by_label("Note (why;").fill("see invoice\u202efdp.exe")
    await page.get_by_role("button", name="Pause").click()
    notice = page.locator("p.paused")
    await expect(notice).to_contain_text(
        ": see invoice\\u202efdp.exe. Its slots are recorded skipped_paused.")
    assert "\u202e" not in await notice.inner_text()
    await page.goto(f"{daemon.base_url}/ui/audit")
    cell = page.get_by_role("cell", name="see invoice")
    await expect(cell).to_have_text("see invoice\\u202efdp.exe")
    # A name typed in a filter: the error shows the escape, the field keeps what was typed.
    await page.goto(f"{daemon.base_url}/ui/executions")
    await page.get_by_label("Trigger").fill("orders/\u2067nope")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "✗ no trigger named 'orders/\\u2067nope'")
    await expect(page.get_by_label("Trigger")).to_have_value("orders/\u2067nope")


async def test_the_browser_finds_the_console_s_icon(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """Every page load logged a 404 for /favicon.ico in the browser's console."""
    daemon = await _daemon(daemons, dsn, tmp_path)
    page = await browser.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    await _login(page, daemon, ADMIN_TOKEN)
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")
    href = await page.locator("link[rel=icon]").get_attribute("href")
    assert href is not None
    # Both icons decode as images in the browser.
    for url in (href, "/favicon.ico"):
        width = await page.evaluate(
            """url => new Promise((done, failed) => { const img = new Image();
                 img.onload = () => done(img.naturalWidth); img.onerror = failed;
                 img.src = url; })""", url)
        assert width > 0, url
    answer = await page.request.get(f"{daemon.base_url}/favicon.ico")
    assert (answer.status, answer.headers["content-type"]) == (200, "image/x-icon")
    assert missing == []
