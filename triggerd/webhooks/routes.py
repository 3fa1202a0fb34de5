"""The webhook route table: what every ``/hooks/<path>`` means right now.

A :class:`RouteTable` is an immutable snapshot built from the enabled webhook triggers and
the version each one runs (its ``parameter_schema`` compiled once per build, its secret
resolved once per build). :class:`Routes` holds the current snapshot and replaces it with a
single reference assignment on reload, so a request sees either the old table or the new
one, never a mix, and a trigger present in both is never missing in between. A failed
reload keeps the previous table.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from triggerd.definitions import parse_trigger_config
from triggerd.errors import DefinitionError, SecretError
from triggerd.model import JSON, SecretRef, TriggerType, WebhookConfig
from triggerd.secrets import resolve_secret
from triggerd.store.webhooks import WebhookTriggerRow, load_webhook_triggers
from triggerd.webhooks.auth import auth_header_names
from triggerd.webhooks.ratelimit import default_burst

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

# Never stored in the inbox whatever the scheme: credentials a sender (or a proxy) may add.
ALWAYS_STRIPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

SecretResolver = Callable[[str, SecretRef], str]


@dataclass(frozen=True, kw_only=True)
class WebhookRoute:
    trigger_id: str
    workflow_id: str
    full_name: str  # workflow_key/trigger_name
    trigger_name: str
    path: str
    config: WebhookConfig
    version: int  # the version runs use, pinned at build time (its schema validated them)
    static_input: Mapping[str, JSON]
    validator: Draft202012Validator | None  # None: the schema accepts everything
    secret: bytes | None
    secret_problem: str | None  # why the secret could not be resolved (answers 503)
    stripped_headers: frozenset[str]  # lower-case names never stored
    max_body_bytes: int
    rate: float | None
    burst: int


@dataclass(frozen=True, kw_only=True)
class RouteTable:
    routes: Mapping[str, WebhookRoute] = field(default_factory=dict)
    by_trigger: Mapping[str, WebhookRoute] = field(default_factory=dict)
    # Triggers left out of the table and why (for logs and the admin API).
    problems: tuple[str, ...] = ()

    def get(self, path: str) -> WebhookRoute | None:
        return self.routes.get(path.strip("/"))


class ValidatorCache:
    """Compiled validators by canonical schema text, reused across builds (compiling is
    the expensive part of a reload and schemas rarely change)."""

    def __init__(self) -> None:
        self._compiled: dict[str, Draft202012Validator] = {}

    def get(self, schema: Mapping[str, JSON]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        validator = self._compiled.get(key)
        if validator is None:
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            self._compiled[key] = validator
        return validator

    def keep_only(self, schemas: Iterable[Mapping[str, JSON]]) -> None:
        keep = {json.dumps(s, sort_keys=True, separators=(",", ":")) for s in schemas}
        self._compiled = {k: v for k, v in self._compiled.items() if k in keep}


def build_route_table(
    rows: Iterable[WebhookTriggerRow],
    *,
    default_max_body_bytes: int,
    resolve: SecretResolver = resolve_secret,
    validators: ValidatorCache | None = None,
) -> RouteTable:
    """A table from the trigger rows. A trigger whose stored config or schema is invalid, or
    whose workflow has no version to run, is left out (404) and named in ``problems``; a
    trigger whose secret cannot be resolved stays in with ``secret_problem`` set, so its
    senders get a retryable 503 rather than a 404 they would take as final."""
    cache = validators or ValidatorCache()
    routes: dict[str, WebhookRoute] = {}
    problems: list[str] = []
    secrets: dict[SecretRef, bytes | str] = {}  # resolved once per build, shared by triggers
    for row in rows:
        try:
            route = _build_route(row, default_max_body_bytes, resolve, cache, secrets)
        except _Skip as exc:
            problems.append(f"webhook trigger {row.full_name}: {exc}")
            continue
        if route.path in routes:  # the unique index makes this impossible; be explicit
            problems.append(
                f"webhook trigger {row.full_name}: path {route.path!r} is already served by"
                f" {routes[route.path].full_name}"
            )
            continue
        routes[route.path] = route
    return RouteTable(
        routes=routes,
        by_trigger={r.trigger_id: r for r in routes.values()},
        problems=tuple(problems),
    )


class _Skip(Exception):
    pass


def _build_route(
    row: WebhookTriggerRow,
    default_max_body_bytes: int,
    resolve: SecretResolver,
    cache: ValidatorCache,
    secrets: dict[SecretRef, bytes | str],
) -> WebhookRoute:
    try:
        config = parse_trigger_config(TriggerType.WEBHOOK, row.config)
    except DefinitionError as exc:
        detail = "; ".join(str(p) for p in exc.problems) or str(exc)
        raise _Skip(f"invalid stored config: {detail}") from None
    if not isinstance(config, WebhookConfig):  # pragma: no cover - parse_trigger_config's type
        raise _Skip("stored config is not a webhook config")
    if row.version is None or row.parameter_schema is None:
        raise _Skip("the workflow has no published version to run")
    validator: Draft202012Validator | None = None
    if row.parameter_schema:
        try:
            validator = cache.get(row.parameter_schema)
        except SchemaError as exc:
            raise _Skip(
                f"parameter_schema of version {row.version} is invalid: {exc.message}"
            ) from None
    secret: bytes | None = None
    secret_problem: str | None = None
    ref = config.auth.secret
    if ref is not None:
        resolved = secrets.get(ref)
        if resolved is None:
            try:
                resolved = resolve(f"of webhook trigger {row.full_name}", ref).encode("utf-8")
            except SecretError as exc:
                resolved = str(exc)
            secrets[ref] = resolved
        if isinstance(resolved, bytes):
            secret = resolved
        else:
            secret_problem = resolved
    rate = config.rate
    burst = config.burst if config.burst is not None else default_burst(rate) if rate else 0
    return WebhookRoute(
        trigger_id=row.trigger_id,
        workflow_id=row.workflow_id,
        full_name=row.full_name,
        trigger_name=row.trigger_name,
        path=config.path.strip("/"),
        config=config,
        version=row.version,
        static_input=dict(row.input or {}),
        validator=validator,
        secret=secret,
        secret_problem=secret_problem,
        stripped_headers=auth_header_names(config.auth) | ALWAYS_STRIPPED_HEADERS,
        max_body_bytes=config.max_body_bytes or default_max_body_bytes,
        rate=rate,
        burst=burst,
    )


class Routes:
    """The current route table and its reload. Reloads are serialized; one requested
    while another runs is coalesced into a single follow-up reload."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        default_max_body_bytes: int,
        resolve: SecretResolver = resolve_secret,
    ) -> None:
        self._pool = pool
        self._default_max_body_bytes = default_max_body_bytes
        self._resolve = resolve
        self._validators = ValidatorCache()
        self._lock = asyncio.Lock()
        self._generation = 0  # reloads requested
        self._built = 0  # the request generation the current table reflects
        self.table = RouteTable()
        self.loaded = False  # a table was loaded from the database at least once

    async def reload(self) -> RouteTable:
        """Rebuild from the database and swap; raise DatabaseUnavailable (keeping the
        current table) when the database cannot be read."""
        self._generation += 1
        wanted = self._generation
        async with self._lock:
            if self._built >= wanted:
                return self.table  # a reload that started after our request covered it
            started = self._generation
            rows = await load_webhook_triggers(self._pool)
            # Secret files are read and schemas compiled off the event loop.
            table = await asyncio.to_thread(
                build_route_table,
                rows,
                default_max_body_bytes=self._default_max_body_bytes,
                resolve=self._resolve,
                validators=self._validators,
            )
            self._validators.keep_only(
                r.parameter_schema for r in rows if r.parameter_schema
            )
            old = self.table
            self.table = table  # the atomic swap: one reference
            self._built = started
            self.loaded = True
        _log_changes(old, table)
        return table


def _log_changes(old: RouteTable, new: RouteTable) -> None:
    added = sorted(set(new.routes) - set(old.routes))
    removed = sorted(set(old.routes) - set(new.routes))
    if added or removed or new.problems != old.problems:
        logger.info(
            "webhook routes reloaded",
            extra={
                "event": "webhook_routes_reloaded",
                "routes": len(new.routes),
                "added": added,
                "removed": removed,
            },
        )
    for problem in new.problems:
        if problem not in old.problems:
            logger.error(problem, extra={"event": "webhook_trigger_unusable"})
    for route in new.routes.values():
        before = old.routes.get(route.path)
        if route.secret_problem and (before is None or before.secret_problem is None):
            logger.error(
                route.secret_problem,
                extra={"event": "webhook_secret_unresolved", "trigger": route.full_name},
            )
