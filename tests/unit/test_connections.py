"""The connections a daemon may open against the server's free slots (pure)."""

from __future__ import annotations

import pytest

from triggerd.config import DatabaseSettings, HttpSettings, Settings
from triggerd.connections import ServerSlots, connections_needed, shortfall, worker_pool_max
from triggerd.doctor import DatabaseFacts, Status, check_database


def _settings(pool_max: int, processes: int) -> Settings:
    return Settings(database=DatabaseSettings(pool_max=pool_max),
                    http=HttpSettings(processes=processes))


def test_the_pool_listen_and_each_extra_http_process_count() -> None:
    assert connections_needed(Settings()) == 11  # pool_max 10 + LISTEN
    # Each extra process's pool is pool_max too (it runs an executor of its own).
    assert connections_needed(_settings(40, 3)) == 41 + 2 * 41
    # Within the server's 97 slots: the extra processes share what the main one leaves.
    assert connections_needed(_settings(40, 3), available=97) == 41 + 2 * (27 + 1) == 97


@pytest.mark.parametrize(("pool_max", "processes", "available", "expected"), [
    (10, 2, None, 10),  # the server's slots unknown (or PgBouncer's): pool_max
    (10, 2, 97, 10),  # room enough: as the main process's
    (10, 8, 97, 10),  # 8 x (10 + 1) = 88 of 97
    (10, 9, 97, 9),  # 11 + 8 x (9 + 1) = 91: an even share of the 86 left
    (5, 64, 97, 2),  # not even 1 + LISTEN each fits: the least it works with (warned)
    (40, 1, 97, 40),  # no extra process
    (1, 3, 97, 1),  # never more than pool_max
])
def test_an_extra_processs_pool_is_pool_max_within_the_servers_slots(
    pool_max: int, processes: int, available: int | None, expected: int
) -> None:
    assert worker_pool_max(_settings(pool_max, processes), available) == expected


@pytest.mark.parametrize(("needed", "in_use", "own", "expected"), [
    (11, 5, 0, None),
    (97, 0, 0, None),  # exactly what the server takes
    (98, 0, 0, "this daemon may open 98 connections, more than the server takes"
               " (100 max_connections less 3 reserved)"),
    (50, 60, 0, "this daemon may open 50 connections, and 60 of the server's 97 are taken"
                " by other clients: 37 are left"),
    (50, 60, 20, None),  # 20 of the 60 are its own pool's already
])
def test_shortfall(needed: int, in_use: int, own: int, expected: str | None) -> None:
    slots = ServerSlots(max_connections=100, reserved=3, in_use=in_use)
    assert shortfall(needed, slots, own=own) == expected


def test_doctor_warns_only_of_what_cannot_fit_whatever_runs() -> None:
    slots = ServerSlots(max_connections=100, reserved=3, in_use=90)
    fits = check_database(DatabaseFacts(where="db", version="18", needed=11, slots=slots))
    # 90 in use may be this daemon's own: said, not judged.
    assert (fits.status, fits.detail) == (
        Status.OK, "PostgreSQL 18 at db; 90 of 97 connections in use; a daemon may open 11")
    short = check_database(DatabaseFacts(where="db", version="18", needed=201, slots=slots))
    assert short.status is Status.WARN and short.exit_code == 0
    assert short.detail == ("PostgreSQL 18 at db; this daemon may open 201 connections, more"
                            " than the server takes (100 max_connections less 3 reserved)")
    assert short.fix is not None and "pool_max" in short.fix
    unread = check_database(DatabaseFacts(where="db", version="18"))
    assert (unread.status, unread.detail) == (Status.OK, "PostgreSQL 18 at db")
