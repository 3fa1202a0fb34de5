"""Values from outside (definition files, webhook requests, node outputs and errors, notes)
that are markup, script, links or style, on every console page in Chromium: shown as text,
none runs, and none is even an element the page's Content-Security-Policy has to block."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Dialog, Page, expect

from tests.acceptance.conftest import DaemonProcess, Daemons, run_cli
from tests.helpers import wait_for

ADMIN_TOKEN = "hostile-admin-s3cret"

# Each piece would be an element, an attribute, a link or a rule if a page wrote it as
# markup; window.__pwned records any script that ran. No "{{" (node params are templates).
HOSTILE = (
    "\"'><img src=x onerror=\"window.__pwned='img'\">"
    "<script>window.__pwned='script'</script></script></textarea></title></style>"
    "<svg onload=\"window.__pwned='svg'\"><a id=jsurl href=\"javascript:window.__pwned='a'\">"
    "j</a><style>body{display:none}</style><meta http-equiv=refresh content=\"0;url=/x\">"
)


def definitions(version: str) -> str:
    """Two versions differ in the description and a node's value (the diff shows both)."""
    text = json.dumps(HOSTILE + version)
    return f"""\
workflows:
  - key: hostile
    name: {text}
    description: {text}
    graph:
      nodes:
        - {{id: echo, type: set, params: {{value: {{said: "{{{{ input.p }}}}", v: {text}}}}}}}
        - {{id: boom, type: fail, params: {{code: {text}, message: "{{{{ input.p }}}}"}}}}
      edges:
        - {{from: echo, to: boom}}
    triggers:
      - {{name: by-hand, type: manual}}
      - {{name: hook, type: webhook, path: hostile}}
      # February 29th only: it never fires while a test runs.
      - {{name: nightly, type: cron, cron: "0 3 29 2 *", input: {{p: {text}}}}}
      - {{name: daily, type: cron, cron: "0 3 29 2 *"}}
  - key: strict
    parameter_schema: {{type: object, additionalProperties: false}}
    graph: {{nodes: [{{id: a, type: noop}}]}}
    triggers:
      - {{name: by-hand, type: manual}}
"""


# Collects what the page's policy refused, and any dialog a script opened.
WATCH = """
window.__refused = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__refused.push(e.violatedDirective + ' ' + e.blockedURI));
"""


async def _apply(daemon: DaemonProcess, tmp_path: Path, version: str) -> None:
    path = tmp_path / f"hostile-{version}.yaml"
    path.write_text(definitions(version))
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr


async def _api(session: aiohttp.ClientSession, daemon: DaemonProcess, path: str,
               body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(f"{daemon.base_url}/api/v1{path}", json=body,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as answer:
        assert answer.status in (200, 202), await answer.text()
        found: dict[str, Any] = await answer.json()
        return found


async def _store_hostile_values(daemon: DaemonProcess) -> dict[str, str]:
    """Every kind of outside value, stored the ways they arrive; the ids of the objects."""
    found: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        async def served() -> bool:
            async with session.options(f"{daemon.base_url}/hooks/hostile") as response:
                return response.status != 404

        await wait_for(served, timeout=20)
        async with session.post(
                f"{daemon.base_url}/hooks/hostile?q={urllib.parse.quote(HOSTILE)}",
                json={"p": HOSTILE, HOSTILE: HOSTILE},
                headers={"X-Hostile": HOSTILE}) as response:
            assert response.status in (200, 202), await response.text()
        fired = await _api(session, daemon, "/triggers/hostile/by-hand/fire",
                           {"input": {"p": HOSTILE}, "reason": HOSTILE})
        found["execution"] = fired["execution_id"]
        await _api(session, daemon, "/triggers/hostile/nightly/pause", {"note": HOSTILE})
        await _api(session, daemon, "/triggers/hostile/daily/skip", {"next": 1, "note": HOSTILE})
        backfill = await _api(session, daemon, "/triggers/hostile/daily/backfills", {
            "from": "2020-02-01T00:00:00Z", "to": "2020-03-01T00:00:00Z", "note": HOSTILE})
        found["backfill"] = backfill["backfill_id"]
        async with session.get(f"{daemon.base_url}/api/v1/webhook-requests",
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as answer:
            found["request"] = (await answer.json())["items"][0]["id"]

        async def ended() -> bool:
            async with session.get(
                    f"{daemon.base_url}/api/v1/executions/{found['execution']}",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as answer:
                status: str = (await answer.json())["status"]
                return status == "ERROR"

        await wait_for(ended, timeout=30)
    return found


async def _check_page(page: Page, path: str) -> None:
    """Nothing hostile ran, none of it became an element, and the page is shown."""
    assert await page.evaluate("window.__pwned") is None, path
    assert await page.evaluate("window.__refused") == [], path
    assert await page.locator("img[src=x], svg[onload], #jsurl, a[href^='javascript:'],"
                              " meta[http-equiv], main style, main script").count() == 0, path
    assert await page.locator("script").count() == 2, path  # htmx and console.js
    await expect(page.locator("h1")).to_be_visible()
    assert page.url.split("#")[0].endswith(path.split("#")[0]) or "/login" in page.url, path


async def test_hostile_values_are_text_on_every_page(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path, artifacts: Path
) -> None:
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": ADMIN_TOKEN}})
    await _apply(daemon, tmp_path, "1")
    await _apply(daemon, tmp_path, "2")
    ids = await _store_hostile_values(daemon)

    context = await browser.new_context()
    await context.add_init_script(WATCH)
    dialogs: list[str] = []
    page = await context.new_page()

    async def opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", opened)
    await page.goto(f"{daemon.base_url}/ui/login?next={urllib.parse.quote(HOSTILE)}")
    await _check_page(page, "/ui/login")
    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")

    quoted = urllib.parse.quote(HOSTILE, safe="")
    pages = [
        "/ui/", "/ui/workflows", "/ui/workflows/hostile", "/ui/workflows/hostile?from=1&to=2",
        "/ui/triggers", "/ui/triggers/hostile/nightly", "/ui/triggers/hostile/daily",
        "/ui/triggers/hostile/hook", "/ui/triggers/hostile/by-hand", "/ui/executions",
        f"/ui/executions/{ids['execution']}", "/ui/webhooks", f"/ui/webhooks/{ids['request']}",
        "/ui/audit", f"/ui/backfills/{ids['backfill']}",
        # Refusals that quote what was asked for.
        f"/ui/workflows/{quoted}", f"/ui/executions?trigger={quoted}",
        f"/ui/audit?target={quoted}", f"/ui/triggers?workflow={quoted}",
        f"/ui/webhooks?trigger={quoted}", f"/ui/{quoted}",
    ]
    for path in pages:
        await page.goto(f"{daemon.base_url}{path}")
        await _check_page(page, path)
        await page.screenshot(path=str(artifacts / "hostile-last.png"), full_page=True)
    # The values are there, as text.
    await page.goto(f"{daemon.base_url}/ui/workflows/hostile")
    await expect(page.locator("main")).to_contain_text("<script>window.__pwned='script'")
    await page.goto(f"{daemon.base_url}/ui/executions/{ids['execution']}")
    await expect(page.locator("main")).to_contain_text("onerror=")

    # Forms that answer with what was sent: an input the schema refuses, a backfill note.
    await page.goto(f"{daemon.base_url}/ui/triggers/strict/by-hand")
    await page.get_by_label("Input (a JSON object").fill(json.dumps({HOSTILE: HOSTILE}))
    await page.get_by_label("Reason").fill(HOSTILE)
    await page.get_by_role("button", name="Run now").click()
    await expect(page.get_by_role("list", name="Input problems")).to_contain_text("<img")
    await _check_page(page, "/ui/triggers/strict/by-hand/fire")
    await expect(page.get_by_label("Input (a JSON object")).to_have_value(
        json.dumps({HOSTILE: HOSTILE}))
    await page.goto(f"{daemon.base_url}/ui/triggers/hostile/daily")
    await page.get_by_label("From").fill(HOSTILE)
    await page.get_by_label("To", exact=True).fill("2020-03-01T00:00:00Z")
    await page.get_by_role("button", name="Preview (dry run)").click()
    await expect(page.locator("#backfill-error")).to_contain_text("<img")
    await _check_page(page, "/ui/triggers/hostile/daily/backfill")
    await page.wait_for_timeout(300)  # a script, had one been let in, has run by now
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []


def _gadget(kind: str, content_type: str, body: str) -> str:
    return f"""\
  - key: gadget-{kind}
    graph:
      nodes:
        - id: answer
          type: respond
          params: {{headers: {{Content-Type: {content_type}}}, body: "{body}"}}
    triggers:
      - {{name: served, type: webhook, path: gadget-{kind}, methods: [GET],
         auth: {{scheme: none}}, response: sync}}
"""


GADGETS = ("workflows:\n" + _gadget("js", "text/javascript", "window.__pwned = 1")
           + _gadget("css", "text/css", "body { display: none }"))

# What markup let into a page would load: a script and a stylesheet from the console's own
# origin, whose content a run serves.
LOAD = """kind => new Promise(done => {
  const el = document.createElement(kind === 'css' ? 'link' : 'script');
  if (kind === 'css') { el.rel = 'stylesheet'; el.href = '/hooks/gadget-css'; }
  else { el.src = '/hooks/gadget-js'; }
  el.onload = () => done('loaded'); el.onerror = () => done('refused');
  document.head.appendChild(el);
})"""


async def test_a_script_or_style_a_run_serves_is_not_one_the_console_loads(
    browser: Browser, daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """The console's policy allowed scripts and styles from its whole origin ('self'),
    which holds /hooks/...: a run's answer there (written by whoever may apply a workflow,
    a tenant's admin) was a script any markup let into a page could load past the policy,
    with the all-tenant admin's session. Only the console's own assets load now."""
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": ADMIN_TOKEN}})
    path = tmp_path / "gadgets.yaml"
    path.write_text(GADGETS)
    applied = await run_cli(daemon.config, "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    async with aiohttp.ClientSession() as session:
        async def served() -> bool:
            async with session.get(f"{daemon.base_url}/hooks/gadget-js") as response:
                return response.status == 200 and "__pwned" in await response.text()

        await wait_for(served, timeout=20)
    context = await browser.new_context()
    await context.add_init_script(WATCH)
    page = await context.new_page()
    await page.goto(f"{daemon.base_url}/ui/")
    await page.get_by_label("API token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{daemon.base_url}/ui/")
    # The console's own script ran (it fills in the viewer's zone), its style applies.
    await expect(page.locator(".viewer-zone")).not_to_have_text("your zone")
    assert await page.evaluate("getComputedStyle(document.querySelector('a.skip')).position"
                               ) == "absolute"
    for pages in ("/ui/", "/ui/nope"):  # a page, and an error page
        await page.goto(f"{daemon.base_url}{pages}")
        assert await page.evaluate(LOAD, "js") == "refused", pages
        assert await page.evaluate(LOAD, "css") == "refused", pages
        assert await page.evaluate("window.__pwned") is None, pages
        await expect(page.locator("h1")).to_be_visible()
        refused = await page.evaluate("window.__refused")
        assert [r.split(" ")[0] for r in refused] == ["script-src-elem", "style-src-elem"], \
            refused
