"""Named admin API tokens with real processes: ``triggerd token create | list | revoke`` and
the token the daemon makes at its first start."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons
from tests.acceptance.test_cli import one_line_error, triggerd
from triggerd.tokens import hash_token


async def api(daemon: DaemonProcess, method: str, path: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
        method, daemon.base_url + path, headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        return response.status, await response.json()


async def token_rows(pool: asyncpg.Pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch("SELECT name, role, tenant FROM api_tokens ORDER BY name")
    return [(r["name"], r["role"], r["tenant"]) for r in rows]


# --- the command line ---------------------------------------------------------------------


async def test_create_list_revoke(dsn: str, pool: asyncpg.Pool) -> None:
    created = triggerd("token", "create", "--name", "dash", "--role", "viewer",
                       "--tenant", "acme", "--json", dsn=dsn)
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert set(doc) == {"name", "token", "tenant", "role", "expires_at"}
    assert doc["expires_at"] is None
    assert (doc["name"], doc["tenant"], doc["role"]) == ("dash", "acme", "viewer")
    token = doc["token"]
    assert token.startswith("tgd_") and len(token) == 47
    assert bytes(await pool.fetchval("SELECT hash FROM api_tokens")) == hash_token(token)

    plain = triggerd("token", "create", "--name", "ci", dsn=dsn)
    assert plain.returncode == 0, plain.stderr
    ci_token = plain.stdout.strip()
    assert ci_token.startswith("tgd_") and len(ci_token) == 47  # the token alone on stdout
    assert plain.stderr.strip() == (
        "token 'ci' created (admin, all tenants); it is shown only this once"
    )
    assert await token_rows(pool) == [("ci", "admin", None), ("dash", "viewer", "acme")]

    listed = triggerd("token", "list", "--json", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [(t["name"], t["role"], t["tenant"], t["prefix"]) for t in items] == [
        ("ci", "admin", None, ci_token[:12]), ("dash", "viewer", "acme", token[:12]),
    ]
    assert set(items[0]) == {"name", "role", "tenant", "prefix", "created_at",
                             "last_used_at", "revoked_at", "expires_at"}
    assert token not in listed.stdout and ci_token not in listed.stdout
    table = triggerd("token", "list", dsn=dsn)
    assert table.stdout.splitlines()[0].split() == [
        "NAME", "ROLE", "TENANT", "PREFIX", "CREATED", "LAST_USED", "REVOKED", "EXPIRES"
    ]
    assert token not in table.stdout and ci_token[12:] not in table.stdout

    revoked = triggerd("token", "revoke", "ci", dsn=dsn)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == "token 'ci' revoked"
    again = triggerd("token", "revoke", "ci", dsn=dsn)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "token 'ci' was already revoked"
    items = json.loads(triggerd("token", "list", "--json", dsn=dsn).stdout)
    assert [t["revoked_at"] is not None for t in items] == [True, False]
    as_json = triggerd("token", "revoke", "dash", "--json", dsn=dsn)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"name": "dash", "revoked": True, "changed": True}
    # A name no token can have is bad input (exit 2), a well-formed unknown one not found.
    bad = triggerd("token", "revoke", "BAD NAME", dsn=dsn)
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "triggerd: error: token name 'BAD NAME' is invalid: use 1-64 characters of a-z,"
           " 0-9, '_', '.' and '-', starting with a letter or digit")
    unknown = triggerd("token", "revoke", "nobody", dsn=dsn)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        3, "triggerd: error: no token named 'nobody'")
    # Granting and taking away access is audited (once: the second revoke changed nothing),
    # in the token's tenant, without the token.
    audit = await pool.fetch("SELECT actor, action, target_kind, target, detail, tenant_id"
                             " FROM audit_log ORDER BY id")
    assert [(a["action"], a["target"], a["tenant_id"]) for a in audit] == [
        ("token_create", "dash", "acme"), ("token_create", "ci", "default"),
        ("token_revoke", "ci", "default"), ("token_revoke", "dash", "acme")]
    assert {a["target_kind"] for a in audit} == {"token"}
    assert all(a["actor"].startswith("cli:") for a in audit)
    assert audit[0]["detail"] == {"role": "viewer", "tenant": "acme", "expires_at": None}
    assert not any(token in str(dict(a)) or ci_token in str(dict(a)) for a in audit)


async def test_a_token_made_to_expire_says_when_and_the_list_shows_it(
    dsn: str, pool: asyncpg.Pool
) -> None:
    made = triggerd("token", "create", "--name", "temp", "--expires-in", "90d", "--json",
                    dsn=dsn)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    stored = await pool.fetchval(
        "SELECT expires_at - created_at FROM api_tokens WHERE name = 'temp'")
    assert stored == timedelta(days=90)
    assert datetime.fromisoformat(doc["expires_at"]) == await pool.fetchval(
        "SELECT expires_at FROM api_tokens WHERE name = 'temp'")
    plain = triggerd("token", "create", "--name", "temp2", "--expires-in", "2h", dsn=dsn)
    assert plain.returncode == 0, plain.stderr
    assert re.fullmatch(r"token 'temp2' created \(admin, all tenants, expires"
                        r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\); it is shown only"
                        r" this once", plain.stderr.strip()), plain.stderr
    listed = triggerd("token", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[-1] == "EXPIRES"
    assert all(line.split()[-1] != "-" for line in lines), listed.stdout


async def test_the_tenant_given_before_the_sub_command_scopes_the_token(
    dsn: str, pool: asyncpg.Pool,
) -> None:
    # `--tenant` works before or after the sub-command. Before, the sub-command's own
    # default (None) overwrote it: an admin token of every tenant where one of acme was
    # asked for.
    before = triggerd("--tenant", "acme", "token", "create", "--name", "before", dsn=dsn)
    assert before.returncode == 0, before.stderr
    assert "(admin, tenant acme)" in before.stderr
    after = triggerd("--tenant", "acme", "token", "create", "--name", "after",
                     "--tenant", "beta", dsn=dsn)  # given after, it wins
    assert after.returncode == 0, after.stderr
    assert await token_rows(pool) == [("after", "admin", "beta"), ("before", "admin", "acme")]


async def test_a_token_of_a_tenant_with_no_workflows_is_made_with_a_note(
    dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A mistyped tenant was accepted silently. It is still accepted (a tenant comes to be
    with its first applied workflow, which its own token may apply), with a note."""
    note = ("triggerd: note: tenant 'acme' has no workflows yet; the token sees nothing"
            " until a definition of that tenant is applied (is the name right?)")
    first = triggerd("token", "create", "--name", "early", "--tenant", "acme", "--json",
                     dsn=dsn)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["tenant"] == "acme"
    assert first.stderr.splitlines() == [note]
    text = triggerd("token", "create", "--name", "early-text", "--tenant", "acme", dsn=dsn)
    assert text.returncode == 0, text.stderr
    assert text.stderr.splitlines()[1:] == [note], text.stderr
    # The default tenant always exists; a token of every tenant names none.
    for args in (["--tenant", "default"], []):
        quiet = triggerd("token", "create", "--name", f"quiet{len(args)}", *args, dsn=dsn)
        assert quiet.returncode == 0, quiet.stderr
        assert "note:" not in quiet.stderr, quiet.stderr
    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\nworkflows:\n  - key: billing\n"
                    "    graph: {nodes: [{id: a, type: noop}]}\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    later = triggerd("token", "create", "--name", "later", "--tenant", "acme", dsn=dsn)
    assert later.returncode == 0, later.stderr
    assert "note:" not in later.stderr, later.stderr
    assert [row[2] for row in await token_rows(pool)] == [
        "acme", "acme", "acme", None, "default"]


async def test_bad_input_is_one_line_and_writes_nothing(dsn: str, pool: asyncpg.Pool) -> None:
    name_rule = "use 1-64 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit"
    cases = [
        (["--name", "CI"], 2, f"triggerd: error: token name 'CI' is invalid: {name_rule}"),
        (["--name", "a" * 65], 2, f"triggerd: error: token name {'a' * 65!r} is invalid:"
                                  f" {name_rule}"),
        (["--name", "ci", "--role", "owner"], 2,
         "triggerd: error: --role: 'owner' is not one of admin, viewer"),
        (["--name", "ci", "--tenant", "Acme Inc"], 2,
         "triggerd: error: tenant 'Acme Inc' is invalid: use 1-64 characters of a-z, 0-9,"
         " '_' and '-', starting with a letter or digit"),
        ([], 2, "triggerd: error: the following arguments are required: --name"
                " (see 'triggerd token create --help')"),
        (["--name", "ci", "--expires-in", "90"], 2,
         "triggerd: error: --expires-in: '90' is not a duration (use a number and a unit:"
         " ms, s, m, h, d; e.g. '500ms', '30s', '6h')"),
        (["--name", "ci", "--expires-in", "10s"], 2,
         "triggerd: error: --expires-in: '10s' is too short (at least 1m)"),
    ]
    for args, code, message in cases:
        result = triggerd("token", "create", *args, dsn=dsn)
        assert result.returncode == code, (args, result.stderr)
        assert one_line_error(result) == message, args
        assert result.stdout == ""
    assert await token_rows(pool) == []

    assert triggerd("token", "create", "--name", "ci", dsn=dsn).returncode == 0
    taken = triggerd("token", "create", "--name", "ci", "--role", "viewer", dsn=dsn)
    assert taken.returncode == 4
    assert one_line_error(taken) == "triggerd: error: a token named 'ci' already exists"
    assert taken.stdout == ""
    assert await token_rows(pool) == [("ci", "admin", None)]

    unknown = triggerd("token", "revoke", "nope", dsn=dsn)
    assert unknown.returncode == 3
    assert one_line_error(unknown) == "triggerd: error: no token named 'nope'"


# --- the daemon's first start ---------------------------------------------------------------


async def test_first_start_creates_one_token_file_and_the_api_answers_with_it(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    path = state / "api-token"
    # With [api] token configured, no token is made.
    configured = await daemons.start(database_url=dsn, state_dir=state,
                                     sections={"api": {"token": "configured-s3cret"}})
    assert await configured.stop() == 0
    assert configured.events_named("api_token_created") == []
    assert not path.exists() and await token_rows(pool) == []

    first = await daemons.start(database_url=dsn, state_dir=state)
    [event] = first.events_named("api_token_created")
    assert event["path"] == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("tgd_")
    assert all(token not in line for line in first.stdout_lines + first.stderr_lines)
    status, body = await api(first, "GET", "/api/v1/workflows", token)
    assert (status, body["items"]) == (200, [])

    # A viewer made with the command line reads, and is refused any change.
    viewer = triggerd("token", "create", "--name", "dash", "--role", "viewer", dsn=dsn)
    assert viewer.returncode == 0, viewer.stderr
    status, _ = await api(first, "GET", "/api/v1/executions", viewer.stdout.strip())
    assert status == 200
    status, body = await api(first, "POST", "/api/v1/definitions", viewer.stdout.strip())
    assert status == 403 and body["error"] == "forbidden"
    assert await first.stop() == 0

    second = await daemons.start(database_url=dsn, state_dir=state)
    assert second.events_named("api_token_created") == []
    assert path.read_text().strip() == token
    assert await token_rows(pool) == [("dash", "viewer", None), ("initial", "admin", None)]
    status, _ = await api(second, "GET", "/api/v1/workflows", token)
    assert status == 200
    assert await second.stop() == 0
