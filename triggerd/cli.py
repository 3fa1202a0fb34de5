"""The ``triggerd`` command (DESIGN §5)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import re
import select
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from triggerd import __version__, db, runtime
from triggerd.config import Settings, describe_keys, load_settings
from triggerd.errors import (
    ConfigError,
    DatabaseError,
    DefinitionError,
    InputInvalid,
    NotFound,
    Problem,
    TriggerdError,
    UsageError,
    name_inputs,
)
from triggerd.jsonrules import (
    JsonRefusal,
    finite_float,
    no_duplicates,
    refuse_constant,
    too_many_digits,
)
from triggerd.logs import setup_logging
from triggerd.model import (
    CORRELATION_COLUMNS,
    DEFAULT_TENANT,
    ExecutionStatus,
    audit_target_problem,
    key_filter_problem,
    labelled_target,
    tenant_label,
    trigger_filter_problem,
)
from triggerd.positions import decode_position, encode_position
from triggerd.storable import is_bigint_text, storage_problem, unstorable
from triggerd.store.records import TriggerRecord
from triggerd.store.trigger_state import COUNTED_SLOTS
from triggerd.terminal import printable, printable_line
from triggerd.tokens import check_tenant
from triggerd.views import (
    audit_json,
    backfill_json,
    execution_json,
    node_json,
    planned_json,
    slot_json,
    state_change_json,
    trigger_json,
    trigger_state,
)

DEBUG_ENV = "TRIGGERD_DEBUG"
EXIT_UNAVAILABLE = 5
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h
EXIT_CLOSED_OUTPUT = 141  # 128 + SIGPIPE: what a shell reports for `git log | head`
EXIT_OUTPUT_FAILED = 74  # EX_IOERR of sysexits.h: the output could not be written
# Errors of a write to a full, read-only or failing file system: never of a socket.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})

EPILOG = f"""configuration keys (TOML [section] key, or the environment variable):
{describe_keys()}

relative paths in a configuration file are resolved against the file's directory; in
TRIGGERD_* variables, against the working directory.

execution ids: a full UUID, or 8 or more of its leading hex digits when only one
execution's id starts with them.

exit status:
  0   ok
  1   a run waited for (--wait) ended ERROR or CANCELED
  2   bad input or usage (also an ambiguous id prefix)
  3   not found
  4   not allowed in the current state (e.g. cancelling a finished run; a database schema
      older than this triggerd (run 'triggerd migrate') or with edited migrations)
  5   unavailable (the database cannot be reached, the HTTP port is in use)
  70  internal error (set {DEBUG_ENV}=1 to see the traceback)
  74  the output could not be written (e.g. a full disk)
  141 stdout was closed by its reader (e.g. '| head'); nothing is printed on stderr
"""


class _StoreOnce(argparse._StoreAction):
    """An option that takes one value refuses a second: argparse kept the last silently,
    so ``--status SUCCESS --status ERROR`` listed only the runs that ended ERROR."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._given_in: argparse.Namespace | None = None  # the parse that had it

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string is not None:  # positionals are taken once by argparse itself
            if self._given_in is namespace:
                raise UsageError(repeated_option(option_string, parser.prog))
            self._given_in = namespace
        super().__call__(parser, namespace, values, option_string)


def repeated_option(option: str, prog: str) -> str:
    return f"{option} given twice; it takes one value (see '{prog} --help')"


_ASCII_INTEGER = re.compile(r"-?[0-9]+")


def _ascii_int(text: str) -> int:
    """An ``int`` option's value: ASCII digits, as the API reads ``?limit=`` and
    ``?count=``. ``int()`` also took ' 5', '+5', '1_0' and other scripts' digits (Arabic-
    Indic 3, U+0663), which the API refuses (400): ``skip --next`` with that skipped three
    slots."""
    if _ASCII_INTEGER.fullmatch(text) is None:
        raise ValueError(text)  # argparse: "invalid int value: '...'"
    return int(text)  # ValueError past its digit limit, the same answer


def _ascii_float(text: str) -> float:
    """A ``float`` option's value, by the same rule: ASCII, no spaces or underscores."""
    if not text.isascii() or text != text.strip() or "_" in text:
        raise ValueError(text)
    return float(text)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every valued option of every command (no command's option takes a list).
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        # Every type=int and type=float option of every command (errors still name the type).
        self.register("type", int, _ascii_int)
        self.register("type", float, _ascii_float)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _home(args: argparse.Namespace) -> str:
    """The tenant names are looked up in: --tenant, else the default one."""
    return args.tenant or DEFAULT_TENANT


def _correlation_id(flag: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not 1 <= len(value) <= 200:
            raise argparse.ArgumentTypeError(f"{flag} must be 1-200 characters")
        return value
    return check


def _check_range(option: str, value: int, high: int) -> None:
    """A count or limit option's bounds, said in one way by every command."""
    if not 1 <= value <= high:
        raise UsageError(f"{option}: {value} is out of range 1-{high}")


def checked_filter(field: str, value: str | None,
                   problem_of: Callable[[str], str | None]) -> str | None:
    """A filter's value that cannot be what it filters on is bad input (exit 2), as the
    API's 400 for the same query: not a name that is not found (exit 3)."""
    problem = None if value is None else problem_of(value)
    if problem is not None:
        raise UsageError(problem, field=field)
    return value


def _tenant_name(value: str) -> str:
    """A tenant option's value: refused like every other bad option value (argparse names
    the option and points at --help)."""
    try:
        return check_tenant(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    """``--tenant NAME`` on the command and on every sub-command (before or after the
    sub-command: given after, it wins); commands without it work in the default tenant for
    names and in every tenant for lists."""
    parser.add_argument("--tenant", metavar="NAME", type=_tenant_name,
                        default=argparse.SUPPRESS if parser.prog != "triggerd" else None,
                        help="the tenant to work in (default: names in 'default', lists"
                             " of every tenant)")


def _name(value: str) -> str:
    """An argument stored in or looked up in the database (a name, a note, a reason): bytes
    that are not UTF-8 reach Python as lone surrogates, which the database cannot take, so
    they are bad input, not an error of ours."""
    if unstorable(value) is not None:
        raise argparse.ArgumentTypeError(f"{value!r} is not valid UTF-8 text")
    return value


def _path(value: str) -> Path:
    return Path(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _text(value: Any) -> str:
    """A value as text output shows it: no Python reprs (None, True, datetime(...)), no
    control characters that would drive the terminal."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, dict | list):
        return printable(json.dumps(value, default=_json_default, ensure_ascii=False))
    return printable(str(value))


def _when(value: datetime | None) -> str:
    """An instant as a list's cell: to the second, as every list prints times."""
    return "-" if value is None else value.isoformat(timespec="seconds")


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    rows = [[printable_line(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _pool(settings: Settings) -> AbstractAsyncContextManager[asyncpg.Pool]:
    # Only `migrate` and `run` migrate (DESIGN §5b): this refuses an older schema (exit 4)
    # and works, with a warning, on a newer one (a rolling upgrade).
    return db.open_pool(settings, migrate_first=False)


_WARNING_HANDLER = "triggerd-cli-warnings"


def _print_warnings() -> None:
    """Warnings of commands other than ``run`` (e.g. a schema newer than this triggerd)
    go to stderr as one line each, like errors."""
    package = logging.getLogger("triggerd")
    if any(h.get_name() == _WARNING_HANDLER for h in package.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_WARNING_HANDLER)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("triggerd: warning: %(message)s"))
    # `triggerd test` prints how its run ended: the executor's own line for a failed run
    # ("triggerd: warning: execution finished") only repeated it, without the why.
    handler.addFilter(lambda record: getattr(record, "event", None) != "execution_finished")
    package.addHandler(handler)


# --- commands ------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.daemon import run_daemon

    setup_logging(settings.log.level, settings.log.format)
    await run_daemon(settings)
    return 0


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    dsn = await db.resolve_dsn(settings)
    report = await db.migrate(db.direct_dsn(settings, dsn))
    if args.json:
        print_json({"applied": list(report.applied), "current": report.current})
        return 0
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
    from triggerd.definitions.api import load_files_by_file
    from triggerd.definitions.loading import expand_paths
    from triggerd.secrets import refused_secret_problems

    depth = settings.executor.max_workflow_depth
    problems = check_files(args.files, max_workflow_depth=depth)
    if not problems:  # secrets the daemon would refuse, under this configuration
        # The files together (one may use another's calendar), each one's workflows apart.
        for path, specs in load_files_by_file(args.files, tenant=args.tenant,
                                              max_workflow_depth=depth):
            problems += refused_secret_problems(path, specs, settings, os.environ)
    if args.json:
        print_json([_problem_json(problem) for problem in problems])
        return 2 if problems else 0
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        print(f"triggerd: {len(problems)} problem(s) found; nothing was changed", file=sys.stderr)
        return 2
    print(f"ok: {len(expand_paths(args.files))} file(s) valid")
    return 0


def _problem_json(problem: Problem) -> dict[str, str]:
    return {"file": problem.file, "path": problem.path, "message": problem.message}


async def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.definitions import load_files
    from triggerd.definitions.loading import paused_gc
    from triggerd.operations import cli_actor
    from triggerd.operations.apply import apply_files

    # A short-lived process holding a large file's values: collections would only walk them.
    with paused_gc():
        try:
            try:
                async with _pool(settings) as pool, pool.acquire() as conn:
                    report = await apply_files(conn, args.files, prune=args.prune,
                                               plan=args.plan, actor=cli_actor(args.tenant),
                                               tenant=args.tenant, settings=settings)
            except (DatabaseError, ConfigError):
                # A bad file is named before the database, as before.
                load_files(args.files, max_workflow_depth=settings.executor.max_workflow_depth)
                raise
        except DefinitionError as exc:
            if not args.json:
                raise
            print_json({"problems": [_problem_json(p) for p in exc.problems]})
            return 2
    if args.json:
        print_json(report.to_json())
        return 0
    # Only what changed, then one line for the rest: 100,000 "unchanged" lines told nothing.
    # (One write: a first apply prints 100,000 lines, and a print each took 0.3 s.)
    sys.stdout.write("".join(line + "\n" for line in report.lines))
    print(report.summary + (" (plan only: nothing was written)" if args.plan else ""))
    return 0


async def cmd_triggers_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.trigger_state import paused_and_completed, skipped_ahead
    from triggerd.store.workflows import list_triggers

    async with _pool(settings) as pool:
        triggers = await list_triggers(pool, tenant=args.tenant)
        paused, completed = await paused_and_completed(pool)
        skipped = await skipped_ahead(pool)
    now = datetime.now(UTC)

    def state(t: TriggerRecord) -> str:
        return trigger_state(t, paused=t.id in paused, completed=t.id in completed, now=now)

    if args.json:
        print_json([trigger_json(t, state(t)) for t in triggers])
        return 0
    next_fire = _next_fire_finder(now)

    rows = [
        [
            # Names are unique per tenant: another tenant's is shown as apply shows it.
            t.full_name if t.tenant_id == DEFAULT_TENANT else f"{t.tenant_id}:{t.full_name}",
            t.type,
            shown_state,
            t.workflow_key,
            "latest" if t.version is None else str(t.version),
            _describe_trigger(t.type, t.config, t.tenant_id),
            # A paused trigger's slots are recorded skipped: it has no next fire.
            next_fire(t.type, t.config, skipped.get(t.id, frozenset()))
            if shown_state == "enabled" else "-",
        ]
        for t in triggers
        for shown_state in (state(t),)
    ]
    print(_table(rows, ["NAME", "TYPE", "STATE", "WORKFLOW", "VERSION", "SCHEDULE/PATH",
                        "NEXT FIRE (UTC)"]))
    return 0


def _next_fire_finder(
    now: datetime,
) -> Callable[[str, dict[str, Any], AbstractSet[datetime]], str]:
    """The next fire of a scheduled trigger's config that is not among its slots skipped
    by hand, computed once per distinct config (and per trigger with skipped slots)."""
    from triggerd.cron import utc_iso
    from triggerd.errors import TriggerdError
    from triggerd.schedules import SCHEDULED_TYPES, schedule_of

    found: dict[str, str] = {}

    def compute(kind: str, config: dict[str, Any], skipped: AbstractSet[datetime]) -> str:
        try:
            schedule = schedule_of(kind, config)
            fire = schedule.next_fire(now)
            for _ in range(len(skipped)):
                if fire is None or fire.at not in skipped:
                    break
                fire = schedule.next_fire(fire.at)
        except (TriggerdError, ValueError, KeyError, TypeError, OverflowError):
            return "?"
        return "-" if fire is None else utc_iso(fire.at)

    def find(kind: str, config: dict[str, Any], skipped: AbstractSet[datetime]) -> str:
        if kind not in SCHEDULED_TYPES:
            return "-"
        if skipped:
            return compute(kind, config, skipped)
        key = kind + json.dumps(config, sort_keys=True)
        if key not in found:
            found[key] = compute(kind, config, skipped)
        return found[key]

    return find


def _describe_trigger(kind: str, config: dict[str, Any], tenant: str = DEFAULT_TENANT) -> str:
    if kind == "cron":
        cron = config.get("cron")
        text = cron if isinstance(cron, str) else " | ".join(str(c) for c in cron or ())
        return f"{text} {config.get('timezone', 'UTC')}"
    if kind == "interval":
        return f"every {config.get('every')} (offset {config.get('offset', '0s')})"
    if kind == "webhook":
        prefix = "/hooks/" if tenant == DEFAULT_TENANT else f"/tenants/{tenant}/hooks/"
        return prefix + str(config.get("path"))
    return "-"  # a manual trigger has neither (the README's mark for none)


async def cmd_triggers_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.admin import slot_history
    from triggerd.store.workflows import get_trigger
    from triggerd.trigger_detail import describe

    _check_range("--count", args.count, 1000)
    if not 0 <= args.slots <= 1000:
        raise UsageError(f"--slots: {args.slots} is out of range 0-1000")
    async with _pool(settings) as pool:
        trigger = await get_trigger(pool, args.name, _home(args))
        slots = await slot_history(pool, trigger.id, limit=args.slots)
        doc = await describe(pool, trigger, now=datetime.now(UTC), count=args.count)
    doc["slots"] = [slot_json(s) for s in slots]
    if args.json:
        print_json(doc)
        return 0
    state = doc["state"]
    shown_doc = {**doc, "version": "latest" if doc["version"] is None else doc["version"]}
    for key in ("name", "type", "enabled", "version", "id", "enabled_at", "updated_at"):
        print(f"{key + ':':<12} {_text(shown_doc[key])}")
    if state["paused"]:
        print(f"{'paused:':<12} yes, by {state['changed_by']} at {_text(state['changed_at'])}"
              + (f": {state['note']}" if state["note"] else ""))
    if doc["completed"]:
        print(f"{'completed:':<12} {doc['completed']}")
    if doc["remaining_runs"] is not None:
        print(f"{'remaining:':<12} {doc['remaining_runs']} scheduled run(s)")
    if state["consecutive_failures"]:
        print(f"{'failing:':<12} {state['consecutive_failures']} consecutive failed scheduled"
              f" run(s): {', '.join(state['failed_executions'])}")
    print(f"{'input:':<12} {_text(doc['input'])}")
    print("config:")
    for key, value in sorted(trigger.config.items()):
        print(f"  {key + ':':<16} {_text(value)}")
    if doc["next_fires"]:
        print("next fires:")
        for fire in doc["next_fires"]:
            print(f"  {_fire_line(fire)}")
    if doc["running"]:
        print("running:")
        for run in doc["running"]:
            print(f"  {run['id']}  {run['status']}  created {_text(run['created_at'])}")
    if doc["slot_counts"]:
        counted = sum(doc["slot_counts"].values())
        label = "ledger" if counted < COUNTED_SLOTS else f"ledger (newest {COUNTED_SLOTS:,} slots)"
        print(f"{label}: " + ", ".join(f"{o} {n}" for o, n in doc["slot_counts"].items()))
    if doc["recent_actions"]:
        print("recent actions:")
        for action in doc["recent_actions"]:
            note = f"  ({action['note']})" if action["note"] else ""
            print(f"  {_text(action['at'])}  {action['actor']}  {action['action']}{note}")
    if slots:
        print("latest slots:")
        rows = [
            [s.scheduled_for.isoformat(), s.outcome, s.execution_id or "-", s.detail or ""]
            for s in slots
        ]
        print(_table(rows, ["SCHEDULED_FOR", "OUTCOME", "EXECUTION", "DETAIL"]))
    return 0


async def cmd_triggers_enable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_enabled(args, settings, True)


async def cmd_triggers_disable(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_enabled(args, settings, False)


async def _set_enabled(args: argparse.Namespace, settings: Settings, enabled: bool) -> int:
    from triggerd.operations import cli_actor

    name, as_json = args.name, args.json
    from triggerd.operations.triggers import set_enabled

    async with _pool(settings) as pool:
        trigger, changed = await set_enabled(pool, cli_actor(args.tenant), name, enabled)
    if as_json:  # the API's answer: {"trigger", "changed"}
        print_json({"trigger": trigger_json(trigger), "changed": changed})
        return 0
    word = "enabled" if enabled else "disabled"
    print(f"{name}: {word}" if changed else f"{name}: already {word}")
    return 0


async def cmd_triggers_pause(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.triggers import pause

    async with _pool(settings) as pool:
        result = await pause(pool, cli_actor(args.tenant), args.name, args.note)
    return _print_state_change(result, "paused", as_json=args.json)


async def cmd_triggers_resume(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.triggers import resume

    async with _pool(settings) as pool:
        result = await resume(pool, cli_actor(args.tenant), args.name, args.note,
                              catch_up=args.catch_up)
    return _print_state_change(result, "resumed", as_json=args.json)


async def cmd_triggers_skip(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.cron import utc_iso
    from triggerd.operations import cli_actor
    from triggerd.operations.triggers import skip

    at = None if args.at is None else _parse_instant(args.at, "--at")
    async with _pool(settings) as pool:
        result = await skip(pool, cli_actor(args.tenant), args.name, next_count=args.next, at=at,
                            note=args.note)
    skipped = [utc_iso(i) for i in result.skipped]
    if args.json:  # the API's answer
        print_json({"trigger": result.trigger, "skipped": skipped})
        return 0
    for instant in skipped:
        print(f"{result.trigger}: skipped {instant}")
    return 0


async def cmd_triggers_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.backfills import BackfillRequest, create

    request = BackfillRequest(
        trigger=args.name, range_from=_parse_instant(args.range_from, "--from"),
        range_to=_parse_instant(args.range_to, "--to"), only_missing=args.only_missing,
        overlap=args.overlap, rate=args.rate, dry_run=args.dry_run, note=args.note)
    async with _pool(settings) as pool:
        plan = await create(pool, cli_actor(args.tenant), request)
        if plan.backfill_id is None:  # a dry run
            if args.json:
                print_json({"backfill_id": None, "slots": planned_json(plan.slots),
                            "started": 0})
                return 0
            for slot in planned_json(plan.slots):
                print(f"{slot['at']}  {slot['action']:<5}  {slot['reason'] or ''}".rstrip())
            print(f"dry run: {plan.to_start} slot(s) would start,"
                  f" {len(plan.slots) - plan.to_start} skipped; nothing was started")
            return 0
        if not args.json:
            print(f"backfill {plan.backfill_id}: {plan.to_start} slot(s) to start"
                  f" ({len(plan.slots) - plan.to_start} skipped) at {args.rate};"
                  " the daemons start them (Ctrl-C stops watching, not the backfill)")
        final = await _watch_backfill(pool, plan.backfill_id, quiet=args.json)
    if args.json:
        print_json({"backfill_id": plan.backfill_id, "slots": planned_json(plan.slots),
                    "started": final.started})
        return 0
    print(f"backfill {final.id}: {final.state}; {final.started} started,"
          f" {final.skipped} already decided elsewhere")
    return 0


async def _watch_backfill(pool: asyncpg.Pool, backfill_id: str, *, quiet: bool) -> Any:
    """Poll a backfill until it ends, drawing its progress (a bar on a terminal, a line per
    change otherwise)."""
    from triggerd.store.backfills import get_backfill

    tty = sys.stdout.isatty() and not quiet
    shown = None
    waited = 0.0
    while True:
        try:
            record = await get_backfill(pool, backfill_id)
        except NotFound:
            if tty and shown is not None:
                print()
            # Deleted with its trigger (apply --prune, workflows delete) while watched.
            raise NotFound(f"backfill {backfill_id} is gone: its trigger (or workflow) was"
                           " deleted while it ran; the runs it started go on") from None
        progress = (record.next_index, record.started, record.state, record.waiting_for > 0)
        if not quiet and progress != shown:
            shown = progress
            # Under overlap other than allow, a long run of the schedule holds it back.
            waiting = (f", waiting for {record.waiting_for} active run(s) of the trigger"
                       f" (overlap {record.overlap})" if record.waiting_for else "")
            if tty:
                width = 30
                filled = width * record.next_index // max(record.total, 1)
                print(f"\r[{'#' * filled}{'-' * (width - filled)}] {record.next_index}/"
                      f"{record.total} ({record.started} started{waiting})\033[K", end="",
                      flush=True)
            else:
                print(f"{record.next_index}/{record.total} ({record.started} started{waiting})")
        if record.state != "running":
            if tty:
                print()
            return record
        if waited >= 10.0 and record.next_index == 0 and not quiet:
            print("\nno daemon has started it yet: is `triggerd run` running on this"
                  " database?", file=sys.stderr)
            waited = -1e9
        await asyncio.sleep(0.5)
        waited += 0.5


async def cmd_backfills_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations.backfills import get

    async with _pool(settings) as pool:
        record = await get(pool, args.id, args.tenant)
    return _print_backfill(record, as_json=args.json)


async def cmd_backfills_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations.backfills import list_
    from triggerd.store.backfills import BACKFILL_STATES

    if args.state is not None and args.state not in BACKFILL_STATES:
        raise UsageError(f"--state: {args.state!r} is not one of {', '.join(BACKFILL_STATES)}")
    _check_range("--limit", args.limit, 10_000)
    checked_filter("trigger", args.trigger, trigger_filter_problem)
    async with _pool(settings) as pool:
        items = await list_(pool, tenant=args.tenant, trigger=args.trigger, state=args.state,
                            limit=args.limit)
    if args.json:
        print_json([backfill_json(b) for b in items])
        return 0
    rows = [
        [b.id, tenant_label(b.tenant_id, b.trigger), b.state,
         f"{b.next_index}/{b.total}", str(b.started), str(b.skipped),
         f"{_when(b.range_from)} .. {_when(b.range_to)}", _when(b.created_at)]
        for b in items
    ]
    print(_table(rows, ["ID", "TRIGGER", "STATE", "DONE", "STARTED", "SKIPPED", "RANGE",
                        "CREATED"]))
    return 0


async def cmd_backfills_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.backfills import cancel

    async with _pool(settings) as pool:
        record = await cancel(pool, cli_actor(args.tenant), args.id)
    return _print_backfill(record, as_json=args.json)


def _print_backfill(record: Any, *, as_json: bool) -> int:
    doc = backfill_json(record)
    if as_json:
        print_json(doc)
        return 0
    for key in ("backfill_id", "tenant", "trigger", "state", "from", "to", "only_missing",
                "overlap",
                "rate_per_second", "total", "done", "started", "skipped", "actor", "note",
                "created_at", "finished_at", "waiting_for"):
        print(f"{key + ':':<17} {_text(doc[key])}")
    return 0


def _print_state_change(result: Any, word: str, *, as_json: bool) -> int:
    if as_json:  # the API's answer
        print_json(state_change_json(result))
        return 0
    already = "not paused" if word == "resumed" else "already paused"
    print(f"{result.trigger}: {word}" if result.changed else f"{result.trigger}: {already}")
    if result.forgotten_slots:
        print(f"{result.forgotten_slots} slot(s) skipped while paused are caught up under"
              " the trigger's misfire policy (misfire: skip runs none of them)")
    return 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.audit import list_audit

    _check_range("--limit", args.limit, 10_000)
    checked_filter("target", args.target, audit_target_problem)
    if args.cursor is not None and not is_bigint_text(args.cursor):
        raise UsageError(f"--cursor: {args.cursor[:60]!r} is not a cursor this command printed")
    before = None if args.cursor is None else int(args.cursor)
    # A name as this list prints it (acme:billing/hourly; a bare one the default tenant's).
    target, tenant = labelled_target(args.target, args.tenant)
    async with _pool(settings) as pool:
        # One row more than asked tells whether another page follows.
        rows = await list_audit(pool, target=target, before_id=before, limit=args.limit + 1,
                                tenant=tenant)
    if len(rows) > args.limit:
        rows = rows[:args.limit]
        # On stderr: stdout stays the page alone (a table or a JSON list).
        print(f"more: add --cursor {rows[-1].id} for the next page", file=sys.stderr)
    if args.json:
        print_json([audit_json(a) for a in rows])
        return 0
    # Names as the other lists show them: another tenant's trigger or workflow is
    # tenant:name (ids need no label; a tenant's own list needs none).
    table = [[_when(a.at), a.actor, a.action,
              tenant_label(a.tenant_id, a.target)
              if a.target_kind in ("trigger", "workflow") else a.target,
              a.note or ""] for a in rows]
    print(_table(table, ["AT", "ACTOR", "ACTION", "TARGET", "NOTE"]))
    return 0


def _fire_line(fire: dict[str, str | None]) -> str:
    """``AT  LOCAL  (note; nominal ...; reason)`` for previews of any schedule kind."""
    notes = [fire["note"]] if fire["note"] else []
    if fire.get("nominal"):
        notes.append(f"nominal {fire['nominal']}")
    if fire.get("reason"):
        notes.append(str(fire["reason"]))
    return f"{fire['at']}  {fire['local']}" + (f"  ({'; '.join(notes)})" if notes else "")


async def cmd_triggers_next(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.cron import utc_iso
    from triggerd.errors import Conflict
    from triggerd.schedules import SCHEDULED_TYPES
    from triggerd.store.trigger_state import get_state
    from triggerd.store.workflows import get_trigger
    from triggerd.trigger_detail import preview

    _check_range("--count", args.count, 1000)
    after = _parse_after(args.after)
    async with _pool(settings) as pool:
        trigger = await get_trigger(pool, args.name, _home(args))
        if trigger.type not in SCHEDULED_TYPES:
            raise Conflict(f"trigger {args.name} is a {trigger.type} trigger; only scheduled"
                           " triggers (cron, interval) have fire times")
        fires = await preview(pool, trigger, after, args.count, now=datetime.now(UTC))
        state = await get_state(pool, trigger.id)
    why = ("it is disabled" if not trigger.enabled
           else f"its workflow is {trigger.workflow_status}"
           if trigger.workflow_status != "active"
           else "it is paused" if state.paused
           else "it made its max_runs fires" if state.completed_at is not None
           else None)
    if why is not None:
        print(f"triggerd: note: {args.name} does not fire while {why}; these are its"
              " schedule's times", file=sys.stderr)
    if not fires:  # an empty answer said nothing of why (an end_at passed)
        print(f"triggerd: note: {args.name} has no fires after {utc_iso(after)}",
              file=sys.stderr)
    if args.json:
        print_json(fires)
        return 0
    for fire in fires:
        print(_fire_line(fire))
    return 0


async def cmd_cron_next(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.cron import fire_to_json, next_fires, parse_cron

    _check_range("--count", args.count, 10_000)
    after = _parse_after(args.after)
    schedule = parse_cron(args.expression, args.tz)
    fires = next_fires(schedule, after, args.count)
    if args.json:
        print_json([fire_to_json(f) for f in fires])
        return 0
    for fire in fires:
        doc = fire_to_json(fire)
        note = f"  ({doc['note']})" if doc["note"] else ""
        print(f"{doc['at']}  {doc['local']}{note}")
    return 0


def _parse_after(text: str | None) -> datetime:
    from triggerd.trigger_detail import preview_instant

    if text is None:
        return datetime.now(UTC)
    return preview_instant(text, "--after")


def _parse_instant(text: str, option: str) -> datetime:
    from triggerd.trigger_detail import parse_instant

    return parse_instant(text, option)


def _parse_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        # The API's rules (a 400 there): a duplicate key, NaN, or 1e999 (which the
        # database's json type refused: exit 70 before).
        value = json.loads(text, object_pairs_hook=no_duplicates,
                           parse_constant=refuse_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input: not valid JSON: {exc.msg} at position {exc.pos}") from None
    except JsonRefusal as exc:
        raise UsageError(f"--input: {exc}") from None
    except RecursionError:
        raise UsageError("--input: nested too deeply") from None
    except ValueError:  # int() of more digits than Python reads
        raise UsageError(f"--input: {too_many_digits()}") from None
    if not isinstance(value, dict):
        raise UsageError("--input: must be a JSON object")
    problem = storage_problem(value)  # the API's rule (a 422 there)
    if problem is not None:
        raise UsageError(f"--input: {problem}")
    return value


async def _wait_final(pool: asyncpg.Pool, execution_id: str) -> Any:
    from triggerd.store.executions import get_execution

    waited = 0.0
    hinted = False
    while True:
        execution = await get_execution(pool, execution_id)
        if execution.status in ("SUCCESS", "ERROR", "CANCELED"):
            return execution
        if waited > 10 and execution.status == "NEW" and not hinted:
            print("still NEW after 10s: is a daemon running on this database?", file=sys.stderr)
            hinted = True
        await asyncio.sleep(0.1)
        waited += 0.1


async def cmd_triggers_fire(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.triggers import FireRequest, fire

    run_input = _parse_input(args.input)
    async with _pool(settings) as pool:
        fired = await fire(pool, cli_actor(args.tenant),
                           FireRequest(trigger=args.name, input=run_input, reason=args.reason))
        item_id = fired.execution_id
        if args.json and not args.wait:
            print_json({"execution_id": item_id, "status": "NEW"})
            return 0
        if not args.json:
            print(item_id)
        if args.wait:
            final = await _wait_final(pool, item_id)
            if args.json:
                print_json({"execution_id": item_id, "status": final.status,
                            "output": final.output, "error_code": final.error_code,
                            "error_message": final.error_message})
                return 0 if final.status == "SUCCESS" else 1
            print(final.status)
            print(
                json.dumps(
                    final.output
                    if final.status == "SUCCESS"
                    else {"error_code": final.error_code, "error_message": final.error_message},
                    default=_json_default,
                )
            )
            return 0 if final.status == "SUCCESS" else 1
    return 0


async def cmd_executions_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.executions import ExecutionScope, list_executions
    from triggerd.store.workflows import get_trigger, get_workflow
    from triggerd.windows import check_window

    statuses = tuple(ExecutionStatus)
    status = None
    if args.status is not None:
        # As the API's ?status= and the other enum filters: exact (a lower-case one was
        # taken here and refused there).
        status = args.status
        if status not in statuses:
            raise UsageError(f"--status: {args.status!r} is not one of {', '.join(statuses)}")
    _check_range("--limit", args.limit, 10_000)
    checked_filter("trigger", args.trigger, trigger_filter_problem)
    checked_filter("workflow", args.workflow, key_filter_problem)
    since = None if args.since is None else _parse_instant(args.since, "--since")
    until = None if args.until is None else _parse_instant(args.until, "--until")
    check_window(since, until, names=("--since", "--until"))  # as the API's
    after = None if args.cursor is None else decode_position(args.cursor)
    if args.cursor is not None and after is None:
        raise UsageError(f"--cursor: {args.cursor[:60]!r} is not a cursor this command printed")
    async with _pool(settings) as pool:
        trigger_id = None
        if args.trigger is not None:
            trigger_id = (await get_trigger(pool, args.trigger, _home(args))).id
        workflow_id = None
        if args.workflow is not None:
            # exit 3 for a workflow that does not exist; its id, not its key, reads the
            # list's index in order (by key the whole history of it was sorted)
            workflow_id = (await get_workflow(pool, args.workflow, _home(args))).id
        scope = ExecutionScope(tenant=args.tenant, agent_id=args.agent_id,
                               session_id=args.session_id,
                               conversation_id=args.conversation_id)
        # One row more than asked tells whether another page follows.
        items = await list_executions(pool, status=status, trigger_id=trigger_id,
                                      workflow_id=workflow_id, since=since, before=until,
                                      after=after, limit=args.limit + 1, scope=scope,
                                      test=args.test)
    if len(items) > args.limit:
        items = items[:args.limit]
        # On stderr: stdout stays the page alone (a table or a JSON list).
        print(f"more: add --cursor {encode_position(items[-1].created_at, items[-1].id)}"
              " for the next page", file=sys.stderr)
    if args.json:
        print_json([execution_json(e) for e in items])
        return 0
    rows = [
        [
            e.id,
            # Every tenant's runs share the list: another tenant's key as the lists print it.
            "" if e.workflow_key is None else tenant_label(e.tenant_id, e.workflow_key),
            e.trigger_name or "",
            e.status,
            _when(e.created_at),
            e.error_code or "",
        ]
        for e in items
    ]
    print(_table(rows, ["ID", "WORKFLOW", "TRIGGER", "STATUS", "CREATED", "ERROR"]))
    return 0


async def _execution_id(pool: asyncpg.Pool, text: str, tenant: str | None) -> str:
    """The full id that ``text`` (an id or a prefix unique among ``tenant``'s runs)
    names."""
    from triggerd.ids import parse_execution_id
    from triggerd.store.executions import resolve_execution_id

    return await resolve_execution_id(pool, parse_execution_id(text), tenant)


async def cmd_executions_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.ids import parse_execution_id
    from triggerd.store.executions import child_executions, get_execution, node_timeline

    parse_execution_id(args.id)  # a malformed id is exit 2 before touching the database
    async with _pool(settings) as pool:
        execution_id = await _execution_id(pool, args.id, args.tenant)
        execution = await get_execution(pool, execution_id, args.tenant)
        nodes = await node_timeline(pool, execution_id)
        children = await child_executions(pool, execution_id)
    doc = {**execution_json(execution), "nodes": [node_json(n) for n in nodes],
           "children": children}
    if args.json:
        print_json(doc)
        return 0
    for key, value in execution_json(execution).items():
        print(f"{key + ':':<15} {_text(value)}")
    print("nodes:")
    rows = [
        [
            n.node_id,
            n.node_type,
            n.status,
            str(n.attempt),
            f"{n.from_node_id or '-'}{'[' + n.edge_condition + ']' if n.edge_condition else ''}",
            f"{n.execution_time_ms:.1f}ms" if n.execution_time_ms is not None else "",
            n.error_code or "",
        ]
        for n in nodes
    ]
    print(_table(rows, ["NODE", "TYPE", "STATUS", "ATTEMPT", "FROM", "TIME", "ERROR"]))
    if children:
        print("child runs (workflow nodes):")
        for child in children:
            print(f"  {child['id']}  {child['workflow']}  {child['status']}")
    failed = [n for n in nodes if n.error_code or n.error_message]
    if failed:
        print("node errors:")
        for n in failed:
            print(f"  {n.node_id} (attempt {n.attempt}):"
                  f" {printable(n.error_code or 'ERROR')}: {printable(n.error_message or '-')}")
    return 0


FINAL_STATUSES = ("SUCCESS", "ERROR", "CANCELED")


async def cmd_executions_watch(args: argparse.Namespace, settings: Settings) -> int:
    """Follow a run until it ends: one line per node state as it changes, then the final
    status. Exit 0 when it ends SUCCESS, 1 when ERROR or CANCELED (like fire --wait)."""
    from triggerd.ids import parse_execution_id
    from triggerd.store.executions import get_execution, node_timeline

    parse_execution_id(args.id)
    if not 0.05 <= args.interval <= 60:
        raise UsageError(f"--interval: {args.interval} is out of range 0.05-60 (seconds)")
    seen: dict[tuple[str, int], str] = {}
    async with _pool(settings) as pool:
        execution_id = await _execution_id(pool, args.id, args.tenant)
        status = ""
        while True:
            execution = await get_execution(pool, execution_id, args.tenant)
            for n in await node_timeline(pool, execution_id):
                key = (n.node_id, n.attempt)
                if seen.get(key) == n.status:
                    continue
                seen[key] = n.status
                if args.json:
                    print(json.dumps({"node": n.node_id, "type": n.node_type,
                                      "attempt": n.attempt, "status": n.status,
                                      "error_code": n.error_code,
                                      "error_message": n.error_message}), flush=True)
                else:
                    error = (f"  {printable_line(n.error_code)}:"
                             f" {printable_line(str(n.error_message))}" if n.error_code else "")
                    print(f"{n.node_id} ({n.node_type}, attempt {n.attempt}): {n.status}{error}",
                          flush=True)
            if execution.status != status and not args.json:
                print(f"execution {execution_id}: {execution.status}", flush=True)
            status = execution.status
            if status in FINAL_STATUSES:
                if args.json:
                    print(json.dumps({"execution_id": execution_id, "status": status,
                                      "output": execution.output,
                                      "error_code": execution.error_code,
                                      "error_message": execution.error_message},
                                     default=_json_default), flush=True)
                elif execution.error_code:
                    print(f"{printable_line(execution.error_code)}:"
                          f" {printable_line(str(execution.error_message))}")
                return 0 if status == "SUCCESS" else 1
            await asyncio.sleep(args.interval)


async def cmd_executions_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.ids import parse_execution_id
    from triggerd.operations import cli_actor
    from triggerd.operations.executions import cancel

    parse_execution_id(args.id)
    async with _pool(settings) as pool:
        execution_id = await _execution_id(pool, args.id, args.tenant)
        execution = await cancel(pool, cli_actor(args.tenant), execution_id)
    if args.json:
        print_json(execution_json(execution))
        return 0
    if execution.status == "CANCELED":
        print(f"{execution_id}: CANCELED")
    else:
        print(f"{execution_id}: cancel requested (running nodes are being cancelled)")
    return 0


async def cmd_executions_resume(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.ids import parse_execution_id
    from triggerd.operations import cli_actor
    from triggerd.operations.approvals import DecisionRequest, decide

    parse_execution_id(args.id)
    decision = "approved" if args.approve else "rejected"
    run_input = None if args.input is None else _parse_input(args.input)
    async with _pool(settings) as pool:
        execution_id = await _execution_id(pool, args.id, args.tenant)
        decided = await decide(pool, cli_actor(args.tenant), execution_id, DecisionRequest(
            decision=decision, note=args.note, input=run_input))
    if args.json:
        print_json({"execution_id": decided.execution_id, "decision": decided.decision})
    else:
        print(f"{decided.execution_id}: {decided.decision}; the run goes on")
    return 0


async def cmd_executions_retry(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.ids import parse_execution_id
    from triggerd.operations import cli_actor
    from triggerd.operations.executions import retry

    parse_execution_id(args.id)
    async with _pool(settings) as pool:
        named = await _execution_id(pool, args.id, args.tenant)
        new_id = await retry(pool, cli_actor(args.tenant), named)
    if args.json:
        print_json({"execution_id": new_id, "status": "NEW"})
        return 0
    print(new_id)
    return 0


# --- token ---------------------------------------------------------------------------


async def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.cron import utc_iso
    from triggerd.store.api_tokens import create_token
    from triggerd.store.workflows import tenant_has_workflows
    from triggerd.tokens import (
        check_name,
        check_tenant,
        display_prefix,
        generate_token,
        hash_token,
        parse_expiry,
        parse_role,
    )

    # Every check before the database is touched: bad input writes nothing.
    name = check_name(args.name)
    role = parse_role(args.role)
    given = getattr(args, "tenant", None)
    tenant = None if given is None else check_tenant(given)
    lifetime = parse_expiry(args.expires_in)
    token = generate_token()
    async with _pool(settings) as pool, pool.acquire() as conn, conn.transaction():
        record = await create_token(conn, name=name, role=role.value, tenant=tenant,
                                    token_hash=hash_token(token),
                                    prefix=display_prefix(token), expires_in=lifetime)
        await _audit_token(conn, "token_create", record, {
            "role": role.value, "tenant": tenant,
            "expires_at": None if record.expires_at is None else utc_iso(record.expires_at)})
        # A tenant with no workflow is accepted: tenants come to be with their first applied
        # workflow, which this very token may apply (POST /api/v1/definitions). The note
        # is for a mistyped name.
        empty = (tenant is not None and tenant != DEFAULT_TENANT
                 and not await tenant_has_workflows(conn, tenant))
    if args.json:
        print_json({"name": name, "token": token, "tenant": tenant, "role": role.value,
                    "expires_at": record.expires_at})
    else:
        print(token)
        scope = "all tenants" if tenant is None else f"tenant {tenant}"
        ends = ("" if record.expires_at is None
                else f", expires {record.expires_at.isoformat(timespec='seconds')}")
        print(f"token {name!r} created ({role.value}, {scope}{ends}); it is shown only this"
              " once", file=sys.stderr)
    if empty:
        print(f"triggerd: note: tenant {tenant!r} has no workflows yet; the token sees"
              " nothing until a definition of that tenant is applied (is the name right?)",
              file=sys.stderr)
    return 0


async def _audit_token(conn: Any, action: str, record: Any, detail: dict[str, Any]) -> None:
    """Granting or taking away admin access is audited, in the token's tenant (the default
    one's for a token of all tenants); never the token or its hash."""
    from triggerd.operations.actor import cli_actor
    from triggerd.store.audit import AuditEntry, record_audit

    await record_audit(conn, AuditEntry(
        actor=cli_actor().name, action=action, target_kind="token", target=record.name,
        target_id=record.id, detail=detail, tenant_id=record.tenant or DEFAULT_TENANT))


async def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.api_tokens import list_tokens

    async with _pool(settings) as pool:
        tokens = await list_tokens(pool)
    if args.json:
        print_json([
            {"name": t.name, "role": t.role, "tenant": t.tenant, "prefix": t.prefix,
             "created_at": t.created_at, "last_used_at": t.last_used_at,
             "revoked_at": t.revoked_at, "expires_at": t.expires_at}
            for t in tokens
        ])
        return 0

    rows = [
        [t.name, t.role, t.tenant or "*", t.prefix + "...", _when(t.created_at),
         _when(t.last_used_at), _when(t.revoked_at), _when(t.expires_at)]
        for t in tokens
    ]
    print(_table(rows, ["NAME", "ROLE", "TENANT", "PREFIX", "CREATED", "LAST_USED", "REVOKED",
                        "EXPIRES"]))
    return 0


async def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.api_tokens import revoke_token
    from triggerd.tokens import check_name

    check_name(args.name)  # a name no token can have is bad input (2), not "no token" (3)
    async with _pool(settings) as pool, pool.acquire() as conn, conn.transaction():
        record, changed = await revoke_token(conn, args.name)
        if changed:
            await _audit_token(conn, "token_revoke", record, {})
    if args.json:
        print_json({"name": args.name, "revoked": True, "changed": changed})
        return 0
    print(f"token {args.name!r} revoked" if changed else f"token {args.name!r} was already revoked")
    return 0


async def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.backup import backup

    result = await backup(settings, Path(args.file), bindir=args.bindir)
    if args.json:
        print_json({"file": result.file, "bytes": result.bytes,
                    "database_version": result.database_version,
                    "migrations": list(result.migrations)})
        return 0
    latest = result.migrations[-1] if result.migrations else "none"
    print(f"{result.file}: {result.bytes} bytes (PostgreSQL {result.database_version},"
          f" {len(result.migrations)} migration(s), latest {latest})")
    return 0


async def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.backup import catch_up_warning, restore, resume_key_warning
    from triggerd.cron import utc_iso

    result = await restore(settings, Path(args.file), yes=args.yes, force=args.force,
                           bindir=args.bindir, skip_missed=args.skip_missed)
    key_warning = resume_key_warning(result, settings, os.environ)
    catch_up = catch_up_warning(result, datetime.now(UTC))
    if args.json:
        print_json({"file": result.file, "workflows": result.workflows,
                    "executions": result.executions, "migrations": list(result.migrations),
                    "missing_migrations": list(result.missing),
                    "unknown_migrations": list(result.unknown),
                    "resume_key_warning": key_warning,
                    "schedules": result.schedules,
                    "last_slot": None if result.last_slot is None
                    else utc_iso(result.last_slot),
                    "skipped_missed": result.skipped_missed,
                    "catch_up_warning": catch_up})
    else:
        print(f"restored {result.file}: {result.workflows} workflow(s),"
              f" {result.executions} execution(s)")
        if result.skipped_missed and result.schedules:
            print(f"{result.schedules} schedule(s) start from now: the slots since the"
                  " backup are not caught up")
    if args.skip_missed and not result.skipped_missed:
        print("triggerd: warning: --skip-missed: the restored schema is too old to hold a"
              " schedule's catch-up floor; nothing was moved", file=sys.stderr)
    if catch_up is not None:
        print(f"triggerd: warning: {catch_up}", file=sys.stderr)
    if result.missing:
        print(f"triggerd: warning: {db.behind_message(result.missing)}", file=sys.stderr)
    if result.unknown:
        print(f"triggerd: warning: the restored schema has migration(s)"
              f" {', '.join(result.unknown)} which this triggerd does not know; run a triggerd"
              " that knows them", file=sys.stderr)
    if key_warning is not None:
        print(f"triggerd: warning: {key_warning}", file=sys.stderr)
    return 0


async def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.doctor import exit_status, report_json, report_lines
    from triggerd.doctor_gather import run_checks

    checks = await run_checks(settings)
    if args.json:
        print_json(report_json(checks))
    else:
        print("\n".join(report_lines(checks)))
    return exit_status(checks)


# --- parser --------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


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
    p.add_argument("--json", action="store_true", help='print {"applied": [...], "current": N}')
    p.set_defaults(handler=cmd_migrate)
    p = sub.add_parser("check", help="validate definition files, change nothing")
    p.add_argument("files", nargs="+", metavar="FILE", help="a file, or a directory of them")
    p.add_argument("--json", action="store_true",
                   help='print [{"file", "path", "message"}] (empty when valid)')
    p.set_defaults(handler=cmd_check)
    p = sub.add_parser("apply", help="upsert workflows, publish changed versions, upsert triggers")
    p.add_argument("files", nargs="+", metavar="FILE", help="a file, or a directory of them")
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete triggers the files no longer list (default: disable them)",
    )
    p.add_argument("--plan", action="store_true", help="print what would change, change nothing")
    p.add_argument("--json", action="store_true", help='print {"changes": [...], "unchanged": N}')
    p.set_defaults(handler=cmd_apply)

    triggers = sub.add_parser(
        "triggers", help="list, show, enable, disable, fire, pause, resume, skip or backfill"
                         " triggers; their next fires")
    tsub = triggers.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    tsub.required = True
    p = tsub.add_parser("list", help="list triggers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_triggers_list)
    p = tsub.add_parser("show", help="show a trigger, its next fires and latest slot outcomes")
    p.add_argument("name", metavar="NAME", type=_name, help="workflow_key/trigger_name")
    p.add_argument("--count", type=int, default=5, help="next fires to show (cron)")
    p.add_argument("--slots", type=int, default=10, help="latest slot outcomes to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_triggers_show)
    p = tsub.add_parser("next", help="the next fires of a scheduled trigger (any kind), with"
                        " DST notes, shifted and calendar-excluded instants marked")
    p.add_argument("name", metavar="NAME", type=_name, help="workflow_key/trigger_name")
    p.add_argument("--count", type=int, default=10, help="fires to show (1-1000, default 10)")
    p.add_argument("--after", metavar="INSTANT",
                   help="ISO instant with an offset (default: now)")
    p.add_argument("--json", action="store_true",
                   help='print [{"at", "local", "note"[, "nominal"][, "reason"]}]')
    p.set_defaults(handler=cmd_triggers_next)
    p = tsub.add_parser(
        "pause", help="pause a scheduled trigger (runtime state: apply and reloads keep it)",
        description="Pause a scheduled trigger: its slots are recorded skipped_paused until"
        " it is resumed. Pausing a paused trigger changes nothing. Runtime state: apply and"
        " reloads never change it (disable changes the definition's enabled instead).")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--note", metavar="TEXT", type=_name,
                   help="why (shown with the trigger, audited)")
    p.add_argument("--json", action="store_true",
                   help='print {"trigger", "changed", "state"}')
    p.set_defaults(handler=cmd_triggers_pause)
    p = tsub.add_parser(
        "resume", help="resume a paused trigger",
        description="Resume a paused trigger. No slot from before the resume runs, unless"
        " --catch-up: then the slots skipped while paused are caught up under the trigger's"
        " misfire policy.")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--note", metavar="TEXT", type=_name, help="why (audited)")
    p.add_argument("--catch-up", action="store_true",
                   help="also run the slots skipped while paused (misfire policy applies)")
    p.add_argument("--json", action="store_true",
                   help='print {"trigger", "changed", "state"}')
    p.set_defaults(handler=cmd_triggers_resume)
    p = tsub.add_parser(
        "skip", help="skip the next N slots or one instant (ledger outcome skipped_manual)",
        description="Record slots to come of a scheduled trigger as skipped_manual (a slot"
        " whose instant has passed but whose jitter has not is one): the schedule then"
        " starts nothing for them, on every replica. A slot that already has an outcome"
        " (fired, say) is refused (exit 4) and nothing is skipped.")
    p.add_argument("name", metavar="NAME", type=_name)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--next", type=int, metavar="N", help="the next N slots (1-1000)")
    which.add_argument("--at", metavar="INSTANT",
                       help="one slot, an instant of the schedule (with offset or Z)")
    p.add_argument("--note", metavar="TEXT", type=_name,
                   help="why (in the ledger and the audit trail)")
    p.add_argument("--json", action="store_true", help='print {"trigger", "skipped": [...]}')
    p.set_defaults(handler=cmd_triggers_skip)
    p = tsub.add_parser(
        "backfill", help="run a trigger's slots over a past range (all, or only the missing)",
        description="Start the slots of a scheduled trigger in the half-open range"
        " [--from, --to). With --only-missing: the slots with no ledger row or recorded"
        " skipped_misfire/skipped_overlap, under the live key (never twice, whoever races);"
        " without it: every slot once more, under backfill:<id>:<instant>. The daemons start"
        " them at --rate; this command shows the progress (a bar on a terminal).")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--from", dest="range_from", required=True, metavar="INSTANT",
                   help="first instant (inclusive), with offset or Z")
    p.add_argument("--to", dest="range_to", required=True, metavar="INSTANT",
                   help="end (exclusive), with offset or Z; not in the future")
    p.add_argument("--only-missing", action="store_true",
                   help="only slots that did not run (see above)")
    p.add_argument("--overlap", metavar="POLICY",
                   help="allow (start at the rate) or skip|buffer_one|cancel_previous (one"
                        " run at a time); default: the trigger's")
    p.add_argument("--rate", default="10/s", metavar="N/s",
                   help="starts per second, minute or hour (default 10/s, at most 1000/s)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the slots it would start or skip; start nothing")
    p.add_argument("--note", metavar="TEXT", type=_name, help="why (audited)")
    p.add_argument("--json", action="store_true",
                   help='wait, then print {"backfill_id", "slots": [{"at", "action",'
                        ' "reason"}], "started"}')
    p.set_defaults(handler=cmd_triggers_backfill)
    p = tsub.add_parser("enable", help="enable a trigger")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--json", action="store_true", help='print {"trigger", "changed"}')
    p.set_defaults(handler=cmd_triggers_enable)
    p = tsub.add_parser("disable", help="disable a trigger")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--json", action="store_true", help='print {"trigger", "changed"}')
    p.set_defaults(handler=cmd_triggers_disable)
    p = tsub.add_parser("fire", help="start a manual execution of a trigger's workflow")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--input", metavar="JSON",
                   help="run input (a JSON object), validated against the workflow's"
                        " parameter_schema like the admin API does")
    p.add_argument("--reason", metavar="TEXT", type=_name,
                   help="why: recorded in the run's provenance and the audit trail")
    p.add_argument("--wait", action="store_true",
                   help="wait and print the final status/output (exit 1 when it ends ERROR"
                        " or CANCELED)")
    p.add_argument("--json", action="store_true",
                   help='print {"execution_id", "status"} (with --wait: also output and error)')
    p.set_defaults(handler=cmd_triggers_fire)

    executions = sub.add_parser("executions",
                                help="list, show, watch, resume, retry or cancel executions")
    esub = executions.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    esub.required = True
    p = esub.add_parser("list", help="list executions, newest first")
    p.add_argument("--status", metavar="S")
    p.add_argument("--trigger", metavar="NAME", type=_name)
    p.add_argument("--workflow", metavar="KEY", type=_name)
    p.add_argument("--since", metavar="INSTANT", help="created at or after (ISO-8601)")
    p.add_argument("--until", metavar="INSTANT", help="created before (ISO-8601)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", metavar="CURSOR",
                   help="the next page: the cursor a full page printed on stderr")
    p.add_argument("--test", action="store_true",
                   help="list test runs (triggerd test) instead of the others")
    for name in CORRELATION_COLUMNS:
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, metavar="ID", type=_correlation_id(flag),
                       help=f"only runs with this {name}")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_executions_list)
    p = esub.add_parser("show", help="show an execution and its node timeline")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_executions_show)
    p = esub.add_parser("watch", help="follow a run live until it ends (exit 1: ERROR or"
                                      " CANCELED)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--interval", type=float, default=0.25, metavar="SECONDS",
                   help="how often to look (default 0.25)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(handler=cmd_executions_watch)
    p = esub.add_parser("retry", help="start a new execution with the same input")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help='print {"execution_id", "status"}')
    p.set_defaults(handler=cmd_executions_retry)
    p = esub.add_parser(
        "resume", help="decide for a run waiting on an approval node",
        description="Record a decision for the approval node the run is parked on; the run"
        " then goes on along the edge of the decision. Exit 4 when the run waits for no"
        " decision.")
    p.add_argument("id", metavar="ID")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true", help="decision: approved")
    decision.add_argument("--reject", action="store_true", help="decision: rejected")
    p.add_argument("--note", metavar="TEXT", type=_name,
                   help="why (in the node's output and the audit)")
    p.add_argument("--input", metavar="JSON",
                   help="a JSON object passed on in the node's output (input)")
    p.add_argument("--json", action="store_true", help='print {"execution_id", "decision"}')
    p.set_defaults(handler=cmd_executions_resume)
    p = esub.add_parser("cancel", help="cancel a NEW, WAITING or RUNNING execution")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the execution after the request")
    p.set_defaults(handler=cmd_executions_cancel)

    from triggerd.cli_webhooks import add_webhooks_commands
    from triggerd.cli_workflows import add_workflows_commands

    add_webhooks_commands(sub, _Parser)
    add_workflows_commands(sub, _Parser)
    from triggerd.cli_testruns import add_test_command

    add_test_command(sub)

    token = sub.add_parser("token", help="create, list or revoke admin API tokens")
    ksub = token.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    p = ksub.add_parser("create", help="create a named token; it is printed only this once")
    p.add_argument("--name", required=True, type=_name, help="1-64 of a-z 0-9 _ . -")
    # SUPPRESS: `triggerd --tenant T token create` scopes the token too (a default of the
    # sub-command's own would overwrite the global option with None: all tenants).
    p.add_argument("--tenant", metavar="T", type=_name, default=argparse.SUPPRESS,
                   help="scope (default: all tenants)")
    p.add_argument("--role", default="admin", type=_name, help="admin (default) or viewer")
    p.add_argument("--expires-in", metavar="DURATION",
                   help="the token ends this long from now, e.g. 90d (default: never)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_token_create)
    p = ksub.add_parser("list", help="list tokens (never the tokens themselves)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_token_list)
    p = ksub.add_parser("revoke", help="revoke a token (the API refuses it within 10s)")
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_token_revoke)

    p = sub.add_parser("backup", help="write the database to FILE (pg_dump custom format)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--bindir", metavar="DIR", type=_path,
                   help="where pg_dump is (default: the embedded server's own, else PATH)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backup)
    p = sub.add_parser("restore", help="replace the database's contents with a backup FILE")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--yes", action="store_true",
                   help="replace a database that already has workflows")
    p.add_argument("--force", action="store_true",
                   help="restore even while triggerd processes are connected")
    p.add_argument("--bindir", metavar="DIR", type=_path,
                   help="where pg_restore is (default: the embedded server's own, else PATH)")
    p.add_argument("--skip-missed", action="store_true",
                   help="schedules start from now: the slots since the backup are not caught"
                        " up (else each misfire policy decides)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_restore)

    cron = sub.add_parser("cron", help="cron expression tools")
    csub = cron.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    p = csub.add_parser("next", help="the next fire instants, as the daemon computes them")
    p.add_argument("expression", metavar="EXPR")
    p.add_argument("--tz", default="UTC", metavar="ZONE")
    p.add_argument("--count", type=int, default=5, metavar="N")
    p.add_argument("--after", metavar="INSTANT", help="ISO-8601 instant (default: now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_cron_next, needs_settings=False)

    backfills = sub.add_parser("backfills", help="list, show or cancel backfills")
    bsub = backfills.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    bsub.required = True
    p = bsub.add_parser("list", help="backfills, newest first")
    p.add_argument("--trigger", metavar="NAME", type=_name, help="only this trigger's")
    p.add_argument("--state", metavar="STATE", type=_name, help="running, done or canceled")
    p.add_argument("--limit", type=int, default=50, help="rows (1-10000, default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backfills_list)
    p = bsub.add_parser("show", help="a backfill's progress")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backfills_show)
    p = bsub.add_parser("cancel", help="stop a running backfill (runs started go on)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backfills_cancel)
    p = sub.add_parser("audit", help="who did what, when, with which note (newest first)")
    p.add_argument("--target", metavar="NAME", type=_name,
                   help="only this target (workflow/trigger, workflow key or execution id)")
    p.add_argument("--limit", type=int, default=50, help="rows (1-10000, default 50)")
    p.add_argument("--cursor", metavar="CURSOR",
                   help="the next page: the cursor a full page printed on stderr")
    p.add_argument("--json", action="store_true",
                   help='print [{"id", "at", "actor", "action", "target_kind", "target",'
                        ' "target_id", "note", "detail"}]')
    p.set_defaults(handler=cmd_audit)
    p = sub.add_parser(
        "doctor",
        help="check the database, migrations, webhook routes, tzdata and clock",
        description="Check the database (reachable, version), its migrations, that the"
        " running daemon routes every enabled webhook trigger (asked with OPTIONS, which"
        " starts no run), the tz database and the zones of enabled cron triggers, the clock"
        " against the database's, and the embedded server (when [database] url is empty)."
        " Changes nothing. Exit status: 0 when every check is ok or warn; 5 when the"
        " database (or the embedded server) is unavailable; 4 when another check fails.",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_doctor)
    _add_tenant_everywhere(parser)
    _record_options(parser)
    return parser


def _record_options(parser: argparse.ArgumentParser) -> None:
    """Each command's own options, kept in its parsed arguments: an operation's error names
    a request field (``next``), and the CLI says it as the option typed (``--next``)."""
    parser.set_defaults(option_strings=frozenset(
        option for action in parser._actions for option in action.option_strings))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _record_options(child)


def _as_typed(exc: TriggerdError, args: argparse.Namespace) -> str:
    """The error's message, its field and the inputs it names written as the command's
    options where it has them."""
    if not isinstance(exc, UsageError):
        return exc.message
    typed: frozenset[str] = getattr(args, "option_strings", frozenset())

    def spelled(field: str) -> str:
        option = "--" + field.replace("_", "-")
        return option if option in typed else field

    problem = name_inputs(exc.template, {name: spelled(name) for name in exc.names})
    return problem if exc.field is None else f"{spelled(exc.field)}: {problem}"


def _add_tenant_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--tenant`` on the parser and every sub-command that has none of its own."""
    if not any("--tenant" in action.option_strings for action in parser._actions):
        add_tenant_option(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_tenant_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    runtime.reserve_standard_fds()  # before anything prints
    try:
        args = argparse.Namespace()  # a refusal before parsing has no options
        parser = build_parser()
        args = parser.parse_args(argv)
        _take_labelled_tenant(args)
        if args.handler is cmd_run:
            runtime.defer_early_reload()
        settings = load_settings(args.config)
        handler: Handler = args.handler
        if handler is not cmd_run:
            _print_warnings()
        code = runtime.run(handler(args, settings))
        sys.stdout.flush()  # here, where a failed write is reported, not at the exit
        return code
    except DefinitionError as exc:
        _print_problems(exc)
        print(f"triggerd: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except InputInvalid as exc:
        for error in exc.errors:
            print(f"{error['path']}: {error['message']}", file=sys.stderr)
        print(f"triggerd: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except TriggerdError as exc:
        print(f"triggerd: error: {_as_typed(exc, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if _stdout_reader_gone():
            return _quiet_exit_after_closed_output()
        return _unexpected(exc)  # a database socket's broken pipe: still exit 5
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS:
            return _output_failed(exc)
        return _unexpected(exc)
    except Exception as exc:  # the last line of defence: one line, exit 70
        return _unexpected(exc)


# The arguments that name a workflow or trigger; the lists print another tenant's as
# tenant:name (tenant_label), and a name so written works where it is shown.
_NAME_ARGUMENTS = ("name", "key", "trigger", "workflow")


def _take_labelled_tenant(args: argparse.Namespace) -> None:
    """``acme:billing/hook`` as a trigger or workflow name means ``--tenant acme`` and
    ``billing/hook`` (keys and names hold no colon). Token names and test files' names are
    not stored objects' names; audit targets are split by the audit command itself."""
    handler = getattr(args, "handler", None)
    if handler in (cmd_token_create, cmd_token_revoke, cmd_audit) or getattr(
            handler, "__name__", "") == "cmd_test":
        return
    for attribute in _NAME_ARGUMENTS:
        value = getattr(args, attribute, None)
        if not isinstance(value, str) or ":" not in value:
            continue
        tenant, _, name = value.partition(":")
        tenant = check_tenant(tenant)
        if args.tenant is not None and args.tenant != tenant:
            raise UsageError(f"{value!r} names tenant {tenant!r}, and --tenant"
                             f" {args.tenant!r} another")
        args.tenant = tenant
        setattr(args, attribute, name)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``triggerd ... | head -1``).

    A broken pipe can also come from the database's socket; only a pipe with no reader left
    reports POLLERR to a writer, so that tells the two apart."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _fd, events in poller.poll(0))


def _output_failed(exc: OSError) -> int:
    """A write failed (stdout on a full disk, ``backup`` to a read-only one): one line
    that says so, not an internal error."""
    _discard_stdout()  # its buffer cannot be written either: do not try again at exit
    print(f"triggerd: error: cannot write the output: {exc.strerror or exc}"
          f" (errno {exc.errno})", file=sys.stderr)
    return EXIT_OUTPUT_FAILED


def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _quiet_exit_after_closed_output() -> int:
    """Stop without a message, as ``git log | head`` does: the reader asked for no more."""
    # Python flushes stdout once more at exit; aim that flush at /dev/null so it cannot
    # print "Exception ignored ... BrokenPipeError" on stderr.
    _discard_stdout()
    return EXIT_CLOSED_OUTPUT


def _unexpected(exc: Exception) -> int:
    from triggerd.db import is_unavailable

    reason = (str(exc).strip().splitlines() or [""])[0]
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)
    # A connection lost after it was opened is the database being unavailable, not a bug.
    if is_unavailable(exc) and (
        not isinstance(exc, OSError) or isinstance(exc, ConnectionError | TimeoutError)
    ):
        print(f"triggerd: error: the database connection failed: {reason or type(exc).__name__}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(
        f"triggerd: internal error: {type(exc).__name__}: {reason}"
        f" (set {DEBUG_ENV}=1 to see the traceback)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
