"""Webhook auth schemes: every scheme valid, missing, malformed, wrong, expired, future."""

from __future__ import annotations

import base64
import hmac
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks

from tests.helpers import record_digest_lengths
from triggerd.model import AuthConfig, SecretRef
from triggerd.webhooks.auth import (
    SCHEMES,
    KeyedHmac,
    auth_header_names,
    get_header,
    header_count,
    make_verifier,
    validate_auth_config,
    verify_request,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())
REF = SecretRef(env="HOOK_SECRET")
BODY = b'{"event": "push", "id": 42}'
NOT_UTF8 = b"\xff\xfe\x00bad"


def auth(scheme: str, **kwargs: Any) -> AuthConfig:
    return AuthConfig(scheme=scheme, secret=REF, **kwargs)


def hex_hmac(key: bytes, data: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(key, data, algorithm).hexdigest()


# --- headers helper --------------------------------------------------------------------


def test_get_header_is_case_insensitive_on_plain_dicts() -> None:
    headers = {"X-Hub-Signature-256": "a", "content-type": "b"}
    assert get_header(headers, "x-hub-signature-256") == "a"
    assert get_header(headers, "Content-Type") == "b"
    assert get_header(headers, "X-Missing") is None


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_keyed_hmac_is_hmac(algorithm: str) -> None:
    # Keys shorter than, equal to and longer than the block size (64 or 128 bytes).
    rng = random.Random(algorithm)
    for key_length in [0, 1, 24, 32, 63, 64, 65, 127, 128, 129, 300]:
        key = rng.randbytes(key_length)
        keyed = KeyedHmac(key, algorithm)
        for message in [b"", b"x", rng.randbytes(1000)]:
            assert keyed.digest(message) == hmac.new(key, message, algorithm).digest()
        # Copies of the keyed states: one message does not leak into the next.
        assert keyed.digest(b"abc") == hmac.new(key, b"abc", algorithm).digest()


def test_a_prepared_verifier_answers_like_verify_request() -> None:
    signature = hex_hmac(b"key", BODY)
    config = auth("hmac", header="X-Sig")
    verify = make_verifier(config, b"key")
    assert verify({"X-Sig": signature}, BODY, NOW) is True
    assert verify({"X-Sig": signature}, BODY + b"!", NOW) is False
    assert make_verifier(config, None)({"X-Sig": signature}, BODY, NOW) is False
    assert make_verifier(AuthConfig(), None)({}, b"", NOW) is True
    with pytest.raises(ValueError, match="timezone-aware"):
        verify({"X-Sig": signature}, BODY, datetime(2024, 1, 1))


def test_a_prefix_that_cannot_be_encoded_refuses_instead_of_failing() -> None:
    config = auth("token", header="X-Token", prefix="\ud800")
    assert verify_request(config, b"tok", {"X-Token": "tok"}, b"", NOW) is False


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_request(AuthConfig(), None, {}, b"", datetime(2024, 1, 1))


# --- none ------------------------------------------------------------------------------


def test_none_accepts_anything() -> None:
    assert verify_request(AuthConfig(scheme="none"), None, {}, b"", NOW) is True
    assert verify_request(AuthConfig(scheme="none"), b"x", {"A": "b"}, NOT_UTF8, NOW) is True


def test_unknown_scheme_refuses() -> None:
    assert verify_request(auth("kerberos"), b"s", {"Authorization": "Bearer s"}, b"", NOW) is False


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "none"])
@pytest.mark.parametrize("secret", [None, b""])
def test_every_scheme_but_none_refuses_without_a_secret(scheme: str, secret: bytes | None) -> None:
    headers = {"Authorization": "Bearer ", "X-Sig": ""}
    assert verify_request(auth(scheme, header="X-Sig"), secret, headers, b"", NOW) is False


# --- token -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        (auth("token"), {"Authorization": "Bearer tok-123"}, True),
        (auth("token"), {"authorization": "Bearer tok-123"}, True),
        (auth("token"), {}, False),
        (auth("token"), {"Authorization": "tok-123"}, False),  # prefix missing
        (auth("token"), {"Authorization": "Token tok-123"}, False),
        (auth("token"), {"Authorization": "Bearer tok-124"}, False),
        (auth("token"), {"Authorization": "Bearer tok-1234"}, False),
        (auth("token"), {"Authorization": "Bearer "}, False),
        (auth("token"), {"X-Token": "Bearer tok-123"}, False),
        (auth("token", header="X-Token"), {"X-Token": "tok-123"}, True),
        (auth("token", header="X-Token"), {"x-token": "tok-123"}, True),
        (auth("token", header="X-Token"), {"X-Token": "Bearer tok-123"}, False),
        (auth("token", header="X-Token"), {"Authorization": "Bearer tok-123"}, False),
        (auth("token", header="X-Token", prefix="Key "), {"X-Token": "Key tok-123"}, True),
        (auth("token", header="X-Token", prefix="Key "), {"X-Token": "tok-123"}, False),
        (auth("token", prefix=""), {"Authorization": "tok-123"}, True),
        (auth("token", header="authorization"), {"Authorization": "Bearer tok-123"}, True),
        # The scheme word of Authorization is case-insensitive (RFC 9110 11.1); the token
        # and any other header's prefix are not.
        (auth("token"), {"Authorization": "bearer tok-123"}, True),
        (auth("token"), {"Authorization": "BEARER tok-123"}, True),
        (auth("token", prefix="Token "), {"Authorization": "token tok-123"}, True),
        (auth("token"), {"Authorization": "bearer TOK-123"}, False),
        (auth("token"), {"Authorization": "bearer  tok-123"}, False),
        (auth("token"), {"Authorization": "bearertok-123"}, False),
        (auth("token", header="X-Token", prefix="Key "), {"X-Token": "key tok-123"}, False),
        # Only the word: the rest of a prefix is part of the credential.
        (auth("token", prefix="Token sk_"), {"Authorization": "token sk_tok-123"}, True),
        (auth("token", prefix="Token sk_"), {"Authorization": "token SK_tok-123"}, False),
        # aiohttp hands undecodable header bytes over as surrogate escapes.
        (auth("token"), {"Authorization": "Bearer tok-\udcff"}, False),
        (auth("token"), {"Authorization": "Bearer tok-\ud800"}, False),
    ],
)
def test_token(config: AuthConfig, headers: dict[str, str], expected: bool) -> None:
    assert verify_request(config, b"tok-123", headers, b"", NOW) is expected


def test_token_wrong_secret() -> None:
    headers = {"Authorization": "Bearer tok-123"}
    assert verify_request(auth("token"), b"other", headers, BODY, NOW) is False


def test_token_non_ascii_secret_matches_utf8_header() -> None:
    # aiohttp decodes header bytes as UTF-8 (surrogateescape); we compare the same bytes.
    headers = {"Authorization": "Bearer clé"}
    assert verify_request(auth("token"), "clé".encode(), headers, b"", NOW) is True


# --- basic -----------------------------------------------------------------------------


def basic(credentials: bytes, word: str = "Basic") -> dict[str, str]:
    return {"Authorization": f"{word} {base64.b64encode(credentials).decode()}"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (basic(b"alice:s3cret"), True),
        (basic(b"alice:s3cret", word="basic"), True),
        (basic(b"alice:s3cret", word="BASIC"), True),
        ({"authorization": basic(b"alice:s3cret")["Authorization"]}, True),
        (basic(b"alice:wrong"), False),
        (basic(b"bob:s3cret"), False),
        (basic(b"alice:s3cret2"), False),
        (basic(b"alice"), False),
        (basic(b"s3cret"), False),
        (basic(b""), False),
        (basic(b"alice:s3cret", word="Bearer"), False),
        ({"Authorization": "Basic"}, False),
        ({"Authorization": "Basic !!!not-base64!!!"}, False),
        ({"Authorization": "Basic YWxpY2U6czNjcmV"}, False),  # truncated
        ({"Authorization": "alice:s3cret"}, False),
        ({}, False),
    ],
)
def test_basic_with_username(headers: dict[str, str], expected: bool) -> None:
    config = auth("basic", username="alice")
    assert verify_request(config, b"s3cret", headers, b"", NOW) is expected


def test_basic_without_username_takes_the_pair_as_secret() -> None:
    config = auth("basic")
    assert verify_request(config, b"alice:s3cret", basic(b"alice:s3cret"), b"", NOW) is True
    assert verify_request(config, b"alice:s3cret", basic(b"alice:other"), b"", NOW) is False
    assert verify_request(config, b"s3cret", basic(b"alice:s3cret"), b"", NOW) is False


@pytest.mark.parametrize(
    ("config", "header", "secret"),
    [
        (auth("token"), "Bearer {}", b"tok-123"),
        (auth("token", header="X-Token"), "{}", b"tok-123"),
        (auth("basic", username="alice"), "basic:alice:{}", b"s3cret"),
    ],
    ids=["bearer", "x-token", "basic"],
)
def test_token_and_basic_compare_values_of_one_length_whatever_is_sent(
    monkeypatch: pytest.MonkeyPatch, config: AuthConfig, header: str, secret: bytes
) -> None:
    # Every comparison must be of equal lengths (see record_digest_lengths).
    lengths = record_digest_lengths(monkeypatch)
    text = secret.decode()

    def headers(value: str) -> dict[str, str]:
        if header.startswith("basic:"):
            return basic(header.removeprefix("basic:").format(value).encode())
        name = "X-Token" if config.header else "Authorization"
        return {name: header.format(value)}

    assert verify_request(config, secret, headers(text), b"", NOW) is True
    for sent in (text[:1], text[:-1], text + "4", text + "x" * 100, "", text.upper()):
        assert verify_request(config, secret, headers(sent), b"", NOW) is False, sent
    assert len(lengths) == 7
    assert all(a == b for a, b in lengths), lengths


# --- hmac ------------------------------------------------------------------------------


def encode_sig(raw: bytes, encoding: str) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("body", [BODY, b"", NOT_UTF8])
def test_hmac_valid(algorithm: str, encoding: str, body: bytes) -> None:
    config = auth("hmac", header="X-Signature", algorithm=algorithm, encoding=encoding)
    signature = encode_sig(hmac.new(b"key", body, algorithm).digest(), encoding)
    assert verify_request(config, b"key", {"X-Signature": signature}, body, NOW) is True
    assert verify_request(config, b"key", {"x-signature": signature}, body, NOW) is True
    assert verify_request(config, b"nope", {"X-Signature": signature}, body, NOW) is False
    assert verify_request(config, b"key", {"X-Signature": signature}, body + b"!", NOW) is False


def test_hmac_prefix() -> None:
    config = auth("hmac", header="X-Sig", prefix="sha256=")
    good = hex_hmac(b"key", BODY)
    assert verify_request(config, b"key", {"X-Sig": f"sha256={good}"}, BODY, NOW) is True
    assert verify_request(config, b"key", {"X-Sig": good}, BODY, NOW) is False
    assert verify_request(config, b"key", {"X-Sig": f"sha1={good}"}, BODY, NOW) is False


@pytest.mark.parametrize(
    "value",
    [
        "",
        "zz" * 32,
        hex_hmac(b"key", BODY)[:-1],  # odd length
        hex_hmac(b"key", BODY)[:-2],  # truncated
        hex_hmac(b"key", BODY) + "00",
        hex_hmac(b"key", BODY[:-1]),
        " ".join(hex_hmac(b"key", BODY)[i : i + 2] for i in range(0, 64, 2)),
        "sha256=" + hex_hmac(b"key", BODY),
    ],
)
def test_hmac_hex_refuses_malformed(value: str) -> None:
    config = auth("hmac", header="X-Sig")
    assert verify_request(config, b"key", {"X-Sig": value}, BODY, NOW) is False


def test_hmac_hex_is_case_insensitive() -> None:
    config = auth("hmac", header="X-Sig")
    upper = hex_hmac(b"key", BODY).upper()
    assert verify_request(config, b"key", {"X-Sig": upper}, BODY, NOW) is True


@pytest.mark.parametrize("value", ["", "!!!!", "abc", hex_hmac(b"key", BODY)])
def test_hmac_base64_refuses_malformed(value: str) -> None:
    config = auth("hmac", header="X-Sig", encoding="base64")
    assert verify_request(config, b"key", {"X-Sig": value}, BODY, NOW) is False


def test_hmac_refuses_missing_header_bad_config() -> None:
    good = {"X-Sig": hex_hmac(b"key", BODY)}
    assert verify_request(auth("hmac", header="X-Sig"), b"key", {}, BODY, NOW) is False
    assert verify_request(auth("hmac"), b"key", good, BODY, NOW) is False
    bad_algorithm = auth("hmac", header="X-Sig", algorithm="md5")
    md5 = {"X-Sig": hex_hmac(b"key", BODY, "md5")}
    assert verify_request(bad_algorithm, b"key", md5, BODY, NOW) is False
    bad_encoding = auth("hmac", header="X-Sig", encoding="base32")
    assert verify_request(bad_encoding, b"key", good, BODY, NOW) is False


# --- github ----------------------------------------------------------------------------

GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_published_example() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    assert verify_request(auth("github"), GITHUB_SECRET, headers, GITHUB_BODY, NOW) is True
    lower = {"x-hub-signature-256": GITHUB_SIGNATURE}
    assert verify_request(auth("github"), GITHUB_SECRET, lower, GITHUB_BODY, NOW) is True


@pytest.mark.parametrize(
    ("secret", "headers", "body"),
    [
        (b"It's a secret to everybody", {"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_BODY),
        (GITHUB_SECRET, {"X-Hub-Signature-256": GITHUB_SIGNATURE}, b"Hello, World?"),
        (GITHUB_SECRET, {"X-Hub-Signature-256": GITHUB_SIGNATURE}, b""),
        (GITHUB_SECRET, {"X-Hub-Signature-256": GITHUB_SIGNATURE[7:]}, GITHUB_BODY),
        (GITHUB_SECRET, {"X-Hub-Signature-256": "sha1=" + GITHUB_SIGNATURE[7:]}, GITHUB_BODY),
        (GITHUB_SECRET, {"X-Hub-Signature-256": "sha256=xyz"}, GITHUB_BODY),
        (GITHUB_SECRET, {"X-Hub-Signature-256": "sha256="}, GITHUB_BODY),
        (GITHUB_SECRET, {}, GITHUB_BODY),
        # Only the legacy SHA-1 header: refused, SHA-256 is required.
        (
            GITHUB_SECRET,
            {"X-Hub-Signature": "sha1=" + hex_hmac(GITHUB_SECRET, GITHUB_BODY, "sha1")},
            GITHUB_BODY,
        ),
    ],
)
def test_github_refuses(secret: bytes, headers: dict[str, str], body: bytes) -> None:
    assert verify_request(auth("github"), secret, headers, body, NOW) is False


@pytest.mark.parametrize("body", [b"", NOT_UTF8])
def test_github_signs_raw_bytes(body: bytes) -> None:
    headers = {"X-Hub-Signature-256": "sha256=" + hex_hmac(b"gh", body)}
    assert verify_request(auth("github"), b"gh", headers, body, NOW) is True


# --- stripe ----------------------------------------------------------------------------

STRIPE_SECRET = b"whsec_test_5Rb2m8cQ"


def stripe_sig(body: bytes, t: int = T, secret: bytes = STRIPE_SECRET) -> str:
    return hex_hmac(secret, f"{t}.".encode() + body)


def stripe_headers(value: str) -> dict[str, str]:
    return {"Stripe-Signature": value}


@pytest.mark.parametrize("body", [BODY, b""])
def test_stripe_valid(body: bytes) -> None:
    headers = stripe_headers(f"t={T},v1={stripe_sig(body)}")
    assert verify_request(auth("stripe"), STRIPE_SECRET, headers, body, NOW) is True
    lower = {"stripe-signature": headers["Stripe-Signature"]}
    assert verify_request(auth("stripe"), STRIPE_SECRET, lower, body, NOW) is True


def test_stripe_any_v1_may_match_and_v0_is_ignored() -> None:
    good = stripe_sig(BODY)
    value = f"t={T},v1={'0' * 64},v1={good},v0={'1' * 64}"
    assert verify_request(auth("stripe"), STRIPE_SECRET, stripe_headers(value), BODY, NOW)
    only_v0 = f"t={T},v0={good}"
    assert not verify_request(auth("stripe"), STRIPE_SECRET, stripe_headers(only_v0), BODY, NOW)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86400, False)],
)
def test_stripe_tolerance_both_ways(offset: int, expected: bool) -> None:
    t = T + offset
    headers = stripe_headers(f"t={t},v1={stripe_sig(BODY, t)}")
    assert verify_request(auth("stripe"), STRIPE_SECRET, headers, BODY, NOW) is expected


def test_stripe_custom_tolerance() -> None:
    t = T - 600
    headers = stripe_headers(f"t={t},v1={stripe_sig(BODY, t)}")
    wide = auth("stripe", tolerance=timedelta(minutes=10))
    narrow = auth("stripe", tolerance=timedelta(minutes=9))
    assert verify_request(wide, STRIPE_SECRET, headers, BODY, NOW) is True
    assert verify_request(narrow, STRIPE_SECRET, headers, BODY, NOW) is False


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"v1={stripe_sig(BODY)}",  # no t
        f"t={T}",  # no v1
        f"t={T},v1=",
        f"t={T},v1=nothex",
        f"t={T},t={T},v1={stripe_sig(BODY)}",  # ambiguous t
        f"t=,v1={stripe_sig(BODY)}",
        f"t=abc,v1={stripe_sig(BODY)}",
        f"t={T}.5,v1={stripe_sig(BODY)}",
        f"t=-{T},v1={stripe_sig(BODY)}",
        f"t=1e9,v1={stripe_sig(BODY)}",
        f"t={'9' * 40},v1={stripe_sig(BODY)}",
        f"t={T},v1={stripe_sig(BODY)},",  # trailing empty item
        f"t={T};v1={stripe_sig(BODY)}",
        f"t={T},v1={stripe_sig(BODY)[:-2]}",
        f"t={T},v1={stripe_sig(BODY + b' ')}",
        f"t={T},v1={stripe_sig(BODY, T + 1)}",
    ],
)
def test_stripe_refuses_malformed(value: str) -> None:
    assert verify_request(auth("stripe"), STRIPE_SECRET, stripe_headers(value), BODY, NOW) is False


def test_stripe_refuses_missing_header_wrong_secret_and_non_utf8() -> None:
    good = stripe_headers(f"t={T},v1={stripe_sig(BODY)}")
    assert verify_request(auth("stripe"), STRIPE_SECRET, {}, BODY, NOW) is False
    assert verify_request(auth("stripe"), b"whsec_other", good, BODY, NOW) is False
    bad = stripe_headers(f"t={T},v1={stripe_sig(NOT_UTF8)}")
    assert verify_request(auth("stripe"), STRIPE_SECRET, bad, NOT_UTF8, NOW) is False


# --- standard webhooks -----------------------------------------------------------------

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def standard_headers(
    body: bytes,
    *,
    msg_id: str = "msg_2b7Ej3cQ",
    at: datetime = NOW,
    secret: str = STANDARD_SECRET,
) -> dict[str, str]:
    """Headers as a real Standard Webhooks sender (the reference library) makes them."""
    signature = standardwebhooks.Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def test_standard_spec_example() -> None:
    # The example of the Standard Webhooks specification (and Svix's documentation).
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    at = datetime.fromtimestamp(1614265330, UTC) + timedelta(seconds=30)
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, body, at) is True
    assert (
        verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, body + b" ", at)
        is False
    )


@pytest.mark.parametrize("body", [BODY, b"", "h\u00e9llo \u2603".encode()])
def test_standard_signed_by_the_reference_library(body: bytes) -> None:
    headers = standard_headers(body)
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, body, NOW) is True
    title = {k.title(): v for k, v in headers.items()}
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), title, body, NOW) is True


def test_standard_secret_without_prefix_is_base64_too() -> None:
    bare = STANDARD_SECRET.removeprefix("whsec_")
    headers = standard_headers(BODY, secret=bare)
    assert verify_request(auth("standard"), bare.encode(), headers, BODY, NOW) is True
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, BODY, NOW) is True


def test_standard_unpadded_secret() -> None:
    secret = "whsec_" + base64.b64encode(b"sixteen byte key" + b"!").decode().rstrip("=")
    headers = standard_headers(BODY, secret=secret)
    assert verify_request(auth("standard"), secret.encode(), headers, BODY, NOW) is True


def test_standard_several_signatures_and_other_versions() -> None:
    headers = standard_headers(BODY)
    good = headers["webhook-signature"]
    other = standard_headers(BODY, secret="whsec_" + base64.b64encode(b"x" * 24).decode())
    wrong = other["webhook-signature"]
    v1a = "v1a," + good.split(",", 1)[1]
    cases = {
        f"{wrong} {good}": True,
        f"{v1a} {good}": True,
        f"v2,zzz  {good}": True,
        f"garbage {good}": True,
        f"v1,!!! {good}": True,
        wrong: False,
        v1a: False,  # same bytes, unsupported version
        good.replace("v1,", "v1 "): False,
        good[:-4]: False,
        "": False,
    }
    for value, expected in cases.items():
        trial = {**headers, "webhook-signature": value}
        got = verify_request(auth("standard"), STANDARD_SECRET.encode(), trial, BODY, NOW)
        assert got is expected, value


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (-86400, False)],
)
def test_standard_tolerance_both_ways(offset: int, expected: bool) -> None:
    headers = standard_headers(BODY, at=NOW + timedelta(seconds=offset))
    got = verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, BODY, NOW)
    assert got is expected


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_refuses_missing_header(missing: str) -> None:
    headers = standard_headers(BODY)
    del headers[missing]
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, BODY, NOW) is False


@pytest.mark.parametrize("timestamp", ["", "abc", f"{T}.0", f"-{T}", "1e9", " ", "9" * 40])
def test_standard_refuses_garbage_timestamp(timestamp: str) -> None:
    headers = {**standard_headers(BODY), "webhook-timestamp": timestamp}
    assert verify_request(auth("standard"), STANDARD_SECRET.encode(), headers, BODY, NOW) is False


def test_standard_refuses_tampering_wrong_secret_and_non_utf8() -> None:
    headers = standard_headers(BODY)
    secret = STANDARD_SECRET.encode()
    other_id = {**headers, "webhook-id": "msg_other"}
    assert verify_request(auth("standard"), secret, other_id, BODY, NOW) is False
    other = "whsec_" + base64.b64encode(b"another secret!!").decode()
    assert verify_request(auth("standard"), other.encode(), headers, BODY, NOW) is False
    assert verify_request(auth("standard"), secret, headers, BODY + b"x", NOW) is False
    # Signed correctly over the raw bytes, refused only because they are not UTF-8.
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    for body, expected in ((BODY, True), (NOT_UTF8, False)):
        signed = f"msg_1.{T}.".encode() + body
        signature = base64.b64encode(hmac.new(key, signed, "sha256").digest()).decode()
        manual = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(T),
            "webhook-signature": f"v1,{signature}",
        }
        assert verify_request(auth("standard"), secret, manual, body, NOW) is expected


@pytest.mark.parametrize("secret", [b"whsec_", b"whsec_!!!!", b"whsec_A", "whsec_é".encode()])
def test_standard_refuses_undecodable_secret(secret: bytes) -> None:
    headers = standard_headers(BODY)
    assert verify_request(auth("standard"), secret, headers, BODY, NOW) is False


# --- slack -----------------------------------------------------------------------------

SLACK_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_NOW = datetime.fromtimestamp(SLACK_TIMESTAMP, UTC) + timedelta(seconds=5)


def slack_headers(
    signature: str = SLACK_SIGNATURE, timestamp: str = str(SLACK_TIMESTAMP)
) -> dict[str, str]:
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp}


def test_slack_published_example() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack (checked to match).
    assert verify_request(auth("slack"), SLACK_SECRET, slack_headers(), SLACK_BODY, SLACK_NOW)
    lower = {k.lower(): v for k, v in slack_headers().items()}
    assert verify_request(auth("slack"), SLACK_SECRET, lower, SLACK_BODY, SLACK_NOW)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False)],
)
def test_slack_tolerance_both_ways(offset: int, expected: bool) -> None:
    now = datetime.fromtimestamp(SLACK_TIMESTAMP + offset, UTC)
    got = verify_request(auth("slack"), SLACK_SECRET, slack_headers(), SLACK_BODY, now)
    assert got is expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Signature": SLACK_SIGNATURE},
        {"X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP)},
        slack_headers(signature=SLACK_SIGNATURE[3:]),
        slack_headers(signature="v1=" + SLACK_SIGNATURE[3:]),
        slack_headers(signature="v0="),
        slack_headers(signature="v0=nothex"),
        slack_headers(signature=SLACK_SIGNATURE[:-1]),
        slack_headers(signature=SLACK_SIGNATURE[:-1] + "4"),
        slack_headers(timestamp=""),
        slack_headers(timestamp="abc"),
        slack_headers(timestamp=f"{SLACK_TIMESTAMP}.0"),
        slack_headers(timestamp=str(SLACK_TIMESTAMP + 1)),
    ],
)
def test_slack_refuses(headers: dict[str, str]) -> None:
    assert verify_request(auth("slack"), SLACK_SECRET, headers, SLACK_BODY, SLACK_NOW) is False


def test_slack_wrong_secret_empty_and_non_utf8_body() -> None:
    assert not verify_request(auth("slack"), b"x" * 32, slack_headers(), SLACK_BODY, SLACK_NOW)
    empty_sig = "v0=" + hex_hmac(SLACK_SECRET, f"v0:{SLACK_TIMESTAMP}:".encode())
    empty = slack_headers(signature=empty_sig)
    assert verify_request(auth("slack"), SLACK_SECRET, empty, b"", SLACK_NOW) is True
    bad_sig = "v0=" + hex_hmac(SLACK_SECRET, f"v0:{SLACK_TIMESTAMP}:".encode() + NOT_UTF8)
    bad = slack_headers(signature=bad_sig)
    assert verify_request(auth("slack"), SLACK_SECRET, bad, NOT_UTF8, SLACK_NOW) is False


# --- hostile input never raises ----------------------------------------------------------

_JUNK = [
    "",
    " ",
    "=",
    ",",
    "t=",
    "v1,",
    "v0=",
    "sha256=",
    "Basic ",
    "Bearer ",
    "\udcff",
    "\ud800",
    "\x00",
    "é",
    "9" * 5000,
    "t=1,v1=zz",
    "v1,====",
    "Basic ====",
    "sha256=" + "f" * 63,
]
_NAMES = [
    "Authorization",
    "X-Sig",
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
]


def test_hostile_input_is_always_a_plain_refusal() -> None:
    rng = random.Random(20240501)
    secrets: list[bytes] = [b"s", b"\xff\xfe", b"whsec_!!", STANDARD_SECRET.encode()]
    for _ in range(3000):
        scheme = rng.choice(SCHEMES[1:])
        headers = {name: rng.choice(_JUNK) for name in rng.sample(_NAMES, rng.randint(0, 9))}
        body = rng.choice([b"", BODY, NOT_UTF8, b"\x00" * 3])
        config = auth(scheme, header="X-Sig", algorithm=rng.choice(["sha256", "md5", ""]))
        assert verify_request(config, rng.choice(secrets), headers, body, NOW) is False


# --- header names and validation -------------------------------------------------------

ALWAYS = {"authorization", "proxy-authorization"}


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        (AuthConfig(), set()),
        (auth("token"), set()),
        (auth("token", header="X-Api-Key"), {"x-api-key"}),
        (auth("basic"), set()),
        (auth("hmac", header="X-Signature"), {"x-signature"}),
        (auth("hmac"), set()),
        (auth("github"), {"x-hub-signature-256", "x-hub-signature"}),
        (auth("stripe"), {"stripe-signature"}),
        (auth("standard"), {"webhook-signature", "svix-signature"}),
        (auth("slack"), {"x-slack-signature"}),
    ],
)
def test_auth_header_names(config: AuthConfig, extra: set[str]) -> None:
    assert auth_header_names(config) == frozenset(ALWAYS | extra)


@pytest.mark.parametrize(
    ("config", "problems"),
    [
        (AuthConfig(), []),
        (auth("token"), []),
        (auth("basic", username="alice"), []),
        (auth("hmac", header="X-Sig", algorithm="sha512", encoding="base64"), []),
        (auth("github"), []),
        (auth("stripe", tolerance=timedelta(minutes=1)), []),
        (auth("standard"), []),
        (auth("slack"), []),
        (
            AuthConfig(scheme="kerberos"),
            [
                "unknown auth scheme 'kerberos' (expected one of none, token, basic, hmac,"
                " github, stripe, standard, slack)"
            ],
        ),
        (AuthConfig(scheme="github"), ["github auth needs a secret"]),
        (auth("none"), ["none auth takes no secret (did you mean another scheme?)"]),
        (auth("token", header=" "), ["token auth header must not be empty"]),
        (auth("basic", username="a:b"), ["basic auth username must not contain ':'"]),
        (
            AuthConfig(scheme="hmac", algorithm="md5", encoding="base32"),
            [
                "hmac auth needs a secret",
                "hmac auth needs a header (the one carrying the signature)",
                "hmac algorithm 'md5' is not supported (expected one of sha1, sha256, sha512)",
                "hmac encoding 'base32' is not supported (expected one of hex, base64)",
            ],
        ),
        (
            auth("github", tolerance=timedelta(minutes=1)),
            [
                "tolerance applies only to the timestamped schemes (slack, standard, stripe),"
                " not github"
            ],
        ),
        (auth("slack", tolerance=timedelta(0)), ["tolerance must be positive"]),
    ],
)
def test_validate_auth_config(config: AuthConfig, problems: list[str]) -> None:
    assert validate_auth_config(config) == problems


def test_header_count_sees_every_line_in_any_case() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    lines = CIMultiDictProxy(CIMultiDict([("X-Sig", "a"), ("x-sig", "b"), ("Other", "c")]))
    assert header_count(lines, "X-SIG") == 2
    assert header_count({"X-Sig": "a", "x-sig": "b"}, "x-Sig") == 2
    assert header_count({"X-Sig": "a"}, "x-sig") == 1
    assert header_count({}, "x-sig") == 0
