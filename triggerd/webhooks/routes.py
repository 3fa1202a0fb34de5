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

from triggerd.correlation import correlation_mapping
from triggerd.definitions import parse_trigger_config
from triggerd.errors import DefinitionError, SecretError
from triggerd.logs import SECRETS_FILTER
from triggerd.model import (
    DEFAULT_TENANT,
    JSON,
    DedupeConfig,
    SecretRef,
    TriggerType,
    WebhookConfig,
    normalize_webhook_path,
)
from triggerd.quickcheck import ValidityCheck, compile_quick_check
from triggerd.secrets import resolve_secret
from triggerd.store.webhooks import WebhookTriggerRow, load_webhook_triggers
from triggerd.webhooks.allowlist import Networks, parse_networks
from triggerd.webhooks.auth import Checker, auth_header_names, make_checker
from triggerd.webhooks.dedupe import effective_dedupe
from triggerd.webhooks.ratelimit import default_burst

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

# Never stored in the inbox whatever the scheme: credentials a sender (or a proxy) may add.
# x-triggerd-remote: the client address an extra HTTP process passes on with a request
# it forwards to the main one (triggerd.serving.forward); never part of the request itself.
ALWAYS_STRIPPED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-triggerd-remote"}
)

# (what the secret is for, its reference, the tenant of the trigger naming it) -> its value.
SecretResolver = Callable[[str, SecretRef, str], str]


def resolve_any_secret(name: str, ref: SecretRef, tenant: str) -> str:
    """A resolver without a tenant policy (tables built outside a daemon)."""
    return resolve_secret(name, ref)


@dataclass(frozen=True, kw_only=True)
class WebhookRoute:
    trigger_id: str
    workflow_id: str
    full_name: str  # workflow_key/trigger_name
    trigger_name: str
    path: str
    config: WebhookConfig
    version: int  # the version runs use, pinned at build time (its schema validated them)
    version_id: str
    static_input: Mapping[str, JSON]
    validator: Draft202012Validator | None  # None: the schema accepts everything
    # A fast "is it valid?" for schemas within a common subset (None: always ask the
    # validator). True means valid; False means ask the validator for the error list.
    quick_check: ValidityCheck | None
    secret: bytes | None  # the first (or only) secret
    # Why a secret could not be resolved: with none resolved every request is answered
    # 503; with a list, a request none of the resolved ones verifies is (it may be signed
    # with the missing one: a rotation whose new secret is not there yet).
    secret_problem: str | None
    # check_request for this trigger's auth and secret, prepared once per build: None when
    # accepted, else the refusal (its reason is logged, never answered).
    check_auth: Checker
    # With a list of secrets (rotation): one checker per resolved secret, in order, and
    # check_auth unused; empty for a single secret, which keeps its path as it was.
    rotation: tuple[Checker, ...] = ()
    rotation_positions: tuple[int, ...] = ()  # each checker's index in the listed secrets
    secrets: tuple[bytes, ...] = ()  # every resolved secret (for log redaction)
    dedupe: DedupeConfig | None = None  # config.dedupe, else the scheme's delivery id
    allow_from: Networks = ()  # empty: any client
    stripped_headers: frozenset[str]  # lower-case names never stored
    max_body_bytes: int
    rate: float | None
    burst: int
    tenant: str = DEFAULT_TENANT
    # Correlation key -> literal or expression over the request (config "correlation").
    correlation: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.path)


@dataclass(frozen=True, kw_only=True)
class RouteTable:
    # By (tenant, normalized path): paths are unique per tenant.
    routes: Mapping[tuple[str, str], WebhookRoute] = field(default_factory=dict)
    by_trigger: Mapping[str, WebhookRoute] = field(default_factory=dict)
    # Triggers left out of the table and why (for logs and the admin API).
    problems: tuple[str, ...] = ()

    def get(self, path: str, tenant: str = DEFAULT_TENANT) -> WebhookRoute | None:
        """The route of a request's path (after ``/hooks/``). A path with an empty segment
        (``/hooks//pay``, ``pay//``) names none: no trigger's path has one, and stripping
        its slashes made it reach ``pay``. One slash at the end is the same path."""
        if path.startswith("/") or "//" in path:
            return None
        return self.routes.get((tenant, normalize_webhook_path(path)))


class ValidatorCache:
    """Compiled validators (and quick checks) by canonical schema text, reused across
    builds: compiling is the expensive part of a reload and schemas rarely change."""

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[Draft202012Validator, ValidityCheck | None]] = {}

    def get(self, schema: Mapping[str, JSON]) -> tuple[Draft202012Validator, ValidityCheck | None]:
        """The validator and the quick check of ``schema`` (SchemaError when invalid)."""
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        compiled = self._compiled.get(key)
        if compiled is None:
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            compiled = self._compiled[key] = (validator, compile_quick_check(schema))
        return compiled

    def keep_only(self, schemas: Iterable[Mapping[str, JSON]]) -> None:
        keep = {json.dumps(s, sort_keys=True, separators=(",", ":")) for s in schemas}
        self._compiled = {k: v for k, v in self._compiled.items() if k in keep}


def build_route_table(
    rows: Iterable[WebhookTriggerRow],
    *,
    default_max_body_bytes: int,
    resolve: SecretResolver = resolve_any_secret,
    validators: ValidatorCache | None = None,
) -> RouteTable:
    """A table from the trigger rows. A trigger whose stored config or schema is invalid, or
    whose workflow has no version to run, is left out (404) and named in ``problems``; a
    trigger whose secret cannot be resolved stays in with ``secret_problem`` set, so its
    senders get a retryable 503 rather than a 404 they would take as final."""
    cache = validators or ValidatorCache()
    routes: dict[tuple[str, str], WebhookRoute] = {}
    problems: list[str] = []
    # Resolved once per build, shared by the triggers of a tenant.
    secrets: dict[tuple[str, SecretRef], bytes] = {}
    for row in rows:
        try:
            route = _build_route(row, default_max_body_bytes, resolve, cache, secrets)
        except _Skip as exc:
            problems.append(f"webhook trigger {row.full_name}: {exc}")
            continue
        if route.key in routes:  # the unique index makes this impossible; be explicit
            problems.append(
                f"webhook trigger {row.full_name}: path {route.path!r} is already served by"
                f" {routes[route.key].full_name}"
            )
            continue
        routes[route.key] = route
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
    secrets: dict[tuple[str, SecretRef], bytes],
) -> WebhookRoute:
    try:
        config = parse_trigger_config(TriggerType.WEBHOOK, row.config)
    except DefinitionError as exc:
        detail = "; ".join(str(p) for p in exc.problems) or str(exc)
        raise _Skip(f"invalid stored config: {detail}") from None
    if not isinstance(config, WebhookConfig):  # pragma: no cover - parse_trigger_config's type
        raise _Skip("stored config is not a webhook config")
    if row.version is None or row.version_id is None or row.parameter_schema is None:
        raise _Skip("the workflow has no published version to run")
    validator: Draft202012Validator | None = None
    quick_check: ValidityCheck | None = None
    if row.parameter_schema:
        try:
            validator, quick_check = cache.get(row.parameter_schema)
        except SchemaError as exc:
            raise _Skip(
                f"parameter_schema of version {row.version} is invalid: {exc.message}"
            ) from None
    values: list[bytes] = []
    positions: list[int] = []
    secret_problem: str | None = None
    for position, ref in enumerate(config.auth.secrets):
        resolved: bytes | str | None = secrets.get((row.tenant_id, ref))
        if resolved is None:
            try:
                resolved = resolve(f"of webhook trigger {row.full_name}", ref,
                                   row.tenant_id).encode("utf-8")
                secrets[(row.tenant_id, ref)] = resolved
            except SecretError as exc:
                # Not kept for the next trigger of this secret: the message names this
                # one (it named the first trigger in every later one's log line).
                resolved = str(exc)
        if isinstance(resolved, bytes):
            values.append(resolved)
            positions.append(position)
        elif secret_problem is None:
            secret_problem = resolved
    secret = values[0] if values else None
    rotating = isinstance(config.auth.secret, tuple) and bool(values)
    rate = config.rate
    burst = config.burst if config.burst is not None else default_burst(rate) if rate else 0
    return WebhookRoute(
        trigger_id=row.trigger_id,
        workflow_id=row.workflow_id,
        full_name=row.full_name,
        trigger_name=row.trigger_name,
        path=normalize_webhook_path(config.path),
        config=config,
        version=row.version,
        version_id=row.version_id,
        static_input=dict(row.input or {}),
        validator=validator,
        quick_check=quick_check,
        secret=secret,
        secret_problem=secret_problem,
        check_auth=make_checker(config.auth, secret),
        rotation=tuple(make_checker(config.auth, v) for v in values) if rotating else (),
        rotation_positions=tuple(positions) if rotating else (),
        secrets=tuple(values),
        dedupe=effective_dedupe(config),
        allow_from=parse_networks(config.allow_from),
        stripped_headers=auth_header_names(config.auth) | ALWAYS_STRIPPED_HEADERS,
        max_body_bytes=config.max_body_bytes or default_max_body_bytes,
        rate=rate,
        burst=burst,
        tenant=row.tenant_id,
        correlation=correlation_mapping(row.config),
    )



class Routes:
    """The current route table and its reload. Reloads are serialized; one requested
    while another runs is coalesced into a single follow-up reload."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        default_max_body_bytes: int,
        resolve: SecretResolver = resolve_any_secret,
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
        self._redacted: set[bytes] = set()

    def set_default_max_body_bytes(self, limit: int) -> None:
        """``[http] max_body_bytes`` changed (SIGHUP): routes built from now on use it."""
        self._default_max_body_bytes = limit

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
            self._redact_new_secrets(table)
            old = self.table
            self.table = table  # the atomic swap: one reference
            self._built = started
            self.loaded = True
        _log_changes(old, table)
        return table


    def _redact_new_secrets(self, table: RouteTable) -> None:
        """Webhook secrets join the log redaction like every other secret."""
        fresh = {s for r in table.routes.values() for s in r.secrets if s} - self._redacted
        if fresh:
            SECRETS_FILTER.add_secrets(s.decode("utf-8") for s in fresh)
            self._redacted |= fresh


def _label(key: tuple[str, str]) -> str:
    """A route as its URL path reads (the default tenant's bare)."""
    tenant, path = key
    return path if tenant == DEFAULT_TENANT else f"tenants/{tenant}/hooks/{path}"


def _log_changes(old: RouteTable, new: RouteTable) -> None:
    added = sorted(_label(k) for k in set(new.routes) - set(old.routes))
    removed = sorted(_label(k) for k in set(old.routes) - set(new.routes))
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
        before = old.routes.get(route.key)
        if route.secret_problem and (before is None or before.secret_problem is None):
            logger.error(
                route.secret_problem,
                extra={"event": "webhook_secret_unresolved", "trigger": route.full_name},
            )
