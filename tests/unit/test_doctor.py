"""The verdicts of ``triggerd doctor`` over plain facts (no database, clock or network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from triggerd.doctor import (
    Check,
    ClockFacts,
    DatabaseFacts,
    EmbeddedFacts,
    Probe,
    RouteFacts,
    SchemaFacts,
    Status,
    TzdataFacts,
    ZoneFacts,
    check_clock,
    check_database,
    check_embedded,
    check_migrations,
    check_routes,
    check_tzdata,
    exit_status,
    next_transition,
    report_json,
    report_lines,
)

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NTP_FIX = "sync the clocks with NTP (timedatectl set-ntp true, or chrony) on both hosts"


def clock(skew: float, round_trip: float = 0.002) -> Check:
    received = T0 + timedelta(seconds=round_trip)
    database = T0 + timedelta(seconds=round_trip / 2 + skew)
    return check_clock(ClockFacts(sent=T0, database=database, received=received))


@pytest.mark.parametrize(
    ("skew", "status", "code"),
    [(0.0, Status.OK, 0), (0.9, Status.OK, 0), (-3.0, Status.WARN, 0), (4.9, Status.WARN, 0),
     (5.5, Status.FAIL, 4), (-60.0, Status.FAIL, 4)],
)
def test_clock_thresholds(skew: float, status: Status, code: int) -> None:
    check = clock(skew)
    assert (check.status, check.exit_code) == (status, code)
    assert check.fix == (None if status is Status.OK else NTP_FIX)


def test_clock_detail_names_direction_and_uncertainty() -> None:
    assert clock(7.25, round_trip=0.5).detail == (
        "database clock 7.250s ahead of this host's (±0.250s)"
    )
    assert clock(-2.0).detail == "database clock 2.000s behind this host's (±0.001s)"


def test_clock_skew_within_the_round_trip_is_not_blamed() -> None:
    # 6 s apparent skew, but the answer took 4 s: the clocks surely differ by only 4 s.
    assert clock(6.0, round_trip=4.0).status is Status.WARN


def test_database_unreachable_fails_with_exit_5_and_the_fix() -> None:
    error = "cannot connect to the database at postgresql://u:***@db/x: connection refused"
    check = check_database(DatabaseFacts(where="postgresql://u:***@db/x", version=None,
                                         error=error))
    assert check == Check(
        name="database", status=Status.FAIL, detail=error,
        fix="start PostgreSQL, or check [database] url (TRIGGERD_DATABASE_URL)", exit_code=5,
    )


def test_database_ok_names_version() -> None:
    check = check_database(DatabaseFacts(where="postgresql://db/x", version="16.4"))
    assert (check.status, check.detail) == (Status.OK, "PostgreSQL 16.4 at postgresql://db/x")


def test_migrations_behind_ahead_edited() -> None:
    behind = check_migrations(SchemaFacts(applied=3, missing=("0004_b.sql",)))
    assert (behind.status, behind.exit_code, behind.fix) == (
        Status.FAIL, 4, "run 'triggerd migrate'")
    assert behind.detail == "1 migration(s) not applied: 0004_b.sql"
    ahead = check_migrations(SchemaFacts(applied=5, unknown=("0005_new.sql",)))
    assert (ahead.status, ahead.fix) == (
        Status.WARN, "a newer triggerd migrated this database; upgrade this one")
    edited = check_migrations(SchemaFacts(applied=4, edited="migration 0001 was changed"))
    assert (edited.status, edited.exit_code, edited.detail) == (
        Status.FAIL, 4, "migration 0001 was changed")
    ok = check_migrations(SchemaFacts(applied=4))
    assert (ok.status, ok.detail) == (Status.OK, "4 applied, up to date")


def test_routes_not_routed_lists_triggers_with_fix() -> None:
    facts = RouteFacts(address="127.0.0.1:8080", daemon_running=True, probes=(
        ("a/one", "/hooks/one", Probe.ROUTED, 405),
        ("b/two", "/hooks/x/two", Probe.NOT_ROUTED, 404),
        ("acme:c/three", "/tenants/acme/hooks/three", Probe.NOT_ROUTED, 404),
    ))
    check = check_routes(facts)
    assert (check.status, check.exit_code) == (Status.FAIL, 4)
    assert check.detail == ("2 of 3 enabled webhook trigger(s) not routed by the daemon at"
                            " 127.0.0.1:8080: b/two (/hooks/x/two), acme:c/three"
                            " (/tenants/acme/hooks/three)")
    assert check.fix is not None and check.fix.startswith(
        "reload the daemon (systemctl reload triggerd, or send it SIGHUP)")


def test_routes_daemon_not_running_is_a_warning() -> None:
    check = check_routes(RouteFacts(address="127.0.0.1:9", daemon_running=False))
    assert (check.status, check.detail) == (
        Status.WARN, "daemon not running at 127.0.0.1:9; routes not checked")


def test_routes_all_routed_and_odd_answers() -> None:
    ok = check_routes(RouteFacts(address="h:1", daemon_running=True,
                                 probes=(("a/one", "one", Probe.ROUTED, 405),)))
    assert (ok.status, ok.detail) == (
        Status.OK, "1 enabled webhook trigger(s) routed by the daemon at h:1")
    odd = check_routes(RouteFacts(address="h:1", daemon_running=True,
                                  probes=(("a/one", "one", Probe.OTHER, 200),
                                          ("a/two", "two", Probe.OTHER, None))))
    assert (odd.status, odd.detail) == (
        Status.FAIL, "unexpected answers from h:1: a/one (200), a/two (no answer)")
    unloaded = check_routes(RouteFacts(address="h:1", daemon_running=True,
                                       probes=(("a/one", "one", Probe.NOT_LOADED, 503),)))
    assert unloaded.status is Status.FAIL


def test_tzdata_missing_zone_fails() -> None:
    facts = TzdataFacts(
        system_path="/usr/share/zoneinfo", system_version="2025b", package_version="2026a",
        zones=(ZoneFacts(zone="Mars/Olympus", triggers=("w/t",), source=None),),
    )
    check = check_tzdata(facts)
    assert (check.status, check.exit_code) == (Status.FAIL, 4)
    assert check.detail == (
        "tz database: /usr/share/zoneinfo 2025b; tzdata package 2026a (fallback);"
        " zone(s) of enabled cron triggers not in it: Mars/Olympus (w/t)"
    )


def test_tzdata_ok_lists_next_transitions() -> None:
    change = datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    facts = TzdataFacts(system_path="/usr/share/zoneinfo", system_version=None,
                        package_version=None,
                        zones=(ZoneFacts(zone="Europe/Madrid", triggers=("w/t",),
                                         source="/usr/share/zoneinfo/Europe/Madrid",
                                         next_transition=change),
                               ZoneFacts(zone="UTC", triggers=("w/u",), source="x")))
    check = check_tzdata(facts)
    assert (check.status, check.detail) == (
        Status.OK,
        "tz database: /usr/share/zoneinfo (version unknown); 2 zone(s) in use: Europe/Madrid"
        " next change 2027-03-28T01:00:00+00:00, UTC next change none within a year",
    )


def test_next_transition_finds_the_second() -> None:
    madrid = ZoneInfo("Europe/Madrid")

    def offset(at: datetime) -> timedelta | None:
        return at.astimezone(madrid).utcoffset()

    assert next_transition(offset, T0) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert next_transition(offset, datetime(2027, 3, 28, 1, 0, tzinfo=UTC)) == datetime(
        2027, 10, 31, 1, 0, tzinfo=UTC)
    utc = ZoneInfo("UTC")
    assert next_transition(lambda at: at.astimezone(utc).utcoffset(), T0) is None


def test_embedded_low_disk_and_not_running() -> None:
    low = check_embedded(EmbeddedFacts(data_dir="/s/postgres", was_running=True,
                                       version="16.4", free_bytes=512 * 1024**2))
    assert (low.status, low.detail) == (
        Status.WARN, "PostgreSQL 16.4 in /s/postgres; 0.5 GiB free (less than 1 GiB)")
    idle = check_embedded(EmbeddedFacts(data_dir="/s/postgres", was_running=False,
                                        version="16.4", free_bytes=8 * 1024**3))
    assert idle.status is Status.WARN
    assert idle.fix == "start the daemon (systemctl start triggerd)"
    ok = check_embedded(EmbeddedFacts(data_dir="/s/postgres", was_running=True,
                                      version="16.4", free_bytes=8 * 1024**3))
    assert (ok.status, ok.detail) == (
        Status.OK, "PostgreSQL 16.4 running in /s/postgres; 8.0 GiB free")


def test_exit_status_is_the_highest_failure() -> None:
    warn = Check(name="a", status=Status.WARN, detail="d", fix="f")
    state = Check(name="b", status=Status.FAIL, detail="d", fix="f", exit_code=4)
    down = Check(name="c", status=Status.FAIL, detail="d", fix="f", exit_code=5)
    assert exit_status([warn]) == 0
    assert exit_status([warn, state]) == 4
    assert exit_status([state, down, warn]) == 5


def test_report_text_and_json() -> None:
    checks = [
        Check(name="database", status=Status.OK, detail="PostgreSQL 16.4 at x"),
        Check(name="clock", status=Status.FAIL, detail="off", fix="sync", exit_code=4),
    ]
    assert report_lines(checks) == [
        "OK    database  PostgreSQL 16.4 at x",
        "FAIL  clock     off",
        "                fix: sync",
        "1 problem(s), 0 warning(s): see the fix lines above",
    ]
    assert report_json(checks) == {
        "checks": [
            {"name": "database", "status": "ok", "detail": "PostgreSQL 16.4 at x", "fix": None},
            {"name": "clock", "status": "fail", "detail": "off", "fix": "sync"},
        ],
        "ok": False,
    }
    assert report_lines(checks[:1])[-1] == "ok: all 1 checks passed"


def test_embedded_not_started_for_the_checks_does_not_say_it_was() -> None:
    # No server to start (or one that failed): "started for these checks" was not true.
    missing = check_embedded(EmbeddedFacts(data_dir="/s/postgres", was_running=False,
                                           version=None, free_bytes=8 * 1024**3))
    assert (missing.status, missing.detail) == (
        Status.WARN,
        "version unknown in /s/postgres was not running (no daemon holds it); 8.0 GiB free")
    started = check_embedded(EmbeddedFacts(data_dir="/s/postgres", was_running=False,
                                           version="16.4", free_bytes=8 * 1024**3))
    assert started.detail == ("PostgreSQL 16.4 in /s/postgres was not running (no daemon"
                              " holds it); started for these checks; 8.0 GiB free")
