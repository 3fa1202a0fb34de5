"""Console access: log in with an admin API token, a session cookie, a CSRF token on every
form, logout.

The cookie holds 32 random bytes; PostgreSQL keeps only their hash (any replica can check
a session; a revoked token ends its sessions at once). Every POST under ``/ui/`` must carry
the session's CSRF token (the login form a double-submitted one of its own), and the cookie
is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` when the request came over TLS: from a
trusted proxy that says ``X-Forwarded-Proto: https``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

from aiohttp import web

from triggerd.api.auth import API_AUTH
from triggerd.appkeys import POOL, SETTINGS
from triggerd.config import Settings
from triggerd.db import is_unavailable
from triggerd.errors import Conflict, DatabaseUnavailable, NotFound, TriggerdError
from triggerd.loglimit import Monotonic, ThrottledLog
from triggerd.serving.forward import client_address
from triggerd.storable import unstorable
from triggerd.store.console import find_session
from triggerd.tokens import Principal, Role, addressed_tenant
from triggerd.webhooks.allowlist import (
    IPAddress,
    Networks,
    client_ip,
    parse_address,
    parse_networks,
    within,
)
from triggerd.webhooks.answers import close_unread
from triggerd.webhooks.decoding import content_encoding
from triggerd.webhooks.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

PREFIX = "/ui"
COOKIE = "triggerd_session"
LOGIN_COOKIE = "triggerd_login"  # the login form's double-submitted CSRF token
SESSION_TTL = timedelta(hours=12)
PUBLIC_PATHS = frozenset({f"{PREFIX}/login"})
STATIC_PREFIX = f"{PREFIX}/static/"
MAX_FORM_BYTES = 256 * 1024
SESSION_ENDED = "your console session has ended; log in again"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class ConsoleSession:
    principal: Principal
    csrf: str

    @property
    def can_act(self) -> bool:
        return self.principal.role is Role.ADMIN


SESSION = web.RequestKey("console_session", ConsoleSession)
# The tenant a page works in: a scoped session's own, else the one ?tenant= names (None:
# every tenant).
TENANT = web.RequestKey[str | None]("console_tenant")


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def hash_session_id(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


def in_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class TrustedProxies:
    """``[http] trusted_proxies`` as networks, for the console (a reload updates them)."""

    def __init__(self, settings: Settings) -> None:
        self.networks: Networks = ()
        self.update(settings)

    def update(self, settings: Settings) -> None:
        self.networks = parse_networks(settings.http.trusted_proxies)


TRUSTED_PROXIES = web.AppKey("console_trusted_proxies", TrustedProxies)

# Login attempts per client address: 20 at once, then one every 3 s (20 a minute). A
# successful login gives its attempt back. An `[api] token` chosen by hand could be
# guessed at the login form's full speed; a generated token (256 bits) never could.
LOGIN_BURST = 20
LOGIN_RATE = 1 / 3
# Addresses remembered before the full buckets (addresses that have not tried for a minute)
# are dropped.
LOGIN_ADDRESSES = 10_000


class LoginAttempts:
    """The login form's attempts per client address, as token buckets."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = RateLimiter()
        self._clock = clock

    def admit(self, address: str) -> float:
        """Take an attempt of ``address``: 0.0, or the seconds until it may try again."""
        now = self._clock()
        if len(self._limiter.buckets) > LOGIN_ADDRESSES:
            self._limiter.prune(now)
        return self._limiter.check(address, LOGIN_RATE, LOGIN_BURST, now)

    def succeeded(self, address: str) -> None:
        self._limiter.refund(address)


LOGIN_ATTEMPTS = web.AppKey("console_login_attempts", LoginAttempts)

# Anyone who reaches the port can post a form with another Origin: the refusals are logged
# as webhook rejections are, at info and at most 10 at once, then 1 a second (one line each
# at warning let a client fill the disk).
CROSS_SITE_BURST = 10
CROSS_SITE_RATE = 1.0


def cross_site_log(monotonic: Monotonic = time.monotonic,
                   event: str = "console_cross_site_refused") -> ThrottledLog:
    return ThrottledLog(logger, event, rate=CROSS_SITE_RATE, burst=CROSS_SITE_BURST,
                        monotonic=monotonic)


CROSS_SITE_LOG = web.AppKey("console_cross_site_log", ThrottledLog)
# A form with a wrong CSRF token, from a session: limited the same way (each was a warning).
CSRF_LOG = web.AppKey("console_csrf_log", ThrottledLog)


def login_address(request: web.Request) -> str:
    """Whose login attempt this is: the client behind ``[http] trusted_proxies``."""
    return login_key(client_ip(client_address(request),
                               request.headers.getall("X-Forwarded-For", []),
                               request.app[TRUSTED_PROXIES].networks))


def login_key(address: IPAddress | None) -> str:
    """The bucket of an address as :func:`client_ip` gives it (an IPv4-mapped one as the
    IPv4 one): an IPv6 one's /64 (one host may hold all of its 2**64 addresses, each of
    which would otherwise have had 20 attempts of its own)."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def came_over_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: the daemon has no TLS listener, so a TLS
    proxy's ``X-Forwarded-Proto: https`` says so, believed only from one of ``[http]
    trusted_proxies`` (anyone else could write the header)."""
    if request.secure:
        return True
    proxies = request.app[TRUSTED_PROXIES].networks
    peer = client_address(request)
    address = parse_address(peer) if proxies and peer else None
    if address is None or not within(address, proxies):
        return False
    # The right-most value is the one the nearest proxy (the trusted one) added.
    forwarded = request.headers.get("X-Forwarded-Proto", "").rsplit(",", 1)[-1]
    return forwarded.strip().lower() == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None) -> None:
    response.set_cookie(name, value, path=PREFIX + "/", httponly=True, samesite="Strict",
                        secure=came_over_tls(request), max_age=max_age)


def csrf_matches(expected: str, presented: object) -> bool:
    if not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


async def load_session(request: web.Request) -> ConsoleSession | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 100:
        return None
    record = await find_session(request.app[POOL], hash_session_id(session_id))
    if record is None:
        return None
    if record.config_hash is not None:
        current = request.app[API_AUTH].configured_fingerprint()
        if current is None or not hmac.compare_digest(current, record.config_hash):
            return None
    return ConsoleSession(
        principal=Principal(name=record.principal, role=Role(record.role),
                            tenant=record.tenant),
        csrf=record.csrf,
    )


# What every console answer's policy says besides its scripts and styles: nothing may
# frame the console, post its forms elsewhere or move its base.
_POLICY_TAIL = "object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
# An answer that is no page (a redirect, an asset's refusal) loads nothing.
NO_PAGE_POLICY = f"default-src 'none'; {_POLICY_TAIL}"


def page_policy(nonce: str) -> str:
    """A page's policy: only the scripts and the stylesheet its own tags name (by
    ``nonce``), never any other URL of the origin ('self' took in /hooks/..., whose
    answers a run writes: a script or a style any markup let into a page could load)."""
    return (f"default-src 'self'; img-src 'self' data:; script-src 'nonce-{nonce}';"
            f" style-src 'nonce-{nonce}'; {_POLICY_TAIL}")


def security_headers(response: web.StreamResponse) -> None:
    # A page has set its own policy (console.pages.render); nothing may read the console
    # cross-site.
    response.headers.setdefault("Content-Security-Policy", NO_PAGE_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")


def _refusal(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


# What a browser's Sec-Fetch-Site says of a form posted from the console's own pages (or
# typed in: "none"). A same-site page on another port or a sibling subdomain can plant
# the login form's double-submit cookie, so its posts are refused.
_OWN_SITE = frozenset({"same-origin", "none"})


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(scheme: str, netloc: str) -> str | None:
    """``scheme://host:port`` with the default port written out and the host in lower
    case (``https://Ops.example`` and ``https://ops.example:443`` are one origin); None for
    what is no http(s) origin."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def cross_site_post(headers: Mapping[str, str], own: Collection[str]) -> str | None:
    """Why a POST comes from another origin than the console's (``own``: the origins it
    is served at, as :func:`origin_of` writes them), or None. Browsers say it in
    Sec-Fetch-Site (to https and localhost); otherwise Origin names scheme, host and port.
    A client that sends neither is no browser, and no browser's cookies are at stake."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site.lower() in _OWN_SITE else f"a form posted from another site ({site})"
    origin = headers.get("Origin")
    if origin is None:
        return None
    parts = urlsplit(origin) if origin != "null" else None
    seen = origin_of(parts.scheme, parts.netloc) if parts is not None else None
    if seen is not None and seen in own:
        return None
    return f"a form posted from another origin ({origin[:100]})"


def own_origins(request: web.Request) -> set[str]:
    """The origins the console is served at: as the browser reached this daemon (its
    scheme behind a trusted TLS proxy), and ``[http] public_url``'s."""
    found = {origin_of("https" if came_over_tls(request) else "http", request.host)}
    public_url = request.app[SETTINGS].current.http.public_url
    if public_url:
        public = urlsplit(public_url)
        found.add(origin_of(public.scheme, public.netloc))
    return {origin for origin in found if origin is not None}


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, CSRF and the viewer role for everything under ``/ui/``; every answer,
    refusals and raised ones too, carries the console's security headers."""
    if not in_console(request.path) or request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    try:
        response = await _console(request, handler)
    except web.HTTPException as exc:
        security_headers(exc)
        raise
    security_headers(response)
    return response


async def _console(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST":
        foreign = cross_site_post(request.headers, own_origins(request))
        if foreign is not None:
            request.app[CROSS_SITE_LOG].log((), logging.INFO, "console: cross-site POST refused",
                                            {"path": request.path,
                                             "remote": login_address(request)})
            return close_unread(request, _refusal(403, f"{foreign} is refused; use the"
                                                       " console's own pages"))
    if request.method == "POST" and request.body_exists:
        # Refused before anything is read (the login form is open to anyone); browsers
        # send a form's length. Any other would be read up to [http] max_body_bytes.
        length = request.content_length
        if length is None:
            return close_unread(request, _refusal(411, "a console form needs a"
                                                       " Content-Length"))
        if length > MAX_FORM_BYTES:
            return close_unread(request, _refusal(
                413, f"the form is {length} bytes; a console form may send at most"
                     f" {MAX_FORM_BYTES // 1024} KiB"))
        if content_encoding(request.headers) is not None:
            # Browsers never encode a form they post; the bytes are read as sent.
            return close_unread(request, _refusal(
                415, "a console form is sent without a Content-Encoding"))
    try:
        session = await load_session(request)
    except Exception as exc:
        if is_unavailable(exc):
            return _refusal(503, "the database cannot be reached right now; retry later")
        raise
    if session is not None:
        request[SESSION] = session
    if session is None and request.path == f"{PREFIX}/logout":
        # Logging out of a session that has ended is done already: the logout drops the
        # dead cookie and leads to the login page (not "the form was not carried out").
        return await handler(request)
    if request.path not in PUBLIC_PATHS:
        if session is None:
            if request.method in ("GET", "HEAD"):
                # Every '&', '=' and '?' of the page's own query is escaped, so all of it
                # travels inside next= (login_page checks where it points).
                target = quote(request.path_qs, safe="/")
                raise web.HTTPSeeOther(f"{PREFIX}/login?next={target}")
            # The error pages' middleware answers it with the login form, which leads back
            # to the page the form was on (console.error_pages).
            return _refusal(401, SESSION_ENDED)
        if request.method == "POST":
            form = await request.post()
            if not csrf_matches(session.csrf, form.get("csrf")):
                request.app[CSRF_LOG].log(
                    (), logging.INFO, "console: POST without a valid CSRF token refused",
                    {"path": request.path, "remote": login_address(request)})
                return _refusal(403, "the form's CSRF token is missing or wrong;"
                                     " reload the page and try again")
            if not session.can_act and request.path != f"{PREFIX}/logout":
                return _refusal(403, f"token {session.principal.name!r} has the viewer role:"
                                     " it may look but not act")
            unusable = _unstorable_field(form.items())
            if unusable is not None:
                # A note or reason PostgreSQL cannot store failed the action's write: a 500.
                return _refusal(400, unusable)
        asked = request.query.get("tenant") or None
        tenant, refusal = addressed_tenant(session.principal, asked)
        if refusal is not None:
            # As the admin API answers: a scoped session finds nothing in another tenant
            # (404, never a 403 that would confirm it is there); a bad name is a 400.
            return _refusal(400 if session.principal.tenant is None else 404, refusal)
        request[TENANT] = tenant
        for name, value in request.match_info.items():
            if unstorable(value) is not None:
                # Such a name names nothing (the admin API's answer and words); it never
                # reaches the database, which refused it with a 500.
                return _refusal(404, f"no {_PATH_OBJECTS.get(name, name)} {value[:100]!r}")
        unusable = _unstorable_field(request.query.items())
        if unusable is not None:
            return _refusal(400, unusable)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException:
        raise
    except TriggerdError as exc:
        response = _refusal(status_of(exc), exc.message)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        response = _refusal(503, "the database cannot be reached right now; retry later")
    # The server's own time for the page (bench/console.py reads it).
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return response


# What a path parameter of the console's routes names, in the admin API's words.
_PATH_OBJECTS = {"key": "workflow", "id": "object"}


def _unstorable_field(items: Iterable[tuple[str, object]]) -> str | None:
    """Why a query parameter or form field cannot be used (a NUL, a lone surrogate), in
    the admin API's words, or None."""
    for name, value in items:
        reason = unstorable(value) if isinstance(value, str) else None
        if reason is not None:
            return f"{name}: {reason}"
    return None


def status_of(exc: TriggerdError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 400
