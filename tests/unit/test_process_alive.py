"""Telling a dead embedded postmaster from a live one, zombies included (a container whose
init does not reap keeps a killed postmaster as a zombie for a while, or for good), a stale
postmaster.pid from a stranger, and a state directory that cannot be used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from triggerd.db import (
    embedded_server_running,
    names_data_directory,
    process_alive,
    start_embedded,
)
from triggerd.errors import DatabaseUnavailable


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that exited and is not reaped yet."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        os.sched_yield()
    try:
        yield pid
    finally:
        os.waitpid(pid, 0)


def write_postmaster_pid(state_dir: Path, pid: int) -> None:
    pgdata = state_dir / "postgres"
    pgdata.mkdir(parents=True)
    # The eight lines PostgreSQL writes: pid, data dir, start time, port, socket dir,
    # listen address, shared memory key and id, status.
    lines = [str(pid), str(pgdata), "1700000000", "5432", str(pgdata), "", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")


def test_process_alive_tells_running_and_zombie_processes_apart(zombie: int) -> None:
    assert process_alive(os.getpid())
    assert not process_alive(zombie)  # it still answers kill(pid, 0), but it is dead


def test_process_alive_is_false_for_a_reaped_process() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert not process_alive(pid)


def test_a_killed_postmaster_left_as_a_zombie_is_not_running(
    zombie: int, tmp_path: Path
) -> None:
    write_postmaster_pid(tmp_path, zombie)
    assert not embedded_server_running(tmp_path)


def test_a_live_postmaster_is_running(tmp_path: Path) -> None:
    write_postmaster_pid(tmp_path, os.getpid())
    assert embedded_server_running(tmp_path)


def test_a_postmaster_of_the_data_directory_is_recognised(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    own = b"/opt/pg/bin/postgres\0-D\0" + str(pgdata).encode() + b"\0-k\0/run\0"
    other = b"/opt/pg/bin/postgres\0-D\0/elsewhere\0"
    assert names_data_directory(own, pgdata)
    assert not names_data_directory(other, pgdata)
    assert not names_data_directory(b"sleep\0" + str(pgdata).encode() + b"\0", pgdata)
    assert not names_data_directory(b"", pgdata)  # a kernel thread


def test_a_state_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    state_dir = tmp_path / "file" / "state"
    with pytest.raises(DatabaseUnavailable) as caught:
        start_embedded(state_dir)
    assert caught.value.message == (
        f"cannot use the state directory {state_dir} ([daemon] state_dir) for the embedded"
        f" PostgreSQL: {tmp_path / 'file'} is not a directory")
