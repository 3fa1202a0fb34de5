"""The webhook HTTP surface: ``/hooks/{path}`` and ``/hooks/_executions/{id}``.

Checks run in this order, each answering as soon as it fails, so that the cheap ones
protect the expensive ones and nothing is read or parsed for a request refused anyway:

route (404) -> method (405) -> rate limit (429) -> backpressure (429) -> Content-Length
(413) -> content type (415) -> body, read incrementally (413) -> authentication on the raw
bytes (401) -> body parsing (400) -> ``parameter_schema`` (422) -> dedupe key -> the group
commit (503 when the database is unreachable) -> ``202``/``200`` (or, in ``sync`` mode,
the run's answer).

A ``202`` is sent only after the execution and its ``webhook_requests`` row are committed.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDictProxy, MultiMapping

from triggerd.appkeys import READINESS_CHECKS
from triggerd.config import Settings
from triggerd.errors import DatabaseUnavailable
from triggerd.http.forward import client_address
from triggerd.loglimit import ThrottledLog
from triggerd.model import JSON, ExecutionStatus, ResponseMode, SecretRef
from triggerd.secrets import resolve_secret
from triggerd.store.webhooks import (
    FINISHED_CHANNEL,
    TRIGGERS_CHANNEL,
    FinishedRun,
    InboxItem,
    InboxResult,
    InboxWriter,
    Listener,
    count_new_executions,
    finished_runs,
    webhook_execution_status,
)
from triggerd.tasks import cancel_and_wait
from triggerd.webhooks.body import BodyError, cached_content_type, parse_input
from triggerd.webhooks.dedupe import dedupe_key
from triggerd.webhooks.group_commit import (
    DEFAULT_MAX_BATCH,
    GroupCommit,
    GroupCommitStats,
    QueueFull,
    ShuttingDown,
    TriggerGone,
)
from triggerd.webhooks.ratelimit import RateLimiter
from triggerd.webhooks.routes import Routes, WebhookRoute

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]

STATUS_PREFIX = "/hooks/_executions/"
# Retry-After (seconds) for the retryable refusals.
RETRY_DATABASE = 5
RETRY_BACKPRESSURE = 5
# How many latency samples each trigger keeps for metrics.
LATENCY_SAMPLES = 2048
# At most this many validation errors are listed in a 422, each message cut to this size:
# a hostile body must not produce a huge answer.
MAX_LISTED_ERRORS = 100
MAX_ERROR_MESSAGE = 300
# Response headers a respond node may not set: they describe the connection and the
# framing, which aiohttp owns.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 5.6.2)
# Refused requests (400, 401, 413, 415, 422) are logged as ``webhook_rejected`` with their
# precise reason, at most this many at once per (trigger, reason) and then this many per
# second; a ``log_suppressed`` line counts the rest. Anyone can send them.
REJECTION_BURST = 10
REJECTION_RATE = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


# Random hex digits for ids, fetched from the OS in blocks (one system call per ~860
# ids), 19 per id (74 random bits are used).
_RANDOM_HEX_PER_ID = 19
_random_hex: list[str] = []
# The 4th group's first digit: the variant's two bits (10), then two random bits.
_VARIANT = "89ab"


def _forget_random() -> None:
    _random_hex.clear()  # a forked child must not reuse its parent's random bytes


os.register_at_fork(after_in_child=_forget_random)


def time_ordered_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made
    one after the other land next to each other in the primary-key B-trees, which keeps
    the group commit's inserts on few, hot index pages instead of random ones. The random
    part comes from the OS (the ids are the capability to read a status page), fetched in
    blocks to spare a system call per request, and is formatted as text directly."""
    if not _random_hex:
        block = os.urandom(8192).hex()
        size = _RANDOM_HEX_PER_ID
        _random_hex.extend(block[i : i + size] for i in range(0, len(block) - size + 1, size))
    r = _random_hex.pop()
    m = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    return f"{m[:8]}-{m[8:]}-7{r[:3]}-{_VARIANT[int(r[3], 16) & 3]}{r[4:7]}-{r[7:]}"


# --- metrics ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class WebhookStats:
    """Counters for the metrics endpoint. ``responses`` is keyed by (trigger full name, or
    ``"-"`` when no trigger matched, and HTTP status)."""

    responses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    latency: dict[str, collections.deque[float]] = field(default_factory=dict)
    rate_limited: int = 0
    backpressure_rejections: int = 0
    database_unavailable: int = 0
    pending_new: int = 0  # the NEW count backpressure compares with max_pending
    group_commit: GroupCommitStats = field(default_factory=GroupCommitStats)
    # The daemon's Prometheus metrics (triggerd.api.metrics.Metrics), when it serves them.
    sink: Any = None

    def record(self, trigger: str, status: int, seconds: float) -> None:
        self.responses[(trigger, status)] += 1
        if self.sink is not None:
            self.sink.webhook_request(trigger, status, seconds)
        samples = self.latency.get(trigger)
        if samples is None:
            samples = self.latency[trigger] = collections.deque(maxlen=LATENCY_SAMPLES)
        samples.append(seconds)


# --- answers ------------------------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: JSON,
) -> web.Response:
    body: dict[str, JSON] = {"error": code, "message": message, **extra}
    return web.json_response(body, status=status, headers=headers)


def _accepted(execution_id: str, *, created: bool) -> web.Response:
    status_url = STATUS_PREFIX + execution_id
    # Built by hand: this is the hot path, and both values are plain ASCII.
    if created:
        text = f'{{"execution_id":"{execution_id}","status_url":"{status_url}"}}'
    else:
        text = (
            f'{{"execution_id":"{execution_id}","status_url":"{status_url}",'
            '"duplicate":true}'
        )
    return web.Response(
        status=202 if created else 200,
        body=text.encode("ascii"),
        headers={"Content-Type": "application/json", "Location": status_url},
    )


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# --- request pieces -------------------------------------------------------------------------


def _clean(text: str) -> str:
    """A string PostgreSQL ``jsonb`` can hold. aiohttp decodes header bytes as UTF-8 with
    surrogate escapes, and NUL is legal in a percent-encoded query: both would make the
    insert fail, so they become U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed.replace("\x00", "\ufffd")


def stored_headers(
    headers: CIMultiDictProxy[str], stripped: frozenset[str]
) -> dict[str, JSON]:
    """Headers as stored and shown to expressions: lower-case names, repeated headers
    joined with ``", "`` (RFC 9110 5.3), auth material and cookies removed."""
    result: dict[str, JSON] = {}
    for name, value in headers.items():
        key = name.lower()
        # _clean inlined for the common, clean case: this runs for every header.
        if not key.isascii() or "\x00" in key:
            key = _clean(key)
        if key in stripped:
            continue
        if not value.isascii() or "\x00" in value:
            value = _clean(value)
        previous = result.get(key)
        result[key] = value if previous is None else f"{previous}, {value}"
    return result


def query_dict(query: MultiMapping[str]) -> dict[str, JSON]:
    """The query string as an object; a repeated key becomes a list of its values."""
    result: dict[str, JSON] = {}
    for key, value in query.items():
        key, value = _clean(key), _clean(value)
        previous = result.get(key)
        if previous is None:
            result[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result[key] = [previous, value]
    return result


def content_type_problem(content_type: str | None, body_mode: str) -> BodyError | None:
    """The 415 a content type earns before the body is read (``None``: acceptable).

    Mirrors :func:`~triggerd.webhooks.body.parse_body`'s rules so that a request with an
    unsupported type is refused without reading its body; a missing type is judged once
    the body is read (an empty body needs none)."""
    if body_mode == "raw" or content_type is None or not content_type.strip():
        return None
    try:
        media_type, params = cached_content_type(content_type)
    except BodyError as exc:
        return exc
    if not (
        media_type == "application/json"
        or media_type.endswith("+json")
        or media_type == "application/x-www-form-urlencoded"
        or media_type.startswith("text/")
    ):
        return BodyError.unsupported(
            f"unsupported Content-Type {media_type!r} (send application/json,"
            " application/x-www-form-urlencoded or text/*)"
        )
    charset = params.get("charset")
    if charset is not None:
        try:
            codecs.lookup(charset)
        except LookupError:
            return BodyError.unsupported(f"unsupported charset {charset!r}")
    return None


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as more than ``limit`` bytes arrived (the rest is
    never read)."""
    content = request.content
    if content.is_eof():
        # Everything has arrived already (a small body comes with the headers): one piece.
        body = content.read_nowait()
        return body if len(body) <= limit else None
    length = request.content_length
    if length is not None and length <= limit:
        # The HTTP parser never delivers more than Content-Length bytes.
        return await request.content.read()
    buffer = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        if len(buffer) > limit:
            return None


def input_json(
    route: WebhookRoute, body: bytes, json_text: str | None, data: Mapping[str, JSON]
) -> str:
    """The run input as JSON text for the store.

    A JSON object body sent as UTF-8 (``json_text``: its text, from
    :func:`~triggerd.webhooks.body.parse_input`) with nothing merged under it is the input
    exactly as sent: PostgreSQL parses the sender's text into the same document
    (duplicate keys: the last wins in both; NaN, NUL and lone surrogates were refused by
    the body parser), which spares re-encoding every request on the hot path. A leading
    BOM is not JSON to PostgreSQL: such a body is re-encoded."""
    if (
        json_text is not None
        and not route.static_input
        and (body[:1] == b"{" or body.lstrip()[:1] == b"{")
    ):
        return json_text
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def validation_errors(route: WebhookRoute, data: Mapping[str, JSON]) -> list[dict[str, str]]:
    if route.validator is None:
        return []
    if route.quick_check is not None and route.quick_check(data):
        return []  # the common case, decided without jsonschema's machinery
    found = [
        {"path": error.json_path, "message": _shorten(error.message)}
        for error in route.validator.iter_errors(data)
    ]
    found.sort(key=lambda e: (e["path"], e["message"]))
    return found[:MAX_LISTED_ERRORS]


def _shorten(text: str) -> str:
    if len(text) <= MAX_ERROR_MESSAGE:
        return text
    return text[: MAX_ERROR_MESSAGE - 1] + "…"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# --- sync mode: waiting for runs to finish ------------------------------------------------


class FinishWaiter:
    """Waits for executions to reach a final status: one poll for every waiting request
    every ``interval`` (one query, however many wait), woken early by the executor's
    ``triggerd_finished`` notifications."""

    def __init__(self, pool: asyncpg.Pool, *, interval: float = 0.05) -> None:
        self._pool = pool
        self._interval = interval
        self._waiting: dict[str, list[asyncio.Future[FinishedRun | None]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks-finish-waiter")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        # Waiting requests fall back to their 202 answer.
        for futures in list(self._waiting.values()):
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def notify(self, execution_id: str) -> None:
        if execution_id in self._waiting:
            self._wake.set()

    async def wait(self, execution_id: str, within: float) -> FinishedRun | None:
        """The finished run, or ``None`` when it did not finish ``within`` seconds (or the
        ingress is stopping)."""
        if self._task is None:
            return None
        future: asyncio.Future[FinishedRun | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(execution_id, []).append(future)
        self._wake.set()
        try:
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(execution_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self._waiting[execution_id]

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            try:
                runs = await finished_runs(self._pool, list(self._waiting))
            except DatabaseUnavailable:
                runs = []  # waiters time out and fall back to 202
            except Exception:
                logger.exception(
                    "polling finished runs failed", extra={"event": "webhook_sync_poll_failed"}
                )
                runs = []
            for run in runs:
                for future in self._waiting.pop(run.execution_id, []):
                    if not future.done():
                        future.set_result(run)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)


def run_response(run: FinishedRun) -> web.Response:
    """The answer of a sync request whose run finished."""
    headers = {"Triggerd-Execution-Id": run.execution_id}
    if run.status != ExecutionStatus.SUCCESS:
        what = "was canceled" if run.status == ExecutionStatus.CANCELED else "failed"
        return error_response(
            500,
            "execution_failed",
            f"execution {run.execution_id} {what}",
            headers=headers,
            execution_id=run.execution_id,
        )
    output = run.output
    if run.responded and isinstance(output, dict):
        return _respond_node_answer(output, headers)
    return web.Response(
        status=200,
        text=json.dumps(output, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def _respond_node_answer(output: Mapping[str, Any], headers: dict[str, str]) -> web.Response:
    status = output.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        status = 200
    given = output.get("headers")
    content_type: str | None = None
    if isinstance(given, Mapping):
        for name, value in given.items():
            if not isinstance(name, str) or value is None or not _TOKEN.fullmatch(name):
                continue
            lowered = name.lower()
            if lowered in _HOP_BY_HOP or lowered == "triggerd-execution-id":
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if "\r" in text or "\n" in text or "\r" in name or "\n" in name:
                continue  # never let a run split the response
            if lowered == "content-type":
                content_type = text
            else:
                headers[name] = text
    body = output.get("body")
    if status in _NO_BODY_STATUSES or body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        content_type = content_type or "application/json"
    if content_type is not None and data:
        headers["Content-Type"] = content_type
    return web.Response(status=status, body=data, headers=headers)


# --- the component ----------------------------------------------------------------------------


class WebhookIngress:
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
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._reload_interval = reload_interval
        self._pending_interval = pending_interval
        self.routes = Routes(
            pool, default_max_body_bytes=settings.http.max_body_bytes, resolve=self._secret
        )
        self.group_commit = GroupCommit(
            lambda: InboxWriter(pool), max_batch=max_batch, writers=writers
        )
        self.waiter = FinishWaiter(pool)
        self.limiter = RateLimiter()
        self.stats = WebhookStats(group_commit=self.group_commit.stats)
        self.rejection_log = ThrottledLog(
            logger,
            "webhook_rejected",
            key_fields=("trigger", "reason"),
            rate=REJECTION_RATE,
            burst=REJECTION_BURST,
            monotonic=monotonic,
        )
        self._new_count = 0  # NEW executions at the last count
        self._created_since_count = 0  # executions this process created since then
        self._reload_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # -- lifecycle --

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            await self.routes.reload()
        except DatabaseUnavailable as exc:
            # Not fatal: the reload loop retries and the listener reconciles on connect.
            logger.warning(str(exc), extra={"event": "webhook_routes_unavailable"})
        with contextlib.suppress(DatabaseUnavailable):
            await self.refresh_pending()
        self.group_commit.start()
        self.waiter.start()
        self._tasks = [
            asyncio.create_task(self._reload_loop(), name="webhooks-reload"),
            asyncio.create_task(self._listen_loop(), name="webhooks-listen"),
            asyncio.create_task(self._pending_loop(), name="webhooks-pending"),
        ]

    async def stop(self) -> None:
        """Stop background work and write every request already accepted into the group
        commit before returning; requests arriving from now on are answered 503."""
        self._running = False
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        await self.group_commit.stop()
        await self.waiter.stop()

    def _secret(self, name: str, ref: SecretRef) -> str:
        # [daemon] secret_roots as of now: a reload's roots apply to the next route build.
        return resolve_secret(name, ref, roots=self._settings.daemon.secret_roots)

    def apply_settings(self, settings: Settings) -> None:
        """SIGHUP with a new configuration: ``[http] max_pending`` applies to the next
        request, ``max_body_bytes`` to the routes of the reload that follows."""
        self._settings = settings
        self.routes.set_default_max_body_bytes(settings.http.max_body_bytes)

    async def reload(self) -> None:
        """Rebuild the route table from the database now (SIGHUP, tests, the admin API)."""
        await self.routes.reload()

    async def refresh_pending(self) -> int:
        """Count ``NEW`` executions now (backpressure); normally done every second."""
        count = await count_new_executions(self._pool)
        self._new_count = count
        self._created_since_count = 0
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

    async def _reload_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_wanted.wait(), self._reload_interval)
            # A burst of notifications (an apply touching many triggers) is one reload.
            await asyncio.sleep(0.05)
            self._reload_wanted.clear()
            # Buckets of triggers that went away (or filled up) are dropped.
            self.limiter.prune(self._monotonic())
            try:
                await self.routes.reload()
            except DatabaseUnavailable as exc:
                logger.warning(str(exc), extra={"event": "webhook_routes_unavailable"})
            except Exception:
                logger.exception(
                    "webhook route reload failed", extra={"event": "webhook_reload_failed"}
                )

    async def _listen_loop(self) -> None:
        backoff = 0.5
        while True:
            try:
                listener = await Listener.open(
                    self._dsn,
                    {
                        TRIGGERS_CHANNEL: lambda _payload: self._reload_wanted.set(),
                        FINISHED_CHANNEL: self.waiter.notify,
                    },
                )
            except DatabaseUnavailable:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            # Whatever changed while we were not listening: reconcile from the table.
            self._reload_wanted.set()
            try:
                while not listener.lost.is_set():
                    try:
                        await asyncio.wait_for(listener.lost.wait(), 30.0)
                    except TimeoutError:
                        with contextlib.suppress(DatabaseUnavailable):
                            await listener.check()
            finally:
                await listener.close()
            logger.warning(
                "webhook notification connection lost; reconnecting",
                extra={"event": "webhook_listener_lost"},
            )

    async def _pending_loop(self) -> None:
        while True:
            await asyncio.sleep(self._pending_interval)
            with contextlib.suppress(DatabaseUnavailable):
                await self.refresh_pending()

    # -- handlers --

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse a body that is too large before the sender
        transmits it (curl and many clients ask first for large bodies)."""
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11:
            return None
        if expect.lower() != "100-continue":
            return error_response(417, "expectation_failed", f"unknown Expect: {expect}")
        route = self.routes.table.get(request.match_info.get("path", ""))
        length = request.content_length
        if route is not None and length is not None and length > route.max_body_bytes:
            return self._too_large(request, route)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = self._monotonic()
        path: str = request.match_info["path"]
        if path.startswith("_"):
            reserved = await self._reserved(request, path)
            self.stats.record("-", reserved.status, self._monotonic() - started)
            return reserved
        route = self.routes.table.get(path)
        response: web.StreamResponse
        if route is None and not self.routes.loaded:
            # The table was never read (the database was down at start): an honest 503,
            # not a 404 the sender would take as final.
            response = error_response(
                503,
                "unavailable",
                "webhooks are not loaded yet; retry later",
                headers=_retry_after(RETRY_DATABASE),
            )
            self.stats.record("-", 503, self._monotonic() - started)
            return response
        if route is None:
            response = error_response(404, "not_found", f"no webhook at /hooks/{path}")
            self.stats.record("-", 404, self._monotonic() - started)
            return response
        try:
            response = await self._handle(request, route, started)
        except DatabaseUnavailable as exc:
            gone = isinstance(exc, TriggerGone)
            if not gone:
                self.stats.database_unavailable += 1
            response = error_response(
                503,
                "trigger_changed" if gone else "database_unavailable",
                f"the request was not stored: {_public_reason(exc)}; retry later",
                headers=_retry_after(RETRY_DATABASE),
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
        config = route.config
        method = request.method
        if method not in config.methods:
            return error_response(
                405,
                "method_not_allowed",
                f"{method} is not allowed here (allowed: {', '.join(config.methods)})",
                headers={"Allow": ", ".join(config.methods)},
            )
        if route.rate is not None:
            wait = self.limiter.check(route.trigger_id, route.rate, route.burst, started)
            if wait > 0:
                self.stats.rate_limited += 1
                return error_response(
                    429,
                    "rate_limited",
                    f"this webhook accepts {route.rate:g} requests per second; retry later",
                    headers=_retry_after(wait),
                )
        pending = self._new_count + self._created_since_count
        if pending > self._settings.http.max_pending:
            self.stats.backpressure_rejections += 1
            if self.stats.sink is not None:
                self.stats.sink.backpressure()
            return error_response(
                429,
                "overloaded",
                f"{pending} executions are waiting to run; retry later",
                headers=_retry_after(RETRY_BACKPRESSURE),
            )
        limit = route.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            return self._too_large(request, route)
        content_type = request.headers.get("Content-Type")
        if length != 0:
            problem = content_type_problem(content_type, config.body)
            if problem is not None:
                return self._refused(
                    request, route,
                    error_response(problem.status, problem.code, problem.message),
                    problem.code, detail=problem.message,
                )
        try:
            body = await read_limited(request, limit)
        except (HttpProcessingError, ConnectionError):
            message = "the body was not received completely"
            return self._refused(request, route, error_response(400, "invalid_body", message),
                                 "body_incomplete", detail=message)
        if body is None:
            return self._too_large(request, route)
        if body and config.body != "raw" and not (content_type or "").strip():
            message = (
                "the request has a body but no Content-Type (send application/json,"
                " application/x-www-form-urlencoded or text/*)"
            )
            return self._refused(
                request, route, error_response(415, BodyError.UNSUPPORTED, message),
                "missing_content_type", detail=message,
            )
        now = self._clock()
        if route.secret_problem is not None:
            # Retryable: the operator is told (logged at reload), the sender retries.
            return error_response(
                503,
                "unavailable",
                "this webhook cannot verify requests right now; retry later",
                headers=_retry_after(RETRY_DATABASE),
            )
        headers = request.headers
        refusal = route.check_auth(headers, body, now)
        if refusal is not None:
            # Never tell the sender which part failed; the operator's log does.
            challenge = (
                {"WWW-Authenticate": 'Basic realm="triggerd"'}
                if config.auth.scheme == "basic"
                else None
            )
            return self._refused(
                request, route,
                error_response(401, "unauthorized", "authentication failed", headers=challenge),
                refusal.reason.value, header=refusal.header,
            )
        try:
            parsed, json_text = parse_input(content_type, body, mode=config.body)
        except BodyError as exc:
            return self._refused(request, route,
                                 error_response(exc.status, exc.code, exc.message),
                                 exc.code, detail=exc.message)
        # Nothing below changes either dict, so without static input no copy is needed.
        data: dict[str, JSON] = (
            {**route.static_input, **parsed} if route.static_input else parsed
        )
        errors = validation_errors(route, data)
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
        key = dedupe_key(config.dedupe, headers, body, parsed)
        result = await self.group_commit.submit(
            InboxItem(
                id=time_ordered_id(),
                workflow_id=route.workflow_id,
                version_id=route.version_id,
                trigger_id=route.trigger_id,
                trigger_name=route.trigger_name,
                dedupe_key=key,
                dedupe_ttl=config.dedupe.ttl if config.dedupe is not None and key else None,
                input_json=input_json(route, body, json_text, data),
                method=method,
                path=_clean(request.path),
                query=query_dict(request.query),
                headers=stored_headers(headers, route.stripped_headers),
                body=body,
                remote_addr=client_address(request),
                received_at=now,
            )
        )
        if result.created:
            self._created_since_count += 1
        if config.response == ResponseMode.SYNC:
            return await self._sync_answer(route, result)
        return _accepted(result.execution_id, created=result.created)

    def _too_large(self, request: web.Request, route: WebhookRoute) -> web.Response:
        limit = route.max_body_bytes
        response = _too_large(limit)
        return self._refused(request, route, response, "body_too_large",
                             detail=_too_large_message(limit), limit=limit)

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
                    **({} if detail is None else {"detail": _shorten(detail)}),
                    **fields,
                },
            )
        return response

    async def _sync_answer(self, route: WebhookRoute, result: InboxResult) -> web.Response:
        run = await self.waiter.wait(result.execution_id, route.config.timeout.total_seconds())
        if run is None:  # past the timeout: the async answer, never a hung connection
            return _accepted(result.execution_id, created=result.created)
        return run_response(run)

    async def _reserved(self, request: web.Request, path: str) -> web.Response:
        name, _, rest = path.partition("/")
        if name != "_executions" or not rest or "/" in rest:
            return error_response(404, "not_found", f"no webhook at /hooks/{path}")
        if request.method != "GET":
            return error_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here (allowed: GET)",
                headers={"Allow": "GET"},
            )
        try:
            execution_id = str(uuid.UUID(rest))
        except ValueError:
            return error_response(404, "not_found", f"no execution {rest}")
        try:
            row = await webhook_execution_status(self._pool, execution_id)
        except DatabaseUnavailable as exc:
            return error_response(
                503,
                "database_unavailable",
                f"{_public_reason(exc)}; retry later",
                headers=_retry_after(RETRY_DATABASE),
            )
        if row is None:
            return error_response(404, "not_found", f"no execution {rest}")
        body: dict[str, JSON] = {
            "execution_id": row.execution_id,
            "status": row.status,
            "created_at": _iso(row.created_at),
            "started_at": _iso(row.start_time),
            "finished_at": _iso(row.end_time),
        }
        route = self.routes.table.by_trigger.get(row.trigger_id or "")
        if route is not None and route.config.expose_output:
            body["output"] = row.output
            body["error_code"] = row.error_code
        return web.json_response(body)


def _too_large_message(limit: int) -> str:
    return f"the body is larger than this webhook's limit of {limit} bytes"


def _too_large(limit: int) -> web.Response:
    response = error_response(413, "payload_too_large", _too_large_message(limit))
    # The rest of the body is never read: close instead of draining it.
    response.force_close()
    return response


def _public_reason(exc: DatabaseUnavailable) -> str:
    # Connection details stay in the logs; the sender only learns it is transient.
    if isinstance(exc, ShuttingDown | QueueFull | TriggerGone):
        return exc.message
    return "the database is unavailable"


WEBHOOKS = web.AppKey("webhooks", WebhookIngress)


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
    ``pending_interval``, ``max_batch``, ``writers``, ``monotonic``)."""
    ingress = WebhookIngress(pool=pool, dsn=dsn, settings=settings, clock=clock, **options)
    app[WEBHOOKS] = ingress
    # One catch-all route: every method and path is answered by us with a JSON error,
    # in the documented order, rather than by aiohttp's plain-text 404/405.
    app.router.add_route(
        "*", "/hooks/{path:.*}", ingress.handle, expect_handler=ingress.expect
    )
    if READINESS_CHECKS in app:
        app[READINESS_CHECKS]["webhooks"] = ingress.readiness
    return ingress
