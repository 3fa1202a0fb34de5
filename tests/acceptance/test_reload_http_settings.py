"""SIGHUP applies new [http] limits to the webhook ingress without a restart."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from tests.acceptance.conftest import DaemonProcess, Daemons

DEFINITIONS = """\
workflows:
  - key: inbox
    name: Inbox
    graph:
      nodes:
        - {id: keep, type: noop}
    triggers:
      - {name: hook, type: webhook, path: inbox/in}
"""


async def post(daemon: DaemonProcess, size: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(
        daemon.base_url + "/hooks/inbox/in",
        data=b"x" * size,
        headers={"Content-Type": "text/plain"},
    ) as response:
        return response.status, await response.json()


async def test_sighup_applies_a_new_max_body_bytes(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    daemon = await daemons.start(
        database_url=dsn,
        sections={
            "http": {"max_body_bytes": 1000},
            "daemon": {"definitions": [str(definitions)]},
        },
    )
    status, body = await post(daemon, 2000)
    assert (status, body["error"]) == (413, "payload_too_large")

    config = daemon.config.read_text()
    assert "max_body_bytes = 1000" in config
    daemon.config.write_text(config.replace("max_body_bytes = 1000", "max_body_bytes = 5000"))
    daemon.send(signal.SIGHUP)
    await daemon.wait_for_event("daemon_reloaded")
    status, body = await post(daemon, 2000)
    assert status == 202, body
    assert daemon.events_named("reload_needs_restart") == []
    assert await daemon.stop(signal.SIGTERM) == 0


async def test_sighup_names_executor_and_scheduler_changes_that_take_a_restart(
    daemons: Daemons, dsn: str
) -> None:
    # Their loops read them when they start: a reload that changed them said nothing.
    daemon = await daemons.start(database_url=dsn)
    config = daemon.config.read_text()
    assert 'poll_interval = "500ms"' in config and "[scheduler]" not in config
    daemon.config.write_text(config.replace('poll_interval = "500ms"', 'poll_interval = "2s"')
                             + '\n[scheduler]\nreconcile_interval = "30s"\n')
    daemon.send(signal.SIGHUP)
    warned = await daemon.wait_for_event("reload_needs_restart")
    assert warned["keys"] == ["executor", "scheduler"]
    assert await daemon.stop(signal.SIGTERM) == 0


TOKEN = "reload-admin-s3cret"
SECRET_DOC = {"workflows": [{
    "key": "sec", "secrets": {"T": {"env": "OTHER_SECRET"}}, "description": "d" * 300,
    "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}


async def admin_post(daemon: DaemonProcess, path: str, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
        daemon.base_url + path, data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.text()


async def test_sighup_applies_new_settings_to_the_admin_api_too(
    daemons: Daemons, dsn: str
) -> None:
    """The admin API kept the start-up [tenants] secret policy, [egress] (test runs) and
    body limit after a reload that changed them, and a second reload of a port change no
    longer said it needs a restart, while going back to the running port did."""
    import json

    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": TOKEN}})
    body = json.dumps(SECRET_DOC).encode()
    status, text = await admin_post(daemon, "/api/v1/definitions?dry_run=true", body)
    assert status == 200, text
    config = daemon.config.read_text()
    port_line = f"port = {daemon.port}"
    assert port_line in config
    daemon.config.write_text(
        config.replace(port_line, f"port = {daemon.port + 1}")
        + '\n[tenants.default]\nsecrets = ["env:ALLOWED_*"]\n')
    daemon.send(signal.SIGHUP)
    await daemon.wait_for_event("daemon_reloaded")
    assert [e["keys"] for e in daemon.events_named("reload_needs_restart")] == [["http.port"]]
    status, text = await admin_post(daemon, "/api/v1/definitions?dry_run=true", body)
    assert status == 422 and "not among the secrets tenant default may use" in text, text

    # The same port change again still needs the restart; the running port does not.
    reloaded = daemon.config.read_text()
    daemon.config.write_text(reloaded.replace("[http]", "[http]\nmax_body_bytes = 200", 1))
    daemon.send(signal.SIGHUP)
    await wait_for_events(daemon, "daemon_reloaded", 2)
    assert [e["keys"] for e in daemon.events_named("reload_needs_restart")] == [
        ["http.port"], ["http.port"]]
    status, text = await admin_post(daemon, "/api/v1/definitions?dry_run=true", body)
    assert status == 413, text
    daemon.config.write_text(daemon.config.read_text().replace(
        f"port = {daemon.port + 1}", port_line))
    daemon.send(signal.SIGHUP)
    await wait_for_events(daemon, "daemon_reloaded", 3)
    assert len(daemon.events_named("reload_needs_restart")) == 2
    assert await daemon.stop(signal.SIGTERM) == 0


async def wait_for_events(daemon: DaemonProcess, name: str, count: int) -> None:
    import asyncio

    for _ in range(400):
        if len(daemon.events_named(name)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} {name!r} events")
