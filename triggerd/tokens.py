"""Admin API tokens as values: their form, their hash, their names and what a role allows.

A token is ``tgd_`` followed by 43 base64url characters (32 random bytes, unpadded). Only
its SHA-256 hash is stored: the token carries 256 bits of randomness, so a fast hash is
safe (there is nothing to brute-force, unlike a password) and lets the API find a token by
its hash. The first characters (``tgd_`` + 8) are kept in the clear as the token's
``prefix``, for people to tell tokens apart in ``triggerd token list``.

Everything here is pure; the store (:mod:`triggerd.store.api_tokens`) keeps the rows and
:mod:`triggerd.api.auth` checks requests.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import timedelta

from triggerd.durations import parse_duration
from triggerd.errors import DurationError, UsageError
from triggerd.model import DEFAULT_TENANT

TOKEN_PREFIX = "tgd_"  # noqa: S105 - the public marker of the form
TOKEN_BYTES = 32
# The stored, displayed part: the fixed prefix and 8 characters (48 of the 256 bits).
DISPLAY_CHARS = len(TOKEN_PREFIX) + 8
INITIAL_TOKEN_NAME = "initial"  # noqa: S105 - a name, not a secret
# The shortest life a token can be given: anything shorter is a slip (`--expires-in 30`
# is not a duration; `30s` would be gone before it is pasted anywhere).
MIN_EXPIRY = timedelta(minutes=1)

_TOKEN = re.compile(r"tgd_[A-Za-z0-9_-]{43}")
NAME_RULE = "1-64 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
TENANT_RULE = "1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class Role(enum.StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


ROLES = tuple(r.value for r in Role)
# Methods a viewer may use: reading changes nothing.
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who an admin API request acts as: a stored token, or the configured ``[api] token``
    (``source`` "config" or "credential"; an all-tenant admin). ``tenant`` None: every
    tenant."""

    name: str
    role: Role
    tenant: str | None
    source: str = "token"


def generate_token() -> str:
    raw = base64.urlsafe_b64encode(os.urandom(TOKEN_BYTES)).rstrip(b"=").decode("ascii")
    return TOKEN_PREFIX + raw


def is_token_form(text: str) -> bool:
    """Whether ``text`` can be a stored token at all (anything else is never looked up)."""
    return _TOKEN.fullmatch(text) is not None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def display_prefix(token: str) -> str:
    return token[:DISPLAY_CHARS]


def parse_expiry(text: str | None) -> timedelta | None:
    """``token create --expires-in``: how long a new token lives (None: until revoked)."""
    if text is None:
        return None
    try:
        value = parse_duration(text, what="--expires-in")
    except DurationError as exc:
        raise UsageError(str(exc)) from None
    if value < MIN_EXPIRY:
        raise UsageError(f"--expires-in: {text!r} is too short (at least 1m)")
    return value


def check_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise UsageError(f"token name {name[:80]!r} is invalid: use {NAME_RULE}")
    return name


def is_tenant_name(text: str) -> bool:
    """Whether ``text`` is a tenant's name (:data:`TENANT_RULE`)."""
    return _TENANT.fullmatch(text) is not None


def check_tenant(tenant: str) -> str:
    if not is_tenant_name(tenant):
        raise UsageError(f"tenant {tenant[:80]!r} is invalid: use {TENANT_RULE}")
    return tenant


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise UsageError(f"{text[:80]!r} is not one of {', '.join(ROLES)}",
                         field="role") from None


def method_refusal(principal: Principal, method: str) -> str | None:
    """Why ``principal`` may not use ``method`` (None: it may). Viewers only read."""
    if principal.role is Role.ADMIN or method.upper() in READ_METHODS:
        return None
    return (
        f"token {principal.name!r} has the viewer role: it may only read (GET);"
        f" {method.upper()} needs an admin token"
    )


def addressed_tenant(principal: Principal, asked: str | None) -> tuple[str | None, str | None]:
    """The tenant a request works in (None: every tenant) and why it is refused (None: it
    is not). A scoped token works in its own tenant: naming another (``?tenant=``) finds
    nothing there, as another tenant's objects are not found (DESIGN §5b). An all-tenant
    token works in the tenant it names, else in every tenant."""
    if asked is not None and not is_tenant_name(asked):
        return None, f"tenant: {asked[:80]!r} is invalid: use {TENANT_RULE}"
    if principal.tenant is None:
        return asked, None
    if asked is not None and asked != principal.tenant:
        return principal.tenant, f"nothing here belongs to tenant {asked!r}"
    return principal.tenant, None


__all__ = [
    "DEFAULT_TENANT",
    "INITIAL_TOKEN_NAME",
    "ROLES",
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "addressed_tenant",
    "check_name",
    "check_tenant",
    "display_prefix",
    "generate_token",
    "hash_token",
    "is_tenant_name",
    "is_token_form",
    "method_refusal",
    "parse_role",
]
