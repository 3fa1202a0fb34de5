"""Webhook ingress additions of issue 17 over real loopback HTTP and a real PostgreSQL:
provider dedupe by default, secret rotation and IP allowlists."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.integration.test_http_forward import serve_forwarding
from tests.integration.test_webhooks import (  # noqa: F401 (fixtures: make_client, secrets_env)
    GITHUB_SECRET,
    STANDARD_SECRET,
    ClientFactory,
    apply,
    executions,
    expect_answer,
    hook,
    make_client,
    requests_rows,
    secrets_env,
    workflow,
)
from triggerd.config import HttpSettings, Settings
from triggerd.daemon import create_app
from triggerd.model import AuthConfig, DedupeConfig, SecretRef
from triggerd.serving.forward import FORWARDED_REMOTE
from triggerd.webhooks.ingress import setup_webhooks

FIXED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAYLOAD = '{"type": "invoice.paid", "id": 7}'
OLD_TOKEN = "old-token"
NEW_TOKEN = "new-token"


@pytest.fixture(autouse=True)
def rotation_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_OLD", OLD_TOKEN)
    monkeypatch.setenv("WH_NEW", NEW_TOKEN)
    monkeypatch.setenv("WH_SLACK", "slack-signing-secret")
    monkeypatch.setenv("WH_STRIPE", "whsec_stripe")


def standard_headers(msg_id: str, at: datetime = FIXED, data: str = PAYLOAD,
                     secret: str = STANDARD_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, data),
    }


# --- 1. provider dedupe by default -------------------------------------------------------


async def test_standard_redelivery_with_the_same_webhook_id_creates_one_execution(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="standard", secret=SecretRef(env="WH_STANDARD"))
    await apply(pool, workflow("w", hook("std", "std", auth=auth)))  # no dedupe set
    client, _ = await make_client(clock=lambda: FIXED)
    first = await client.post("/hooks/std", data=PAYLOAD.encode(),
                              headers=standard_headers("msg_1"))
    assert first.status == 202
    first_id = (await first.json())["execution_id"]
    # The sender retries later: a new timestamp and signature, the same webhook-id.
    again = await client.post(
        "/hooks/std", data=PAYLOAD.encode(),
        headers=standard_headers("msg_1", FIXED + timedelta(seconds=30)),
    )
    # Exactly the answer of today's dedupe hit.
    assert again.status == 200
    assert await again.json() == {
        "execution_id": first_id,
        "status_url": f"/hooks/_executions/{first_id}",
        "duplicate": True,
    }
    other = await client.post("/hooks/std", data=PAYLOAD.encode(),
                              headers=standard_headers("msg_2"))
    assert other.status == 202
    assert len(await executions(pool)) == 2
    assert len(await requests_rows(pool)) == 2


async def test_dedupe_none_turns_the_provider_default_off(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="standard", secret=SecretRef(env="WH_STANDARD"))
    await apply(pool, workflow("w", hook("std", "std", auth=auth, provider_dedupe=False)))
    client, _ = await make_client(clock=lambda: FIXED)
    for _ in range(2):
        resp = await client.post("/hooks/std", data=PAYLOAD.encode(),
                                 headers=standard_headers("msg_1"))
        assert resp.status == 202
    assert len(await executions(pool)) == 2


async def test_an_explicit_dedupe_mapping_wins_over_the_provider_default(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="standard", secret=SecretRef(env="WH_STANDARD"))
    await apply(pool, workflow(
        "w", hook("std", "std", auth=auth, dedupe=DedupeConfig(json_pointer="/type"))
    ))
    client, _ = await make_client(clock=lambda: FIXED)
    # Different webhook-ids, the same /type: the mapping decides, so one execution.
    assert (await client.post("/hooks/std", data=PAYLOAD.encode(),
                              headers=standard_headers("msg_1"))).status == 202
    assert (await client.post("/hooks/std", data=PAYLOAD.encode(),
                              headers=standard_headers("msg_2"))).status == 200
    assert len(await executions(pool)) == 1


def github_headers(body: bytes, delivery: str) -> dict[str, str]:
    signature = hmac.new(GITHUB_SECRET.encode(), body, "sha256").hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
    }


async def test_github_redelivery_dedupes_on_the_delivery_header(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="github", secret=SecretRef(env="WH_GITHUB"))
    await apply(pool, workflow("w", hook("gh", "gh", auth=auth)))
    client, _ = await make_client()
    body = b'{"ref": "main"}'
    statuses = [
        (await client.post("/hooks/gh", data=body, headers=github_headers(body, d))).status
        for d in ("d-1", "d-1", "d-2")
    ]
    assert statuses == [202, 200, 202]
    assert len(await executions(pool)) == 2


def stripe_headers(body: bytes, at: datetime = FIXED) -> dict[str, str]:
    seconds = int(at.timestamp())
    signature = hmac.new(b"whsec_stripe", b"%d.%s" % (seconds, body), "sha256").hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={seconds},v1={signature}"}


async def test_stripe_redelivery_dedupes_on_the_event_id(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="stripe", secret=SecretRef(env="WH_STRIPE"))
    await apply(pool, workflow("w", hook("st", "st", auth=auth)))
    client, _ = await make_client(clock=lambda: FIXED)
    first = json.dumps({"id": "evt_1", "type": "charge.succeeded"}).encode()
    # A redelivery is signed anew (another timestamp) but carries the same event id.
    retry = json.dumps({"id": "evt_1", "type": "charge.succeeded", "attempt": 2}).encode()
    other = json.dumps({"id": "evt_2", "type": "charge.succeeded"}).encode()
    statuses = [
        (await client.post("/hooks/st", data=body, headers=stripe_headers(body, at))).status
        for body, at in ((first, FIXED), (retry, FIXED + timedelta(seconds=60)), (other, FIXED))
    ]
    assert statuses == [202, 200, 202]
    assert len(await executions(pool)) == 2


def slack_headers(body: bytes, at: datetime = FIXED, retry: int | None = None) -> dict[str, str]:
    stamp = str(int(at.timestamp()))
    signature = hmac.new(
        b"slack-signing-secret", f"v0:{stamp}:".encode() + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={signature}",
    }
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


async def test_slack_retry_dedupes_on_the_event_id(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="slack", secret=SecretRef(env="WH_SLACK"))
    await apply(pool, workflow("w", hook("sl", "sl", auth=auth)))
    client, _ = await make_client(clock=lambda: FIXED)
    body = json.dumps({"type": "event_callback", "event_id": "Ev01", "event": {}}).encode()
    first = await client.post("/hooks/sl", data=body, headers=slack_headers(body))
    assert first.status == 202
    retried = await client.post(
        "/hooks/sl", data=body, headers=slack_headers(body, FIXED + timedelta(seconds=3), 1)
    )
    assert retried.status == 200
    assert (await retried.json())["execution_id"] == (await first.json())["execution_id"]
    # A request without an event id (url_verification) is never deduplicated.
    check = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
    for _ in range(2):
        assert (await client.post("/hooks/sl", data=check,
                                  headers=slack_headers(check))).status == 202
    assert len(await executions(pool)) == 3


# --- 4. secret rotation ----------------------------------------------------------------------


async def test_any_listed_secret_verifies_and_the_match_is_counted_and_logged(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = AuthConfig(
        scheme="token", secret=(SecretRef(env="WH_NEW"), SecretRef(env="WH_OLD"))
    )
    await apply(pool, workflow("w", hook("rot", "rot", auth=auth)))
    client, ingress = await make_client()
    caplog.set_level(logging.INFO, logger="triggerd.webhooks.ingress")
    statuses = [
        (await client.post("/hooks/rot", json={},
                           headers={"Authorization": f"Bearer {token}"})).status
        for token in (NEW_TOKEN, OLD_TOKEN, OLD_TOKEN, "neither")
    ]
    assert statuses == [202, 202, 202, 401]
    assert ingress.stats.secrets_used == {("w/rot", 0): 1, ("w/rot", 1): 2}
    used = [r for r in caplog.records if getattr(r, "event", None) == "webhook_secret_used"]
    assert {(r.trigger, r.secret) for r in used} == {  # type: ignore[attr-defined]
        ("w/rot", "0"), ("w/rot", "1")
    }
    for record in caplog.records:  # never the secret itself
        assert OLD_TOKEN not in record.getMessage()
        assert OLD_TOKEN not in json.dumps(record.__dict__, default=str)


async def test_a_rotation_whose_new_secret_is_missing_still_takes_the_old_one(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    # One unresolvable secret in the list made every request a 503, the old secret's too
    # (mid-rotation, before the new one is provisioned: GitHub does not retry).
    auth = AuthConfig(
        scheme="token", secret=(SecretRef(env="WH_NOT_SET_ANYWHERE"), SecretRef(env="WH_OLD"))
    )
    await apply(pool, workflow("w", hook("rot", "rot", auth=auth)))
    client, ingress = await make_client()
    answers = [await client.post("/hooks/rot", json={},
                                 headers={"Authorization": f"Bearer {token}"})
               for token in (OLD_TOKEN, "the-missing-one-perhaps")]
    assert [a.status for a in answers] == [202, 503]  # unverified: retryable, not 401
    assert (await answers[1].json())["error"] == "unavailable"
    # Counted under its place in the list (the second), not among the resolved ones.
    assert ingress.stats.secrets_used == {("w/rot", 1): 1}


@pytest.mark.parametrize("scheme", ["standard", "github", "stripe", "slack", "hmac", "basic"])
async def test_rotation_works_for_every_secret_scheme(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    old = "whsec_" + "b2xkLXNlY3JldC1rZXktMzItYnl0ZXMtbG9uZyEh"
    new = STANDARD_SECRET
    monkeypatch.setenv("ROT_OLD", old)
    monkeypatch.setenv("ROT_NEW", new)
    auth = AuthConfig(
        scheme=scheme, secret=(SecretRef(env="ROT_NEW"), SecretRef(env="ROT_OLD")),
        header="X-Sig" if scheme == "hmac" else None,
    )
    await apply(pool, workflow("w", hook("rot", "rot", auth=auth, provider_dedupe=False)))
    client, ingress = await make_client(clock=lambda: FIXED)
    body = b'{"id": "evt_1", "event_id": "Ev1"}'

    def signed(secret: str) -> dict[str, str]:
        key = secret.encode()
        if scheme == "standard":
            return standard_headers("m1", data=body.decode(), secret=secret)
        if scheme == "github":
            digest = hmac.new(key, body, "sha256").hexdigest()
            return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
        if scheme == "stripe":
            stamp = int(FIXED.timestamp())
            digest = hmac.new(key, b"%d.%s" % (stamp, body), "sha256").hexdigest()
            return {"Content-Type": "application/json",
                    "Stripe-Signature": f"t={stamp},v1={digest}"}
        if scheme == "slack":
            slack_stamp = str(int(FIXED.timestamp()))
            digest = hmac.new(key, f"v0:{slack_stamp}:".encode() + body, "sha256").hexdigest()
            return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": slack_stamp,
                    "X-Slack-Signature": f"v0={digest}"}
        if scheme == "hmac":
            return {"Content-Type": "application/json",
                    "X-Sig": hmac.new(key, body, "sha256").hexdigest()}
        import base64

        return {"Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(key).decode()}

    for secret in (new, old):
        resp = await client.post("/hooks/rot", data=body, headers=signed(secret))
        assert resp.status == 202, scheme
    other = "whsec_" + "b3RoZXItc2VjcmV0LWtleS0zMi1ieXRlcy1sb25nIQ=="
    assert (await client.post("/hooks/rot", data=body, headers=signed(other))).status == 401
    assert ingress.stats.secrets_used == {("w/rot", 0): 1, ("w/rot", 1): 1}


async def test_a_rotated_token_asked_to_continue_is_counted_once(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(
        scheme="token", secret=(SecretRef(env="WH_NEW"), SecretRef(env="WH_OLD"))
    )
    await apply(pool, workflow("w", hook("rot", "rot", auth=auth)))
    client, ingress = await make_client()
    for token in (NEW_TOKEN, OLD_TOKEN):
        answer = await expect_answer(client, "POST", "/hooks/rot",
                                      f"Authorization: Bearer {token}\r\n".encode())
        assert answer == b"100 then HTTP/1.1 202 Accepted"
    assert ingress.stats.secrets_used == {("w/rot", 0): 1, ("w/rot", 1): 1}


async def test_a_single_secret_counts_nothing(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    auth = AuthConfig(scheme="token", secret=SecretRef(env="WH_NEW"))
    await apply(pool, workflow("w", hook("one", "one", auth=auth)))
    client, ingress = await make_client()
    resp = await client.post("/hooks/one", json={},
                             headers={"Authorization": f"Bearer {NEW_TOKEN}"})
    assert resp.status == 202
    assert ingress.stats.secrets_used == {}


# --- 5. IP allowlists ----------------------------------------------------------------------

FORBIDDEN = {"error": "forbidden", "message": "requests from this address are not accepted here"}


def proxied(trusted: tuple[str, ...]) -> Settings:
    return Settings(http=HttpSettings(trusted_proxies=trusted))


async def test_a_peer_inside_the_allowlist_is_accepted(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await apply(pool, workflow("w", hook("a", "a", allow_from=("10.0.0.0/8", "127.0.0.0/8"))))
    client, _ = await make_client()
    resp = await client.post("/hooks/a", json={"n": 1})
    assert resp.status == 202
    assert len(await executions(pool)) == 1


async def test_a_peer_outside_the_allowlist_is_403_and_nothing_is_stored(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await apply(pool, workflow("w", hook("a", "a", allow_from=("10.0.0.0/8", "::1/128"))))
    client, _ = await make_client()
    resp = await client.post("/hooks/a", json={"n": 1})
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN
    assert await executions(pool) == []
    assert await requests_rows(pool) == []


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await apply(pool, workflow("w", hook("a", "a", allow_from=("203.0.113.0/24",))))
    # No trusted proxies: the loopback peer is the client, whatever the header says.
    client, _ = await make_client()
    resp = await client.post("/hooks/a", json={}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN
    # Trusted proxies that do not include this peer change nothing either.
    client, _ = await make_client(proxied(("192.0.2.0/24",)))
    resp = await client.post("/hooks/a", json={}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert resp.status == 403
    assert await executions(pool) == []


async def test_through_a_trusted_proxy_the_forwarded_client_decides(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await apply(pool, workflow("w", hook("a", "a", allow_from=("203.0.113.0/24",))))
    client, _ = await make_client(proxied(("127.0.0.1/32", "198.51.100.0/24")))
    allowed = await client.post(
        "/hooks/a", json={}, headers={"X-Forwarded-For": "203.0.113.7"}
    )
    assert allowed.status == 202
    # The right-most address not itself a trusted proxy is the client; a forged entry
    # further left does not help.
    chained = await client.post(
        "/hooks/a", json={}, headers={"X-Forwarded-For": "203.0.113.9, 192.0.2.1, 198.51.100.4"}
    )
    assert chained.status == 403
    assert await chained.json() == FORBIDDEN
    refused = await client.post("/hooks/a", json={}, headers={"X-Forwarded-For": "192.0.2.1"})
    assert refused.status == 403
    # Through the trusted proxy without the header: the proxy itself is the client.
    bare = await client.post("/hooks/a", json={})
    assert bare.status == 403
    assert len(await executions(pool)) == 1


async def test_ipv6_networks_in_the_allowlist(
    make_client: ClientFactory, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await apply(pool, workflow("w", hook("a", "a", allow_from=("2001:db8::/32",))))
    client, _ = await make_client(proxied(("127.0.0.0/8",)))
    ok = await client.post("/hooks/a", json={}, headers={"X-Forwarded-For": "2001:db8::5"})
    assert ok.status == 202
    no = await client.post("/hooks/a", json={}, headers={"X-Forwarded-For": "2001:db9::5"})
    assert no.status == 403


async def test_through_an_extra_process_the_real_peer_is_checked(
    pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    """[http] processes > 1: a request an extra process forwards to the main one (over its
    Unix socket, which has no peer address) is checked against the peer the extra process
    saw, and a client cannot name another one."""
    await apply(pool, workflow(
        "w",
        hook("lo", "lo", allow_from=("127.0.0.0/8",)),
        hook("ten", "ten", allow_from=("10.0.0.0/8",)),
        hook("via", "via", allow_from=("203.0.113.0/24",)),
    ))
    settings = proxied(("127.0.0.1/32",))
    app = create_app(settings, pool)
    ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                             pending_interval=3600.0)
    await ingress.start()
    main = web.AppRunner(app)
    await main.setup()
    socket_path = str(tmp_path / "main.sock")
    await web.UnixSite(main, socket_path).start()
    runner, session, port = await serve_forwarding(socket_path)
    try:
        async with aiohttp.ClientSession() as client:
            base = f"http://127.0.0.1:{port}/hooks"
            async with client.post(f"{base}/lo", json={}) as resp:
                assert resp.status == 202
            async with client.post(f"{base}/ten", json={},
                                   headers={FORWARDED_REMOTE: "10.0.0.1"}) as resp:
                assert resp.status == 403
                assert await resp.json() == FORBIDDEN
            async with client.post(f"{base}/via", json={},
                                   headers={"X-Forwarded-For": "203.0.113.7"}) as resp:
                assert resp.status == 202
    finally:
        await session.close()
        await runner.cleanup()
        await ingress.stop()
        await main.cleanup()
    assert len(await executions(pool)) == 2
