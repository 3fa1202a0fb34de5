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
