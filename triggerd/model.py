"""Domain values shared by every part: workflows, graphs, triggers and their policies.

These are frozen, keyword-only dataclasses built by :mod:`triggerd.definitions` from a
definition file or from stored rows; nothing here does I/O.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from triggerd.ids import canonical_uuid

JSON = Any  # a JSON-compatible value (dict, list, str, int, float, bool, None)


class WorkflowStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


def inactive_state(status: str) -> str | None:
    """What a workflow in ``status`` is that starts no run ("archived", "a draft"): only
    an active workflow's triggers run; None when it is active."""
    if status == WorkflowStatus.ARCHIVED:
        return "archived"
    if status == WorkflowStatus.DRAFT:
        return "a draft"
    return None


def not_running_reason(status: str, key: str) -> str | None:
    """Why workflow ``key`` in ``status`` starts no run (fire, retry, replay, backfill);
    None when it is active."""
    state = inactive_state(status)
    return None if state is None else f"workflow {key} is {state}; activate it first"


# The input of an error workflow's run (on_failure): a summary of the run that failed,
# built by the statement that records the failure (triggerd/store/executions.py).
FAILURE_SUMMARY_KEYS = ("execution_id", "workflow", "version", "trigger", "trigger_type",
                        "failed_node", "error_code", "error_message", "started_at",
                        "ended_at")


class TriggerType(enum.StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    WEBHOOK = "webhook"
    MANUAL = "manual"


class ExecutionStatus(enum.StrEnum):
    NEW = "NEW"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in (ExecutionStatus.SUCCESS, ExecutionStatus.ERROR, ExecutionStatus.CANCELED)


class NodeStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"
    WAITING = "WAITING"


class MisfirePolicy(enum.StrEnum):
    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


class OverlapPolicy(enum.StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    CANCEL_PREVIOUS = "cancel_previous"


class SlotOutcome(enum.StrEnum):
    FIRED = "fired"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_MISFIRE = "skipped_misfire"
    SKIPPED_DISABLED = "skipped_disabled"
    BUFFERED = "buffered"
    CANCELED_PREVIOUS = "canceled_previous"
    DUPLICATE = "duplicate"
    SKIPPED_PAUSED = "skipped_paused"  # the trigger was paused (runtime state)
    SKIPPED_MANUAL = "skipped_manual"  # an operator skipped the slot


class ResponseMode(enum.StrEnum):
    ASYNC = "async"
    SYNC = "sync"


class EdgeOn(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


# --- secrets -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    """Where a secret's value comes from: exactly one of env, file, credential."""

    env: str | None = None
    file: str | None = None
    credential: str | None = None

    def describe(self) -> str:
        if self.env is not None:
            return f"env:{self.env}"
        if self.file is not None:
            return f"file:{self.file}"
        return f"credential:{self.credential}"

    def to_json(self) -> dict[str, str]:
        if self.env is not None:
            return {"env": self.env}
        if self.file is not None:
            return {"file": self.file}
        assert self.credential is not None
        return {"credential": self.credential}


# --- graph ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    # Error codes (e.g. "HTTP_CONNECT") or HTTP statuses (e.g. 503) that are retried;
    # empty means every error is retried.
    retry_on: tuple[str | int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Node:
    id: str
    type: str
    params: dict[str, JSON] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class Edge:
    source: str  # "from" in the file
    target: str  # "to" in the file
    # For `if` nodes "true"/"false"; for `switch` nodes a case value or "default".
    when: str | None = None
    on: EdgeOn = EdgeOn.SUCCESS


@dataclass(frozen=True, kw_only=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...] = ()

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.source == node_id)

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.target == node_id)

    @property
    def entry(self) -> Node:
        targets = {e.target for e in self.edges}
        return next(n for n in self.nodes if n.id not in targets)


# --- triggers ------------------------------------------------------------------------


class CalendarMode(enum.StrEnum):
    ONLY = "only"  # fire only on the calendar's working days
    SKIP = "skip"  # do not fire on the calendar's holidays and extra dates


class CalendarShift(enum.StrEnum):
    NONE = "none"
    NEXT = "next"
    PREVIOUS = "previous"


@dataclass(frozen=True, kw_only=True)
class CalendarRef:
    """A trigger's ``calendar: {only | skip: NAME, shift}``. ``definition`` is the named
    calendar's document, copied in at apply so that the stored config says everything the
    schedule needs (and a calendar edit changes the config, which reloads the trigger)."""

    mode: CalendarMode
    name: str
    shift: CalendarShift = CalendarShift.NONE
    definition: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CatchupRate:
    """``5/s``, ``100/m``: at most ``count`` catch-up slots per ``per``."""

    count: int
    per: timedelta

    @property
    def text(self) -> str:
        unit = {timedelta(seconds=1): "s", timedelta(minutes=1): "m", timedelta(hours=1): "h"}
        return f"{self.count}/{unit[self.per]}"


@dataclass(frozen=True, kw_only=True)
class ScheduledConfig:
    """What every scheduled trigger kind has: policies, calendar and bounds."""

    timezone: str = "UTC"
    misfire: MisfirePolicy = MisfirePolicy.LATEST
    catchup_window: timedelta = timedelta(hours=1)
    max_catchup: int = 100
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    jitter: timedelta = timedelta(0)
    calendar: CalendarRef | None = None
    start_at: datetime | None = None  # tz-aware; first fire at or after it
    end_at: datetime | None = None  # tz-aware; fires strictly before it
    max_runs: int | None = None  # scheduled fires only; counted in trigger_state
    # Consecutive failed scheduled runs after which the scheduler pauses the trigger.
    pause_after_failures: int | None = None
    monitor: bool = False  # per-trigger last_success and next_fire gauges
    catchup_rate: CatchupRate | None = None


@dataclass(frozen=True, kw_only=True)
class CronConfig(ScheduledConfig):
    cron: str | tuple[str, ...]  # one expression or several (an instant fires once)


@dataclass(frozen=True, kw_only=True)
class IntervalConfig(ScheduledConfig):
    every: timedelta
    offset: timedelta = timedelta(0)  # phase from start_at, else the Unix epoch


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Webhook authentication. ``scheme`` is one of none, token, basic, hmac, github,
    stripe, standard, slack; the other fields apply to the schemes that use them."""

    scheme: str = "none"
    # One secret, or several while rotating (any of them verifies; the first is the new one).
    secret: SecretRef | tuple[SecretRef, ...] | None = None
    header: str | None = None  # token, hmac
    prefix: str | None = None  # token ("Bearer "), hmac (e.g. "sha256=")
    algorithm: str = "sha256"  # hmac: sha1 | sha256 | sha512
    encoding: str = "hex"  # hmac: hex | base64
    username: str | None = None  # basic
    tolerance: timedelta | None = None  # timestamped schemes; None = the scheme's default

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        """Every listed secret reference, in order (``()`` without a secret)."""
        if self.secret is None:
            return ()
        if isinstance(self.secret, SecretRef):
            return (self.secret,)
        return self.secret


@dataclass(frozen=True, kw_only=True)
class DedupeConfig:
    header: str | None = None
    # Read when ``header`` is absent; never from the file: the standard scheme's svix-id for
    # its webhook-id (see :func:`triggerd.webhooks.dedupe.effective_dedupe`).
    header_alias: str | None = None
    json_pointer: str | None = None  # "json" in the file
    body_hash: bool = False
    ttl: timedelta = timedelta(days=7)


def normalize_webhook_path(path: str) -> str:
    """The one form of a webhook path, for routing, storing and comparing: requests to
    ``/hooks/a/b/`` and ``/hooks/a/b`` reach the same trigger, so two triggers must not
    differ only by a slash at either end."""
    return path.strip("/")


@dataclass(frozen=True, kw_only=True)
class DebounceConfig:
    """Trailing debounce: requests with the same ``key`` (an expression over input, headers
    and query) become one run, started ``period`` after the last of them and at most
    ``max_wait`` after the first."""

    key: str
    period: timedelta
    max_wait: timedelta


@dataclass(frozen=True, kw_only=True)
class ConcurrencyConfig:
    """At most ``limit`` runs of this trigger with the same ``key`` running at once."""

    key: str
    limit: int


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    path: str
    methods: tuple[str, ...] = ("POST",)
    auth: AuthConfig = field(default_factory=AuthConfig)
    dedupe: DedupeConfig | None = None
    response: ResponseMode = ResponseMode.ASYNC
    timeout: timedelta = timedelta(seconds=10)  # sync mode wait
    expose_output: bool = False
    max_body_bytes: int | None = None
    body: str = "parsed"  # "parsed" | "raw"
    rate: float | None = None  # requests per second (token bucket refill)
    burst: int | None = None
    debounce: DebounceConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    # An expression over input, headers and query; a request it does not match is stored
    # with outcome filtered and starts no run.
    filter: str | None = None
    # False for `dedupe: none`: no dedupe on the scheme's delivery id (github, standard,
    # stripe, slack) when no dedupe mapping is given.
    provider_dedupe: bool = True
    allow_from: tuple[str, ...] = ()  # CIDRs the client must be in; empty: anyone


@dataclass(frozen=True, kw_only=True)
class ManualConfig:
    pass


TriggerConfig = CronConfig | IntervalConfig | WebhookConfig | ManualConfig


@dataclass(frozen=True, kw_only=True)
class TriggerSpec:
    name: str
    type: TriggerType
    config: TriggerConfig
    enabled: bool = True
    version: int | None = None  # pinned version; None = latest published
    input: dict[str, JSON] = field(default_factory=dict)
    # Correlation key -> a literal or an expression over the request (webhooks) or the
    # fire's input; stored in the trigger's config document.
    correlation: dict[str, str] = field(default_factory=dict)


# Objects that name no tenant belong to this one (definition documents without
# ``tenant:``, rows from before tenants, webhooks at /hooks/{path}).
DEFAULT_TENANT = "default"

# The most that [executor] max_workflow_depth may be: no run has more ancestors, whatever
# the setting was when it started (the child sweep's walk up stops there).
MAX_WORKFLOW_DEPTH_LIMIT = 100


# The correlation keys with a column (and an index) of their own on every run.
CORRELATION_COLUMNS = ("agent_id", "session_id", "conversation_id")


@dataclass(frozen=True, kw_only=True)
class Correlation:
    """What links a run to the agent platform's runs: every key the trigger (or the
    caller) mapped, as strings; the three ids of :data:`CORRELATION_COLUMNS` are also
    columns, filterable in lists."""

    values: dict[str, str] = field(default_factory=dict)

    @property
    def agent_id(self) -> str | None:
        return self.values.get("agent_id")

    @property
    def session_id(self) -> str | None:
        return self.values.get("session_id")

    @property
    def conversation_id(self) -> str | None:
        return self.values.get("conversation_id")


def tenant_label(tenant: str, name: str) -> str:
    """``name`` (a workflow key or trigger name) as operators read it: bare in the default
    tenant, ``tenant:name`` in another."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}:{name}"


_OBJECT_NAME = re.compile(r"[a-z0-9_-]+(?:/[a-z0-9_-]+)?")

# A workflow key and a trigger's full name as filters take them (the API's query and the
# CLI's options): one that cannot be a name is bad input, not a name that is not found.
KEY_PATTERN = r"^[a-z0-9_-]*$"
KEY_MAX_LENGTH = 100
TRIGGER_NAME_PATTERN = r"^[a-z0-9_-]{1,100}/[a-z0-9_-]{1,100}$"
_KEY = re.compile(KEY_PATTERN)
_TRIGGER_NAME = re.compile(TRIGGER_NAME_PATTERN)


def is_key(text: str) -> bool:
    return 1 <= len(text) <= KEY_MAX_LENGTH and _KEY.fullmatch(text) is not None


def key_filter_problem(text: str) -> str | None:
    """Why ``text`` cannot be a workflow key, or None."""
    if is_key(text):
        return None
    return (f"{text[:40]!r} is not a workflow key (1-100 lowercase letters, digits, '-' and"
            " '_')")


AUDIT_TARGET_MAX_LENGTH = 300


def audit_target_problem(text: str) -> str | None:
    """Why ``text`` cannot be an audit target to filter on, or None."""
    if 1 <= len(text) <= AUDIT_TARGET_MAX_LENGTH:
        return None
    return f"must be 1-{AUDIT_TARGET_MAX_LENGTH} characters"


def trigger_filter_problem(text: str) -> str | None:
    """Why ``text`` cannot be a trigger's ``workflow_key/trigger_name``, or None."""
    if _TRIGGER_NAME.fullmatch(text):
        return None
    return f"{text[:60]!r} is not workflow_key/trigger_name"


def labelled_target(target: str | None, tenant: str | None) -> tuple[str | None, str | None]:
    """An audit target as the lists print it, and the tenant it is in: ``acme:billing/x``
    is acme's ``billing/x``; a bare workflow key or trigger name is the default tenant's
    (as lists print it) when no tenant is given; ids and file names are any tenant's. No
    target: ``tenant`` as given."""
    if target is None:
        return None, tenant
    if ":" in target:
        named, _, name = target.partition(":")
        if tenant is None or tenant == named:
            return name, named
        return target, tenant  # another tenant's name in this one: it matches nothing
    if tenant is None and _OBJECT_NAME.fullmatch(target) and canonical_uuid(target) is None:
        return target, DEFAULT_TENANT
    return target, tenant


@dataclass(frozen=True, kw_only=True)
class WorkflowSpec:
    key: str
    name: str
    graph: Graph
    description: str = ""
    status: WorkflowStatus = WorkflowStatus.ACTIVE
    # Whether the document names its status: apply then sets it; otherwise apply keeps the
    # stored status (an archive or activate of the operator's survives reloads).
    status_given: bool = False
    parameter_schema: dict[str, JSON] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    timeout: timedelta = timedelta(hours=1)
    triggers: tuple[TriggerSpec, ...] = ()
    tenant_id: str = DEFAULT_TENANT
    # The error workflow: started with a summary of every failed run of this one.
    on_failure: str | None = None
    # Where it was written (the file, the JSON path of its entry): the problems that apply
    # finds against the database name the place. Not part of what the workflow is.
    origin: tuple[str, str] | None = field(default=None, compare=False)
