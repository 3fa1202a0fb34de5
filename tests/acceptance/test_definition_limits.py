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


async def test_a_reload_whose_apply_fails_says_so_and_one_that_collides_is_tried_again(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """Replicas reloaded by one deploy insert the same new workflow at once; the loser's
    reload ended without a word (its error was never read) and its new settings were
    dropped. A PostgreSQL trigger stands in for the other replica: a unique violation once
    (tried again: applied), then any error (refused, named, the old settings kept)."""
    import asyncpg

    definitions = write_definitions(tmp_path / "greet.json", "greet")
    daemon = await daemons.start(
        database_url=dsn, sections={"daemon": {"definitions": [str(definitions)]}})
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""
            CREATE SEQUENCE collisions;  -- not rolled back with the failed apply
            CREATE FUNCTION collide() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('collisions') = 1 THEN
                    RAISE unique_violation USING MESSAGE = 'another replica was first';
                END IF;
                IF NEW.key = 'broken' THEN
                    RAISE EXCEPTION 'the database refused it';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER collide BEFORE INSERT ON workflows
                FOR EACH ROW EXECUTE FUNCTION collide();""")
        config = daemon.config.read_text(encoding="utf-8")
        second = write_definitions(tmp_path / "more.json", "more")
        daemon.config.write_text(config.replace(
            f'definitions = ["{definitions}"]', f'definitions = ["{definitions}", "{second}"]'
        ).replace('level = "info"', 'level = "info"\n# reloaded'), encoding="utf-8")
        daemon.send(signal.SIGHUP)
        await daemon.wait_for_event("daemon_reloaded")
        [retry] = daemon.events_named("definitions_apply_retry")
        assert retry["error"] == "UniqueViolationError: another replica was first", retry
        assert await conn.fetchval("SELECT count(*) FROM workflows WHERE key = 'more'") == 1

        broken = write_definitions(tmp_path / "broken.json", "broken")
        daemon.config.write_text(daemon.config.read_text(encoding="utf-8").replace(
            f'"{second}"]', f'"{second}", "{broken}"]'), encoding="utf-8")
        daemon.send(signal.SIGHUP)
        refused = await daemon.wait_for_event("reload_refused")
        assert refused["level"] == "error"
        assert refused["error"] == "RaiseError: the database refused it", refused
        assert "send SIGHUP again" in refused["msg"]
        assert len(daemon.events_named("daemon_reloaded")) == 1
        assert await conn.fetchval("SELECT count(*) FROM workflows WHERE key = 'broken'") == 0
        assert await daemon.get("/healthz") == (200, {"status": "ok"})
    finally:
        await conn.close()
    assert await daemon.stop(signal.SIGTERM) == 0
