"""``[daemon] definitions`` that no file may hold (an alias bomb, nesting past the limit):
the daemon refuses them at start with the problem's line and exit 2, and a reload keeps the
definitions it has; neither hangs."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.acceptance.conftest import Daemons
from tests.acceptance.test_daemon import write_definitions
from tests.unit.test_definitions import LOL_BOMB

BOMB_PROBLEM = (
    "$: YAML aliases expand this file to more than 1,000,000 values (at line 7): write the"
    " repeated parts out, or use fewer aliases"
)


async def test_daemon_start_refuses_an_alias_bomb_with_its_line(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    bomb = tmp_path / "lol.yaml"
    bomb.write_text(LOL_BOMB, encoding="utf-8")
    config, port = daemons.write_config(
        database_url=dsn, sections={"daemon": {"definitions": [str(bomb)]}}
    )
    daemon = daemons.spawn(config, port)
    assert await daemon.wait_exit(timeout=60) == 2
    assert daemon.stderr_lines == [
        f"{bomb}: {BOMB_PROBLEM}",
        f"triggerd: error: 1 problem in definitions: {bomb}: {BOMB_PROBLEM}",
    ]


async def test_reload_keeps_the_old_definitions_when_new_ones_are_a_bomb_or_too_deep(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    definitions = write_definitions(tmp_path / "greet.json", "greet")
    daemon = await daemons.start(
        database_url=dsn, sections={"daemon": {"definitions": [str(definitions)]}}
    )
    good = definitions.read_text(encoding="utf-8")
    deep = '{"workflows": [],\n "x": ' + "[" * 600 + "]" * 600 + "}\n"
    # A .json file holding YAML is still read as JSON: the bomb goes through a .yaml file.
    bomb = tmp_path / "greet.yaml"
    bomb.write_text(LOL_BOMB, encoding="utf-8")
    cases = [
        (definitions, deep, f"{definitions}: $: nested deeper than 64 levels (at line 2)"),
        (bomb, LOL_BOMB, f"{bomb}: {BOMB_PROBLEM}"),
    ]
    for count, (path, text, problem) in enumerate(cases, start=1):
        path.write_text(text, encoding="utf-8")
        config = daemon.config.read_text(encoding="utf-8")
        daemon.config.write_text(
            config.replace(f'definitions = ["{definitions}"]', f'definitions = ["{path}"]'),
            encoding="utf-8",
        )
        daemon.send(signal.SIGHUP)
        while len(daemon.events_named("reload_refused")) < count:
            assert daemon.events_named("daemon_reloaded") == [], daemon.describe()
            await asyncio.sleep(0.05)  # bounded by the test's own timeout
        refused = daemon.events_named("reload_refused")[-1]
        assert refused["problems"] == [problem], refused
        assert await daemon.get("/healthz") == (200, {"status": "ok"})
        definitions.write_text(good, encoding="utf-8")
        daemon.config.write_text(config, encoding="utf-8")
    assert daemon.events_named("daemon_reloaded") == []
    assert await daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in "\n".join(daemon.stdout_lines + daemon.stderr_lines)
