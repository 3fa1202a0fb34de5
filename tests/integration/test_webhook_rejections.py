"""Refused webhook requests over real loopback HTTP: the sender gets the usual generic
answer, the operator gets one ``webhook_rejected`` line with the precise reason (and never
the credentials), rate-limited per trigger and reason."""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.integration.test_webhooks import SCHEMA, apply, hook, workflow
from triggerd.config import Settings
from triggerd.daemon import create_app
from triggerd.model import AuthConfig, SecretRef
from triggerd.webhooks.ingress import (
    REJECTION_BURST,
    WebhookIngress,
    setup_webhooks,
)

FIXED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "rejections-token-value"
HMAC_KEY = "rejections-hmac-key"
STANDARD = "whsec_" + base64.b64encode(b"rejections-standard-key-32bytes!").decode()
SLACK = "rejections-slack-signing-secret"
STRIPE = "whsec_rejections_stripe"
UNAUTHORIZED = {"error": "unauthorized", "message": "authentication failed"}

Client = TestClient[Any, Any]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RJ_TOKEN": TOKEN, "RJ_HMAC": HMAC_KEY, "RJ_STANDARD": STANDARD,
                        "RJ_SLACK": SLACK, "RJ_STRIPE": STRIPE, "RJ_BASIC": "alice:pw"}.items():
        monkeypatch.setenv(name, value)


def scheme(name: str, env: str, **options: Any) -> AuthConfig:
    return AuthConfig(scheme=name, secret=SecretRef(env=env), **options)


@pytest.fixture
async def served(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[Client, WebhookIngress, FakeMonotonic]]:
    await apply(pool, workflow(
        "rj",
        hook("token", "rj/token", auth=scheme("token", "RJ_TOKEN")),
        hook("basic", "rj/basic", auth=scheme("basic", "RJ_BASIC")),
        hook("hmac", "rj/hmac", auth=scheme("hmac", "RJ_HMAC", header="X-Sig",
                                            prefix="sha256=")),
        hook("github", "rj/github", auth=scheme("github", "RJ_HMAC")),
        hook("stripe", "rj/stripe", auth=scheme("stripe", "RJ_STRIPE")),
        hook("standard", "rj/standard", auth=scheme("standard", "RJ_STANDARD")),
        hook("slack", "rj/slack", auth=scheme("slack", "RJ_SLACK")),
        hook("open", "rj/open", max_body_bytes=100),
        schema=SCHEMA,
    ))
    clock = FakeMonotonic()
    settings = Settings()
    app = create_app(settings, pool)
    ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings,
                             clock=lambda: FIXED, monotonic=clock, pending_interval=3600.0)
    await ingress.start()
    caplog.set_level(logging.INFO, logger="triggerd.webhooks.ingress")
    try:
        client: Client = await aiohttp_client(app)
        yield client, ingress, clock
    finally:
        await ingress.stop()


def rejected(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "webhook_rejected"]


def hexmac(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, "sha256").hexdigest()


BODY = b'{"day": "2024-05-01"}'
T = int(FIXED.timestamp())
JSON = {"Content-Type": "application/json"}


def standard(msg_id: str = "msg_1", at: datetime = FIXED,
             override: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        **JSON,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(STANDARD).sign(msg_id, at, BODY.decode()),
    }
    headers.update(override or {})
    return headers


def svix(headers: dict[str, str]) -> dict[str, str]:
    """The same request under Svix's names for the standard scheme's headers."""
    return {name.replace("webhook-", "svix-"): value for name, value in headers.items()}


def slack(at: int = T, body: bytes = BODY) -> dict[str, str]:
    signature = "v0=" + hexmac(SLACK, f"v0:{at}:".encode() + body)
    return {**JSON, "X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(at)}


def basic(pair: str) -> dict[str, str]:
    return {**JSON, "Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


STALE = FIXED - timedelta(minutes=10)
AUTH_CASES: list[tuple[str, str, dict[str, str], str, str | None]] = [
    # (label, path, headers, reason, header named in the log line)
    ("token missing", "rj/token", JSON, "missing_header", "Authorization"),
    ("token wrong", "rj/token", {**JSON, "Authorization": "Bearer guess-" + TOKEN[:5]},
     "bad_token", "Authorization"),
    ("basic malformed", "rj/basic", {**JSON, "Authorization": "Basic !!"},
     "malformed_credentials", "Authorization"),
    ("basic wrong", "rj/basic", basic("alice:guess"), "bad_credentials", "Authorization"),
    ("hmac missing", "rj/hmac", JSON, "missing_header", "X-Sig"),
    ("hmac malformed", "rj/hmac", {**JSON, "X-Sig": hexmac(HMAC_KEY, BODY)},
     "malformed_signature", "X-Sig"),
    ("hmac wrong", "rj/hmac", {**JSON, "X-Sig": "sha256=" + hexmac("other", BODY)},
     "bad_signature", "X-Sig"),
    ("github missing", "rj/github", JSON, "missing_header", "X-Hub-Signature-256"),
    ("github wrong", "rj/github",
     {**JSON, "X-Hub-Signature-256": "sha256=" + hexmac("other", BODY)},
     "bad_signature", "X-Hub-Signature-256"),
    ("stripe stale", "rj/stripe",
     {**JSON, "Stripe-Signature": f"t={T - 600},v1=" + hexmac(STRIPE, f"{T - 600}.".encode()
                                                                     + BODY)},
     "stale_timestamp", "Stripe-Signature"),
    ("standard missing", "rj/standard",
     {k: v for k, v in standard().items() if k != "webhook-signature"},
     "missing_header", "webhook-signature"),
    ("standard stale", "rj/standard", standard(at=STALE), "stale_timestamp", "webhook-timestamp"),
    ("standard timestamp", "rj/standard", standard(override={"webhook-timestamp": "noon"}),
     "malformed_timestamp", "webhook-timestamp"),
    ("standard wrong", "rj/standard", standard(override={"webhook-id": "msg_2"}),
     "bad_signature", "webhook-signature"),
    ("svix missing", "rj/standard",
     {k: v for k, v in svix(standard()).items() if k != "svix-id"},
     "missing_header", "svix-id"),
    ("svix stale", "rj/standard", svix(standard(at=STALE)), "stale_timestamp", "svix-timestamp"),
    ("svix wrong", "rj/standard", svix(standard(override={"webhook-id": "msg_2"})),
     "bad_signature", "svix-signature"),
    ("slack stale", "rj/slack", slack(at=T - 600), "stale_timestamp",
     "X-Slack-Request-Timestamp"),
    ("slack wrong", "rj/slack", slack(body=b"{}"), "bad_signature", "X-Slack-Signature"),
]
# The answer names the header missing from an incomplete set of the standard scheme's (the
# sender can fix it, and it reveals no secret); every other refusal is UNAUTHORIZED.
INCOMPLETE = {
    header: {"error": "unauthorized",
             "message": f"authentication failed: incomplete {header.split('-')[0]}-* headers:"
                        f" no {header}"}
    for header in ("webhook-signature", "svix-id")
}


@pytest.mark.parametrize(("path", "headers", "reason", "header"),
                         [case[1:] for case in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
async def test_each_auth_failure_is_logged_with_its_reason_and_answered_generically(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture,
    path: str, headers: dict[str, str], reason: str, header: str | None,
) -> None:
    client, _, _ = served
    resp = await client.post("/hooks/" + path, data=BODY, headers=headers)
    assert resp.status == 401
    expected = (INCOMPLETE[header] if reason == "missing_header" and header in INCOMPLETE
                else UNAUTHORIZED)
    assert await resp.json() == expected
    [record] = rejected(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"webhook request refused: {reason}"
    assert record.__dict__["trigger"] == "rj/" + path.split("/")[1]
    assert record.__dict__["status"] == 401
    assert record.__dict__["reason"] == reason
    assert record.__dict__["header"] == header
    assert record.__dict__["remote"] == "127.0.0.1"
    # Neither the credentials sent nor the secret reach the log line.
    text = repr(record.__dict__)
    for value in headers.values():
        if value not in ("application/json", "") and len(value) > 8:
            assert value not in text
    for secret in (TOKEN, HMAC_KEY, STANDARD, SLACK, STRIPE, "guess"):
        assert secret not in text


async def test_the_correct_credentials_are_accepted_and_log_nothing(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture
) -> None:
    client, _, _ = served
    accepted = [
        ("rj/token", {**JSON, "Authorization": f"Bearer {TOKEN}"}),
        ("rj/standard", standard("msg_ok")),
        ("rj/standard", svix(standard("msg_svix"))),
        ("rj/slack", slack()),
        ("rj/open", JSON),
    ]
    for path, headers in accepted:
        resp = await client.post("/hooks/" + path, data=BODY, headers=headers)
        assert resp.status == 202, path
    assert rejected(caplog) == []


async def test_other_refusals_are_logged_with_their_reason(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture
) -> None:
    client, _, _ = served
    sent = [
        (b'{"day": ', JSON, 400, "invalid_body"),
        (b"x" * 101, {"Content-Type": "text/plain"}, 413, "body_too_large"),
        (b"\x89PNG", {"Content-Type": "image/png"}, 415, "unsupported_media_type"),
        (b"{}", {"Content-Type": ""}, 415, "missing_content_type"),
        (b'{"count": 0}', JSON, 422, "input_invalid"),
    ]
    answers = []
    for body, headers, status, _reason in sent:
        resp = await client.post("/hooks/rj/open", data=body, headers=headers)
        assert resp.status == status
        answers.append(await resp.json())
    records = rejected(caplog)
    assert [(r.__dict__["status"], r.__dict__["reason"]) for r in records] == [
        (status, reason) for _b, _h, status, reason in sent
    ]
    assert {r.__dict__["trigger"] for r in records} == {"rj/open"}
    # The detail is what the sender was told, nothing more.
    assert [r.__dict__.get("detail") for r in records] == [a["message"] for a in answers]
    assert records[1].__dict__["limit"] == 100
    assert records[4].__dict__["problems"] == 2


async def test_a_flood_of_refusals_is_rate_limited_per_trigger_and_reason(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture
) -> None:
    client, ingress, clock = served
    wrong = {**JSON, "Authorization": "Bearer wrong"}
    for _ in range(300):
        assert (await client.post("/hooks/rj/token", data=BODY, headers=wrong)).status == 401
    # Another reason and another trigger have budgets of their own.
    assert (await client.post("/hooks/rj/token", data=BODY, headers=JSON)).status == 401
    assert (await client.post("/hooks/rj/github", data=BODY, headers=JSON)).status == 401
    reasons = [(r.__dict__["trigger"], r.__dict__["reason"]) for r in rejected(caplog)]
    assert reasons == [("rj/token", "bad_token")] * REJECTION_BURST + [
        ("rj/token", "missing_header"), ("rj/github", "missing_header")
    ]
    clock.now += 60
    assert ingress.rejection_log.flush() == 1
    [summary] = [r for r in caplog.records if getattr(r, "event", None) == "log_suppressed"]
    assert summary.__dict__["suppressed_event"] == "webhook_rejected"
    assert summary.__dict__["suppressed"] == 300 - REJECTION_BURST
    assert (summary.__dict__["trigger"], summary.__dict__["reason"]) == ("rj/token", "bad_token")



def stripe() -> dict[str, str]:
    return {**JSON, "Stripe-Signature": f"t={T},v1=" + hexmac(STRIPE, f"{T}.".encode() + BODY)}


# (label, path, valid headers, the header sent twice: its first line is the valid one)
REPEATED_CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("token", "rj/token", {**JSON, "Authorization": f"Bearer {TOKEN}"}, "Authorization"),
    ("basic", "rj/basic", basic("alice:pw"), "Authorization"),
    ("hmac", "rj/hmac", {**JSON, "X-Sig": "sha256=" + hexmac(HMAC_KEY, BODY)}, "X-Sig"),
    ("github", "rj/github", {**JSON, "X-Hub-Signature-256": "sha256=" + hexmac(HMAC_KEY, BODY)},
     "X-Hub-Signature-256"),
    ("stripe", "rj/stripe", stripe(), "Stripe-Signature"),
    ("standard signature", "rj/standard", standard(), "webhook-signature"),
    ("standard id", "rj/standard", standard(), "webhook-id"),
    ("standard timestamp", "rj/standard", standard(), "webhook-timestamp"),
    ("svix signature", "rj/standard", svix(standard("msg_s1")), "svix-signature"),
    ("svix id", "rj/standard", svix(standard("msg_s2")), "svix-id"),
    ("svix timestamp", "rj/standard", svix(standard("msg_s3")), "svix-timestamp"),
    ("slack signature", "rj/slack", slack(), "X-Slack-Signature"),
    ("slack timestamp", "rj/slack", slack(), "X-Slack-Request-Timestamp"),
]


@pytest.mark.parametrize(("path", "headers", "twice"), [case[1:] for case in REPEATED_CASES],
                         ids=[c[0] for c in REPEATED_CASES])
async def test_a_credential_header_on_two_lines_is_refused_and_nothing_is_stored(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture,
    pool: asyncpg.Pool, path: str, headers: dict[str, str], twice: str,
) -> None:
    client, _, _ = served
    # The valid headers alone are accepted: the refusal below is the repetition's.
    ok = await client.post("/hooks/" + path, data=BODY, headers=headers)
    assert ok.status in (200, 202)
    stored = await pool.fetchval("SELECT count(*) FROM webhook_requests")
    runs = await pool.fetchval("SELECT count(*) FROM workflow_executions")
    # The valid line first, then another: judged by its first line, it was accepted.
    lines = [*headers.items(), (twice, "v1,AAAA sha256=00 v0=00 t=1")]
    resp = await client.post("/hooks/" + path, data=BODY, headers=lines)
    assert resp.status == 401
    assert await resp.json() == {
        "error": "unauthorized",
        "message": f"authentication failed: header {twice} appears more than once",
    }
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == stored
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == runs
    [record] = rejected(caplog)
    assert (record.__dict__["reason"], record.__dict__["header"]) == ("repeated_header", twice)
    # The same line twice is refused too.
    same = [*headers.items(), (twice, headers[twice])]
    again = await client.post("/hooks/" + path, data=BODY, headers=same)
    assert again.status == 401
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == stored


async def test_a_delivery_id_header_on_two_lines_is_400_and_nothing_is_stored(
    served: tuple[Client, WebhookIngress, FakeMonotonic], caplog: pytest.LogCaptureFixture,
    pool: asyncpg.Pool,
) -> None:
    """GitHub's X-GitHub-Delivery dedupes: on two lines the first was taken, and a
    redelivery carrying them in the other order would have started a second run."""
    client, _, _ = served
    signed = {**JSON, "X-Hub-Signature-256": "sha256=" + hexmac(HMAC_KEY, BODY)}
    ok = await client.post("/hooks/rj/github", data=BODY,
                           headers={**signed, "X-GitHub-Delivery": "d-1"})
    assert ok.status == 202
    stored = await pool.fetchval("SELECT count(*) FROM webhook_requests")
    runs = await pool.fetchval("SELECT count(*) FROM workflow_executions")
    lines = [*signed.items(), ("X-GitHub-Delivery", "d-2"), ("X-GitHub-Delivery", "d-3")]
    resp = await client.post("/hooks/rj/github", data=BODY, headers=lines)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_header",
        "message": "the delivery id header X-GitHub-Delivery appears more than once;"
                   " send it once",
    }
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == stored
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == runs
    [record] = rejected(caplog)
    assert (record.__dict__["reason"], record.__dict__["header"]) == (
        "repeated_header", "X-GitHub-Delivery")
