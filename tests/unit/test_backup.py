"""The pure parts of ``triggerd backup``/``restore``: passwords kept off command lines,
the versions of pg_dump/pg_restore, their errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerd.backup import dump_failure, split_password, tool_message, tool_version


@pytest.mark.parametrize(
    ("dsn", "bare", "env"),
    [
        ("postgresql://u:s%40cret@db.example:5432/triggerd",
         "postgresql://u@db.example:5432/triggerd", {"PGPASSWORD": "s@cret"}),
        ("postgresql://u@db.example/triggerd?sslmode=require&password=pw",
         "postgresql://u@db.example/triggerd?sslmode=require", {"PGPASSWORD": "pw"}),
        ("postgresql://postgres@/triggerd?host=/var/lib/triggerd/postgres",
         "postgresql://postgres@/triggerd?host=/var/lib/triggerd/postgres", {}),
        # No host part: the "//" stays (libpq refused "postgresql:/triggerd?host=...").
        ("postgresql:///triggerd?host=/run/postgresql&user=triggerd",
         "postgresql:///triggerd?host=/run/postgresql&user=triggerd", {}),
        # The other parameters as written: libpq reads "+" as a plus, so a %20 re-encoded
        # as "+" named another path.
        ("postgresql://db.example/triggerd?sslrootcert=/etc/my%20certs/ca.pem&password=a%2Bb",
         "postgresql://db.example/triggerd?sslrootcert=/etc/my%20certs/ca.pem",
         {"PGPASSWORD": "a+b"}),
    ],
)
def test_split_password(dsn: str, bare: str, env: dict[str, str]) -> None:
    assert split_password(dsn) == (bare, env)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", (15, "15.18")),
        ("pg_restore (PostgreSQL) 18.4\n", (18, "18.4")),
        ("pg_dump (PostgreSQL) 19devel\n", (19, "19")),
        ("something else\n", None),
    ],
)
def test_tool_version(output: str, expected: tuple[int, str] | None) -> None:
    assert tool_version(output) == expected


def test_tool_message_is_one_line_of_error_lines() -> None:
    stderr = (
        "pg_dump: error: aborting because of server version mismatch\n"
        "pg_dump: detail: server version: 18.4; pg_dump version: 15.18\n"
    )
    assert tool_message(stderr) == (
        "aborting because of server version mismatch; server version: 18.4;"
        " pg_dump version: 15.18")
    stderr = (
        "pg_restore: while PROCESSING TOC:\n"
        "pg_restore: error: could not read from input file: end of file\n"
        "pg_restore: error: could not read from input file: end of file\n"
    )
    assert tool_message(stderr) == "could not read from input file: end of file"
    assert tool_message("") == "no message"


def test_a_full_disk_under_pg_dump_is_an_output_failure() -> None:
    # It was exit 5 ("unavailable": retrying may help), where the same disk refusing the
    # temporary file was exit 74, as every output a file system refuses.
    full = dump_failure("could not write to output file: No space left on device",
                        Path("/backups/t.dump"))
    assert (full.exit_code, full.message) == (
        74, "pg_dump could not write /backups/t.dump: could not write to output file: No"
            " space left on device")
    down = dump_failure("connection to server on socket failed", Path("t.dump"))
    assert (down.exit_code, down.message) == (
        5, "pg_dump failed: connection to server on socket failed")
