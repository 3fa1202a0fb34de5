"""The ``triggerd`` command (DESIGN §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn

import asyncpg

from triggerd import __version__, db
from triggerd.config import Settings, describe_keys, load_settings
from triggerd.errors import DefinitionError, TriggerdError, UsageError
from triggerd.logs import setup_logging

EPILOG = f"""configuration keys (TOML [section] key, or the environment variable):
{describe_keys()}
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _pool(settings: Settings) -> AbstractAsyncContextManager[asyncpg.Pool]:
    return db.open_pool(settings, migrate_first=True)


# --- commands ------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.daemon import run_daemon

    setup_logging(settings.log.level, settings.log.format)
    await run_daemon(settings)
    return 0


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    dsn = await db.resolve_dsn(settings)
    report = await db.migrate(dsn)
    if report.applied:
        for name in report.applied:
            print(f"applied {name}")
    else:
        print(f"schema is up to date (migration {report.current:04d})")
    return 0


def _print_problems(exc: DefinitionError) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.definitions import check_files

    problems = check_files(args.files)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        print(f"triggerd: {len(problems)} problem(s) found; nothing was changed", file=sys.stderr)
        return 2
    print(f"ok: {len(args.files)} file(s) valid")
    return 0


async def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.definitions import load_files
    from triggerd.store.workflows import apply_workflows

    specs = load_files(args.files)  # raises DefinitionError before touching the database
    async with _pool(settings) as pool, pool.acquire() as conn:
        report = await apply_workflows(conn, specs, prune=args.prune)
    for line in report.lines:
        print(line)
    if not report.changed:
        print("no changes")
    return 0


def _trigger_json(t: Any) -> dict[str, Any]:
    return {
        "name": t.full_name,
        "workflow": t.workflow_key,
        "trigger": t.name,
        "type": t.type,
        "enabled": t.enabled,
        "version": t.version,
        "config": t.config,
        "input": t.input,
        "id": t.id,
        "enabled_at": t.enabled_at,
        "updated_at": t.updated_at,
    }


async def cmd_triggers_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.workflows import list_triggers

    async with _pool(settings) as pool:
        triggers = await list_triggers(pool)
    if args.json:
        print_json([_trigger_json(t) for t in triggers])
        return 0
    rows = [
        [
            t.full_name,
            t.type,
            "yes" if t.enabled else "no",
            t.workflow_key,
            "latest" if t.version is None else str(t.version),
            _describe_trigger(t.type, t.config),
        ]
        for t in triggers
    ]
    print(_table(rows, ["NAME", "TYPE", "ENABLED", "WORKFLOW", "VERSION", "SCHEDULE/PATH"]))
    return 0


def _describe_trigger(kind: str, config: dict[str, Any]) -> str:
    if kind == "cron":
        return f"{config.get('cron')} {config.get('timezone', 'UTC')}"
    if kind == "webhook":
        return "/hooks/" + str(config.get("path"))
    return ""


async def cmd_triggers_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.workflows import get_trigger

    async with _pool(settings) as pool:
        trigger = await get_trigger(pool, args.name)
    doc = _trigger_json(trigger)
    if args.json:
        print_json(doc)
        return 0
    for key, value in doc.items():
        print(f"{key + ':':<12} {json.dumps(value, default=_json_default) if isinstance(value, dict) else value}")
    return 0


async def cmd_triggers_enable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_enabled(args.name, settings, True)


async def cmd_triggers_disable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_enabled(args.name, settings, False)


async def _set_enabled(name: str, settings: Settings, enabled: bool) -> int:
    from triggerd.store.workflows import set_trigger_enabled

    async with _pool(settings) as pool:
        _, changed = await set_trigger_enabled(pool, name, enabled)
    word = "enabled" if enabled else "disabled"
    print(f"{name}: {word}" if changed else f"{name}: already {word}")
    return 0


# --- parser --------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="triggerd",
        description="Cron and webhook trigger daemon for workflows.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="TOML configuration file (default: $TRIGGERD_CONFIG)")
    parser.add_argument("--version", action="version", version=f"triggerd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="run the daemon")
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("migrate", help="apply database migrations, then exit")
    p.set_defaults(handler=cmd_migrate)
    p = sub.add_parser("check", help="validate definition files, change nothing")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(handler=cmd_check)
    p = sub.add_parser("apply", help="upsert workflows, publish changed versions, upsert triggers")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--prune", action="store_true",
                   help="delete triggers the files no longer list (default: disable them)")
    p.set_defaults(handler=cmd_apply)

    triggers = sub.add_parser("triggers", help="list, show, enable, disable or fire triggers")
    tsub = triggers.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    tsub.required = True
    p = tsub.add_parser("list", help="list triggers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_triggers_list)
    p = tsub.add_parser("show", help="show one trigger")
    p.add_argument("name", metavar="NAME", help="workflow_key/trigger_name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_triggers_show)
    p = tsub.add_parser("enable", help="enable a trigger")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_triggers_enable)
    p = tsub.add_parser("disable", help="disable a trigger")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_triggers_disable)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        settings = load_settings(args.config)
        handler: Handler = args.handler
        return asyncio.run(handler(args, settings))
    except DefinitionError as exc:
        _print_problems(exc)
        print(f"triggerd: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except TriggerdError as exc:
        print(f"triggerd: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
