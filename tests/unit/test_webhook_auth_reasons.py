"""Why a request was refused: every scheme's failure kinds carry a precise reason (for the
operator's log; the sender's answer stays the generic 401)."""

from __future__ import annotations

import base64
import random
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.test_webhook_auth import (
    _JUNK,
    _NAMES,
    BODY,
    GITHUB_BODY,
    GITHUB_SECRET,
    GITHUB_SIGNATURE,
    NOT_UTF8,
    NOW,
    SLACK_BODY,
    SLACK_NOW,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    T,
    auth,
    hex_hmac,
    slack_headers,
    standard_headers,
    stripe_sig,
)
from triggerd.model import AuthConfig
from triggerd.webhooks.auth import (
    SCHEMES,
    AuthFailure,
    Refusal,
    check_request,
    make_checker,
    verify_request,
)

STD = STANDARD_SECRET.encode()
FAR = timedelta(minutes=6)


def basic(pair: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


CASES: list[tuple[str, AuthConfig, bytes | None, dict[str, str], bytes, Any, Refusal]] = [
    # (label, config, secret, headers, body, now, expected refusal)
    ("token missing", auth("token"), b"tok", {}, b"", NOW,
     Refusal(AuthFailure.MISSING_HEADER, "Authorization")),
    ("token wrong", auth("token"), b"tok", {"Authorization": "Bearer nope"}, b"", NOW,
     Refusal(AuthFailure.BAD_TOKEN, "Authorization")),
    ("token no prefix", auth("token"), b"tok", {"Authorization": "tok"}, b"", NOW,
     Refusal(AuthFailure.BAD_TOKEN, "Authorization")),
    ("token own header", auth("token", header="X-Key"), b"tok", {"Authorization": "tok"}, b"",
     NOW, Refusal(AuthFailure.MISSING_HEADER, "X-Key")),
    ("basic missing", auth("basic"), b"a:b", {}, b"", NOW,
     Refusal(AuthFailure.MISSING_HEADER, "Authorization")),
    ("basic not basic", auth("basic"), b"a:b", {"Authorization": "Bearer a:b"}, b"", NOW,
     Refusal(AuthFailure.MALFORMED_CREDENTIALS, "Authorization")),
    ("basic not base64", auth("basic"), b"a:b", {"Authorization": "Basic ***"}, b"", NOW,
     Refusal(AuthFailure.MALFORMED_CREDENTIALS, "Authorization")),
    ("basic wrong", auth("basic"), b"a:b", basic(b"a:c"), b"", NOW,
     Refusal(AuthFailure.BAD_CREDENTIALS, "Authorization")),
    ("hmac missing", auth("hmac", header="X-Sig"), b"k", {}, BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "X-Sig")),
    ("hmac prefix", auth("hmac", header="X-Sig", prefix="sha256="), b"k",
     {"X-Sig": hex_hmac(b"k", BODY)}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_SIGNATURE, "X-Sig")),
    ("hmac not hex", auth("hmac", header="X-Sig"), b"k", {"X-Sig": "zz"}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_SIGNATURE, "X-Sig")),
    ("hmac wrong", auth("hmac", header="X-Sig"), b"k", {"X-Sig": hex_hmac(b"j", BODY)}, BODY,
     NOW, Refusal(AuthFailure.BAD_SIGNATURE, "X-Sig")),
    ("github missing", auth("github"), GITHUB_SECRET, {}, GITHUB_BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "X-Hub-Signature-256")),
    ("github malformed", auth("github"), GITHUB_SECRET, {"X-Hub-Signature-256": "sha256=zz"},
     GITHUB_BODY, NOW, Refusal(AuthFailure.MALFORMED_SIGNATURE, "X-Hub-Signature-256")),
    ("github wrong", auth("github"), GITHUB_SECRET, {"X-Hub-Signature-256": GITHUB_SIGNATURE},
     b"tampered", NOW, Refusal(AuthFailure.BAD_SIGNATURE, "X-Hub-Signature-256")),
    ("stripe missing", auth("stripe"), STRIPE_SECRET, {}, BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "Stripe-Signature")),
    ("stripe garbage", auth("stripe"), STRIPE_SECRET, {"Stripe-Signature": "garbage"}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_SIGNATURE, "Stripe-Signature")),
    ("stripe no v1", auth("stripe"), STRIPE_SECRET, {"Stripe-Signature": f"t={T},v0=ab"}, BODY,
     NOW, Refusal(AuthFailure.MALFORMED_SIGNATURE, "Stripe-Signature")),
    ("stripe timestamp", auth("stripe"), STRIPE_SECRET,
     {"Stripe-Signature": f"t=yesterday,v1={stripe_sig(BODY)}"}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_TIMESTAMP, "Stripe-Signature")),
    ("stripe stale", auth("stripe"), STRIPE_SECRET,
     {"Stripe-Signature": f"t={T - 400},v1={stripe_sig(BODY, T - 400)}"}, BODY, NOW,
     Refusal(AuthFailure.STALE_TIMESTAMP, "Stripe-Signature")),
    ("stripe wrong", auth("stripe"), STRIPE_SECRET,
     {"Stripe-Signature": f"t={T},v1={stripe_sig(BODY, secret=b'whsec_other')}"}, BODY, NOW,
     Refusal(AuthFailure.BAD_SIGNATURE, "Stripe-Signature")),
    ("stripe not utf8", auth("stripe"), STRIPE_SECRET,
     {"Stripe-Signature": f"t={T},v1={stripe_sig(NOT_UTF8)}"}, NOT_UTF8, NOW,
     Refusal(AuthFailure.BODY_NOT_UTF8, None)),
    ("standard no id", auth("standard"), STD,
     {k: v for k, v in standard_headers(BODY).items() if k != "webhook-id"}, BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "webhook-id")),
    ("standard no timestamp", auth("standard"), STD,
     {k: v for k, v in standard_headers(BODY).items() if k != "webhook-timestamp"}, BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "webhook-timestamp")),
    ("standard no signature", auth("standard"), STD,
     {k: v for k, v in standard_headers(BODY).items() if k != "webhook-signature"}, BODY, NOW,
     Refusal(AuthFailure.MISSING_HEADER, "webhook-signature")),
    ("standard bad timestamp", auth("standard"), STD,
     {**standard_headers(BODY), "webhook-timestamp": "1e9"}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_TIMESTAMP, "webhook-timestamp")),
    ("standard stale", auth("standard"), STD, standard_headers(BODY, at=NOW - FAR), BODY, NOW,
     Refusal(AuthFailure.STALE_TIMESTAMP, "webhook-timestamp")),
    ("standard future", auth("standard"), STD, standard_headers(BODY, at=NOW + FAR), BODY, NOW,
     Refusal(AuthFailure.STALE_TIMESTAMP, "webhook-timestamp")),
    ("standard garbage", auth("standard"), STD,
     {**standard_headers(BODY), "webhook-signature": "garbage v2,abc"}, BODY, NOW,
     Refusal(AuthFailure.MALFORMED_SIGNATURE, "webhook-signature")),
    ("standard wrong", auth("standard"), STD,
     {**standard_headers(BODY), "webhook-signature": "v1,AAAA"}, BODY, NOW,
     Refusal(AuthFailure.BAD_SIGNATURE, "webhook-signature")),
    ("standard other id", auth("standard"), STD,
     {**standard_headers(BODY), "webhook-id": "msg_other"}, BODY, NOW,
     Refusal(AuthFailure.BAD_SIGNATURE, "webhook-signature")),
    ("standard not utf8", auth("standard"), STD, standard_headers(BODY), NOT_UTF8, NOW,
     Refusal(AuthFailure.BODY_NOT_UTF8, None)),
    ("slack no signature", auth("slack"), SLACK_SECRET,
     {"X-Slack-Request-Timestamp": slack_headers()["X-Slack-Request-Timestamp"]}, SLACK_BODY,
     SLACK_NOW, Refusal(AuthFailure.MISSING_HEADER, "X-Slack-Signature")),
    ("slack no timestamp", auth("slack"), SLACK_SECRET,
     {"X-Slack-Signature": slack_headers()["X-Slack-Signature"]}, SLACK_BODY, SLACK_NOW,
     Refusal(AuthFailure.MISSING_HEADER, "X-Slack-Request-Timestamp")),
    ("slack bad timestamp", auth("slack"), SLACK_SECRET, slack_headers(timestamp="soon"),
     SLACK_BODY, SLACK_NOW, Refusal(AuthFailure.MALFORMED_TIMESTAMP, "X-Slack-Request-Timestamp")),
    ("slack stale", auth("slack"), SLACK_SECRET, slack_headers(), SLACK_BODY, SLACK_NOW + FAR,
     Refusal(AuthFailure.STALE_TIMESTAMP, "X-Slack-Request-Timestamp")),
    ("slack version", auth("slack"), SLACK_SECRET, slack_headers(signature="v1=abcd"),
     SLACK_BODY, SLACK_NOW, Refusal(AuthFailure.MALFORMED_SIGNATURE, "X-Slack-Signature")),
    ("slack wrong", auth("slack"), SLACK_SECRET, slack_headers(), SLACK_BODY + b"&x=1",
     SLACK_NOW, Refusal(AuthFailure.BAD_SIGNATURE, "X-Slack-Signature")),
    ("no secret", auth("github"), None, {"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_BODY,
     NOW, Refusal(AuthFailure.UNKNOWN_SECRET, None)),
    ("empty secret", auth("token"), b"", {"Authorization": "Bearer "}, b"", NOW,
     Refusal(AuthFailure.UNKNOWN_SECRET, None)),
    ("undecodable standard secret", auth("standard"), b"whsec_!!!!", standard_headers(BODY),
     BODY, NOW, Refusal(AuthFailure.UNKNOWN_SECRET, None)),
    ("unknown scheme", auth("kerberos"), b"s", {}, b"", NOW,
     Refusal(AuthFailure.UNUSABLE_CONFIG, None)),
    ("hmac without header", auth("hmac"), b"k", {"X-Sig": hex_hmac(b"k", BODY)}, BODY, NOW,
     Refusal(AuthFailure.UNUSABLE_CONFIG, None)),
]


@pytest.mark.parametrize(
    ("config", "secret", "headers", "body", "now", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_failure_kind_has_its_reason(
    config: AuthConfig, secret: bytes | None, headers: dict[str, str], body: bytes, now: Any,
    expected: Refusal,
) -> None:
    assert check_request(config, secret, headers, body, now) == expected
    # The boolean answer is unchanged: refused.
    assert verify_request(config, secret, headers, body, now) is False


def test_accepted_requests_have_no_reason() -> None:
    assert check_request(AuthConfig(), None, {}, b"", NOW) is None
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    assert check_request(auth("github"), GITHUB_SECRET, headers, GITHUB_BODY, NOW) is None
    assert check_request(auth("standard"), STD, standard_headers(BODY), BODY, NOW) is None
    assert make_checker(auth("slack"), SLACK_SECRET)(slack_headers(), SLACK_BODY, SLACK_NOW) is None


def test_reason_codes_are_stable_text() -> None:
    assert {f.value for f in AuthFailure} == {
        "missing_header",
        "malformed_signature",
        "malformed_timestamp",
        "malformed_credentials",
        "stale_timestamp",
        "bad_signature",
        "bad_token",
        "bad_credentials",
        "body_not_utf8",
        "unknown_secret",
        "unusable_config",
        "repeated_header",
    }


def test_hostile_input_always_has_a_reason_never_an_exception() -> None:
    rng = random.Random(20240502)
    secrets: list[bytes] = [b"s", b"\xff\xfe", b"whsec_!!", STD]
    for _ in range(2000):
        scheme = rng.choice(SCHEMES[1:])
        headers = {name: rng.choice(_JUNK) for name in rng.sample(_NAMES, rng.randint(0, 9))}
        body = rng.choice([b"", BODY, NOT_UTF8])
        config = auth(scheme, header="X-Sig", algorithm=rng.choice(["sha256", "md5"]))
        refusal = check_request(config, rng.choice(secrets), headers, body, NOW)
        assert isinstance(refusal, Refusal)
        assert refusal.reason in AuthFailure


# --- the standard scheme under Svix's header names -------------------------------------------


def svix(headers: dict[str, str]) -> dict[str, str]:
    """The same request as Svix-based senders send it: svix-* for webhook-*."""
    return {name.replace("webhook-", "svix-"): value for name, value in headers.items()}


SIGNED = standard_headers(BODY)
MIXED_NOTE = " (svix-* headers are read only when no webhook-* header is sent)"
SET_CASES: list[tuple[str, dict[str, str], Refusal | None, str | None]] = [
    # (label, headers, expected refusal, what the sender is told)
    ("webhook-*", SIGNED, None, None),
    ("svix-*", svix(SIGNED), None, None),
    ("svix-* any case", {k.title(): v for k, v in svix(SIGNED).items()}, None, None),
    ("svix-* wrong", {**svix(SIGNED), "svix-signature": "v1,AAAA"},
     Refusal(AuthFailure.BAD_SIGNATURE, "svix-signature"), None),
    ("svix-* other id", {**svix(SIGNED), "svix-id": "msg_other"},
     Refusal(AuthFailure.BAD_SIGNATURE, "svix-signature"), None),
    ("svix-* stale", svix(standard_headers(BODY, at=NOW - FAR)),
     Refusal(AuthFailure.STALE_TIMESTAMP, "svix-timestamp"), None),
    ("svix-* no signature", {k: v for k, v in svix(SIGNED).items() if k != "svix-signature"},
     Refusal(AuthFailure.MISSING_HEADER, "svix-signature"),
     "incomplete svix-* headers: no svix-signature"),
    ("svix-* empty id", {**svix(SIGNED), "svix-id": ""},
     Refusal(AuthFailure.MISSING_HEADER, "svix-id"), "incomplete svix-* headers: no svix-id"),
    ("webhook-* no timestamp",
     {k: v for k, v in SIGNED.items() if k != "webhook-timestamp"},
     Refusal(AuthFailure.MISSING_HEADER, "webhook-timestamp"),
     "incomplete webhook-* headers: no webhook-timestamp"),
    # A webhook-* header present: that set is read, whatever svix-* headers come with it.
    ("mixed", {"webhook-id": SIGNED["webhook-id"],
               **{k: v for k, v in svix(SIGNED).items() if k != "svix-id"}},
     Refusal(AuthFailure.MISSING_HEADER, "webhook-timestamp"),
     "incomplete webhook-* headers: no webhook-timestamp" + MIXED_NOTE),
    ("mixed, svix-id", {**svix(SIGNED), "webhook-signature": SIGNED["webhook-signature"]},
     Refusal(AuthFailure.MISSING_HEADER, "webhook-id"),
     "incomplete webhook-* headers: no webhook-id" + MIXED_NOTE),
    ("both whole, webhook-* wrong", {**svix(SIGNED), **SIGNED, "webhook-signature": "v1,AAAA"},
     Refusal(AuthFailure.BAD_SIGNATURE, "webhook-signature"), None),
    ("svix-* repeated id", {**svix(SIGNED), "SVIX-ID": "msg_2"},
     Refusal(AuthFailure.REPEATED_HEADER, "svix-id"), None),
    # Nothing of either set: nothing to say which is incomplete.
    ("none", {}, Refusal(AuthFailure.MISSING_HEADER, "webhook-id"), None),
]


@pytest.mark.parametrize(("headers", "expected", "told"), [c[1:] for c in SET_CASES],
                         ids=[c[0] for c in SET_CASES])
def test_the_standard_scheme_reads_one_whole_set_of_headers(
    headers: dict[str, str], expected: Refusal | None, told: str | None
) -> None:
    refusal = check_request(auth("standard"), STD, headers, BODY, NOW)
    assert refusal == expected
    assert (refusal.told if refusal is not None else None) == told
