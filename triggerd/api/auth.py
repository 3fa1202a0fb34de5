"""The admin API's bearer token: where it comes from and the constant-time check.

The token is ``[api] token`` (``TRIGGERD_API_TOKEN``) or, when that is empty, the systemd
credential ``api-token`` (``LoadCredential=api-token:...``, read from
``$CREDENTIALS_DIRECTORY``). Without either, the admin API refuses every request: an
unprotected admin API is never the default.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from triggerd.config import Settings

logger = logging.getLogger(__name__)

CREDENTIAL_NAME = "api-token"
_SCHEME = "bearer"


class ApiAuth:
    """The expected token (``None``: none configured). Mutable on purpose: a reload swaps
    the token in place with :meth:`update`, and handlers always read the current one."""

    def __init__(self, token: str | None, *, source: str) -> None:
        self._token = token.encode("utf-8") if token else None
        self.source = source  # "config", "credential" or "none": for logs, never the value

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> ApiAuth:
        token, source = _resolve(settings, os.environ if environ is None else environ)
        return cls(token, source=source)

    @property
    def configured(self) -> bool:
        return self._token is not None

    def update(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        """Take the token from new settings (SIGHUP)."""
        token, source = _resolve(settings, os.environ if environ is None else environ)
        self._token = token.encode("utf-8") if token else None
        self.source = source

    def check(self, authorization: str | None) -> str | None:
        """``None`` when the ``Authorization`` header carries the token; otherwise what is
        wrong, in words that never reveal the token."""
        if self._token is None:
            return (
                "the admin API has no token configured: set [api] token"
                f" (TRIGGERD_API_TOKEN) or the systemd credential {CREDENTIAL_NAME!r}"
            )
        if not authorization:
            return "missing Authorization header (expected 'Bearer <token>')"
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != _SCHEME or not presented.strip():
            return "the Authorization header must be 'Bearer <token>'"
        # Bytes, not str: compare_digest refuses non-ASCII str, and a header can hold any
        # byte (aiohttp keeps undecodable ones as surrogate escapes).
        candidate = presented.strip().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(candidate, self._token):
            return "invalid bearer token"
        return None


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
