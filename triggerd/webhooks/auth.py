"""Webhook authentication schemes, as pure functions of the request and the resolved secret.

:func:`verify_request` never raises for anything a sender controls: a missing, malformed,
wrong or expired signature, or material that does not decode, is simply ``False`` (the
route answers ``401``, never ``500``). Every secret comparison is constant-time
(:func:`hmac.compare_digest`).

Per-scheme rules (``secret`` is the resolved secret value as bytes):

``none``
    Always accepted.
``token``
    ``auth.header`` (default ``Authorization``) must equal ``prefix + secret`` (compared as
    SHA-256 digests, so that the time taken does not tell the secret's length). The prefix
    defaults to ``"Bearer "`` when the header is ``Authorization`` and to ``""`` otherwise.
    The comparison is exact, except that in ``Authorization`` the scheme word of the prefix
    (``Bearer``) is matched case-insensitively (RFC 9110 11.1), as ``Basic`` is.
``basic``
    ``Authorization: Basic base64(user:password)``. With ``auth.username`` set, the secret is
    the password. Without it, the secret is the whole ``user:password`` pair. The ``Basic``
    word is matched case-insensitively (RFC 7617).
``hmac``
    ``auth.header`` (required) carries ``prefix + signature``, the signature being the
    ``auth.algorithm`` (sha1 | sha256 | sha512) HMAC of the raw body, encoded as
    ``auth.encoding`` (hex, any case | base64).
``github``
    ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.
``stripe``
    ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...][,v0=...]``; HMAC-SHA256 of ``"{t}.{body}"``
    with the ``whsec_...`` secret used as-is; any ``v1`` may match. Default tolerance 5 min.
``standard`` (Standard Webhooks)
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (space-separated
    ``v1,<base64>`` entries; other versions ignored). The secret is ``whsec_<base64>``; the
    part after the prefix (or the whole secret without it) is base64-decoded into the key.
    HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``. Default tolerance 5 min. Senders built on
    Svix (Clerk, Resend, ...) send the same scheme as ``svix-id``, ``svix-timestamp`` and
    ``svix-signature``, as the reference libraries accept: that set is read when no
    ``webhook-*`` header is present, and the three headers always come from one set.
``slack``
    ``X-Slack-Signature: v0=<hex>`` over ``"v0:{X-Slack-Request-Timestamp}:{body}"``,
    HMAC-SHA256. Default tolerance 5 min.

Every scheme refuses a request in which a header it reads appears on more than one line
(two signatures, two ``Authorization`` lines): which of them counts is not for the sender to
choose, and a proxy may have judged the other one.

The timestamped schemes (stripe, standard, slack) refuse a timestamp that is not plain
decimal digits, or that lies more than the tolerance (``auth.tolerance`` or the 5-minute
default) before *or* after ``now``. They sign text, so a body that is not UTF-8 fails.

:func:`check_request` says why a request is refused, as a :class:`Refusal` (an
:class:`AuthFailure` reason and the header concerned) for the operator's log; the sender's
answer never says which part failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from multidict import MultiMapping

from triggerd.model import AuthConfig

SCHEMES: tuple[str, ...] = (
    "none",
    "token",
    "basic",
    "hmac",
    "github",
    "stripe",
    "standard",
    "slack",
)
TIMESTAMPED_SCHEMES: frozenset[str] = frozenset({"stripe", "standard", "slack"})
# Schemes whose credentials are all in the headers (no signature over the body): a request
# asking `Expect: 100-continue` is refused before it sends its body.
HEADER_SCHEMES: frozenset[str] = frozenset({"token", "basic"})
HMAC_ALGORITHMS: tuple[str, ...] = ("sha1", "sha256", "sha512")
HMAC_ENCODINGS: tuple[str, ...] = ("hex", "base64")
DEFAULT_TOLERANCE = timedelta(minutes=5)

# Headers that may carry credentials whatever the scheme: a sender can always add them, and
# they must never reach the stored inbox.
ALWAYS_STRIPPED: frozenset[str] = frozenset({"authorization", "proxy-authorization"})

_GITHUB_HEADER = "X-Hub-Signature-256"
_STRIPE_HEADER = "Stripe-Signature"
_SLACK_SIGNATURE = "X-Slack-Signature"
_SLACK_TIMESTAMP = "X-Slack-Request-Timestamp"
# The standard scheme's (id, timestamp, signature) headers, and Svix's names for them.
STANDARD_HEADERS: tuple[str, str, str] = ("webhook-id", "webhook-timestamp", "webhook-signature")
SVIX_HEADERS: tuple[str, str, str] = ("svix-id", "svix-timestamp", "svix-signature")
_SLACK_HEADERS = (_SLACK_SIGNATURE, _SLACK_TIMESTAMP)
_STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format marker, not a secret

# Unix seconds are plain ASCII digits, at most this many so that int/float arithmetic
# cannot overflow (15 digits is ~31 million years).
_TIMESTAMP_DIGITS = 15



class AuthFailure(StrEnum):
    """Why a request was refused (logged, never sent to the sender)."""

    MISSING_HEADER = "missing_header"  # the header carrying the credentials is absent
    MALFORMED_SIGNATURE = "malformed_signature"  # not the scheme's prefix/encoding/fields
    MALFORMED_TIMESTAMP = "malformed_timestamp"  # not plain decimal seconds
    MALFORMED_CREDENTIALS = "malformed_credentials"  # not ``Basic base64(user:password)``
    STALE_TIMESTAMP = "stale_timestamp"  # outside the tolerance, before or after now
    BAD_SIGNATURE = "bad_signature"  # well-formed, but not made with this trigger's secret
    BAD_TOKEN = "bad_token"  # noqa: S105 - a code: the header is not prefix + secret
    BAD_CREDENTIALS = "bad_credentials"  # basic auth: wrong user or password
    BODY_NOT_UTF8 = "body_not_utf8"  # the timestamped schemes sign text
    UNKNOWN_SECRET = "unknown_secret"  # noqa: S105 - no secret the scheme can use
    UNUSABLE_CONFIG = "unusable_config"  # a scheme/algorithm that validation would refuse
    REPEATED_HEADER = "repeated_header"  # a header the scheme reads is on several lines


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request: the reason and the header it concerns (``None``: no one header).
    Built when the verifier is, so a refusal allocates nothing."""

    reason: AuthFailure
    header: str | None = None
    # What the sender may be told beyond "authentication failed" (None: nothing). Not part
    # of the refusal's identity: the reason and the header are.
    told: str | None = field(default=None, compare=False)


# A request's verdict: (headers, raw body, now) -> accepted?
Verifier = Callable[[Mapping[str, str], bytes, datetime], bool]
# The same with the reason: (headers, raw body, now) -> None when accepted.
Checker = Callable[[Mapping[str, str], bytes, datetime], Refusal | None]


# --- headers -------------------------------------------------------------------------


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, looked up case-insensitively, or ``None``.

    aiohttp's ``CIMultiDictProxy`` answers case-insensitively by itself; the scan covers
    plain dicts (tests, other callers). With repeated headers the first value wins (the
    auth schemes refuse those first, see :func:`repeated_header`).
    """
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def header_count(headers: Mapping[str, str], name: str) -> int:
    """On how many lines header ``name`` (any case) appears."""
    if isinstance(headers, MultiMapping):
        return len(headers.getall(name, ()))
    wanted = name.lower()
    return sum(1 for key in headers if key.lower() == wanted)


def repeated_header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that appears on more than one line, else ``None``."""
    for name in names:
        if header_count(headers, name) > 1:
            return name
    return None


def auth_header_names(auth: AuthConfig) -> frozenset[str]:
    """Lower-case names of the headers carrying auth material, to strip before storing.

    Always includes ``authorization`` and ``proxy-authorization``. Non-secret companions
    (``webhook-id``/``svix-id``, timestamps) are kept: they are useful for tracing and dedupe.
    """
    names: set[str] = set(ALWAYS_STRIPPED)
    scheme = auth.scheme
    if scheme == "token":
        names.add((auth.header or "Authorization").lower())
    elif scheme == "hmac" and auth.header:
        names.add(auth.header.lower())
    elif scheme == "github":
        # GitHub also sends the legacy SHA-1 signature; it is auth material too.
        names.update({_GITHUB_HEADER.lower(), "x-hub-signature"})
    elif scheme == "stripe":
        names.add(_STRIPE_HEADER.lower())
    elif scheme == "standard":
        # Both names, whichever set a request used: a signature is never worth keeping.
        names.update({STANDARD_HEADERS[2], SVIX_HEADERS[2]})
    elif scheme == "slack":
        names.add(_SLACK_SIGNATURE.lower())
    return frozenset(names)


def validate_auth_config(auth: AuthConfig) -> list[str]:
    """Human-readable problems with ``auth``; ``[]`` when it is usable."""
    scheme = auth.scheme
    if scheme not in SCHEMES:
        return [f"unknown auth scheme {scheme!r} (expected one of {', '.join(SCHEMES)})"]
    problems: list[str] = []
    if scheme != "none" and auth.secret is None:
        problems.append(f"{scheme} auth needs a secret")
    if scheme == "none" and auth.secret is not None:
        problems.append("none auth takes no secret (did you mean another scheme?)")
    if scheme == "token" and auth.header is not None and not auth.header.strip():
        problems.append("token auth header must not be empty")
    if scheme == "basic" and auth.username is not None and ":" in auth.username:
        problems.append("basic auth username must not contain ':'")
    if scheme == "hmac":
        if not auth.header or not auth.header.strip():
            problems.append("hmac auth needs a header (the one carrying the signature)")
        if auth.algorithm not in HMAC_ALGORITHMS:
            problems.append(
                f"hmac algorithm {auth.algorithm!r} is not supported"
                f" (expected one of {', '.join(HMAC_ALGORITHMS)})"
            )
        if auth.encoding not in HMAC_ENCODINGS:
            problems.append(
                f"hmac encoding {auth.encoding!r} is not supported"
                f" (expected one of {', '.join(HMAC_ENCODINGS)})"
            )
    if auth.tolerance is not None:
        if scheme not in TIMESTAMPED_SCHEMES:
            problems.append(
                f"tolerance applies only to the timestamped schemes"
                f" ({', '.join(sorted(TIMESTAMPED_SCHEMES))}), not {scheme}"
            )
        elif auth.tolerance <= timedelta(0):
            problems.append("tolerance must be positive")
    return problems


# --- verification ----------------------------------------------------------------------


def verify_request(
    auth: AuthConfig,
    secret: bytes | None,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> bool:
    """Whether the request carries valid credentials for ``auth`` (see the module doc).

    ``secret`` is the resolved secret value; ``None`` (or empty) fails every scheme but
    ``none``. ``now`` must be timezone-aware; it is only read by the timestamped schemes.
    """
    return make_checker(auth, secret)(headers, body, now) is None


def check_request(
    auth: AuthConfig,
    secret: bytes | None,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> Refusal | None:
    """:func:`verify_request` with the reason: ``None`` when accepted, else why not."""
    return make_checker(auth, secret)(headers, body, now)


def make_verifier(auth: AuthConfig, secret: bytes | None) -> Verifier:
    """:func:`verify_request` for one trigger (see :func:`make_checker`)."""
    check = make_checker(auth, secret)

    def verify(headers: Mapping[str, str], body: bytes, now: datetime) -> bool:
        return check(headers, body, now) is None

    return verify


def make_checker(auth: AuthConfig, secret: bytes | None) -> Checker:
    """:func:`check_request` for one trigger: whatever depends only on ``auth`` and the
    secret (header names, prefixes, the expected token, the Standard Webhooks key, the
    tolerance, the refusals) is worked out once, when the route table is built, not per
    request."""
    scheme = auth.scheme
    if scheme == "none":
        check: Checker = _accept
    elif scheme not in SCHEMES:
        check = _refuse_config
    elif not secret:
        check = _refuse_secret
    else:
        try:
            check = _scheme_checker(auth, secret)
        except (ValueError, UnicodeError, binascii.Error):
            check = _refuse_config  # e.g. a prefix that cannot be encoded: nothing matches

    def checked(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        if now.tzinfo is None:
            raise ValueError("verify_request needs a timezone-aware 'now'")
        try:
            return check(headers, body, now)
        except (ValueError, UnicodeError, binascii.Error):  # pragma: no cover - defensive
            # Every check tests its input first; this is the belt to those braces, so
            # that hostile input can only ever produce a 401.
            return _MALFORMED

    return checked


def check_rotating(
    checkers: tuple[Checker, ...], headers: Mapping[str, str], body: bytes, now: datetime
) -> tuple[Refusal | None, int]:
    """Secret rotation: the first of ``checkers`` (one per listed secret, in order) that
    accepts the request, as ``(None, its index)``; else the first checker's refusal and
    ``-1``. Only triggers with a list of secrets come here, so the single-secret path pays
    nothing for it."""
    first: Refusal | None = None
    for index, check in enumerate(checkers):
        refusal = check(headers, body, now)
        if refusal is None:
            return None, index
        if first is None:
            first = refusal
    return first, -1


_NO_SECRET = Refusal(AuthFailure.UNKNOWN_SECRET)
_NO_CONFIG = Refusal(AuthFailure.UNUSABLE_CONFIG)
_MALFORMED = Refusal(AuthFailure.MALFORMED_SIGNATURE)
_NOT_UTF8 = Refusal(AuthFailure.BODY_NOT_UTF8)


def _accept(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
    return None


def _refuse_secret(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
    return _NO_SECRET


def _refuse_config(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
    return _NO_CONFIG


def _refusals(header: str) -> dict[AuthFailure, Refusal]:
    """Every refusal about ``header``, built once per checker."""
    return {reason: Refusal(reason, header) for reason in AuthFailure}


def _scheme_checker(auth: AuthConfig, secret: bytes) -> Checker:
    match auth.scheme:
        case "token":
            return _token_verifier(auth, secret)
        case "basic":
            return _basic_verifier(auth, secret)
        case "hmac":
            if not auth.header:
                return _refuse_config
            return _hmac_verifier(
                secret,
                auth.header,
                algorithm=auth.algorithm,
                encoding=auth.encoding,
                prefix=auth.prefix or "",
            )
        case "github":
            return _hmac_verifier(
                secret, _GITHUB_HEADER, algorithm="sha256", encoding="hex", prefix="sha256="
            )
        case "stripe":
            return _stripe_verifier(secret, _tolerance(auth))
        case "standard":
            return _standard_verifier(secret, _tolerance(auth))
        case "slack":
            return _slack_verifier(secret, _tolerance(auth))
        case _:
            return _refuse_config


def _tolerance(auth: AuthConfig) -> float:
    """The scheme's tolerance in seconds."""
    tolerance = auth.tolerance if auth.tolerance is not None else DEFAULT_TOLERANCE
    return tolerance.total_seconds()


class KeyedHmac:
    """HMAC with one key, keyed once: the standard library's HMAC object is built per
    trigger and copied for every message, which spares deriving the key blocks again
    (about a third of :func:`hmac.digest`). The result is compared with
    :func:`hmac.compare_digest` as before."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes, algorithm: str) -> None:
        self._keyed = hmac.new(key, digestmod=algorithm)

    def digest(self, message: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.digest()


def _header_bytes(value: str) -> bytes | None:
    """A header value as bytes for a constant-time comparison (aiohttp decodes header bytes
    as UTF-8 with surrogateescape, which this reverses)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _fixed_length(value: bytes) -> bytes:
    """``value``'s SHA-256: what the token and basic schemes compare. compare_digest of two
    values of different lengths returns at once, which tells a sender the secret's length;
    digests are always 32 bytes."""
    return hashlib.sha256(value).digest()


def _token_verifier(auth: AuthConfig, secret: bytes) -> Checker:
    header = auth.header or "Authorization"
    prefix = auth.prefix
    if prefix is None:
        prefix = "Bearer " if header.lower() == "authorization" else ""
    expected = prefix.encode("utf-8") + secret
    expected_digest = _fixed_length(expected)
    # The auth-scheme word of an Authorization header is case-insensitive (RFC 9110 11.1):
    # "bearer tok" is the same credential. The prefix is public, so it is compared apart;
    # the secret after it still goes through compare_digest.
    # Only the word itself: in a prefix such as "Token sk_" the rest is the token's own.
    word = prefix.split(" ", 1)[0] if " " in prefix else prefix
    scheme_word = (
        len(word.encode("utf-8")) if header.lower() == "authorization" and prefix.strip()
        else 0
    )
    refuse = _refusals(header)

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        if header_count(headers, header) > 1:
            return refuse[AuthFailure.REPEATED_HEADER]
        value = get_header(headers, header)
        if value is None:
            return refuse[AuthFailure.MISSING_HEADER]
        given = _header_bytes(value)
        if given is None:
            return refuse[AuthFailure.BAD_TOKEN]
        if scheme_word and given[:scheme_word].lower() == expected[:scheme_word].lower():
            given = expected[:scheme_word] + given[scheme_word:]
        if not hmac.compare_digest(_fixed_length(given), expected_digest):
            return refuse[AuthFailure.BAD_TOKEN]
        return None

    return check


def _basic_verifier(auth: AuthConfig, secret: bytes) -> Checker:
    if auth.username is not None:
        expected = auth.username.encode("utf-8") + b":" + secret
    else:
        expected = secret
    expected_digest = _fixed_length(expected)
    refuse = _refusals("Authorization")

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        if header_count(headers, "Authorization") > 1:
            return refuse[AuthFailure.REPEATED_HEADER]
        value = get_header(headers, "Authorization")
        if value is None:
            return refuse[AuthFailure.MISSING_HEADER]
        word, _, encoded = value.strip().partition(" ")
        if word.lower() != "basic" or not encoded:
            return refuse[AuthFailure.MALFORMED_CREDENTIALS]
        credentials = _decode_signature(encoded.strip(), "base64")
        if credentials is None:
            return refuse[AuthFailure.MALFORMED_CREDENTIALS]
        if not hmac.compare_digest(_fixed_length(credentials), expected_digest):
            return refuse[AuthFailure.BAD_CREDENTIALS]
        return None

    return check


def _hmac_verifier(
    secret: bytes, header: str, *, algorithm: str, encoding: str, prefix: str
) -> Checker:
    if algorithm not in HMAC_ALGORITHMS or encoding not in HMAC_ENCODINGS:
        return _refuse_config
    keyed = KeyedHmac(secret, algorithm)
    refuse = _refusals(header)

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        if header_count(headers, header) > 1:
            return refuse[AuthFailure.REPEATED_HEADER]
        value = get_header(headers, header)
        if value is None:
            return refuse[AuthFailure.MISSING_HEADER]
        value = value.strip()
        if not value.startswith(prefix):
            return refuse[AuthFailure.MALFORMED_SIGNATURE]
        signature = _decode_signature(value[len(prefix) :], encoding)
        if signature is None:
            return refuse[AuthFailure.MALFORMED_SIGNATURE]
        if not hmac.compare_digest(signature, keyed.digest(body)):
            return refuse[AuthFailure.BAD_SIGNATURE]
        return None

    return check


def _decode_signature(text: str, encoding: str) -> bytes | None:
    """Hex (either case, non-empty, nothing else) or strict standard base64; ``None``
    when ``text`` is not that."""
    try:
        if encoding == "hex":
            return binascii.a2b_hex(text) if text else None
        if encoding == "base64":
            return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):  # not the alphabet, odd length, non-ASCII
        return None
    return None


def _parse_timestamp(value: str, now: datetime, tolerance: float) -> int | AuthFailure:
    """The timestamp as Unix seconds, or why it is refused: malformed, or more than
    ``tolerance`` seconds away from ``now``."""
    value = value.strip()
    # ASCII digits only (str.isdigit alone would take other scripts' digits too).
    if not (value.isascii() and value.isdigit() and len(value) <= _TIMESTAMP_DIGITS):
        return AuthFailure.MALFORMED_TIMESTAMP
    seconds = int(value)
    if abs(now.timestamp() - seconds) > tolerance:
        return AuthFailure.STALE_TIMESTAMP
    return seconds


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _stripe_verifier(secret: bytes, tolerance: float) -> Checker:
    keyed = KeyedHmac(secret, "sha256")
    refuse = _refusals(_STRIPE_HEADER)

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        if header_count(headers, _STRIPE_HEADER) > 1:
            return refuse[AuthFailure.REPEATED_HEADER]
        value = get_header(headers, _STRIPE_HEADER)
        if value is None:
            return refuse[AuthFailure.MISSING_HEADER]
        if not _is_utf8(body):
            return _NOT_UTF8
        timestamps: list[str] = []
        candidates: list[bytes] = []
        for item in value.split(","):
            key, sep, part = item.strip().partition("=")
            if not sep:
                return refuse[AuthFailure.MALFORMED_SIGNATURE]
            if key == "t":
                timestamps.append(part)
            elif key == "v1":
                signature = _decode_signature(part.strip(), "hex")
                if signature is not None:
                    candidates.append(signature)
            # v0 and unknown schemes are ignored, as Stripe's own libraries do.
        if len(timestamps) != 1 or not candidates:
            return refuse[AuthFailure.MALFORMED_SIGNATURE]
        seconds = _parse_timestamp(timestamps[0], now, tolerance)
        if isinstance(seconds, AuthFailure):
            return refuse[seconds]
        expected = keyed.digest(b"%d.%s" % (seconds, body))
        # Check every candidate (no early exit) so timing says nothing about which one
        # matched.
        matched = False
        for signature in candidates:
            matched |= hmac.compare_digest(signature, expected)
        return None if matched else refuse[AuthFailure.BAD_SIGNATURE]

    return check


def _standard_key(secret: bytes) -> bytes | None:
    try:
        text = secret.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    text = text.removeprefix(_STANDARD_SECRET_PREFIX)
    try:
        # Extra padding as in the reference implementation: senders often drop it, and the
        # non-validating decoder ignores what is surplus.
        key = base64.b64decode(text + "==")
    except (binascii.Error, ValueError):
        return None
    return key or None


@dataclass(frozen=True, slots=True)
class _StandardSet:
    """One set of the standard scheme's header names, with its refusals built once."""

    names: tuple[str, str, str]  # id, timestamp, signature
    about: dict[str, dict[AuthFailure, Refusal]]
    # A header of the set missing, by header: as told when nothing else of the set came
    # (nothing to tell: no signature was sent at all), when some of it did, and when the
    # other set was sent too (a sender mixing the two).
    unsent: dict[str, Refusal]
    incomplete: dict[str, Refusal]
    mixed: dict[str, Refusal]


def _standard_set(names: tuple[str, str, str], other: tuple[str, str, str]) -> _StandardSet:
    family = names[0].partition("-")[0] + "-*"
    alias = other[0].partition("-")[0] + "-*"
    return _StandardSet(
        names=names,
        about={name: _refusals(name) for name in names},
        unsent={name: Refusal(AuthFailure.MISSING_HEADER, name) for name in names},
        incomplete={
            name: Refusal(AuthFailure.MISSING_HEADER, name,
                          told=f"incomplete {family} headers: no {name}")
            for name in names
        },
        mixed={
            name: Refusal(AuthFailure.MISSING_HEADER, name,
                          told=f"incomplete {family} headers: no {name}"
                               f" ({alias} headers are read only when no {family} header"
                               f" is sent)")
            for name in names
        },
    )


def _sent(headers: Mapping[str, str], names: tuple[str, str, str]) -> tuple[int, int, int]:
    """On how many lines each of ``names`` appears."""
    return (header_count(headers, names[0]), header_count(headers, names[1]),
            header_count(headers, names[2]))


def _standard_missing(
    headers: Mapping[str, str], chosen: _StandardSet, counts: tuple[int, int, int], name: str
) -> Refusal:
    """The refusal for header ``name`` of the set read missing (or empty)."""
    if not any(counts):
        return chosen.unsent[name]  # no header of either set: nothing to say which
    if chosen.names is STANDARD_HEADERS and any(_sent(headers, SVIX_HEADERS)):
        return chosen.mixed[name]
    return chosen.incomplete[name]


def _standard_verifier(secret: bytes, tolerance: float) -> Checker:
    key = _standard_key(secret)
    if key is None:
        return _refuse_secret
    keyed = KeyedHmac(key, "sha256")
    standard = _standard_set(STANDARD_HEADERS, SVIX_HEADERS)
    svix = _standard_set(SVIX_HEADERS, STANDARD_HEADERS)

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        # One set is read whole: webhook-* when any of it is present, else svix-*. Never a
        # mix, so that the id signed and the id the dedupe reads are one header.
        counts = _sent(headers, STANDARD_HEADERS)
        chosen = standard
        if not any(counts):
            svix_counts = _sent(headers, SVIX_HEADERS)
            if any(svix_counts):
                counts, chosen = svix_counts, svix
        id_name, timestamp_name, signature_name = chosen.names
        for name, count in zip(chosen.names, counts, strict=True):
            if count > 1:
                return chosen.about[name][AuthFailure.REPEATED_HEADER]
        msg_id = get_header(headers, id_name)
        if not msg_id:
            return _standard_missing(headers, chosen, counts, id_name)
        timestamp = get_header(headers, timestamp_name)
        if timestamp is None:
            return _standard_missing(headers, chosen, counts, timestamp_name)
        signatures = get_header(headers, signature_name)
        if not signatures:
            return _standard_missing(headers, chosen, counts, signature_name)
        if not _is_utf8(body):
            return _NOT_UTF8
        seconds = _parse_timestamp(timestamp, now, tolerance)
        if isinstance(seconds, AuthFailure):
            return chosen.about[timestamp_name][seconds]
        id_bytes = _header_bytes(msg_id)
        if id_bytes is None:
            return chosen.about[id_name][AuthFailure.MALFORMED_SIGNATURE]
        expected = keyed.digest(b"%s.%d.%s" % (id_bytes, seconds, body))
        matched = False
        usable = False
        for entry in signatures.split():
            version, sep, encoded = entry.partition(",")
            if not sep or version != "v1":
                continue
            signature = _decode_signature(encoded, "base64")
            if signature is not None:
                usable = True
                matched |= hmac.compare_digest(signature, expected)
        if matched:
            return None
        return chosen.about[signature_name][
            AuthFailure.BAD_SIGNATURE if usable else AuthFailure.MALFORMED_SIGNATURE
        ]

    return check


def _slack_verifier(secret: bytes, tolerance: float) -> Checker:
    keyed = KeyedHmac(secret, "sha256")
    about_signature = _refusals(_SLACK_SIGNATURE)
    about_timestamp = _refusals(_SLACK_TIMESTAMP)
    about = {_SLACK_SIGNATURE: about_signature, _SLACK_TIMESTAMP: about_timestamp}

    def check(headers: Mapping[str, str], body: bytes, now: datetime) -> Refusal | None:
        repeated = repeated_header(headers, _SLACK_HEADERS)
        if repeated is not None:
            return about[repeated][AuthFailure.REPEATED_HEADER]
        value = get_header(headers, _SLACK_SIGNATURE)
        if value is None:
            return about_signature[AuthFailure.MISSING_HEADER]
        timestamp = get_header(headers, _SLACK_TIMESTAMP)
        if timestamp is None:
            return about_timestamp[AuthFailure.MISSING_HEADER]
        if not _is_utf8(body):
            return _NOT_UTF8
        checked = _parse_timestamp(timestamp, now, tolerance)
        if isinstance(checked, AuthFailure):
            return about_timestamp[checked]
        value = value.strip()
        if not value.startswith("v0="):
            return about_signature[AuthFailure.MALFORMED_SIGNATURE]
        signature = _decode_signature(value[3:], "hex")
        if signature is None:
            return about_signature[AuthFailure.MALFORMED_SIGNATURE]
        # Slack signs the timestamp exactly as it sent it.
        signed = f"v0:{timestamp.strip()}:".encode() + body
        if not hmac.compare_digest(signature, keyed.digest(signed)):
            return about_signature[AuthFailure.BAD_SIGNATURE]
        return None

    return check
