"""The connections a daemon may open against the server's free slots (pure)."""

from __future__ import annotations

import pytest

from triggerd.config import DatabaseSettings, HttpSettings, Settings
from triggerd.connections import ServerSlots, connections_needed, shortfall
from triggerd.doctor import DatabaseFacts, Status, check_database


def test_the_pool_listen_and_each_extra_http_process_count() -> None:
    assert connections_needed(Settings()) == 11  # pool_max 10 + LISTEN
    assert connections_needed(Settings(database=DatabaseSettings(pool_max=40),
                                       http=HttpSettings(processes=3))) == 41 + 2 * 7


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
