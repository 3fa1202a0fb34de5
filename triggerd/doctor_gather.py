"""The I/O half of ``triggerd doctor``: gathers the facts that :mod:`triggerd.doctor`
judges. It reads and asks, and never changes anything: no migration, no POST."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import asyncpg
import yarl

from triggerd import db
from triggerd.config import Settings
from triggerd.connections import ServerSlots, connections_needed
from triggerd.doctor import (
    STATE_DIR_FIX,
    Check,
    ClockFacts,
    DatabaseFacts,
    EmbeddedFacts,
    Probe,
    RouteFacts,
    SchemaFacts,
    TzdataFacts,
    ZoneFacts,
    check_clock,
    check_database,
    check_embedded,
    check_migrations,
    check_routes,
    check_tzdata,
    next_transition,
    not_checked,
)
from triggerd.errors import DatabaseUnavailable, MigrationError
from triggerd.store import diagnostics as store
from triggerd.tzrules import zone_file, zone_fingerprint

Clock = Callable[[], datetime]
HTTP_TIMEOUT = 5.0
PROBES_AT_ONCE = 8

# A served path answers 405, or 403 first when the trigger's allow_from leaves out the
# address doctor asks from (the route is found before the allowlist is read).
_STATUS_PROBE = {405: Probe.ROUTED, 403: Probe.ROUTED, 404: Probe.NOT_ROUTED,
                 503: Probe.NOT_LOADED}


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_checks(settings: Settings, *, clock: Clock = utc_now) -> list[Check]:
    """Every check, in the order they are reported."""
    embedded = not settings.database.url
    pgdata = settings.state_dir / "postgres"
    was_running = embedded and await asyncio.to_thread(db.embedded_server_running,
                                                       settings.state_dir)
    where = (db.redact_dsn(settings.database.direct_url or settings.database.url)
             if not embedded else f"the embedded server in {pgdata}")
    database_fix: str | None = None
    try:
        misplaced = db.embedded_dir_problem(settings.state_dir) if embedded else None
        if misplaced is not None:
            database_fix = STATE_DIR_FIX
            raise DatabaseUnavailable(misplaced)
        try:
            initialized = embedded and db.path_entry(pgdata / "PG_VERSION") is not None
        except OSError as exc:  # a data directory this user may not enter
            database_fix = STATE_DIR_FIX
            raise DatabaseUnavailable(f"cannot read {pgdata}: {exc.strerror or exc}") from None
        if embedded and not initialized:
            # Doctor changes nothing: it does not create the embedded server.
            raise DatabaseUnavailable(
                f"no embedded database in {pgdata} yet (the daemon's first start, or"
                " 'triggerd migrate', creates it)")
        dsn = db.direct_dsn(settings, await db.resolve_dsn(settings))
        conn = await db.connect(dsn, application_name="triggerd-doctor")
    except DatabaseUnavailable as exc:
        reason = "the database is unreachable"
        checks = [
            check_database(DatabaseFacts(where=where, version=None, error=str(exc),
                                         fix=database_fix)),
            not_checked("migrations", reason),
            not_checked("routes", reason),
            await asyncio.to_thread(tzdata_facts_check, {}, reason, clock()),
            not_checked("clock", reason),
        ]
        if embedded:
            checks.append(check_embedded(EmbeddedFacts(
                data_dir=str(pgdata), was_running=was_running, version=None,
                free_bytes=_free_bytes(settings.state_dir))))
        return checks
    try:
        version = await store.server_version(conn)
        slots: ServerSlots | None = None
        if not settings.database.behind_pgbouncer:
            with contextlib.suppress(asyncpg.PostgresError):  # a role that may not read them
                limit, reserved, in_use = await store.connection_slots(conn)
                slots = ServerSlots(max_connections=limit, reserved=reserved, in_use=in_use)
        sent = clock()
        database_time = await store.database_clock(conn)
        received = clock()
        schema = await _schema_facts(conn)
        try:
            webhooks: list[tuple[str, str]] | None = await store.routable_webhooks(conn)
            zones: dict[str, list[str]] | None = await store.cron_zones(conn)
            recorded = await store.recorded_zone_rules(conn)
            error = None
        except Exception as exc:  # an older or damaged schema is a finding, not a crash
            webhooks, zones, recorded = None, None, {}
            error = ("the schema is behind this triggerd (see migrations)" if schema.missing
                     else str(exc) or type(exc).__name__)
    finally:
        await conn.close()
    checks = [
        check_database(DatabaseFacts(
            where=db.redact_dsn(dsn) if not embedded else where, version=version,
            needed=None if slots is None else connections_needed(settings, slots.available),
            slots=slots)),
        check_migrations(schema),
        check_routes(await route_facts(settings, webhooks, error)),
        await asyncio.to_thread(tzdata_facts_check, zones or {}, error, received, recorded),
        check_clock(ClockFacts(sent=sent, database=database_time, received=received)),
    ]
    if embedded:
        checks.append(check_embedded(EmbeddedFacts(
            data_dir=str(pgdata), was_running=was_running, version=version,
            free_bytes=_free_bytes(settings.state_dir))))
    return checks


async def _schema_facts(conn: Any) -> SchemaFacts:
    try:
        rows = await db.applied_migrations(conn)
    except MigrationError as exc:  # another tool's schema_migrations
        return SchemaFacts(applied=0, foreign=exc.message)
    try:
        state = db.compare_schema(db.known_migrations(), rows)
    except MigrationError as exc:
        return SchemaFacts(applied=len(rows), edited=exc.message)
    return SchemaFacts(applied=len(rows), missing=state.missing, unknown=state.unknown)


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):  # the state dir may not exist yet
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


# --- routes --------------------------------------------------------------------------


def _probe_host(host: str) -> str:
    """Where to reach a daemon listening on ``host`` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


async def route_facts(
    settings: Settings, webhooks: list[tuple[str, str]] | None, error: str | None
) -> RouteFacts:
    host = _probe_host(settings.http.host)
    address = f"{host}:{settings.http.port}"
    if webhooks is None:
        return RouteFacts(address=address, daemon_running=False, error=error)
    base = yarl.URL.build(scheme="http", host=host, port=settings.http.port)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=PROBES_AT_ONCE)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            async with session.get(base.with_path("/healthz")) as response:
                await response.read()
        except aiohttp.ClientConnectorError:
            return RouteFacts(address=address, daemon_running=False)
        except (aiohttp.ClientError, TimeoutError):
            pass  # something listens; the probes below say what

        async def probe(name: str, path: str) -> tuple[str, str, Probe, int | None]:
            # OPTIONS is not among the methods a webhook trigger may accept, so a served
            # path answers 405 and no run is ever started by asking.
            url = base.with_path(path)
            try:
                async with session.options(url, allow_redirects=False) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                return name, path, Probe.OTHER, None
            return name, path, _STATUS_PROBE.get(status, Probe.OTHER), status

        probes = await asyncio.gather(*(probe(name, path) for name, path in webhooks))
    return RouteFacts(address=address, daemon_running=True, probes=tuple(probes))


# --- tzdata --------------------------------------------------------------------------


def _version_in(directory: Path) -> str | None:
    try:
        first = (directory / "tzdata.zi").read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("# version "):
            return first.removeprefix("# version ").strip()
    except OSError:
        pass
    try:
        return (directory / "+VERSION").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _package_version() -> str | None:
    try:
        import tzdata  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    version = getattr(tzdata, "IANA_VERSION", None)
    if version is None:
        try:
            return metadata.version("tzdata")
        except metadata.PackageNotFoundError:
            return None
    return str(version)


def _zone_source(zone: str) -> str | None:
    """The file zoneinfo reads ``zone`` from (its search path first, then the tzdata
    package), or None when it has no such zone."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    found = zone_file(zone)
    return str(found) if isinstance(found, Path) else "tzdata package"


def tzdata_facts_check(
    zones: dict[str, list[str]],
    error: str | None,
    now: datetime,
    recorded: dict[str, str] | None = None,
) -> Check:
    """Blocking (reads files): run it in a thread. ``recorded``: the fingerprints of the
    zones' rules when definitions were last applied."""
    recorded = recorded or {}
    system = next((Path(d) for d in TZPATH if Path(d).is_dir()), None)
    found = []
    for zone, triggers in sorted(zones.items()):
        source = _zone_source(zone)
        transition = None
        if source is not None:
            tz = ZoneInfo(zone)
            transition = next_transition(lambda at, tz=tz: at.astimezone(tz).utcoffset(), now)
        before = recorded.get(zone)
        now_print = zone_fingerprint(zone) if before is not None else None
        found.append(ZoneFacts(zone=zone, triggers=tuple(triggers), source=source,
                               next_transition=transition,
                               rules_changed=None if before is None or now_print is None
                               else before != now_print))
    return check_tzdata(TzdataFacts(
        system_path=None if system is None else str(system),
        system_version=None if system is None else _version_in(system),
        package_version=_package_version(),
        zones=tuple(found),
        error=error,
    ))
