"""``triggerd doctor``: the checks, as pure functions over gathered facts.

Each check turns facts (gathered by :mod:`triggerd.doctor_gather`) into a :class:`Check`
with a status and, when something is wrong, the fix. Nothing here reads the clock, the
database, the network or the file system, so every verdict is tested with plain values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from triggerd.connections import ServerSlots, shortfall

# Exit status of a failed check (DESIGN §5b): 5 when something is unavailable (the
# database, the embedded server), 4 when the installation is in a state an operator must
# fix (schema, routes, time zones, clock).
EXIT_UNAVAILABLE = 5
EXIT_STATE = 4

SKEW_WARN = timedelta(seconds=1)
SKEW_FAIL = timedelta(seconds=5)
LOW_DISK_BYTES = 1024**3
MAX_LISTED = 10  # names listed in one detail line; the rest are counted


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    exit_code: int = 0  # what a failure makes the command exit with (0 unless FAIL)


def _ok(name: str, detail: str) -> Check:
    return Check(name=name, status=Status.OK, detail=detail)


def _warn(name: str, detail: str, fix: str | None) -> Check:
    return Check(name=name, status=Status.WARN, detail=detail, fix=fix)


def _fail(name: str, detail: str, fix: str, exit_code: int = EXIT_STATE) -> Check:
    return Check(name=name, status=Status.FAIL, detail=detail, fix=fix, exit_code=exit_code)


def not_checked(name: str, reason: str) -> Check:
    """A check that could not run because an earlier one failed (that one has the fix)."""
    return _warn(name, f"not checked: {reason}", None)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


# --- database ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatabaseFacts:
    where: str  # the DSN without its password
    version: str | None  # server_version; None when unreachable
    error: str | None = None  # why it could not be reached
    needed: int | None = None  # connections the daemon may open (None: through PgBouncer)
    slots: ServerSlots | None = None  # the server's limits and use, when readable
    fix: str | None = None  # when unreachable for a reason of its own (None: the usual one)


STATE_DIR_FIX = ("make [daemon] state_dir (TRIGGERD_DAEMON_STATE_DIR) a directory the"
                 " daemon's user can write, or move what is in its place")


def check_database(facts: DatabaseFacts) -> Check:
    if facts.error is not None or facts.version is None:
        return _fail(
            "database",
            facts.error or f"cannot connect to {facts.where}",  # the error names the place
            facts.fix or "start PostgreSQL, or check [database] url (TRIGGERD_DATABASE_URL)",
            EXIT_UNAVAILABLE,
        )
    detail = f"PostgreSQL {facts.version} at {facts.where}"
    if facts.needed is None or facts.slots is None:
        return _ok("database", detail)
    slots = facts.slots
    # Only what cannot fit whatever runs: the connections in use may be this daemon's own.
    problem = shortfall(facts.needed, replace(slots, in_use=0))
    usage = (f"{slots.in_use} of {slots.max_connections - slots.reserved} connections in use;"
             f" a daemon may open {facts.needed}")
    if problem is not None:
        return _warn("database", f"{detail}; {problem}",
                     "lower [database] pool_max (or [http] processes), raise the server's"
                     " max_connections, or put PgBouncer in front")
    return _ok("database", f"{detail}; {usage}")


# --- migrations ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SchemaFacts:
    applied: int  # migrations applied in the database (known or not)
    missing: tuple[str, ...] = ()  # shipped but not applied
    unknown: tuple[str, ...] = ()  # applied but not shipped (a newer triggerd)
    edited: str | None = None  # why an applied migration does not match its file
    foreign: str | None = None  # schema_migrations is another tool's table


def check_migrations(facts: SchemaFacts) -> Check:
    if facts.foreign is not None:
        return _fail("migrations", facts.foreign, "point [database] url at a database that"
                     " triggerd alone uses (an empty one: 'triggerd migrate' fills it)")
    if facts.edited is not None:
        return _fail("migrations", facts.edited, "restore the original migration file "
                     "(reinstall the triggerd release that applied it)")
    if facts.missing:
        return _fail(
            "migrations",
            f"{len(facts.missing)} migration(s) not applied: {_listed(list(facts.missing))}",
            "run 'triggerd migrate'",
        )
    if facts.unknown:
        return _warn(
            "migrations",
            f"the database has migration(s) this triggerd does not know:"
            f" {_listed(list(facts.unknown))}",
            "a newer triggerd migrated this database; upgrade this one",
        )
    return _ok("migrations", f"{facts.applied} applied, up to date")


# --- routes --------------------------------------------------------------------------


class Probe(enum.StrEnum):
    """What the running daemon answered for one webhook path (asked with OPTIONS, which no
    trigger may accept, so the probe never starts a run)."""

    ROUTED = "routed"  # 405: the path is served, the method is not (403: not from here)
    NOT_ROUTED = "not_routed"  # 404
    NOT_LOADED = "not_loaded"  # 503: the daemon has not read its webhook table yet
    OTHER = "other"  # any other answer


@dataclass(frozen=True, kw_only=True)
class RouteFacts:
    address: str  # host:port asked
    daemon_running: bool  # False: the connection was refused
    # (trigger full name, path, what the daemon answered, the HTTP status or None)
    probes: tuple[tuple[str, str, Probe, int | None], ...] = ()
    error: str | None = None  # the triggers could not be read (schema behind, ...)


def check_routes(facts: RouteFacts) -> Check:
    if facts.error is not None:
        return _warn("routes", f"webhook triggers not checked: {facts.error}", None)
    if not facts.daemon_running:
        return _warn(
            "routes",
            f"daemon not running at {facts.address}; routes not checked",
            "start it (systemctl start triggerd), or check [http] host and port",
        )
    if not facts.probes:
        return _ok("routes", "no enabled webhook triggers")
    missing = [f"{name} ({path})" for name, path, probe, _ in facts.probes
               if probe is Probe.NOT_ROUTED]
    unloaded = [name for name, _, probe, _ in facts.probes if probe is Probe.NOT_LOADED]
    odd = [f"{name} ({status or 'no answer'})" for name, _, probe, status in facts.probes
           if probe is Probe.OTHER]
    if missing:
        return _fail(
            "routes",
            f"{len(missing)} of {len(facts.probes)} enabled webhook trigger(s) not routed by"
            f" the daemon at {facts.address}: {_listed(missing)}",
            "reload the daemon (systemctl reload triggerd, or send it SIGHUP); if that does"
            " not help, see the daemon log for the trigger (a path clash, an invalid config,"
            " no published version)",
        )
    if unloaded:
        return _fail(
            "routes",
            f"the daemon at {facts.address} has not loaded its webhook triggers yet",
            "check that the daemon reaches the database (its log), then reload it",
        )
    if odd:
        return _fail(
            "routes",
            f"unexpected answers from {facts.address}: {_listed(odd)}",
            "check that [http] host and port name this triggerd and not another program",
        )
    return _ok("routes", f"{len(facts.probes)} enabled webhook trigger(s) routed by the"
                         f" daemon at {facts.address}")


# --- tzdata --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ZoneFacts:
    zone: str
    triggers: tuple[str, ...]  # enabled cron triggers that use it
    source: str | None  # the file or package it is read from; None: not found
    next_transition: datetime | None = None  # next offset change (None: none within a year)
    # Its rules differ from those recorded when definitions were last applied (None: no
    # record, e.g. applied by an older triggerd).
    rules_changed: bool | None = None


@dataclass(frozen=True, kw_only=True)
class TzdataFacts:
    # Where zoneinfo looks first, and the tz database version there (None: unknown).
    system_path: str | None
    system_version: str | None
    package_version: str | None  # the `tzdata` Python package (fallback), if installed
    zones: tuple[ZoneFacts, ...] = ()
    error: str | None = None  # the triggers could not be read


def _tzdata_in_use(facts: TzdataFacts) -> str:
    parts = []
    if facts.system_path is not None:
        parts.append(f"{facts.system_path} {facts.system_version or '(version unknown)'}")
    if facts.package_version is not None:
        parts.append(f"tzdata package {facts.package_version}"
                     + (" (fallback)" if facts.system_path is not None else ""))
    return "tz database: " + ("; ".join(parts) if parts else "none found")


def check_tzdata(facts: TzdataFacts) -> Check:
    used = _tzdata_in_use(facts)
    if facts.error is not None:
        return _warn("tzdata", f"{used}; zones not checked: {facts.error}", None)
    missing = [f"{z.zone} ({_listed(list(z.triggers))})" for z in facts.zones
               if z.source is None]
    if missing:
        return _fail(
            "tzdata",
            f"{used}; zone(s) of enabled cron triggers not in it: {_listed(missing)}",
            "install or update tzdata (apt install tzdata, or pip install tzdata), or change"
            " the triggers' timezone to a current zone name and apply again",
        )
    if facts.system_path is None and facts.package_version is None:
        return _fail("tzdata", used, "install tzdata (apt install tzdata, or pip install tzdata)")
    changed = [f"{z.zone} ({_listed(list(z.triggers))})" for z in facts.zones
               if z.rules_changed]
    if changed:
        return _warn(
            "tzdata",
            f"{used}; the rules of zone(s) changed since the definitions were applied:"
            f" {_listed(changed)}",
            "check those triggers' next fires (triggerd triggers show NAME); then apply the"
            " definitions again to record the new rules",
        )
    shown = []
    for z in facts.zones:
        nxt = z.next_transition.isoformat() if z.next_transition else "none within a year"
        shown.append(f"{z.zone} next change {nxt}")
    zones = f"; {len(facts.zones)} zone(s) in use: {_listed(shown)}" if facts.zones else ""
    return _ok("tzdata", used + zones)


def next_transition(offset_at: Any, start: datetime, *, days: int = 400) -> datetime | None:
    """The first instant after ``start`` at which ``offset_at(instant)`` changes, to the
    second; None when it does not change within ``days``. ``offset_at`` maps an aware
    datetime to its UTC offset (a zone's ``utcoffset``), so this stays pure."""
    before = start
    base = offset_at(start)
    for _ in range(days):
        after = before + timedelta(days=1)
        if offset_at(after) != base:
            low, high = before, after
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset_at(middle) == base:
                    low = middle
                else:
                    high = middle
            return high.replace(microsecond=0)
        before = after
    return None


# --- clock ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClockFacts:
    sent: datetime  # local clock just before asking the database
    database: datetime | None  # the database's clock_timestamp(); None: not asked
    received: datetime  # local clock just after the answer


def check_clock(facts: ClockFacts) -> Check:
    if facts.database is None:
        return _warn("clock", "not checked: the database is unreachable", None)
    # The database read its clock somewhere within the round trip: the middle is the best
    # estimate, and half the round trip is how wrong that can be.
    middle = facts.sent + (facts.received - facts.sent) / 2
    skew = facts.database - middle
    uncertainty = (facts.received - facts.sent) / 2
    surely = abs(skew) - uncertainty  # the least the clocks can differ by
    ahead = "ahead of" if skew > timedelta(0) else "behind"
    detail = (f"database clock {abs(skew).total_seconds():.3f}s {ahead} this host's"
              f" (±{uncertainty.total_seconds():.3f}s)")
    fix = "sync the clocks with NTP (timedatectl set-ntp true, or chrony) on both hosts"
    if surely > SKEW_FAIL:
        return _fail("clock", detail, fix)
    if surely > SKEW_WARN:
        return _warn("clock", detail, fix)
    return _ok("clock", detail)


# --- embedded server -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EmbeddedFacts:
    data_dir: str
    was_running: bool  # before doctor joined it
    version: str | None  # server_version, when reachable
    free_bytes: int | None  # free space where the state directory is


def check_embedded(facts: EmbeddedFacts) -> Check:
    gib = (f"; {facts.free_bytes / 1024**3:.1f} GiB free"
           if facts.free_bytes is not None else "")
    version = f"PostgreSQL {facts.version}" if facts.version else "version unknown"
    if facts.free_bytes is not None and facts.free_bytes < LOW_DISK_BYTES:
        return _warn(
            "embedded",
            f"{version} in {facts.data_dir}{gib} (less than 1 GiB)",
            "free disk space under [daemon] state_dir, or move it to a larger disk",
        )
    if not facts.was_running:
        # Started only when there was one to start and it came up (its version was read):
        # it said "started for these checks" also when there was none, or it failed.
        started = "; started for these checks" if facts.version else ""
        return _warn(
            "embedded",
            f"{version} in {facts.data_dir} was not running (no daemon holds it)"
            f"{started}{gib}",
            "start the daemon (systemctl start triggerd)",
        )
    return _ok("embedded", f"{version} running in {facts.data_dir}{gib}")


# --- the report ----------------------------------------------------------------------


def exit_status(checks: list[Check]) -> int:
    """0 when every check is ok or warn, else the highest failing check's exit code."""
    return max([c.exit_code for c in checks if c.status is Status.FAIL] + [0])


def check_json(check: Check) -> dict[str, Any]:
    return {"name": check.name, "status": check.status.value, "detail": check.detail,
            "fix": check.fix}


def report_json(checks: list[Check]) -> dict[str, Any]:
    return {"checks": [check_json(c) for c in checks],
            "ok": not any(c.status is Status.FAIL for c in checks)}


def summary(checks: list[Check]) -> str:
    fails = sum(c.status is Status.FAIL for c in checks)
    warns = sum(c.status is Status.WARN for c in checks)
    if fails:
        return f"{fails} problem(s), {warns} warning(s): see the fix lines above"
    if warns:
        return f"ok, with {warns} warning(s)"
    return f"ok: all {len(checks)} checks passed"


def report_lines(checks: list[Check]) -> list[str]:
    """The text report: one line per check, a fix line under each that has one, and the
    summary last."""
    width = max([len(c.name) for c in checks] + [5])
    lines = []
    for c in checks:
        lines.append(f"{c.status.value.upper():<4}  {c.name:<{width}}  {c.detail}")
        if c.fix is not None:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    lines.append(summary(checks))
    return lines
