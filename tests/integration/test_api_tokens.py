"""Named admin API tokens over real loopback HTTP against a real PostgreSQL: roles, tenant
scope, revocation (after the cache window, on a fake clock), hash-only storage, the
``last_used_at`` write rate, and ``[api] token`` beside them."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import apply_doc
from tests.integration.test_admin_api import DOC, expect_error
from triggerd.api.auth import API_AUTH, StoredTokens, create_initial_token
from triggerd.config import ApiSettings, Settings
from triggerd.daemon import create_app
from triggerd.store.api_tokens import create_token, list_tokens, revoke_token
from triggerd.tokens import display_prefix, generate_token, hash_token

Client = TestClient[Any, Any]
CONFIGURED = "configured-s3cret"
FIRE = "/api/v1/triggers/report/nightly/fire"  # its static input satisfies the schema


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def new_token(
    pool: asyncpg.Pool, name: str, role: str = "admin", tenant: str | None = None
) -> str:
    token = generate_token()
    await create_token(pool, name=name, role=role, tenant=tenant,
                       token_hash=hash_token(token), prefix=display_prefix(token))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(aiohttp_client: Any, pool: asyncpg.Pool, clock: FakeClock) -> Client:
    await apply_doc(pool, DOC)
    settings = Settings(api=ApiSettings(token=CONFIGURED))
    app = create_app(settings, pool, tokens=StoredTokens(pool, clock=clock))
    result: Client = await aiohttp_client(app)
    return result


async def test_admin_token_reads_and_mutates(client: Client, pool: asyncpg.Pool) -> None:
    token = await new_token(pool, "ops")
    listed = await client.get("/api/v1/workflows", headers=bearer(token))
    assert listed.status == 200
    fired = await client.post(FIRE, headers=bearer(token))
    assert fired.status == 202, await fired.text()


async def test_viewer_reads_but_every_mutation_is_403(client: Client, pool: asyncpg.Pool) -> None:
    token = await new_token(pool, "dash", role="viewer")
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    assert (await client.get("/api/v1/executions", headers=bearer(token))).status == 200
    for method, path in [
        ("POST", FIRE),
        ("POST", "/api/v1/triggers/report/manual/disable"),
        ("POST", "/api/v1/definitions"),
    ]:
        response = await client.request(method, path, headers=bearer(token))
        await expect_error(
            response, 403, "forbidden",
            f"token 'dash' has the viewer role: it may only read (GET); {method} needs an"
            " admin token",
        )
    # Nothing happened: no run started, the trigger is still enabled.
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    assert await pool.fetchval(
        "SELECT enabled FROM workflow_triggers WHERE name = 'manual'") is True


async def test_configured_token_still_works_as_an_all_tenant_admin(
    client: Client, pool: asyncpg.Pool
) -> None:
    await new_token(pool, "other")
    assert (await client.get("/api/v1/workflows", headers=bearer(CONFIGURED))).status == 200
    assert (await client.post(FIRE, headers=bearer(CONFIGURED))).status == 202


async def test_unknown_and_malformed_tokens_are_401(client: Client, pool: asyncpg.Pool) -> None:
    await new_token(pool, "ops")
    unknown = await client.get("/api/v1/workflows", headers=bearer(generate_token()))
    await expect_error(unknown, 401, "unauthorized", "invalid bearer token")
    wrong = await client.get("/api/v1/workflows", headers=bearer("tgd_short"))
    await expect_error(wrong, 401, "unauthorized", "invalid bearer token")


async def test_an_authorization_header_on_two_lines_is_401(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Which line counts would depend on the proxy in front (aiohttp read the first): a
    valid token beside any other is refused, and nothing is fired."""
    from multidict import CIMultiDict

    for lines in ([CONFIGURED, "nope"], ["nope", CONFIGURED], [CONFIGURED, CONFIGURED]):
        headers = CIMultiDict([("Authorization", f"Bearer {t}") for t in lines])
        answer = await client.post(FIRE, headers=headers)
        await expect_error(answer, 401, "unauthorized",
                           "the Authorization header appears more than once; send it once")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    alone = await client.get("/api/v1/workflows", headers=bearer(CONFIGURED))
    assert alone.status == 200


def test_the_configured_token_is_compared_at_one_length_whatever_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compare_digest returns at once for values of different lengths, which told a caller
    how long the configured token is."""
    import asyncio

    from tests.helpers import record_digest_lengths
    from triggerd.api.auth import ApiAuth, AuthFailure

    lengths = record_digest_lengths(monkeypatch)
    auth = ApiAuth(CONFIGURED, source="config")
    assert asyncio.run(auth.authenticate(f"Bearer {CONFIGURED}")).name.startswith("[api]")
    for sent in (CONFIGURED[:1], CONFIGURED + "x" * 50, CONFIGURED.upper()):
        with pytest.raises(AuthFailure):
            asyncio.run(auth.authenticate(f"Bearer {sent}"))
    assert len(lengths) == 4 and all(a == b for a, b in lengths), lengths


async def test_revoked_token_is_refused_once_the_cache_window_passed(
    client: Client, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    token = await new_token(pool, "ci")
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    _, changed = await revoke_token(pool, "ci")
    assert changed
    # Within the window the cached lookup still answers (documented: up to 10 s).
    clock.now += 9.9
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    clock.now += 0.2
    refused = await client.get("/api/v1/workflows", headers=bearer(token))
    await expect_error(refused, 401, "unauthorized", "token 'ci' has been revoked")


async def test_a_revoked_token_never_cached_is_refused_at_once(
    client: Client, pool: asyncpg.Pool
) -> None:
    token = await new_token(pool, "ci")
    await revoke_token(pool, "ci")
    refused = await client.get("/api/v1/workflows", headers=bearer(token))
    await expect_error(refused, 401, "unauthorized", "token 'ci' has been revoked")


async def test_an_expired_token_is_refused_and_never_marked_used(
    client: Client, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    token = generate_token()
    record = await create_token(pool, name="old", role="admin", tenant=None,
                                token_hash=hash_token(token), prefix=display_prefix(token),
                                expires_in=timedelta(minutes=1))
    assert record.expires_at is not None
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    assert (await list_tokens(pool))[0].last_used_at is not None
    await pool.execute("UPDATE api_tokens SET expires_at = '2026-01-02T03:04:05+00',"
                       " last_used_at = NULL")
    clock.now += 60.0  # past the minute the lookup saw left, and the cache window
    refused = await client.get("/api/v1/workflows", headers=bearer(token))
    await expect_error(refused, 401, "unauthorized",
                       "token 'old' expired at 2026-01-02T03:04:05+00:00")
    assert (await list_tokens(pool))[0].last_used_at is None
    # Nothing done in its name: no run started.
    assert (await client.post(FIRE, headers=bearer(token))).status == 401
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0


async def test_the_cache_never_trusts_a_token_past_its_expiry(
    client: Client, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    """A token seen 1 s before it ends is not remembered for the whole 10 s window."""
    token = generate_token()
    await create_token(pool, name="ending", role="admin", tenant=None,
                       token_hash=hash_token(token), prefix=display_prefix(token),
                       expires_in=timedelta(minutes=1))
    await pool.execute("UPDATE api_tokens SET expires_at = now() + interval '3 seconds'")
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    await pool.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
    clock.now += 2.0  # within the 10 s window, still before the 3 s the lookup saw
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    clock.now += 1.5  # past the token's end as the lookup saw it, long before the window's
    refused = await client.get("/api/v1/workflows", headers=bearer(token))
    assert refused.status == 401
    assert (await refused.json())["message"].startswith("token 'ending' expired at ")


async def test_lookups_are_cached_and_last_used_is_written_at_most_once_a_minute(
    client: Client, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    token = await new_token(pool, "ci")
    assert (await list_tokens(pool))[0].last_used_at is None
    for _ in range(5):
        assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    first = (await list_tokens(pool))[0].last_used_at
    assert first is not None
    # The cache expires; the next lookup comes within the minute: no second write.
    clock.now += 30
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    assert (await list_tokens(pool))[0].last_used_at == first
    # Count the database lookups: the five cached requests made none.
    auth = client.app[API_AUTH] if client.app is not None else None
    assert auth is not None and auth.tokens is not None
    assert auth.tokens.lookups == 2


async def test_only_the_hash_is_stored(client: Client, pool: asyncpg.Pool) -> None:
    token = await new_token(pool, "ci")
    assert (await client.get("/api/v1/workflows", headers=bearer(token))).status == 200
    rows = await pool.fetch("SELECT * FROM api_tokens")
    assert len(rows) == 1
    dumped = repr([dict(r) for r in rows])
    assert token not in dumped and token[12:] not in dumped
    assert bytes(rows[0]["hash"]) == hash_token(token)
    assert rows[0]["prefix"] == token[:12]


async def test_a_token_of_another_tenant_sees_no_default_tenant_object(
    client: Client, pool: asyncpg.Pool
) -> None:
    acme = await new_token(pool, "acme-ops", tenant="acme")
    for method, path, message in [
        # The message names the tenant looked in (the token's own), as the lists do.
        ("GET", "/api/v1/workflows/report", "no workflow with key 'acme:report'"),
        ("POST", FIRE, "no trigger named 'acme:report/nightly'"),
    ]:
        response = await client.request(method, path, headers=bearer(acme))
        await expect_error(response, 404, "not_found", message)
    for path in ("/api/v1/workflows", "/api/v1/executions", "/api/v1/triggers"):
        response = await client.get(path, headers=bearer(acme))
        assert response.status == 200, path
        assert (await response.json())["items"] == [], path
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    default = await new_token(pool, "default-ops", tenant="default")
    assert (await client.get("/api/v1/workflows/report", headers=bearer(default))).status == 200


async def test_duplicate_name_is_a_conflict_and_writes_nothing(pool: asyncpg.Pool) -> None:
    from triggerd.errors import Conflict

    await new_token(pool, "ci")
    with pytest.raises(Conflict) as caught:
        await new_token(pool, "ci", role="viewer")
    assert caught.value.message == "a token named 'ci' already exists"
    assert [(t.name, t.role) for t in await list_tokens(pool)] == [("ci", "admin")]


# --- the first start ------------------------------------------------------------------------


async def test_initial_token_is_created_once_with_mode_0600(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    path = await create_initial_token(pool, state)
    assert path == state / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    [record] = await list_tokens(pool)
    assert (record.name, record.role, record.tenant) == ("initial", "admin", None)
    assert bytes(await pool.fetchval("SELECT hash FROM api_tokens")) == hash_token(token)
    # A second start (or a replica starting beside it) creates nothing and keeps the file.
    assert await create_initial_token(pool, state) is None
    assert path.read_text().strip() == token
    assert len(await list_tokens(pool)) == 1


async def test_replicas_starting_together_make_one_initial_token(
    dsn: str, tmp_path: Path
) -> None:
    import asyncio

    from triggerd import db

    pools = [await db.create_pool(dsn, min_size=1, max_size=1) for _ in range(4)]
    try:
        made = await asyncio.gather(*(
            create_initial_token(p, tmp_path / f"replica{i}") for i, p in enumerate(pools)
        ))
        assert len([m for m in made if m is not None]) == 1
        assert len(await list_tokens(pools[0])) == 1
        assert len(list(tmp_path.glob("replica*/api-token"))) == 1
    finally:
        for p in pools:
            await p.close()


async def test_no_initial_token_once_any_token_ever_existed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await new_token(pool, "ci")
    await revoke_token(pool, "ci")
    assert await create_initial_token(pool, tmp_path) is None
    assert not (tmp_path / "api-token").exists()


async def test_initial_token_not_kept_when_the_file_cannot_be_written(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from triggerd.errors import ConfigError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError) as caught:
        await create_initial_token(pool, blocker)
    assert caught.value.message.startswith(
        f"daemon.state_dir: cannot write the admin API token {blocker / 'api-token'}: "
    )
    assert await list_tokens(pool) == []


async def test_token_lookup_with_the_database_down_is_503(aiohttp_client: Any) -> None:
    from tests.helpers import free_port

    # Nothing listens on the port: the pool's first connection attempt is refused.
    unreachable = await asyncpg.create_pool(
        f"postgresql://triggerd@127.0.0.1:{free_port()}/triggerd", min_size=0, max_size=1
    )
    app = create_app(Settings(), unreachable, tokens=StoredTokens(unreachable))
    client: Client = await aiohttp_client(app)
    response = await client.get("/api/v1/workflows", headers=bearer(generate_token()))
    await expect_error(response, 503, "database_unavailable",
                       "the database cannot be reached right now; retry later")
    # Anything not of the token form is refused without asking the database.
    response = await client.get("/api/v1/workflows", headers=bearer("not-a-token"))
    await expect_error(response, 401, "unauthorized", "invalid bearer token")
    await unreachable.close()
