"""The admin API's bearer tokens: where they come from and how a request is checked.

Two kinds of token open the admin API:

- the configured one, ``[api] token`` (``TRIGGERD_API_TOKEN``) or, when that is empty, the
  systemd credential ``api-token`` (``LoadCredential=api-token:...``, read from
  ``$CREDENTIALS_DIRECTORY``): an all-tenant admin, compared in constant time;
- named tokens of the ``api_tokens`` table (``triggerd token create``), found by their
  SHA-256 hash (:class:`StoredTokens`), with a role and a tenant scope.

Without any, the admin API refuses every request: an unprotected admin API is never the
default. The daemon creates a first named token at its first start instead
(:func:`create_initial_token`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

from aiohttp import web

from triggerd.config import Settings
from triggerd.errors import ConfigError, TriggerdError
from triggerd.secrets import STATE_TOKEN_FILE
from triggerd.store.api_tokens import create_first_token, find_token
from triggerd.tokens import (
    INITIAL_TOKEN_NAME,
    Principal,
    Role,
    display_prefix,
    generate_token,
    hash_token,
    is_token_form,
)

logger = logging.getLogger(__name__)

CREDENTIAL_NAME = "api-token"
# The file under the state directory that holds the token made at the first start.
TOKEN_FILE_NAME = STATE_TOKEN_FILE
_SCHEME = "bearer"
# How long a valid stored token is trusted without asking the database again: a revoke
# takes effect within this window (an expiry exactly: the window ends with the token).
CACHE_TTL_SECONDS = 10.0
# Valid tokens remembered at once (only valid ones: a flood of made-up tokens cannot grow
# the cache).
CACHE_MAX_ENTRIES = 1024

Clock = Callable[[], float]


class AuthFailure(TriggerdError):
    """A request the admin API does not authenticate (401); the message never shows a
    token."""


class StoredTokens:
    """Finds named tokens by hash, remembering valid ones for ``ttl`` seconds of ``clock``
    (monotonic), so a busy client costs one query per window, not one per request."""

    def __init__(
        self, pool: Any, *, ttl: float = CACHE_TTL_SECONDS, clock: Clock = time.monotonic,
        max_entries: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self.lookups = 0  # database lookups made (for tests and curiosity)

    async def principal(self, token: str, *, fresh: bool = False) -> Principal:
        """Who ``token`` is; ``fresh`` asks the database even within the cache's window
        (a console login, which opens a session for hours)."""
        digest = hash_token(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now < cached[0] and not fresh:
            return cached[1]
        self._cache.pop(digest, None)
        self.lookups += 1
        hit = await find_token(self._pool, digest)
        if hit is None:
            raise AuthFailure("invalid bearer token")
        record = hit.record
        if record.revoked_at is not None:
            raise AuthFailure(f"token {record.name!r} has been revoked")
        if hit.expired and record.expires_at is not None:
            raise AuthFailure(
                f"token {record.name!r} expired at"
                f" {record.expires_at.astimezone(UTC).isoformat(timespec='seconds')}"
            )
        found = Principal(name=record.name, role=Role(record.role), tenant=record.tenant)
        # Trusted for the window, but never past the token's own end.
        window = self._ttl if hit.expires_in is None else min(self._ttl, hit.expires_in)
        self._remember(digest, now + window, found)
        return found

    def _remember(self, digest: bytes, expires: float, principal: Principal) -> None:
        if len(self._cache) >= self._max:
            now = self._clock()
            for key in [k for k, (until, _) in self._cache.items() if until <= now]:
                del self._cache[key]
            while len(self._cache) >= self._max:  # oldest first: dicts keep insertion order
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = (expires, principal)


class ApiAuth:
    """The configured token (``None``: none) and the stored tokens (``None``: not used).
    Mutable on purpose: a reload swaps the configured token in place with :meth:`update`,
    and handlers always read the current one."""

    def __init__(
        self, token: str | None, *, source: str, tokens: StoredTokens | None = None
    ) -> None:
        self._token = token.encode("utf-8") if token else None
        self.source = source  # "config", "credential" or "none": for logs, never the value
        self.tokens = tokens

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None, *,
        tokens: StoredTokens | None = None,
    ) -> ApiAuth:
        token, source = _resolve(settings, os.environ if environ is None else environ)
        return cls(token, source=source, tokens=tokens)

    @property
    def configured(self) -> bool:
        """Whether any token can open the API."""
        return self._token is not None or self.tokens is not None

    def update(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        """Take the configured token from new settings (SIGHUP)."""
        token, source = _resolve(settings, os.environ if environ is None else environ)
        self._token = token.encode("utf-8") if token else None
        self.source = source

    def configured_fingerprint(self) -> bytes | None:
        """SHA-256 of the configured token (None: none is configured): a console session
        opened with it ends when the configuration changes it."""
        return None if self._token is None else hashlib.sha256(self._token).digest()

    async def authenticate(self, authorization: str | None, *, fresh: bool = False
                           ) -> Principal:
        """Who the ``Authorization`` header names; :class:`AuthFailure` when it names no
        one, in words that never reveal a token. ``fresh``: a stored token is looked up
        even if it was seen in the last seconds (a token revoked meanwhile is refused)."""
        if not self.configured:
            raise AuthFailure(
                "the admin API has no token configured: set [api] token"
                f" (TRIGGERD_API_TOKEN) or the systemd credential {CREDENTIAL_NAME!r}"
            )
        if not authorization:
            raise AuthFailure("missing Authorization header (expected 'Bearer <token>')")
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != _SCHEME or not presented.strip():
            raise AuthFailure("the Authorization header must be 'Bearer <token>'")
        text = presented.strip()
        if self._token is not None:
            # Bytes, not str: compare_digest refuses non-ASCII str, and a header can hold
            # any byte (aiohttp keeps undecodable ones as surrogate escapes).
            candidate = text.encode("utf-8", "surrogateescape")
            # Digests of equal length: compare_digest returns at once for values of
            # different lengths, which told the configured token's length.
            if hmac.compare_digest(hashlib.sha256(candidate).digest(),
                                   hashlib.sha256(self._token).digest()):
                return Principal(name=f"[api] token ({self.source})", role=Role.ADMIN,
                                 tenant=None, source=self.source)
        # Only the token form is looked up: anything else costs no query. The lookup is by
        # hash, so its timing tells nothing about any stored token.
        if self.tokens is not None and is_token_form(text):
            return await self.tokens.principal(text, fresh=fresh)
        raise AuthFailure("invalid bearer token")


API_AUTH = web.AppKey("api_auth", ApiAuth)


def _resolve(settings: Settings, environ: Mapping[str, str]) -> tuple[str | None, str]:
    if settings.api.token:
        return settings.api.token, "config"
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None, "none"
    path = Path(directory) / CREDENTIAL_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "none"
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning(
            "cannot read the admin API credential; the admin API stays locked",
            extra={"event": "api_token_unreadable", "path": str(path), "error": str(exc)},
        )
        return None, "none"
    # Credential files conventionally end with a newline that is not part of the token.
    token = text.strip()
    return (token, "credential") if token else (None, "none")


async def create_initial_token(pool: Any, state_dir: Path) -> Path | None:
    """At the first start (no token ever stored), create the admin token ``initial`` and
    write it to ``<state_dir>/api-token`` (mode 0600). Returns the file's path, or None
    when a token existed. The row is committed only once the file is written."""
    token = generate_token()
    path = state_dir / TOKEN_FILE_NAME

    async def write() -> None:
        try:
            _write_private(path, token + "\n")
        except OSError as exc:
            raise ConfigError(
                f"daemon.state_dir: cannot write the admin API token {path}:"
                f" {exc.strerror or exc}"
            ) from None

    async with pool.acquire() as conn:
        created = await create_first_token(
            conn, name=INITIAL_TOKEN_NAME, role=Role.ADMIN.value,
            token_hash=hash_token(token), prefix=display_prefix(token), before_commit=write,
        )
    return path if created else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only: written aside, then renamed
    into place, so the file is never seen half-written or with wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
