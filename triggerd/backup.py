"""``triggerd backup FILE`` and ``triggerd restore FILE``: pg_dump's custom format.

The embedded server is dumped and restored with its own binaries (same major version as
the server); an external one with ``pg_dump``/``pg_restore`` from PATH (or ``--bindir``),
which must be at least as new as the server. The work is pg_dump's and pg_restore's; this
module picks the programs, checks what can be checked before anything changes, and makes
the outcome atomic: a backup file appears complete or not at all, a restore is one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from triggerd import db
from triggerd.config import Settings
from triggerd.cron import utc_iso
from triggerd.durations import format_duration
from triggerd.errors import Conflict, TriggerdError, Unavailable, UsageError
from triggerd.schedules import SCHEDULED_TYPES
from triggerd.store import backup as store

# The first bytes of every pg_dump custom-format archive.
ARCHIVE_MAGIC = b"PGDMP"
# What `triggerd backup` appends to pg_dump's archive: the SHA-256 of the bytes before it.
# The custom format has no checksum of its own, and pg_restore reads a damaged archive's
# altered statements (a function body) or skips a table's data without a word; it reads
# what its table of contents points at, so it never reads these bytes.
CHECKSUM_MARKER = b"\ntriggerd-backup-sha256:"
CHECKSUM_TRAILER_LENGTH = len(CHECKSUM_MARKER) + 64 + 1
_CHECKSUM_TRAILER = re.compile(re.escape(CHECKSUM_MARKER) + rb"([0-9a-f]{64})\n\Z")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


class OutputFailed(TriggerdError):
    """The backup file could not be written (a full disk, a quota): as any output the
    file system refuses, exit 74 (EX_IOERR)."""

    exit_code = 74


# What pg_dump says when the file system refuses its output (strerror's words).
_OUTPUT_FAILURES = ("No space left on device", "Disk quota exceeded", "File too large",
                    "Read-only file system", "Input/output error")


def dump_failure(message: str, file: Path) -> TriggerdError:
    """The error for pg_dump's complaint: its output refused (exit 74) or anything else
    (the database or the program: exit 5, retrying may help)."""
    if any(words in message for words in _OUTPUT_FAILURES):
        return OutputFailed(f"pg_dump could not write {file}: {message}")
    return Unavailable(f"pg_dump failed: {message}")


class RestoreFailed(TriggerdError):
    """pg_restore refused the archive; its single transaction was rolled back."""

    exit_code = 2


# --- pure helpers --------------------------------------------------------------------


def split_password(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and the environment that carries the password to
    libpq instead: a command line is readable by every user of the machine (ps)."""
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc
    env: dict[str, str] = {}
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            user, password = creds.split(":", 1)
            env["PGPASSWORD"] = urllib.parse.unquote(password)
            netloc = f"{user}@{host}"
    # The other parameters are kept as written: libpq decodes them itself, and it reads
    # "+" as a plus, not a space (re-encoding turned a %20 into one).
    kept: list[str] = []
    for item in parts.query.split("&") if parts.query else []:
        for key, value in urllib.parse.parse_qsl(item, keep_blank_values=True):
            if key == "password":
                env["PGPASSWORD"] = value  # read as asyncpg (the daemon) reads it
                break
        else:
            kept.append(item)
    # Built by hand: urlunsplit drops the "//" of a URL without a host
    # (postgresql:///triggerd?host=/run/postgresql), which libpq then refuses.
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    if kept:
        rebuilt += "?" + "&".join(kept)
    return rebuilt, env


def tool_version(version_output: str) -> tuple[int, str] | None:
    """(major, version) from ``pg_dump --version``: ``pg_dump (PostgreSQL) 15.18 (Debian
    15.18-0+deb12u1)`` is (15, "15.18")."""
    match = _VERSION.search(version_output)
    return (int(match.group(1)), match.group(0).split()[-1]) if match else None


def tool_message(stderr: str) -> str:
    """pg_dump's or pg_restore's complaint as one line: its error lines, without the
    program-name prefixes."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines
              if re.search(r"\b(error|detail):|FATAL", line)] or lines[:1]
    cleaned = [re.sub(r"^(pg_dump|pg_restore): ((error|detail): )?", "", line)
               for line in errors]
    return "; ".join(dict.fromkeys(cleaned)) or "no message"


# --- programs ------------------------------------------------------------------------


def find_tool(name: str, *, embedded: bool, bindir: Path | None) -> Path:
    if bindir is not None:
        path = bindir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            # The operator's argument names nothing usable: a usage error (2), which
            # retrying cannot mend, not an unavailable service (5).
            raise UsageError(f"--bindir: {path} is not an executable {name}")
        return path
    if embedded:
        return db.embedded_binary(name)
    found = shutil.which(name)
    if found is None:
        raise Unavailable(
            f"{name} was not found on PATH; install the PostgreSQL client programs"
            " (the server's major version or newer) or pass --bindir DIR"
        )
    return Path(found)


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
    except OSError as exc:
        raise Unavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def check_tool(tool: Path, server_major: int, server_text: str) -> None:
    """Refuse a pg_dump/pg_restore older than the server before it runs (pg_dump would
    refuse by itself; pg_restore might fail halfway through on syntax it does not know)."""
    code, out, err = await _run([str(tool), "--version"], {})
    found = tool_version(out)
    if code != 0 or found is None:
        raise Unavailable(f"{tool} --version failed: {tool_message(err or out)}")
    major, version = found
    if major < server_major:
        raise Unavailable(
            f"{tool} is version {version}, older than the"
            f" server (PostgreSQL {server_text}); use {tool.name} {server_major} or newer"
            " (--bindir DIR)"
        )


# --- the database side ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Database:
    dsn: str  # without a password
    env: dict[str, str]  # PGPASSWORD, when the URL has one
    embedded: bool
    major: int
    version: str
    migrations: tuple[str, ...]


async def _database(settings: Settings) -> tuple[_Database, str]:
    """The configured database (its direct URL: pg_dump and pg_restore need a session of
    their own, which a transaction-mode PgBouncer does not give), and the full DSN."""
    resolved = db.direct_dsn(settings, await db.resolve_dsn(settings))
    conn = await db.connect(resolved, application_name=store.BACKUP_APPLICATION_NAME)
    try:
        major, version = await store.server_version(conn)
        rows = await db.applied_migrations(conn)
    finally:
        await conn.close()
    dsn, env = split_password(resolved)
    return _Database(
        dsn=dsn, env=env, embedded=not settings.database.url, major=major, version=version,
        migrations=tuple(str(r["name"]) for r in rows),
    ), resolved


# --- backup --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BackupResult:
    file: str
    bytes: int
    database_version: str
    migrations: tuple[str, ...]


def _target(file: Path) -> Path:
    if file.is_dir():
        raise UsageError(f"{file}: is a directory")
    if file.exists() and not file.is_file():
        # The dump is renamed into place: that would replace a device or a FIFO (as root,
        # /dev/full became a regular file) instead of writing through it.
        raise UsageError(f"{file}: is not a regular file; give a file path (it is replaced"
                         " whole once the dump is complete)")
    target = file.absolute()
    if not target.parent.is_dir():
        raise UsageError(f"{file}: directory {target.parent} does not exist")
    return target


def _temporary(target: Path) -> Path:
    """A temporary file beside the target (same file system: the rename is atomic), mode
    0600: executions hold payloads."""
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".partial")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            raise  # the file system refuses all output: exit 74, as any such write
        raise UsageError(f"{target}: cannot create a file in {target.parent}:"
                         f" {exc.strerror or exc}") from None
    os.close(fd)
    return Path(name)


def _file_digest(file: Path, length: int) -> str:
    """The SHA-256 (hex) of the first ``length`` bytes of ``file``."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        left = length
        while left > 0:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _append_checksum(tmp: Path) -> None:
    """Append the checksum trailer to the complete dump."""
    digest = _file_digest(tmp, tmp.stat().st_size)
    with open(tmp, "ab") as handle:
        handle.write(CHECKSUM_MARKER + digest.encode() + b"\n")


def check_archive_checksum(file: Path) -> None:
    """Refuse an archive whose checksum trailer does not match its bytes (altered), or that
    ends in a part of one (cut short). An archive without a trailer (made by pg_dump, or by
    a triggerd before checksums) is left to pg_restore's own checks."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            handle.seek(max(0, size - CHECKSUM_TRAILER_LENGTH))
            tail = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    match = _CHECKSUM_TRAILER.search(tail)
    if match is None:
        if CHECKSUM_MARKER in tail:  # the trailer's start: its end cut off, or altered
            raise UsageError(f"{file} is damaged: its checksum at the end is cut short or"
                             " altered; nothing was changed")
        return
    expected = match.group(1).decode()
    found = _file_digest(file, size - CHECKSUM_TRAILER_LENGTH)
    if found != expected:
        raise UsageError(
            f"{file} is damaged: its contents do not match its checksum (sha256 {found[:12]},"
            f" written {expected[:12]}); nothing was changed")


def _commit(tmp: Path, target: Path) -> int:
    """Make the complete dump durable, give it its name; its size."""
    _append_checksum(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target.stat().st_size


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


async def backup(settings: Settings, file: Path, *, bindir: Path | None = None) -> BackupResult:
    """Dump the configured database into ``file`` (custom format, mode 0600). pg_dump
    reads one MVCC snapshot, so a running daemon may keep working meanwhile."""
    target = _target(file)
    # Arguments first: a bad one must not start (or create) the embedded server.
    tool = find_tool("pg_dump", embedded=not settings.database.url, bindir=bindir)
    database, _ = await _database(settings)
    await check_tool(tool, database.major, database.version)
    tmp = _temporary(target)
    try:
        code, _, err = await _run(
            [str(tool), "--format=custom", "--no-password", "--file", str(tmp),
             "--dbname", database.dsn],
            database.env,
        )
        if code != 0:
            raise dump_failure(tool_message(err), file)
        size = await asyncio.to_thread(_commit, tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    return BackupResult(
        file=str(file), bytes=size, database_version=database.version,
        migrations=database.migrations,
    )


# --- restore -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RestoreResult:
    file: str
    workflows: int
    executions: int
    migrations: tuple[str, ...]
    missing: tuple[str, ...]  # shipped, not in the restored schema: run `triggerd migrate`
    unknown: tuple[str, ...]  # in the restored schema, unknown to this triggerd
    # Resume copies by the id of the key that encrypted them (the archive's state dir's key).
    resume_keys: Mapping[str, int] = field(default_factory=dict)
    # Enabled schedules, and the newest past slot of the ledger: the daemon catches up the
    # slots since then under each misfire policy, unless ``skipped_missed``.
    schedules: int = 0
    last_slot: datetime | None = None
    skipped_missed: bool = False


# Tables every triggerd backup has (an archive with only some of them is another
# application's).
_TRIGGERD_TABLES = ("schema_migrations", "workflows", "workflow_triggers", "workflow_executions")


def check_archive_header(file: Path) -> None:
    """Refuse a missing file or one that is not a custom-format archive, before any
    connection is made."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(len(ARCHIVE_MAGIC))
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    if head != ARCHIVE_MAGIC:
        raise UsageError(
            f"{file} is not a pg_dump custom-format archive (make one with 'triggerd backup')"
        )


async def _check_archive_contents(tool: Path, file: Path) -> None:
    code, out, err = await _run([str(tool), "--list", str(file)], {})
    if code != 0:
        message = tool_message(err)
        version = re.search(r"unsupported version \((\d+)\.\d+\)", message)
        if version and version.group(1) == "1":  # a newer pg_dump's archive format
            raise Unavailable(
                f"{tool} cannot read {file}: {message}; use the pg_restore of the PostgreSQL"
                " version that made it, or newer (--bindir DIR)"
            )
        raise UsageError(f"{file} cannot be read as an archive: {message}")
    lacking = [table for table in _TRIGGERD_TABLES
               if not re.search(rf"TABLE public {table}\b", out)]
    if lacking:
        raise UsageError(f"{file} is not a triggerd backup (it has no {lacking[0]} table);"
                         " nothing was changed")


async def _archive_migrations(tool: Path, file: Path) -> set[str]:
    """The migration names in the archive's schema_migrations rows (its data as COPY text)."""
    code, out, err = await _run(
        [str(tool), "--data-only", "--table=schema_migrations", "--file=-", str(file)], {})
    if code != 0:
        raise UsageError(f"{file} cannot be read as an archive: {tool_message(err)}")
    names: set[str] = set()
    columns: list[str] | None = None
    for line in out.splitlines():
        header = re.match(r"COPY public\.schema_migrations \(([^)]*)\) FROM stdin;", line)
        if header:
            columns = [c.strip() for c in header.group(1).split(",")]
            continue
        if columns is None:
            continue
        if line == "\\.":
            break
        if not {"version", "name", "checksum"} <= set(columns):
            # Another tool's table of that name, whatever else the archive holds.
            raise UsageError(f"{file} is not a triggerd backup (its schema_migrations table"
                             " is another tool's); nothing was changed")
        values = dict(zip(columns, line.split("\t"), strict=False))
        names.add(values["name"])
    return names


async def restore(
    settings: Settings, file: Path, *, yes: bool, force: bool, bindir: Path | None = None,
    skip_missed: bool = False,
) -> RestoreResult:
    """Replace the configured database's triggerd tables with the archive's, in one
    transaction: any failure leaves the database as it was. ``skip_missed`` then moves
    every schedule's catch-up floor to now: the slots since the backup are not run."""
    check_archive_header(file)
    await asyncio.to_thread(check_archive_checksum, file)
    tool = find_tool("pg_restore", embedded=not settings.database.url, bindir=bindir)
    database, resolved = await _database(settings)
    await check_tool(tool, database.major, database.version)
    await _check_archive_contents(tool, file)
    conn = await db.connect(resolved, application_name=store.BACKUP_APPLICATION_NAME)
    try:
        others = await store.triggerd_connections(conn)
        workflows = await store.count_rows(conn, "workflows")
        applied = {str(r["name"]) for r in await db.applied_migrations(conn)}
    finally:
        await conn.close()
    newer = sorted(applied - await _archive_migrations(tool, file))
    if newer:
        # pg_restore --clean drops only what the archive has: tables of later migrations
        # hold foreign keys to those, and the drop failed half-way through (rolled back).
        raise UsageError(
            f"the database has migration(s) the backup lacks ({', '.join(newer)}): restore"
            " it into an empty database (a new state directory, or a database dropped and"
            " created again), then run 'triggerd migrate'; nothing was changed")
    if others and not force:
        raise Conflict(
            f"{others} triggerd connection(s) to this database are open (a running daemon?);"
            " stop it before restoring, or pass --force; nothing was changed"
        )
    if workflows and not yes:
        raise UsageError(
            f"restoring {file} would replace the database's {workflows} workflow(s);"
            " pass --yes; nothing was changed"
        )
    code, _, err = await _run(
        [str(tool), "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--exit-on-error", "--no-password", "--dbname", database.dsn, str(file)],
        database.env,
    )
    if code != 0:
        message = tool_message(err)
        if "connection to server" in message or "could not connect" in message:
            raise Unavailable(f"pg_restore failed: {message}; nothing was changed")
        raise RestoreFailed(f"pg_restore failed: {message}; nothing was changed")
    conn = await db.connect(resolved, application_name=store.BACKUP_APPLICATION_NAME)
    try:
        rows = await db.applied_migrations(conn)
        workflows = await store.count_rows(conn, "workflows")
        executions = await store.count_rows(conn, "workflow_executions")
        resume_keys = await store.resume_copy_keys(conn)
        state = db.compare_schema(db.known_migrations(), rows)
        schedules, last_slot, skipped = 0, None, False
        try:
            schedules, last_slot = await store.restored_schedules(conn, SCHEDULED_TYPES)
            if skip_missed:
                await store.skip_missed_slots(conn, SCHEDULED_TYPES)
                skipped = True
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            pass  # a schema from before schedules' state: nothing to say or to move
    finally:
        await conn.close()
    return RestoreResult(
        file=str(file), workflows=workflows, executions=executions,
        migrations=tuple(str(r["name"]) for r in rows), missing=state.missing,
        unknown=state.unknown, resume_keys=resume_keys, schedules=schedules,
        last_slot=last_slot, skipped_missed=skipped,
    )


def _age(age: timedelta) -> str:
    return format_duration(timedelta(seconds=max(0, int(age.total_seconds()))))


def catch_up_warning(result: RestoreResult, now: datetime) -> str | None:
    """What the daemon will do with the slots between the backup and now, when it may run
    again what already ran after the backup was taken."""
    if result.skipped_missed or not result.schedules or result.last_slot is None:
        return None
    since = utc_iso(result.last_slot)
    return (f"the backup's {result.schedules} enabled schedule(s) last recorded a slot at"
            f" {since} ({_age(now - result.last_slot)} ago): when the daemon starts,"
            " each catches up the slots since then under its misfire policy (with"
            " 'misfire: all', every one, up to max_catchup), so runs made after the backup"
            " was taken may run again; restore with --skip-missed to catch up none")


def resume_key_warning(result: RestoreResult, settings: Settings,
                       environ: Mapping[str, str]) -> str | None:
    """What to do before starting the daemon when the archive's resume copies were
    encrypted with another key than the one this configuration reads (or would make): the
    backup does not hold the key, and a parked run whose copies cannot be read ends
    RESUME_KEY_MISMATCH."""
    from triggerd.errors import ConfigError
    from triggerd.executor.resume import existing_resume_key, resume_key_source

    if not result.resume_keys:
        return None
    source = resume_key_source(settings, environ)
    try:
        key = existing_resume_key(settings, environ)
    except ConfigError as exc:
        return f"the restored runs' resume copies need their key, and {exc}"
    others = {k: n for k, n in result.resume_keys.items() if key is None or k != key.key_id}
    if not others:
        return None
    copies = sum(others.values())
    ids = ", ".join(sorted(others))
    have = (f"{source} has key {key.key_id}" if key is not None
            else f"there is no {source} yet (the daemon would make a new key)")
    return (f"{copies} resume cop{'y' if copies == 1 else 'ies'} of the restored runs"
            f" {'was' if copies == 1 else 'were'} encrypted with key {ids}, and {have}:"
            " put the backed-up installation's key there (its <state_dir>/resume.key, or"
            " [executor] resume_key_file) before"
            " starting the daemon, or the parked runs that need them end RESUME_KEY_MISMATCH")
