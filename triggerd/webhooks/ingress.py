"""The webhook HTTP surface: ``/hooks/{path}`` and ``/hooks/_executions/{id}``.

Checks run in this order, each answering as soon as it fails, so that the cheap ones
protect the expensive ones and nothing is read or parsed for a request refused anyway:

route (404) -> ``allow_from`` (403) -> method (405) -> queue time of pipelined requests
(429) -> rate limit (429) -> backpressure (429) -> Content-Length (413) -> content type
(415) -> body, read incrementally (413) -> authentication on the raw bytes (401) -> body
parsing (400) -> ``parameter_schema`` (422) -> dedupe key -> the group commit (503 when
the database is unreachable) -> ``202``/``200`` (or, in ``sync`` mode, the run's answer).

A ``202`` is sent only after the execution and its ``webhook_requests`` row are committed.

This module is the component and its handlers; the pieces they use live beside it:
:mod:`.answers` (responses), :mod:`.cleaning` (what is stored), :mod:`.validation`
(``parameter_schema``), :mod:`.sync_wait`, :mod:`.loops`
(polling), :mod:`.status_page` (``_executions``) and :mod:`.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import hdrs, web, web_protocol
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from triggerd.appkeys import READINESS_CHECKS
from triggerd.component import BaseComponent
from triggerd.config import Settings, TenantSettings
from triggerd.errors import DatabaseUnavailable
from triggerd.ids import time_ordered_id
from triggerd.loglimit import ThrottledLog
from triggerd.model import DEFAULT_TENANT, JSON, ResponseMode, SecretRef
from triggerd.notifications.channels import FINISHED, TRIGGERS
from triggerd.notifications.hub import NotificationHub, Subscription
from triggerd.secrets import SecretPolicies, resolve_secret
from triggerd.serving.forward import client_address
from triggerd.serving.queued import connection_closed, pipeline_position
from triggerd.store.keyed import KeyedResult, store_keyed_request
from triggerd.store.webhooks import (
    InboxItem,
    InboxResult,
    InboxWriter,
    RunsHere,
    StoreInDoubt,
    count_new_executions,
)
from triggerd.tasks import cancel_and_wait
from triggerd.webhooks.allowlist import client_ip, parse_networks, within
from triggerd.webhooks.answers import (
    RETRY_BACKPRESSURE,
    RETRY_DATABASE,
    accepted,
    close_unread,
    debounced,
    error_response,
    filtered_answer,
    public_reason,
    retry_after,
    run_response,
    too_large,
    too_large_message,
    undecodable_message,
    unsupported_encoding,
    unsupported_transfer_coding,
)
from triggerd.webhooks.auth import HEADER_SCHEMES, AuthFailure, check_rotating, header_count
from triggerd.webhooks.body import BodyError, content_type_problem, parse_input
from triggerd.webhooks.cleaning import clean_text, query_dict, stored_headers
from triggerd.webhooks.decoding import (
    TooLarge,
    UndecodableBody,
    content_encoding,
    read_body,
    wire_limit,
)
from triggerd.webhooks.evaluation import Derived, RunInput, derive
from triggerd.webhooks.group_commit import DEFAULT_MAX_BATCH, GroupCommit, TriggerGone
from triggerd.webhooks.loops import pending_loop, reload_loop
from triggerd.webhooks.methods import HEAD, allow_header, allows
from triggerd.webhooks.ratelimit import RateLimiter, default_burst
from triggerd.webhooks.routes import Routes, WebhookRoute
from triggerd.webhooks.shedding import QueueShedder
from triggerd.webhooks.stats import WebhookStats
from triggerd.webhooks.status_page import reserved_path
from triggerd.webhooks.sync_wait import FinishWaiter
from triggerd.webhooks.validation import shorten, validation_errors

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]

# Refused requests (400, 401, 413, 415, 422) are logged as ``webhook_rejected`` with their
# precise reason, at most this many at once per (trigger, reason) and then this many per
# second; a ``log_suppressed`` line counts the rest. Anyone can send them.
REJECTION_BURST = 10
REJECTION_RATE = 1.0
# An accepted request of a trigger with a list of secrets is logged as
# ``webhook_secret_used`` (which secret matched), at most this often per (trigger, secret):
# enough to see the old secret still in use, or no longer; the metric counts every one.
SECRET_USED_BURST = 1
SECRET_USED_RATE = 1 / 60
FORBIDDEN_MESSAGE = "requests from this address are not accepted here"


def utc_now() -> datetime:
    return datetime.now(UTC)


# A body that has not fully arrived this long after its headers is refused (408): a sender
# trickling bytes (or stopping half-way) would otherwise hold its connection and handler
# for ever. Generous: a 10 MB body at 1 Mbit/s takes 80 s.
BODY_TIMEOUT = 120.0
# A connection whose queued requests would wait longer than this is refused (429) until it
# has caught up (triggerd.webhooks.shedding): the bound of the sustained benchmark's "flat".
QUEUE_WAIT_BOUND = 1.0
# What a request's ``Expect: 100-continue`` answer already checked (see ``expect``).
_ADMITTED = web.RequestKey("webhook_admitted", bool)
_AUTHENTICATED = web.RequestKey("webhook_authenticated", bool)


# Bodies longer than this are parsed, and what is derived from them (filter, keys,
# correlation) computed, in a thread (see _for_body); below it a thread costs more than
# the work.
PARSE_ON_LOOP_BYTES = 128 * 1024
LARGE_PARSES_AT_ONCE = 2

_T = TypeVar("_T")


def _parse_and_check(content_type: str | None, body: bytes, route: WebhookRoute
                     ) -> tuple[RunInput, list[dict[str, str]]] | BodyError:
    """The body parsed into the run input (the trigger's static input merged under it) and
    the input's ``parameter_schema`` errors, or the body's refusal. One function, so that
    a large body's parse and check run in a thread together: the schema's check of a
    10 MB input held the loop as its parse did."""
    try:
        parsed, json_text = parse_input(content_type, body, mode=route.config.body)
    except BodyError as exc:
        return exc
    # Nothing below changes either dict, so without static input no copy is needed.
    data: dict[str, JSON] = {**route.static_input, **parsed} if route.static_input else parsed
    return RunInput(parsed=parsed, json_text=json_text, data=data), validation_errors(route, data)


# --- the component ----------------------------------------------------------------------------


class WebhookIngress(BaseComponent):
    """The webhook component: route table, group commit, listeners and the handlers."""

    name = "webhooks"

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        settings: Settings,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        reload_interval: float = 5.0,
        pending_interval: float = 1.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        writers: int = 1,
        hub: NotificationHub | None = None,
        runs_here: RunsHere | None = None,
        queue_wait_bound: float = QUEUE_WAIT_BOUND,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        # The process's notifications hub; without one (used alone) the ingress runs its own.
        self._own_hub = hub is None
        self._hub = hub if hub is not None else NotificationHub(dsn=dsn)
        self._subscription: Subscription | None = None
        self._settings = settings
        self._policies = SecretPolicies(settings, os.environ)
        self._clock = clock
        self._monotonic = monotonic
        self._reload_interval = reload_interval
        self._pending_interval = pending_interval
        self.routes = Routes(
            pool, default_max_body_bytes=settings.http.max_body_bytes, resolve=self._secret
        )
        self.group_commit = GroupCommit(
            lambda: InboxWriter(pool, runs_here), max_batch=max_batch, writers=writers
        )
        self.waiter = FinishWaiter(pool)
        self.limiter = RateLimiter()
        self.shedder = QueueShedder(bound=queue_wait_bound)
        self.stats = WebhookStats(group_commit=self.group_commit.stats)
        self.rejection_log = ThrottledLog(
            logger,
            "webhook_rejected",
            key_fields=("trigger", "reason"),
            rate=REJECTION_RATE,
            burst=REJECTION_BURST,
            monotonic=monotonic,
        )
        # Large bodies parsed (or evaluated) at once, in threads: more would only hold more
        # of them in memory and take the default executor's threads from other work.
        self._large_parses = asyncio.Semaphore(LARGE_PARSES_AT_ONCE)
        self.secret_log = ThrottledLog(
            logger,
            "webhook_secret_used",
            key_fields=("trigger", "secret"),
            rate=SECRET_USED_RATE,
            burst=SECRET_USED_BURST,
            monotonic=monotonic,
        )
        self._trusted = parse_networks(settings.http.trusted_proxies)
        self._new_count = 0  # NEW executions at the last count
        self._created_since_count = 0  # executions this process created since then
        # The same per tenant (tenants with runs waiting, or created since).
        self._tenant_new: dict[str, int] = {}
        self._tenant_created: dict[str, int] = {}
        self._reload_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # -- lifecycle --

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        # Before the first load: a change after it is then heard, or reconciled after a gap.
        self._subscription = await self._hub.subscribe(
            self.name,
            {TRIGGERS: lambda _payload: self._reload_wanted.set(), FINISHED: self.waiter.notify},
            on_gap=self._reload_wanted.set,
        )
        if self._own_hub:
            await self._hub.start()
        try:
            await self.routes.reload()
        except DatabaseUnavailable as exc:
            # Not fatal: the reload loop retries and the hub's on_gap reconciles on connect.
            logger.warning(str(exc), extra={"event": "webhook_routes_unavailable"})
        with contextlib.suppress(DatabaseUnavailable):
            await self.refresh_pending()
        self.group_commit.start()
        self.waiter.start()
        self._tasks = [
            asyncio.create_task(
                reload_loop(
                    self.routes,
                    self.limiter,
                    reload_wanted=self._reload_wanted,
                    interval=self._reload_interval,
                    monotonic=self._monotonic,
                ),
                name="webhooks-reload",
            ),
            asyncio.create_task(
                pending_loop(self._every_second, interval=self._pending_interval),
                name="webhooks-pending",
            ),
        ]

    async def stop(self) -> None:
        """Stop background work and write every request already accepted into the group
        commit before returning; requests arriving from now on are answered 503."""
        self._running = False
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._subscription is not None:
            self._hub.unsubscribe(self._subscription)
            self._subscription = None
        if self._own_hub:
            await self._hub.stop()
        await self.group_commit.stop()
        await self.waiter.stop()

    def _secret(self, name: str, ref: SecretRef, tenant: str) -> str:
        # [daemon] secret_roots and [tenants.NAME] secrets as of now: a reload's apply to
        # the next route build.
        return resolve_secret(name, ref, roots=self._settings.daemon.secret_roots,
                              policy=self._policies.of(tenant))

    @property
    def settings(self) -> Settings:
        """The configuration in force (the last SIGHUP's)."""
        return self._settings

    def apply_settings(self, settings: Settings) -> None:
        """SIGHUP with a new configuration: ``[http] max_pending`` applies to the next
        request, ``max_body_bytes`` to the routes of the reload that follows."""
        self._settings = settings
        self._policies = SecretPolicies(settings, os.environ)
        self._trusted = parse_networks(settings.http.trusted_proxies)
        self.routes.set_default_max_body_bytes(settings.http.max_body_bytes)

    async def reload(self) -> None:
        """Rebuild the route table from the database now (SIGHUP, tests, the admin API)."""
        await self.routes.reload()

    async def _every_second(self) -> int:
        self.shedder.forget(connection_closed)
        return await self.refresh_pending()

    async def refresh_pending(self) -> int:
        """Count ``NEW`` executions now (backpressure); normally done every second."""
        by_tenant = await count_new_executions(self._pool)
        count = sum(by_tenant.values())
        self._new_count = count
        self._created_since_count = 0
        self._tenant_new = by_tenant
        self._tenant_created = {}
        self.stats.pending_new = count
        return count

    async def readiness(self) -> str | None:
        if not self.routes.loaded:
            return "webhook routes not loaded yet"
        return None

    @property
    def trigger_count(self) -> int:
        """Webhook triggers being served (for the daemon's status line)."""
        return len(self.routes.table.routes)

    # -- handlers --

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse a body that is too large before the sender
        transmits it (curl and many clients ask first for large bodies)."""
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11:
            return None
        if expect.lower() != "100-continue":
            return error_response(417, "expectation_failed", f"unknown Expect: {expect}")
        route = self.routes.table.get(request.match_info.get("path", ""),
                                      request.match_info.get("tenant", DEFAULT_TENANT))
        if route is not None:
            # In the handler's order (address, method, queue time, rate, backpressure; size; then
            # credentials): a refused address learns nothing about a token, and a flood
            # of bad tokens spends the rate. Each check is made once per request: the
            # handler skips what passed here.
            started = self._monotonic()
            refused = self._admit(request, route, started)
            if refused is not None:
                self.stats.record(route.full_name, refused.status,
                                  self._monotonic() - started)
                return close_unread(request, refused)
            request[_ADMITTED] = True
            length = request.content_length
            refused = None
            if length is not None and length > wire_limit(request.headers,
                                                          route.max_body_bytes):
                refused = self._too_large(request, route, on_the_wire=content_encoding(
                    request.headers) is not None)
            elif route.config.auth.scheme in HEADER_SCHEMES:
                # Credentials in the headers only: a sender without them is refused before
                # it uploads its body (it was told "100 Continue" first).
                refused = self._authenticate(request, route, b"", self._clock())
                if refused is not None:
                    refused = close_unread(request, refused)  # the body is not wanted
                else:
                    request[_AUTHENTICATED] = True
            if refused is not None:
                # Counted as the handler counts its answers (it never runs for these).
                self.stats.record(route.full_name, refused.status,
                                  self._monotonic() - started)
                return refused
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = self._monotonic()
        path: str = request.match_info["path"]
        tenant = request.match_info.get("tenant", DEFAULT_TENANT)
        if path.startswith("_") and "tenant" not in request.match_info:
            reserved = await reserved_path(
                request, path, pool=self._pool, routes=self.routes.table
            )
            self.stats.record("-", reserved.status, self._monotonic() - started)
            return reserved
        route = self.routes.table.get(path, tenant)
        response: web.StreamResponse
        if route is None and not self.routes.loaded:
            # The table was never read (the database was down at start): an honest 503,
            # not a 404 the sender would take as final.
            response = error_response(
                503,
                "unavailable",
                "webhooks are not loaded yet; retry later",
                headers=retry_after(RETRY_DATABASE),
            )
            self.stats.record("-", 503, self._monotonic() - started)
            return response
        if route is None:
            response = error_response(404, "not_found",
                                      f"no webhook at {clean_text(request.path)[:300]}")
            self.stats.record("-", 404, self._monotonic() - started)
            return response
        try:
            response = await self._handle(request, route, started)
        except DatabaseUnavailable as exc:
            gone = isinstance(exc, TriggerGone)
            if not gone:
                self.stats.database_unavailable += 1
            stored = ("the request may or may not have been stored"
                      if isinstance(exc, StoreInDoubt) else "the request was not stored")
            response = error_response(
                503,
                "trigger_changed" if gone else "database_unavailable",
                f"{stored}: {public_reason(exc)}; retry later",
                headers=retry_after(RETRY_DATABASE),
            )
        except Exception:
            logger.exception(
                "webhook request failed",
                extra={"event": "webhook_internal_error", "trigger": route.full_name},
            )
            response = error_response(
                500, "internal_error", "the request was not stored: internal error"
            )
        self.stats.record(route.full_name, response.status, self._monotonic() - started)
        return response

    async def _handle(
        self, request: web.Request, route: WebhookRoute, started: float
    ) -> web.StreamResponse:
        if not request.get(_ADMITTED):
            refused = self._admit(request, route, started)
            if refused is not None:
                return refused
        if request.method == HEAD:
            return self._head(request, route, spent=not request.get(_ADMITTED))
        body = await self._read_body(request, route)
        if isinstance(body, web.Response):
            return body
        now = self._clock()
        if not request.get(_AUTHENTICATED):
            refused = self._authenticate(request, route, body, now)
            if refused is not None:
                return refused
        dedupe = route.dedupe
        if (dedupe is not None and dedupe.header
                and header_count(request.headers, dedupe.header) > 1):
            # Two delivery ids: which one dedupes would depend on the proxy in front (the
            # first was taken), and a redelivery could carry them in another order.
            message = (f"the delivery id header {dedupe.header} appears more than once;"
                       " send it once")
            return self._refused(request, route,
                                 error_response(400, "invalid_header", message),
                                 "repeated_header", header=dedupe.header)
        # A large body's parse and nesting check held the loop for seconds (10 MB of small
        # lists: 2.5 s), and every other request and probe waited.
        parsed = await self._for_body(body, functools.partial(
            _parse_and_check, request.headers.get("Content-Type"), body, route))
        run_input = self._parse(request, route, parsed)
        if isinstance(run_input, web.Response):
            return run_input
        headers = stored_headers(request.headers, route.stripped_headers)
        query = query_dict(request.query)
        derived = await self._for_body(body, functools.partial(
            derive, route, run_input, body=body, request_headers=request.headers,
            headers=headers, query=query))
        config = route.config
        if not derived.matched:
            result = await self._store_filtered(
                request, route, body, now, headers, query, derived
            )
            if result.created:
                return filtered_answer()
        elif derived.key_problem is not None:
            return self._refused(
                request, route, error_response(422, "key_invalid", derived.key_problem),
                "key_invalid", detail=derived.key_problem,
            )
        elif config.debounce is not None or config.concurrency is not None:
            keyed = await self._store_keyed(request, route, body, now, headers, query, derived)
            if keyed.debounced:
                return debounced(keyed.result.execution_id)
            result = keyed.result
        else:
            result = await self._store(request, route, body, now, headers, query, derived)
        if not result.execution_id:
            # A redelivery of a filtered request: a duplicate, and there is no run to name.
            return filtered_answer(duplicate=True)
        if route.config.response == ResponseMode.SYNC:
            waiting = self._monotonic()
            try:
                return await self._sync_answer(route, result)
            finally:
                self.excuse(request, self._monotonic() - waiting)
        return accepted(result.execution_id, created=result.created)

    def _head(self, request: web.Request, route: WebhookRoute, *, spent: bool) -> web.Response:
        """``HEAD`` where GET is allowed (admitted already): what the GET would be told
        before anything is stored, i.e. 401 for wrong credentials (checked over the empty
        body a GET sends), else 200; no body is read, nothing is stored or started.

        A HEAD whose credentials were verified gives back the rate tokens it took
        (``spent``: here; one admitted by ``Expect: 100-continue`` keeps them, erring on the
        safe side): a monitor probing with HEAD got real deliveries refused. One that does
        not verify keeps them spent, so guessing credentials with HEAD is throttled like any
        other request; so does one on a trigger without auth (``none``: no credentials were
        checked, and a free HEAD would make a flood of them unlimited)."""
        if not request.get(_AUTHENTICATED):
            refused = self._authenticate(request, route, b"", self._clock())
            if refused is not None:
                return refused
        if spent and route.config.auth.scheme != "none":
            if route.rate is not None:
                self.limiter.refund(route.trigger_id)
            if self._settings.tenants and self._settings.tenant(route.tenant).webhook_rate > 0:
                self.limiter.refund(f"tenant:{route.tenant}")
        return web.Response(status=200)

    def _admit(
        self, request: web.Request, route: WebhookRoute, started: float
    ) -> web.Response | None:
        """The client's address (403), method (405), the trigger's rate (429),
        backpressure (429): ``None`` if none refuses."""
        config = route.config
        if route.allow_from:
            refused = self._check_address(request, route)
            if refused is not None:
                return refused
        method = request.method
        if not allows(config.methods, method):
            allowed = allow_header(config.methods)
            return error_response(
                405,
                "method_not_allowed",
                f"{method} is not allowed here (allowed: {allowed})",
                headers={"Allow": allowed},
            )
        # Before the rate limits: a refused request spends no token of its trigger's.
        refused = self.shed(request, started)
        if refused is not None:
            return refused
        if route.rate is not None:
            wait = self.limiter.check(route.trigger_id, route.rate, route.burst, started)
            if wait > 0:
                self.stats.rate_limited += 1
                return error_response(
                    429,
                    "rate_limited",
                    f"this webhook accepts {route.rate:g} requests per second; retry later",
                    headers=retry_after(wait),
                )
        if self._settings.tenants:
            refused = self._admit_tenant(route, self._settings.tenant(route.tenant), started)
            if refused is not None:
                return refused
        pending = self._new_count + self._created_since_count
        if pending > self._settings.http.max_pending:
            return self._overloaded(f"{pending} executions are waiting to run; retry later")
        return None

    def shed(self, request: web.BaseRequest, started: float | None = None
             ) -> web.Response | None:
        """``429`` for a pipelined request that waited too long on its connection
        (:mod:`triggerd.webhooks.shedding`), counted; ``None`` to go on. Asked once per
        request: a request admitted by the ``Expect`` handler is not asked again."""
        if request.get(_ADMITTED):
            return None
        at = pipeline_position(request)
        if not self.shedder.refuse(
                request.protocol, at.number, at.behind,
                self._monotonic() if started is None else started,
                reading_paused=at.reading_paused):
            return None
        return self._overloaded("requests wait too long on this connection (this server is"
                                " behind); retry later")

    def excuse(self, request: web.BaseRequest, seconds: float) -> None:
        """The requests pipelined behind ``request`` waited ``seconds`` for an answer it
        asked for (a sync run's): not the server's queue."""
        self.shedder.excuse(request.protocol, seconds)

    def _overloaded(self, message: str) -> web.Response:
        self.stats.backpressure_rejections += 1
        if self.stats.sink is not None:
            self.stats.sink.backpressure()
        return error_response(429, "overloaded", message,
                              headers=retry_after(RETRY_BACKPRESSURE))

    def _admit_tenant(
        self, route: WebhookRoute, limits: TenantSettings, started: float
    ) -> web.Response | None:
        """The tenant's own webhook rate and backlog (``[tenants.NAME]``): one tenant's
        flood is refused without touching the others'."""
        if limits.webhook_rate > 0:
            burst = limits.webhook_burst or default_burst(limits.webhook_rate)
            wait = self.limiter.check(f"tenant:{route.tenant}", limits.webhook_rate, burst,
                                      started)
            if wait > 0:
                self.stats.rate_limited += 1
                return error_response(
                    429, "rate_limited",
                    f"tenant {route.tenant} accepts {limits.webhook_rate:g} webhook requests"
                    " per second; retry later",
                    headers=retry_after(wait),
                )
        if limits.max_pending > 0:
            pending = (self._tenant_new.get(route.tenant, 0)
                       + self._tenant_created.get(route.tenant, 0))
            if pending > limits.max_pending:
                return self._overloaded(f"{pending} executions of tenant {route.tenant} are"
                                        " waiting to run; retry later")
        return None

    def _check_address(self, request: web.Request, route: WebhookRoute) -> web.Response | None:
        """403 unless the client is in the trigger's ``allow_from``."""
        # Without trusted proxies the header never counts: not even read.
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, ()) if self._trusted else ()
        client = client_ip(client_address(request), forwarded, self._trusted)
        if client is not None and within(client, route.allow_from):
            return None
        return self._refused(
            request, route, error_response(403, "forbidden", FORBIDDEN_MESSAGE),
            "address_not_allowed", client=None if client is None else str(client),
        )

    async def _read_body(self, request: web.Request, route: WebhookRoute) -> bytes | web.Response:
        """The body, or the refusal: too large (413), a content type refused before or
        missing after reading (415), a body cut short (400)."""
        config = route.config
        limit = route.max_body_bytes
        length = request.content_length
        # The limit counts decoded bytes: an encoded body may be a little longer on the wire.
        if length is not None and length > wire_limit(request.headers, limit):
            return self._too_large(
                request, route, on_the_wire=content_encoding(request.headers) is not None)
        content_type = request.headers.get("Content-Type")
        if length != 0:
            refused = unsupported_transfer_coding(request) or unsupported_encoding(request)
            if refused is not None:
                return self._refused(request, route, close_unread(request, refused),
                                     "unsupported_encoding")
            problem = content_type_problem(content_type, config.body)
            if problem is not None:
                return self._refused(
                    request, route,
                    error_response(problem.status, problem.code, problem.message),
                    problem.code, detail=problem.message,
                )
        try:
            if request.content.is_eof():  # the usual case: it came with the headers
                body = await read_body(request, limit)
            else:
                async with asyncio.timeout(BODY_TIMEOUT):
                    body = await read_body(request, limit)
        except TimeoutError:
            message = f"the body did not arrive within {BODY_TIMEOUT:g} s"
            response = close_unread(request, error_response(408, "request_timeout", message))
            return self._refused(request, route, response, "body_timeout", detail=message)
        except (HttpProcessingError, ConnectionError):
            message = "the body was not received completely"
            response = close_unread(request, error_response(400, "invalid_body", message))
            return self._refused(request, route, response, "body_incomplete", detail=message)
        except (web_protocol.RequestPayloadError, UndecodableBody) as exc:
            message = undecodable_message(request)
            response = close_unread(request, error_response(400, "invalid_body", message))
            return self._refused(request, route, response, "body_undecodable",
                                 detail=f"{message}: {exc}"[:300])
        if isinstance(body, TooLarge):
            return self._too_large(request, route, on_the_wire=body.on_the_wire)
        if body and config.body != "raw" and not (content_type or "").strip():
            message = (
                "the request has a body but no Content-Type (send application/json,"
                " application/x-www-form-urlencoded or text/*)"
            )
            return self._refused(
                request, route, error_response(415, BodyError.UNSUPPORTED, message),
                "missing_content_type", detail=message,
            )
        return body

    def _authenticate(
        self, request: web.Request, route: WebhookRoute, body: bytes, now: datetime
    ) -> web.Response | None:
        """``None`` when the request is authentic; else 401 (or 503 while the trigger's
        secret cannot be resolved)."""
        if route.rotation:
            refusal, index = check_rotating(route.rotation, request.headers, body, now)
            if refusal is None:
                self._secret_used(request, route, route.rotation_positions[index])
                return None
            if route.secret_problem is not None:
                # Perhaps signed with the listed secret that is missing: retryable, as
                # when none resolves (the operator is told at reload).
                return _unverifiable()
        elif route.secret_problem is not None:
            # Retryable: the operator is told (logged at reload), the sender retries.
            return _unverifiable()
        else:
            refusal = route.check_auth(request.headers, body, now)
            if refusal is None:
                return None
        # Never tell the sender which part failed (the operator's log does), except for a
        # repeated header or an incomplete set of headers (the standard scheme's): a sender
        # can only fix those if told, and they reveal no secret.
        # A 401 names the scheme to use where HTTP has one (RFC 9110 15.5.2): Basic, or
        # Bearer for a token in the Authorization header.
        auth = route.config.auth
        challenge = (
            {"WWW-Authenticate": 'Basic realm="triggerd"'} if auth.scheme == "basic"
            else {"WWW-Authenticate": 'Bearer realm="triggerd"'}
            if auth.scheme == "token" and (auth.header or "Authorization").lower()
            == "authorization" and (auth.prefix is None or auth.prefix.strip() == "Bearer")
            else None
        )
        message = (
            f"authentication failed: header {refusal.header} appears more than once"
            if refusal.reason is AuthFailure.REPEATED_HEADER
            else f"authentication failed: {refusal.told}" if refusal.told is not None
            else "authentication failed"
        )
        return self._refused(
            request, route, error_response(401, "unauthorized", message, headers=challenge),
            refusal.reason.value, header=refusal.header,
        )

    def _secret_used(self, request: web.Request, route: WebhookRoute, index: int) -> None:
        """Which listed secret verified a request: counted, and logged (throttled), by its
        index in the list, never its value."""
        self.stats.secret_used(route.full_name, index)
        label = str(index)
        if self.secret_log.admit((route.full_name, label), logging.INFO):
            logger.info(
                "webhook request verified with secret %s",
                label,
                extra={
                    "event": "webhook_secret_used",
                    "trigger": route.full_name,
                    "secret": label,
                    "remote": client_address(request),
                },
            )

    def _parse(
        self, request: web.Request, route: WebhookRoute,
        checked: tuple[RunInput, list[dict[str, str]]] | BodyError,
    ) -> RunInput | web.Response:
        """The run input, or the refusal: a body that does not parse (400, 415) or an input
        that does not match the ``parameter_schema`` (422). ``checked``: the body's parse
        and check (:func:`_parse_and_check`), or its refusal."""
        if isinstance(checked, BodyError):
            return self._refused(request, route,
                                 error_response(checked.status, checked.code, checked.message),
                                 checked.code, detail=checked.message)
        run_input, errors = checked
        if errors:
            count = len(errors)
            message = (
                f"the input does not match the workflow's parameter_schema"
                f" ({count} problem{'s' if count != 1 else ''})"
            )
            return self._refused(
                request, route, error_response(422, "input_invalid", message, errors=errors),
                "input_invalid", detail=message, problems=count,
            )
        return run_input

    async def _for_body(self, body: bytes, work: Callable[[], _T]) -> _T:
        """``work`` (a request's parse, or what is derived from its input) on the loop for
        a small body, where it costs less than a thread; for a large one in a thread (two
        at once): a 10 MB body's parse, or a filter or key that re-encodes or sorts its
        input, held the loop for seconds (every other request, timer and the executor with
        it), and in a thread the loop gets the interpreter back at every switch interval."""
        if len(body) <= PARSE_ON_LOOP_BYTES:
            return work()
        async with self._large_parses:
            return await asyncio.to_thread(work)

    async def _store(
        self,
        request: web.Request,
        route: WebhookRoute,
        body: bytes,
        now: datetime,
        stored: dict[str, JSON],
        query: dict[str, JSON],
        derived: Derived,
    ) -> InboxResult:
        """The execution and its inbox row, through the group commit (or the first
        delivery's, for a duplicate)."""
        dedupe = route.dedupe
        key = derived.dedupe_key
        result = await self.group_commit.submit(
            InboxItem(
                id=time_ordered_id(),
                workflow_id=route.workflow_id,
                version_id=route.version_id,
                trigger_id=route.trigger_id,
                trigger_name=route.trigger_name,
                dedupe_key=key,
                dedupe_ttl=dedupe.ttl if dedupe is not None and key else None,
                input_json=derived.input_json,
                method=request.method,
                path=clean_text(request.path),
                query=query,
                headers=stored,
                body=body,
                remote_addr=client_address(request),
                received_at=now,
                correlation=derived.correlation,
                filtering=route.config.filter is not None,
            )
        )
        if result.created and not result.here:  # a run taken up here is not waiting
            self._count_created(route)
        return result

    def _count_created(self, route: WebhookRoute) -> None:
        """A run this process created: pending until the next recount (backpressure)."""
        self._created_since_count += 1
        if self._settings.tenants:
            self._tenant_created[route.tenant] = self._tenant_created.get(route.tenant, 0) + 1

    async def _store_filtered(
        self,
        request: web.Request,
        route: WebhookRoute,
        body: bytes,
        now: datetime,
        stored: dict[str, JSON],
        query: dict[str, JSON],
        derived: Derived,
    ) -> InboxResult:
        """A request the filter did not match: its inbox row only (no run), through the
        same group commit as accepted ones. The row keeps the delivery id: a redelivery is
        a duplicate of it (or of the run an earlier delivery of that id started)."""
        dedupe = route.dedupe
        key = derived.dedupe_key
        problem = derived.problem
        result = await self.group_commit.submit(
            InboxItem(
                id=time_ordered_id(),
                workflow_id=route.workflow_id,
                version_id=route.version_id,
                trigger_id=route.trigger_id,
                trigger_name=route.trigger_name,
                dedupe_key=key,
                dedupe_ttl=dedupe.ttl if dedupe is not None and key else None,
                input_json="{}",
                method=request.method,
                path=clean_text(request.path),
                query=query,
                headers=stored,
                body=body,
                remote_addr=client_address(request),
                received_at=now,
                outcome="filtered",
                detail=problem,
            )
        )
        if not result.created:
            return result  # a duplicate: nothing stored, counted on its first delivery
        self.stats.filtered_request(route.full_name)
        if problem is not None and self.rejection_log.admit(
            (route.full_name, "filter_failed"), logging.WARNING
        ):
            # Throttled like rejections: anyone can send payloads that make a filter raise.
            logger.warning(
                "webhook filter failed; the request was stored as filtered",
                extra={"event": "webhook_filter_failed", "trigger": route.full_name,
                       "detail": shorten(problem)},
            )
        return result

    async def _store_keyed(
        self,
        request: web.Request,
        route: WebhookRoute,
        body: bytes,
        now: datetime,
        headers: dict[str, JSON],
        query: dict[str, JSON],
        derived: Derived,
    ) -> KeyedResult:
        """A request of a trigger with ``debounce`` or ``concurrency``: one transaction of
        its own (PostgreSQL orders the requests of one key), not the group commit."""
        dedupe = route.dedupe  # the trigger's mapping, else its scheme's delivery id
        delivery = derived.dedupe_key
        item = InboxItem(
            id=time_ordered_id(),
            workflow_id=route.workflow_id,
            version_id=route.version_id,
            trigger_id=route.trigger_id,
            trigger_name=route.trigger_name,
            dedupe_key=delivery,
            dedupe_ttl=dedupe.ttl if dedupe is not None and delivery else None,
            input_json=derived.input_json,
            method=request.method,
            path=clean_text(request.path),
            query=query,
            headers=headers,
            body=body,
            remote_addr=client_address(request),
            received_at=now,
            correlation=derived.correlation,
            filtering=route.config.filter is not None,
        )
        keyed = await store_keyed_request(
            self._pool, item, debounce=derived.debounce, concurrency=derived.concurrency
        )
        if keyed.result.gone:
            raise TriggerGone("the trigger was changed while the request was in flight")
        if keyed.result.created:
            self._count_created(route)
        return keyed

    def _too_large(self, request: web.Request, route: WebhookRoute, *,
                   on_the_wire: bool) -> web.Response:
        """413 for a body past the trigger's limit decoded or (``on_the_wire``) an encoded
        one past what that limit allows as sent."""
        limit = route.max_body_bytes
        response = close_unread(request, too_large(limit, on_the_wire=on_the_wire))
        return self._refused(request, route, response, "body_too_large",
                             detail=too_large_message(limit, on_the_wire=on_the_wire),
                             limit=limit)

    def _refused(
        self,
        request: web.Request,
        route: WebhookRoute,
        response: web.Response,
        reason: str,
        *,
        detail: str | None = None,
        **fields: JSON,
    ) -> web.Response:
        """``response``, after logging why (rate-limited per trigger and reason). Only the
        reason and what the sender was told are logged: never credentials or the body."""
        if self.rejection_log.admit((route.full_name, reason), logging.INFO):
            logger.info(
                "webhook request refused: %s",
                reason,
                extra={
                    "event": "webhook_rejected",
                    "trigger": route.full_name,
                    "status": response.status,
                    "reason": reason,
                    "remote": client_address(request),
                    **({} if detail is None else {"detail": shorten(detail)}),
                    **fields,
                },
            )
        return response

    async def _sync_answer(self, route: WebhookRoute, result: InboxResult) -> web.Response:
        run = await self.waiter.wait(result.execution_id, route.config.timeout.total_seconds())
        if run is None:  # past the timeout: the async answer, never a hung connection
            return accepted(result.execution_id, created=result.created)
        return run_response(run)


WEBHOOKS = web.AppKey("webhooks", WebhookIngress)


# The URL of a non-default tenant's webhooks.
TENANT_HOOKS = "/tenants/{tenant:[a-z0-9][a-z0-9_-]{0,63}}/hooks/{path:.*}"


def _unverifiable() -> web.Response:
    """A trigger's secret cannot be resolved: 503, which the sender retries."""
    return error_response(503, "unavailable",
                          "this webhook cannot verify requests right now; retry later",
                          headers=retry_after(RETRY_DATABASE))


async def no_webhook(request: web.Request) -> web.Response:
    return error_response(404, "not_found", f"no webhook at {clean_text(request.path)[:300]}")


def setup_webhooks(
    app: web.Application,
    *,
    pool: asyncpg.Pool,
    dsn: str,
    settings: Settings,
    clock: Clock = utc_now,
    **options: Any,
) -> WebhookIngress:
    """Add ``/hooks/...`` to ``app`` and return the component the daemon starts and stops.

    ``options`` are passed to :class:`WebhookIngress` (``reload_interval``,
    ``pending_interval``, ``max_batch``, ``writers``, ``monotonic``, ``hub``,
    ``runs_here``)."""
    ingress = WebhookIngress(pool=pool, dsn=dsn, settings=settings, clock=clock, **options)
    app[WEBHOOKS] = ingress
    # One catch-all route: every method and path is answered by us with a JSON error,
    # in the documented order, rather than by aiohttp's plain-text 404/405.
    app.router.add_route(
        "*", "/hooks/{path:.*}", ingress.handle, expect_handler=ingress.expect
    )
    # Another tenant's hooks (DESIGN §5b); /tenants/default/hooks/ is the same as /hooks/.
    app.router.add_route(
        "*", TENANT_HOOKS, ingress.handle, expect_handler=ingress.expect
    )
    # What looks like a webhook address but is none (a tenant name no tenant can have,
    # /hooks without a path) is a JSON 404 too, not aiohttp's plain text.
    app.router.add_route("*", "/hooks", no_webhook)
    app.router.add_route("*", "/tenants/{tail:.*}", no_webhook)
    if READINESS_CHECKS in app:
        app[READINESS_CHECKS]["webhooks"] = ingress.readiness
    return ingress
